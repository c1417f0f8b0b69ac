"""The checkpointer: SQLite files, the serializer's allowlist, and which runs have not finished.

A tiny three-node graph over the real :class:`AgentState` (observe → plan → approve, where
approve asks a person through ``interrupt``) runs on the real SQLite saver. A crash is a real
one: a child process dies with ``os._exit`` inside ``plan``. Each node appends its name to a
side file, so the tests can tell which nodes ran again after a resume.
"""

from __future__ import annotations

import enum
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ormsgpack
import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.event_hooks import SerdeEvent, register_serde_event_listener
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.constants import TASKS
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, Send, interrupt
from pydantic import BaseModel

from twinkg.agents import checkpoint as cp
from twinkg.agents.checkpoint import (
    DURABILITY,
    Halt,
    ThreadStatus,
    allowed_types,
    forget_finished,
    open_checkpointer,
    serializer,
    unfinished_threads,
)
from twinkg.agents.planning import Envelope
from twinkg.agents.state import (
    ActionKind,
    AgentState,
    ApprovalInput,
    Candidate,
    Finding,
    Outcome,
    ProposedAction,
    Step,
)
from twinkg.ontology.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
PUMP = "https://example.org/plant#P-101"

# ---- the tiny graph ----

ACTION = ProposedAction(
    kind=ActionKind.SETPOINT_CHANGE,
    target=PUMP,
    confidence=0.8,
    proposed_at="2024-05-01T10:00:00+00:00",
    quantity_kind="Pressure",
    current_setpoint=4.0,
    proposed_setpoint=3.5,
)
APPROVAL = ApprovalInput(
    outcome="approved",
    approver="https://example.org/plant#alice",
    role="https://example.org/plant#ShiftLead",
    action_hash=ACTION.arguments_hash(),
    graph_version="v1",
    expires_at="2024-05-01T11:00:00+00:00",
    given_at="2024-05-01T10:05:00+00:00",
)


@dataclass(frozen=True)
class Probe:
    """The run context of the tiny graph: where nodes count their runs, where one dies."""

    counts: str
    crash_in: str | None = None
    asks: int = 1  # how many questions ``approve`` asks


def _count(runtime: Runtime[Probe], node: str) -> None:
    with Path(runtime.context.counts).open("a") as out:
        out.write(node + "\n")


def observe(state: AgentState, runtime: Runtime[Probe]) -> dict[str, Any]:
    """Finds an alarm (a nested model in a list)."""
    _count(runtime, "observe")
    return {"findings": [Finding(uri=PUMP + "-alarm", kind="alarm", asset=PUMP, score=0.9)]}


def plan(state: AgentState, runtime: Runtime[Probe]) -> dict[str, Any]:
    """Proposes an action (an enum inside a model inside a model)."""
    _count(runtime, "plan")
    if runtime.context.crash_in == "plan":
        os._exit(1)  # a crash, not an exception: nothing after this line runs
    if runtime.context.crash_in == "plan-raises":
        raise RuntimeError("the planner failed")
    candidate = Candidate(action=ACTION, utility=0.7, risk_reduction=0.9, throughput=0.4)
    return {"action": ACTION, "candidates": [candidate]}


def approve(state: AgentState, runtime: Runtime[Probe]) -> dict[str, Any]:
    """Asks a person (the interrupt's value is the action) and records their answer."""
    _count(runtime, "approve")
    answers = [interrupt(state.action) for _ in range(runtime.context.asks)]
    step = Step(
        decision=PUMP + "-decision",
        outcome=Outcome.APPLIED,
        reason=f"{len(answers)} answer(s)",
        chain_index=0,
        record_hash="0" * 64,
        gathered=0,
    )
    return {"approval": answers[-1], "outcome": Outcome.APPLIED, "steps": [step]}


Graph = CompiledStateGraph[AgentState, Probe, AgentState, AgentState]


def tiny_graph(saver: BaseCheckpointSaver[Any]) -> Graph:
    """observe → plan → approve, checkpointed by ``saver``."""
    graph = StateGraph(AgentState, context_schema=Probe)
    graph.add_node("observe", observe)
    graph.add_node("plan", plan)
    graph.add_node("approve", approve)
    graph.add_edge(START, "observe")
    graph.add_edge("observe", "plan")
    graph.add_edge("plan", "approve")
    graph.add_edge("approve", END)
    return graph.compile(checkpointer=saver)


