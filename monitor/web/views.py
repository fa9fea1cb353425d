"""Pure view helpers: the latency chart geometry and paging. No I/O, time passed in."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

CHART_WIDTH = 960
CHART_HEIGHT = 200
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 48, 8, 8, 20


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^n that is >= value (at least 10 ms for an idle chart)."""
    value = max(value, 10.0)
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * exponent >= value:
            return float(step * exponent)
    return float(10 * exponent)  # pragma: no cover - the loop always returns


def chart(series: dict[str, list[tuple[float, float | None]]], *, now: float,
          minutes: int = 15, width: int = CHART_WIDTH,
          height: int = CHART_HEIGHT) -> dict[str, Any]:
    """Polylines for an inline SVG: one per version, broken where a probe failed.

    Failed probes (latency None) become tick marks on the x axis instead of points, so an
    outage is visible as a gap with red ticks rather than as a misleading line.
    """
    start = now - minutes * 60
    plot_w = width - PAD_LEFT - PAD_RIGHT
    plot_h = height - PAD_TOP - PAD_BOTTOM
    values = [ms for points in series.values() for t, ms in points if ms is not None and t >= start]
    top = nice_ceiling(max(values, default=0.0))

    def x(t: float) -> float:
        return round(PAD_LEFT + (t - start) / (now - start) * plot_w, 1)

    def y(ms: float) -> float:
        return round(PAD_TOP + plot_h - min(ms, top) / top * plot_h, 1)

    lines = []
    for index, (name, points) in enumerate(series.items()):
        segments: list[list[tuple[float, float]]] = []
        current: list[tuple[float, float]] = []
        failures: list[float] = []
        for t, ms in points:
            if t < start or t > now:
                continue
            if ms is None:
                failures.append(x(t))
                if current:
                    segments.append(current)
                current = []
            else:
                current.append((x(t), y(ms)))
        if current:
            segments.append(current)
        last = next((ms for _, ms in reversed(points) if ms is not None), None)
        lines.append({"name": name, "index": index % 6,
                      "segments": [" ".join(f"{a},{b}" for a, b in s) for s in segments
                                   if len(s) > 1],
                      "dots": [s[0] for s in segments if len(s) == 1],
                      "failures": failures, "last_ms": last, "points": sum(map(len, segments))})
    ticks = [{"y": y(top * f), "label": f"{top * f:g} ms"} for f in (0, 0.5, 1)]
    minute_marks = [{"x": x(now - m * 60), "label": f"-{m} min" if m else "now",
                     "anchor": "end" if m == 0 else "start" if m == minutes else "middle"}
                    for m in range(0, minutes + 1, 5)]
    return {"width": width, "height": height, "top_ms": top, "lines": lines, "ticks": ticks,
            "minutes": minute_marks, "left": PAD_LEFT, "right": width - PAD_RIGHT,
            "bottom": PAD_TOP + plot_h, "minutes_shown": minutes}


@dataclass(frozen=True)
class Pager:
    """Offset paging: `page` is 1-based; `has_next` is known from fetching one row extra."""

    page: int
    size: int
    has_next: bool

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    @property
    def has_prev(self) -> bool:
        return self.page > 1


def page_rows(rows: list[T], size: int) -> tuple[list[T], bool]:
    """Split the `size + 1` rows of a query into the page and whether another page follows."""
    return rows[:size], len(rows) > size
