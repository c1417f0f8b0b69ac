"""How much one row of untrusted Cypher may compute: the row-cost rule (decision 0029).

Neo4j checks a transaction's deadline, its termination and its memory limit between rows and on
graph reads, never inside one expression: ``reduce`` over ``range(1, 10000000)`` runs to its end
whatever the timeout, 30,000 list appends in one ``reduce`` overflow the server's stack (it then
never answers), and ``WITH s + s AS s`` written 26 times fills the heap and ends the server. So
the lexical layer bounds, from the text and the parameters alone, what a single row computes, and
refuses what it cannot bound (:class:`QueryUnboundedError`, ``query_unbounded``):

1. **Ranges.** ``range(start, end[, step])`` takes integer literals or integer parameters, and
   yields at most :data:`MAX_RANGE_ITEMS` items: a range is the one way to make a long list
   from nothing.
2. **Iteration inside a row** (``[x IN l …]``, ``reduce(…, x IN l | …)``, ``all``/``any``/
   ``none``/``single(x IN l …)``). A list is *bounded* when it is a range, a list literal or a
   parameter; any other list (a property, ``collect``, ``nodes(p)``) was built row by row, within
   the time limit, and is *unbounded* here. Nested iterations multiply: the product of the
   bounded lengths along a nesting may not pass :data:`MAX_ROW_STEPS`, and an unbounded list may
   be iterated only where no other iteration encloses it or lies within it. The body of an
   iteration over an unbounded list may use its own variable, parameters, literals and graph
   variables (nodes, relationships, paths), not other computed values (``[x IN xs | xs]`` is
   quadratic). ``UNWIND`` makes rows, which Neo4j interrupts: use it instead.
3. **reduce** runs over a bounded list of at most :data:`MAX_REDUCE_STEPS` items and names its
   accumulator at most once per step (``acc + acc`` doubles every step).
4. **Growth.** A value combined with itself grows exponentially along a chain of clauses. Each
   projection (``WITH``, ``RETURN``, ``UNWIND``) has a growth factor: the most uses of one
   variable in it, where reads of distinct properties of one variable count once together and a
   use inside an iteration over *n* items counts *n* times; ``replace(s, a, b)`` multiplies
   what ``s`` uses by ``len(b) / len(a)`` (``b`` must be a literal or a parameter). The product
   over the whole query may not pass :data:`MAX_GROWTH`.
5. **Regular expressions** (``=~``) are literals or parameters without a quantified group that
   itself holds a quantifier or an alternation, and without back-references: Java's matcher
   backtracks exponentially on those and cannot be interrupted.

What a row reads from the graph is bounded by the stored graph, which an untrusted caller cannot
change; aggregations (``collect``) run row by row within Neo4j's memory limit. Counting is
conservative (both branches of a ``CASE`` count), so a few harmless queries are refused too; the
message names the rule.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kg.cypher_guard import Token, TokenKind
from ontology.errors import QueryUnboundedError

MAX_RANGE_ITEMS = 100_000
"""Most items one ``range()`` may yield."""
MAX_ROW_STEPS = 1_000_000
"""Most steps nested iterations inside one row may take together."""
MAX_REDUCE_STEPS = 1_000
"""Most items one ``reduce`` may fold."""
MAX_GROWTH = 64
"""Most a row's values may grow over the whole query (the product of the projections' factors)."""
MAX_NESTING = 64
"""Deepest bracket nesting analysed (and accepted)."""

_CLOSE = {"(": ")", "[": "]", "{": "}"}
_INTEGER = re.compile(r"^(?:0x[0-9a-f_]+|0o[0-7_]+|[0-9][0-9_]*)$")
_QUANTIFIERS = ("all", "any", "none", "single")
_SUBQUERY = ("count", "exists", "collect", "call")
_PROJECTIONS = ("with", "return", "unwind")
# The clauses of a read query (write clauses never get this far: the keyword layer refuses them,
# so a word like `create` here is a variable).
_CLAUSES = frozenset(
    {
        "match", "optional", "with", "return", "unwind", "where", "order", "skip", "limit",
        "offset", "union", "call", "yield", "finish",
    }
)  # fmt: skip
# Words the analysis reads as structure: a variable named like one is refused, backticks or not
# (Neo4j accepts `WITH 1 AS with RETURN with + with`).
_STRUCTURAL = _CLAUSES | frozenset({"as", "in", "starts", "ends"})
_PATTERN_NEXT = (":", "*")  # after a pattern's variable: a label or type, a length


@dataclass(frozen=True, slots=True)
class _Group:
    bracket: str  # "(", "[" or "{"
    items: tuple[_Item, ...]
    start: int


_Item = Token | _Group


def check_cost(code: Sequence[Token], params: Mapping[str, Any] | None = None) -> None:
    """Refuse ``code`` (a query's tokens without spaces and comments) unless the row-cost rule
    bounds what one of its rows computes; ``params`` are the values its ``$parameters`` take.

    Raises :class:`QueryUnboundedError` naming the rule.
    """
    tree = _tree(code)
    declared, computed = _declarations(tree)
    for token in code:
        if token.kind is TokenKind.WORD and token.word in declared & _STRUCTURAL:
            raise QueryUnboundedError(
                f"refused: {token.word} names a variable and is a keyword the guard reads as "
                "structure (even in backticks); rename the variable"
            )
    cost = _Cost(params or {}, declared, computed)
    cost.statement(tree, _Scope())
    if cost.growth > MAX_GROWTH:
        raise QueryUnboundedError(
            f"refused: values may grow more than {MAX_GROWTH}-fold within one row (a variable "
            "used several times per clause, over several clauses)"
        )


def _tree(code: Sequence[Token]) -> list[_Item]:
    """The tokens as nested bracket groups; unbalanced or too deep brackets are refused."""
    stack: list[tuple[str, int, list[_Item]]] = [("", 0, [])]
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
            stack[-1][2].append(_Group(bracket, tuple(items), start))
        else:
            stack[-1][2].append(token)
    if len(stack) > 1:
        bracket, start, _ = stack[-1]
        raise QueryUnboundedError(f"refused: '{bracket}' at offset {start} never closes")
    return stack[0][2]


def _declarations(items: Sequence[_Item]) -> tuple[frozenset[str], frozenset[str]]:
    """Every name the query binds, and those of them bound to computed values (``AS``,
    ``YIELD``, iteration and accumulator variables) rather than to the graph (patterns)."""
    declared: set[str] = set()
    computed: set[str] = set()
    for keyword, body in _clauses(items):
        if keyword == "yield":
            names = {_word(i) for i in body if _word(i)}
            declared |= names
            computed |= names
    for i, item in enumerate(items):
        nxt, after = _at(items, i + 1), _at(items, i + 2)
        if isinstance(item, _Group):
            first, second = _word(_at(item.items, 0)), _at(item.items, 1)
            if (
                first
                and item.bracket in "(["
                and (
                    second is None
                    or _group(second, "{") is not None
                    or any(_is(second, p) for p in _PATTERN_NEXT)
                    or _word(second) in ("where", "is", "in")
                )
            ):
                declared.add(first)
                if _word(second) == "in":
                    computed.add(first)
            inner_declared, inner_computed = _declarations(item.items)
            declared |= inner_declared
            computed |= inner_computed
        elif (name := _word(item)) and _word(_at(items, i - 1)) == "as":
            declared.add(name)
            computed.add(name)
        elif name and _is(nxt, "=") and not _is(after, "~") and not _is(_at(items, i - 1), "."):
            declared.add(name)
            if _group(after, "(") is None and _word(after) not in (
                "shortestpath",
                "allshortestpaths",
            ):
                computed.add(name)
    return frozenset(declared), frozenset(computed)


def _word(item: _Item | None) -> str:
    """A word or backtick name as Cypher compares it; "" for anything else."""
    if isinstance(item, Token) and item.kind in (TokenKind.WORD, TokenKind.IDENT):
        return item.word
    return ""


def _is(item: _Item | None, text: str) -> bool:
    return isinstance(item, Token) and item.kind is TokenKind.PUNCT and item.text == text


def _group(item: _Item | None, bracket: str) -> _Group | None:
    return item if isinstance(item, _Group) and item.bracket == bracket else None


def _at(items: Sequence[_Item], i: int) -> _Item | None:
    return items[i] if 0 <= i < len(items) else None


def _split(items: Sequence[_Item], separator: str = ",") -> list[list[_Item]]:
    """``items`` split at the top-level punctuation ``separator``."""
    parts: list[list[_Item]] = [[]]
    for item in items:
        if _is(item, separator):
            parts.append([])
        else:
            parts[-1].append(item)
    return parts


def _partition(items: Sequence[_Item], separator: str) -> tuple[list[_Item], list[_Item]]:
    """``items`` before and after their first top-level ``separator`` (all, none without)."""
    for k, item in enumerate(items):
        if _is(item, separator):
            return list(items[:k]), list(items[k + 1 :])
    return list(items), []


def _flatten(items: Sequence[_Item]) -> list[Token]:
    tokens: list[Token] = []
    for item in items:
        if isinstance(item, _Group):
            tokens.extend(_flatten(item.items))
        else:
            tokens.append(item)
    return tokens


@dataclass(frozen=True, slots=True)
class _Local:
    """An iteration's variable: its name in the counts, and the length of that iteration
    (1 when unbounded; 0 for an accumulator, whose uses are counted through the steps)."""

    alias: str
    steps: int


@dataclass(frozen=True, slots=True)
class _Scope:
    """Where an expression sits: how often it is evaluated per row (``weight``), the lengths of
    the iterations around it (``chain``; None for an unbounded one), whether its values reach
    the row (``counting``), the iteration variables in reach, and, in the body of an iteration
    over an unbounded list or of a pattern comprehension, the only names it may use."""

    weight: int = 1
    chain: tuple[int | None, ...] = ()
    counting: bool = False
    locals: Mapping[str, _Local] = field(default_factory=dict)
    allowed: frozenset[str] | None = None

    def steps(self) -> int:
        """The product of the bounded lengths around."""
        return math.prod(n for n in self.chain if n is not None)


@dataclass
class _Cost:
    """The walk over one query: its parameters, its names, and the growth so far."""

    params: Mapping[str, Any]
    declared: frozenset[str]
    computed: frozenset[str]
    growth: int = 1
    refs: Counter[tuple[str, str | None]] = field(default_factory=Counter)
    serial: int = 0

    # -- statements -----------------------------------------------------------------------

    def statement(self, items: Sequence[_Item], scope: _Scope) -> None:
        """Clauses in order; each projection multiplies the growth by its factor."""
        for keyword, body in _clauses(items):
            if keyword in _PROJECTIONS:
                outer, self.refs = self.refs, Counter()
                self.expression(body, replace(scope, counting=True))
                factor = _factor(self.refs)
                if keyword == "unwind" or any(_is(i, "*") for i in body):
                    factor += 1  # the row keeps what it had
                self.refs = outer
                self.growth = min(self.growth * max(1, factor), MAX_GROWTH + 1)
            elif keyword == "call":
                for item in body:
                    if (group := _group(item, "{")) is not None:
                        self.statement(group.items, replace(scope, counting=False))
                    else:
                        self.expression([item], replace(scope, counting=False))
            else:
                self.expression(body, replace(scope, counting=False))

    # -- expressions ----------------------------------------------------------------------

    def expression(self, items: Sequence[_Item], scope: _Scope) -> None:
        """Check every construct in ``items`` and note the variables they use."""
        i = 0
        while i < len(items):
            item, before = items[i], _at(items, i - 1)
            if isinstance(item, _Group):
                if item.bracket == "[":
                    self.bracket_list(item, scope)
                elif item.bracket == "{" and _word(before) in _SUBQUERY:
                    self.statement(item.items, replace(scope, chain=(), counting=False))
                elif item.bracket == "{":
                    self.map_literal(item, scope, owner=None)
                else:
                    self.expression(item.items, scope)
            elif _is(item, "=") and _is(_at(items, i + 1), "~"):
                self.regex(_at(items, i + 2), item)
                i += 1
            elif scope.chain and _word(item) == "in" and isinstance(item, Token):
                self.membership(items[i + 1 : i + 3], scope, item)
            elif _word(item) and not (_is(before, ".") or _is(before, ":")):
                i = self.word(items, i, scope)
            i += 1

    def word(self, items: Sequence[_Item], i: int, scope: _Scope) -> int:
        """A name at ``items[i]``: a function call, a literal, a keyword or a variable; the index
        of the last item it spans."""
        name, end = _word(items[i]), i
        while _is(_at(items, end + 1), ".") and _word(_at(items, end + 2)):
            end += 2
        call = _group(_at(items, end + 1), "(")
        if call is not None and not name.startswith("$"):
            function = ".".join(_word(items[k]) for k in range(i, end + 1, 2))
            self.function(function, call, scope, items[i])
            return end + 1
        if name.startswith("$"):
            self.use(name, _word(items[i + 2]) if end > i else None, scope, items[i])
            return end
        if name not in self.declared or _word(_at(items, i - 1)) == "as":
            return end  # a keyword, a literal, or the name an alias declares
        projection = _group(_at(items, i + 1), "{")
        if projection is not None and name not in _SUBQUERY:
            self.map_literal(projection, scope, owner=name)
            return i + 1
        self.use(name, _word(items[i + 2]) if end > i else None, scope, items[i])
        return end

    def use(self, name: str, key: str | None, scope: _Scope, where: _Item) -> None:
        """Note a use of the variable ``name`` (of its property ``key`` when read alone)."""
        local = scope.locals.get(name)
        if scope.counting and scope.allowed is not None and name not in scope.allowed:
            raise QueryUnboundedError(
                f"refused: {name} (offset {where.start}) is repeated once per item of an "
                "unbounded list or per match of a pattern; such a body may use only its own "
                "variables (iterate with UNWIND instead)"
            )
        if not scope.counting or (local is not None and local.steps == 0):
            return
        if local is not None:
            self.refs[(local.alias, key)] += max(1, scope.weight // local.steps)
        else:
            self.refs[(name, key)] += scope.weight

    def function(self, name: str, call: _Group, scope: _Scope, where: _Item) -> None:
        """A call; ``range``, ``reduce``, the quantifiers and ``replace`` have rules."""
        args = _split(call.items)
        if name == "range":
            self.range_length(args, where)
            self.expression(call.items, scope)
        elif name == "reduce":
            self.reduce(call, scope, where)
        elif name in _QUANTIFIERS and _word(_at(call.items, 1)) == "in":
            self.iteration(call.items, scope, where, output=False)
        elif name == "replace" and len(args) == 3:
            factor = self.replace_factor(args, where)
            self.expression(args[0], replace(scope, weight=scope.weight * factor))
            self.expression([*args[1], *args[2]], scope)
        else:
            self.expression(call.items, scope)

    def bracket_list(self, group: _Group, scope: _Scope) -> None:
        """``[…]``: a list comprehension, a pattern comprehension, a list literal or an index."""
        items = group.items
        has_pipe = any(_is(item, "|") for item in items)
        if _word(_at(items, 0)) and _word(_at(items, 1)) == "in":
            self.iteration(items, scope, group, output=True)
        elif has_pipe and (_group(_at(items, 0), "(") or _is(_at(items, 1), "=")):
            self.pattern_comprehension(items, scope)
        else:
            self.expression(items, scope)

    def iteration(
        self, items: Sequence[_Item], scope: _Scope, where: _Item, *, output: bool
    ) -> None:
        """``x IN list [WHERE p] [| body]``: a comprehension (``output``) or a quantifier."""
        cut = next(
            (k for k in range(2, len(items)) if _word(items[k]) == "where" or _is(items[k], "|")),
            len(items),
        )
        source, rest = items[2:cut], items[cut:]
        self.expression(source, scope)
        inner = self.enter(scope, source, where, _word(items[0]))
        condition, body = _partition(rest, "|")
        self.expression(condition, replace(inner, counting=False))
        if output:
            self.expression(body, inner)

    def reduce(self, call: _Group, scope: _Scope, where: _Item) -> None:
        """``reduce(acc = init, x IN list | step)``: bounded, and ``acc`` once per step."""
        left, right = _partition(call.items, ",")
        if len(left) < 2 or len(right) < 3 or _word(right[1]) != "in":
            self.expression(call.items, scope)  # not reduce's shape: Neo4j will say why
            return
        acc = _word(left[0])
        source, step = _partition(right[2:], "|")
        self.expression(left[2:], scope)
        self.expression(source, scope)
        length = self.length(source)
        if length is None or length > MAX_REDUCE_STEPS:
            raise QueryUnboundedError(
                f"refused: reduce (offset {where.start}) may fold at most {MAX_REDUCE_STEPS} "
                "items of a range, a list literal or a parameter (its accumulator can grow with "
                "every step); aggregate rows with sum(), collect() and the like instead"
            )
        uses = sum(1 for token in _flatten(step) if _word(token) == acc)
        if uses > 1:
            raise QueryUnboundedError(
                f"refused: reduce (offset {where.start}) uses its accumulator {acc} {uses} "
                "times per step, which can double it every step; use it at most once"
            )
        inner = self.enter(scope, source, where, _word(right[0]))
        locals_ = {**inner.locals, acc: _Local(self.fresh(acc), 0)}
        self.expression(step, replace(inner, locals=locals_))

    def pattern_comprehension(self, items: Sequence[_Item], scope: _Scope) -> None:
        """``[(a)-->(b) WHERE p | body]``: graph reads, which Neo4j interrupts; the body may use
        graph variables but not computed values (it repeats them once per match)."""
        pattern, body = _partition(items, "|")
        self.expression(pattern, replace(scope, counting=False))
        names = frozenset(_word(t) for t in _flatten(pattern) if _word(t) in self.declared)
        self.expression(body, replace(scope, chain=(), allowed=names))

    def map_literal(self, group: _Group, scope: _Scope, *, owner: str | None) -> None:
        """``{k: v, …}``, or ``owner {.k, .*, k: v, x}`` (a map projection)."""
        for entry in _split(group.items):
            if owner is not None and entry and _is(entry[0], "."):
                key = None if _is(_at(entry, 1), "*") else _word(_at(entry, 1))
                self.use(owner, key, scope, entry[0])
            elif len(entry) > 1 and _word(entry[0]) and _is(entry[1], ":"):
                self.expression(entry[2:], scope)
            else:
                self.expression(entry, scope)

    # -- the rules ------------------------------------------------------------------------

    def membership(self, operand: Sequence[_Item], scope: _Scope, where: _Item) -> None:
        """``x IN list`` inside an iteration: a nested iteration over the list."""
        if len(operand) == 2 and not (_word(operand[0]) == "range" and _group(operand[1], "(")):
            operand = operand[:1]
        self.enter(scope, operand, where, "")

    def enter(self, scope: _Scope, source: Sequence[_Item], where: _Item, var: str) -> _Scope:
        """The scope of the body of an iteration over ``source``."""
        length = self.length(source)
        if length is None and scope.chain:
            raise QueryUnboundedError(
                f"refused: the iteration at offset {where.start} runs over an unbounded list "
                "inside another iteration; only ranges, list literals and parameters may be "
                "iterated in nested iterations (or UNWIND the outer list into rows)"
            )
        if None in scope.chain:
            raise QueryUnboundedError(
                f"refused: the iteration or IN test at offset {where.start} nests inside an "
                "iteration over an unbounded list (from the graph or an aggregation), which may "
                "hold none; UNWIND that list into rows instead"
            )
        if scope.steps() * (length or 1) > MAX_ROW_STEPS:
            raise QueryUnboundedError(
                f"refused: the iterations nested at offset {where.start} take more than "
                f"{MAX_ROW_STEPS} steps in one row; UNWIND the outer list into rows instead"
            )
        steps = 1 if length is None else max(1, length)
        # Items of numbers and ranges are small: their uses need no counting.
        constant = not any(
            t.kind is TokenKind.STRING or t.word.startswith("$") or t.word in self.declared
            for t in _flatten(source)
        )
        locals_ = {**scope.locals, var: _Local(self.fresh(var), 0 if constant else steps)}
        return _Scope(
            weight=scope.weight * steps,
            chain=(*scope.chain, length),
            counting=scope.counting,
            locals=locals_,
            allowed=frozenset({var}) if length is None else scope.allowed,
        )

    def fresh(self, name: str) -> str:
        """A name for an iteration's variable that no other variable has."""
        self.serial += 1
        return f"{name}#{self.serial}"

    def length(self, source: Sequence[_Item]) -> int | None:
        """How many items ``source`` has when it is a range, a list literal or a parameter."""
        group = _group(source[0], "[") if len(source) == 1 else None
        if group is not None:
            if _word(_at(group.items, 1)) == "in" or any(_is(i, "|") for i in group.items):
                return None  # a comprehension
            return len([part for part in _split(group.items) if part])
        if len(source) == 1 and _word(source[0]).startswith("$"):
            value = self.params.get(_word(source[0])[1:])
            return len(value) if isinstance(value, list) else 1
        call = _group(source[1], "(") if len(source) == 2 else None
        if call is not None and _word(source[0]) == "range":
            return self.range_length(_split(call.items), source[0])
        return None

    def range_length(self, args: list[list[_Item]], where: _Item) -> int:
        """The length of ``range(args)``; refused unless its bounds are constant and near."""
        values = [self.integer(arg) for arg in args]
        if len(values) not in (2, 3) or any(v is None for v in values):
            raise QueryUnboundedError(
                f"refused: range() at offset {where.start} takes integer literals or integer "
                "parameters as its bounds and step"
            )
        start, end, step = (int(v or 0) for v in (*values, 1)[:3])
        if step == 0:
            raise QueryUnboundedError(f"refused: range() at offset {where.start} has step 0")
        count = len(range(start, end + (1 if step > 0 else -1), step))
        if count > MAX_RANGE_ITEMS:
            raise QueryUnboundedError(
                f"refused: range() at offset {where.start} has {count} items; at most "
                f"{MAX_RANGE_ITEMS} are allowed"
            )
        return count

    def integer(self, arg: Sequence[_Item]) -> int | None:
        """An integer literal or parameter, optionally signed; None for anything else."""
        sign = 1
        if arg and (_is(arg[0], "-") or _is(arg[0], "+")):
            sign = -1 if _is(arg[0], "-") else 1
            arg = arg[1:]
        text = _word(arg[0]) if len(arg) == 1 else ""
        if text.startswith("$"):
            value = self.params.get(text[1:])
            return sign * value if type(value) is int else None
        if not _INTEGER.match(text):
            return None
        return sign * int(text.replace("_", ""), 0)

    def replace_factor(self, args: list[list[_Item]], where: _Item) -> int:
        """How many times ``replace(s, search, replacement)`` can grow ``s``."""
        search, replacement = self.text(args[1]), self.text(args[2])
        if replacement is None:
            raise QueryUnboundedError(
                f"refused: replace() at offset {where.start} needs its replacement as a string "
                "literal or parameter (a computed one can square the text)"
            )
        return max(1, math.ceil(len(replacement) / max(1, len(search or ""))))

    def text(self, arg: Sequence[_Item | None]) -> str | None:
        """A string literal's or string parameter's value; None for anything else."""
        token = arg[0] if len(arg) == 1 else None
        if not isinstance(token, Token):
            return None
        if token.kind is TokenKind.STRING:
            return _unquote(token.text)
        value = self.params.get(token.word[1:]) if token.word.startswith("$") else None
        return value if isinstance(value, str) else None

    def regex(self, operand: _Item | None, where: Token) -> None:
        """``=~``: a literal or parameter pattern that cannot backtrack exponentially."""
        pattern = self.text([operand])
        if pattern is None:
            raise QueryUnboundedError(
                f"refused: =~ at offset {where.start} needs its pattern as a string literal or "
                "parameter"
            )
        reason = _backtracking(pattern)
        if reason:
            raise QueryUnboundedError(f"refused: the pattern at offset {where.start} {reason}")


def _clauses(items: Sequence[_Item]) -> list[tuple[str, list[_Item]]]:
    """The top-level clauses of a statement: (keyword, the items after it)."""
    clauses: list[tuple[str, list[_Item]]] = [("", [])]
    for i, item in enumerate(items):
        word = _word(item) if isinstance(item, Token) and item.kind is TokenKind.WORD else ""
        before = _word(items[i - 1]) if i else ""
        if (
            word in _CLAUSES
            and before not in ("starts", "ends", "as", "optional")
            and not (i and (_is(items[i - 1], ".") or _is(items[i - 1], ":")))
        ):
            clauses.append((word, []))
        else:
            clauses[-1][1].append(item)
    return [(k, body) for k, body in clauses if k or body]


def _factor(refs: Counter[tuple[str, str | None]]) -> int:
    """A projection's growth: per variable, its whole uses plus its most-used property (0 when
    it uses no variable)."""
    whole: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    for (name, key), count in refs.items():
        if key is None:
            whole[name] += count
        else:
            parts[name] = max(parts[name], count)
    return max((whole[n] + parts[n] for n in {*whole, *parts}), default=0)


_STRING_ESCAPES = {"t": "\t", "b": "\b", "n": "\n", "r": "\r", "f": "\f"}


def _unquote(literal: str) -> str:
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


def _backtracking(pattern: str) -> str | None:
    """Why a Java regular expression may backtrack exponentially; None when it cannot."""
    if re.search(r"\\[1-9]|\\k<", pattern):
        return "uses a back-reference"
    groups: list[bool] = []  # per open group: holds a quantifier or an alternation
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":  # a character class: skip to its end
            i = _class_end(pattern, i)
            continue
        if char == "(":
            groups.append(False)
        elif char == ")" and groups:
            risky = groups.pop()
            quantified = pattern[i + 1 : i + 2] in ("*", "+") or re.match(
                r"\{\d*,\d*\}", pattern[i + 1 :]
            )
            if risky and quantified:
                return (
                    "repeats a group that itself repeats or alternates (exponential backtracking)"
                )
            if groups and (risky or quantified):
                groups[-1] = True
        elif char in "*+?{|" and groups:
            groups[-1] = True
        i += 1
    return None


def _class_end(pattern: str, start: int) -> int:
    i = start + 1
    if pattern[i : i + 1] == "^":
        i += 1
    if pattern[i : i + 1] == "]":
        i += 1
    depth = 1
    while i < len(pattern) and depth:
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] == "[":
            depth += 1
        elif pattern[i] == "]":
            depth -= 1
        i += 1
    return i
