"""The desired-state spec: `kind: Service` YAML documents (DESIGN.md section 15), validated.

A spec file holds one or more YAML documents; each is one service. Parsing never executes
anything (`yaml.safe_load_all`), and every error names the field and the reason, for example
``books: spec.versions[0].replicas: Input should be greater than or equal to 0``. A spec is
only data: applying it (audit, diff, reconciling processes) happens elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

MAX_SPEC_BYTES = 256 * 1024
MAX_SERVICES = 100
NAME = r"^[a-z][a-z0-9-]{0,30}$"


class SpecError(ValueError):
    """A spec that cannot be applied; the message names the field and the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class HttpGet(_Strict):
    path: str = "/health"

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or len(value) > 200 or any(c.isspace() for c in value):
            raise ValueError("must be an absolute path without spaces, at most 200 characters")
        return value


class Probe(_Strict):
    http_get: HttpGet = Field(default_factory=HttpGet, alias="httpGet")
    period_seconds: float = Field(2.0, alias="periodSeconds", gt=0, le=3600)
    timeout_seconds: float = Field(1.0, alias="timeoutSeconds", gt=0, le=60)
    failure_threshold: int = Field(3, alias="failureThreshold", ge=1, le=100)
    initial_delay_seconds: float = Field(30.0, alias="initialDelaySeconds", gt=0, le=3600)


def _live_probe() -> Probe:
    return Probe.model_validate({"httpGet": {"path": "/health/live"}})


class Autoscale(_Strict):
    target_cpu: float = Field(alias="targetCPU", gt=0, le=100)
    min: int = Field(1, ge=1, le=50)
    max: int = Field(5, ge=1, le=50)
    scale_down_stabilization_seconds: float = Field(
        300.0, alias="scaleDownStabilizationSeconds", ge=0, le=86400)
    tolerance: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscale:
        if self.min > self.max:
            raise ValueError("min must not be above max")
        return self


class Pause(_Strict):
    duration: float | None = Field(None, gt=0, le=86400)  # None: wait for promote


class Step(_Strict):
    set_weight: int | None = Field(None, alias="setWeight", ge=0, le=100)
    pause: Pause | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        if (self.set_weight is None) == (self.pause is None):
            raise ValueError("a step is exactly one of setWeight or pause")
        return self


class Analysis(_Strict):
    success_rate: float = Field(0.99, alias="successRate", gt=0, le=1)
    max_p99_ratio: float = Field(1.5, alias="maxP99Ratio", ge=1)
    interval_seconds: float = Field(10.0, alias="intervalSeconds", gt=0, le=3600)
    max_probe_failures: int = Field(1, alias="maxProbeFailures", ge=0)


class Rollout(_Strict):
    strategy: Literal["BlueGreen", "Canary"]
    steps: tuple[Step, ...] = ()
    analysis: Analysis = Field(default_factory=Analysis)
    scale_down_delay_seconds: float = Field(30.0, alias="scaleDownDelaySeconds", ge=0,
                                            le=86400)


class Failover(_Strict):
    """One service's failover policy (DESIGN section 5); a field left out takes its MONITOR_*
    setting. The probe timeout (MONITOR_TIMEOUT) stays below every interval."""

    fall: int | None = Field(None, ge=1, le=100)
    rise: int | None = Field(None, ge=1, le=100)
    cooldown_seconds: float | None = Field(None, alias="cooldownSeconds", ge=0, le=86400)
    startup_grace_seconds: float | None = Field(None, alias="startupGraceSeconds", ge=0,
                                                le=3600)
    auto_failback_after_seconds: float | None = Field(None, alias="autoFailbackAfterSeconds",
                                                      ge=0, le=86400)
    interval_seconds: float | None = Field(None, alias="intervalSeconds", gt=0, le=3600)
    fast_interval_seconds: float | None = Field(None, alias="fastIntervalSeconds", gt=0,
                                                le=3600)
    down_interval_seconds: float | None = Field(None, alias="downIntervalSeconds", gt=0,
                                                le=3600)


EnvMap = Annotated[dict[str, Annotated[str, Field(max_length=4096)]], Field(max_length=100)]


class Version(_Strict):
    name: str = Field(pattern=NAME)
    command: tuple[Annotated[str, Field(min_length=1, max_length=4096)], ...] | None = Field(
        None, min_length=1, max_length=64)
    url: str | None = Field(None, max_length=2048)
    replicas: int | None = Field(None, ge=0, le=50)
    env: EnvMap = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+(:\d+)?/?$", value):
            raise ValueError("must be http(s)://host[:port] with no path")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _command_or_url(self) -> Version:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command or url")
        if self.url is not None and self.replicas not in (None, 1):
            raise ValueError("an external url is one endpoint: replicas must be 1 or unset")
        return self

    @property
    def local(self) -> bool:
        return self.command is not None


