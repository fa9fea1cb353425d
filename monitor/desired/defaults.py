"""The desired state of a monitor that was given no spec: the settings, as a spec.

`make run` with no spec behaves as before: one service `books` with the versions of
MONITOR_SERVICES (external URLs) or the local book services on MONITOR_SERVICE_PORTS, one
replica each, no autoscaling, no rollout.
"""

from __future__ import annotations

from typing import Any

from monitor.config import Settings
from monitor.desired.spec import ServiceSpec

DEFAULT_SERVICE = "books"


def spec_from_settings(settings: Settings) -> ServiceSpec:
    versions: list[dict[str, Any]] = []
    for name, url in settings.service_urls().items():
        if settings.local_services:
            versions.append({"name": name, "command": ["python", "-m", f"services.{name}"]})
        else:
            versions.append({"name": name, "url": url})
    return ServiceSpec.model_validate({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": DEFAULT_SERVICE},
        "spec": {"replicas": 1, "versions": versions,
                 "readinessProbe": {"periodSeconds": settings.interval,
                                    "timeoutSeconds": settings.timeout,
                                    "failureThreshold": settings.fall}}})
