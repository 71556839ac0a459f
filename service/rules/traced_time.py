"""An evaluation instant that records every threshold the evaluation compares it against, so that
the horizon knows over which interval of instants that evaluation would come out the same.

The pure evaluation depends on "now" only through comparisons of the form `now + a <op> t` or
`now - t <op> d` (windows, due times, ages, calendar dates). Each such comparison is a step
function of now: true below a threshold, false from it on. `TracedInstant` is a `datetime` equal to
the instant being probed; arithmetic on it yields traced values (`TracedInstant`, `TracedSpan`), and
every comparison of a traced value against a plain one records its threshold in the `TimeTrace`.
With the same facts, the evaluation follows the same path (and computes the same outcomes) at every
instant on the same side of all recorded thresholds: `TimeTrace.covers()`.

Anything the trace cannot follow exactly (formatting, hashing, calendar fields other than the date,
a traced span's seconds...) still returns the plain answer but makes the trace *opaque*: the
interval shrinks to the probed instant alone, so correctness never depends on what is traced.
Hand-written (no library traces datetime arithmetic); instants must be UTC, which facts are.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

ONE = timedelta(microseconds=1)  # datetime resolution: `a <= b` is `a < b + ONE`
DAY = timedelta(days=1)


class TimeTrace:
    """The thresholds seen so far: the evaluation is unchanged for instants in [low, high)."""

    __slots__ = ("high", "low", "now", "opaque", "texts", "text_bounds")

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.low: datetime | None = None
        self.high: datetime | None = None
        self.opaque = now.tzinfo is not UTC
        self.texts: list[str] = []  # day counts written into text (e.g. a rule's reason)
        self.text_bounds: list[datetime] = []  # where those day counts change

    def before(self, threshold: datetime) -> bool:
        """`now < threshold`, remembered as a bound of the interval."""
        if self.now < threshold:
            if self.high is None or threshold < self.high:
                self.high = threshold
            return True
        if self.low is None or threshold > self.low:
            self.low = threshold
        return False

    def before_shifted(self, anchor: datetime, shift: timedelta, *, text: bool = False) -> bool:
        """`now < anchor + shift`, also when that sum is beyond what a datetime can hold. With
        `text`, the threshold only bounds a day count written into text (see `settle`)."""
        try:
            threshold = anchor + shift
        except OverflowError:
            return shift > timedelta(0)  # beyond datetime.max: always before; below min: never
        if text:
            self.text_bounds.append(threshold)
            return self.now < threshold
        return self.before(threshold)

    def settle(self, decided_texts: list[str]) -> None:
        """Day counts written only into text outside the decision (a rule's reason quotes the
        episode's age) do not bound the interval; one that may appear in `decided_texts` does."""
        if any(t in decided for t in self.texts for decided in decided_texts):
            for threshold in self.text_bounds:
                self.before(threshold)

    def covers(self, moment: datetime) -> bool:
        if self.opaque:
            return moment == self.now
        return (self.low is None or self.low <= moment) and (self.high is None or moment < self.high)


def _utc(moment: datetime) -> datetime | None:
    """An aware datetime in UTC (same instant), or None when naive (comparisons then fail or are
    constant, exactly as for a plain datetime)."""
    if moment.tzinfo is None:
        return None
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


class TracedInstant(datetime):
    """`trace.now + offset`, a datetime whose comparisons against plain datetimes are recorded."""

    __slots__ = ("_offset", "_plain", "_trace")
    _offset: timedelta
    _plain: datetime
    _trace: TimeTrace

    @classmethod
    def of(cls, trace: TimeTrace, offset: timedelta = timedelta(0)) -> TracedInstant:
        plain = trace.now + offset  # raises OverflowError exactly where plain arithmetic would
        made = datetime.__new__(cls, plain.year, plain.month, plain.day, plain.hour, plain.minute,
                                plain.second, plain.microsecond, plain.tzinfo, fold=plain.fold)
        made._trace, made._offset, made._plain = trace, offset, plain
        return made

    def _opaque(self) -> datetime:
        self._trace.opaque = True
        return self._plain

    def _mine(self, other: object) -> bool:
        if isinstance(other, TracedInstant):
            if other._trace is not self._trace:
                self._trace.opaque = other._trace.opaque = True
                return False
            return True
        return False

    # comparisons: `now + offset < t` iff `now < t - offset`
    def __lt__(self, other: object) -> bool:
        if self._mine(other):
            return self._offset < other._offset  # type: ignore[union-attr]
        if not isinstance(other, datetime):
            return NotImplemented
        moment = _utc(other)
        if moment is None:
            return self._plain < other
        return self._trace.before_shifted(moment, -self._offset)

    def __le__(self, other: object) -> bool:
        if self._mine(other):
            return self._offset <= other._offset  # type: ignore[union-attr]
        if not isinstance(other, datetime):
            return NotImplemented
        moment = _utc(other)
        if moment is None:
            return self._plain <= other
        return self._trace.before_shifted(moment, ONE - self._offset)

    def __gt__(self, other: object) -> bool:
        if self._mine(other):
            return self._offset > other._offset  # type: ignore[union-attr]
        if not isinstance(other, datetime):
            return NotImplemented
        moment = _utc(other)
        if moment is None:
            return self._plain > other
        return not self._trace.before_shifted(moment, ONE - self._offset)

    def __ge__(self, other: object) -> bool:
        if self._mine(other):
            return self._offset >= other._offset  # type: ignore[union-attr]
        if not isinstance(other, datetime):
            return NotImplemented
        moment = _utc(other)
        if moment is None:
            return self._plain >= other
        return not self._trace.before_shifted(moment, -self._offset)

    def __eq__(self, other: object) -> bool:
        if self._mine(other):
            return self._offset == other._offset  # type: ignore[union-attr]
        if not isinstance(other, datetime):
            return NotImplemented
        moment = _utc(other)
        if moment is None:
            return self._plain == other
        at_or_after = not self._trace.before_shifted(moment, -self._offset)
        not_after = self._trace.before_shifted(moment, ONE - self._offset)
        return at_or_after and not_after

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self._opaque())

    # arithmetic
    def __add__(self, other: object) -> datetime:
        if type(other) is timedelta:
            return TracedInstant.of(self._trace, self._offset + other)
        if isinstance(other, timedelta):
            return self._opaque() + other
        return NotImplemented

    __radd__ = __add__

    def __sub__(self, other: object) -> Any:
        if self._mine(other):
            return self._offset - other._offset  # type: ignore[union-attr]
        if type(other) is timedelta:
            return TracedInstant.of(self._trace, self._offset - other)
        if isinstance(other, TracedSpan | TracedInstant):
            return self._opaque() - other._opaque()
        if isinstance(other, timedelta):
            return self._opaque() - other
        if isinstance(other, datetime):
            moment = _utc(other)
            if moment is None:
                return self._plain - other  # raises, as for a plain datetime
            return TracedSpan.of(self._trace, 1, moment, self._offset)
        return NotImplemented

    def __rsub__(self, other: object) -> Any:
        if isinstance(other, datetime) and not isinstance(other, TracedInstant):
            moment = _utc(other)
            if moment is None:
                return other - self._plain
            return TracedSpan.of(self._trace, -1, moment, self._offset)
        return NotImplemented

    # the calendar date is constant between two midnights (UTC)
    def date(self) -> date:
        day = self._plain.date()
        midnight = datetime.combine(day, time(), tzinfo=UTC)
        self._trace.before_shifted(midnight, -self._offset)
        self._trace.before_shifted(midnight + DAY, -self._offset)
        return day

    @property
    def tzinfo(self) -> Any:
        return self._plain.tzinfo


