"""The LLM planner's transcript: what a model said and what its tools answered, as plain JSON.

A planning run appends every model reply and tool result to a :class:`Transcript`; in a replay,
each entry must equal the recorded one (:class:`~ontology.errors.ReplayInputsMissingError`
otherwise), and :class:`RecordedChatModel` answers with the recorded replies, so a decision an
LLM planned replays without a model or a network.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, ToolCall, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

from twinkg.agents.state import canonical_json
from twinkg.ontology.errors import ReplayInputsMissingError


def ai_entry(reply: AIMessage) -> dict[str, Any]:
    """A model reply as a transcript entry."""
    return {
        "role": "ai",
        "content": reply.content,
        "tool_calls": [
            {"id": c["id"], "name": c["name"], "args": c["args"]} for c in reply.tool_calls
        ],
        "invalid_tool_calls": [
            {"id": c["id"], "name": c["name"], "args": c["args"], "error": c["error"]}
            for c in reply.invalid_tool_calls
        ],
    }


def tool_entry(
    call_id: str, name: str, args: Mapping[str, Any], status: str, content: str
) -> dict[str, Any]:
    """A tool call's result as a transcript entry."""
    return {
        "role": "tool",
        "tool_call_id": call_id,
        "name": name,
        "args": dict(args),
        "status": status,
        "content": content,
    }


def tool_message(entry: Mapping[str, Any]) -> ToolMessage:
    """A tool entry as the model sees it."""
    return ToolMessage(
        content=str(entry["content"]),
        tool_call_id=str(entry["tool_call_id"]),
        name=entry["name"],
        status="error" if entry["status"] == "error" else "success",
    )


def plain_json(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` as it reads back from JSON (tuples become lists), so records compare equal."""
    plain: dict[str, Any] = json.loads(json.dumps(value, ensure_ascii=False, default=str))
    return plain


class Transcript:
    """The entries of one planning run; in a replay, each must equal the recorded one."""

    def __init__(self, recorded: list[dict[str, Any]] | None) -> None:
        self.entries: list[dict[str, Any]] = []
        self._recorded = recorded

    def add(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append ``entry`` as plain JSON; in a replay it must equal the recorded one."""
        entry = plain_json(entry)
        if self._recorded is not None:
            recorded = self._next()
            if recorded != entry:
                raise ReplayInputsMissingError(
                    f"replay diverges at transcript entry {len(self.entries)}: "
                    f"recorded {canonical_json(recorded)}, replayed {canonical_json(entry)}"
                )
        self.entries.append(entry)
        return entry

    def recorded_tool(self, call_id: str, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """The recorded result of this call; it must be the next entry and match the call."""
        expected = plain_json(tool_entry(call_id, name, args, "", ""))
        recorded = self._next()
        same = {k: recorded.get(k) for k in ("role", "tool_call_id", "name", "args")}
        if same != {k: expected[k] for k in same}:
            raise ReplayInputsMissingError(
                f"replay diverges at transcript entry {len(self.entries)}: the model called "
                f"{name} with {canonical_json(expected['args'])}, the record has {recorded}"
            )
        return dict(recorded)

    def finish(self) -> None:
        """In a replay, the run must have used the whole record."""
        if self._recorded is not None and len(self.entries) != len(self._recorded):
            raise ReplayInputsMissingError(
                f"replay ended after {len(self.entries)} transcript entries; "
                f"the record has {len(self._recorded)}"
            )

    def _next(self) -> dict[str, Any]:
        assert self._recorded is not None
        if len(self.entries) >= len(self._recorded):
            raise ReplayInputsMissingError(
                f"replay needs transcript entry {len(self.entries)}; the record ends before it"
            )
        return self._recorded[len(self.entries)]


class RecordedChatModel(BaseChatModel):
    """Replays the AI outputs of a planner transcript, in order; needs no network.

    The n-th call answers with the n-th recorded AI entry, n being the number of AI messages
    in the conversation it is given, so the model itself holds no state between calls.
    """

    transcript: list[dict[str, Any]]

    @property
    def _llm_type(self) -> str:
        return "twinkg-recorded"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        replies = [e for e in self.transcript if e.get("role") == "ai"]
        n = sum(isinstance(m, AIMessage) for m in messages)
        if n >= len(replies):
            raise ReplayInputsMissingError(
                f"the transcript records {len(replies)} model replies; the replay asks for more"
            )
        reply = replies[n]
        message = AIMessage(
            content=reply.get("content", ""),
            tool_calls=[
                ToolCall(name=c["name"], args=c["args"], id=c["id"], type="tool_call")
                for c in reply.get("tool_calls", [])
            ],
            invalid_tool_calls=reply.get("invalid_tool_calls", []),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """The recording already holds the replies: the tools change nothing."""
        return self
