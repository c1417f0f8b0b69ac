"""Observe: the monitor picks the case the run decides on.

The monitor asks the graph for anomalies, open alarms and stale sensors nobody has decided on,
and takes the most urgent asset (:func:`urgency`: an alarm's severity, else the finding's kind;
the earliest finding breaks ties). An external proposal makes its target the case. A run whose
trigger is ``restart_due`` looks instead for the assets one of the agents' own controlled stops
took down whose restart hold-off has passed (``kg.agent_queries.RESTART_DUE``, decision 0049).
With a watch (``AgentState.watch_s``), the new anomalies of an asset whose latest decision in the
watch was to gather data wait until the watch ends (``kg.agent_queries.WATCHED``, decision 0052).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from twinkg.agents.context import Gather, RunContext
from twinkg.agents.state import AgentState, Finding, Trigger
from twinkg.kg import agent_queries as q

_SEVERITY = {"critical": 0.9, "high": 0.7, "medium": 0.6, "low": 0.4}
_KIND_URGENCY = {"alarm": 0.6, "anomaly": 0.5, "stale_sensor": 0.3, "restart_due": 0.3}


def urgency(finding: Finding) -> float:
    """How urgent a finding is, in [0, 1]: an alarm's severity, else its kind."""
    if finding.severity in _SEVERITY:
        return _SEVERITY[finding.severity]
    return _KIND_URGENCY.get(finding.kind, 0.3)


def monitor(state: AgentState, ctx: RunContext) -> dict[str, Any]:
    """Observe: the unhandled findings of the most urgent asset in scope (none: nothing to do)."""
    gather = Gather(ctx, state)
    limit = ctx.settings.finding_limit
    if state.trigger is Trigger.RESTART_DUE:
        due = gather.rows(q.RESTART_DUE, scope=state.scope, as_of=state.as_of, limit=limit)
        return _choose(gather.update(state), [Finding.model_validate(r) for r in due])
    found = gather.rows(
        q.OPEN_FINDINGS,
        scope=state.scope,
        as_of=state.as_of,
        lookback_s=ctx.settings.lookback_s,
        limit=limit,
    )
    stale = gather.rows(
        q.STALE_SENSORS,
        scope=state.scope,
        as_of=state.as_of,
        stale_s=ctx.settings.stale_after_s,
        limit=limit,
    )
    findings = [Finding.model_validate(row) for row in [*found, *stale]]
    update = gather.update(state)
    if state.action is not None and state.scope:  # an external proposal: its target is the case
        target = state.action.target
        update.update(findings=[f for f in findings if f.asset == target], asset=target)
        return update
    if state.watch_s > 0:
        # an asset the agents last decided to watch: its new anomalies are what it is watched
        # for, and wait until the watch ends; an alarm or a silent sensor does not (decision 0052)
        watched = gather.rows(
            q.WATCHED, scope=state.scope, as_of=state.as_of, watch_s=state.watch_s
        )
        held = {str(r["asset"]) for r in watched}
        findings = [f for f in findings if f.kind != "anomaly" or f.asset not in held]
        update = gather.update(state)
    return _choose(update, findings)


def _choose(update: dict[str, Any], findings: list[Finding]) -> dict[str, Any]:
    """The most urgent asset's findings as the case (none: nothing to do)."""
    by_asset: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        by_asset[finding.asset].append(finding)
    if not by_asset:
        update.update(findings=[], asset=None)
        return update

    def key(asset: str) -> tuple[float, str, str]:
        items = by_asset[asset]
        first = min((f.occurred_at or "") for f in items)
        return (-max(urgency(f) for f in items), first, asset)

    chosen = min(by_asset, key=key)
    update.update(findings=by_asset[chosen], asset=chosen)
    return update
