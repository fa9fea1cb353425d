"""CLI: `audit verify [--json] [--full]` and `audit archive --before DATE`.

`verify` reads only: incremental by default (from the newest verified checkpoint, the same
walk the dashboard runs), `--full` re-reads every archived segment and every row, streamed.
Both print every problem, `N/N records valid`, and exit 1 on any problem. Long work shows
progress on stderr (storage.progress); stdout is the result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from monitor.config import Settings

CHECKPOINTS = "audit.checkpoints"


def register(sub: Any) -> None:
    """Add the `audit` command to the CLI's subparsers."""
    audit_cmd = sub.add_parser("audit", help="audit log").add_subparsers(
        dest="audit_command", required=True)
    verify = audit_cmd.add_parser(
        "verify", help="verify the audit chain (read-only; from the newest verified "
                       "checkpoint, --full: every row and archived segment)")
    verify.add_argument("--json", action="store_true")
    verify.add_argument("--full", action="store_true")
    verify.set_defaults(handler=verify_command)
    archive = audit_cmd.add_parser(
        "archive", help="move rows before DATE to a signed segment file in the data dir")
    archive.add_argument("--before", required=True, metavar="DATE",
                         help="a date (2025-01-31, UTC midnight) or an ISO date and time")
    archive.set_defaults(handler=archive_command)


def archive_dir(settings: Settings) -> Path:
    from monitor.storage.segments import ARCHIVE_DIR

    return settings.data_dir / ARCHIVE_DIR


def verify_command(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy import inspect

    from monitor.storage.keys import load_keys
    from monitor.storage.progress import progress_for
    from monitor.storage.store import Store
    from monitor.storage.verifier import verify

    keys = load_keys(settings, create=False)
    store = Store(settings.db_url())
    if not inspect(store.reader).has_table("audit"):
        store.dispose()
        print(f"error: no audit log in {settings.db_url()}: is MONITOR_DATA_DIR "
              f"({settings.data_dir}) the monitor's data directory?", file=sys.stderr)
        return 2
    progress = progress_for("verify") if args.full else None
    try:
        report = verify(store, keys.audit, settings.data_dir / CHECKPOINTS, full=args.full,
                        archive_dir=archive_dir(settings), progress=progress)
    finally:
        store.dispose()
    if progress is not None:
        progress.finish()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for problem in report.problems:
            print(f"seq {problem.seq}: {problem.kind}: {problem.detail}")
        print(report.summary())
    return 0 if report.ok else 1


def archive_command(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.actor import cli_actor
    from monitor.storage.archive import ArchiveError, archive, parse_before
    from monitor.storage.keys import load_keys
    from monitor.storage.progress import progress_for
    from monitor.storage.store import Store

    now = time.time()
    try:
        before = parse_before(args.before, now=now)
    except ArchiveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    keys = load_keys(settings, create=False)
    store = Store(settings.db_url())
    store.create_all()  # archive writes: the schema must have its tables (migration 0005)
    progress = progress_for("archive")
    try:
        done = archive(store, keys.audit, archive_dir(settings), before=before, now=now,
                       actor=cli_actor().name, progress=progress)
    except ArchiveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.dispose()
    progress.finish()
    if done is None:
        print(f"nothing to archive before {before}")
    else:
        print(f"archived {done.rows} rows (seq {done.first}-{done.last}) to {done.file}")
    return 0