class TracedSpan(timedelta):
    """`sign * (trace.now + offset - anchor)`: a duration since (or until) a plain instant."""

    __slots__ = ("_anchor", "_plain", "_sign", "_trace")
    _anchor: datetime
    _plain: timedelta
    _sign: int
    _trace: TimeTrace

    @classmethod
    def of(cls, trace: TimeTrace, sign: int, moment: datetime, offset: timedelta) -> TracedSpan | timedelta:
        try:
            anchor = moment - offset  # now + offset - moment = now - anchor
        except OverflowError:
            trace.opaque = True
            plain = trace.now + offset - moment
            return plain if sign > 0 else -plain
        plain = trace.now - anchor if sign > 0 else anchor - trace.now
        made = timedelta.__new__(cls, plain.days, plain.seconds, plain.microseconds)
        made._trace, made._sign, made._anchor, made._plain = trace, sign, anchor, plain
        return made

    def _opaque(self) -> timedelta:
        self._trace.opaque = True
        return self._plain

    def _constant(self, other: object) -> bool | None:
        """For two spans of one trace and sign, the comparison does not depend on now."""
        if isinstance(other, TracedSpan):
            if other._trace is self._trace and other._sign == self._sign:
                return True
            self._trace.opaque = other._trace.opaque = True
            return False
        return None

    def __lt__(self, other: object) -> bool:
        if self._constant(other) is not None:
            return self._plain < other._plain  # type: ignore[union-attr]
        if not isinstance(other, timedelta):
            return NotImplemented
        return self._below(other)

    def __le__(self, other: object) -> bool:
        if self._constant(other) is not None:
            return self._plain <= other._plain  # type: ignore[union-attr]
        if not isinstance(other, timedelta):
            return NotImplemented
        return self._below(other + ONE)

    def __gt__(self, other: object) -> bool:
        if self._constant(other) is not None:
            return self._plain > other._plain  # type: ignore[union-attr]
        if not isinstance(other, timedelta):
            return NotImplemented
        return not self._below(other + ONE)

    def __ge__(self, other: object) -> bool:
        if self._constant(other) is not None:
            return self._plain >= other._plain  # type: ignore[union-attr]
        if not isinstance(other, timedelta):
            return NotImplemented
        return not self._below(other)

    def __eq__(self, other: object) -> bool:
        if self._constant(other) is not None:
            return self._plain == other._plain  # type: ignore[union-attr]
        if not isinstance(other, timedelta):
            return NotImplemented
        below, not_above = self._below(other), self._below(other + ONE)
        return not below and not_above

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self._opaque())

    def __neg__(self) -> TracedSpan:
        made = timedelta.__new__(TracedSpan, -self._plain.days, -self._plain.seconds, -self._plain.microseconds)
        made._trace, made._sign, made._anchor, made._plain = self._trace, -self._sign, self._anchor, -self._plain
        return made

    def __pos__(self) -> TracedSpan:
        return self

    # arithmetic with plain durations stays traced: the anchor moves instead
    def _moved(self, shift: timedelta) -> TracedSpan | timedelta:
        """self + shift: now - (anchor - shift), or (anchor + shift) - now."""
        try:
            anchor = self._anchor - shift if self._sign > 0 else self._anchor + shift
        except OverflowError:
            return self._opaque() + shift
        plain = self._plain + shift
        made = timedelta.__new__(TracedSpan, plain.days, plain.seconds, plain.microseconds)
        made._trace, made._sign, made._anchor, made._plain = self._trace, self._sign, anchor, plain
        return made

    def __add__(self, other: object) -> Any:
        if type(other) is timedelta:
            return self._moved(other)
        if isinstance(other, TracedSpan | TracedInstant):
            return self._opaque() + other._opaque()
        if isinstance(other, timedelta):
            return self._opaque() + other
        if isinstance(other, datetime):  # t + (now - anchor) = now + (t - anchor)
            moment = _utc(other)
            if self._sign > 0 and moment is not None:
                return TracedInstant.of(self._trace, moment - self._anchor)
            return other + self._opaque()
        return NotImplemented

    __radd__ = __add__

    def __sub__(self, other: object) -> Any:
        if type(other) is timedelta:
            return self._moved(-other)
        if isinstance(other, TracedSpan):
            return self._opaque() - other._opaque()
        if isinstance(other, timedelta):
            return self._opaque() - other
        return NotImplemented

    def __rsub__(self, other: object) -> Any:
        if type(other) is timedelta:
            return (-self)._moved(other)
        if isinstance(other, timedelta):
            return other - self._opaque()
        if isinstance(other, datetime):
            return other - self._opaque()
        return NotImplemented

    def _below(self, bound: timedelta, *, text: bool = False) -> bool:
        if self._sign > 0:
            return self._trace.before_shifted(self._anchor, bound, text=text)
        return not self._trace.before_shifted(self._anchor, ONE - bound, text=text)

    @property
    def days(self) -> DayCount:
        return DayCount(self, self._plain.days)


