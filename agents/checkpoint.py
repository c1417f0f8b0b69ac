"""Where agent runs are checkpointed, and which runs have not finished.

Every agent run is checkpointed so that a run stopped half-way (a person still has to approve
an action, or the process died) resumes where it stopped instead of repeating a side effect.
:func:`open_checkpointer` opens the store a setting names: a SQLite file by default, Postgres
when a ``postgresql://`` URL is given. :func:`unfinished_threads` lists the runs whose latest
checkpoint still has nodes to run, telling the ones waiting for an answer from the ones that
were cut off. A run that has ended is forgotten (:func:`forget_finished`, and the agents delete
each run's thread when it ends): the store holds only what may still resume.

The stored state is read back with a serializer that rebuilds only the models and enums of
:mod:`twinkg.agents.state` (plus LangGraph's own safe types): anything else in a checkpoint
comes back as plain data, so a tampered checkpoint cannot make the agent import and call
arbitrary code (https://github.com/langchain-ai/langgraph, ``JsonPlusSerializer``).
Checkpoints written before the ``twinkg.*`` namespace (0.1, where the module was
``agents.state``) name their types by the old path; the serializer reads them under the new
one (:class:`CheckpointSerializer`), so a run that was waiting for an approval across the
upgrade still resumes.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from langgraph.checkpoint.base import BaseCheckpointSaver, Checkpoint, CheckpointTuple
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.constants import START, TASKS
from langgraph.types import Durability
from ormsgpack import OPT_NON_STR_KEYS, Ext, packb, unpackb
from pydantic import BaseModel

from twinkg.agents import state
from twinkg.ontology.errors import ConfigError, StoreError

DURABILITY: Final[Durability] = "sync"
"""How agent graphs must be invoked (``graph.invoke(..., durability=DURABILITY)``).

