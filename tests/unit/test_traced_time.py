"""The traced instant the horizon evaluates with: it answers exactly as the plain instant would, and
reports over which interval of instants those answers stay the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.rules.traced_time import TimeTrace, TracedInstant

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_comparisons_answer_as_the_plain_instant_and_bound_the_interval() -> None:
    trace = TimeTrace(NOW)
    now = TracedInstant.of(trace)
    onset = NOW - 10 * DAY
    assert (now - onset <= 14 * DAY) is True  # the 14-day window closes just after onset + 14 days
    assert (now - 42 * DAY < onset) is True  # six weeks after onset, not yet
    assert (onset + 7 * DAY <= now) is True  # the 7-day mark has passed
    assert trace.low == onset + 7 * DAY
    assert trace.high == onset + 14 * DAY + timedelta(microseconds=1)
    assert trace.covers(onset + 14 * DAY) and not trace.covers(onset + 14 * DAY + timedelta(microseconds=1))
    assert not trace.covers(onset + 7 * DAY - timedelta(microseconds=1))


def test_a_day_count_quoted_only_in_text_does_not_bound_the_interval() -> None:
    trace = TimeTrace(NOW)
    age = TracedInstant.of(trace) - (NOW - 10 * DAY - timedelta(hours=3))
    assert f"episode is {age.days} days old" == "episode is 10 days old"
    trace.settle(["an action note without that count"])
    assert trace.low is None and trace.high is None
    trace.settle(["recheck in 10 days"])  # the count is part of the decision: it bounds it
    assert trace.low == NOW - timedelta(hours=3) and trace.high == NOW + DAY - timedelta(hours=3)


def test_a_day_count_used_in_a_decision_bounds_the_interval() -> None:
    trace = TimeTrace(NOW)
    age = TracedInstant.of(trace) - (NOW - 10 * DAY - timedelta(hours=3))
    assert age.days >= 10 and age.days * 2 == 20
    assert trace.low == NOW - timedelta(hours=3) and trace.high == NOW + DAY - timedelta(hours=3)


def test_what_cannot_be_traced_still_answers_but_holds_for_that_instant_only() -> None:
    trace = TimeTrace(NOW)
    now = TracedInstant.of(trace)
    assert now.isoformat() == NOW.isoformat() and hash(now) == hash(NOW)
    assert trace.opaque and trace.covers(NOW) and not trace.covers(NOW + timedelta(microseconds=1))


def test_the_calendar_date_holds_from_midnight_to_midnight() -> None:
    trace = TimeTrace(NOW)
    assert (TracedInstant.of(trace) + timedelta(hours=20)).date() == NOW.date() + DAY
    assert trace.low == datetime(2026, 3, 2, 4, tzinfo=UTC) and trace.high == datetime(2026, 3, 3, 4, tzinfo=UTC)


def test_thresholds_beyond_the_datetime_range_never_change() -> None:
    trace = TimeTrace(NOW)
    now = TracedInstant.of(trace)
    undated = datetime.max.replace(tzinfo=UTC)
    assert now - timedelta(days=2) < undated and now - timedelta(days=2) <= undated
    assert not undated < now - timedelta(days=2)
    assert trace.low is None and trace.high is None and not trace.opaque
