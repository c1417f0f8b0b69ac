"""Telemetry times as exact instants: int64 nanoseconds since 1970-01-01T00:00:00Z, never rewritten.

XML Schema 1.1 Part 2, §3.3.8 dateTime: https://www.w3.org/TR/xmlschema11-2/#dateTime

A time string gets two verdicts. *Well-typed* is what the contract's oracle says: rdflib reads
an ``xsd:dateTime`` literal with Python's ``datetime.fromisoformat``, so ``sh:datatype`` in the
compiled checks follows that function and the two engines agree. *Kept exactly* is what TwinKG
can store: a strict XSD lexical form whose instant int64 nanoseconds hold without rounding. A
time well-typed to rdflib that fails the second verdict (years 1600 or 2300, a space for the
``T``, more digits than nanoseconds, an offset past ±14:00) gets a *defect*: the reason it is
quarantined. Out-of-range instants are pinned to a sentinel below or above every representable
one, so comparisons with representable times (monotonicity, the future) keep their order.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

NS_BEFORE = -(2**63)  # sentinel: earlier than every representable instant
NS_AFTER = 2**63 - 1  # sentinel: later than every representable instant
FIRST_NS = NS_BEFORE + 1
LAST_NS = NS_AFTER - 1
FIRST_TEXT = "1677-09-21T00:12:43.145224193Z"
LAST_TEXT = "2262-04-11T23:47:16.854775806Z"
# Whole seconds whose nanoseconds stay inside [FIRST_NS, LAST_NS] (the CSV reader's unit).
FIRST_SECOND = -9_223_372_036
LAST_SECOND = 9_223_372_036

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# The contract's tel:time pattern, with Python's ``re.search`` (what rdflib's SPARQL REGEX uses).
_ZONE = re.compile(r"(Z|[+-][0-9]{2}:[0-9]{2})$")
_XSD = re.compile(
    r"(?P<sign>-?)(?P<year>[0-9]{4,})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
    r"T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<frac>[0-9]+))?"
    r"(?P<zone>Z|[+-][0-9]{2}:[0-9]{2})?"
)
_SHOWN = 40  # characters of a bad time quoted in a reason
# The form most telemetry sends: UTC, at most microseconds (RE2, as pyarrow matches it).
_PLAIN_UTC = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$"


@dataclass(frozen=True, slots=True)
class Reading:
    """What one time string is: ``ns`` is the instant (a sentinel when outside the range, 0 when
    not a time); ``defect`` says why TwinKG cannot keep it as written, ``None`` when it can."""

    well_typed: bool
    zoned: bool
    ns: int
    defect: str | None
    us: int = 0  # rdflib's reading in microseconds since 1970 (0 when it reads no instant)

    @property
    def kept(self) -> bool:
        """A strict, exactly representable time: the contract's ``xsd:dateTime`` (decision
        0037); anything else is given to both paths as a plain string, which
        ``sh:datatype`` refuses."""
        return self.well_typed and self.defect is None


def shown(text: str) -> str:
    """``text`` quoted for a reason, cut to a readable length."""
    cut = text if len(text) <= _SHOWN else text[:_SHOWN] + "…"
    return ascii(cut) if not cut.isprintable() else repr(cut)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (year 0 = 1 BCE, as XSD 1.1)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def _leap(year_digits: str) -> bool:
    year = int(year_digits[-4:])  # year mod 400 depends on the last four digits only
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _field_problem(m: re.Match[str]) -> str | None:  # noqa: PLR0911 - one return per rule
    """Why an XSD-shaped form names no instant (the calendar and clock ranges of §3.3.8)."""
    year, month, day = m["year"], int(m["month"]), int(m["day"])
    hour, minute, second = int(m["hour"]), int(m["minute"]), int(m["second"])
    if len(year) > 4 and year[0] == "0":
        return "a year of more than four digits cannot start with 0"
    if not 1 <= month <= 12:
        return f"month {month:02d} does not exist"
    if not 1 <= day <= (29 if month == 2 and _leap(year) else _DAYS[month - 1]):
        return f"day {day:02d} does not exist in month {month:02d}"
    if minute > 59 or second > 59:
        return "minutes and seconds run from 00 to 59 (no leap seconds)"
    if hour == 24 and (minute, second) == (0, 0) and not (m["frac"] or "").strip("0"):
        return "24:00:00 (the end of a day) is not kept as written; send 00:00:00 of the next day"
    if hour > 23:
        return f"hour {hour:02d} does not exist"
    zone = m["zone"]
    if zone and zone != "Z":
        hh, mm = int(zone[1:3]), int(zone[4:6])
        if mm > 59 or hh > 14 or (hh == 14 and mm > 0):
            return f"time zone offset {zone} is outside -14:00..+14:00"
    return None


def _strict_ns(m: re.Match[str]) -> tuple[int, str | None]:
    """The instant of a valid XSD form, or a sentinel and the reason it is outside the range."""
    frac = m["frac"] or ""
    if frac[9:].strip("0"):
        return 0, "it is finer than a nanosecond"
    year_digits = m["year"]
    if len(year_digits) > 9:  # far outside; no need to compute it
        before = m["sign"] == "-"
    else:
        year = int(year_digits) * (-1 if m["sign"] else 1)
        zone = m["zone"] or "Z"
        offset = 0 if zone == "Z" else (int(zone[1:3]) * 60 + int(zone[4:6])) * 60
        days = _days_from_civil(year, int(m["month"]), int(m["day"]))
        clock = int(m["hour"]) * 3600 + int(m["minute"]) * 60 + int(m["second"])
        seconds = days * 86_400 + clock - (offset if zone[0] == "+" else -offset)
        ns = seconds * 10**9 + int(frac[:9].ljust(9, "0"))
        if FIRST_NS <= ns <= LAST_NS:
            return ns, None
        before = ns < FIRST_NS
    if before:
        return NS_BEFORE, f"it is before {FIRST_TEXT}, the first instant int64 nanoseconds hold"
    return NS_AFTER, f"it is after {LAST_TEXT}, the last instant int64 nanoseconds hold"


def _python_us(moment: datetime | None) -> int:
    """The instant of a datetime rdflib read (naive ones taken as UTC) in microseconds since
    1970: exact for every year Python reads (1 to 9999), which int64 microseconds hold."""
    if moment is None:
        return 0
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // _MICROSECOND


def _python_ns(moment: datetime) -> int:
    """The exact instant of a datetime rdflib read (naive ones taken as UTC), or a sentinel."""
    ns = _python_us(moment) * 1000
    return NS_BEFORE if ns < FIRST_NS else NS_AFTER if ns > LAST_NS else ns


def read_datetime(text: str) -> Reading:
    """Both verdicts on one time string (see the module docstring)."""
    # a batch repeats its timestamps across sensors; only short strings are worth keeping
    return _read_cached(text) if len(text) <= 64 else _read(text)


@functools.lru_cache(maxsize=1 << 16)
def _read_cached(text: str) -> Reading:
    return _read(text)


def _read(text: str) -> Reading:
    try:
        moment: datetime | None = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    # rdflib compares only aware instants (naive against aware is an error, hence no match)
    zoned = moment is not None and moment.tzinfo is not None and _ZONE.search(text) is not None
    us = _python_us(moment)
    m = _XSD.fullmatch(text)
    if m is None:
        if moment is None:
            return Reading(False, False, 0, None)  # not a time at all: sh:datatype says so
        why = "it is not in the xsd:dateTime form YYYY-MM-DDThh:mm:ss[.s…][Z|±hh:mm]"
        return Reading(True, zoned, _python_ns(moment), f"time {shown(text)}: {why}", us)
    problem = _field_problem(m)
    if problem is None:
        ns, problem = _strict_ns(m)
        if problem is None:
            return Reading(moment is not None, zoned, ns, None, us)
    # Compared as rdflib reads it (so other points' verdicts agree); quarantined for `problem`.
    ns = _python_ns(moment) if moment is not None else 0
    return Reading(moment is not None, zoned, ns, f"time {shown(text)}: {problem}", us)


def read_plain_utc(
    texts: pa.StringArray,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None:
    """The instants (ns, µs) of many time strings at once, or ``None``.

    It answers only when every string is in the plain UTC form
    ``YYYY-MM-DDThh:mm:ss[.s to µs]Z``, names a real date and time (pyarrow's ISO reader
    refuses the 30th of February, 24:00 and leap seconds) and lies between 1677 and 2262. Each
    such string is then well-typed, zoned and kept, and its instant is exact in nanoseconds:
    what :func:`read_datetime` says of it, one string at a time (a property test holds them
    together). ``None`` means: ask :func:`read_datetime` for each string.
    """
    if len(texts) == 0 or texts.null_count:
        return None
    if not pc.all(pc.match_substring_regex(texts, _PLAIN_UTC)).as_py():
        return None
    try:
        moments = pc.cast(texts, pa.timestamp("us", tz="UTC"))
    except pa.ArrowInvalid:
        return None
    us = np.asarray(moments.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    if us.min() < FIRST_SECOND * 1_000_000 or us.max() > LAST_SECOND * 1_000_000:
        return None
    return us * 1000, us