LangGraph's default (``"async"``) saves a step's checkpoint while the next step already runs,
so a crash can lose the last finished step and run its node, and its side effect, again.
"""

_POSTGRES_SCHEMES: Final = ("postgresql", "postgres")

# Names in LangGraph's stored checkpoint format (private in langgraph, but part of every stored
# checkpoint, so they cannot change without a migration; a test pins them to langgraph's).
BRANCH_TO: Final = "branch:to:"  # the channel a StateGraph edge writes to trigger a node
INTERRUPT: Final = "__interrupt__"  # a pending write: the question a task is waiting on
RESUME: Final = "__resume__"  # a pending write: the answer to it
NULL_TASK_ID: Final = "00000000-0000-0000-0000-000000000000"  # writes of the caller, not a task
# Writes that say what happened to a task rather than what it produced.
_CONTROL: Final = frozenset({INTERRUPT, RESUME, "__error__", "__error_source_node__"})


def allowed_types() -> frozenset[tuple[str, str]]:
    """The (module, name) of every public pydantic model and enum of :mod:`twinkg.agents.state`."""
    return frozenset(
        (cls.__module__, cls.__name__)
        for name, cls in vars(state).items()
        if inspect.isclass(cls)
        and cls.__module__ == state.__name__
        and not name.startswith("_")
        and issubclass(cls, BaseModel | enum.Enum)
    )


NAMESPACE: Final = "twinkg."
"""The prefix 0.2 put before every module path; 0.1 checkpoints name ``agents.state``."""

# The extension codes of LangGraph's msgpack format whose payload is a list that starts with a
# module path: constructors (0, 1, 2), a class method (3) and pydantic models (4, 5). Code 7
# wraps a nested value; 6 (a numpy array) names no module. Stored in every checkpoint, so they
# cannot change without a migration; a test pins them to langgraph's.
NAMED_TYPE_CODES: Final = frozenset({0, 1, 2, 3, 4, 5})
WRAPPED_VALUE_CODE: Final = 7


def legacy_modules() -> frozenset[str]:
    """The old (0.1) paths of the modules whose types a checkpoint may rebuild."""
    return frozenset(module.removeprefix(NAMESPACE) for module, _ in allowed_types())


class CheckpointSerializer(JsonPlusSerializer):
    """LangGraph's serializer restricted to :func:`allowed_types`, reading 0.1 checkpoints too.

    A stored value whose type names a module by its path before the ``twinkg.*`` namespace
    (``agents.state``) is read as if it named the new path (``twinkg.agents.state``), so the
    same allowlist admits it and the same class is rebuilt; nothing else about the value
    changes. New checkpoints are written under the new path only.
    """

    def __init__(self) -> None:
        super().__init__(allowed_msgpack_modules=sorted(allowed_types()))
        self._legacy = legacy_modules()
        names = "|".join(re.escape(m) for m in sorted(self._legacy, key=len, reverse=True))
        # A cheap test first: a payload that spells no old path is passed on untouched.
        self._mentions_legacy = re.compile(rf"(?<![\w.])(?:{names})(?![\w.])".encode())

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        """Decode a stored value, renaming 0.1 module paths in its msgpack types first."""
        kind, payload = data
        if kind == "msgpack" and self._mentions_legacy.search(payload):
            payload = self._renamed(payload)
        return super().loads_typed((kind, payload))

    def _renamed(self, payload: bytes) -> bytes:
        legacy = self._legacy

        def rename(code: int, inner: bytes) -> Ext:
            if code not in NAMED_TYPE_CODES and code != WRAPPED_VALUE_CODE:
                return Ext(code, inner)  # names no module and holds no typed value
            value = unpackb(inner, ext_hook=rename, option=OPT_NON_STR_KEYS)
            if code in NAMED_TYPE_CODES and isinstance(value, list) and value:
                module = value[0]
                if isinstance(module, str) and module in legacy:
                    value[0] = NAMESPACE + module
            return Ext(code, packb(value, option=OPT_NON_STR_KEYS))

        outer = unpackb(payload, ext_hook=rename, option=OPT_NON_STR_KEYS)
        return packb(outer, option=OPT_NON_STR_KEYS)


def serializer() -> JsonPlusSerializer:
    """The checkpoint serializer: rebuilds only :func:`allowed_types`, never pickles."""
    return CheckpointSerializer()


def open_checkpointer(target: str) -> contextlib.AbstractContextManager[BaseCheckpointSaver[str]]:
    """Open the checkpoint store ``target`` names; closing the context closes what it opened.

    ``target`` is the path of a SQLite file (a missing folder is created with mode 0700) or a
    ``postgresql://`` / ``postgres://`` URL. The tables are created if missing. Raises
    :class:`ConfigError` at once for anything else, or when Postgres is named and its extra
    is not installed.
    """
    target = target.strip()
    if not target:
        raise ConfigError("the checkpoint target is empty: give a SQLite file path or a URL")
    if "://" in target:
        scheme = urlsplit(target).scheme.lower()
        if scheme not in _POSTGRES_SCHEMES:
            raise ConfigError(
                f"checkpoint target scheme {scheme!r} is not supported: "
                "give a SQLite file path or a postgresql:// URL"
            )
        return _open_postgres(target, _postgres_saver_class())
    if target == ":memory:":
        raise ConfigError("an in-memory checkpoint store forgets every run: give a file path")
    return _open_sqlite(Path(target).expanduser())


@contextlib.contextmanager
def _open_sqlite(path: Path) -> Iterator[BaseCheckpointSaver[str]]:
    if path.is_dir():
        raise ConfigError(f"checkpoint target {path} is a folder, not a SQLite file")
    if not path.parent.exists():
        path.parent.mkdir(parents=True)
        path.parent.chmod(0o700)  # checkpoints hold plant data and approvals
    path.touch(mode=0o600, exist_ok=True)
    # LangGraph saves checkpoints from a background thread; the saver holds its own lock.
    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            saver = SqliteSaver(conn, serde=serializer())
            saver.setup()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"checkpoint target {path} is not a SQLite database: {exc}") from exc
        if mode != "wal":
            raise ConfigError(f"checkpoint target {path} cannot use WAL journaling ({mode})")
        yield saver
    finally:
        conn.close()


def _postgres_saver_class() -> Any:
    """PostgresSaver, imported only when Postgres is named: it is an optional extra."""
    try:
        from langgraph.checkpoint.postgres import (  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415
            PostgresSaver,
        )
    except ImportError as exc:
        raise ConfigError(
            "a postgresql:// checkpoint target needs the postgres extra: "
            "pip install 'twinkg[postgres]'"
        ) from exc
    return PostgresSaver


@contextlib.contextmanager
def _open_postgres(url: str, saver_class: Any) -> Iterator[BaseCheckpointSaver[str]]:
    import psycopg  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415 - the extra's

    with contextlib.ExitStack() as stack:
        try:
            saver = stack.enter_context(saver_class.from_conn_string(url))
            # from_conn_string takes no serializer; the saver reads it from this attribute.
            saver.serde = serializer()
            saver.setup()
        except psycopg.OperationalError as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StoreError(
                f"cannot reach the checkpoint database {_redact(url)}: {reason}"
            ) from exc
        yield saver


def _redact(url: str) -> str:
    """The URL without its password, fit for an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


class Halt(enum.StrEnum):
    """Why a run stopped before its end."""

    WAITING = "waiting"  # at an interrupt: a person has to answer (Command(resume=...))
    CUT_OFF = "cut_off"  # mid-run, with no open question (crash, kill, error): invoke with None