def config(thread: str) -> Any:
    """The run config of one thread."""
    return {"configurable": {"thread_id": thread}}


def start(app: Graph, thread: str, probe: Probe) -> dict[str, Any]:
    """A new run on ``thread``."""
    first = AgentState(run_id=thread, as_of="2024-05-01T10:00:00+00:00")
    return app.invoke(first, config(thread), context=probe, durability=DURABILITY)


def go_on(app: Graph, thread: str, probe: Probe, answer: ApprovalInput | None) -> dict[str, Any]:
    """Invoke again: with a person's answer, or with None (resume after a crash)."""
    payload: Command[Any] | None = None if answer is None else Command(resume=answer)
    return app.invoke(payload, config(thread), context=probe, durability=DURABILITY)


def runs(probe: Probe) -> Counter[str]:
    """How often each node has started."""
    path = Path(probe.counts)
    return Counter(path.read_text().split()) if path.exists() else Counter()


def interrupt_and_resume(saver: BaseCheckpointSaver[Any], probe: Probe, thread: str) -> None:
    """A run waits for approval, is listed as waiting, resumes with the answer and finishes.

    Shared with the Postgres integration test, which runs it against a real server.
    """
    app = tiny_graph(saver)
    asked = start(app, thread, probe)
    assert [i.value for i in asked["__interrupt__"]] == [ACTION]
    (waiting,) = unfinished_threads(saver)
    assert (waiting.thread_id, waiting.halt, waiting.next_nodes) == (
        thread,
        Halt.WAITING,
        ("approve",),
    )
    assert waiting.waiting
    assert abs(datetime.now(UTC) - waiting.at) < timedelta(minutes=5)
    assert (
        waiting.checkpoint_id
        == app.get_state(config(thread)).config["configurable"]["checkpoint_id"]
    )

    done = go_on(app, thread, probe, APPROVAL)
    assert done["outcome"] is Outcome.APPLIED and done["approval"] == APPROVAL
    assert unfinished_threads(saver) == []
    assert runs(probe) == Counter({"observe": 1, "plan": 1, "approve": 2})  # approve re-runs


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Where the SQLite checkpoints go."""
    return tmp_path / "agents" / "checkpoints.sqlite"


@pytest.fixture
def probe(tmp_path: Path) -> Probe:
    """A fresh counter file."""
    return Probe(counts=str(tmp_path / "runs.txt"))


@dataclass
class SerdeAlarms:
    """What LangGraph's serializer complained about: allowlist events and log records."""

    events: list[SerdeEvent]
    records: list[logging.LogRecord]
    warned: list[warnings.WarningMessage]


@pytest.fixture
def serde_alarms(caplog: pytest.LogCaptureFixture) -> Iterator[SerdeAlarms]:
    """Collect serializer events, warning log records and Python warnings during a test.

    The log warning is emitted once per type and process; the events come every time, so
    they are the reliable signal.
    """
    alarms = SerdeAlarms([], [], [])
    unregister = register_serde_event_listener(alarms.events.append)
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        yield alarms
    unregister()
    alarms.records.extend(r for r in caplog.records if r.name.startswith("langgraph"))
    alarms.warned.extend(warned)


# ---- interrupt, resume, crash ----


def test_an_interrupted_run_waits_and_then_finishes(db: Path, probe: Probe) -> None:
    with open_checkpointer(str(db)) as saver:
        interrupt_and_resume(saver, probe, "run-1")


def test_state_round_trips_as_models_without_deserialization_warnings(
    db: Path, probe: Probe, serde_alarms: SerdeAlarms
) -> None:
    with open_checkpointer(str(db)) as saver:
        app = tiny_graph(saver)
        start(app, "run-1", probe)
    # Read back through a fresh connection, as another process would.
    with open_checkpointer(str(db)) as saver:
        stored = saver.get_tuple(config("run-1"))
        assert stored is not None
        values = stored.checkpoint["channel_values"]
        (finding,) = values["findings"]
        assert isinstance(finding, Finding) and finding.score == 0.9
        assert isinstance(values["action"], ProposedAction) and values["action"] == ACTION
        assert values["action"].kind is ActionKind.SETPOINT_CHANGE
        (candidate,) = values["candidates"]
        assert isinstance(candidate, Candidate) and candidate.action == ACTION
        (question,) = [
            v for _, channel, v in stored.pending_writes or () if channel == cp.INTERRUPT
        ]
        assert isinstance(question[0].value, ProposedAction)

        app = tiny_graph(saver)
        go_on(app, "run-1", probe, APPROVAL)
        final = saver.get_tuple(config("run-1"))
        assert final is not None
        values = final.checkpoint["channel_values"]
        assert isinstance(values["approval"], ApprovalInput) and values["approval"] == APPROVAL
        assert values["outcome"] is Outcome.APPLIED
        assert values["steps"][0].outcome is Outcome.APPLIED
        assert AgentState.model_validate(app.get_state(config("run-1")).values).approval == APPROVAL
    assert serde_alarms.events == []
    assert serde_alarms.records == []
    assert serde_alarms.warned == []