class ServiceBody(_Strict):
    replicas: int = Field(1, ge=0, le=50)
    min_ready: int = Field(1, alias="minReady", ge=1, le=50)
    versions: tuple[Version, ...] = Field(min_length=1, max_length=10)
    readiness_probe: Probe = Field(default_factory=Probe, alias="readinessProbe")
    liveness_probe: Probe = Field(default_factory=_live_probe, alias="livenessProbe")
    autoscale: Autoscale | None = None
    rollout: Rollout | None = None
    failover: Failover | None = None
    env: EnvMap = Field(default_factory=dict)

    @model_validator(mode="after")
    def _distinct(self) -> ServiceBody:
        names = [v.name for v in self.versions]
        if len(set(names)) != len(names):
            raise ValueError("version names must be distinct")
        return self

    def replicas_of(self, version: Version) -> int:
        """The declared replica count of one version (its own, else the service default)."""
        if not version.local:
            return 1
        return self.replicas if version.replicas is None else version.replicas


class Metadata(_Strict):
    name: str = Field(pattern=NAME)


class ServiceSpec(_Strict):
    api_version: Literal["v1"] = Field(alias="apiVersion")
    kind: Literal["Service"]
    metadata: Metadata
    spec: ServiceBody

    @property
    def name(self) -> str:
        return self.metadata.name

    def version(self, name: str) -> Version | None:
        return next((v for v in self.spec.versions if v.name == name), None)

    def document(self) -> dict[str, Any]:
        """The spec as the YAML author wrote it (aliases, no defaults filled in)."""
        return self.model_dump(by_alias=True, exclude_defaults=True, mode="json")


def parse(text: str) -> list[ServiceSpec]:
    """Every `kind: Service` document of a YAML text, validated; SpecError names the field."""
    if len(text.encode("utf-8", "replace")) > MAX_SPEC_BYTES:
        raise SpecError(f"spec: larger than {MAX_SPEC_BYTES} bytes")
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise SpecError(f"spec: not valid YAML: {_first_line(exc)}") from None
    if not documents:
        raise SpecError("spec: no document found")
    if len(documents) > MAX_SERVICES:
        raise SpecError(f"spec: more than {MAX_SERVICES} services")
    services = [_one(index, doc) for index, doc in enumerate(documents)]
    names = [s.name for s in services]
    if len(set(names)) != len(names):
        raise SpecError("metadata.name: two documents name the same service")
    for further in services[1:]:
        _check_further(further)
    return services


def _check_further(service: ServiceSpec) -> None:
    """A further service (not the first document) is watched, not run: its versions are
    `url:` endpoints, at least two of them, and it has no rollout or autoscaling."""
    local = [v.name for v in service.spec.versions if v.local]
    if local:
        raise SpecError(f"{service.name}: spec.versions ({', '.join(local)}): only the first "
                        "document's service runs local commands; give url: here")
    if len(service.spec.versions) < 2:
        raise SpecError(f"{service.name}: spec.versions: at least two versions are needed "
                        "to fail over")
    if service.spec.rollout is not None or service.spec.autoscale is not None:
        raise SpecError(f"{service.name}: spec.rollout/autoscale: only the first document's "
                        "service has rollouts and autoscaling")


def _one(index: int, document: object) -> ServiceSpec:
    if not isinstance(document, dict):
        raise SpecError(f"document {index + 1}: must be a mapping with kind: Service")
    label = _label(index, document)
    try:
        return ServiceSpec.model_validate(document)
    except ValidationError as exc:
        raise SpecError(f"{label}: " + "; ".join(_errors(exc))) from None


def _label(index: int, document: dict[Any, Any]) -> str:
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return str(name)[:40] if isinstance(name, str) and name else f"document {index + 1}"


def _errors(exc: ValidationError) -> Iterator[str]:
    for error in exc.errors(include_url=False):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        yield f"{where.lstrip('.') or 'document'}: {message}"


def _first_line(exc: yaml.YAMLError) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "parse error"


def dump(services: list[ServiceSpec]) -> str:
    """The services as one YAML text, in the author's format (read back by `parse`)."""
    return yaml.safe_dump_all([s.document() for s in services], sort_keys=False)
