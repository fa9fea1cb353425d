"""Every dashboard request leaves one log line with its request id, and never a credential."""

import base64
import logging

from tests.web.support import PASSWORDS, auth


def test_it_logs_each_request_with_its_id_and_user_but_no_credentials(client, caplog):
    caplog.set_level(logging.INFO, logger="monitor.web")
    answer = client.get("/api/status?x=1", auth=auth("viewer"))
    wrong = client.get("/api/status", auth=("viewer", "wrong-password-123"))

    lines = [r for r in caplog.records if getattr(r, "event", "") == "request"]
    assert [(r.status, r.user) for r in lines] == [(200, "viewer"), (401, None)]
    assert lines[0].request_id == answer.headers["x-request-id"]
    assert lines[1].request_id == wrong.headers["x-request-id"]
    logged = caplog.text + " ".join(str(vars(r)) for r in caplog.records)
    basic = base64.b64encode(f"viewer:{PASSWORDS['viewer']}".encode()).decode()
    for secret in (PASSWORDS["viewer"], basic, "wrong-password-123"):
        assert secret not in logged
