"""The channels besides email: the generic webhook (JSON, documented in monitor.alerts),
and chat and push services through Apprise (Slack, Microsoft Teams, Matrix, Telegram, ntfy,
Discord, ... and plain json:// or form:// endpoints); and the one-line text every chat
message and the webhook's `text` field start with.

Each Apprise URL is a channel of its own in the outbox (`apprise:<key>`, the key a digest of
the URL, so no token is written to the database or shown by `monitor alerts list`): one row
per change and URL, claimed, retried with backoff and marked sent exactly as an email is
(monitor.alerts). A URL that is down holds back only its own queue. Every message carries the
change's stable id (the Atom entry id), so a receiver can drop the one repeat a crash between
delivery and the database's commit can cause.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .alerts import AlertRow, Delivery, Outgoing, channel, message_domain
from .errors import AlertError
from .mail import USER_AGENT
from .feeds import change_urn
from .render.email import ChangeSummary, ChangeView, change_link
from .render.view import one_line

if TYPE_CHECKING:
    from .store import Store
    from .targets import Config, WebhookConfig

log = logging.getLogger("monitor.alerts")

PREFIX = "apprise"
MAX_LINE_CHARS = 300
MAX_FLAG_LINES = 8


def apprise_channel(url: str) -> str:
    """The outbox channel of one Apprise URL: stable while the URL is unchanged."""
    return f"{PREFIX}:{hashlib.sha256(url.encode('utf-8')).hexdigest()[:12]}"


def apprise_url(config: Config, name: str) -> str | None:
    """The configured URL behind an outbox channel name, if it is still configured."""
    return next((url for url in config.alerts.apprise if apprise_channel(url) == name), None)


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "apprise"


# ----------------------------------------------------------------------------- the text


def chat_message(config: Config, store: Store, row: AlertRow) -> tuple[str, str, str]:
    """(one line, body, Apprise notify type) for an outbox row. The line is what a chat tool
    that reads a single field shows; the body adds the flags' one-line summaries, the link and
    the stable id. A change is read through the one view of it, as the email and feed are."""
    store_id = store.get_meta("store_id") or "0"
    if row.kind == "change":
        source = ChangeView.load(store, row)
        summary = ChangeSummary.of(source, config.alerts.min_severity)
        view = summary.view
        link = change_link(config, source.change_id) or view.url
        flags = view.flags
        lines = [summary.title_line]
        lines += [one_line(f"• {f.label} ({f.severity}): {f.summary or f.evidence}", MAX_LINE_CHARS) for f in flags[:MAX_FLAG_LINES]]
        if len(flags) > MAX_FLAG_LINES:
            lines.append(f"• … and {len(flags) - MAX_FLAG_LINES} more flags")
        lines += [one_line(f"{s.kind}: {s.message}", MAX_LINE_CHARS) for s in view.signals]
        lines += [f"{view.counts_line}; {view.dates_line}", link or "", f"id: {change_urn(store_id, source.change_id)}"]
        line = one_line(f"{summary.title_line} {link}".strip(), MAX_LINE_CHARS)
        return line, "\n".join(x for x in lines if x), "warning" if summary.flagged else "info"
    from .render.email import render_state

    rendered = render_state(config, row.kind, row.payload, row.target_id)
    headline = rendered.text.split("\n", 1)[0]
    body = rendered.text.strip() + f"\nid: urn:privacy-monitor:{store_id}:alert:{row.id}"
    kind = "success" if row.kind.endswith("recovered") else "failure"
    return one_line(headline, MAX_LINE_CHARS), body, kind


# ----------------------------------------------------------------------------- the webhook


def webhook_payload(delivery: Delivery, row: AlertRow) -> dict[str, Any]:
    """The JSON documented in monitor.alerts' docstring, with its one-line `text`."""
    text = chat_message(delivery.config, delivery.store, row)[0]
    if row.kind == "change":
        view = ChangeView.load(delivery.store, row)
        return {"event": "change", "target": view.target, "change_id": view.change_id, "detected_at": view.detected_at, "text": text, **view.diff}
    outage = {"outage": row.payload["outage"]} if "outage" in row.payload else {}
    return {"event": row.kind, "target": row.payload.get("target"), "detail": row.payload.get("detail"), "detected_at": row.created_at, "text": text, **outage}


