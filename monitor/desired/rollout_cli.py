"""`python -m monitor rollout start VERSION [--strategy canary|bluegreen]` and
`rollout status|promote|pause|resume|abort [--reason TEXT]`.

The CLI never drives a rollout itself: it queues the action as a command row in the database
the monitor uses (like an action clicked on a follower's dashboard), and the leading monitor
applies and audits it within about a second, with the CLI user as the actor. The CLI waits
for that outcome (`--wait`, 10 s) and prints it; a refusal or no monitor applying it in time
is one line on stderr and exit code 1. `status` reads the persisted rollout and changes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from sqlmodel import select

from monitor.actor import cli_actor
from monitor.config import Settings
from monitor.desired.rollout import Strategy
from monitor.desired.rollout_plan import Op
from monitor.storage import commands
from monitor.storage.commands import CommandKind, CommandStatus
from monitor.storage.rollouts import RolloutRow
from monitor.storage.store import Store

POLL_S = 0.1
NAME = "lowercase letters, digits and -, starting with a letter"


def register(sub: Any) -> None:
    """Add `rollout ...` to the CLI's subparsers."""
    rollout = sub.add_parser("rollout", help="progressive delivery: canary and blue/green")
    ops = rollout.add_subparsers(dest="rollout_op", required=True)
    start = ops.add_parser("start", help="start a rollout to VERSION")
    start.add_argument("version")
    start.add_argument("--strategy", choices=list(Strategy), default="",
                       help="default: the spec's rollout.strategy, else canary")
    status = ops.add_parser("status", help="print the rollout in force")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=status_command)
    for op in (Op.PROMOTE, Op.PAUSE, Op.RESUME, Op.ABORT):
        ops.add_parser(op, help=f"{op} the running rollout")
    for name, parser in ops.choices.items():
        if name != "status":
            parser.add_argument("--reason", default="", help="goes into the audit log")
            parser.add_argument("--wait", type=float, default=10.0,
                                help="seconds to wait for the monitor's answer")
            parser.set_defaults(handler=action_command)


def _store(settings: Settings) -> Store:
    store = Store(settings.db_url())
    store.create_all()
    return store


def action_command(settings: Settings, args: argparse.Namespace) -> int:
    op = Op(args.rollout_op)
    params: dict[str, object] = {"op": op.value, "reason": args.reason[:500]}
    if op == Op.START:
        version = str(args.version)
        if not version or len(version) > 31 or not version[0].isalpha() or not all(
                c.islower() or c.isdigit() or c == "-" for c in version):
            print(f"error: VERSION: {version[:40]!r} is not a version name ({NAME})",
                  file=sys.stderr)
            return 1
        params.update(target=version, strategy=args.strategy)
    who = cli_actor()
    store = _store(settings)
    try:
        command_id = commands.queue(store, CommandKind.ROLLOUT, params, actor=who.name,
                                    role=who.role, source_ip="", user_agent="cli",
                                    queued_by="cli", now=time.time())
        deadline = time.monotonic() + max(0.0, args.wait)
        while True:
            row = commands.get(store, command_id)
            if row is not None and row.status == CommandStatus.DONE:
                break
            if time.monotonic() >= deadline:
                print(f"error: queued as command {command_id}, but no monitor applied it "
                      f"within {args.wait:g} s (is one running on this database?)",
                      file=sys.stderr)
                return 1
            time.sleep(POLL_S)
    finally:
        store.dispose()
    if row.result.startswith("ok"):
        print(row.result.removeprefix("ok: "))
        return 0
    print(f"error: {row.result.removeprefix('refused: ')}", file=sys.stderr)
    return 1


def status_command(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    try:
        with store.read() as session:
            found = {r.service: json.loads(r.record) for r in session.exec(select(RolloutRow))}
    finally:
        store.dispose()
    shown = {name: record.get("rollout") for name, record in found.items()}
    if args.json:
        print(json.dumps(shown, sort_keys=True))
        return 0
    if not any(shown.values()):
        print("no rollout")
    for name, r in shown.items():
        if r:
            print(f"{name}: {r['strategy']} {r['stable']} -> {r['canary']}: {r['phase']}, "
                  f"step {r['step'] + 1 if r['step'] < len(r['steps']) else len(r['steps'])}"
                  f" of {len(r['steps'])}, weight {r['weight']}%"
                  + (f" ({r['reason']})" if r.get("reason") else ""))
    return 0
