"""`/charts`: latency and uptime over 15 minutes, 24 hours and 7 days, from rollups and probes."""

from __future__ import annotations

import re

from monitor.storage.store import ProbeRollup, ProbeRow
from monitor.web.plots import MAX_AGE_S, ChartWindow
from tests.web.support import auth


def uptime_of(html: str, version: str) -> str:
    row = re.search(rf'<tr data-version="{version}">.*?data-col="uptime">([^<]*)<', html, re.S)
    assert row, html
    return row.group(1)


def test_it_draws_a_week_from_the_rollups(client, runtime, clock):
    with runtime.store.write() as session:
        for day in range(1, 7):
            session.add(ProbeRollup(version="v1", bucket=clock() - day * 86_400, count=60,
                                    ok_count=45, latency_sum=45 * 8.0, latency_max=12.0))
    page = client.get("/charts?window=7d", auth=auth("viewer"))
    assert page.status_code == 200
    assert uptime_of(page.text, "v1") == "75.00 %"
    assert uptime_of(page.text, "v2") == "-"
    latency = page.text.split('id="latency-chart"')[1].split("</figure>")[0]
    assert latency.count("<circle") == 6  # one rollup bucket a day, none adjacent
    assert "Last 7 days".lower() in page.text.lower()


def test_it_recomputes_a_window_only_when_its_chart_is_old(client, runtime, clock):
    def add_probe(ok: bool) -> None:
        with runtime.store.write() as session:
            session.add(ProbeRow(version="v2", at=clock() - 1, ok=ok, latency_ms=5.0))

    add_probe(True)
    assert uptime_of(client.get("/charts?window=15m", auth=auth("viewer")).text,
                     "v2") == "100.00 %"
    add_probe(False)
    assert uptime_of(client.get("/charts?window=15m", auth=auth("viewer")).text,
                     "v2") == "100.00 %"  # cached
    clock.advance(MAX_AGE_S[ChartWindow.MINUTES_15] + 0.1)
    assert uptime_of(client.get("/charts?window=15m", auth=auth("viewer")).text,
                     "v2") == "50.00 %"


def test_it_refuses_an_unknown_window_with_the_reason(client):
    answer = client.get("/charts?window=1y", auth=auth("viewer"),
                        headers={"Accept": "application/json"})
    assert answer.status_code == 422
    assert "window" in answer.json()["detail"] and "15m" in answer.json()["detail"]
