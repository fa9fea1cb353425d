"""The SMTP transport: compose one email and hand it to the server, never in clear text.

Modes (MONITOR_SMTP_MODE):

- `ssl`: implicit TLS (`SMTP_SSL`, usually port 465);
- `starttls`: plain connect, then STARTTLS (usually port 587). A server that does not offer
  STARTTLS is refused: the message is never sent in clear;
- `plain`: no TLS at all, allowed by the settings only for a loopback host (a local relay).

Both TLS modes verify the server certificate and host name against the system CAs, or against
MONITOR_SMTP_CAFILE when set. Every failure becomes one `NotifyError`; `permanent=True` means the
server (or our own check) refused *this message*, so sending it again cannot succeed. Network,
TLS and login failures are not permanent: the operator can fix them and the outbox retries.
The password is used for LOGIN only and never appears in an error or a log line.
"""

from __future__ import annotations

import email.utils
import smtplib
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING

from monitor.config import Settings

if TYPE_CHECKING:
    from typing_extensions import Buffer  # the stubs' type of smtplib.SMTP.data's argument


class NotifyError(Exception):
    """Sending a notice failed; `permanent` says whether retrying the same message is pointless."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def check_header(name: str, value: str) -> str:
    """Refuse CR or LF in a header value: it would let a value inject headers or a body."""
    if "\r" in value or "\n" in value:
        raise NotifyError(f"refused: {name} header contains CR or LF", permanent=True)
    return value


def compose(*, sender: str, recipients: list[str], subject: str, message_id: str, date: float,
            text: str, html: str | None = None) -> EmailMessage:
    """One email with a text part and, when given, an HTML alternative."""
    if not recipients:
        raise NotifyError("refused: no recipients", permanent=True)
    message = EmailMessage()
    message["From"] = check_header("From", sender)
    message["To"] = check_header("To", ", ".join(recipients))
    message["Subject"] = check_header("Subject", subject)
    message["Message-ID"] = check_header("Message-ID", message_id)
    message["Date"] = email.utils.formatdate(date, usegmt=True)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a robot
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


class _RepliesRecorded(smtplib.SMTP):
    """Keeps the server's answer to DATA, which `send_message` otherwise throws away."""

    last_reply = ""

    def data(self, msg: Buffer | str) -> tuple[int, bytes]:
        code, resp = super().data(msg)
        self.last_reply = f"{code} {resp.decode('utf-8', 'replace')}"
        return code, resp


class _SMTP(_RepliesRecorded):
    pass


class _SMTPSSL(_RepliesRecorded, smtplib.SMTP_SSL):
    pass


class SmtpTransport:
    """Blocking `send(message) -> server reply`; call it from a worker thread."""

    def __init__(self, settings: Settings) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.mode = settings.smtp_mode
        self.user = settings.smtp_user
        self._password = settings.smtp_password
        self.timeout = settings.smtp_timeout
        self.cafile = settings.smtp_cafile

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port} ({self.mode})"

    def _tls_context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)
        except (OSError, ssl.SSLError) as exc:
            raise NotifyError(f"cannot load MONITOR_SMTP_CAFILE {self.cafile}: {exc}",
                              permanent=False) from None

    def send(self, message: EmailMessage) -> str:
        """Deliver one message; returns what the server answered to it (e.g. `250 OK`)."""
        for name in ("From", "To", "Subject", "Message-ID"):
            check_header(name, str(message.get(name, "")))
        try:
            with self._connect() as smtp:
                if self.user:
                    password = self._password.get_secret_value() if self._password else ""
                    smtp.login(self.user, password)
                refused = smtp.send_message(message)
                reply = smtp.last_reply
        except NotifyError:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise NotifyError(f"{self.where} refused every recipient: {_answers(exc.recipients)}",
                              permanent=all(code >= 500 for code in codes)) from None
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            raise NotifyError(f"{self.where} refused the message: {_answer(exc)}",
                              permanent=exc.smtp_code >= 500) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise NotifyError(f"{self.where} refused login for user {self.user!r}: {_answer(exc)}",
                              permanent=False) from None
        except ssl.SSLCertVerificationError as exc:
            raise NotifyError(f"{self.where}: TLS certificate not trusted ({exc.verify_message})",
                              permanent=False) from None
        except smtplib.SMTPResponseException as exc:
            raise NotifyError(f"{self.where} answered {_answer(exc)}", permanent=False) from None
        except (smtplib.SMTPException, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            raise NotifyError(f"cannot send via {self.where}: {reason}", permanent=False) from None
        if refused:
            reply += f" (refused: {_answers(refused)})"
        return reply

    def _connect(self) -> _RepliesRecorded:
        if self.mode == "ssl":
            return _SMTPSSL(self.host, self.port, timeout=self.timeout,
                            context=self._tls_context())
        smtp = _SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.mode == "starttls":
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    raise NotifyError(f"{self.where} does not offer STARTTLS; refusing to send "
                                      "in clear text", permanent=False)
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
        except BaseException:
            smtp.close()
            raise
        return smtp


def _answer(exc: smtplib.SMTPResponseException) -> str:
    error = exc.smtp_error
    text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
    return f"{exc.smtp_code} {text}"


def _answers(recipients: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(
        f"{rcpt}: {code} {msg.decode('utf-8', 'replace') if isinstance(msg, bytes) else msg}"
        for rcpt, (code, msg) in recipients.items()
    )