def test_without_the_allowlist_the_same_checkpoint_warns(
    db: Path, probe: Probe, serde_alarms: SerdeAlarms
) -> None:
    """The check above can fail: LangGraph's default serializer flags every state model."""
    with open_checkpointer(str(db)) as saver:
        start(tiny_graph(saver), "run-1", probe)
    conn = sqlite3.connect(db, check_same_thread=False)
    try:
        stored = SqliteSaver(conn).get_tuple(config("run-1"))
    finally:
        conn.close()
    assert stored is not None
    flagged = {(e["kind"], e["name"]) for e in serde_alarms.events}
    for name in ("Finding", "ProposedAction", "ActionKind", "Candidate"):
        assert ("msgpack_unregistered_allowed", name) in flagged


def test_a_crashed_run_is_cut_off_and_resumes_at_the_node_it_died_in(
    db: Path, probe: Probe
) -> None:
    crash_and_resume(str(db), probe, "run-9")


def crash_and_resume(target: str, probe: Probe, thread: str) -> None:
    """A child process dies inside ``plan``; the run is cut off, resumes there, and finishes.

    Shared with the Postgres integration test.
    """
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, target, thread, probe.counts],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 1, child.stderr
    assert runs(probe) == Counter({"observe": 1, "plan": 1})

    with open_checkpointer(target) as saver:
        (cut,) = unfinished_threads(saver)
        assert (cut.thread_id, cut.halt, cut.next_nodes) == (thread, Halt.CUT_OFF, ("plan",))
        assert not cut.waiting

        app = tiny_graph(saver)
        asked = go_on(app, thread, probe, None)
        assert runs(probe) == Counter({"observe": 1, "plan": 2, "approve": 1})
        assert [i.value for i in asked["__interrupt__"]] == [ACTION]
        assert [(t.halt, t.next_nodes) for t in unfinished_threads(saver)] == [
            (Halt.WAITING, ("approve",))
        ]

        done = go_on(app, thread, probe, APPROVAL)
        assert done["outcome"] is Outcome.APPLIED and [f.asset for f in done["findings"]] == [PUMP]
        assert unfinished_threads(saver) == []
        assert runs(probe)["observe"] == 1  # the first node never ran twice


_CHILD = """
import sys
from twinkg.agents.checkpoint import open_checkpointer
from tests.unit.test_checkpoint import Probe, start, tiny_graph

target, thread, counts = sys.argv[1:4]
with open_checkpointer(target) as saver:
    start(tiny_graph(saver), thread, Probe(counts=counts, crash_in="plan"))
raise SystemExit("the run was meant to die inside plan")
"""


def test_a_saved_answer_with_no_task_to_use_it_means_cut_off(db: Path, probe: Probe) -> None:
    """A process that died after saving a person's answer: invoking with None applies it."""
    with open_checkpointer(str(db)) as saver:
        app = tiny_graph(saver)
        start(app, "run-1", probe)
        latest = saver.get_tuple(config("run-1"))
        assert latest is not None
        # What Command(resume=...) saves before the task runs; the task then died.
        saver.put_writes(latest.config, [(cp.RESUME, APPROVAL)], cp.NULL_TASK_ID)

        (cut,) = unfinished_threads(saver)
        assert (cut.halt, cut.next_nodes) == (Halt.CUT_OFF, ("approve",))
        done = go_on(app, "run-1", probe, None)
        assert done["approval"] == APPROVAL and "__interrupt__" not in done
        assert unfinished_threads(saver) == []


