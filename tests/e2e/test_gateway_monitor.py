"""The whole system: clients through the real monitor's gateway feel nothing while v1 crashes."""

import time

import httpx

from tests.e2e.monitor_proc import all_versions_up, free_ports, start_monitor
from tests.e2e.procs import start_service

TOKEN = "e2e-gateway-token-0123456789abcdef-xyz"


def test_it_answers_every_request_while_the_active_version_crashes(tmp_path):
    ports = dict(zip(("v1", "v2", "v3"), free_ports(3), strict=True))
    procs = {v: start_service(v, p, TOKEN) for v, p in ports.items()}
    urls = {v: f"http://127.0.0.1:{p}" for v, p in ports.items()}
    monitor = start_monitor(tmp_path, services=urls, MONITOR_CHAOS_TOKEN=TOKEN)
    served: list[str] = []
    failures: list[str] = []
    try:
        monitor.wait_for(all_versions_up, timeout=20)
        with httpx.Client(base_url=monitor.gateway, timeout=5.0) as client:
            deadline = time.monotonic() + 30
            crashed_at = None
            while time.monotonic() < deadline and len(served) < 2000:
                if len(served) == 50:
                    crashed_at = len(served)
                    httpx.post(f"{urls['v1']}/chaos/crash", timeout=2.0,
                               headers={"Authorization": f"Bearer {TOKEN}"})
                answer = client.get("/books", params={"q": "pride and prejudice"})
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text[:80]}")
                served.append(answer.headers.get("x-served-by", "?"))
                if crashed_at and monitor.status()["active"] == "v2" and served[-1] == "v2" \
                        and len(served) > crashed_at + 50:
                    break
        assert failures == []
        assert served[0] == "v1" and served[-1] == "v2"
        assert "v1" not in served[served.index("v2"):]
        assert procs["v1"].wait(timeout=5) != 0
    finally:
        monitor.stop()
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