@dataclass(frozen=True)
class ThreadStatus:
    """A thread whose latest checkpoint still has nodes to run."""

    thread_id: str
    halt: Halt
    at: datetime  # when its latest checkpoint was written
    checkpoint_id: str
    next_nodes: tuple[str, ...]  # the nodes that run when it resumes, sorted
    scope: str | None = None  # the asset the run was scoped to (its state's ``scope``)

    @property
    def waiting(self) -> bool:
        """Whether the run waits for an answer to an interrupt (an approval)."""
        return self.halt is Halt.WAITING


def unfinished_threads(saver: BaseCheckpointSaver[Any]) -> list[ThreadStatus]:
    """The threads whose latest checkpoint has nodes left to run, sorted by thread id.

    Reads every stored checkpoint once (``saver.list(None)``), keeping the latest of each
    thread's root graph. The nodes left to run are read the way LangGraph's StateGraph triggers
    them (``__start__``, ``branch:to:<node>`` edges, ``Send``); waiting edges
    (``add_edge([a, b], c)``) are not read. A run stopped at a static breakpoint
    (``interrupt_before``) leaves no trace of it in the checkpoint and reads as cut off.
    """
    return _threads(saver)[0]


def forget_finished(saver: BaseCheckpointSaver[Any]) -> int:
    """Delete the checkpoints of every thread that ran to its end; how many threads.

    A finished run's checkpoints serve nothing more (its decision is in the provenance record),
    and every thread kept is read again by :func:`unfinished_threads`: the store would grow, and
    each look for cut-off runs slow down, with every run ever made. Runs waiting for a person and
    runs cut off are kept."""
    finished = _threads(saver)[1]
    for thread_id in finished:
        saver.delete_thread(thread_id)
    return len(finished)


def _threads(saver: BaseCheckpointSaver[Any]) -> tuple[list[ThreadStatus], list[str]]:
    """The unfinished threads, and the ids of the finished ones."""
    latest: dict[str, CheckpointTuple] = {}
    # Nothing else may call the saver while list() iterates: SqliteSaver holds its lock.
    for item in saver.list(None):
        configurable = item.config["configurable"]
        if configurable.get("checkpoint_ns", ""):
            continue  # a subgraph's checkpoint: its parent's tells whether the run finished
        thread_id = str(configurable["thread_id"])
        held = latest.get(thread_id)
        if held is None or item.checkpoint["id"] > held.checkpoint["id"]:
            latest[thread_id] = item
    found, finished = [], []
    for thread_id, item in sorted(latest.items()):
        nodes = _next_nodes(item.checkpoint)
        if not nodes:
            finished.append(thread_id)
            continue
        found.append(
            ThreadStatus(
                thread_id=thread_id,
                halt=Halt.WAITING if _waits(item) else Halt.CUT_OFF,
                at=datetime.fromisoformat(item.checkpoint["ts"]),
                checkpoint_id=item.checkpoint["id"],
                next_nodes=nodes,
                scope=_scope(item.checkpoint),
            )
        )
    return found, finished


def _scope(checkpoint: Checkpoint) -> str | None:
    """The ``scope`` of the run's state, where the checkpoint holds one."""
    scope = checkpoint["channel_values"].get("scope")
    return scope if isinstance(scope, str) else None


def _next_nodes(checkpoint: Checkpoint) -> tuple[str, ...]:
    """The nodes a checkpoint triggers, sorted.

    An edge's channel holds a value from the step that wrote it until its node has run (an
    ``EphemeralValue``), so a value in it means the node is still to run; the same holds for
    ``__start__`` (the input) and for the ``Send`` packets of the tasks channel.
    """
    values = checkpoint["channel_values"]
    nodes = {START} if START in values else set()
    nodes.update(c.removeprefix(BRANCH_TO) for c in values if c.startswith(BRANCH_TO))
    nodes.update(str(getattr(send, "node", send)) for send in values.get(TASKS) or ())
    return tuple(sorted(nodes))


def _waits(item: CheckpointTuple) -> bool:
    """Whether a task is stopped at a question that nobody has answered yet.

    A task that asked and has not finished has an interrupt write and no output write (the
    rule of LangGraph's ``read_task_statuses``). A caller's answer (``Command(resume=...)``) is
    saved as a write of its own: if no task has used it yet, invoking with None hands it to
    the question, so the run was cut off after the answer. Once a task has used an answer
    (its own resume write) and asked again, the caller's answer is the old one: it waits.
    """
    writes = {(str(task), str(channel)) for task, channel, _ in item.pending_writes or ()}
    answered = (NULL_TASK_ID, RESUME) in writes
    finished = {task for task, channel in writes if channel not in _CONTROL}
    return any(
        channel == INTERRUPT and task not in finished and (not answered or (task, RESUME) in writes)
        for task, channel in writes
    )
