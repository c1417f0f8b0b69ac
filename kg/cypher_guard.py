"""Which untrusted Cypher TwinKG agrees to run: the read-only policy, in layers.

Cypher from engineers and language models runs only after two independent checks, each of
which refuses every write on its own (decision 0022):

1. :func:`check_text`, the *lexical* layer: a small tokenizer that knows string literals,
   backtick identifiers and comments refuses control characters, several statements, write and
   administration commands (``START``/``STOP DATABASE``, ``SHOW`` of anything but indexes,
   constraints, procedures and functions, server commands), ``USE``,
   ``CALL { } IN TRANSACTIONS``, procedures off the allowlist and anything named ``apoc``.
   Words are compared after ``\\uXXXX`` escapes are decoded (Cypher decodes them in identifiers
   and keywords) and after NFKC folding, so fullwidth letters and the like are refused too; the
   query that runs is never rewritten. Last, :mod:`kg.cypher_cost` bounds what one row may
   compute (decision 0029), which Neo4j cannot interrupt.
2. :func:`check_plan`, the *plan* layer: Neo4j's own ``EXPLAIN`` must say the query is of type
   read (``r``), and the plan may hold no write, file, transaction-batching or administration
   operator, and no procedure call off the allowlist.

The store then runs the query in an explicit read transaction (``READ_ACCESS``), terminated at
its deadline and cut at a row and a byte cap (:mod:`kg.cypher_run`). :func:`check_params` keeps the
parameters JSON-like. Every refusal is a :class:`QueryRejectedError` with a one-line reason.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from twinkg.ontology.errors import QueryRejectedError

MAX_QUERY_CHARS = 100_000
MAX_PARAM_DEPTH = 32

READ_ONLY_PROCEDURES = frozenset(
    {
        "db.labels",
        "db.relationshipTypes",
        "db.propertyKeys",
        "db.schema.visualization",
        "db.schema.nodeTypeProperties",
        "db.schema.relTypeProperties",
        "db.index.fulltext.queryNodes",
        "db.index.fulltext.queryRelationships",
        "db.index.vector.queryNodes",
        "db.index.vector.queryRelationships",
    }
)
"""Procedures an untrusted query may call: they read the graph or its schema and nothing else."""

# Clause keywords that write, administer or reach outside the graph. A word counts only where a
# keyword can stand (see _keyword_position); `name` in backticks is always an identifier.
_REFUSED_KEYWORDS = frozenset(
    {
        "create", "merge", "set", "delete", "detach", "remove", "foreach", "insert", "drop",
        "alter", "rename", "grant", "deny", "revoke", "terminate", "load", "enable",
        "deallocate", "reallocate", "dryrun",
    }
)  # fmt: skip
# START/STOP are administration only before DATABASE; SHOW only of the schema's descriptions.
_DATABASE_VERBS = frozenset({"start", "stop"})
_SHOW_NOUNS = frozenset(
    {
        "index", "indexes", "constraint", "constraints", "procedure", "procedures", "function",
        "functions", "user", "users", "role", "roles", "privilege", "privileges", "database",
        "databases", "alias", "aliases", "server", "servers", "transaction", "transactions",
        "setting", "settings", "default", "home", "current", "supported",
    }
)  # fmt: skip
_SHOW_ALLOWED_NOUNS = frozenset(
    {"index", "indexes", "constraint", "constraints", "procedure", "procedures", "function",
     "functions"}
)  # fmt: skip
# SHOW commands that only describe the schema; the others show settings, users, transactions.
_SHOW_ALLOWED = frozenset({"ShowIndexes", "ShowConstraints", "ShowProcedures", "ShowFunctions"})
_WRITE_OPERATORS = (
    "Create", "Merge", "LockingMerge", "Set", "Delete", "DetachDelete", "Remove", "Foreach",
    "Drop", "Load", "Transaction", "Terminate", "Administration", "SystemProcedure",
    "Enable", "Alter", "Rename", "Grant", "Deny", "Revoke",
)  # fmt: skip
# Trojan-source characters: they reorder what a reviewer sees without changing what runs.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})")
_WORD = re.compile(r"(?:[^\W]|\\u[0-9A-Fa-f]{4}|\$)+")
_PROCEDURE = re.compile(r"^\s*([\w.]+)\s*\(")


class TokenKind(StrEnum):
    """What a lexical token of Cypher is."""

    WORD = "word"
    IDENT = "ident"  # `backtick quoted`
    STRING = "string"
    COMMENT = "comment"
    SPACE = "space"
    PUNCT = "punct"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its text as written, and where it starts in the query."""

    kind: TokenKind
    text: str
    start: int

    @property
    def word(self) -> str:
        """The token as Cypher reads it, for comparison: escapes decoded, NFKC, case-folded,
        quotes stripped from identifiers."""
        text = self.text[1:-1].replace("``", "`") if self.kind is TokenKind.IDENT else self.text
        text = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
        return unicodedata.normalize("NFKC", text).casefold()


