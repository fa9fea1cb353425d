"""Probe history in time buckets, for the latency and uptime charts (read-only).

Three tiers answer together, each counting a probe once: the per-minute rollups (every probe up
to the fold mark, `probe_fold.fold_probes`, including those still kept raw), the raw probe rows
above that mark (a short tail), and the hourly rollups the minutes are folded into after
MONITOR_ROLLUP_MINUTE_DAYS (`tiers.fold_minutes`, which moves them: a minute is in one tier).
So a 24 h uptime or chart reads rollup rows, never the day's raw probes. Each tier is read by an
index range on its time column (the raw tail by its id), so a window reads only the rows
inside it. All are aggregated by the database with GROUP BY (version, bucket). Bucket starts
are multiples of `bucket_s` since the epoch; a rollup minute (or hour) lands in the bucket that
contains its start, so `bucket_s` should be a multiple of 60 once rollups count (of 3600 once
hourly rollups do).

Latency is the mean of successful probes: `latency_sum / ok_count`. Minutes folded by the
older `Store.roll_up` also counted failed probes' time to fail in the sum (a slight
overestimate); `fold_probes` counts successes only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# sqlalchemy's select: sqlmodel's takes at most four columns
from sqlalchemy import Integer, case, cast, func, literal_column, select
from sqlmodel import col

from monitor.storage.probe_fold import mark
from monitor.storage.store import ProbeRollup, ProbeRow, Store
from monitor.storage.tiers import ProbeHourly


@dataclass
class Bucket:
    start: float
    count: int = 0
    ok_count: int = 0
    latency_sum: float = 0.0  # of successful probes
    latency_max: float = 0.0

    @property
    def uptime(self) -> float | None:
        """Percent of successful probes; None without probes."""
        return 100.0 * self.ok_count / self.count if self.count else None

    @property
    def latency_ms(self) -> float | None:
        return self.latency_sum / self.ok_count if self.ok_count else None


History = dict[str, list[Bucket]]  # version -> buckets in time order (empty ones left out)


def _bucket_of(store: Store, column: Any, bucket_s: float) -> Any:
    # PostgreSQL's cast rounds; floor() is not in every SQLite build, where the cast truncates
    index = func.floor(column / bucket_s) if not store.is_sqlite else \
        cast(column / bucket_s, Integer)
    return index


def _rolled(store: Store, tier: type[ProbeRollup] | type[ProbeHourly], since: float,
            until: float, bucket_s: float, service: str | None) -> Any:
    index = _bucket_of(store, col(tier.bucket), bucket_s)
    query = (select(col(tier.version), index, func.sum(col(tier.count)),
                    func.sum(col(tier.ok_count)), func.sum(col(tier.latency_sum)),
                    func.max(col(tier.latency_max)))
             .where(col(tier.bucket) >= since).where(col(tier.bucket) < until))
    if service is not None:  # `|| ''`: still read by the bucket range, filtered in it
        query = query.where(col(tier.service).op("||")(literal_column("''")) == service)
    return query.group_by(col(tier.version), index)


def history(store: Store, *, since: float, until: float, bucket_s: float,
            service: str | None = None) -> History:
    """Per version, the buckets of [since, until) that hold at least one probe (of one
    service's versions when `service` is given)."""
    merged: dict[tuple[str, int], Bucket] = {}
    ok_latency = case((col(ProbeRow.ok), col(ProbeRow.latency_ms)), else_=None)
    raw_index = _bucket_of(store, col(ProbeRow.at), bucket_s)
    # The raw tail (the probes the minute tier does not count yet) is read by id. `at + 0` and
    # `version || ''` keep SQLite from walking every probe of the window (or the table) through
    # an index on `at` or `version` instead: it has no statistics to know the tail is short.
    raw_version = col(ProbeRow.version).op("||")(literal_column("''"))
    with store.read() as session:  # one snapshot: the mark and the tiers agree
        if not store.is_sqlite:  # (SQLite's read transaction is one snapshot already)
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        raw = (select(raw_version, raw_index, func.count(),
                      func.sum(case((col(ProbeRow.ok), 1), else_=0)),
                      func.sum(ok_latency), func.max(ok_latency))
               .where(col(ProbeRow.id) > mark(session))
               .where(col(ProbeRow.at) + 0 >= since).where(col(ProbeRow.at) + 0 < until))
        if service is not None:
            raw = raw.where(col(ProbeRow.service).op("||")(literal_column("''")) == service)
        raw = raw.group_by(raw_version, raw_index)
        rows: list[Any] = [*session.execute(raw).all()]
        for tier in (ProbeRollup, ProbeHourly):
            rows += session.execute(_rolled(store, tier, since, until, bucket_s,
                                            service)).all()
    for version, index, count, ok_count, latency_sum, latency_max in rows:
        key = (str(version), int(index))
        bucket = merged.setdefault(key, Bucket(start=key[1] * bucket_s))
        bucket.count += int(count or 0)
        bucket.ok_count += int(ok_count or 0)
        bucket.latency_sum += float(latency_sum or 0.0)
        bucket.latency_max = max(bucket.latency_max, float(latency_max or 0.0))
    found: History = {}
    for (version, _), bucket in sorted(merged.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        found.setdefault(version, []).append(bucket)
    return found


def uptime(store: Store, *, since: float, until: float,
           service: str | None = None) -> dict[str, float]:
    """Percent of successful probes per version over [since, until), from every tier (so it
    stays whole when MONITOR_RETENTION_HOURS is shorter than the window); rounded to 0.01."""
    found = history(store, since=since, until=until, bucket_s=max(until - since, 60.0),
                    service=service)
    result: dict[str, float] = {}
    for version, buckets in found.items():
        total = sum(b.count for b in buckets)
        if total:
            result[version] = round(100.0 * sum(b.ok_count for b in buckets) / total, 2)
    return result
