"""The replica controller with real book-service processes on loopback."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from monitor.desired.controller import Controller
from monitor.desired.spec import parse

pytestmark = pytest.mark.e2e

SPEC = """apiVersion: v1
kind: Service
metadata: {name: books}
spec:
  versions:
    - {name: v1, command: [python, -m, services.v1], replicas: REPLICAS}
    - {name: v2, url: "http://127.0.0.1:9"}
  readinessProbe: {periodSeconds: 0.2, failureThreshold: 2, timeoutSeconds: 0.5}
  livenessProbe: {periodSeconds: 0.2, failureThreshold: 2, timeoutSeconds: 0.5}
"""


def spec(replicas: int):
    return parse(SPEC.replace("REPLICAS", str(replicas)))[0]


class Recorder:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, dict, str]] = []

    async def __call__(self, action: str, target: str, params: dict, reason: str) -> None:
        self.rows.append((action, target, params, reason))

    def actions(self) -> list[str]:
        return [row[0] for row in self.rows]


async def converge(controller: Controller, check, *, limit: float = 30.0,
                   every: float = 0.1) -> None:
    """Sync every `every` seconds until `check()` holds (bounded in time)."""
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, "did not converge in time"
        await controller.sync(time.time())
        await asyncio.sleep(every)


async def wait_until(check, *, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def harness(tmp_path):
    record, exits = Recorder(), []
    async with httpx.AsyncClient() as client:
        controller = Controller(spec(3), client=client, record=record, env={},
                                log_dir=tmp_path, restart_delay=1.0, on_exit=exits.append)
        try:
            yield controller, record, exits, client
        finally:
            await controller.stop()


async def test_it_starts_replicas_that_serve_and_heals_killed_ones(harness):
    controller, record, exits, client = harness
    await converge(controller, lambda: len(controller.endpoints("v1")) == 3)
    answers = [await client.get(f"{url}/books?limit=1") for url in controller.endpoints("v1")]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert record.actions().count("replica.start") == 3
    assert record.actions().count("replica.ready") == 3
    assert controller.endpoints("v2") == []  # external versions are not managed here

    killed = await controller.kill("v1", 2)
    assert len(killed) == 2
    await wait_until(lambda: len(exits) == 2)  # reported by the supervisors, no sync needed
    assert exits == ["v1", "v1"]
    assert len(controller.endpoints("v1")) == 1  # out of rotation at once
    await converge(controller, lambda: len(controller.endpoints("v1")) == 3)
    replicas = controller.replicas("v1")
    assert sorted(r["restarts"] for r in replicas) == [0, 1, 1]
    assert all(r["ready"] and r["pid"] for r in replicas)
    assert record.actions().count("replica.restart") == 2  # the supervisor's restarts


async def test_it_follows_a_spec_change_while_replicas_start(harness):
    controller, record, _, _ = harness
    await controller.sync(time.time())  # three replicas starting, none ready yet
    controller.set_spec(spec(1))
    await converge(controller, lambda: len(controller.endpoints("v1")) == 1)
    await controller.sync(time.time())
    assert len(controller.replicas("v1")) == 1
    assert record.actions().count("replica.start") == 3
    assert record.actions().count("replica.stop") == 2


AUTOSCALED = """apiVersion: v1
kind: Service
metadata: {name: books}
spec:
  versions:
    - {name: v1, command: [python, -m, services.v1], replicas: 1}
  readinessProbe: {periodSeconds: 1, failureThreshold: 3, timeoutSeconds: 1}
  livenessProbe: {periodSeconds: 1, failureThreshold: 3, timeoutSeconds: 1}
  autoscale: {targetCPU: 15, min: 1, max: 3, scaleDownStabilizationSeconds: 3}
"""
TOKEN = "autoscale-chaos-token-0123456789"


async def test_it_scales_up_on_real_cpu_within_two_syncs_and_back_down_after_the_window(
        tmp_path):
    record = Recorder()
    async with httpx.AsyncClient() as client:
        controller = Controller(parse(AUTOSCALED)[0], client=client, record=record,
                                env={"SERVICE_CHAOS_TOKEN": TOKEN}, log_dir=tmp_path,
                                restart_delay=1.0)
        try:
            await converge(controller, lambda: len(controller.endpoints("v1")) == 1)
            await controller.sync(time.time())  # a first CPU reading of the idle replica
            (url,) = controller.endpoints("v1")
            burn = await client.post(f"{url}/chaos/cpu", json={"seconds": 6, "workers": 1},
                                     headers={"Authorization": f"Bearer {TOKEN}"})
            assert burn.status_code == 200, burn.text
            for _ in range(2):  # two sync periods
                await asyncio.sleep(1.0)
                await controller.sync(time.time())
                if controller.wanted("v1") > 1:
                    break
            assert controller.wanted("v1") >= 2
            (scale_up,) = [r for r in record.rows if r[0] == "replicas.scale"]
            assert scale_up[2]["from"] == 1 and scale_up[2]["to"] >= 2
            await converge(controller, lambda: len(controller.endpoints("v1")) >= 2)
            # the burn ends after 6 s; the window keeps the replicas 3 s more, then one goes
            # syncs a second apart, as in the monitor: CPU read over 0.1 s is too coarse
            await converge(controller, lambda: controller.wanted("v1") == 1
                           and len(controller.replicas("v1")) == 1, limit=40, every=1.0)
            downs = [r for r in record.rows if r[0] == "replicas.scale" and r[2]["to"] == 1]
            assert downs and "average CPU" in downs[-1][3]
        finally:
            await controller.stop()