class DayCount:
    """A traced span's whole days (floored). Written into text it only bounds that text; any other
    use (comparison, arithmetic, hashing, conversion) bounds the evaluation: days * 1 day <= span <
    (days + 1) * 1 day. Not an int on purpose: an operation not listed here fails loudly instead of
    reading the value untraced."""

    __slots__ = ("_days", "_span")

    def __init__(self, span: TracedSpan, days: int) -> None:
        self._span, self._days = span, days

    def _bound(self, *, text: bool = False) -> int:
        self._span._below(self._days * DAY, text=text)
        self._span._below((self._days + 1) * DAY, text=text)
        return self._days

    def __format__(self, spec: str) -> str:
        written = format(self._bound(text=True), spec)
        self._span._trace.texts.append(written)
        return written

    def __str__(self) -> str:
        return self.__format__("")


def _opaque_method(name: str) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._opaque(), name)(*args, **kwargs)

    method.__name__ = name
    return method


def _opaque_property(name: str) -> property:
    return property(lambda self: getattr(self._opaque(), name))


_CLASS_LEVEL = {"min", "max", "resolution", "now", "utcnow", "today", "fromtimestamp", "utcfromtimestamp",
                "fromordinal", "fromisoformat", "fromisocalendar", "combine", "strptime"}
