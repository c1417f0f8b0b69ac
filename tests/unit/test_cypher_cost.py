"""The row-cost rule (kg.cypher_cost, decision 0029) without a server: what one row of untrusted
Cypher may compute, rule by rule, with the reason each refusal names."""

from __future__ import annotations

import re
from typing import Any

import pytest

from twinkg.kg import cypher_cost
from twinkg.kg.cypher_guard import check_text
from twinkg.ontology.errors import QueryRejectedError, QueryUnboundedError

PARAMS: dict[str, Any] = {"n": 10_000_000, "small": 10, "xs": [1, 2, 3], "re": "pump.*"}


def refused(query: str, reason: str, params: dict[str, Any] | None = None) -> None:
    with pytest.raises(QueryUnboundedError, match=re.escape(reason)) as caught:
        check_text(query, params=PARAMS if params is None else params)
    assert caught.value.code == "query_unbounded"
    assert isinstance(caught.value, QueryRejectedError)  # a 4xx of the query_rejected family
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("RETURN range(1, 10000000) AS xs", "has 10000000 items; at most 100000"),
        ("RETURN range(1, 1e7) AS xs", "takes integer literals or integer parameters"),
        ("WITH 5 AS n RETURN range(1, n) AS xs", "takes integer literals"),
        ("RETURN range(1, $n) AS xs", "has 10000000 items"),
        ("RETURN range(1, $re) AS xs", "takes integer literals"),
        ("RETURN range(1, 10, 0) AS xs", "step 0"),
        ("RETURN range(0, -10000000, -1) AS xs", "has 10000001 items"),
        ("RETURN `range`(1, 0x1000000) AS xs", "has 16777216 items"),
    ],
)
def test_a_range_has_constant_bounds_and_at_most_100000_items(query: str, reason: str) -> None:
    refused(query, reason)


def test_ranges_within_the_rule_pass() -> None:
    check_text("RETURN range(1, 100000) AS xs")
    check_text("RETURN range(1, $small) AS xs, range(-5, 5, 2) AS ys", params=PARAMS)
    check_text("RETURN range(1, 1_000) AS xs")
    assert cypher_cost.MAX_RANGE_ITEMS == 100_000


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("RETURN [x IN range(1, 10000) | [y IN range(1, 1000) | y]]", "more than 1000000 steps"),
        (
            "MATCH (n) WITH collect(n) AS xs RETURN [x IN xs | [y IN range(1, 2) | y]]",
            "nests inside an iteration over an unbounded list",
        ),
        (
            "MATCH (n) WITH collect(n) AS xs RETURN [x IN range(1, 2) | [y IN xs | y]]",
            "runs over an unbounded list inside another iteration",
        ),
        (
            "MATCH (n) WITH collect(n) AS xs RETURN any(x IN xs WHERE x IN xs)",
            "runs over an unbounded list inside another iteration",
        ),
        ("MATCH (n) WITH collect(n) AS xs RETURN [x IN xs | xs]", "xs (offset 50) is repeated"),
        ("MATCH (n) RETURN [(n)--(m) | $xs]", "$xs (offset 29) is repeated"),
    ],
)
def test_iterations_inside_a_row_are_bounded(query: str, reason: str) -> None:
    refused(query, reason)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("RETURN reduce(s = 0, x IN range(1, 1001) | s + x)", "at most 1000 items"),
        ("MATCH (n) WITH collect(n) AS xs RETURN reduce(a = [], x IN xs | a + x)", "1000 items"),
        ("RETURN reduce(a = [1], x IN range(1, 40) | a + a)", "accumulator a 2 times"),
        ("RETURN reduce(a = [1], x IN range(1, 40) | a + [a])", "accumulator a 2 times"),
    ],
)
def test_reduce_folds_a_short_bounded_list_and_names_its_accumulator_once(
    query: str, reason: str
) -> None:
    refused(query, reason)