def test_a_second_question_after_an_answer_waits(db: Path, tmp_path: Path) -> None:
    """The first answer stays saved while the task asks again; it must not answer the second."""
    probe = Probe(counts=str(tmp_path / "runs.txt"), asks=2)
    with open_checkpointer(str(db)) as saver:
        app = tiny_graph(saver)
        start(app, "run-1", probe)
        asked = go_on(app, "run-1", probe, APPROVAL)
        assert "__interrupt__" in asked
        (waiting,) = unfinished_threads(saver)
        assert (waiting.halt, waiting.next_nodes) == (Halt.WAITING, ("approve",))


def test_a_node_that_raised_is_cut_off(db: Path, probe: Probe) -> None:
    with open_checkpointer(str(db)) as saver:
        app = tiny_graph(saver)
        with pytest.raises(RuntimeError, match="planner failed"):
            start(app, "run-1", Probe(counts=probe.counts, crash_in="plan-raises"))
        (cut,) = unfinished_threads(saver)
        assert (cut.halt, cut.next_nodes) == (Halt.CUT_OFF, ("plan",))
        assert "__interrupt__" in go_on(app, "run-1", probe, None)  # retried, then asks


def test_a_static_breakpoint_reads_as_cut_off(db: Path, probe: Probe) -> None:
    """As documented: ``interrupt_before`` leaves no trace in the checkpoint."""
    with open_checkpointer(str(db)) as saver:
        graph = tiny_graph(saver).builder.compile(checkpointer=saver, interrupt_before=["plan"])
        start(graph, "run-1", probe)
        (cut,) = unfinished_threads(saver)
    assert (cut.halt, cut.next_nodes) == (Halt.CUT_OFF, ("plan",))
    assert runs(probe) == Counter({"observe": 1})


def test_threads_are_listed_by_id_and_finished_ones_left_out(db: Path, probe: Probe) -> None:
    with open_checkpointer(str(db)) as saver:
        app = tiny_graph(saver)
        for thread in ("run-c", "run-a", "run-b"):
            start(app, thread, probe)
        go_on(app, "run-b", probe, APPROVAL)
        listed = unfinished_threads(saver)
    assert [t.thread_id for t in listed] == ["run-a", "run-c"]
    assert all(isinstance(t, ThreadStatus) and t.halt is Halt.WAITING for t in listed)
    with pytest.raises(AttributeError):
        listed[0].thread_id = "other"  # type: ignore[misc]


def test_finished_threads_are_forgotten_and_the_rest_kept(db: Path, probe: Probe) -> None:
    """A finished run's checkpoints go; the runs waiting for an answer stay, unchanged."""
    with open_checkpointer(str(db)) as saver:
        app = tiny_graph(saver)
        for thread in ("run-a", "run-b", "run-c"):
            start(app, thread, probe)
        go_on(app, "run-b", probe, APPROVAL)  # run-b ends
        before = unfinished_threads(saver)
        assert forget_finished(saver) == 1
        assert saver.get_tuple(config("run-b")) is None
        assert unfinished_threads(saver) == before  # run-a and run-c, as they were
        assert forget_finished(saver) == 0
        done = go_on(app, "run-a", probe, APPROVAL)  # a kept run still resumes
        assert done["outcome"] is Outcome.APPLIED


def test_a_send_is_a_node_to_run_and_its_state_comes_back_whole(
    db: Path, probe: Probe, serde_alarms: SerdeAlarms
) -> None:
    graph = StateGraph(AgentState, context_schema=Probe)
    graph.add_node("observe", observe)
    graph.add_node("approve", approve)
    graph.add_edge(START, "observe")
    graph.add_conditional_edges("observe", lambda s: [Send("approve", s)], ["approve"])
    graph.add_edge("approve", END)
    with open_checkpointer(str(db)) as saver:
        start(graph.compile(checkpointer=saver), "run-1", probe)
        (waiting,) = unfinished_threads(saver)
        stored = saver.get_tuple(config("run-1"))
    assert (waiting.halt, waiting.next_nodes) == (Halt.WAITING, ("approve",))
    assert stored is not None
    (send,) = stored.checkpoint["channel_values"][TASKS]
    assert isinstance(send.arg, AgentState) and isinstance(send.arg.findings[0], Finding)
    assert serde_alarms.events == []