def post_webhook(webhook: WebhookConfig, payload: dict[str, Any], *, delivery_id: str) -> None:
    """POST the JSON. 2xx delivered; 408, 429 and 5xx retried; any other answer is permanent."""
    import httpx

    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Privacy-Monitor-Delivery": delivery_id.strip("<>"), **webhook.headers}
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    where = _redacted(webhook.url)
    try:
        response = httpx.post(webhook.url, content=body, headers=headers, timeout=webhook.timeout)
    except httpx.TimeoutException:
        raise AlertError(f"webhook {where}: no answer within {webhook.timeout:g}s") from None
    except (httpx.HTTPError, OSError) as exc:
        raise AlertError(f"webhook {where}: cannot connect ({exc.__class__.__name__}); check alerts.webhook.url") from None
    status = response.status_code
    if 200 <= status < 300:
        return
    retry = status in (408, 429) or status >= 500
    raise AlertError(f"webhook {where} answered HTTP {status}" + ("; will retry" if retry else "; check alerts.webhook.url and headers"), permanent=not retry)


def _redacted(url: str) -> str:
    """The URL without its query (chat webhooks often carry a token there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


@channel("webhook")
def _deliver_webhook(delivery: Delivery, batch: Outgoing) -> None:
    webhook = delivery.config.alerts.webhook
    if webhook is None:
        raise AlertError("webhook alert queued but alerts.webhook is no longer configured", permanent=True)
    for row in batch.rows:
        post_webhook(webhook, webhook_payload(delivery, row), delivery_id=batch.message_id)


def send_test_webhook(config: Config) -> None:
    webhook = config.alerts.webhook
    if webhook is None:
        raise AlertError("alerts.webhook is not configured; add alerts: webhook: url: ... to targets.yaml", permanent=True)
    payload = {"event": "test", "message": "test message from the privacy monitor", "config": str(config.path)}
    post_webhook(webhook, payload, delivery_id=f"<test-{os.urandom(4).hex()}@{message_domain(config.alerts.sender)}>")


# ----------------------------------------------------------------------------- Apprise


def notify(url: str, *, title: str, body: str, notify_type: str = "info") -> None:
    """One message to one Apprise URL. Raises AlertError: permanent when Apprise cannot use
    the URL (retrying would not help), transient when the service did not take the message."""
    import apprise

    asset = apprise.AppriseAsset(app_id="privacy-monitor", app_desc="Privacy policy change monitor", async_mode=False)
    service = apprise.Apprise.instantiate(url, asset=asset, suppress_exceptions=True)
    if service is None:
        raise AlertError(f"apprise {_scheme(url)}:// URL is not usable; check alerts.apprise", permanent=True)
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        ok = service.notify(body=body, title=title, notify_type=notify_type)
    if not ok:
        said = [line for line in captured.getvalue().splitlines() if line.strip()]
        reason = said[-1] if said else "the service did not accept the message"
        raise AlertError(one_line(f"apprise {_scheme(url)}://: {reason}", MAX_LINE_CHARS))


@channel(PREFIX)
def _deliver_apprise(delivery: Delivery, batch: Outgoing) -> None:
    url = apprise_url(delivery.config, batch.channel)
    if url is None:
        raise AlertError("apprise alert queued for a URL no longer in alerts.apprise", permanent=True)
    for row in batch.rows:
        line, body, kind = chat_message(delivery.config, delivery.store, row)
        title = one_line(f"{delivery.config.alerts.subject_prefix} {line}", MAX_LINE_CHARS)
        notify(url, title=title, body=body, notify_type=kind)


def send_test_apprise(config: Config) -> list[str]:
    """`monitor alerts test --channel apprise`: one message to every URL. Returns the schemes."""
    if not config.alerts.apprise:
        raise AlertError("alerts.apprise is not configured; add alerts: apprise: [URL] to targets.yaml", permanent=True)
    for url in config.alerts.apprise:
        notify(url, title=f"{config.alerts.subject_prefix} test message", body=f"Test message from the privacy monitor ({config.path}).")
    return [_scheme(url) for url in config.alerts.apprise]


def channel_rows(config: Any, kind: str, target_id: str | None, payload: str) -> list[dict[str, Any]]:
    """Outbox rows for the Apprise URLs, one each (planned with the email and webhook rows)."""
    return [
        {"kind": kind, "channel": apprise_channel(url), "target_id": target_id, "recipients": None, "payload": payload}
        for url in config.apprise
    ]