def tokenize(query: str) -> Iterator[Token]:
    """Cypher's tokens, enough to tell code from strings and comments.

    Raises :class:`QueryRejectedError` for a string, identifier or comment left open.
    """
    i, n = 0, len(query)
    while i < n:
        char, pair = query[i], query[i : i + 2]
        if pair == "//":
            end = query.find("\n", i)
            end = n if end < 0 else end
            yield Token(TokenKind.COMMENT, query[i:end], i)
        elif pair == "/*":
            end = query.find("*/", i + 2)
            if end < 0:
                raise QueryRejectedError(f"refused: a comment opened at offset {i} never closes")
            end += 2
            yield Token(TokenKind.COMMENT, query[i:end], i)
        elif char in "'\"":
            end = _string_end(query, i)
            yield Token(TokenKind.STRING, query[i:end], i)
        elif char == "`":
            end = _ident_end(query, i)
            yield Token(TokenKind.IDENT, query[i:end], i)
        elif char.isspace():
            end = i + 1
            while end < n and query[end].isspace():
                end += 1
            yield Token(TokenKind.SPACE, query[i:end], i)
        elif match := _WORD.match(query, i):
            end = match.end()
            yield Token(TokenKind.WORD, match.group(), i)
        else:
            end = i + 1
            yield Token(TokenKind.PUNCT, char, i)
        i = end


def _string_end(query: str, start: int) -> int:
    quote, i = query[start], start + 1
    while i < len(query):
        if query[i] == "\\":
            i += 2
            continue
        if query[i] == quote:
            return i + 1
        i += 1
    raise QueryRejectedError(f"refused: a string opened at offset {start} never closes")


def _ident_end(query: str, start: int) -> int:
    i = start + 1
    while True:
        end = query.find("`", i)
        if end < 0:
            raise QueryRejectedError(
                f"refused: a backtick identifier opened at offset {start} never closes"
            )
        if query[end + 1 : end + 2] != "`":
            return end + 1
        i = end + 2  # `` is an escaped backtick


def check_text(
    query: str, *, params: Mapping[str, Any] | None = None, max_chars: int = MAX_QUERY_CHARS
) -> None:
    """The lexical layer: refuse ``query`` unless it is one plausible read statement whose
    rows :mod:`kg.cypher_cost` can bound (with ``params``, the values of its parameters).

    Raises :class:`QueryRejectedError` (:class:`QueryUnboundedError` for the cost) with a
    one-line reason.
    """
    from twinkg.kg.cypher_cost import check_cost  # noqa: PLC0415 - it builds on this module's tokens

    if len(query) > max_chars:
        raise QueryRejectedError(
            f"refused: the query has {len(query)} characters; at most {max_chars} are allowed"
        )
    _check_characters(query)
    code = [t for t in tokenize(query) if t.kind not in (TokenKind.SPACE, TokenKind.COMMENT)]
    if not code:
        raise QueryRejectedError("refused: the query is empty")
    for i, token in enumerate(code):
        if token.kind is TokenKind.PUNCT and token.text == ";" and i + 1 < len(code):
            raise QueryRejectedError(
                f"refused: more than one statement (a ';' at offset {token.start} is followed "
                "by more Cypher); send one statement per request"
            )
        if token.kind is TokenKind.STRING:
            continue
        _check_token(code, i)
    check_cost(code, params)


