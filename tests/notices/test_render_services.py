"""A notice names its service in the subject and the body (several services in one monitor)."""

from monitor.notices.render import Item, render


def test_it_names_the_service_in_subject_text_and_html():
    item = Item(kind="failover", subject="films: Failover a -> b: a is down",
                payload={"service": "films", "source": "a", "target": "b", "active": "b",
                         "reason": "a is down"}, created_at=1_750_000_000.0)
    rendered = render([item], dashboard_url="http://127.0.0.1:8000")
    assert rendered.subject == "[Failover Monitor] films: Failover a -> b: a is down"
    assert "films: Failover a -> b: a is down\n" in rendered.text  # the title, not repeated
    assert "Service:  films\n" in rendered.text
    assert "service:" not in rendered.text  # shown once, not again among the details
    assert "<td>films</td>" in rendered.html
