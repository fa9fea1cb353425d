"""The real monitor as a subprocess for the end-to-end tests; defined in bench/processes.py
(shared with the benchmarks, which must not import from tests/)."""

from bench.processes import (
    ADMIN_PASSWORD,
    FAST,
    ROOT,
    MonitorProcess,
    all_versions_up,
    banner_password,
    free_ports,
    monitor_env,
    start_monitor,
    stop_children,
    wait_until,
)

__all__ = ["ADMIN_PASSWORD", "FAST", "ROOT", "MonitorProcess", "all_versions_up",
           "banner_password", "free_ports", "monitor_env", "start_monitor", "stop_children",
           "wait_until"]
