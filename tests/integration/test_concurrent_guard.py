"""Decision 0086 as a property, on the real Neo4j: two actions judged at the same moment end the
plant where one after the other would have.

Three criticality-B pumps on the SKAB testbed's loop: two duty pumps that share one standby.
Hypothesis picks their statuses and two actions (a controlled stop or a switch to standby, on
two different pumps, as the leases keep runs on one pump apart). The two are decided one after
the other in both orders, and then side by side: both runs are guarded before either records (a
barrier before each run's first record), then they record at once. The statuses the side-by-side
runs leave must be those of one of the two orders. Without the check at the record, a stop of
each pump of a pair judged at once leaves both stopped, which neither order does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.memory import InMemorySaver
from neo4j import Driver

from tests.conftest import seed_skab
from twinkg.agents.checkpoint import serializer
from twinkg.agents.runner import Agents
from twinkg.agents.state import ActionKind, ProposedAction
from twinkg.kg import chain_verify, provenance
from twinkg.kg.records import GraphRecords, NodeRecord, RelRecord
from twinkg.kg.store import GraphStore
from twinkg.ontology.vocab import PropKey, RelType

pytestmark = pytest.mark.neo4j
PLANT = "https://w3id.org/twinkg/plant/skab-testbed/"
DUTY_1, DUTY_2, STANDBY = PLANT + "booster-d1", PLANT + "booster-d2", PLANT + "booster-s"
PUMPS = (DUTY_1, DUTY_2, STANDBY)
AS_OF = datetime(2020, 2, 8, 19, 6, 30, tzinfo=UTC)
Action = tuple[ActionKind, str]


@pytest.fixture(scope="module")
def store(driver: Driver) -> GraphStore:
    """The SKAB testbed with the three pumps; autonomy for any confidence (threshold 0), so
    that the actions apply without a person."""
    seeded = seed_skab(driver)
    nodes = tuple(
        NodeRecord(
            uri,
            ("https://w3id.org/twinkg/ontology#CentrifugalPump",),
            {
                PropKey.TAG: tag,
                PropKey.CRITICALITY: "B",
                PropKey.DUTY_ROLE: role,
                PropKey.OPERATIONAL_STATUS: "running",
            },
        )
        for uri, tag, role in (
            (DUTY_1, "P-11", "duty"),
            (DUTY_2, "P-12", "duty"),
            (STANDBY, "P-1S", "standby"),
        )
    )
    rels = (
        RelRecord(RelType.STANDBY_FOR, STANDBY, DUTY_1),
        RelRecord(RelType.STANDBY_FOR, STANDBY, DUTY_2),
        *(RelRecord(RelType.PART_OF, uri, PLANT + "loop") for uri in PUMPS),
    )
    seeded.write(GraphRecords(nodes, rels))
    driver.execute_query("MATCH (t {uri: $t}) SET t.threshold = 0.0", t=PLANT + "policy-trust")
    return seeded


def _agents(store: GraphStore) -> Agents:
    return Agents(store=store, log=None, checkpointer=InMemorySaver(serde=serializer()))


def _set(driver: Driver, statuses: dict[str, str]) -> None:
    driver.execute_query(
        "UNWIND $rows AS row MATCH (a {uri: row.uri}) SET a.operationalStatus = row.status",
        rows=[{"uri": u, "status": s} for u, s in statuses.items()],
    )


def _statuses(driver: Driver) -> dict[str, str]:
    records, _, _ = driver.execute_query(
        "UNWIND $uris AS u MATCH (a {uri: u}) RETURN a.uri AS uri, a.operationalStatus AS s",
        uris=list(PUMPS),
    )
    return {r["uri"]: r["s"] for r in records}


def _decide(agents: Agents, action: Action) -> str:
    kind, target = action
    proposal = ProposedAction(
        kind=kind, target=target, confidence=0.95, proposed_at=AS_OF.isoformat()
    )
    result = agents.run(scope=target, as_of=AS_OF, action=proposal)
    return result.steps[-1].outcome.value


def _one_after_the_other(
    store: GraphStore, driver: Driver, start: dict[str, str], first: Action, second: Action
) -> dict[str, str]:
    _set(driver, start)
    agents = _agents(store)
    _decide(agents, first)
    _decide(agents, second)
    return _statuses(driver)


def _side_by_side(
    store: GraphStore, driver: Driver, start: dict[str, str], actions: tuple[Action, Action]
) -> dict[str, str]:
    _set(driver, start)
    both_guarded = threading.Barrier(2, timeout=120)
    waited: set[int] = set()
    real: Callable[..., provenance.Receipt] = provenance.record

    def record(*args: Any, **kwargs: Any) -> provenance.Receipt:
        me = threading.get_ident()
        if me not in waited:  # each run's first record waits until both runs were guarded
            waited.add(me)
            both_guarded.wait()
        return real(*args, **kwargs)

    errors: list[BaseException] = []

    def decide(action: Action) -> None:
        try:
            _decide(_agents(store), action)
        except BaseException as exc:  # reported below
            errors.append(exc)
            both_guarded.abort()

    with mock.patch.object(provenance, "record", record):
        threads = [threading.Thread(target=decide, args=(a,)) for a in actions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    assert not errors, errors
    return _statuses(driver)


_ACTIONS = st.tuples(
    st.sampled_from([ActionKind.CONTROLLED_STOP, ActionKind.SWITCH_TO_STANDBY]),
    st.sampled_from([ActionKind.CONTROLLED_STOP, ActionKind.SWITCH_TO_STANDBY]),
    st.permutations(PUMPS),
).map(lambda t: ((t[0], t[2][0]), (t[1], t[2][1])))
_STARTS = st.fixed_dictionaries(
    {
        DUTY_1: st.sampled_from(["running", "standby", "stopped"]),
        DUTY_2: st.sampled_from(["running", "standby", "stopped"]),
        STANDBY: st.sampled_from(["running", "standby", "stopped"]),
    }
)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(start=_STARTS, actions=_ACTIONS)
# the case the property exists for: everything running, a stop of a duty pump and of its standby
@example(
    start=dict.fromkeys(PUMPS, "running"),
    actions=((ActionKind.CONTROLLED_STOP, DUTY_1), (ActionKind.CONTROLLED_STOP, STANDBY)),
)
def test_two_actions_judged_at_once_end_as_one_after_the_other(
    store: GraphStore, driver: Driver, start: dict[str, str], actions: tuple[Action, Action]
) -> None:
    first, second = actions
    orders = [
        _one_after_the_other(store, driver, start, first, second),
        _one_after_the_other(store, driver, start, second, first),
    ]
    together = _side_by_side(store, driver, start, actions)
    assert together in orders, (start, actions, together, orders)
    assert chain_verify.verify(store).ok
