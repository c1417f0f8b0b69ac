"""The optional LLM planner: any LangChain chat model proposes one action through tools.

The model is never trusted. It may read the graph through a read-only, row-capped Cypher tool and
must answer through ``propose_action``, whose arguments are validated into a
:class:`~agents.state.ProposedAction` here; confidence and time come from the case, never from
the model. The guard then judges the proposal like any other.

Everything the model said and every tool result goes into :attr:`Plan.transcript` as plain JSON,
so :meth:`LlmPlanner.replaying` reproduces the plan without a model or a graph, and refuses a
transcript that no longer fits (:class:`~ontology.errors.ReplayInputsMissingError`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
)
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from twinkg.agents.llm_transcript import (
    RecordedChatModel,
    Transcript,
    ai_entry,
    plain_json,
    tool_entry,
    tool_message,
)
from twinkg.agents.planning import Plan, PlanningCase
from twinkg.agents.state import ActionKind, Candidate, ProposedAction, canonical_json
from twinkg.kg.store import QueryResult
from twinkg.ontology.errors import ConfigError, TwinKGError
from twinkg.ontology.vocab import Label, RelType

PROMPT_VERSION = "plan-2"

CypherRunner = Callable[[str, dict[str, Any]], QueryResult]
"""Read-only Cypher with parameters, e.g. ``lambda q, p: store.read_only(q, p, row_cap=50)``;
raises a :class:`TwinKGError` (``QueryRejectedError``) for what it refuses."""

CYPHER = "cypher"
PROPOSE = "propose_action"
_SETPOINT_FIELDS = ("quantity_kind", "current_setpoint", "proposed_setpoint", "ramp_s")
# Local OpenAI-compatible servers need no key, but the client wants one; never the environment's.
_NO_KEY = "unused"


class _CypherArgs(BaseModel):
    """Run one read-only Cypher query on the plant's knowledge graph."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="Cypher that only reads; values go in as $parameters")
    params: dict[str, Any] = Field(default_factory=dict, description="the query's $parameters")


class _ProposeArgs(BaseModel):
    """Propose the one action for the case's asset. The guard judges it against safety shapes."""

    # Extra arguments (confidence, proposed_at, …) are dropped: they are TwinKG's to set.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    kind: ActionKind = Field(description="what to do")
    target: str = Field(description="IRI of the case's asset")
    quantity_kind: str | None = Field(None, description="setpoint_change: the setpoint's IRI")
    current_setpoint: float | None = Field(None, description="setpoint_change: value now")
    proposed_setpoint: float | None = Field(None, description="setpoint_change: value wanted")
    ramp_s: float | None = Field(None, description="setpoint_change: ramp time in seconds")
    failure_mode: str | None = Field(None, description="IRI of the hypothesis it addresses")
    rationale: str = Field(description="why, in one or two sentences")


def _tool(schema: type[BaseModel], name: str) -> dict[str, Any]:
    tool = convert_to_openai_tool(schema)
    tool["function"]["name"] = name
    return tool


_CYPHER_TOOL = _tool(_CypherArgs, CYPHER)
_PROPOSE_TOOL = _tool(_ProposeArgs, PROPOSE)

_PROMPT = """\
You are the planning assistant of TwinKG, the knowledge graph of an industrial plant's digital \
twin. Something was observed on one asset and needs a decision. Propose exactly one action for \
that asset by calling the `{propose}` tool.

You only propose. TwinKG's guard judges every proposal afterwards against the plant's SHACL \
safety shapes (operating envelopes, rates of change, interlocks, standby availability, approval \
policies): it blocks the action, asks a person to approve it, or allows it. Stay inside the \
envelopes and ramp limits of the case. You cannot set the action's confidence: TwinKG takes it \
from the data trust and the hypothesis score.

Action kinds: setpoint_change (needs quantity_kind, current_setpoint, proposed_setpoint and \
ramp_s in seconds), switch_to_standby, controlled_stop, work_order, restart (only for a case \
whose finding is "restart_due": the asset a controlled stop took down may start again), \
gather_data (for a restart_due case: keep it stopped). target is the case's asset IRI; \
failure_mode, if given, is the IRI of one of the case's hypotheses. A tool result that starts \
with "error" means the call was refused; correct it and call again.
{cypher}
The case (JSON):
{case}
"""

_CYPHER_HELP = """
The `{cypher}` tool runs read-only Cypher on the plant's graph (at most {row_cap} rows; writes \
are refused). Each node has its IRI in the property `uri`. Node labels: {labels}. Relationship \
types: {types}.
"""


