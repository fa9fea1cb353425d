"""Start and stop real service processes for end-to-end tests.

Every wait is bounded in count and time; a process that fails to become ready is killed and
its output is put in the error.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.05


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_output(proc: subprocess.Popen) -> str:
    """Everything the process wrote to stdout and stderr so far."""
    log = getattr(proc, "log_file", None)
    if log is None or log.closed:
        return ""
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace")


def stop_process(proc: subprocess.Popen, timeout: float = 5.0) -> int:
    """Terminate (then kill) the process if still running; return its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    log = getattr(proc, "log_file", None)
    if log is not None:
        log.close()
    return proc.returncode


def wait_until_ready(proc: subprocess.Popen, url: str, timeout: float = 15.0) -> None:
    """Poll ``url`` until it answers 200; raise if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        for _ in range(int(timeout / POLL_S) + 1):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{proc.args} exited with {proc.returncode}:\n{process_output(proc)}"
                )
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
    raise TimeoutError(f"{url} not ready after {timeout}s:\n{process_output(proc)}")


def start_service(
    version: str,
    port: int,
    token: str,
    *,
    timeout: float = 15.0,
    extra_env: dict[str, str] | None = None,
    catalog: Path | None = None,
) -> subprocess.Popen:
    """Run ``python -m services.<version> --port <port>`` with SERVICE_CHAOS_TOKEN=token (and
    the catalog file `catalog`, else the shipped one) and return once its /health answers 200.
    The caller stops it with ``stop_process``."""
    env = {**os.environ, "SERVICE_CHAOS_TOKEN": token, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", f"services.{version}", "--port", str(port), "--host", "127.0.0.1",
         *(["--catalog", str(catalog)] if catalog else [])],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    proc.log_file = log  # type: ignore[attr-defined]
    try:
        wait_until_ready(proc, f"http://127.0.0.1:{port}/health", timeout)
    except BaseException:
        stop_process(proc)
        raise
    return proc
