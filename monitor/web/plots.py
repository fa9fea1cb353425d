"""PURE: latency and uptime charts over a window (15 minutes, 24 hours, 7 days) as SVG
geometry, from bucketed probe history (monitor.storage.rollup_reads). Time is passed in.

A line breaks where a bucket holds no probe (the monitor was not running, or not probing
that version), so a gap is never drawn as a slope. A bucket whose probes all failed has no
latency: the latency line breaks there and a red tick marks it on the axis, while the uptime
line drops to 0 %.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from monitor.storage.rollup_reads import Bucket, History
from monitor.web.views import (
    CHART_HEIGHT,
    CHART_WIDTH,
    PAD_BOTTOM,
    PAD_LEFT,
    PAD_RIGHT,
    PAD_TOP,
    nice_ceiling,
)


class ChartWindow(StrEnum):
    MINUTES_15 = "15m"
    HOURS_24 = "24h"
    DAYS_7 = "7d"


@dataclass(frozen=True)
class Span:
    seconds: float
    bucket_s: float
    label: str
    mark_every: float  # seconds between axis labels
    mark_unit: float  # seconds per unit of the axis label
    unit: str


SPANS: dict[ChartWindow, Span] = {
    ChartWindow.MINUTES_15: Span(900, 15, "15 minutes", 300, 60, "min"),
    ChartWindow.HOURS_24: Span(86_400, 300, "24 hours", 6 * 3600, 3600, "h"),
    ChartWindow.DAYS_7: Span(7 * 86_400, 3600, "7 days", 86_400, 86_400, "d"),
}
# How long a computed chart may be shown before it is computed again (per window).
MAX_AGE_S: dict[ChartWindow, float] = {
    ChartWindow.MINUTES_15: 2.0, ChartWindow.HOURS_24: 30.0, ChartWindow.DAYS_7: 120.0}


def _frame(now: float, span: Span, top: float, fmt: Callable[[float], str]
           ) -> tuple[Callable[[float], float], Callable[[float], float], dict[str, Any]]:
    start = now - span.seconds
    plot_w = CHART_WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = CHART_HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(t: float) -> float:
        return round(PAD_LEFT + (t - start) / span.seconds * plot_w, 1)

    def y(v: float) -> float:
        return round(PAD_TOP + plot_h - min(max(v, 0.0), top) / top * plot_h, 1)

    count = int(span.seconds // span.mark_every)
    marks = [{"x": x(now - n * span.mark_every),
              "label": "now" if n == 0 else f"-{n * span.mark_every / span.mark_unit:g} "
                                            f"{span.unit}",
              "anchor": "end" if n == 0 else "start" if n == count else "middle"}
             for n in range(count + 1)]
    frame = {"width": CHART_WIDTH, "height": CHART_HEIGHT, "left": PAD_LEFT,
             "right": CHART_WIDTH - PAD_RIGHT, "bottom": PAD_TOP + plot_h, "marks": marks,
             "ticks": [{"y": y(top * f), "label": fmt(top * f)} for f in (0, 0.5, 1)]}
    return x, y, frame


def _line(buckets: list[Bucket], bucket_s: float, value: Callable[[Bucket], float | None],
          x: Callable[[float], float], y: Callable[[float], float]) -> dict[str, Any]:
    segments: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    previous: float | None = None
    failures: list[float] = []
    for bucket in buckets:
        v = value(bucket)
        middle = bucket.start + bucket_s / 2
        contiguous = previous is not None and bucket.start - previous <= bucket_s * 1.5
        if v is None or not contiguous:
            if current:
                segments.append(current)
            current = []
        if v is None:
            failures.append(x(middle))
        else:
            current.append((x(middle), y(v)))
        previous = bucket.start
    if current:
        segments.append(current)
    return {"segments": [" ".join(f"{a},{b}" for a, b in s) for s in segments if len(s) > 1],
            "dots": [s[0] for s in segments if len(s) == 1], "failures": failures}


def charts(history: History, versions: list[str], window: ChartWindow,
           now: float) -> dict[str, Any]:
    """The latency chart and the uptime chart of `window`, with a legend line per version."""
    span = SPANS[window]
    start = now - span.seconds
    shown = {v: [b for b in history.get(v, []) if start - span.bucket_s < b.start <= now]
             for v in dict.fromkeys([*versions, *history])}
    latencies = [b.latency_ms for bs in shown.values() for b in bs if b.latency_ms is not None]
    top = nice_ceiling(max(latencies, default=0.0))
    lx, ly, latency_frame = _frame(now, span, top, lambda v: f"{v:g} ms")
    ux, uy, uptime_frame = _frame(now, span, 100.0, lambda v: f"{v:g} %")
    latency_lines, uptime_lines, legend = [], [], []
    for index, (name, buckets) in enumerate(shown.items()):
        probes = sum(b.count for b in buckets)
        ok = sum(b.ok_count for b in buckets)
        mean = sum(b.latency_sum for b in buckets) / ok if ok else None
        latency_lines.append({"name": name, "index": index % 6,
                              **_line(buckets, span.bucket_s, lambda b: b.latency_ms, lx, ly)})
        uptime = _line(buckets, span.bucket_s, lambda b: b.uptime, ux, uy)
        uptime_lines.append({"name": name, "index": index % 6, **uptime, "failures": []})
        legend.append({"name": name, "index": index % 6, "probes": probes,
                       "uptime": 100.0 * ok / probes if probes else None, "mean_ms": mean,
                       "max_ms": max((b.latency_max for b in buckets), default=None)})
    return {"window": str(window), "label": span.label, "bucket_s": span.bucket_s,
            "latency": {**latency_frame, "lines": latency_lines, "id": "latency"},
            "uptime": {**uptime_frame, "lines": uptime_lines, "id": "uptime"},
            "legend": legend, "empty": not any(item["probes"] for item in legend)}
