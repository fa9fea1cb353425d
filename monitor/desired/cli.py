"""`python -m monitor apply -f SPEC [--dry-run]` and `python -m monitor get`.

`apply` writes the new revision (and its audit row) to the database the monitor uses; a running
monitor picks it up on its next sync. Errors are one line naming the field, exit code 1, and
nothing changes. `get` prints the desired state in force as YAML: the newest applied revision,
or the spec equivalent of the settings when none was applied yet.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from monitor.actor import cli_actor
from monitor.config import Settings
from monitor.desired import apply as applying
from monitor.desired.defaults import spec_from_settings
from monitor.desired.spec import SpecError, dump
from monitor.storage.keys import load_keys
from monitor.storage.store import Store

MAX_FILE_BYTES = 256 * 1024


def register(sub: Any) -> None:
    """Add the `apply` and `get` subcommands to the CLI's subparsers."""
    apply_cmd = sub.add_parser("apply", help="apply a desired-state spec (YAML)")
    apply_cmd.add_argument("-f", "--file", required=True, type=Path,
                           help="spec file, or - for standard input")
    apply_cmd.add_argument("--dry-run", action="store_true", help="print the diff only")
    apply_cmd.set_defaults(handler=apply_command)
    sub.add_parser("get", help="print the desired state in force").set_defaults(
        handler=get_command)


def _store(settings: Settings) -> Store:
    store = Store(settings.db_url())
    store.create_all()
    return store


def _read(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read(MAX_FILE_BYTES + 1)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"{path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not UTF-8 text") from None


def apply_command(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    who = cli_actor()
    keys = load_keys(settings)
    try:
        result = applying.apply(store, keys.audit, _read(args.file), who=who, now=time.time(),
                                dry_run=args.dry_run)
    except SpecError as exc:
        if not args.dry_run:
            applying.audit_refused(store, keys.audit, exc, who=who, now=time.time())
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.dispose()
    for line in result.changes:
        print(line)
    names = ", ".join(s.name for s in result.services)
    if result.dry_run:
        print(f"dry run: {len(result.changes)} change(s) to {names}; nothing applied")
    elif result.revision is None:
        print(f"unchanged: {names}")
    else:
        print(f"applied revision {result.revision}: {names}")
    return 0


def get_command(settings: Settings, _args: argparse.Namespace) -> int:
    store = _store(settings)
    try:
        revision, _, text = applying.current(store)
    finally:
        store.dispose()
    if revision is None:
        print("# no spec applied: the desired state of the settings", file=sys.stderr)
        sys.stdout.write(dump([spec_from_settings(settings)]))
    else:
        print(f"# revision {revision}", file=sys.stderr)
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
