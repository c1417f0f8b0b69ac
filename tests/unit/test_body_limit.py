"""The body limit reads ``Content-Length`` strictly: digits only, any number of them."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message, Receive, Scope, Send

from twinkg.api.http.body_limit import BodyLimitMiddleware


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _status(length: bytes) -> int:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/telemetry",
        "headers": [(b"content-length", length)],
    }
    asyncio.run(BodyLimitMiddleware(_ok, max_bytes=1000)(scope, receive, send))
    return int(sent[0]["status"])


@pytest.mark.parametrize(
    ("length", "status"),
    [
        (b"0", 204),
        (b"1000", 204),
        (b"0000000000000000000000000000000000005", 204),
        (b"1001", 413),
        (b"9" * 5000, 413),
        (b"+5", 400),
        (b" 5", 400),
        (b"5_0", 400),
        (b"-1", 400),
        (b"", 400),
        ("\u0665".encode(), 400),
    ],
)
def test_content_length_is_digits_only(length: bytes, status: int) -> None:
    assert _status(length) == status
