"""Retention with a fake clock: raw -> minute -> hour -> gone, notices pruned, open ones kept."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlmodel import func, select

from monitor.storage import retention
from monitor.storage.probe_fold import fold_probes, prune_probes
from monitor.storage.retention import Ages
from monitor.storage.rollup_reads import history
from monitor.storage.store import Notice, NoticeAttempt, ProbeRollup, ProbeRow
from monitor.storage.tiers import DEFAULT_SERVICE, ProbeHourly, fold_minutes

DAY = 86_400.0
T0 = 1_750_003_200.0  # a multiple of 3600
AGES = Ages(raw_s=3600, minute_s=2 * DAY, hour_s=10 * DAY, notice_s=7 * DAY)


def add_probes(store, start: float, minutes: int, versions=("v1", "v2")) -> None:
    """Six probes a minute per version from `start`; every third one failed."""
    with store.write() as session:
        for version in versions:
            for n in range(minutes * 6):
                ok = n % 3 != 0
                session.add(ProbeRow(version=version, at=start + n * 10, ok=ok,
                                     latency_ms=4.0 if ok else None))


def tiers(store) -> tuple[int, int, int]:
    """Rows in (raw, minute, hourly)."""
    with store.read() as session:
        return tuple(session.exec(select(func.count()).select_from(model)).one()
                     for model in (ProbeRow, ProbeRollup, ProbeHourly))


def totals(store) -> dict[str, tuple[int, int]]:
    found = history(store, since=T0 - DAY, until=T0 + 30 * DAY, bucket_s=3600)
    return {v: (sum(b.count for b in bs), sum(b.ok_count for b in bs)) for v, bs in found.items()}


def run(store, now: float, **kwargs):
    return retention.run(store, now=now, ages=AGES, pause=None, **kwargs)


def test_it_moves_history_from_raw_to_minutes_to_hours_then_deletes_it(store):
    add_probes(store, T0, minutes=120)  # two whole hours, 720 probes per version
    expected = {"v1": (720, 480), "v2": (720, 480)}
    counted = run(store, T0 + 1800)  # counted in their minutes at once, kept raw
    assert (counted.raw_folded, counted.raw_deleted) == (1440, 0)
    assert tiers(store) == (1440, 240, 0)
    assert totals(store) == expected  # each probe counted once

    minutes = run(store, T0 + 2 * 3600 + 3600 + 1)  # everything is older than an hour now
    assert (minutes.raw_folded, minutes.raw_deleted, minutes.minutes_folded) == (0, 1440, 0)
    assert tiers(store) == (0, 240, 0)
    assert totals(store) == expected

    hours = run(store, T0 + 2 * DAY + 2 * 3600)  # both hours ended two days ago
    assert hours.minutes_folded == 240
    assert tiers(store) == (0, 0, 4)
    assert totals(store) == expected
    with store.read() as session:
        first = session.get(ProbeHourly, (DEFAULT_SERVICE, "v1", T0))
    assert first is not None and (first.count, first.ok_count) == (360, 240)
    assert first.latency_sum == pytest.approx(240 * 4.0) and first.latency_max == 4.0

    assert run(store, T0 + 10 * DAY + 3599).hours_deleted == 1 * 2  # the first hour only
    assert tiers(store) == (0, 0, 2)
    assert run(store, T0 + 10 * DAY + 2 * 3600).hours_deleted == 2
    assert tiers(store) == (0, 0, 0) and totals(store) == {}


def test_it_folds_only_whole_hours_into_the_hourly_tier(store):
    with store.write() as session:
        for minute in range(90):  # an hour and a half of minute rollups
            session.add(ProbeRollup(version="v1", bucket=T0 + minute * 60, count=2,
                                    ok_count=1, latency_sum=6.0, latency_max=float(minute)))
    folded = fold_minutes(store, now=T0 + 2 * DAY + 5400, keep_s=2 * DAY, batch=7)
    assert folded == 60  # the hour still in progress at the cut-off stays in minutes
    with store.read() as session:
        (hour,) = session.exec(select(ProbeHourly)).all()
        left = session.exec(select(func.min(ProbeRollup.bucket))).one()
    assert (hour.bucket, hour.count, hour.ok_count, hour.latency_max) == (T0, 120, 60, 59.0)
    assert left == T0 + 3600


def test_it_counts_each_probe_once_as_rows_arrive_between_folds(store):
    add_probes(store, T0, minutes=10, versions=("v1",))
    assert fold_probes(store, batch=7) == 60
    add_probes(store, T0 + 600, minutes=1, versions=("v1",))  # newer rows, not folded yet
    add_probes(store, T0 + 30, minutes=1, versions=("v1",))  # a late batch of older rows
    assert totals(store) == {"v1": (72, 48)}  # the tail read raw, the rest from minutes
    # an old row not counted yet is never deleted
    assert prune_probes(store, now=T0 + DAY, keep_s=3600) == 60
    assert tiers(store)[0] == 12 and totals(store) == {"v1": (72, 48)}
    assert fold_probes(store) == 12
    assert totals(store) == {"v1": (72, 48)}
    assert prune_probes(store, now=T0 + DAY, keep_s=3600) == 12
    assert tiers(store) == (0, 11, 0) and totals(store) == {"v1": (72, 48)}


def add_notice(session, number: int, status: str, created_at: float, attempts: int = 0) -> None:
    notice = Notice(message_id=f"<n{number}@x>", kind="failover", subject=f"notice {number}",
                    created_at=created_at, status=status)
    session.add(notice)
    session.flush()
    for n in range(attempts):
        session.add(NoticeAttempt(notice_id=notice.id, at=created_at + n, ok=status == "sent"))


@pytest.mark.parametrize(("status", "age_days", "kept"), [
    ("sent", 8, False),
    ("failed", 8, False),
    ("sent", 6, True),  # young
    ("pending", 30, True),  # still due: never pruned
    ("sending", 30, True),
    ("unsent", 30, True),  # may be sent once SMTP is configured
])
def test_it_prunes_final_notices_after_their_age_and_keeps_open_ones(store, status, age_days,
                                                                     kept):
    now = T0 + 40 * DAY
    with store.write() as session:
        add_notice(session, 1, status, now - age_days * DAY, attempts=2)
        add_notice(session, 2, "pending", now)
    assert run(store, now).notices_deleted == (0 if kept else 1)
    with store.read() as session:
        subjects = session.exec(select(Notice.subject).order_by(Notice.id)).all()
        attempts = session.exec(select(func.count()).select_from(NoticeAttempt)).one()
    assert subjects == (["notice 1", "notice 2"] if kept else ["notice 2"])
    assert attempts == (2 if kept else 0)


def test_it_prunes_in_short_transactions_pausing_between_them(store):
    now = T0 + 40 * DAY
    with store.write() as session:
        for number in range(35):
            add_notice(session, number, "sent", now - 8 * DAY, attempts=1)
    commits: list[int] = []
    pauses: list[int] = []
    event.listen(store.writer, "commit", lambda _conn: commits.append(1))
    deleted = retention.prune_notices(store, now=now, keep_s=7 * DAY, batch=10,
                                      pause=lambda: pauses.append(len(commits)))
    assert deleted == 35
    assert len(commits) == 5  # 10 + 10 + 10 + 5, then one that finds nothing
    assert pauses == [1, 2, 3, 4]  # a pause after each batch, the lock released


def test_it_reads_the_retention_ages_from_the_settings(tmp_path):
    from monitor.config import load_settings

    settings = load_settings(data_dir=tmp_path, retention_hours=12, rollup_minute_days=10,
                             rollup_hour_days=100, notice_retention_days=3)
    assert Ages.of(settings) == Ages(raw_s=12 * 3600, minute_s=10 * DAY, hour_s=100 * DAY,
                                     notice_s=3 * DAY)


@pytest.mark.parametrize(("overrides", "named"), [
    ({"rollup_minute_days": 0}, "MONITOR_ROLLUP_MINUTE_DAYS"),
    ({"rollup_hour_days": -1}, "MONITOR_ROLLUP_HOUR_DAYS"),
    ({"notice_retention_days": "soon"}, "MONITOR_NOTICE_RETENTION_DAYS"),
    ({"rollup_minute_days": 400}, "MONITOR_ROLLUP_HOUR_DAYS"),  # the hour tier must outlive it
    ({"retention_hours": 48, "rollup_minute_days": 1}, "MONITOR_RETENTION_HOURS"),
])
def test_it_names_a_bad_retention_setting(tmp_path, overrides, named):
    from monitor.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match=named):
        load_settings(data_dir=tmp_path, **overrides)


def test_it_runs_in_the_monitors_retention_job_with_its_settings_and_clock(tmp_path):
    import asyncio

    from monitor.runtime import create_runtime
    from tests.support import FakeClock
    from tests.web.support import make_settings

    clock = FakeClock(now=T0 + 10 * DAY)
    runtime = create_runtime(make_settings(tmp_path, retention_hours=1, rollup_minute_days=2,
                                           rollup_hour_days=5, notice_retention_days=1),
                             clock=clock)
    try:
        add_probes(runtime.store, T0 + 10 * DAY - 7200, minutes=60, versions=("v1",))
        add_probes(runtime.store, T0 + 7 * DAY, minutes=60, versions=("v1",))  # to the hours
        add_probes(runtime.store, T0, minutes=60, versions=("v1",))  # gone after 5 days
        with runtime.store.write() as session:
            add_notice(session, 1, "sent", clock() - 2 * DAY)
        asyncio.run(runtime._fold_probes())
        assert tiers(runtime.store) == (1080, 180, 0)
        asyncio.run(runtime._retention())
        assert tiers(runtime.store) == (0, 60, 1)
        with runtime.store.read() as session:
            assert session.exec(select(func.count()).select_from(Notice)).one() == 0
    finally:
        runtime.store.dispose()


@pytest.mark.parametrize("first_fold", [True, False])  # False: both create the mark row
def test_it_counts_each_probe_once_when_two_folds_run_at_once(store, first_fold):
    from concurrent.futures import ThreadPoolExecutor

    if first_fold:
        fold_probes(store)
    add_probes(store, T0, minutes=30, versions=("v1",))
    with ThreadPoolExecutor(max_workers=2) as pool:
        folded = list(pool.map(lambda _: fold_probes(store, batch=20), range(2)))
    assert sum(folded) == 180
    prune_probes(store, now=T0 + DAY, keep_s=3600)
    assert totals(store) == {"v1": (180, 120)}
