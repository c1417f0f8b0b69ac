"""Which Java regular expressions may backtrack exponentially (Cypher's ``=~`` runs Java's).

A quantified group whose body can match one input in several ways (it holds a quantifier or an
alternation, as in ``(a+)+`` or ``(a|aa)*``) makes the matcher try exponentially many splits on
a failing input, and a back-reference makes matching NP-hard; neither can be interrupted inside
Neo4j. :func:`backtracking` says why a pattern is refused. Character classes and escapes are
skipped; a group repeated at most once (``?``) is fine.
"""

from __future__ import annotations

import re


def backtracking(pattern: str) -> str | None:
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
