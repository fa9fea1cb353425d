"""The live dashboard's event stream: audit rows as Server-Sent Events."""

from __future__ import annotations

import json

import pytest

from monitor.actor import SYSTEM
from monitor.web.events import AuditStream, TooManyStreams
from tests.web.support import auth


def read_events(lines, count: int, event: str | None = None) -> list[dict]:
    """The first `count` events (of audit action `event`, if given) of an open stream, as
    {id, event, data}."""
    events, current = [], {}
    for line in lines:
        if line.startswith("id: "):
            current["id"] = int(line[4:])
        elif line.startswith("event: "):
            current["event"] = line[7:]
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and "event" in current:
            if event is None or current["data"]["action"] == event:
                events.append(current)
            current = {}
            if len(events) == count:
                return events
    raise AssertionError(f"stream ended after {len(events)} events")


@pytest.fixture
def quick_stream(app, runtime):
    app.state.events = AuditStream(runtime.store, poll_interval=0.05, max_age=5.0)
    return app.state.events


def test_it_refuses_a_stream_without_credentials(client):
    assert client.get("/api/events").status_code == 401


def test_it_replays_what_came_after_the_last_event_id(client, runtime, quick_stream):
    for n in range(3):
        runtime.recorder.record(SYSTEM, "drill.step", target=f"t{n}")
    with client.stream("GET", "/api/events", auth=auth("viewer"),
                       headers={"Last-Event-ID": "0"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        drills = read_events(response.iter_lines(), 3, "drill.step")
    assert [e["data"]["target"] for e in drills] == ["t0", "t1", "t2"]
    assert [e["id"] for e in drills] == sorted(e["id"] for e in drills)
    last = drills[1]["id"]
    with client.stream("GET", "/api/events", auth=auth("viewer"),
                       headers={"Last-Event-ID": str(last)}) as response:
        (event,) = read_events(response.iter_lines(), 1)
    assert (event["id"], event["data"]["target"]) == (last + 1, "t2")


def test_it_sends_rows_as_they_are_written(client, runtime, quick_stream):
    with client.stream("GET", "/api/events", auth=auth("viewer")) as response:
        lines = response.iter_lines()
        assert next(lines) == "retry: 2000"
        runtime.recorder.record(SYSTEM, "failover.automatic", target="v2", reason="v1 down")
        events = read_events(lines, 1, "failover.automatic")
    assert events[0]["event"] == "audit"
    assert events[0]["data"]["reason"] == "v1 down"


def test_it_bounds_the_streams_of_one_user(client, quick_stream):
    for _ in range(4):
        quick_stream.open("viewer")
    answer = client.get("/api/events", auth=auth("viewer"))
    assert answer.status_code == 429
    assert "at most 4" in answer.json()["detail"]
    assert quick_stream.streams_of("operator") == 0
    with pytest.raises(TooManyStreams):
        quick_stream.open("viewer")
