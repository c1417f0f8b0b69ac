"""``twinkg verify``, ``lineage`` and ``replay``: what a compliance team runs on decisions."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rdflib import RDF, RDFS, Graph, Literal, URIRef
from rdflib.namespace import PROV
from rdflib.term import Node

from twinkg.api.cli.common import errors_as_exit_codes, load_settings, open_store, out
from twinkg.api.cli.progress import ProgressOption, phase_bars
from twinkg.api.twin import Twin
from twinkg.kg import rdf_text
from twinkg.ontology.errors import ChainBrokenError, InvalidInputError, ReplayDiffersError
from twinkg.ontology.vocab import TK

_HASH = re.compile(r"[0-9a-f]{64}")  # a record's SHA-256, as verify prints it


class LineageFormat(StrEnum):
    TEXT = "text"
    TURTLE = "turtle"
    JSON_LD = "json-ld"


@errors_as_exit_codes
def verify_command(
    expect_head: Annotated[
        str | None, typer.Option(help="the head hash kept outside the database")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="HEAD_HASH",
            help="a head an earlier verify printed, trusted: check only what came after it",
        ),
    ] = None,
) -> None:
    """Recompute every decision record's hash; exit 12 if any was altered or deleted.
    With --since, only the records added after a trusted head (a daily audit)."""
    for name, value in (("--expect-head", expect_head), ("--since", since)):
        if value is not None and not _HASH.fullmatch(value):
            raise InvalidInputError(f"{name} wants a SHA-256 head hash (64 hex digits): {value!r}")
    settings = load_settings()
    with open_store(settings) as store:
        report = Twin(settings, store).verify(expect_head=expect_head, since=since)
    for p in report.problems:
        where = p.decision or f"#{p.chain_index}"
        out.print(f"{p.kind}: {where} ({p.detail})", markup=False)
    if not report.ok:
        raise ChainBrokenError(f"{len(report.problems)} problem(s) in {report.records} records")
    scope = (
        f" ({report.checked} checked after the trusted head, #{report.since_index})"
        if since is not None
        else ""
    )
    out.print(f"ok: {report.records} records{scope}, head {report.head_hash or '(empty)'}")


def _short(node: Node | None) -> str:
    text = "" if node is None else str(node)
    return text.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


class _Text:
    """The lineage as an operator reads it: what was done, on what grounds, by whom."""

    def __init__(self, graph: Graph) -> None:
        self.g = graph

    def v(self, node: Node, prop: URIRef) -> Node | None:
        return self.g.value(node, prop)

    def name(self, node: Node) -> str:
        tag = self.v(node, TK.tag) or self.v(node, RDFS.label)
        return str(tag) if tag is not None else _short(node)

    def typed(self, cls: URIRef, of: Node, prop: URIRef) -> list[Node]:
        return sorted(
            (o for o in self.g.objects(of, prop) if (o, RDF.type, cls) in self.g), key=str
        )

    def print(self, decision: URIRef) -> None:
        g, v = self.g, self.v
        out.print(f"decision {decision}  (#{v(decision, TK.chainIndex)})", markup=False)
        out.print(f"  outcome: {v(decision, TK.outcome)} — {v(decision, TK.reason)}", markup=False)
        agent = v(decision, PROV.wasAssociatedWith)
        model = v(decision, TK.modelName)
        planner = f"{v(decision, TK.plannerKind)} planner" + (f", model {model}" if model else "")
        who = f"{self.name(agent)} {v(agent, TK.codeVersion)}" if agent else "?"
        out.print(
            f"  agent: {who} ({planner}); as of {v(decision, TK.asOf)}; "
            f"seed {v(decision, TK.randomSeed)}",
            markup=False,
        )
        for action in self._actions(decision):
            args = [
                f"{_short(p)} {o}"
                for p, o in sorted(g.predicate_objects(action))
                if p in (TK.currentSetpoint, TK.proposedSetpoint, TK.rampDuration, TK.confidence)
            ]
            target = v(action, TK.targets)
            out.print(
                f"  action: {v(action, TK.actionKind)} on {self.name(target) if target else '?'}"
                f" ({', '.join(args)}) — {v(action, TK.rationale) or ''}",
                markup=False,
            )
        for effect in sorted(g.subjects(PROV.wasGeneratedBy, decision), key=str):
            if (effect, RDF.type, TK.ProposedAction) in g or v(effect, TK.occurredAt) is None:
                continue
            target = v(effect, TK.concerns)
            change = [str(v(effect, p)) for p in (TK.fromStatus, TK.toStatus) if v(effect, p)]
            value = v(effect, TK.value)
            detail = " → ".join(change) if change else (f"value {value}" if value else "")
            out.print(
                f"  effect: {_short(v(effect, RDF.type))} on {self.name(target) if target else '?'}"
                f" {detail}",
                markup=False,
            )
        for approval in self.typed(TK.Approval, decision, PROV.wasInformedBy):
            person = v(approval, PROV.wasAssociatedWith)
            out.print(
                f"  approval: {v(approval, TK.outcome)} by {self.name(person) if person else '?'}"
                f" as {_short(v(approval, TK.approverRole))}, until {v(approval, TK.expiresAt)}",
                markup=False,
            )
        report = decision + "/report"
        shapes = v(URIRef(report), PROV.wasDerivedFrom)
        out.print(
            f"  safety shapes: {v(URIRef(report), TK.verdict)} (version {_short(shapes)}, "
            f"graph version {str(v(decision, TK.graphVersion) or '')[:16]}…)",
            markup=False,
        )
        for earlier in self.typed(TK.Decision, decision, PROV.wasInformedBy):
            self._evidence(URIRef(str(earlier)), f"earlier decision {_short(earlier)}")
        self._evidence(decision, "this decision")

    def _actions(self, decision: URIRef) -> list[Node]:
        generated = sorted(self.g.subjects(PROV.wasGeneratedBy, decision), key=str)
        used = self.typed(TK.ProposedAction, decision, PROV.used)
        return [a for a in generated if (a, RDF.type, TK.ProposedAction) in self.g] + used

    def _evidence(self, decision: URIRef, title: str) -> None:
        g, v = self.g, self.v
        out.print(f"  {title} ({v(decision, TK.outcome)}) used:", markup=False)
        for used in sorted(g.objects(decision, PROV.used), key=str):
            kinds = {_short(t) for t in g.objects(used, RDF.type)}
            if "QueryEvidence" in kinds:
                rows = json.loads(str(v(used, TK.resultRows) or "[]"))
                params = str(v(used, TK.queryParameters))
                params = params if len(params) <= 100 else params[:99] + "…"
                out.print(
                    f"    query {v(used, TK.queryName)} {params} → {len(rows)} rows",
                    markup=False,
                )
            elif "TelemetryWindow" in kinds:
                sensors = ", ".join(sorted(self.name(s) for s in g.objects(used, TK.windowOf)))
                out.print(
                    f"    telemetry {v(used, TK.windowStart)} to {v(used, TK.windowEnd)}: "
                    f"{v(used, TK.sampleCount)} points of {sensors} "
                    f"(sha256 {str(v(used, TK.contentHash))[:12]}…)",
                    markup=False,
                )
            elif kinds & {"Alarm", "Anomaly"}:
                source = v(used, PROV.wasDerivedFrom)
                batch = v(source or used, TK.inBatch)
                origin = f", from {self.name(batch)}" if batch else ""
                out.print(
                    f"    {'/'.join(sorted(kinds & {'Alarm', 'Anomaly'}))} on "
                    f"{self.name(v(used, TK.concerns) or used)} at {v(used, TK.occurredAt)}: "
                    f"{self.name(used)}{origin}",
                    markup=False,
                )
            elif "TrustScore" in kinds:
                out.print(
                    f"    trust of {self.name(v(used, TK.scoreOf) or used)}: confidence "
                    f"{_num(v(used, TK.confidence))} (quality {_num(v(used, TK.qualityScore))}, "
                    f"freshness {_num(v(used, TK.freshnessScore))}, anomaly "
                    f"{_num(v(used, TK.anomalyScore))})",
                    markup=False,
                )
            else:
                out.print(f"    {'/'.join(sorted(kinds))} {self.name(used)}", markup=False)
        for h in sorted(g.subjects(TK.hypothesizedMode, None), key=str):
            if str(h).startswith(str(decision) + "/"):
                out.print(
                    f"    hypothesis {v(h, TK.rank)}: {_short(v(h, TK.hypothesizedMode))} "
                    f"score {_num(v(h, TK.score))}",
                    markup=False,
                )


def _num(node: Node | None) -> str:
    if isinstance(node, Literal):
        value = node.toPython()
        return f"{value:.2f}" if isinstance(value, float) else str(value)
    return "?"


@errors_as_exit_codes
def lineage_command(
    decision: Annotated[str, typer.Argument(help="decision IRI or run/step")],
    fmt: Annotated[LineageFormat, typer.Option("--format")] = LineageFormat.TEXT,
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """The chain from the action back to raw data, shapes, policies and people."""
    settings = load_settings()
    with open_store(settings) as store:
        record = Twin(settings, store).lineage(decision)
    if fmt is LineageFormat.TEXT:
        _Text(record.graph).print(URIRef(record.decision))
        valid = "valid" if record.prov_valid else "INVALID"
        out.print(f"PROV-O: {valid} ({record.triples} triples)")
    else:
        kind = "turtle" if fmt is LineageFormat.TURTLE else "json-ld"
        text = rdf_text.serialize(record.graph, kind)
        if output is not None:
            output.write_text(text)
        else:
            out.print(text, markup=False, end="")
    if not record.prov_valid:
        raise InvalidInputError("the lineage is not valid PROV-O: " + record.violations[0])


@errors_as_exit_codes
def replay_command(
    decision: Annotated[str, typer.Argument(help="decision IRI or run/step")],
    progress: ProgressOption = None,
) -> None:
    """Re-run the decision from its recorded inputs; exit 13 when it decides differently.

    On a terminal, progress bars on stderr follow loading the records, each replayed step and
    the comparison, and vanish before the verdict is printed.
    """
    settings = load_settings()
    with open_store(settings) as store, phase_bars(progress) as bars:
        report = Twin(settings, store).replay(decision, progress=bars)
    if report.same:
        out.print(f"same decision: {report.decision} ({report.outcome}, {report.steps} step(s))")
        return
    for d in report.differences:
        out.print(f"{d.field}: recorded {d.recorded!r}, replayed {d.replayed!r}", markup=False)
    raise ReplayDiffersError(f"{len(report.differences)} field(s) differ from the record")
