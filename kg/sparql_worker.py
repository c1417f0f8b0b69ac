"""A SPARQL worker process: runs queries on the newest published snapshot, one at a time.

Started by :mod:`kg.sparql_pool` as ``python -m twinkg.kg.sparql_worker <snapshots folder> <memory
limit in bytes>``. Everything a query can do to a process stays in this one: a panic in
Oxigraph (pyoxigraph 0.5.13 aborts the process when an ``ORDER BY`` over mixed literals breaks
the sort's total order), an allocation past the memory limit (``RLIMIT_AS``: Rust aborts, Python
raises ``MemoryError``), a sort that would run for hours (the pool kills the process at the
deadline). The parent sees the pipe close, reports the query's failure and starts another.

The protocol, on stdin and stdout: a frame is a 4-byte big-endian length and a JSON header, then
an 8-byte length and a body. The worker first sends ``{"pid": …}``. A request's header holds the
``format`` (a media type), ``row_cap``, ``byte_cap`` and ``timeout_s``; its body is the query
text. An answer's header holds ``ok`` and either ``media_type``, ``rows``, ``truncated``,
``snapshot`` and ``applied`` (the snapshot's number and its change log ``seq``) with the
serialised answer as body, or an error ``code`` and ``message``. The worker only ever runs
queries that :func:`kg.sparql_query.check` accepted, and only on read-only snapshots.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pyoxigraph as ox

from twinkg.kg import sparql_snapshots
from twinkg.kg.sparql_results import Format, evaluate
from twinkg.kg.sparql_store import read_state
from twinkg.ontology.errors import ProjectionError, TwinKGError

MAX_HEADER = 1 << 20
"""The largest header either side accepts (a header is a few hundred bytes)."""


class ProtocolError(Exception):
    """The other side closed the pipe or sent something that is not a frame."""


def send(out: BinaryIO, header: dict[str, Any], body: bytes = b"") -> None:
    """Write one frame and flush it."""
    encoded = json.dumps(header).encode()
    out.write(struct.pack(">I", len(encoded)) + encoded + struct.pack(">Q", len(body)))
    out.write(body)
    out.flush()


def receive(read: Callable[[int], bytes], *, max_body: int) -> tuple[dict[str, Any], bytes]:
    """Read one frame with ``read`` (which returns exactly the bytes asked for, or raises
    :class:`ProtocolError` at end of file); :class:`ProtocolError` on a frame over the
    limits."""
    (size,) = struct.unpack(">I", read(4))
    if size > MAX_HEADER:
        raise ProtocolError(f"a header of {size} bytes")
    header = json.loads(read(size))
    (length,) = struct.unpack(">Q", read(8))
    if length > max_body:
        raise ProtocolError(f"a body of {length} bytes (limit {max_body})")
    if not isinstance(header, dict):
        raise ProtocolError("a header that is not an object")
    return header, read(length) if length else b""


def reader(source: BinaryIO) -> Callable[[int], bytes]:
    """A ``read`` for :func:`receive` over a buffered binary stream."""

    def read(size: int) -> bytes:
        data = source.read(size)
        if len(data) != size:
            raise ProtocolError("the pipe closed")
        return data

    return read


def _format(media_type: str) -> Format:
    found: Format | None = ox.QueryResultsFormat.from_media_type(media_type)
    if found is None:
        found = ox.RdfFormat.from_media_type(media_type)
    if found is None:
        raise ProjectionError(f"no result format for {media_type!r}")
    return found


class _Snapshot:
    """The snapshot this worker reads, moved to the newest before each query."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._pinned: sparql_snapshots.Pinned | None = None
        self._store: ox.Store | None = None
        self.applied = 0

    def newest(self) -> tuple[ox.Store, int]:
        newest = sparql_snapshots.newest(self._root)
        if self._pinned is None or self._store is None or newest != self._pinned.number:
            pinned = sparql_snapshots.pin(self._root)
            if pinned is None:
                raise ProjectionError("no projection snapshot is published yet")
            store = ox.Store.read_only(str(pinned.path))
            state = read_state(store)
            old, self._pinned, self._store = self._pinned, pinned, store
            self.applied = 0 if state is None else state.applied
            if old is not None:
                old.release()
        return self._store, self._pinned.number


def _answer(snapshot: _Snapshot, header: dict[str, Any], text: str) -> tuple[dict[str, Any], bytes]:
    deadline = time.monotonic() + float(header["timeout_s"])
    store, number = snapshot.newest()
    try:
        results = store.query(text, named_graphs=[])
    except SyntaxError as exc:  # rdflib's grammar took what Oxigraph's does not
        reason = str(exc).splitlines()[0] if str(exc) else "syntax error"
        return {"ok": False, "code": "sparql_invalid", "message": f"invalid SPARQL: {reason}"}, b""
    done = evaluate(
        results,
        _format(str(header["format"])),
        row_cap=int(header["row_cap"]),
        byte_cap=int(header["byte_cap"]),
        deadline=deadline,
    )
    meta = {"media_type": done.media_type, "rows": done.rows, "truncated": done.truncated}
    return {"ok": True, **meta, "snapshot": number, "applied": snapshot.applied}, done.body


def _watch_parent(parent: int) -> None:
    """End this process when its parent is gone (reparented), even mid-query."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def _limit_memory(limit: int) -> None:
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def serve(root: Path, *, memory: int, parent: int) -> None:
    """Answer requests on stdin until it closes."""
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    _limit_memory(memory)
    read, out = reader(sys.stdin.buffer), sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the protocol
    send(out, {"pid": os.getpid()})
    snapshot = _Snapshot(root)
    while True:
        try:
            header, body = receive(read, max_body=MAX_HEADER)
        except ProtocolError:
            return
        try:
            reply, payload = _answer(snapshot, header, body.decode("utf-8"))
        except MemoryError:
            send(out, {"ok": False, "code": "sparql_memory_limit", "message": "out of memory"})
            return  # a process that ran out of memory is not trusted with the next query
        except TwinKGError as exc:
            reply, payload = {"ok": False, "code": exc.code, "message": str(exc)}, b""
        except Exception as exc:  # a request's boundary: say what failed and serve the next
            message = f"the query failed in its worker: {type(exc).__name__}: {exc}"
            reply, payload = {"ok": False, "code": "sparql_worker_failed", "message": message}, b""
        send(out, reply, payload)


def main() -> None:
    """``python -m twinkg.kg.sparql_worker <snapshots folder> <memory limit in bytes>``."""
    serve(Path(sys.argv[1]), memory=int(sys.argv[2]), parent=os.getppid())


if __name__ == "__main__":
    main()