_REDIRECTED = ("__str__", "__repr__", "__format__", "__reduce__", "__reduce_ex__", "__bool__", "__abs__",
               "__mul__", "__rmul__", "__truediv__", "__rtruediv__", "__floordiv__", "__rfloordiv__",
               "__mod__", "__rmod__", "__divmod__", "__rdivmod__")


def _make_opaque(cls: type, base: type) -> None:
    """Every other public attribute answers from the plain value and makes the trace opaque."""
    for name in [*dir(base), *_REDIRECTED]:
        if name in cls.__dict__ or name in _CLASS_LEVEL or (name.startswith("_") and name not in _REDIRECTED):
            continue
        attribute = getattr(base, name, None)
        if attribute is None:
            continue
        if callable(attribute):
            setattr(cls, name, _opaque_method(name))
        else:
            setattr(cls, name, _opaque_property(name))


_make_opaque(TracedInstant, datetime)
_make_opaque(TracedSpan, timedelta)


def _bounded_method(name: str) -> Callable[..., Any]:
    def method(self: DayCount, *args: Any) -> Any:
        return getattr(self._bound(), name)(*args)

    method.__name__ = name
    return method


for _name in ("__repr__", "__hash__", "__bool__", "__int__", "__index__", "__float__", "__eq__", "__ne__",
              "__lt__", "__le__", "__gt__", "__ge__", "__neg__", "__pos__", "__abs__", "__invert__", "__round__",
              "__trunc__", "__floor__", "__ceil__", "__add__", "__radd__", "__sub__", "__rsub__", "__mul__",
              "__rmul__", "__truediv__", "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__",
              "__divmod__", "__rdivmod__", "__pow__", "__rpow__", "__and__", "__rand__", "__or__", "__ror__",
              "__xor__", "__rxor__", "__lshift__", "__rlshift__", "__rshift__", "__rrshift__"):
    setattr(DayCount, _name, _bounded_method(_name))
