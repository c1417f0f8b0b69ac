"""The LLM planner: a scripted chat model drives the tools; the planner checks, records, replays.

No network and no Neo4j: the chat model is a small scripted ``BaseChatModel`` that answers with
fixed AI messages and keeps every conversation it was shown, and the Cypher runner is a plain
function. The tests assert on the plan and on what the model saw.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from twinkg.agents.llm_planner import PROMPT_VERSION, LlmPlanner, chat_model_from_settings
from twinkg.agents.llm_transcript import RecordedChatModel
from twinkg.agents.planning import Envelope, PlanningCase
from twinkg.agents.state import ActionKind, Finding, Hypothesis, Symptom
from twinkg.kg.store import QueryResult
from twinkg.ontology.errors import ConfigError, QueryRejectedError, ReplayInputsMissingError

EX = "https://example.org/plant#"
ASSET = EX + "P-101"
MODE = EX + "CavitationMode"
FLOW = "http://qudt.org/vocab/quantitykind/VolumeFlowRate"
AS_OF = "2024-05-01T10:00:00+00:00"


class ScriptedChatModel(BaseChatModel):
    """Answers with ``replies`` in order; keeps each conversation and the tools it was bound to."""

    replies: list[AIMessage]
    seen: list[list[BaseMessage]] = Field(default_factory=list)
    tools: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.seen.append(list(messages))
        if len(self.seen) > len(self.replies):
            raise AssertionError("the planner asked for more replies than were scripted")
        return ChatResult(generations=[ChatGeneration(message=self.replies[len(self.seen) - 1])])

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        self.tools = [convert_to_openai_tool(t) for t in tools]
        return self


def ai(*calls: tuple[str, dict[str, Any]], content: str = "") -> AIMessage:
    """An AI message with tool calls ``(name, args)``, ids c0, c1, …"""
    return AIMessage(
        content=content,
        tool_calls=[{"name": n, "args": a, "id": f"c{i}"} for i, (n, a) in enumerate(calls)],
    )


class Runner:
    """A plain Cypher runner: refuses writes like the store does, returns fixed rows otherwise."""

    def __init__(self, rows: tuple[tuple[Any, ...], ...] = ((60.0, 110.0, 0.5),)) -> None:
        self.rows = rows
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, cypher: str, params: dict[str, Any]) -> QueryResult:
        self.calls.append((cypher, params))
        if any(word in cypher.upper() for word in ("CREATE", "MERGE", "DELETE", " SET ")):
            raise QueryRejectedError("only read queries are allowed here; this one is of type 'w'")
        return QueryResult(("minimum", "maximum", "max_rate"), self.rows, False)


@pytest.fixture
def case() -> PlanningCase:
    """A running pump, cavitation the top hypothesis, a flow envelope of 60–110."""
    return PlanningCase(
        asset=ASSET,
        tag="P-101",
        criticality="high",
        status="running",
        as_of=AS_OF,
        findings=[Finding(uri=EX + "A1", kind="anomaly", asset=ASSET, score=0.9)],
        hypotheses=[
            Hypothesis(mode=MODE, code="CAV", score=0.8, explained=[FLOW], rank=1),
        ],
        symptoms=[
            Symptom(
                sensor=EX + "FT-101",
                quantity_kind=FLOW,
                baseline_mean=100.0,
                baseline_std=2.0,
                mean=92.0,
                shift=-4.0,
                spread=1.0,
                trust=0.9,
            ),
        ],
        mitigations={MODE: ["setpoint_change", "work_order"]},
        envelopes=[
            Envelope(uri=EX + "Env1", quantity_kind=FLOW, minimum=60.0, maximum=110.0, max_rate=0.5)
        ],
        confidence=0.72,
        urgency=0.6,
    )


QUERY = "MATCH (a {uri: $asset})-[:HAS_ENVELOPE]->(e) RETURN e.minimum, e.maximum, e.maxRate"
SETPOINT = {
    "kind": "setpoint_change",
    "target": ASSET,
    "quantity_kind": FLOW,
    "current_setpoint": 100.0,
    "proposed_setpoint": 90.0,
    "ramp_s": 120.0,
    "failure_mode": MODE,
    "rationale": "cavitation: reduce flow inside the envelope",
}


def planner(model: BaseChatModel, runner: Runner | None, **options: Any) -> LlmPlanner:
    return LlmPlanner(model, cypher=runner, model_name="scripted-1", **options)


def tool_results(messages: Sequence[BaseMessage]) -> list[ToolMessage]:
    return [m for m in messages if isinstance(m, ToolMessage)]


# ---- a live run ----


def test_valid_proposal_after_one_query(case: PlanningCase) -> None:
    runner = Runner()
    model = ScriptedChatModel(
        replies=[
            ai(("cypher", {"query": QUERY, "params": {"asset": ASSET}})),
            ai(("propose_action", SETPOINT)),
        ]
    )
    plan = planner(model, runner).plan(case)

    assert plan.planner == "llm"
    assert plan.model == "scripted-1"
    assert plan.prompt_version == PROMPT_VERSION
    assert plan.action is not None
    assert plan.action.kind is ActionKind.SETPOINT_CHANGE
    assert (plan.action.current_setpoint, plan.action.proposed_setpoint, plan.action.ramp_s) == (
        100.0,
        90.0,
        120.0,
    )
    assert (plan.action.target, plan.action.failure_mode) == (ASSET, MODE)
    assert (plan.action.confidence, plan.action.proposed_at) == (0.72, AS_OF)
    assert [(c.action, c.utility) for c in plan.candidates] == [(plan.action, 0.0)]
    assert runner.calls == [(QUERY, {"asset": ASSET})]

    # What the model was shown: the role, the guard, the case, both tools, then the rows.
    assert [t["function"]["name"] for t in model.tools] == ["cypher", "propose_action"]
    assert len(model.seen) == 2
    system = model.seen[0][0]
    assert isinstance(system, SystemMessage)
    assert "guard" in system.text and "safety shapes" in system.text
    assert '"asset":"' + ASSET + '"' in system.text
    assert '"confidence":0.72' in system.text
    (rows,) = tool_results(model.seen[1])
    assert rows.tool_call_id == "c0" and rows.status == "success"
    assert json.loads(rows.text) == {
        "columns": ["minimum", "maximum", "max_rate"],
        "rows": [{"minimum": 60.0, "maximum": 110.0, "max_rate": 0.5}],
        "truncated": False,
    }

    # The transcript: the prompt's fingerprint, then each model output and tool result in order.
    assert [(e["role"], e.get("name")) for e in plan.transcript] == [
        ("system", None),
        ("ai", None),
        ("tool", "cypher"),
        ("ai", None),
        ("tool", "propose_action"),
    ]
    assert plan.transcript[0]["prompt_version"] == PROMPT_VERSION
    assert plan.transcript[1]["tool_calls"] == [
        {"id": "c0", "name": "cypher", "args": {"query": QUERY, "params": {"asset": ASSET}}}
    ]
    assert json.loads(json.dumps(plan.transcript)) == plan.transcript


def test_rows_are_capped_for_the_model(case: PlanningCase) -> None:
    runner = Runner(rows=tuple((float(i), 110.0, 0.5) for i in range(5)))
    model = ScriptedChatModel(
        replies=[ai(("cypher", {"query": QUERY, "params": {}})), ai(content="done")]
    )
    planner(model, runner, row_cap=2).plan(case)
    (rows,) = tool_results(model.seen[1])
    body = json.loads(rows.text)
    assert [r["minimum"] for r in body["rows"]] == [0.0, 1.0]
    assert body["truncated"] is True
    assert "at most 2 rows" in model.seen[0][0].text


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"kind": "shut_everything_down"}, "kind: Input should be"),
        ({"target": EX + "P-102"}, "target must be the case's asset " + ASSET),
        (
            {"ramp_s": None, "proposed_setpoint": None},
            "setpoint_change needs proposed_setpoint, ramp_s",
        ),
        ({"failure_mode": EX + "Invented"}, "failure_mode must be one of the hypotheses: " + MODE),
        ({"kind": "controlled_stop"}, "controlled_stop takes no quantity_kind"),
        ({"ramp_s": -5.0}, "ramp_s must not be negative"),
        ({"rationale": "  "}, "rationale must not be empty"),
    ],
)
def test_invalid_proposal_is_corrected_on_the_second_try(
    case: PlanningCase, change: dict[str, Any], complaint: str
) -> None:
    model = ScriptedChatModel(
        replies=[ai(("propose_action", {**SETPOINT, **change})), ai(("propose_action", SETPOINT))]
    )
    plan = planner(model, Runner()).plan(case)

    (refusal,) = tool_results(model.seen[1])
    assert refusal.status == "error"
    assert refusal.text.startswith("error")
    assert complaint in refusal.text
    assert plan.action is not None and plan.action.proposed_setpoint == 90.0
    assert [e["status"] for e in plan.transcript if e["role"] == "tool"] == ["error", "success"]


def test_a_model_that_never_proposes_gives_no_action(case: PlanningCase) -> None:
    model = ScriptedChatModel(replies=[ai(content="I would rather not decide.")])
    plan = planner(model, Runner()).plan(case)
    assert plan.action is None
    assert plan.candidates == []
    assert len(model.seen) == 1
    assert plan.transcript[-1] == {
        "role": "ai",
        "content": "I would rather not decide.",
        "tool_calls": [],
        "invalid_tool_calls": [],
    }


def test_max_steps_bounds_the_conversation(case: PlanningCase) -> None:
    runner = Runner()
    query = ai(("cypher", {"query": QUERY, "params": {}}))
    model = ScriptedChatModel(replies=[query] * 10)
    plan = planner(model, runner, max_steps=3).plan(case)
    assert plan.action is None
    assert len(model.seen) == 3
    assert len(runner.calls) == 3


def test_a_write_query_comes_back_as_a_refusal(case: PlanningCase) -> None:
    write = "MATCH (a {uri: $asset}) SET a.status = 'stopped'"
    model = ScriptedChatModel(
        replies=[
            ai(("cypher", {"query": write, "params": {"asset": ASSET}})),
            ai(
                (
                    "propose_action",
                    {
                        "kind": "gather_data",
                        "target": ASSET,
                        "rationale": "cannot change the graph; watch instead",
                    },
                )
            ),
        ]
    )
    plan = planner(model, Runner()).plan(case)

    (refusal,) = tool_results(model.seen[1])
    assert refusal.status == "error"
    assert refusal.text == (
        "error (query_rejected): only read queries are allowed here; this one is of type 'w'"
    )
    assert plan.action is not None and plan.action.kind is ActionKind.GATHER_DATA


def test_the_model_cannot_set_confidence_or_time(case: PlanningCase) -> None:
    claim = {**SETPOINT, "confidence": 0.99, "proposed_at": "1999-01-01T00:00:00+00:00"}
    model = ScriptedChatModel(replies=[ai(("propose_action", claim))])
    plan = planner(model, Runner()).plan(case)

    assert plan.action is not None
    assert plan.action.confidence == case.confidence == 0.72
    assert plan.action.proposed_at == AS_OF
    tool_props = model.tools[1]["function"]["parameters"]["properties"]
    assert "confidence" not in tool_props and "proposed_at" not in tool_props
    result = json.loads(plan.transcript[-1]["content"])
    assert result["ignored"] == ["confidence", "proposed_at"]
    assert result["action"]["confidence"] == 0.72


def test_without_a_runner_there_is_no_cypher_tool(case: PlanningCase) -> None:
    model = ScriptedChatModel(
        replies=[ai(("cypher", {"query": QUERY, "params": {}})), ai(content="stop")]
    )
    plan = planner(model, None).plan(case)
    assert [t["function"]["name"] for t in model.tools] == ["propose_action"]
    assert "cypher" not in model.seen[0][0].text.split("`propose_action`")[1]
    (refusal,) = tool_results(model.seen[1])
    assert refusal.text == "error: no tool 'cypher'; the tools are propose_action"
    assert plan.action is None


def test_malformed_tool_arguments_come_back_as_an_error(case: PlanningCase) -> None:
    broken = AIMessage(
        content="",
        invalid_tool_calls=[
            {
                "name": "propose_action",
                "args": "{kind: ",
                "id": "b0",
                "error": "Expecting property name",
                "type": "invalid_tool_call",
            }
        ],
    )
    model = ScriptedChatModel(replies=[broken, ai(("propose_action", SETPOINT))])
    plan = planner(model, Runner()).plan(case)
    (refusal,) = tool_results(model.seen[1])
    assert (refusal.tool_call_id, refusal.status) == ("b0", "error")
    assert "not valid JSON" in refusal.text
    assert plan.action is not None


# ---- replay ----


def live_plan(case: PlanningCase) -> tuple[Runner, Any]:
    runner = Runner()
    model = ScriptedChatModel(
        replies=[
            ai(("cypher", {"query": QUERY, "params": {"asset": ASSET}})),
            ai(("propose_action", {**SETPOINT, "target": EX + "P-102"})),
            ai(("propose_action", SETPOINT), content="corrected"),
        ]
    )
    return runner, planner(model, runner).plan(case)


def test_replay_reproduces_the_plan_without_model_or_graph(case: PlanningCase) -> None:
    runner, plan = live_plan(case)
    stored = json.loads(json.dumps(plan.transcript))  # as a provenance record would keep it
    replayed = LlmPlanner.replaying(stored, model_name="scripted-1").plan(case)
    assert replayed == plan
    assert len(runner.calls) == 1  # the replay read the rows from the record


def tamper(
    transcript: list[dict[str, Any]], edit: Callable[[list[dict[str, Any]]], None]
) -> list[dict[str, Any]]:
    changed = copy.deepcopy(transcript)
    edit(changed)
    return changed


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t[1]["tool_calls"][0]["args"].update(query="MATCH (n) RETURN n"),
            "the model called cypher",
        ),
        (
            lambda t: t[5]["tool_calls"][0]["args"].update(proposed_setpoint=95.0),
            "diverges at transcript entry 6",
        ),
        (lambda t: t.pop(), "the record ends before it"),
        (lambda t: t.__delitem__(slice(5, None)), "asks for more"),
        (lambda t: t.append(t[-1]), "the record has 8"),
        (lambda t: t[0].update(prompt_version="plan-0"), "diverges at transcript entry 0"),
    ],
)
def test_a_tampered_transcript_does_not_replay(
    case: PlanningCase, edit: Callable[[list[dict[str, Any]]], None], message: str
) -> None:
    _, plan = live_plan(case)
    changed = tamper(plan.transcript, edit)
    with pytest.raises(ReplayInputsMissingError, match=message):
        LlmPlanner.replaying(changed, model_name="scripted-1").plan(case)


def test_replay_against_another_case_diverges(case: PlanningCase) -> None:
    _, plan = live_plan(case)
    other = case.model_copy(update={"confidence": 0.9})
    with pytest.raises(ReplayInputsMissingError, match="entry 0"):
        LlmPlanner.replaying(plan.transcript, model_name="scripted-1").plan(other)


def test_recorded_model_answers_in_order_and_then_refuses(case: PlanningCase) -> None:
    _, plan = live_plan(case)
    model = RecordedChatModel(transcript=plan.transcript)
    first = model.invoke("plan")
    assert first.tool_calls[0]["args"]["query"] == QUERY
    second = model.invoke([first])  # one AI message so far: the second reply
    assert second.tool_calls[0]["args"]["target"] == EX + "P-102"
    third = model.invoke([first, second])
    assert third.text == "corrected"
    with pytest.raises(ReplayInputsMissingError, match="records 3 model replies"):
        model.invoke([first, second, third])


# ---- the OpenAI-compatible model ----


def test_missing_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langchain_openai", None)  # import now fails
    with pytest.raises(ConfigError, match=r"pip install 'twinkg\[llm\]'"):
        chat_model_from_settings("http://localhost:11434/v1", "llama3", None)


def test_openai_compatible_model_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    openai = pytest.importorskip("langchain_openai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    model = chat_model_from_settings("http://localhost:11434/v1", "llama3", None)
    assert isinstance(model, openai.ChatOpenAI)
    assert (model.model_name, model.openai_api_base, model.temperature) == (
        "llama3",
        "http://localhost:11434/v1",
        0.0,
    )
    assert model.openai_api_key is not None
    assert model.openai_api_key.get_secret_value() != "sk-from-the-environment"
    keyed = chat_model_from_settings("https://api.example.org/v1", "m", "sk-given")
    assert isinstance(keyed, openai.ChatOpenAI) and keyed.openai_api_key is not None
    assert keyed.openai_api_key.get_secret_value() == "sk-given"
