"""How a switch is labelled comes from the event's typed fields, never from its wording."""

import pytest

from monitor.failover.model import Event, EventKind
from monitor.failover.recording import AUDIT_ACTIONS, failover_label


@pytest.mark.parametrize("event, label", [
    (Event(EventKind.SWITCH, reason="v1 down"), "automatic"),
    (Event(EventKind.SWITCH, reason="auto failback", failback=True), "auto_failback"),
    (Event(EventKind.SWITCH, reason="manual failback forced by the cron"), "automatic"),
    (Event(EventKind.MANUAL_SWITCH, reason="game day"), "manual"),
    (Event(EventKind.MANUAL_SWITCH, reason="forced by nobody: a plain drill"), "manual"),
    (Event(EventKind.MANUAL_SWITCH, reason="v3 only", forced=True), "forced"),
    (Event(EventKind.MANUAL_SWITCH, reason="manual failback", failback=True), "failback"),
    (Event(EventKind.PAUSED, reason="forced pause"), None),
])
def test_it_labels_a_switch_by_its_fields(event, label):
    assert failover_label(event) == label


def test_it_has_an_audit_action_for_every_event_kind():
    assert set(AUDIT_ACTIONS) == set(EventKind)
