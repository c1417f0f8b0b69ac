"""Scale-out benchmark: decisions/s with 1, 2 and 4 agent worker processes on one Neo4j.

Starts a throwaway Neo4j, seeds a generated plant of ``--assets`` assets, and for each worker
count writes a fresh ``tk:Anomaly`` on every pump (minutes old, so the agents look at it), then
starts that many worker processes at once. Each is what ``twinkg run --workers N`` starts: its
own driver, its own checkpoints, an ``AgentWorker`` sweeping every asset with something to
decide under the asset's lease (``kg.leases``), until nothing is left. Timed from the start
signal to the last worker's end.

Prints, per worker count: decisions, seconds, decisions/s, the ratio to one worker, and that
every anomaly was decided on exactly once (leases: no asset twice). On this 2-core machine
Neo4j shares the cores with the workers: the ratios say how far scaling out goes here, not
what more cores would give.

    python -m benchmarks.scale_out [--assets 1000] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from benchmarks.decisions import anomaly_records
from benchmarks.server import throwaway_server
from twinkg.api.agent_worker import AgentWorker
from twinkg.api.settings import Settings
from twinkg.api.twin import agents_twin
from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.kg.store import GraphStore, open_driver
from twinkg.ontology.namespaces import INGEST_BASE
from twinkg.ontology.vocab import TK


def worker(  # noqa: PLR0917 - a process target takes its arguments by position
    uri: str,
    password: str,
    home: str,
    name: str,
    go: mp.synchronize.Event,
    ready: mp.Queue[str],
    out: mp.Queue[int],
) -> None:
    """One worker process: sweep under leases until nothing is left; put its decisions."""
    driver = open_driver(uri, "neo4j", password)
    settings = Settings(home=Path(home), neo4j_uri=uri, neo4j_password=SecretStr(password))
    with agents_twin(settings, GraphStore(driver)) as twin:
        agent = AgentWorker(twin, name)
        twin.case_assets()  # warm the driver and the queries before the start
        ready.put(name)
        go.wait()
        while True:
            decided = agent.sweep()
            if decided == 0 and not twin.case_assets():
                break
            if decided == 0:
                time.sleep(0.05)  # the rest is leased by others: look again shortly
        out.put(agent.stats.decisions)
    driver.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--assets", type=int, default=1000)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    spawn = mp.get_context("spawn")  # a driver does not survive fork()
    rows = []
    with throwaway_server() as server:
        plant = plant_records(Plant.GENERATED, assets=args.assets, seed=0)
        seeding.load(server.store, "generated", seeding.with_ontology(plant))
        pumps = [n.uri for n in plant.nodes if str(TK.CentrifugalPump) in n.types]
        for round_, count in enumerate(counts):
            at = datetime.now(UTC) - timedelta(minutes=10)  # recent: the agents look at it
            server.store.write(anomaly_records(pumps, at, f"scale/{round_}"))
            go, ready, out = spawn.Event(), spawn.Queue(), spawn.Queue()
            procs = [
                spawn.Process(
                    target=worker,
                    args=(
                        server.uri,
                        server.password,
                        str(server.home / f"r{round_}w{k}"),
                        f"r{round_}w{k}",
                        go,
                        ready,
                        out,
                    ),
                )
                for k in range(count)
            ]
            for proc in procs:
                proc.start()
            for _ in procs:  # every process has opened its driver and warmed up
                ready.get(timeout=600)
            started = time.perf_counter()
            go.set()
            decided = [out.get(timeout=1800) for _ in procs]
            elapsed = time.perf_counter() - started
            for proc in procs:
                proc.join()
            once = server.store.read_only(
                "MATCH (a:Anomaly) WHERE a.uri STARTS WITH $prefix "
                "OPTIONAL MATCH (d:Decision)-[:PROV_USED]->(a) "
                "WITH a, count(d) AS n RETURN min(n) AS lo, max(n) AS hi, count(a) AS total",
                {"prefix": f"{INGEST_BASE}anomaly/scale/{round_}/"},
            ).rows[0]  # (lo, hi, total)
            rows.append((count, sum(decided), elapsed, once))
    base = rows[0][1] / rows[0][2]
    print(f"generated plant of {args.assets} assets, {len(pumps)} pumps with a new anomaly each")
    print("workers  decisions  seconds  decisions/s  vs 1 worker  each anomaly decided")
    for count, decided, elapsed, once in rows:
        rate = decided / elapsed
        lo, hi = once[0], once[1]
        exact = "exactly once" if lo == hi == 1 else f"{lo} to {hi} times"
        ratio = rate / base
        print(f"{count:>7}  {decided:>9}  {elapsed:>7.2f}  {rate:>11.2f}  {ratio:>10.2f}×  {exact}")


if __name__ == "__main__":
    main()
