"""What the twin's agent operations take from outside: the planner the settings choose, the
moment a caller's "as of" names, and a role's IRI from its name."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from twinkg.agents.state import parse_time
from twinkg.api.settings import Settings
from twinkg.kg import agent_queries as aq
from twinkg.kg.store import GraphStore, QueryResult
from twinkg.ontology.errors import ConfigError, InvalidInputError
from twinkg.ontology.vocab import TK

if TYPE_CHECKING:  # LangGraph loads only when an agent operation needs it
    from twinkg.agents.planning import Planner


def planner_for(settings: Settings, store: GraphStore) -> Planner:
    """The rule planner, or the configured chat model behind read-only, row-capped Cypher."""
    from twinkg.agents.llm_planner import LlmPlanner, chat_model_from_settings  # noqa: PLC0415
    from twinkg.agents.planning import RulePlanner  # noqa: PLC0415

    if not settings.llm_model and not settings.llm_base_url:
        return RulePlanner()
    if not (settings.llm_model and settings.llm_base_url):
        raise ConfigError("TWINKG_LLM_BASE_URL and TWINKG_LLM_MODEL go together")
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    model = chat_model_from_settings(settings.llm_base_url, settings.llm_model, key)

    def cypher(query: str, params: dict[str, Any]) -> QueryResult:
        return store.read_only(query, params, timeout_s=settings.query_timeout_s, row_cap=50)

    return LlmPlanner(model, cypher=cypher, model_name=settings.llm_model)


def as_of_moment(store: GraphStore, value: str | None) -> datetime | None:
    """``None``/"now" → now; "data" → just after the newest reading; else an ISO time."""
    if value is None or value == "now":
        return None
    if value == "data":
        rows = store.read(aq.LATEST_OBSERVATION)
        if not rows or rows[0]["latest"] is None:
            raise InvalidInputError("as of 'data': the graph holds no telemetry yet")
        return parse_time(str(rows[0]["latest"])) + timedelta(seconds=1)
    try:
        return parse_time(value)
    except ValueError:
        raise InvalidInputError(
            f"as of must be 'now', 'data' or an ISO 8601 time with a zone, not {value!r}"
        ) from None


def role_iri(value: str) -> str:
    """A role's IRI from an IRI or a local name of the ontology (``Supervisor``)."""
    if value.startswith(("http://", "https://")):
        return value
    try:
        return str(TK[value])
    except (AttributeError, KeyError):
        raise InvalidInputError(f"{value!r} is not a role of the ontology") from None