def test_an_empty_store_has_no_unfinished_threads(db: Path) -> None:
    with open_checkpointer(str(db)) as saver:
        assert unfinished_threads(saver) == []


# ---- the serializer ----


def test_the_allowlist_is_exactly_the_models_and_enums_of_agents_state() -> None:
    from langgraph._internal._serde import collect_allowlist_from_schemas  # noqa: PLC0415

    allowed = allowed_types()
    reachable = collect_allowlist_from_schemas(schemas=[AgentState])  # what strict mode derives
    assert reachable <= allowed
    assert {module for module, _ in allowed} == {"twinkg.agents.state"}
    assert {("twinkg.agents.state", "ActionKind"), ("twinkg.agents.state", "Outcome")} <= allowed
    assert ("twinkg.agents.state", "_Data") not in allowed


class Foreign(BaseModel):
    """A model from outside agents.state."""

    x: int


class Colour(enum.Enum):
    """An enum from outside agents.state."""

    RED = "red"


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        (Foreign(x=1), {"x": 1}),
        (Colour.RED, "red"),
        (Envelope(uri=PUMP, quantity_kind="Pressure", minimum=0, maximum=9), None),
    ],
)
def test_types_outside_agents_state_come_back_as_plain_data(
    value: Any, plain: Any, serde_alarms: SerdeAlarms
) -> None:
    serde = serializer()
    back = serde.loads_typed(serde.dumps_typed(value))
    assert type(back) is not type(value)
    if plain is not None:
        assert back == plain
    assert [(e["kind"], e["name"]) for e in serde_alarms.events] == [
        ("msgpack_blocked", type(value).__name__)
    ]


def test_the_serializer_never_pickles() -> None:
    with pytest.raises(TypeError):
        serializer().dumps_typed(object())


def test_the_checkpoint_format_names_are_langgraphs() -> None:
    from langgraph._internal import _constants  # noqa: PLC0415
    from langgraph.graph.state import _CHANNEL_BRANCH_TO  # noqa: PLC0415

    assert cp.INTERRUPT == _constants.INTERRUPT
    assert cp.RESUME == _constants.RESUME
    assert cp.NULL_TASK_ID == _constants.NULL_TASK_ID
    assert _CHANNEL_BRANCH_TO.format("plan") == cp.BRANCH_TO + "plan"
    assert {_constants.ERROR, _constants.ERROR_SOURCE_NODE} < cp._CONTROL


# ---- checkpoints written before the twinkg.* namespace ----

LEGACY = Path(__file__).resolve().parents[1] / "checkpoints" / "0.1-waiting-for-approval.sqlite"


def test_the_legacy_store_names_the_old_module_path() -> None:
    stored = LEGACY.read_bytes()
    assert b"\xacagents.state" in stored  # msgpack: a 12-byte string, the 0.1 path
    assert b"twinkg.agents.state" not in stored


def test_a_run_checkpointed_before_the_namespace_resumes(tmp_path: Path, probe: Probe) -> None:
    db = tmp_path / "checkpoints.sqlite"
    shutil.copyfile(LEGACY, db)
    with open_checkpointer(str(db)) as saver:
        (waiting,) = unfinished_threads(saver)
        assert (waiting.thread_id, waiting.halt, waiting.next_nodes) == (
            "legacy-run",
            Halt.WAITING,
            ("approve",),
        )
        stored = saver.get_tuple(config("legacy-run"))
        assert stored is not None
        values = stored.checkpoint["channel_values"]
        (finding,) = values["findings"]
        assert isinstance(finding, Finding) and finding.asset == PUMP
        assert values["action"] == ACTION and values["action"].kind is ActionKind.SETPOINT_CHANGE

        done = go_on(tiny_graph(saver), "legacy-run", probe, APPROVAL)
        assert done["outcome"] is Outcome.APPLIED and done["approval"] == APPROVAL
        assert isinstance(done["action"], ProposedAction)
        assert unfinished_threads(saver) == []
    assert runs(probe) == Counter({"approve": 1})  # nothing before the question ran again


def test_without_the_alias_the_legacy_values_are_not_rebuilt(tmp_path: Path) -> None:
    db = tmp_path / "checkpoints.sqlite"
    shutil.copyfile(LEGACY, db)
    plain = JsonPlusSerializer(allowed_msgpack_modules=sorted(allowed_types()))
    with sqlite3.connect(db) as conn:
        saver = SqliteSaver(conn, serde=plain)
        stored = saver.get_tuple(config("legacy-run"))
    assert stored is not None
    (finding,) = stored.checkpoint["channel_values"]["findings"]
    assert not isinstance(finding, Finding)  # what the alias is for


