"""The SMTP transport against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import email
import logging
import ssl
from contextlib import contextmanager
from email import policy
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from bench.processes import free_port
from monitor.config import Settings
from monitor.notices.delivery import send_test
from monitor.notices.smtp import NotifyError, SmtpTransport, compose

PASSWORD = "correct-horse-battery-staple"


class Inbox:
    """aiosmtpd handler that keeps every accepted message and whether it came over TLS."""

    def __init__(self, rcpt_reply: str | None = None) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.tls: list[bool] = []
        self.rcpt_reply = rcpt_reply

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        self.tls.append(server.transport.get_extra_info("ssl_object") is not None)
        return "250 Message accepted for delivery"

    @property
    def message_ids(self) -> list[str]:
        return [m["Message-ID"] for m in self.messages]


@contextmanager
def smtp_server(handler, port: int | None = None, **kwargs):
    """A real SMTP server on 127.0.0.1 for the duration of the block; yields its port."""
    port = port or free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def make_settings(tmp_path: Path, port: int, **overrides) -> Settings:
    values = {"data_dir": tmp_path, "smtp_host": "127.0.0.1", "smtp_port": port,
              "smtp_mode": "plain", "smtp_from": "monitor@example.test",
              "smtp_to": "oncall@example.test", "smtp_timeout": 5.0, **overrides}
    return Settings(**values)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls(ca, tmp_path):
    """(server context with a cert for 127.0.0.1, path of the CA that signed it)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    return context, cafile


def server_options(mode: str, context: ssl.SSLContext) -> dict:
    if mode == "ssl":
        return {"ssl_context": context}
    if mode == "starttls":
        return {"tls_context": context, "require_starttls": True}
    return {}


def message(subject: str = "Failover v1 -> v2", message_id: str = "<n-1@test>"):
    return compose(sender="monitor@example.test", recipients=["oncall@example.test"],
                   subject=subject, message_id=message_id, date=1_700_000_000.0,
                   text="plain body", html="<p>html body</p>")


@pytest.mark.parametrize("mode, over_tls", [("plain", False), ("starttls", True), ("ssl", True)])
def test_it_delivers_in_every_mode(tmp_path, tls, mode, over_tls):
    context, cafile = tls
    inbox = Inbox()
    with smtp_server(inbox, **server_options(mode, context)) as port:
        transport = SmtpTransport(make_settings(tmp_path, port, smtp_mode=mode,
                                                smtp_cafile=cafile))
        reply = transport.send(message())
    assert reply == "250 Message accepted for delivery"
    assert inbox.message_ids == ["<n-1@test>"]
    assert inbox.tls == [over_tls]
    received = inbox.messages[0]
    assert received["Subject"] == "Failover v1 -> v2"
    assert received["Auto-Submitted"] == "auto-generated"
    assert received.get_body(("plain",)).get_content().strip() == "plain body"
    assert received.get_body(("html",)).get_content().strip() == "<p>html body</p>"


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_it_refuses_a_certificate_from_an_untrusted_ca(tmp_path, tls, mode):
    context, _ = tls
    stranger = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    inbox = Inbox()
    with smtp_server(inbox, **server_options(mode, context)) as port:
        transport = SmtpTransport(make_settings(tmp_path, port, smtp_mode=mode,
                                                smtp_cafile=stranger))
        with pytest.raises(NotifyError, match="certificate not trusted") as caught:
            transport.send(message())
    assert caught.value.permanent is False
    assert inbox.messages == []


def test_it_refuses_to_send_in_clear_when_starttls_is_not_offered(tmp_path, tls):
    _, cafile = tls
    inbox = Inbox()
    with smtp_server(inbox) as port:
        transport = SmtpTransport(make_settings(tmp_path, port, smtp_mode="starttls",
                                                smtp_cafile=cafile))
        with pytest.raises(NotifyError, match="does not offer STARTTLS") as caught:
            transport.send(message())
    assert caught.value.permanent is False
    assert inbox.messages == []


@pytest.mark.parametrize("field", ["sender", "subject", "message_id", "recipients"])
@pytest.mark.parametrize("evil", ["x\r\nBcc: victim@example.test", "x\nBcc: v@e.test", "x\ry"])
def test_it_refuses_cr_or_lf_in_a_header(field, evil):
    values = {"sender": "monitor@example.test", "recipients": ["oncall@example.test"],
              "subject": "ok", "message_id": "<n-1@test>", "date": 0.0, "text": "body"}
    values[field] = [evil] if field == "recipients" else evil
    with pytest.raises(NotifyError, match="CR or LF") as caught:
        compose(**values)
    assert caught.value.permanent is True


def test_it_refuses_a_sender_setting_with_cr_lf_before_talking_to_the_server(tmp_path):
    inbox = Inbox()
    with smtp_server(inbox) as port:
        settings = make_settings(tmp_path, port, smtp_from="a@example.test\r\nBcc: v@e.test")
        with pytest.raises(NotifyError, match="CR or LF") as caught:
            send_test(settings)
    assert caught.value.permanent is True
    assert inbox.messages == []


def accept_only(user: str, password: str):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == user.encode() and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)
    return authenticator


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("password, delivered", [(PASSWORD, 1), ("wrong-password-123", 0)])
def test_it_logs_in_and_never_shows_the_password(tmp_path, caplog, password, delivered):
    caplog.set_level(logging.DEBUG)
    inbox = Inbox()
    with smtp_server(inbox, authenticator=accept_only("alice", PASSWORD),
                     auth_require_tls=False, auth_required=True) as port:
        settings = make_settings(tmp_path, port, smtp_user="alice", smtp_password=password)
        try:
            outcome = send_test(settings)
        except NotifyError as exc:
            outcome = str(exc)
            assert exc.permanent is False
            assert "refused login for user 'alice'" in outcome
    assert len(inbox.messages) == delivered
    assert password not in outcome
    assert password not in caplog.text


def test_it_reports_an_unreachable_server_as_worth_retrying(tmp_path):
    transport = SmtpTransport(make_settings(tmp_path, free_port()))
    with pytest.raises(NotifyError, match="cannot send via 127.0.0.1") as caught:
        transport.send(message())
    assert caught.value.permanent is False


@pytest.mark.parametrize("rcpt_reply, permanent", [
    ("550 5.1.1 no such mailbox", True),
    ("451 4.3.0 try again later", False),
])
def test_it_says_whether_a_refused_recipient_is_permanent(tmp_path, rcpt_reply, permanent):
    inbox = Inbox(rcpt_reply=rcpt_reply)
    with smtp_server(inbox) as port:
        transport = SmtpTransport(make_settings(tmp_path, port))
        with pytest.raises(NotifyError, match=rcpt_reply.split()[0]) as caught:
            transport.send(message())
    assert caught.value.permanent is permanent
    assert inbox.messages == []


def test_it_sends_a_test_email_and_returns_the_server_answer(tmp_path):
    inbox = Inbox()
    with smtp_server(inbox) as port:
        reply = send_test(make_settings(tmp_path, port, public_url="https://mon.example.test"))
    assert reply == "250 Message accepted for delivery"
    [received] = inbox.messages
    assert received["Subject"] == "[Failover Monitor] Test notice"
    assert received["To"] == "oncall@example.test"
    assert "https://mon.example.test" in received.get_body(("plain",)).get_content()


def test_it_explains_that_smtp_is_not_configured(tmp_path):
    with pytest.raises(NotifyError, match="SMTP not configured") as caught:
        send_test(Settings(data_dir=tmp_path))
    assert caught.value.permanent is True
