"""CLI: run (default) | gateway | check-config | user add/passwd/list/disable | audit verify |
notify test | canary pin | backup PATH | apply -f SPEC [--dry-run] | get. Every failure is one
clear line on stderr and a non-zero exit code."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from monitor.storage.store import Store

ROLES = ("viewer", "operator", "admin")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        code: int = args.handler(settings, args)
        return code
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m monitor", description=__doc__)
    parser.set_defaults(handler=_run)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="start dashboard, gateway, services and probes").set_defaults(
        handler=_run)
    gateway = sub.add_parser("gateway", help="run the client gateway (follows the monitor's "
                             "route); --host/--port override MONITOR_HOST/MONITOR_GATEWAY_PORT")
    gateway.add_argument("--host")
    gateway.add_argument("--port", type=int, choices=range(1, 65536), metavar="PORT")
    gateway.set_defaults(handler=_gateway)
    sub.add_parser("check-config", help="validate settings and environment").set_defaults(
        handler=_check_config)
    user = sub.add_parser("user", help="manage dashboard users").add_subparsers(
        dest="user_command", required=True)
    add = user.add_parser("add", help="add a user (password from MONITOR_NEW_PASSWORD or stdin)")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.set_defaults(handler=_user_add)
    passwd = user.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name")
    passwd.set_defaults(handler=_user_passwd)
    user.add_parser("list", help="list users").set_defaults(handler=_user_list)
    disable = user.add_parser("disable", help="disable a user")
    disable.add_argument("name")
    disable.set_defaults(handler=_user_disable)
    from monitor.storage.audit_cli import register as register_audit

    register_audit(sub)
    notify_cmd = sub.add_parser("notify", help="notices").add_subparsers(
        dest="notify_command", required=True)
    notify_cmd.add_parser("test", help="send a test email").set_defaults(handler=_notify_test)
    canary_cmd = sub.add_parser("canary", help="the canary query").add_subparsers(
        dest="canary_command", required=True)
    pin = canary_cmd.add_parser(
        "pin", help="read the canary book from the active version and write it to .env")
    pin.add_argument("--env-file", type=Path, default=Path(".env"))
    pin.set_defaults(handler=_canary_pin)
    backup = sub.add_parser("backup", help="consistent copy of the database while running")
    backup.add_argument("path", type=Path)
    backup.set_defaults(handler=_backup)
    from monitor.desired.cli import register

    register(sub)
    return parser


def _run(settings: Settings, _args: argparse.Namespace) -> int:
    from monitor.serve import serve

    return serve(settings)


def _gateway(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.gateway.process import run_gateway

    if args.host:
        settings = settings.model_copy(update={"host": args.host})
    if args.port:
        settings = settings.model_copy(update={"gateway_port": args.port})
    return run_gateway(settings)


def _check_config(settings: Settings, _args: argparse.Namespace) -> int:
    from monitor.config import unknown_names
    from monitor.ops import preflight

    for line in unknown_names(os.environ):
        print(f"warning: {line}", file=sys.stderr)
    problems = preflight.check(settings, for_run=False)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"configuration OK (data dir {settings.data_dir.resolve()}, "
          f"services {', '.join(f'{k}={v}' for k, v in settings.service_urls().items())})")
    return 0


def _store(settings: Settings) -> Store:
    from monitor.storage.store import Store

    store = Store(settings.db_url())
    store.create_all()
    return store


def _new_password(prompt: str) -> str:
    password = os.environ.get("MONITOR_NEW_PASSWORD")
    if password:
        return password
    if sys.stdin.isatty():
        first = getpass.getpass(f"{prompt}: ")
        if first != getpass.getpass("again: "):
            raise SystemExit("error: the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def _user_action(fn: Callable[..., object], settings: Settings, *args: Any,
                 **kwargs: Any) -> int:
    from monitor.storage.keys import load_keys
    from monitor.storage.users import UserError

    try:
        fn(_store(settings), *args, audit_key=load_keys(settings).audit, now=time.time(),
           **kwargs)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _user_add(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.storage.users import add_user

    code = _user_action(add_user, settings, args.name, args.role,
                        _new_password(f"password for {args.name}"))
    if code == 0:
        print(f"user {args.name} added with role {args.role}")
    return code


def _user_passwd(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.storage.users import set_password

    code = _user_action(set_password, settings, args.name,
                        _new_password(f"new password for {args.name}"))
    if code == 0:
        print(f"password of {args.name} changed")
    return code


def _user_disable(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.storage.users import disable_user

    code = _user_action(disable_user, settings, args.name)
    if code == 0:
        print(f"user {args.name} disabled")
    return code


def _user_list(settings: Settings, _args: argparse.Namespace) -> int:
    from monitor.storage.users import list_users

    for user in list_users(_store(settings)):
        state = "disabled" if user.disabled else "active"
        print(f"{user.name}\t{user.role}\t{state}")
    return 0


def _notify_test(settings: Settings, _args: argparse.Namespace) -> int:
    from monitor.notices.delivery import NotifyError, send_test

    try:
        print(send_test(settings))
    except NotifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _canary_pin(settings: Settings, args: argparse.Namespace) -> int:
    import httpx

    from monitor.actor import cli_actor
    from monitor.failover.canary import PinError, env_lines, read_canary, write_env
    from monitor.recorder import Recorder
    from monitor.storage.keys import load_keys

    store = _store(settings)
    state = store.load_state()
    urls = settings.service_urls()
    active = state["active"] if state and state.get("active") in urls else next(iter(urls))
    try:
        with httpx.Client(timeout=max(settings.timeout, 5.0)) as client:
            canary = read_canary(client, urls[active], settings.canary_query)
    except PinError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_env(args.env_file, env_lines(canary))
    Recorder(store, load_keys(settings).audit, time.time).record(
        cli_actor(), "canary.pin", target=active,
        params={"query": canary.query, "book_id": canary.book_id, "digest": canary.digest,
                "env_file": str(args.env_file)})
    print(f"canary pinned from {active}: book {canary.book_id} digest {canary.digest} "
          f"written to {args.env_file}; restart the monitor to use it")
    return 0


def _backup(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.storage.store import Store

    if args.path.exists():
        print(f"error: {args.path} exists; choose a new file", file=sys.stderr)
        return 1
    checkpoints = settings.data_dir / "audit.checkpoints"
    if checkpoints.exists():
        # checkpoints first: copied after the database, they could name rows the copy lacks,
        # and a restore would look truncated
        copy = args.path.with_name(args.path.name + ".checkpoints")
        copy.write_bytes(checkpoints.read_bytes())
        print(f"audit checkpoints written to {copy}")
    from monitor.storage.progress import progress_for

    progress = progress_for("backup")
    Store(settings.db_url()).backup(args.path, progress=progress)
    progress.finish()
    print(f"backup written to {args.path}")
    if checkpoints.exists():
        from monitor.storage.checkpoints import match_backup

        match_backup(checkpoints, args.path.with_name(args.path.name + ".checkpoints"),
                     args.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
