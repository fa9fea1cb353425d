"""Validation of the action forms. Bad input raises FormError, answered 422 with its reason,
before anything changes. Chaos bounds here mirror the services' own (they check again)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

MAX_REASON = 500
TRUE_WORDS = ("on", "true", "1", "yes")
FALSE_WORDS = ("", "off", "false", "0", "no")


class FormError(ValueError):
    """A form field is wrong; the message names the field."""


@dataclass(frozen=True)
class Param:
    name: str
    label: str
    kind: str  # float | int | bool
    low: float = 0.0
    high: float = 0.0
    default: float | bool = 0
    step: str = "any"


FAULTS: dict[str, tuple[Param, ...]] = {
    "cpu": (Param("seconds", "seconds", "float", 1, 60, 30.0),
            Param("workers", "workers", "int", 1, 2, 1, "1")),
    "latency": (Param("ms", "delay ms", "int", 0, 10_000, 500, "1"),
                Param("jitter_ms", "jitter ms", "int", 0, 5_000, 100, "1")),
    "errors": (Param("probability", "probability", "float", 0, 1, 1.0),),
    "corrupt": (Param("silent", "silent (health still says OK)", "bool", default=False),),
    "hang": (),
    "crash": (),
    "flap": (Param("period_s", "period s", "float", 1, 300, 5.0),),
    "reset": (),
    "kill": (Param("count", "replicas", "int", 1, 50, 1, "1"),),
}


def parse_bool(form: Mapping[str, str], name: str) -> bool:
    value = str(form.get(name, "")).strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise FormError(f"{name}: expected a checkbox value (on/off), got {value[:20]!r}")


def parse_reason(form: Mapping[str, str], *, required: bool = False) -> str:
    reason = str(form.get("reason", "")).strip()
    if required and not reason:
        raise FormError("reason: required, say why (it goes into the audit log)")
    if len(reason) > MAX_REASON:
        raise FormError(f"reason: at most {MAX_REASON} characters")
    return reason


def parse_version(value: str, versions: list[str], field: str = "version") -> str:
    if value not in versions:
        raise FormError(f"{field}: unknown version {value[:40]!r}, one of {', '.join(versions)}")
    return value


def parse_failover(form: Mapping[str, str], versions: list[str]) -> tuple[str, str, bool]:
    """(target, reason, force) of the manual failover form."""
    target = parse_version(str(form.get("target", "")), versions, "target")
    return target, parse_reason(form, required=True), parse_bool(form, "force")


def parse_chaos(fault: str, form: Mapping[str, str]) -> dict:
    """The parameters of one chaos fault, typed and within bounds."""
    if fault not in FAULTS:
        raise FormError(f"fault: unknown fault {fault[:40]!r}, one of {', '.join(FAULTS)}")
    params: dict = {}
    for param in FAULTS[fault]:
        if param.kind == "bool":
            params[param.name] = parse_bool(form, param.name)
            continue
        raw = str(form.get(param.name, "")).strip()
        if not raw:
            params[param.name] = param.default
            continue
        params[param.name] = _number(param, raw)
    return params


def _number(param: Param, raw: str) -> float | int:
    try:
        value = int(raw) if param.kind == "int" else float(raw)
    except ValueError:
        raise FormError(f"{param.name}: expected a number, got {raw[:20]!r}") from None
    if not math.isfinite(value) or not param.low <= value <= param.high:
        raise FormError(f"{param.name}: must be between {param.low:g} and {param.high:g}")
    return value
