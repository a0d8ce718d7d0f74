"""SMTP transport of the alerts: the envelope of a rendered message, and handing it to the
server with one-line errors that name the setting to fix. What is sent, and when, is
alerts.py's; what it looks like is monitor.render.email's."""

from __future__ import annotations

import logging
import os
import smtplib
import socket
import ssl
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from .errors import AlertError
from .render.email import Rendered
from .render.view import one_line

if TYPE_CHECKING:
    from .targets import SmtpConfig

log = logging.getLogger("monitor.alerts")

MAX_SUBJECT_CHARS = 200
USER_AGENT = "privacy-monitor/0.1 (alerts)"


def build_email(rendered: Rendered, *, sender: str, recipients: Sequence[str], msg_id: str, now: datetime, thread: Sequence[str] = ()) -> EmailMessage:
    """multipart/alternative: plain text first, HTML second. Header values are one line.
    `thread` holds the per-document ids (thread_id) this message belongs with."""
    message = EmailMessage()
    message["Subject"] = one_line(rendered.subject, MAX_SUBJECT_CHARS)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(now.astimezone(timezone.utc))
    message["Message-ID"] = msg_id
    if thread:
        message["References"] = " ".join(thread)
        if len(thread) == 1:
            message["In-Reply-To"] = thread[0]
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    message["X-Mailer"] = USER_AGENT
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message


def smtp_password(smtp: SmtpConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """The password lives in the environment variable named by password_env, never in YAML."""
    if not smtp.username:
        return None
    environ = os.environ if environ is None else environ
    name = smtp.password_env or ""
    password = environ.get(name)
    if password is None:
        raise AlertError(f"environment variable {name} (alerts.smtp.password_env) is not set; export the SMTP password in it")
    return password


def send_email(smtp: SmtpConfig, message: EmailMessage, recipients: Sequence[str]) -> None:
    """Hand one message to the server. Raises AlertError, permanent only when the server
    refused this message (5xx to sender, recipients or data): retrying would not help."""
    where = f"{smtp.host}:{smtp.port}"
    password = smtp_password(smtp)
    client = _connect(smtp, where)
    try:
        _secure_and_login(client, smtp, where, password)
        refused = _send(client, message, recipients, where)
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()
    if refused:
        log.warning("%s refused some recipients: %s", where, ", ".join(sorted(refused)))


def _tls_context(smtp: SmtpConfig) -> ssl.SSLContext:
    """System CAs, or only ca_file when it is set (a self-signed server)."""
    cafile = str(smtp.ca_file) if smtp.ca_file else None
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise AlertError(f"cannot read alerts.smtp.ca_file {cafile} ({exc}); point it at a PEM certificate") from None


def _connect(smtp: SmtpConfig, where: str) -> smtplib.SMTP:
    try:
        if smtp.security == "ssl":
            return smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=_tls_context(smtp))
        return smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
    except (smtplib.SMTPException, OSError) as exc:
        raise _connection_error(exc, where, smtp) from None


def _secure_and_login(client: smtplib.SMTP, smtp: SmtpConfig, where: str, password: str | None) -> None:
    try:
        client.ehlo()
        if smtp.security == "starttls":
            client.starttls(context=_tls_context(smtp))
            client.ehlo()
    except smtplib.SMTPNotSupportedError:
        raise AlertError(f"{where} does not offer STARTTLS; set alerts.smtp.security to ssl (port 465) or none") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise _connection_error(exc, where, smtp) from None
    if smtp.username is None:
        return
    try:
        client.login(smtp.username, password or "")
    except smtplib.SMTPAuthenticationError as exc:
        raise AlertError(
            f"{where} rejected the login of {smtp.username} ({_smtp_reply(exc)}); "
            f"check alerts.smtp.username and the password in ${smtp.password_env}"
        ) from None
    except smtplib.SMTPNotSupportedError:
        raise AlertError(f"{where} does not offer login (AUTH) on this connection; remove alerts.smtp.username or use security: starttls") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise _connection_error(exc, where, smtp) from None


def _send(client: smtplib.SMTP, message: EmailMessage, recipients: Sequence[str], where: str) -> dict[str, Any]:
    try:
        return client.send_message(message, to_addrs=list(recipients))
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        addresses = ", ".join(sorted(exc.recipients))
        raise AlertError(f"{where} refused every recipient ({addresses})", permanent=all(c >= 500 for c in codes)) from None
    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
        raise AlertError(f"{where} refused the message ({_smtp_reply(exc)})", permanent=exc.smtp_code >= 500) from None
    except smtplib.SMTPServerDisconnected:
        raise AlertError(f"{where} closed the connection while the message was sent; will retry") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise AlertError(f"sending through {where} failed ({exc.__class__.__name__}: {one_line(str(exc), 200)})") from None


def _smtp_reply(exc: smtplib.SMTPResponseException) -> str:
    reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return one_line(f"{exc.smtp_code} {reply}", 200)


def _connection_error(exc: BaseException, where: str, smtp: SmtpConfig) -> AlertError:
    """A one-line reason and the fix, chosen by the exception's type."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = f"its TLS certificate is not trusted: {exc.verify_message}"
        fix = "set alerts.smtp.ca_file to the CA that signed it, or fix the server's certificate"
    elif isinstance(exc, ssl.SSLError):
        reason = f"TLS failed: {exc.reason or exc.__class__.__name__}"
        fix = "check alerts.smtp.security (ssl for port 465, starttls for 587)"
    elif isinstance(exc, ConnectionRefusedError):
        reason, fix = "connection refused", "check alerts.smtp.host/port in targets.yaml"
    elif isinstance(exc, socket.gaierror):
        reason, fix = "host name not found", "check alerts.smtp.host in targets.yaml"
    elif isinstance(exc, TimeoutError):
        reason, fix = f"no answer within {smtp.timeout:g}s", "check alerts.smtp.host/port and the firewall"
    elif isinstance(exc, smtplib.SMTPServerDisconnected):
        reason, fix = "the server closed the connection", "check alerts.smtp.port and security"
    elif isinstance(exc, smtplib.SMTPResponseException):
        reason, fix = f"the server answered {_smtp_reply(exc)}", "check alerts.smtp settings"
    elif isinstance(exc, OSError):
        reason, fix = exc.strerror or exc.__class__.__name__, "check alerts.smtp.host/port in targets.yaml"
    else:
        reason, fix = exc.__class__.__name__, "check alerts.smtp settings"
    return AlertError(f"cannot connect to {where} ({one_line(str(reason), 200)}); {fix}")
