"""Geometry for the clinician page's charts: one shared time axis with dated ticks, a value axis
per measure with labelled ticks (the top and bottom values inset from the frame, so MRC 5 is never
drawn on the border), one line per side, and the decisions placed on the same time axis.
Pure arithmetic on the view model; the template draws the SVG."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from service.domain.facts import Side
from service.service_layer.patient_view import Decision, Measure, PatientView

WIDTH, HEIGHT, COMPACT = 900, 210, 150
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 14, 40
INSET = 12  # px between the frame and the lowest/highest value
LANE_ROW = 26
_SIDE_SHIFT = {Side.LEFT: -3.0, Side.RIGHT: 3.0, Side.BILATERAL: 0.0, Side.UNSPECIFIED: 0.0}
_SIDE_CLASS = {Side.LEFT: "left", Side.RIGHT: "right", Side.BILATERAL: "both",
               Side.UNSPECIFIED: "unstated"}
_DAY = timedelta(days=1)
_STEPS = (timedelta(hours=6), timedelta(hours=12), _DAY, 2 * _DAY, 7 * _DAY, 14 * _DAY,
          30 * _DAY, 61 * _DAY, 91 * _DAY, 182 * _DAY, 365 * _DAY)


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class Mark:
    x: float
    y: float
    label: str        # the value printed beside the point ("" when unchanged since the last)
    title: str        # hover text


@dataclass(frozen=True)
class DrawnLine:
    side: str
    label: str
    path: str
    marks: tuple[Mark, ...]


@dataclass(frozen=True)
class Flag:
    """A decision on a chart: a dashed line at its time, a ring on each evidence point."""

    n: int
    rule: str
    x: float
    urgent: bool
    rings: tuple[tuple[float, float], ...]
    title: str


@dataclass(frozen=True)
class Chart:
    concept: str
    title: str
    height: int
    y_ticks: tuple[Tick, ...]
    lines: tuple[DrawnLine, ...]
    flags: tuple[Flag, ...]


@dataclass(frozen=True)
class Badge:
    n: int
    rule: str
    x: float
    y: float
    urgent: bool
    title: str


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    x_ticks: tuple[Tick, ...]
    charts: tuple[Chart, ...]
    badges: tuple[Badge, ...]
    lane_height: int


def layout(view: PatientView) -> Layout:
    start, end = _domain(view)
    span = (end - start).total_seconds()

    def x(t: datetime) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * (t - start).total_seconds() / span

    cited = {e.ref for d in view.decisions for e in d.evidence}
    charts = tuple(_chart(m, view.decisions, x, HEIGHT if _refs(m) & cited else COMPACT)
                   for m in view.measures)
    badges, rows = _badges(view.decisions, x)
    return Layout(WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM,
                  tuple(Tick(x(t), label) for t, label in _time_ticks(start, end)),
                  charts, badges, 16 + rows * LANE_ROW)


def urgent(priority: str | None) -> bool:
    return priority in ("stat", "asap", "urgent")


def decision_hover(d: Decision) -> str:
    lines = [f"{d.rule} {d.title} ({d.priority or 'no priority'}): {d.reason}"]
    lines += [f"- {e.text}" + (f" on {e.time:%d %b %Y %H:%M}" if e.time else "")
              for e in d.evidence]
    return "\n".join(lines)


def _domain(view: PatientView) -> tuple[datetime, datetime]:
    times = [p.time for m in view.measures for line in m.lines for p in line.points]
    times += [d.time for d in view.decisions]
    start = min(times, default=view.now)
    end = max([*times, view.now])
    pad = max((end - start) * 0.04, timedelta(hours=12))
    return start - pad, end + pad


def _time_ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    span = end - start
    step = next((s for s in _STEPS if span / s <= 8), _STEPS[-1])
    if step < _DAY:
        seconds = step.total_seconds()
        t = datetime.fromtimestamp(math.ceil(start.timestamp() / seconds) * seconds, UTC)
    else:
        t = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + _DAY
        if step >= 30 * _DAY:
            t = (t.replace(day=1) + 32 * _DAY).replace(day=1)
        elif step == 7 * _DAY or step == 14 * _DAY:
            t += timedelta(days=(7 - t.weekday()) % 7)
    ticks: list[tuple[datetime, str]] = []
    year = None
    while t <= end:
        if t >= start:
            label = f"{t.day} {t:%b}"
            if t.year != year:
                label += f" {t.year}"
                year = t.year
            if step < _DAY:
                label += f" {t:%H:%M}"
            ticks.append((t, label))
        if step >= 30 * _DAY:
            months = round(step / (30 * _DAY))
            t = datetime(t.year + (t.month - 1 + months) // 12, (t.month - 1 + months) % 12 + 1,
                         1, tzinfo=UTC)
        else:
            t += step
    return ticks


def _nice_step(span: float, integer: bool) -> float:
    raw = span / 5
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return max(step, 1.0) if integer else step


def _value_range(m: Measure) -> tuple[float, float]:
    """The measure's valid range, so a change is drawn to scale (ODI 44 -> 40 is small). Only the
    top comes down, to a round value, when every value is under a quarter of it (PVR in mL)."""
    values = [p.value for line in m.lines for p in line.points]
    if values and m.low <= 0 and max(values) < m.low + 0.25 * (m.high - m.low):
        step = _nice_step(max(values) * 1.25 - m.low, m.integer)
        return m.low, min(m.high, math.ceil(max(values) * 1.25 / step) * step)
    return m.low, m.high


def _refs(m: Measure) -> set[str]:
    return {p.ref for line in m.lines for p in line.points}


def _chart(m: Measure, decisions: tuple[Decision, ...], x: Callable[[datetime], float],
           height: int) -> Chart:
    """A chart cited by a decision is drawn full height; the others compact."""
    low, high = _value_range(m)
    plot_top, plot_bottom = TOP + INSET, height - BOTTOM - INSET

    def y(v: float) -> float:
        return plot_bottom - (plot_bottom - plot_top) * (v - low) / (high - low)

    step = 1.0 if m.integer and high - low <= 5 else _nice_step(high - low, m.integer)
    ticks, v = [], low
    while v <= high + 1e-9:
        ticks.append(Tick(y(v), f"{v:g}"))
        v += step
    lines, where = [], {}
    for line in m.lines:
        shift = _SIDE_SHIFT[line.side]
        coords = [(x(p.time) + shift, y(p.value)) for p in line.points]
        where.update({p.ref: c for p, c in zip(line.points, coords, strict=True)})
        side = f", {line.label.lower()}" if line.label else ""
        marks = tuple(
            Mark(cx, cy, f"{p.value:g}" if i == 0 or p.value != line.points[i - 1].value else "",
                 f"{m.title}{side}: {p.value:g} on {p.time:%d %b %Y %H:%M}")
            for i, (p, (cx, cy)) in enumerate(zip(line.points, coords, strict=True)))
        lines.append(DrawnLine(_SIDE_CLASS[line.side], line.label,
                               " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords), marks))
    flags = []
    for n, d in enumerate(decisions):
        rings = tuple(where[e.ref] for e in d.evidence if e.ref in where)
        if rings:
            flags.append(Flag(n, d.rule, x(d.time), urgent(d.priority), rings,
                              decision_hover(d)))
    return Chart(m.concept, m.title, height, tuple(ticks), tuple(lines), tuple(flags))


def _badges(decisions: tuple[Decision, ...], x: Callable[[datetime], float]
            ) -> tuple[tuple[Badge, ...], int]:
    """One badge per decision in a lane above the charts; badges that would overlap stack."""
    rows: list[float] = []
    badges = []
    for n, d in enumerate(decisions):
        cx = x(d.time)
        row = next((i for i, last in enumerate(rows) if cx - last >= 34), len(rows))
        if row == len(rows):
            rows.append(cx)
        rows[row] = cx
        badges.append(Badge(n, d.rule, cx, 12 + row * LANE_ROW + LANE_ROW / 2, urgent(d.priority),
                            decision_hover(d)))
    return tuple(badges), max(len(rows), 1)