def test_the_alias_renames_only_type_paths_and_only_old_ones() -> None:
    serde = serializer()
    text = "agents.state is a phrase in a note, not a type"
    note = Finding(uri=PUMP + "-alarm", kind="alarm", asset=PUMP, score=0.5, severity=text)
    kind, payload = serde.dumps_typed({"note": note, "text": text})

    def to_old_path(code: int, inner: bytes) -> ormsgpack.Ext:  # what 0.1 wrote
        value = ormsgpack.unpackb(inner, ext_hook=to_old_path)
        if isinstance(value, list) and value and value[0] == "twinkg.agents.state":
            value[0] = "agents.state"
        return ormsgpack.Ext(code, ormsgpack.packb(value))

    legacy = ormsgpack.packb(ormsgpack.unpackb(payload, ext_hook=to_old_path))
    assert b"\xacagents.state" in legacy and b"twinkg" not in legacy
    back = serde.loads_typed((kind, legacy))
    assert back == {"note": note, "text": text}
    assert serde.loads_typed((kind, payload)) == back


def test_the_alias_codes_are_langgraphs() -> None:
    from langgraph.checkpoint.serde import jsonplus  # noqa: PLC0415

    named = {
        jsonplus.EXT_CONSTRUCTOR_SINGLE_ARG,
        jsonplus.EXT_CONSTRUCTOR_POS_ARGS,
        jsonplus.EXT_CONSTRUCTOR_KW_ARGS,
        jsonplus.EXT_METHOD_SINGLE_ARG,
        jsonplus.EXT_PYDANTIC_V1,
        jsonplus.EXT_PYDANTIC_V2,
    }
    assert named == cp.NAMED_TYPE_CODES
    assert jsonplus.EXT_DELTA_SNAPSHOT == cp.WRAPPED_VALUE_CODE
    assert cp.legacy_modules() == {"agents.state"}


# ---- targets ----


def test_a_sqlite_target_gets_a_private_folder_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "home" / "agents" / "checkpoints.sqlite"
    with open_checkpointer(str(path)) as saver:
        assert isinstance(saver, SqliteSaver)
        assert saver.conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {row[0] for row in saver.conn.execute("SELECT name FROM sqlite_master")}
        assert {"checkpoints", "writes"} <= tables
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(sqlite3.ProgrammingError):  # closed on exit
        saver.conn.execute("SELECT 1")


def test_an_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    with open_checkpointer(str(tmp_path / "cp.sqlite")):
        pass
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


@pytest.mark.parametrize(
    "target",
    ["", "   ", "mysql://user@localhost/db", "sqlite:///tmp/x.sqlite", ":memory:"],
)
def test_targets_that_are_neither_a_file_nor_postgres_are_refused(target: str) -> None:
    with pytest.raises(ConfigError):
        open_checkpointer(target)


def test_a_folder_or_a_foreign_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="folder"), open_checkpointer(str(tmp_path)):
        pass
    junk = tmp_path / "notes.txt"
    junk.write_text("not a database, but long enough to have a header " * 20)
    with pytest.raises(ConfigError, match="not a SQLite database"), open_checkpointer(str(junk)):
        pass


def test_postgres_without_its_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langgraph.checkpoint.postgres", None)  # import fails
    with pytest.raises(ConfigError) as raised:
        open_checkpointer("postgresql://twinkg@localhost/twinkg")
    message = str(raised.value)
    assert "pip install 'twinkg[postgres]'" in message and "\n" not in message


def test_an_unreachable_postgres_is_a_store_error_without_the_password() -> None:
    pytest.importorskip(
        "langgraph.checkpoint.postgres", reason="the postgres extra is not installed"
    )
    from twinkg.ontology.errors import StoreError  # noqa: PLC0415

    url = "postgres://twinkg:s3cret-pw@127.0.0.1:1/twinkg?connect_timeout=5"
    with pytest.raises(StoreError) as raised, open_checkpointer(url):
        pass
    assert "s3cret-pw" not in str(raised.value) and "twinkg:***@127.0.0.1:1" in str(raised.value)
