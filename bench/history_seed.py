"""Seeding for bench/history.py: a year of probe history in its tiers, and a chained audit log.

Probe history at the default ages: raw probes every MONITOR_INTERVAL (2 s) for the last
MONITOR_RETENTION_HOURS (24 h), per-minute rollups back to MONITOR_ROLLUP_MINUTE_DAYS (30 d;
they also count the raw window, as the monitor's fold does, and the fold mark is set),
hourly rollups back to MONITOR_ROLLUP_HOUR_DAYS (365 d), for every (service, version) of
SERIES. Rows go in with plain `executemany` (synchronous=OFF), in batches, with progress.

The audit rows are chained by the monitor's own functions (`audit.compute_mac`, `family_of`,
`checkpoints.sign_line`, `record_anchor`): the same MACs `audit verify` checks, computed row by
row and bulk-inserted, not appended one transaction at a time.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from monitor.config import load_settings
from monitor.storage import audit, checkpoints
from monitor.storage.keys import load_keys
from monitor.storage.progress import progress_for
from monitor.storage.store import Store
from monitor.storage.tiers import DEFAULT_SERVICE, HOUR_S

DAY = 86_400.0
YEAR = 365 * DAY
INTERVAL = 2.0
RAW_S, MINUTE_S, HOUR_KEEP_S = DAY, 30 * DAY, YEAR
BATCH = 50_000

# 3 services x 3 versions (False: 9 versions of the one service, for a database from before the
# `service` column, migration 0007; the same number of series and rows).
SERVICE_COLUMN = True
SERIES: list[tuple[str, str]] = (
    [(s, f"v{n}") for s in ("books", "maps", "music") for n in (1, 2, 3)] if SERVICE_COLUMN
    else [(DEFAULT_SERVICE, f"v{n}") for n in range(1, 10)])

ACTIONS = [("login.failed", 30), ("access.denied", 8), ("chaos.inject", 14), ("chaos.reset", 14),
           ("replica.start", 10), ("replica.stop", 10), ("failover.automatic", 2),
           ("failover.manual", 1), ("incident.opened", 2), ("notice.sent", 6),
           ("spec.apply", 2), ("user.add", 0.5), ("user.disable", 0.5)]
COLUMNS = ("seq", "ts", "actor", "role", "source_ip", "user_agent", "action", "target", "params",
           "outcome", "reason", "request_id", "evidence", "prev_mac", "mac", "family")


def _batches(rows: Iterator[tuple[object, ...]]) -> Iterator[list[tuple[object, ...]]]:
    batch: list[tuple[object, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _fill(conn: sqlite3.Connection, table: str, columns: tuple[str, ...], total: int,
          rows: Iterator[tuple[object, ...]]) -> int:
    progress = progress_for(f"seed {table}")
    progress.total(total)
    marks = ",".join("?" * len(columns))
    done = 0
    for batch in _batches(rows):
        with conn:
            conn.executemany(f"INSERT INTO {table} ({','.join(columns)}) "  # noqa: S608
                             f"VALUES ({marks})", batch)
        done += len(batch)
        progress.advance(len(batch))
    progress.finish()
    return done


def _service(service: str) -> tuple[str, ...]:
    return (service,) if SERVICE_COLUMN else ()


def seed_probes(database: Path, now: float) -> dict[str, int]:
    """Raw, minute and hourly rows for SERIES; returns the row count per table."""
    service_col = ("service",) if SERVICE_COLUMN else ()
    raw_from = now - RAW_S
    minute_to = now - now % 60  # the minute tier also counts the raw window (probe_fold)
    minute_from = hour_to = (now - MINUTE_S) - (now - MINUTE_S) % HOUR_S  # whole hours only
    hour_from = hour_to - (hour_to - (now - HOUR_KEEP_S)) // HOUR_S * HOUR_S

    def raw() -> Iterator[tuple[object, ...]]:
        for service, version in SERIES:
            for n in range(int(RAW_S / INTERVAL)):
                ok = n % 97 != 0
                yield (*_service(service), version, raw_from + n * INTERVAL, ok,
                       2.0 + n % 13 * 0.5 if ok else None, 200 if ok else None,
                       None if ok else "timeout", "", False)

    def minutes() -> Iterator[tuple[object, ...]]:
        for service, version in SERIES:
            for n in range(int((minute_to - minute_from) // 60)):
                ok = 30 - (n % 7 == 0)
                yield (*_service(service), version, minute_from + n * 60, 30, ok, ok * 3.0,
                       6.5)

    def hours() -> Iterator[tuple[object, ...]]:
        for service, version in SERIES:
            for n in range(int((hour_to - hour_from) // HOUR_S)):
                yield (service, version, hour_from + n * HOUR_S, 1800, 1790, 1790 * 3.0, 9.0)

    per = len(SERIES)
    conn = sqlite3.connect(database)
    conn.execute("PRAGMA synchronous=OFF")
    try:
        counts = {
            "probe": _fill(conn, "probe", (*service_col, "version", "at", "ok", "latency_ms",
                                           "status", "failure", "detail", "passive"),
                           per * int(RAW_S / INTERVAL), raw()),
            "probe_rollup": _fill(conn, "probe_rollup", (
                *service_col, "version", "bucket", "count", "ok_count", "latency_sum",
                "latency_max"), per * int((minute_to - minute_from) // 60), minutes()),
            "probe_hourly": _fill(conn, "probe_hourly", (
                "service", "version", "bucket", "count", "ok_count", "latency_sum",
                "latency_max"), per * int((hour_to - hour_from) // HOUR_S), hours()),
        }
        with conn:  # every seeded raw probe is counted by the minute tier
            conn.execute("INSERT INTO rollup_mark (id, probe_id) SELECT 1, max(id) FROM probe")
        return counts
    finally:
        conn.close()


def action_cycle() -> list[str]:
    """A deterministic mix: 1,000 actions in the weights above, repeated."""
    total = sum(weight for _, weight in ACTIONS)
    cycle: list[str] = []
    for name, weight in ACTIONS:
        cycle += [name] * round(1000 * weight / total)
    return cycle


def seed_audit(data_dir: Path, rows: int, checkpoint_every: float,
               now: float) -> tuple[float, int]:
    """Insert `rows` chained rows over the last year and the checkpoint lines; returns
    (seconds, lines)."""
    started = time.perf_counter()
    settings = load_settings(data_dir=data_dir)
    key = load_keys(settings).audit
    store = Store(settings.db_url())
    store.create_all()
    cycle = action_cycle()
    first = now - YEAR
    chain = {"prev": audit.GENESIS}
    heads: list[tuple[int, str, float]] = []

    def chained() -> Iterator[tuple[object, ...]]:
        last_bucket = None
        for seq in range(1, rows + 1):
            at = first + YEAR * (seq - 1) / rows
            action = cycle[seq % len(cycle)]
            fields = {"seq": seq, "ts": audit.utc_iso(at),
                      "actor": "monitor" if seq % 3 else "olga",
                      "role": "system" if seq % 3 else "operator",
                      "source_ip": "" if seq % 3 else "10.0.0.7", "user_agent": "",
                      "action": action, "target": f"v{seq % 3 + 1}",
                      "params": json.dumps({"n": seq % 97}), "outcome": "ok",
                      "reason": f"seeded row {seq}", "request_id": f"r{seq:08x}",
                      "evidence": "[]", "prev_mac": chain["prev"]}
            mac = chain["prev"] = audit.compute_mac(key, fields)
            bucket = int(at // checkpoint_every)
            if bucket != last_bucket:
                heads.append((seq, mac, at))
                last_bucket = bucket
            yield (*fields.values(), mac, audit.family_of(action))

    conn = sqlite3.connect(data_dir / "monitor.db")
    conn.execute("PRAGMA synchronous=OFF")
    try:
        _fill(conn, "audit", COLUMNS, rows, chained())
    finally:
        conn.close()
    lines = _write_checkpoints(store, key, data_dir / "audit.checkpoints",
                               heads[1:] + [(rows, chain["prev"], now)])
    store.dispose()
    return time.perf_counter() - started, lines


def _write_checkpoints(store: Store, key: bytes, path: Path,
                       heads: list[tuple[int, str, float]]) -> int:
    """Checkpoint lines as the monitor writes them (chained, signed), then the anchor."""
    prev, number = checkpoints.GENESIS, 0
    with open(path, "w", encoding="utf-8") as out:
        for seq, mac, at in heads:
            number += 1
            entry = {"n": number, "seq": seq, "mac": mac, "at": audit.utc_iso(at), "prev": prev}
            entry["sig"] = prev = checkpoints.sign_line(key, entry)
            out.write(json.dumps(entry, sort_keys=True) + "\n")
    checkpoints.record_anchor(store, key, number, prev, checkpoints.anchor_id(store, path))
    return number
