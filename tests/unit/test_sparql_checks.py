"""Which SPARQL requests run, and in which format their answers come back (no server)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time

import pyoxigraph as ox
import pytest

from twinkg.kg.sparql_query import QueryForm, check, negotiate
from twinkg.kg.sparql_results import evaluate
from twinkg.ontology.errors import (
    NotAcceptableError,
    QueryTimeoutError,
    SparqlInvalidError,
    SparqlRefusedError,
)

EX = "http://example.com/"
JSON, XML = "application/sparql-results+json", "application/sparql-results+xml"

UPDATES = [
    "INSERT DATA { <http://a> <http://b> <http://c> }",
    "DELETE DATA { <http://a> <http://b> <http://c> }",
    "DELETE WHERE { ?s ?p ?o }",
    "DELETE { ?s ?p ?o } INSERT { ?s ?p 1 } WHERE { ?s ?p ?o }",
    "LOAD <http://example.com/data.ttl>",
    "LOAD SILENT <http://example.com/data.ttl> INTO GRAPH <http://g>",
    "CLEAR ALL",
    "CREATE GRAPH <http://g>",
    "DROP DEFAULT",
    "COPY DEFAULT TO <http://g>",
    "MOVE <http://g> TO DEFAULT",
    "ADD <http://g> TO <http://h>",
    "# a comment first\nPREFIX ex: <http://e/>\ninsert data { ex:a ex:b ex:c }",
    "INS\\u0045RT DATA { <http://a> <http://b> <http://c> }",
]


@pytest.mark.parametrize("text", UPDATES)
def test_updates_and_load_are_refused(text: str) -> None:
    with pytest.raises(SparqlRefusedError, match="updates"):
        check(text)


SERVICES = [
    "SELECT * WHERE { SERVICE <http://127.0.0.1:1/sparql> { ?s ?p ?o } }",
    "select * where { service silent <http://x/> { ?s ?p ?o } }",
    "SELECT * WHERE { SERV\\u0049CE <http://x/> { ?s ?p ?o } }",
    "SELECT * WHERE { \\u0053\\u0045RVICE <http://x/> { ?s ?p ?o } }",
    "SELECT * WHERE { ?a ?b ?c OPTIONAL { SERVICE ?endpoint { ?s ?p ?o } } }",
    "SELECT * WHERE { { SELECT ?s WHERE { SERVICE <http://x/> { ?s ?p ?o } } } }",
    "ASK { FILTER EXISTS { SERVICE <http://x/> { ?s ?p ?o } } }",
    "CONSTRUCT { ?s ?p ?o } WHERE { SERVICE <http://x/> { ?s ?p ?o } }",
    "SELECT * WHERE { # a comment\n SERVICE <http://x/> # and another\n { ?s ?p ?o } }",
    "SELECT * WHERE { ?s ?p ?o MINUS { SERVICE <http://x/> { ?s ?p ?o } } }",
]


@pytest.mark.parametrize("text", SERVICES)
def test_service_is_refused_however_written(text: str) -> None:
    with pytest.raises(SparqlRefusedError, match="SERVICE"):
        check(text)


ALLOWED = [
    ("SELECT * WHERE { ?s ?p ?o # SERVICE <http://x/> { ?s ?p ?o }\n }", QueryForm.SELECT),
    ('SELECT * WHERE { ?s ?p "SERVICE <http://x/> { }" }', QueryForm.SELECT),
    (
        "PREFIX service: <http://e/> SELECT ?service WHERE { ?service service:p ?o }",
        QueryForm.SELECT,
    ),
    ("SELECT * WHERE { ?s <http://x/LOAD> ?o }", QueryForm.SELECT),
    ("ASK { ?s ?p ?o }", QueryForm.ASK),
    ("CONSTRUCT WHERE { ?s ?p ?o }", QueryForm.CONSTRUCT),
    ("DESCRIBE <http://x/>", QueryForm.DESCRIBE),
    ("SELECT * FROM <http://g> WHERE { ?s ?p ?o }", QueryForm.SELECT),
]


@pytest.mark.parametrize(("text", "form"), ALLOWED)
def test_queries_that_only_mention_keywords_run(text: str, form: QueryForm) -> None:
    assert check(text) is form


@pytest.mark.parametrize(
    "text", ["SELECT * WHERE { ?s ?p }", "SELEC * WHERE { ?s ?p ?o }", "", "ASK { ?s ?p ?o ."]
)
def test_syntax_errors_have_a_one_line_reason(text: str) -> None:
    with pytest.raises(SparqlInvalidError) as info:
        check(text)
    assert str(info.value).startswith("invalid SPARQL: ") and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("form", "accept", "media_type"),
    [
        (QueryForm.SELECT, None, "application/sparql-results+json"),
        (QueryForm.SELECT, "*/*", "application/sparql-results+json"),
        (QueryForm.SELECT, "application/sparql-results+xml", "application/sparql-results+xml"),
        (QueryForm.SELECT, "application/xml", "application/sparql-results+xml"),
        (QueryForm.SELECT, "application/json", "application/sparql-results+json"),
        (QueryForm.SELECT, "text/csv", "text/csv"),
        (QueryForm.SELECT, "text/tab-separated-values", "text/tab-separated-values"),
        (QueryForm.SELECT, f"text/csv;q=0.5, {XML}", XML),
        (QueryForm.SELECT, f"{JSON};q=0, */*;q=0.1", XML),
        (QueryForm.ASK, f"{XML}, */*;q=0.1", XML),
        (QueryForm.CONSTRUCT, None, "text/turtle"),
        (QueryForm.CONSTRUCT, "application/n-triples", "application/n-triples"),
        (QueryForm.DESCRIBE, "application/rdf+xml", "application/rdf+xml"),
        (QueryForm.CONSTRUCT, "application/ld+json", "application/ld+json"),
        (QueryForm.CONSTRUCT, "text/*;q=0.2, application/n-triples;q=0.1", "text/turtle"),
    ],
)  # fmt: skip
def test_content_negotiation(form: QueryForm, accept: str | None, media_type: str) -> None:
    assert negotiate(form, accept).media_type.split(";")[0] == media_type


@pytest.mark.parametrize(
    ("form", "accept"),
    [
        (QueryForm.SELECT, "text/turtle"),
        (QueryForm.CONSTRUCT, "application/sparql-results+json"),
        (QueryForm.ASK, "text/csv"),
        (QueryForm.SELECT, "image/png, text/html;q=0.9"),
        (QueryForm.SELECT, "application/sparql-results+json;q=0"),
    ],
)
def test_unacceptable_formats_are_refused(form: QueryForm, accept: str) -> None:
    with pytest.raises(NotAcceptableError):
        negotiate(form, accept)


@pytest.fixture(scope="module")
def store() -> ox.Store:
    data = ox.Store()
    p, label = ox.NamedNode(EX + "p"), ox.NamedNode(EX + "label")
    for i in range(20):
        subject = ox.NamedNode(f"{EX}s{i}")
        data.add(ox.Quad(subject, p, ox.Literal(str(i), datatype=ox.NamedNode(EX + "dt"))))
        data.add(ox.Quad(subject, label, ox.Literal(f"name, {i}", language="en")))
    data.add(ox.Quad(ox.BlankNode("b0"), p, ox.Literal("plain")))
    return data


def _run(
    store: ox.Store, text: str, accept: str | None, *, row_cap: int = 1000, byte_cap: int = 1 << 20
) -> tuple[bytes, str, int, bool]:
    fmt = negotiate(check(text), accept)
    done = evaluate(
        store.query(text), fmt, row_cap=row_cap, byte_cap=byte_cap, deadline=time.monotonic() + 10
    )
    return done.body, done.media_type, done.rows, done.truncated  # fmt: skip


SELECT = f"SELECT ?s ?o ?l WHERE {{ ?s <{EX}p> ?o OPTIONAL {{ ?s <{EX}label> ?l }} }} ORDER BY ?o"


def test_select_as_json_xml_csv_and_tsv(store: ox.Store) -> None:
    body, media, rows, truncated = _run(store, SELECT, None)
    document = json.loads(body)
    assert media == "application/sparql-results+json" and (rows, truncated) == (21, False)
    assert document["head"]["vars"] == ["s", "o", "l"]
    first = next(b for b in document["results"]["bindings"] if b["s"]["value"] == EX + "s3")
    assert first["o"] == {"type": "literal", "value": "3", "datatype": EX + "dt"}
    assert first["l"] == {"type": "literal", "value": "name, 3", "xml:lang": "en"}
    blank = next(b for b in document["results"]["bindings"] if b["s"]["type"] == "bnode")
    assert blank["o"] == {"type": "literal", "value": "plain"} and "l" not in blank
    xml, media, _, _ = _run(store, SELECT, "application/sparql-results+xml")
    assert media == "application/sparql-results+xml"
    parsed = ox.parse_query_results(xml, ox.QueryResultsFormat.XML)
    assert isinstance(parsed, ox.QuerySolutions) and len(list(parsed)) == 21
    text, media, _, _ = _run(store, SELECT, "text/csv")
    table = list(csv.reader(io.StringIO(text.decode())))
    assert media.startswith("text/csv") and table[0] == ["s", "o", "l"] and len(table) == 22
    assert [EX + "s3", "3", "name, 3"] in table
    tsv, media, _, _ = _run(store, SELECT, "text/tab-separated-values")
    lines = tsv.decode().splitlines()
    assert media.startswith("text/tab-separated-values") and lines[0] == "?s\t?o\t?l"
    assert f'<{EX}s3>\t"3"^^<{EX}dt>\t"name, 3"@en' in lines


def test_ask_as_json_and_xml(store: ox.Store) -> None:
    body, _, rows, _ = _run(store, "ASK { ?s ?p ?o }", None)
    assert json.loads(body)["boolean"] is True and rows == 1
    xml, media, _, _ = _run(
        store, f"ASK {{ <{EX}nothing> ?p ?o }}", "application/sparql-results+xml"
    )
    assert media == "application/sparql-results+xml" and b"<boolean>false</boolean>" in xml


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        (None, ox.RdfFormat.TURTLE),
        ("application/n-triples", ox.RdfFormat.N_TRIPLES),
        ("application/rdf+xml", ox.RdfFormat.RDF_XML),
        ("application/ld+json", ox.RdfFormat.JSON_LD),
    ],
)
def test_construct_in_each_graph_format(
    store: ox.Store, accept: str | None, fmt: ox.RdfFormat
) -> None:
    query = f"CONSTRUCT {{ ?s <{EX}p> ?o }} WHERE {{ ?s <{EX}p> ?o }}"
    body, media, rows, _ = _run(store, query, accept)
    assert media == fmt.media_type and rows == 21
    assert len(list(ox.parse(body, fmt))) == 21


def test_the_row_cap_truncates(store: ox.Store) -> None:
    body, _, rows, truncated = _run(store, SELECT, None, row_cap=4)
    assert (rows, truncated) == (4, True) and len(json.loads(body)["results"]["bindings"]) == 4
    triples, _, rows, truncated = _run(
        store, "CONSTRUCT WHERE { ?s ?p ?o }", "application/n-triples", row_cap=3
    )
    assert (rows, truncated) == (3, True) and len(triples.decode().splitlines()) == 3
    _, _, rows, truncated = _run(store, SELECT, None, row_cap=21)
    assert (rows, truncated) == (21, False)


@pytest.mark.parametrize(
    "accept", [None, "application/sparql-results+xml", "text/csv", "text/tab-separated-values"]
)
def test_the_byte_cap_truncates_in_every_format(store: ox.Store, accept: str | None) -> None:
    whole, _, rows, _ = _run(store, SELECT, accept)
    assert rows == 21
    cap = len(whole) // 2
    body, _, rows, truncated = _run(store, SELECT, accept, byte_cap=cap)
    assert truncated and 0 < rows < 21 and len(body) <= cap
    if accept is None:
        assert len(json.loads(body)["results"]["bindings"]) == rows


def test_the_byte_cap_truncates_graphs(store: ox.Store) -> None:
    query = "CONSTRUCT WHERE { ?s ?p ?o }"
    whole, _, rows, _ = _run(store, query, "text/turtle")
    body, _, capped, truncated = _run(store, query, "text/turtle", byte_cap=len(whole) // 3)
    assert truncated and 0 < capped < rows and len(body) <= len(whole) // 3
    assert len(list(ox.parse(body, ox.RdfFormat.TURTLE))) == capped


def test_a_passed_deadline_stops_between_rows(store: ox.Store) -> None:
    with pytest.raises(QueryTimeoutError):
        evaluate(
            store.query(SELECT),
            ox.QueryResultsFormat.JSON,
            row_cap=10,
            byte_cap=1 << 20,
            deadline=time.monotonic() - 1,
        )


# A fresh interpreter: rdflib's grammar has never parsed anything when the threads start.
_FIRST_USE = """
import sys, threading
from twinkg.kg.sparql_query import check
queries = [
    "SELECT ?s WHERE { ?s ?p ?o } ORDER BY ?s LIMIT 3",
    "ASK { ?a <http://x/p> 1 }",
    "CONSTRUCT WHERE { ?s ?p ?o }",
    "PREFIX t: <http://e/> SELECT (COUNT(*) AS ?n) WHERE { ?s a t:P ; t:v ?v FILTER(?v > 3) }",
] * 4
start, failures = threading.Barrier(len(queries)), []
def run(text):
    start.wait()
    try:
        check(text)
    except Exception as exc:
        failures.append(repr(exc))
