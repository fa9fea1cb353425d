"""Service processes for the end-to-end tests; defined in bench/processes.py (shared with the
benchmarks, which must not import from tests/)."""

from bench.processes import (
    ROOT,
    free_port,
    free_ports,
    process_output,
    start_service,
    stop_process,
    wait_until_ready,
)

REPO_ROOT = ROOT
__all__ = ["REPO_ROOT", "free_port", "free_ports", "process_output", "start_service",
           "stop_process", "wait_until_ready"]