def system_prompt(case: PlanningCase, *, tools: Sequence[str], row_cap: int) -> str:
    """The system prompt of :data:`PROMPT_VERSION` for ``case`` with the tools offered."""
    cypher = ""
    if CYPHER in tools:
        cypher = _CYPHER_HELP.format(
            cypher=CYPHER,
            row_cap=row_cap,
            labels=", ".join(sorted(Label)),
            types=", ".join(sorted(RelType)),
        )
    case_json = canonical_json(case.model_dump(mode="json"))
    return _PROMPT.format(propose=PROPOSE, cypher=cypher, case=case_json)


class LlmPlanner:
    """A chat model that proposes through tools; its proposal is checked, never trusted."""

    kind = "llm"

    def __init__(
        self,
        model: BaseChatModel,
        *,
        cypher: CypherRunner | None,
        model_name: str,
        prompt_version: str = PROMPT_VERSION,
        max_steps: int = 6,
        row_cap: int = 50,
    ) -> None:
        """``cypher``: the read-only runner (``None``: the model gets no graph tool)."""
        self._model = model
        self._cypher = cypher
        self.model_name = model_name
        self.prompt_version = prompt_version
        self._max_steps = max_steps
        self._row_cap = row_cap
        self._recorded: list[dict[str, Any]] | None = None

    @classmethod
    def replaying(
        cls,
        transcript: Sequence[Mapping[str, Any]],
        *,
        model_name: str,
        prompt_version: str = PROMPT_VERSION,
        max_steps: int = 6,
        row_cap: int = 50,
    ) -> LlmPlanner:
        """A planner that replays ``transcript``: recorded model outputs and query results."""
        recorded = [plain_json(dict(entry)) for entry in transcript]
        planner = cls(
            RecordedChatModel(transcript=recorded),
            cypher=None,
            model_name=model_name,
            prompt_version=prompt_version,
            max_steps=max_steps,
            row_cap=row_cap,
        )
        planner._recorded = recorded
        return planner

    def plan(self, case: PlanningCase) -> Plan:
        """Ask the model for a proposal, at most ``max_steps`` replies; ``action`` None if none."""
        run = Transcript(self._recorded)
        tools = self._tool_names()
        prompt = system_prompt(case, tools=tools, row_cap=self._row_cap)
        run.add(
            {
                "role": "system",
                "prompt_version": self.prompt_version,
                "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest(),
                "tools": list(tools),
            }
        )
        schemas = [_CYPHER_TOOL if name == CYPHER else _PROPOSE_TOOL for name in tools]
        bound = self._model.bind_tools(schemas)
        messages: list[BaseMessage] = [
            SystemMessage(prompt),
            HumanMessage(f"Propose one action for {case.asset}."),
        ]
        action: ProposedAction | None = None
        for step in range(self._max_steps):
            reply = _with_ids(bound.invoke(messages), step)
            run.add(ai_entry(reply))
            messages.append(reply)
            if not reply.tool_calls and not reply.invalid_tool_calls:
                break  # the model stopped talking without a proposal
            for bad in reply.invalid_tool_calls:
                text = f"error: the arguments are not valid JSON: {bad['error']}"
                entry = tool_entry(bad["id"] or "", bad["name"] or "", {}, "error", text)
                messages.append(tool_message(run.add(entry)))
            for call in reply.tool_calls:
                entry, action = self._call(call, case, tools, run)
                messages.append(tool_message(run.add(entry)))
                if action is not None:
                    break
            if action is not None:
                break
        run.finish()
        candidates = (
            []
            if action is None
            else [Candidate(action=action, utility=0.0, risk_reduction=0.0, throughput=0.0)]
        )  # a model does not score its options; the rule planner does
        return Plan(
            planner=self.kind,
            candidates=candidates,
            action=action,
            model=self.model_name,
            prompt_version=self.prompt_version,
            transcript=run.entries,
        )

    def _tool_names(self) -> tuple[str, ...]:
        if self._recorded is None:
            return (CYPHER, PROPOSE) if self._cypher is not None else (PROPOSE,)
        first = self._recorded[0] if self._recorded else {}
        return tuple(first.get("tools", ())) or (PROPOSE,)

    def _call(
        self, call: ToolCall, case: PlanningCase, tools: Sequence[str], run: Transcript
    ) -> tuple[dict[str, Any], ProposedAction | None]:
        """The tool result of one call, and the action if it was a valid proposal."""
        call_id, name, args = call["id"] or "", call["name"], call["args"]
        if name == PROPOSE:
            action, status, content = _propose(args, case)
            return tool_entry(call_id, name, args, status, content), action
        if name == CYPHER and CYPHER in tools:
            if self._recorded is not None:
                return run.recorded_tool(call_id, name, args), None
            status, content = self._query(args)
            return tool_entry(call_id, name, args, status, content), None
        known = ", ".join(tools)
        return tool_entry(
            call_id, name, args, "error", f"error: no tool {name!r}; the tools are {known}"
        ), None

    def _query(self, args: Mapping[str, Any]) -> tuple[str, str]:
        """Run the model's Cypher; refusals and failures go back to the model as text."""
        assert self._cypher is not None  # only offered with a runner
        try:
            parsed = _CypherArgs.model_validate(args)
        except ValidationError as exc:
            return "error", f"error: {_problems(exc)}"
        try:
            result = self._cypher(parsed.query, parsed.params)
        except TwinKGError as exc:
            return "error", f"error ({exc.code}): {exc}"
        rows = result.rows[: self._row_cap]
        body = {
            "columns": list(result.columns),
            "rows": [dict(zip(result.columns, row, strict=True)) for row in rows],
            "truncated": result.truncated or len(result.rows) > self._row_cap,
        }
        return "success", json.dumps(body, ensure_ascii=False, default=str)