threads = [threading.Thread(target=run, args=(q,)) for q in queries]
for t in threads: t.start()
for t in threads: t.join()
check(queries[0])  # and the grammar still works afterwards
print(len(failures), failures[:3])
sys.exit(1 if failures else 0)
"""


def test_concurrent_first_checks_in_a_fresh_process_all_succeed() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_USE], check=False, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("0 ")


@pytest.mark.parametrize("depth", [200, 5000])
def test_a_query_too_deep_for_the_checker_is_invalid_not_a_crash(depth: int) -> None:
    text = "SELECT * WHERE { FILTER(" + "(" * depth + "1" + ")" * depth + ") }"
    with pytest.raises(SparqlInvalidError, match="too deeply"):
        check(text)


def test_a_kept_verdict_is_the_verdict_and_a_refusal_is_never_kept() -> None:
    """Accepted texts keep their verdict (the second check parses nothing); refused ones are
    judged again each time, and a text past the length bound is always parsed."""
    from twinkg.kg import sparql_query  # noqa: PLC0415 - the cache is its private detail

    sparql_query._accepted.cache_clear()
    accepted = {
        "SELECT ?s WHERE { ?s ?p ?o } LIMIT 3": QueryForm.SELECT,
        "ASK { ?a <http://x/p> 1 }": QueryForm.ASK,
        "CONSTRUCT WHERE { ?s ?p ?o }": QueryForm.CONSTRUCT,
        "DESCRIBE <http://x/a>": QueryForm.DESCRIBE,
    }
    for text, form in accepted.items():
        assert check(text) is form and check(text) is form
    info = sparql_query._accepted.cache_info()
    assert (info.hits, info.misses) == (len(accepted), len(accepted))
    for _ in range(2):
        with pytest.raises(SparqlRefusedError):
            check(UPDATES[0])
        with pytest.raises(SparqlRefusedError, match="SERVICE"):
            check("SELECT * WHERE { SERVICE <http://e/sparql> { ?s ?p ?o } }")
        with pytest.raises(SparqlInvalidError):
            check("SELECT WHERE {")
    assert sparql_query._accepted.cache_info().currsize == len(accepted)
    long_text = "SELECT ?s WHERE { ?s ?p ?o }" + " " * sparql_query.CACHED_CHARS
    assert check(long_text) is QueryForm.SELECT
    assert sparql_query._accepted.cache_info().currsize == len(accepted)