@pytest.mark.parametrize(
    "query",
    [
        "WITH 'xxxxxxxxxx' AS s " + "WITH s + s AS s " * 7 + "RETURN s",
        "WITH 'x' AS s " + "WITH s AS t, s AS u WITH t + u AS s " * 7 + "RETURN s",
        "WITH [1] AS a " + "WITH [a, a] AS a " * 7 + "RETURN a",
        "WITH 'x' AS s WITH {a: s, b: s} AS m " + "WITH {a: m, b: m.a} AS m " * 7 + "RETURN m",
        "WITH 'x' AS s " + "WITH replace(s, 'x', 'xxxxxxxx') AS s " * 3 + "RETURN s",
        "RETURN [i IN range(1, 100) | $xs] AS copies",
        "RETURN [" + ", ".join(["$xs"] * 65) + "] AS copies",
        "WITH 'x' AS end " + "WITH end + end AS end " * 7 + "RETURN end",
    ],
)
def test_values_growing_clause_after_clause_are_refused(query: str) -> None:
    refused(query, "grow more than 64-fold")


def test_growth_within_the_rule_passes() -> None:
    check_text("WITH 'x' AS s " + "WITH s + s AS s " * 6 + "RETURN s")  # 64-fold
    check_text("MATCH (p) WITH p, p.uri AS uri RETURN p.uri, p.tag, p.label, uri")
    check_text("MATCH (n) RETURN n, labels(n), keys(n), n.uri, n.tag")
    check_text("RETURN [x IN [1, 2, 3] WHERE x > 1 | [y IN range(1, 100) | x * y]] AS m")


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("WITH 'abc' AS s RETURN replace(s, 'a', s)", "replacement as a string literal"),
        ("MATCH (n) WHERE n.uri =~ '(a+)+$' RETURN n", "repeats a group"),
        ("MATCH (n) WHERE n.uri =~ '(a|aa)*b' RETURN n", "repeats a group"),
        ("MATCH (n) WHERE n.uri =~ '(a)\\\\1' RETURN n", "back-reference"),
        ("MATCH (n) WHERE n.uri =~ n.tag RETURN n", "pattern as a string literal"),
        ("WITH 1 AS with RETURN with + with AS r", "keyword the guard reads as structure"),
        ("RETURN " + "[" * 70 + "1" + "]" * 70, "nest deeper than 64"),
    ],
)
def test_other_unbounded_constructs(query: str, reason: str) -> None:
    refused(query, reason)


@pytest.mark.parametrize(
    "query",
    [
        "MATCH (n) WHERE n.uri =~ 'https://.*pump[0-9]+' RETURN n",
        "MATCH (n) WHERE n.uri =~ $re RETURN n",
        "MATCH (n) WHERE n.uri =~ '(ab)?c[(+*)]+' RETURN n",
        "RETURN replace('abc', 'a', 'bb') AS s",
        "MATCH p = (a)-[*1..3]->(b) RETURN [n IN nodes(p) | n.uri] AS uris",
        "MATCH (n) RETURN size([(n)--(m) | m.uri]) AS degree",
        "MATCH (n) WITH collect(n.uri) AS xs RETURN [x IN xs WHERE x STARTS WITH 'a' | x]",
        "RETURN reduce(s = 0, x IN range(1, 1000) | s + x) AS s",
        "UNWIND range(1, 100000) AS x UNWIND range(1, 100000) AS y RETURN count(*)",
        "MATCH (n) WHERE EXISTS { MATCH (n)-->(m) WHERE m.x > 1 } RETURN n {.uri, .tag}",
        "CALL () { MATCH (p:Pump) RETURN p } RETURN count(p) AS n",
        "MATCH (n) RETURN COUNT { (n)-->() } AS c, date.truncate('day', datetime()) AS d",
    ],
)
def test_ordinary_reads_pass(query: str) -> None:
    check_text(query, params=PARAMS)


def test_unbalanced_brackets_are_refused_before_neo4j() -> None:
    with pytest.raises(QueryUnboundedError, match=r"'\)' at offset 8 closes no matching"):
        check_text("RETURN 1) AS x")
    with pytest.raises(QueryUnboundedError, match=r"'\[' at offset 7 never closes"):
        check_text("RETURN [1, 2 AS x")
