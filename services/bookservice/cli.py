"""Command line of a book service version: ``python -m services.v2 --port 8002``."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from services.bookservice.catalog import DATA_FILE
from services.bookservice.search import StrategyFactory

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def parse_args(
    version: str, default_port: int, argv: list[str] | None = None
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m services.{version}",
        description=f"Book service {version}. Chaos is enabled by the SERVICE_CHAOS_TOKEN env var.",
    )
    parser.add_argument(
        "--port", type=int, default=default_port, help=f"TCP port (default {default_port})"
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--catalog", type=Path, default=DATA_FILE, help="catalog JSON file")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="warning")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")
    return args


def main(
    version: str, strategy: StrategyFactory, *, default_port: int, argv: list[str] | None = None
) -> None:
    import uvicorn

    from services.bookservice.app import create_app

    args = parse_args(version, default_port, argv)
    logging.basicConfig(
        level=args.log_level.upper(), format=f"%(asctime)s {version} %(levelname)s %(message)s"
    )
    app = create_app(
        version,
        strategy,
        chaos_token=os.environ.get("SERVICE_CHAOS_TOKEN") or None,
        docs=os.environ.get("SERVICE_DOCS") == "1",
        catalog_path=args.catalog,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        server_header=False,
        timeout_graceful_shutdown=2,  # hung requests (chaos "hang") must not block a stop
    )
