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

from twinkg.kg.cypher_guard import Token, TokenKind
from twinkg.kg.cypher_syntax import (
    STRUCTURAL,
    Group,
    Item,
    at,
    clauses,
    declarations,
    flatten,
    group,
    is_punct,
    partition,
    split,
    tree,
    unquote,
    word,
)
from twinkg.kg.regex_backtracking import backtracking
from twinkg.ontology.errors import QueryUnboundedError

MAX_RANGE_ITEMS = 100_000
"""Most items one ``range()`` may yield."""
MAX_ROW_STEPS = 1_000_000
"""Most steps nested iterations inside one row may take together."""
MAX_REDUCE_STEPS = 1_000
"""Most items one ``reduce`` may fold."""
MAX_GROWTH = 64
"""Most a row's values may grow over the whole query (the product of the projections' factors)."""
_INTEGER = re.compile(r"^(?:0x[0-9a-f_]+|0o[0-7_]+|[0-9][0-9_]*)$")
_QUANTIFIERS = ("all", "any", "none", "single")
_SUBQUERY = ("count", "exists", "collect", "call")
_PROJECTIONS = ("with", "return", "unwind")


def check_cost(code: Sequence[Token], params: Mapping[str, Any] | None = None) -> None:
    """Refuse ``code`` (a query's tokens without spaces and comments) unless the row-cost rule
    bounds what one of its rows computes; ``params`` are the values its ``$parameters`` take.

    Raises :class:`QueryUnboundedError` naming the rule.
    """
    items = tree(code)
    declared, computed = declarations(items)
    for token in code:
        if token.kind is TokenKind.WORD and token.word in declared & STRUCTURAL:
            raise QueryUnboundedError(
                f"refused: {token.word} names a variable and is a keyword the guard reads as "
                "structure (even in backticks); rename the variable"
            )
    cost = _Cost(params or {}, declared, computed)
    cost.statement(items, _Scope())
    if cost.growth > MAX_GROWTH:
        raise QueryUnboundedError(
            f"refused: values may grow more than {MAX_GROWTH}-fold within one row (a variable "
            "used several times per clause, over several clauses)"
        )


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

    def statement(self, items: Sequence[Item], scope: _Scope) -> None:
        """Clauses in order; each projection multiplies the growth by its factor."""
        for keyword, body in clauses(items):
            if keyword in _PROJECTIONS:
                outer, self.refs = self.refs, Counter()
                self.expression(body, replace(scope, counting=True))
                factor = _factor(self.refs)
                if keyword == "unwind" or any(is_punct(i, "*") for i in body):
                    factor += 1  # the row keeps what it had
                self.refs = outer
                self.growth = min(self.growth * max(1, factor), MAX_GROWTH + 1)
            elif keyword == "call":
                for item in body:
                    if (braces := group(item, "{")) is not None:
                        self.statement(braces.items, replace(scope, counting=False))
                    else:
                        self.expression([item], replace(scope, counting=False))
            else:
                self.expression(body, replace(scope, counting=False))

    # -- expressions ----------------------------------------------------------------------

    def expression(self, items: Sequence[Item], scope: _Scope) -> None:
        """Check every construct in ``items`` and note the variables they use."""
        i = 0
        while i < len(items):
            item, before = items[i], at(items, i - 1)
            if isinstance(item, Group):
                if item.bracket == "[":
                    self.bracket_list(item, scope)
                elif item.bracket == "{" and word(before) in _SUBQUERY:
                    self.statement(item.items, replace(scope, chain=(), counting=False))
                elif item.bracket == "{":
                    self.map_literal(item, scope, owner=None)
                else:
                    self.expression(item.items, scope)
            elif is_punct(item, "=") and is_punct(at(items, i + 1), "~"):
                self.regex(at(items, i + 2), item)
                i += 1
            elif scope.chain and word(item) == "in" and isinstance(item, Token):
                self.membership(items[i + 1 : i + 3], scope, item)
            elif word(item) and not (is_punct(before, ".") or is_punct(before, ":")):
                i = self.word(items, i, scope)
            i += 1

    def word(self, items: Sequence[Item], i: int, scope: _Scope) -> int:
        """A name at ``items[i]``: a function call, a literal, a keyword or a variable; the index
        of the last item it spans."""
        name, end = word(items[i]), i
        while is_punct(at(items, end + 1), ".") and word(at(items, end + 2)):
            end += 2
        call = group(at(items, end + 1), "(")
        if call is not None and not name.startswith("$"):
            function = ".".join(word(items[k]) for k in range(i, end + 1, 2))
            self.function(function, call, scope, items[i])
            return end + 1
        if name.startswith("$"):
            self.use(name, word(items[i + 2]) if end > i else None, scope, items[i])
            return end
        if name not in self.declared or word(at(items, i - 1)) == "as":
            return end  # a keyword, a literal, or the name an alias declares
        projection = group(at(items, i + 1), "{")
        if projection is not None and name not in _SUBQUERY:
            self.map_literal(projection, scope, owner=name)
            return i + 1
        self.use(name, word(items[i + 2]) if end > i else None, scope, items[i])
        return end

    def use(self, name: str, key: str | None, scope: _Scope, where: Item) -> None:
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

    def function(self, name: str, call: Group, scope: _Scope, where: Item) -> None:
        """A call; ``range``, ``reduce``, the quantifiers and ``replace`` have rules."""
        args = split(call.items)
        if name == "range":
            self.range_length(args, where)
            self.expression(call.items, scope)
        elif name == "reduce":
            self.reduce(call, scope, where)
        elif name in _QUANTIFIERS and word(at(call.items, 1)) == "in":
            self.iteration(call.items, scope, where, output=False)
        elif name == "replace" and len(args) == 3:
            factor = self.replace_factor(args, where)
            self.expression(args[0], replace(scope, weight=scope.weight * factor))
            self.expression([*args[1], *args[2]], scope)
        else:
            self.expression(call.items, scope)

    def bracket_list(self, brackets: Group, scope: _Scope) -> None:
        """``[…]``: a list comprehension, a pattern comprehension, a list literal or an index."""
        items = brackets.items
        has_pipe = any(is_punct(item, "|") for item in items)
        if word(at(items, 0)) and word(at(items, 1)) == "in":
            self.iteration(items, scope, brackets, output=True)
        elif has_pipe and (group(at(items, 0), "(") or is_punct(at(items, 1), "=")):
            self.pattern_comprehension(items, scope)
        else:
            self.expression(items, scope)

    def iteration(self, items: Sequence[Item], scope: _Scope, where: Item, *, output: bool) -> None:
        """``x IN list [WHERE p] [| body]``: a comprehension (``output``) or a quantifier."""
        ends = (
            k for k in range(2, len(items)) if word(items[k]) == "where" or is_punct(items[k], "|")
        )
        cut = next(ends, len(items))
        source, rest = items[2:cut], items[cut:]
        self.expression(source, scope)
        inner = self.enter(scope, source, where, word(items[0]))
        condition, body = partition(rest, "|")
        self.expression(condition, replace(inner, counting=False))
        if output:
            self.expression(body, inner)

    def reduce(self, call: Group, scope: _Scope, where: Item) -> None:
        """``reduce(acc = init, x IN list | step)``: bounded, and ``acc`` once per step."""
        left, right = partition(call.items, ",")
        if len(left) < 2 or len(right) < 3 or word(right[1]) != "in":
            self.expression(call.items, scope)  # not reduce's shape: Neo4j will say why
            return
        acc = word(left[0])
        source, step = partition(right[2:], "|")
        self.expression(left[2:], scope)
        self.expression(source, scope)
        length = self.length(source)
        if length is None or length > MAX_REDUCE_STEPS:
            raise QueryUnboundedError(
                f"refused: reduce (offset {where.start}) may fold at most {MAX_REDUCE_STEPS} "
                "items of a range, a list literal or a parameter (its accumulator can grow with "
                "every step); aggregate rows with sum(), collect() and the like instead"
            )
        uses = sum(1 for token in flatten(step) if word(token) == acc)
        if uses > 1:
            raise QueryUnboundedError(
                f"refused: reduce (offset {where.start}) uses its accumulator {acc} {uses} "
                "times per step, which can double it every step; use it at most once"
            )
        inner = self.enter(scope, source, where, word(right[0]))
        locals_ = {**inner.locals, acc: _Local(self.fresh(acc), 0)}
        self.expression(step, replace(inner, locals=locals_))

    def pattern_comprehension(self, items: Sequence[Item], scope: _Scope) -> None:
        """``[(a)-->(b) WHERE p | body]``: graph reads, which Neo4j interrupts; the body may use
        graph variables but not computed values (it repeats them once per match)."""
        pattern, body = partition(items, "|")
        self.expression(pattern, replace(scope, counting=False))
        names = frozenset(word(t) for t in flatten(pattern) if word(t) in self.declared)
        self.expression(body, replace(scope, chain=(), allowed=names))

    def map_literal(self, braces: Group, scope: _Scope, *, owner: str | None) -> None:
        """``{k: v, …}``, or ``owner {.k, .*, k: v, x}`` (a map projection)."""
        for entry in split(braces.items):
            if owner is not None and entry and is_punct(entry[0], "."):
                key = None if is_punct(at(entry, 1), "*") else word(at(entry, 1))
                self.use(owner, key, scope, entry[0])
            elif len(entry) > 1 and word(entry[0]) and is_punct(entry[1], ":"):
                self.expression(entry[2:], scope)
            else:
                self.expression(entry, scope)

    # -- the rules ------------------------------------------------------------------------

    def membership(self, operand: Sequence[Item], scope: _Scope, where: Item) -> None:
        """``x IN list`` inside an iteration: a nested iteration over the list."""
        if len(operand) == 2 and not (word(operand[0]) == "range" and group(operand[1], "(")):
            operand = operand[:1]
        self.enter(scope, operand, where, "")

    def enter(self, scope: _Scope, source: Sequence[Item], where: Item, var: str) -> _Scope:
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
            for t in flatten(source)
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

    def length(self, source: Sequence[Item]) -> int | None:
        """How many items ``source`` has when it is a range, a list literal or a parameter."""
        brackets = group(source[0], "[") if len(source) == 1 else None
        if brackets is not None:
            if word(at(brackets.items, 1)) == "in" or any(is_punct(i, "|") for i in brackets.items):
                return None  # a comprehension
            return len([part for part in split(brackets.items) if part])
        if len(source) == 1 and word(source[0]).startswith("$"):
            value = self.params.get(word(source[0])[1:])
            return len(value) if isinstance(value, list) else 1
        call = group(source[1], "(") if len(source) == 2 else None
        if call is not None and word(source[0]) == "range":
            return self.range_length(split(call.items), source[0])
        return None

    def range_length(self, args: list[list[Item]], where: Item) -> int:
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

    def integer(self, arg: Sequence[Item]) -> int | None:
        """An integer literal or parameter, optionally signed; None for anything else."""
        sign = 1
        if arg and (is_punct(arg[0], "-") or is_punct(arg[0], "+")):
            sign = -1 if is_punct(arg[0], "-") else 1
            arg = arg[1:]
        text = word(arg[0]) if len(arg) == 1 else ""
        if text.startswith("$"):
            value = self.params.get(text[1:])
            return sign * value if type(value) is int else None
        if not _INTEGER.match(text):
            return None
        return sign * int(text.replace("_", ""), 0)

    def replace_factor(self, args: list[list[Item]], where: Item) -> int:
        """How many times ``replace(s, search, replacement)`` can grow ``s``."""
        search, replacement = self.text(args[1]), self.text(args[2])
        if replacement is None:
            raise QueryUnboundedError(
                f"refused: replace() at offset {where.start} needs its replacement as a string "
                "literal or parameter (a computed one can square the text)"
            )
        return max(1, math.ceil(len(replacement) / max(1, len(search or ""))))

    def text(self, arg: Sequence[Item | None]) -> str | None:
        """A string literal's or string parameter's value; None for anything else."""
        token = arg[0] if len(arg) == 1 else None
        if not isinstance(token, Token):
            return None
        if token.kind is TokenKind.STRING:
            return unquote(token.text)
        value = self.params.get(token.word[1:]) if token.word.startswith("$") else None
        return value if isinstance(value, str) else None

    def regex(self, operand: Item | None, where: Token) -> None:
        """``=~``: a literal or parameter pattern that cannot backtrack exponentially."""
        pattern = self.text([operand])
        if pattern is None:
            raise QueryUnboundedError(
                f"refused: =~ at offset {where.start} needs its pattern as a string literal or "
                "parameter"
            )
        reason = backtracking(pattern)
        if reason:
            raise QueryUnboundedError(f"refused: the pattern at offset {where.start} {reason}")


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
