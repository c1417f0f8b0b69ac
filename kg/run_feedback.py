"""Equipment run feedback: the graph's ``tk:operationalStatus`` follows what the plant says runs.

A pump its own controls start and stop (a schedule, a tank level) is running one hour and idle
the next; the guard judges a start on the status the graph holds (a restart is only for a
stopped asset, ``safety:RestartStoppedShape``), so the graph must hold what the plant's run
feedback says, not what the seed guessed. Running gives "running"; not running gives "stopped",
except that an asset held as "standby" or "unavailable" keeps that status (idle is what those
are). Only what changed is written, in one transaction that notes the assets it changed
(decision 0054).
"""

from __future__ import annotations

from collections.abc import Mapping

from twinkg.kg.queries import NamedQuery, token
from twinkg.kg.store import GraphStore, StoreTx
from twinkg.ontology.vocab import Label, PropKey

_RESOURCE, _ASSET = token(Label.RESOURCE), token(Label.ASSET)
_STATUS = token(PropKey.OPERATIONAL_STATUS)

RUN_FEEDBACK = NamedQuery(
    "plant.run_feedback",
    "UNWIND $rows AS row "
    f"MATCH (a:{_RESOURCE}:{_ASSET} {{uri: row.uri}}) "
    f"WITH a, a.{_STATUS} AS before, CASE WHEN row.running THEN 'running' "
    f"WHEN a.{_STATUS} IN ['standby', 'unavailable'] THEN a.{_STATUS} ELSE 'stopped' END AS after "
    "WHERE before IS NULL OR before <> after "
    f"SET a.{_STATUS} = after "
    "RETURN a.uri AS uri, before, after ORDER BY uri",
)
"""Set each asset's operational status from its run feedback where it changed; the changes."""


def apply_run_feedback(store: GraphStore, running: Mapping[str, bool]) -> dict[str, str]:
    """Set the status of each asset in ``running`` (asset IRI → whether it runs) from its run
    feedback; the assets whose status changed, with the new status. Assets not in the graph are
    skipped (a plant's feedback may name equipment the graph does not hold)."""
    rows = [{"uri": uri, "running": bool(on)} for uri, on in sorted(running.items())]
    if not rows:
        return {}

    def work(tx: StoreTx) -> dict[str, str]:
        changed = {str(r["uri"]): str(r["after"]) for r in tx.run(RUN_FEEDBACK, rows=rows)}
        tx.touch(changed)
        return changed

    return store.transaction(work)


__all__ = ["RUN_FEEDBACK", "apply_run_feedback"]