def _check_characters(query: str) -> None:
    """NUL and other control characters anywhere; bidi overrides anywhere; invisible format
    characters (zero-width space, BOM) outside string literals."""
    for i, char in enumerate(query):
        category = unicodedata.category(char)
        if (category == "Cc" and char not in "\t\n\r") or char in _BIDI:
            raise QueryRejectedError(f"refused: control character U+{ord(char):04X} at offset {i}")
    for token in tokenize(query):
        if token.kind in (TokenKind.STRING, TokenKind.COMMENT):
            continue
        for j, char in enumerate(token.text):
            if unicodedata.category(char) == "Cf":
                raise QueryRejectedError(
                    f"refused: invisible character U+{ord(char):04X} at offset {token.start + j}"
                )


def _check_token(code: list[Token], i: int) -> None:
    token = code[i]
    word = token.word
    before = code[i - 1].word if i else ""
    after = code[i + 1].word if i + 1 < len(code) else ""
    if word == "apoc" or word.startswith("apoc."):
        raise QueryRejectedError("refused: APOC procedures and functions are not allowed")
    if token.kind is not TokenKind.WORD:
        return
    if not (token.text.isascii() and word.isascii()):
        raise QueryRejectedError(
            f"refused: non-ASCII name {token.text!r} at offset {token.start} outside quotes "
            "(homoglyphs and fullwidth letters hide keywords); put such names in backticks"
        )
    if not _keyword_position(before, code[i + 1 :]):
        return
    if word in _REFUSED_KEYWORDS or (word in _DATABASE_VERBS and after == "database"):
        raise QueryRejectedError(
            f"refused: {token.text.upper()} (offset {token.start}) writes, administers or "
            "reads files; only read queries are allowed"
        )
    if word == "show":
        _check_show(code, i)
    if word == "use":
        raise QueryRejectedError("refused: USE (another database) is not allowed")
    if word == "in" and before == "}" and "transactions" in (t.word for t in code[i + 1 : i + 4]):
        raise QueryRejectedError("refused: CALL { } IN TRANSACTIONS is not allowed")
    if word == "call" and after not in ("{", "("):
        folded, shown = _procedure_name(code[i + 1 :])
        if folded not in _ALLOWED_FOLDED:
            raise QueryRejectedError(f"refused: procedure {shown} is not on the read-only list")


_ALLOWED_FOLDED = frozenset(p.casefold() for p in READ_ONLY_PROCEDURES)


def _check_show(code: list[Token], i: int) -> None:
    """``SHOW …``: only of indexes, constraints, procedures and functions (the first noun after
    SHOW decides: ``SHOW CURRENT USER`` shows a user, ``SHOW PROCEDURES EXECUTABLE BY …`` not)."""
    noun = next((t.word for t in code[i + 1 :] if t.word in _SHOW_NOUNS), "")
    if noun not in _SHOW_ALLOWED_NOUNS:
        raise QueryRejectedError(
            f"refused: SHOW {noun.upper() or '…'} (offset {code[i].start}) shows server state; "
            "only SHOW INDEXES, CONSTRAINTS, PROCEDURES and FUNCTIONS are allowed"
        )


def _keyword_position(before: str, rest: list[Token]) -> bool:
    """Whether a word can be a clause keyword: not a property key (``n.set``), label
    (``:Set``), alias (``AS set``) or map key (``{set: 1}``), and followed by what a clause
    keyword is followed by (a name or a parenthesis), unlike a variable (``RETURN set``)."""
    if before in (".", ":", "as") or not rest:
        return False
    return rest[0].kind in (TokenKind.WORD, TokenKind.IDENT) or rest[0].text == "("