def _propose(args: Mapping[str, Any], case: PlanningCase) -> tuple[ProposedAction | None, str, str]:
    """Validate a proposal against the case: (action or None, status, text for the model)."""
    try:
        parsed = _ProposeArgs.model_validate(args)
    except ValidationError as exc:
        return None, "error", f"error: {_problems(exc)}"
    problems: list[str] = []
    if parsed.target != case.asset:
        problems.append(f"target must be the case's asset {case.asset}")
    given = [f for f in _SETPOINT_FIELDS if getattr(parsed, f) is not None]
    if parsed.kind is ActionKind.SETPOINT_CHANGE:
        missing = [f for f in _SETPOINT_FIELDS if f not in given]
        if missing:
            problems.append(f"setpoint_change needs {', '.join(missing)}")
        if parsed.ramp_s is not None and parsed.ramp_s < 0:
            problems.append("ramp_s must not be negative")
    elif given:
        problems.append(f"{parsed.kind.value} takes no {', '.join(given)}")
    modes = [h.mode for h in case.hypotheses]
    if parsed.failure_mode is not None and parsed.failure_mode not in modes:
        problems.append(f"failure_mode must be one of the hypotheses: {', '.join(modes) or 'none'}")
    if not parsed.rationale.strip():
        problems.append("rationale must not be empty")
    if problems:
        return None, "error", "error: " + "; ".join(problems)
    action = ProposedAction(
        kind=parsed.kind,
        target=case.asset,
        confidence=case.confidence,
        proposed_at=case.as_of,
        **parsed.model_dump(exclude={"kind", "target"}),
    )
    ignored = sorted(set(args) - set(_ProposeArgs.model_fields))
    body: dict[str, Any] = {"accepted": True, "action": action.model_dump(mode="json")}
    if ignored:
        body["ignored"] = ignored  # the model is told it cannot set them
    body["note"] = "the guard now judges this action against the safety shapes"
    return action, "success", json.dumps(body, ensure_ascii=False)


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()
    )


def _with_ids(reply: AIMessage, step: int) -> AIMessage:
    """The reply with an id on every tool call (some servers omit them; results need them)."""
    calls, bad = reply.tool_calls, reply.invalid_tool_calls
    if all(c["id"] for c in calls) and all(c["id"] for c in bad):
        return reply
    return reply.model_copy(
        update={
            "tool_calls": [{**c, "id": c["id"] or f"call_{step}_{i}"} for i, c in enumerate(calls)],
            "invalid_tool_calls": [
                {**c, "id": c["id"] or f"invalid_{step}_{i}"} for i, c in enumerate(bad)
            ],
        }
    )


def chat_model_from_settings(
    base_url: str,
    model: str,
    api_key: str | None,
    *,
    temperature: float = 0.0,
    timeout_s: float = 60.0,
) -> BaseChatModel:
    """An OpenAI-compatible chat model (``langchain-openai``, the ``llm`` extra).

    ``api_key`` None is for local servers that need none; the environment's ``OPENAI_API_KEY``
    is never read, so a key cannot leak to a ``base_url`` it was not meant for.
    """
    try:
        # Lazy: langchain-openai is the optional "llm" extra.
        from langchain_openai import ChatOpenAI  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError(
            "the LLM planner needs langchain-openai; install it with: pip install 'twinkg[llm]'"
        ) from exc
    chat: BaseChatModel = ChatOpenAI(
        model=model,
        base_url=base_url,
        api_key=SecretStr(api_key or _NO_KEY),
        temperature=temperature,
        timeout=timeout_s,
    )
    return chat
