"""The structure of a Cypher query as the guard reads it: brackets, clauses, bound names.

Not a parser: :func:`tree` nests the tokens of :func:`kg.cypher_guard.tokenize` by their brackets,
:func:`clauses` splits a statement at its read clauses, and :func:`declarations` collects the
names a query binds (``AS`` aliases, ``YIELD`` columns, iteration variables, pattern variables),
which is all :mod:`kg.cypher_cost` needs to bound what one row computes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from twinkg.kg.cypher_guard import Token, TokenKind
from twinkg.ontology.errors import QueryUnboundedError

MAX_NESTING = 64
"""Deepest bracket nesting analysed (and accepted)."""

_CLOSE = {"(": ")", "[": "]", "{": "}"}

# The clauses of a read query (write clauses never get this far: the keyword layer refuses them,
# so a word like `create` here is a variable).
CLAUSES = frozenset(
    {
        "match", "optional", "with", "return", "unwind", "where", "order", "skip", "limit",
        "offset", "union", "call", "yield", "finish",
    }
)  # fmt: skip
# Words the analysis reads as structure: a variable named like one is refused, backticks or not
# (Neo4j accepts `WITH 1 AS with RETURN with + with`).
STRUCTURAL = CLAUSES | frozenset({"as", "in", "starts", "ends"})
_PATTERN_NEXT = (":", "*")  # after a pattern's variable: a label or type, a length


@dataclass(frozen=True, slots=True)
class Group:
    """The items between one pair of brackets, and where the opening bracket stands."""

    bracket: str  # "(", "[" or "{"
    items: tuple[Item, ...]
    start: int


Item = Token | Group


def tree(code: Sequence[Token]) -> list[Item]:
    """The tokens as nested bracket groups; unbalanced or too deep brackets are refused."""
    stack: list[tuple[str, int, list[Item]]] = [("", 0, [])]
    for token in code:
        text = token.text if token.kind is TokenKind.PUNCT else ""
        if text in _CLOSE:
            if len(stack) > MAX_NESTING:
                raise QueryUnboundedError(
                    f"refused: brackets nest deeper than {MAX_NESTING} levels "
                    f"(offset {token.start})"
                )
            stack.append((text, token.start, []))
        elif text and text in ")]}":
            bracket, start, items = stack.pop() if len(stack) > 1 else ("", 0, [])
            if _CLOSE.get(bracket) != text:
                raise QueryUnboundedError(
                    f"refused: '{text}' at offset {token.start} closes no matching bracket"
                )
            stack[-1][2].append(Group(bracket, tuple(items), start))
        else:
            stack[-1][2].append(token)
    if len(stack) > 1:
        bracket, start, _ = stack[-1]
        raise QueryUnboundedError(f"refused: '{bracket}' at offset {start} never closes")
    return stack[0][2]


def declarations(items: Sequence[Item]) -> tuple[frozenset[str], frozenset[str]]:
    """Every name the query binds, and those of them bound to computed values (``AS``,
    ``YIELD``, iteration and accumulator variables) rather than to the graph (patterns)."""
    declared: set[str] = set()
    computed: set[str] = set()
    for keyword, body in clauses(items):
        if keyword == "yield":
            names = {word(i) for i in body if word(i)}
            declared |= names
            computed |= names
    for i, item in enumerate(items):
        nxt, after = at(items, i + 1), at(items, i + 2)
        if isinstance(item, Group):
            first, second = word(at(item.items, 0)), at(item.items, 1)
            if (
                first
                and item.bracket in "(["
                and (
                    second is None
                    or group(second, "{") is not None
                    or any(is_punct(second, p) for p in _PATTERN_NEXT)
                    or word(second) in ("where", "is", "in")
                )
            ):
                declared.add(first)
                if word(second) == "in":
                    computed.add(first)
            inner_declared, inner_computed = declarations(item.items)
            declared |= inner_declared
            computed |= inner_computed
        elif (name := word(item)) and word(at(items, i - 1)) == "as":
            declared.add(name)
            computed.add(name)
        elif (
            name
            and is_punct(nxt, "=")
            and not is_punct(after, "~")
            and not is_punct(at(items, i - 1), ".")
        ):
            declared.add(name)
            if group(after, "(") is None and word(after) not in (
                "shortestpath",
                "allshortestpaths",
            ):
                computed.add(name)
    return frozenset(declared), frozenset(computed)


def word(item: Item | None) -> str:
    """A word or backtick name as Cypher compares it; "" for anything else."""
    if isinstance(item, Token) and item.kind in (TokenKind.WORD, TokenKind.IDENT):
        return item.word
    return ""


def is_punct(item: Item | None, text: str) -> bool:
    return isinstance(item, Token) and item.kind is TokenKind.PUNCT and item.text == text


def group(item: Item | None, bracket: str) -> Group | None:
    return item if isinstance(item, Group) and item.bracket == bracket else None


def at(items: Sequence[Item], i: int) -> Item | None:
    return items[i] if 0 <= i < len(items) else None


def split(items: Sequence[Item], separator: str = ",") -> list[list[Item]]:
    """``items`` split at the top-level punctuation ``separator``."""
    parts: list[list[Item]] = [[]]
    for item in items:
        if is_punct(item, separator):
            parts.append([])
        else:
            parts[-1].append(item)
    return parts


def partition(items: Sequence[Item], separator: str) -> tuple[list[Item], list[Item]]:
    """``items`` before and after their first top-level ``separator`` (all, none without)."""
    for k, item in enumerate(items):
        if is_punct(item, separator):
            return list(items[:k]), list(items[k + 1 :])
    return list(items), []


def flatten(items: Sequence[Item]) -> list[Token]:
    tokens: list[Token] = []
    for item in items:
        if isinstance(item, Group):
            tokens.extend(flatten(item.items))
        else:
            tokens.append(item)
    return tokens


def clauses(items: Sequence[Item]) -> list[tuple[str, list[Item]]]:
    """The top-level clauses of a statement: (keyword, the items after it)."""
    found: list[tuple[str, list[Item]]] = [("", [])]
    for i, item in enumerate(items):
        keyword = word(item) if isinstance(item, Token) and item.kind is TokenKind.WORD else ""
        before = word(items[i - 1]) if i else ""
        if (
            keyword in CLAUSES
            and before not in ("starts", "ends", "as", "optional")
            and not (i and (is_punct(items[i - 1], ".") or is_punct(items[i - 1], ":")))
        ):
            found.append((keyword, []))
        else:
            found[-1][1].append(item)
    return [(k, body) for k, body in found if k or body]


_STRING_ESCAPES = {"t": "\t", "b": "\b", "n": "\n", "r": "\r", "f": "\f"}


def unquote(literal: str) -> str:
    """A Cypher string literal's value."""
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "uU" and re.fullmatch(r"[0-9A-Fa-f]{4}", body[i + 2 : i + 6]):
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_STRING_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)