def _procedure_name(rest: list[Token]) -> tuple[str, str]:
    """The dotted name after ``CALL``: case-folded for comparison, and as written."""
    folded: list[str] = []
    shown: list[str] = []
    for token in rest:
        if token.kind in (TokenKind.WORD, TokenKind.IDENT):
            folded.append(token.word)
            shown.append(token.text)
        elif token.text != ".":
            break
    return ".".join(folded), ".".join(shown) or "(no name)"


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def check_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """A plain copy of ``params`` if every value is JSON-like (str, int, float, bool, None, and
    lists and str-keyed maps of those); otherwise :class:`QueryRejectedError`."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise QueryRejectedError("refused: parameters must be a map of names to values")
    for name, value in params.items():
        if not isinstance(name, str) or not name:
            raise QueryRejectedError(f"refused: parameter name {name!r} is not a non-empty string")
        _check_value(value, f"${name}", 0)
    return dict(params)


def _check_value(value: Any, where: str, depth: int) -> None:
    if depth > MAX_PARAM_DEPTH:
        raise QueryRejectedError(f"refused: parameter {where} nests deeper than {MAX_PARAM_DEPTH}")
    if type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
        raise QueryRejectedError(
            f"refused: parameter {where} is an integer outside Neo4j's 64-bit range"
        )
    if value is None or type(value) in (str, int, float, bool):
        return
    if type(value) is list:
        for k, item in enumerate(value):
            _check_value(item, f"{where}[{k}]", depth + 1)
        return
    if type(value) is dict:
        for key, item in value.items():
            if not isinstance(key, str):
                raise QueryRejectedError(f"refused: parameter {where} has a key that is no string")
            _check_value(item, f"{where}.{key}", depth + 1)
        return
    raise QueryRejectedError(
        f"refused: parameter {where} is a {type(value).__name__}; only JSON-like values "
        "(text, numbers, booleans, null, lists, maps) are allowed"
    )


def check_plan(query_type: str | None, plan: Mapping[str, Any] | None) -> None:
    """The plan layer: ``EXPLAIN``'s query type must be read and its plan only read.

    Raises :class:`QueryRejectedError` naming what was refused.
    """
    if query_type != "r":
        kinds = {"w": "writes", "rw": "reads and writes", "s": "changes schema or system"}
        what = kinds.get(query_type or "", f"is of type {query_type!r}")
        raise QueryRejectedError(f"refused: the query {what}; only read queries are allowed")
    if not plan:
        raise QueryRejectedError("refused: Neo4j gave no plan to check")
    for operator, details in _operators(plan):
        _check_operator(operator, details)


def _operators(plan: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    stack = [plan]
    while stack:
        node = stack.pop()
        args = node.get("args") or node.get("arguments") or {}
        yield str(node.get("operatorType", "")), str(args.get("Details", ""))
        stack.extend(node.get("children") or ())


def _check_operator(operator_type: str, details: str) -> None:
    operator, _, runtime = operator_type.partition("@")
    if runtime == "system":
        raise QueryRejectedError(f"refused: {operator} is a system command")
    if operator.startswith("LoadCSV"):
        raise QueryRejectedError("refused: LOAD CSV reads files; it is not allowed")
    if operator.startswith("Transaction"):
        raise QueryRejectedError("refused: CALL { } IN TRANSACTIONS is not allowed")
    if operator.startswith(_WRITE_OPERATORS):
        raise QueryRejectedError(f"refused: the plan writes ({operator})")
    if operator.startswith("Show") and operator not in _SHOW_ALLOWED:
        raise QueryRejectedError(f"refused: {operator} shows server state; it is not allowed")
    if operator.startswith("ProcedureCall"):
        match = _PROCEDURE.match(details)
        name = match.group(1) if match else details or "(unnamed)"
        if name not in READ_ONLY_PROCEDURES:
            raise QueryRejectedError(f"refused: procedure {name} is not on the read-only list")
