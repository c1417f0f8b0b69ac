"""The read-only Cypher policy without a server: the tokenizer, the lexical layer over the escape
corpus and by hand, the parameter check, and the plan layer on plans shaped like Neo4j's."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from twinkg.kg import cypher_guard
from twinkg.kg.cypher_guard import TokenKind, check_params, check_plan, check_text, tokenize
from twinkg.ontology.errors import QueryRejectedError

CORPUS = json.loads(
    (Path(__file__).parents[1] / "escape_corpus" / "cypher.json").read_text(encoding="utf-8")
)


def kinds(query: str) -> list[tuple[TokenKind, str]]:
    return [(t.kind, t.text) for t in tokenize(query) if t.kind is not TokenKind.SPACE]


def test_tokenizer_knows_strings_backticks_and_comments() -> None:
    query = "RETURN 'a\\';b' AS `x``y` // c; d\n/* e; */ \"f\""
    assert kinds(query) == [
        (TokenKind.WORD, "RETURN"),
        (TokenKind.STRING, "'a\\';b'"),
        (TokenKind.WORD, "AS"),
        (TokenKind.IDENT, "`x``y`"),
        (TokenKind.COMMENT, "// c; d"),
        (TokenKind.COMMENT, "/* e; */"),
        (TokenKind.STRING, '"f"'),
    ]
    assert "".join(t.text for t in tokenize(query)) == query


def test_a_word_is_compared_as_cypher_reads_it() -> None:
    (escaped,) = tokenize("CRE\\u0041TE")
    (fullwidth,) = tokenize("`\uff41poc`")
    assert escaped.word == "create" and fullwidth.word == "apoc"


@pytest.mark.parametrize("case", CORPUS["rejected"], ids=[c["name"] for c in CORPUS["rejected"]])
def test_the_lexical_layer_refuses_exactly_the_corpus_cases_marked_text(
    case: dict[str, Any],
) -> None:
    if "text" in case["layers"]:
        with pytest.raises(QueryRejectedError) as refused:
            check_text(case["query"], params=case.get("params"))
        assert "\n" not in str(refused.value)
        if case["code"] == "query_unbounded":
            assert refused.value.code == "query_unbounded"
    else:
        check_text(case["query"], params=case.get("params"))


@pytest.mark.parametrize("case", CORPUS["allowed"], ids=[c["name"] for c in CORPUS["allowed"]])
def test_the_lexical_layer_lets_allowed_corpus_queries_through(case: dict[str, Any]) -> None:
    check_text(case["query"], params=case.get("params"))


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "empty"),
        ("/* only */ // comments", "empty"),
        ("RETURN 1; RETURN 2", "more than one statement"),
        ("RETURN 1 ;\n// trailing\n; RETURN 2", "more than one statement"),
        ("RETURN 1\x00", "control character U+0000"),
        ("RETURN 1\x1b", "control character U+001B"),
        ("RETURN '\u2066x\u2069' AS s", "control character U+2066"),
        ("RETURN\u00ad 1", "invisible character U+00AD"),
        ("MATCH (n) RETURN n /* open", "comment opened at offset 19 never closes"),
        ("RETURN `open", "backtick identifier opened at offset 7"),
        ('RETURN "open', "string opened at offset 7"),
        ("MATCH (n) RETURN n.\u0430pp", "non-ASCII name"),
        ("MATCH (n) RETURN \\u00e4 AS x", "non-ASCII name"),
        ("use neo4j RETURN 1", "USE"),
        ("CALL (n) { RETURN 1 } IN 3 CONCURRENT TRANSACTIONS", "IN TRANSACTIONS"),
        ("CALL db.awaitIndexes()", "procedure db.awaitIndexes is not on the read-only list"),
        ("CALL\n  db . createLabel('x')", "procedure db.createLabel"),
        ("RETURN apoc.coll.sum([1]) AS s", "APOC"),
        ("RETURN `apoc.coll.sum`([1]) AS s", "APOC"),
        ("MATCH (n) dEtAcH DELETE n", "DETACH"),
        ("LOAD CSV FROM 'x' AS r RETURN r", "LOAD"),
        ("STOP DATABASE neo4j", "STOP"),
        ("start database neo4j", "START"),
        ("SHOW CURRENT USER", "SHOW CURRENT"),
        ("SHOW TRANSACTIONS", "SHOW TRANSACTIONS"),
        ("SHOW SETTINGS YIELD name RETURN name", "SHOW SETTINGS"),
        ("SHOW HOME DATABASE", "SHOW HOME"),
        ("SHOW SOMETHING", "SHOW …"),
        ("DRYRUN REALLOCATE DATABASES", "DRYRUN"),
    ],
)
def test_lexical_refusals_name_their_reason(query: str, reason: str) -> None:
    with pytest.raises(QueryRejectedError, match="refused: .*" + re.escape(reason)):
        check_text(query)


@pytest.mark.parametrize(
    "query",
    [
        "RETURN 1",
        "RETURN 1;",
        "RETURN 1; // done",
        "MATCH (n) WHERE n.name STARTS WITH 'CREATE' RETURN n.set AS set",
        "MATCH (n:Set) RETURN {delete: n.remove} AS m",
        "WITH [1, 2] AS transactions UNWIND transactions AS t RETURN t IN transactions",
        "MATCH (create) RETURN create",
        "RETURN 'a\u200bb' AS zero_width_inside_a_string",
        "RETURN 1 AS `Stra\u00dfe`  // Stra\u00dfe",
        "CALL db.labels() YIELD label RETURN label",
        "CALL DB.LABELS()",
        "CALL () { MATCH (n) RETURN n } RETURN count(n) AS c",
        "SHOW INDEXES",
        "SHOW RANGE INDEXES YIELD name RETURN name",
        "SHOW BUILT IN FUNCTIONS YIELD name RETURN count(*) AS n",
        "SHOW PROCEDURES EXECUTABLE BY CURRENT USER YIELD name RETURN name",
        "MATCH (start:Pump)-[:FEEDS]->(stop) RETURN start.uri, stop.uri",
    ],
)
def test_plain_reads_pass_the_lexical_layer(query: str) -> None:
    check_text(query)


def test_size_limit_is_a_keyword() -> None:
    check_text("RETURN 1", max_chars=8)
    with pytest.raises(QueryRejectedError, match="9 characters; at most 8"):
        check_text("RETURN 10", max_chars=8)
    with pytest.raises(QueryRejectedError, match="at most 100000"):
        check_text(" " * (cypher_guard.MAX_QUERY_CHARS + 1))


def test_json_like_parameters_pass_and_are_copied() -> None:
    params = {
        "s": "x",
        "i": 2**63 - 1,
        "j": -(2**63),
        "f": 1.5,
        "b": True,
        "n": None,
        "l": [1, [2]],
        "m": {"k": [{}]},
    }
    copied = check_params(params)
    assert copied == params and copied is not params
    assert check_params(None) == {}


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"x": (1, 2)}, r"\$x is a tuple"),
        ({"x": [1, {"y": b"z"}]}, r"\$x\[1\]\.y is a bytes"),
        ({"x": {2: "a"}}, "key that is no string"),
        ({"": 1}, "parameter name"),
        ({"x": object()}, "only JSON-like values"),
        ({"x": 2**63}, "outside Neo4j's 64-bit range"),
        ({"x": [1, -(2**63) - 1]}, r"\$x\[1\] is an integer outside"),
        ({"x": {"y": 10**400}}, r"\$x\.y is an integer outside"),
    ],
)
def test_other_parameters_are_refused(params: dict[Any, Any], reason: str) -> None:
    with pytest.raises(QueryRejectedError, match=reason):
        check_params(params)


def test_deeply_nested_parameters_are_refused() -> None:
    value: Any = 1
    for _ in range(cypher_guard.MAX_PARAM_DEPTH + 2):
        value = [value]
    with pytest.raises(QueryRejectedError, match="nests deeper"):
        check_params({"x": value})


def op(operator: str, details: str = "", *children: dict[str, Any]) -> dict[str, Any]:
    """A plan node shaped as the Neo4j driver returns it."""
    return {"operatorType": operator, "args": {"Details": details}, "children": list(children)}


READ_PLAN = op("ProduceResults@neo4j", "n", op("AllNodesScan@neo4j", "n"))


def test_a_read_plan_passes() -> None:
    check_plan("r", READ_PLAN)
    labels = op("ProcedureCall@neo4j", "db.labels() :: (label :: STRING)")
    check_plan("r", op("ProduceResults@neo4j", "label", labels))
    check_plan("r", op("ProduceResults@neo4j", "name", op("ShowIndexes@neo4j")))


@pytest.mark.parametrize(
    ("query_type", "reason"),
    [("w", "writes"), ("rw", "reads and writes"), ("s", "schema or system"), (None, "None")],
)
def test_only_read_query_types_pass(query_type: str | None, reason: str) -> None:
    with pytest.raises(QueryRejectedError, match=reason):
        check_plan(query_type, READ_PLAN)


@pytest.mark.parametrize(
    ("leaf", "reason"),
    [
        (op("LoadCSV@neo4j", "row"), "LOAD CSV"),
        (op("TransactionApply@neo4j", "IN TRANSACTIONS OF 1000 ROWS"), "IN TRANSACTIONS"),
        (op("Create@neo4j", "(n)"), r"writes \(Create\)"),
        (op("SetProperty@neo4j", "n.x = 1"), r"writes \(SetProperty\)"),
        (op("TerminateTransactions@neo4j"), "TerminateTransactions"),
        (op("ShowTransactions@neo4j"), "shows server state"),
        (op("ShowSettings@neo4j"), "shows server state"),
        (op("AdministrationCommand@system"), "system command"),
        (op("ProcedureCall@neo4j", "db.createLabel($autostring_0) :: ()"), "db.createLabel"),
        (op("ProcedureCall@neo4j", "apoc.create.node($a, $b) :: (node :: NODE)"), "apoc"),
        (op("ProcedureCall@neo4j", ""), "procedure"),
    ],
)
def test_refused_operators_anywhere_in_the_plan(leaf: dict[str, Any], reason: str) -> None:
    deep = op("ProduceResults@neo4j", "x", op("Projection@neo4j", "x", op("Apply@neo4j", "", leaf)))
    with pytest.raises(QueryRejectedError, match=reason):
        check_plan("r", deep)


def test_no_plan_is_refused() -> None:
    with pytest.raises(QueryRejectedError, match="no plan"):
        check_plan("r", None)
