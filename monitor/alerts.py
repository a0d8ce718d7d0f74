"""Alerts: deciding who hears about a change, and delivering the message once.

Three stages, each a small set of functions (the SMTP transport is monitor.mail's):

- **Planning** (`plan_change_alerts`, `plan_state_alerts`) runs inside the check, before the
  change is stored. It returns rows for the `alerts` table, which the store writes in the
  same transaction as the change: an alert is never lost, and never without its change.
- **Rendering** is monitor.render.email's: a stored change becomes a subject, a plain-text
  body and an HTML body. Here the message gets its envelope: a Message-ID on the sender's
  domain, and References to one id per document so mail clients thread its alerts.
- **Delivery** (`deliver_pending`) is the durable outbox's sender. It claims due rows with a
  conditional UPDATE inside a write transaction, so two senders (the daemon's thread and a
  `monitor check`, say) never deliver one row both. A row is marked sent only after the
  server accepted it; a failure is retried with capped exponential backoff; a permanent
  failure (the message itself was refused) leaves the row `failed` for `monitor alerts retry`.

Row states: held (a target's own failing/recovered alert in its outage grace, see
monitor.outage; `release_held` makes it pending once the grace is over), pending (waiting,
maybe with backoff or for the digest), sending (claimed; the claim is a lease, so a sender
that died mid-send is taken over once the lease runs out), sent, failed, absorbed (left out:
an outage alert said it instead; never sent). The only window for a duplicate is a crash between the server's acceptance and
the UPDATE that records it; the Message-ID is stable, so mail clients drop such a copy.

Webhook JSON (one POST per change, `Content-Type: application/json`):

    {"event": "change",
     "target": {"id", "service", "document", "url", "title"},
     "change_id": 17, "detected_at": "2024-09-18T10:00:00.000Z",
     "text": "Acme · Privacy Policy changed: AI training clause added (1 flag) https://...",
     "substantive", "old", "new", "signals", "changes"}      <- the JSON of `monitor diff`

and for a target entering or leaving the failing state:

    {"event": "failing" | "recovered", "target": {...}, "detail": "...", "detected_at": "...", "text": "..."}

and for many targets failing alike at once (monitor.outage), with "target": null:

    {"event": "outage" | "outage-recovered", "outage": {"kind", "failing", "checked", "since", "targets", ...}, ...}

`text` is one line, for chat tools that read only that field (monitor.channels.chat_message).
Chat and push services are reached through Apprise (monitor.channels), one queue per URL.

Each request carries `X-Privacy-Monitor-Delivery: <message id>` so receivers can drop repeats.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .backoff import backoff
from .errors import AlertError
from .mail import build_email, send_email
from .render.email import (
    ChangeView,
    Rendered,
    render_change,
    render_digest,
    render_state,
    render_test,
)
from .render.view import one_line
from .severity import severity_rank
from .store import parse_timestamp, to_timestamp

if TYPE_CHECKING:
    from .diff import DiffResult
    from .store import Store
    from .targets import AlertsConfig, Config, Schedule, Target

log = logging.getLogger("monitor.alerts")

STATES = ("held", "pending", "sending", "sent", "failed", "absorbed")
KINDS = ("change", "failing", "recovered")
CHANNEL_NAMES = ("email", "webhook")

BACKOFF_BASE = 30.0  # seconds before the first retry; doubles with each attempt
BACKOFF_MAX = 3600.0
DIGEST_META_KEY = "alerts.last_digest_at"

MAX_ERROR_CHARS = 300


# ============================================================================= planning


def plan_change_alerts(config: AlertsConfig, target: Target, result: DiffResult) -> list[dict[str, Any]]:
    """Rows for the outbox for one recorded change (the store adds change_id).

    Every substantive change is announced unless `only_flagged` is set, in which case only
    changes with a flag at or above `min_severity` are. One row per configured channel.
    """
    if not result.substantive:
        return []
    flags = [f.to_dict() for f in result.flags]
    if config.only_flagged and not counted_flags(flags, config.min_severity):
        return []
    return _rows_for_channels(config, target, "change", {"target": target_info(target)})


def plan_state_alerts(config: AlertsConfig, target: Target, change: str, detail: str) -> list[dict[str, Any]]:
    """Rows for a target entering ("failing") or leaving ("recovered") the failing state."""
    if change not in ("failing", "recovered"):
        raise ValueError(f"unknown state change {change!r}; expected 'failing' or 'recovered'")
    payload = {"target": target_info(target), "detail": detail}
    return _rows_for_channels(config, target, change, payload)


def plan_outage_alerts(config: AlertsConfig, kind: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for an outage of many targets ("outage") or its end ("outage-recovered"): to
    alerts.to and every channel, about no target in particular (monitor.outage decides)."""
    return _rows_for_channels(config, None, kind, payload)


def _rows_for_channels(config: AlertsConfig, target: Target | None, kind: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    recipients = list((target.alerts_to if target else ()) or config.to)
    target_id = target.id if target else None
    if config.smtp is not None and recipients:
        rows.append(_row(kind, "email", target_id, recipients, payload))
    if config.webhook is not None:
        rows.append(_row(kind, "webhook", target_id, None, payload))
    if config.apprise:
        from .channels import channel_rows

        rows += channel_rows(config, kind, target_id, json.dumps(payload, ensure_ascii=False))
    return rows


def _row(kind: str, channel: str, target_id: str | None, recipients: list[str] | None, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": kind,
        "channel": channel,
        "target_id": target_id,
        "recipients": json.dumps(recipients) if recipients is not None else None,
        "payload": json.dumps(payload, ensure_ascii=False),
    }


def target_info(target: Target) -> dict[str, str]:
    """The target as it was when the alert was queued (the config may change before delivery)."""
    return {"id": target.id, "service": target.service, "document": target.document, "url": target.url, "title": target.title}


def counted_flags(flags: Iterable[dict[str, Any]], min_severity: str) -> list[dict[str, Any]]:
    """The flags at or above min_severity: those the alert calls flagged."""
    floor = severity_rank(min_severity)
    return [f for f in flags if severity_rank(f.get("severity")) >= floor]


# ============================================================================= outbox rows


@dataclass(frozen=True)
class AlertRow:
    """One row of the `alerts` table, decoded."""

    id: int
    kind: str
    channel: str
    target_id: str | None
    change_id: int | None
    recipients: tuple[str, ...]
    created_at: str
    state: str
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    sent_at: str | None
    message_id: str | None
    payload: dict[str, Any]

    @classmethod
    def from_db(cls, row: dict[str, Any]) -> AlertRow:
        return cls(
            id=int(row["id"]),
            kind=row["kind"],
            channel=row["channel"],
            target_id=row["target_id"],
            change_id=row["change_id"],
            recipients=tuple(json.loads(row["recipients"] or "[]")),
            created_at=row["created_at"],
            state=row["state"],
            attempts=int(row["attempts"] or 0),
            next_attempt_at=row["next_attempt_at"],
            last_error=row["last_error"],
            sent_at=row["sent_at"],
            message_id=row["message_id"],
            payload=json.loads(row["payload"] or "{}"),
        )

    def to_dict(self) -> dict[str, Any]:
        """For `monitor alerts list --format json` (the payload is left out: it can be large)."""
        return {
            "id": self.id, "kind": self.kind, "channel": self.channel, "target_id": self.target_id,
            "change_id": self.change_id, "recipients": list(self.recipients), "created_at": self.created_at,
            "state": self.state, "attempts": self.attempts, "next_attempt_at": self.next_attempt_at,
            "last_error": self.last_error, "sent_at": self.sent_at, "message_id": self.message_id,
        }


def list_alerts(store: Store, *, states: Sequence[str] = (), limit: int | None = None) -> list[AlertRow]:
    """Outbox rows, newest first, optionally only in the given states."""
    sql = "select * from alerts"
    params: list[Any] = []
    if states:
        sql += f" where state in ({', '.join('?' for _ in states)})"
        params.extend(states)
    sql += " order by id desc"
    if limit is not None:
        sql += " limit ?"
        params.append(limit)
    return [AlertRow.from_db(r) for r in store.db.query(sql, params)]


def requeue(store: Store, *, ids: Sequence[int] = (), now: datetime | None = None) -> int:
    """Make failed rows, and pending rows waiting out a backoff, due now. Returns how many.

    Rows held for the digest stay held: they are not late, they are waiting for their time.
    """
    params: list[Any] = [to_timestamp(now or _utcnow())]
    if ids:
        where = f"state in ('failed', 'pending') and id in ({', '.join('?' for _ in ids)})"
        params.extend(ids)
    else:
        where = "state = 'failed' or (state = 'pending' and attempts > 0)"
    with store.write():
        return int(store.db.execute(f"update alerts set state = 'pending', next_attempt_at = ? where {where}", params).rowcount)


def release_held(store: Store, *, now: datetime | None = None, since: str | None = None) -> int:
    """Make held rows whose grace is over pending (due now), and with `since` also those
    held since then (`monitor check` at the end of its pass: every target it was to check
    has been, so no outage can still absorb them in this run). Returns how many."""
    stamp = to_timestamp(now or _utcnow())
    where, params = "state = 'held' and next_attempt_at <= ?", [stamp]
    if since is not None:
        where, params = "state = 'held' and (next_attempt_at <= ? or created_at >= ?)", [stamp, since]
    with store.write():
        return int(store.db.execute(
            f"update alerts set state = 'pending', next_attempt_at = ?, last_error = null where {where}", [stamp, *params],  # noqa: S608 - fixed text
        ).rowcount)


def _utcnow() -> datetime:
    return datetime.now(UTC)


# ============================================================================= delivery


@dataclass
class DeliveryReport:
    """What one run of the sender did. `sent` and `failed` count alert rows of this run;
    `pending` counts rows still waiting afterwards (backoff, digest or a busy channel)."""

    sent: int = 0
    failed: int = 0  # attempts that failed in this run (they retry unless permanent)
    gave_up: int = 0  # of those, permanent failures: now in state 'failed'
    pending: int = 0
    held: int = 0  # of `pending`, change emails waiting for the digest
    messages: int = 0  # emails and webhook requests that went out
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Outgoing:
    """One delivery: a single row, or the change rows that make up one digest email."""

    channel: str
    rows: tuple[AlertRow, ...]
    message_id: str
    digest: bool = False

    @property
    def ids(self) -> list[int]:
        return [r.id for r in self.rows]


@dataclass(frozen=True)
class Delivery:
    """What a channel needs besides the rows: the config, the store, and the time."""

    config: Config
    store: Store
    now: datetime


ChannelSender = Callable[[Delivery, Outgoing], None]
_CHANNELS: dict[str, ChannelSender] = {}  # filled once, at import, by @channel


def channel(name: str) -> Callable[[ChannelSender], ChannelSender]:
    """Register a delivery channel by name (the `channel` column of the outbox)."""

    def register(func: ChannelSender) -> ChannelSender:
        _CHANNELS[name] = func
        return func

    return register


def deliver_pending(
    store: Store, config: Config, *, now: datetime | None = None, stopping: Callable[[], bool] = lambda: False,
) -> DeliveryReport:
    """Deliver every due alert once. Safe to run from several processes or threads at once,
    each with its own Store: rows are claimed transactionally before anything is sent.

    `stopping` is asked before each new message: a stopping daemon lets the message in
    flight finish and be recorded, but starts no other."""
    now = now or _utcnow()
    delivery = Delivery(config, store, now)
    report = DeliveryReport()
    if store.db.execute("select 1 from alerts where state = 'held' limit 1").fetchone():
        release_held(store, now=now)  # their outage grace is over: no outage absorbed them
    due = _due_rows(store, config.alerts, now)
    batches, held = _batches(store, config.alerts, due, now)
    down: dict[str, tuple[str, str]] = {}  # channel -> (error, retry time), once a channel fails this run
    for batch in batches:
        if stopping():
            break
        if batch.channel in down:
            _defer(store, batch, *down[batch.channel])
            continue
        claimed = _claim(store, batch, now, config)
        if claimed is None:
            continue  # another sender has it
        _send_one(delivery, claimed, report, down)
    report.held = len(held)
    report.pending = int(store.db.execute("select count(*) from alerts where state in ('pending', 'sending')").fetchone()[0])
    return report


def _send_one(delivery: Delivery, batch: Outgoing, report: DeliveryReport, down: dict[str, tuple[str, str]]) -> None:
    """Send one claimed batch and record the outcome; a failure stays with its rows."""
    store, now = delivery.store, delivery.now
    sender = _CHANNELS.get(batch.channel.split(":", 1)[0])  # apprise:<key> is one queue per URL
    try:
        if sender is None:
            raise AlertError(f"unknown channel {batch.channel!r}", permanent=True)
        sender(delivery, batch)
    except AlertError as exc:
        retry_at = _record_failure(store, batch, str(exc), permanent=exc.permanent, now=now)
        report.failed += len(batch.rows)
        report.gave_up += len(batch.rows) if exc.permanent else 0
        report.errors.append(f"alert {batch.ids[0]} ({batch.channel}): {exc}")
        if retry_at is not None:
            down[batch.channel] = (str(exc), retry_at)
    except Exception as exc:  # a bug in rendering one alert must not stop the others
        log.exception("alert %s could not be delivered", batch.ids)
        _record_failure(store, batch, f"internal error: {exc.__class__.__name__}: {exc}", permanent=True, now=now)
        report.failed += len(batch.rows)
        report.gave_up += len(batch.rows)
        report.errors.append(f"alert {batch.ids[0]} ({batch.channel}): internal error: {exc}")
    else:
        _mark_sent(store, batch, now)
        report.sent += len(batch.rows)
        report.messages += 1


def _defer(store: Store, batch: Outgoing, error: str, until: str) -> None:
    """The channel just failed for an older alert: wait with it, until its retry, instead of
    trying again now (a server that is down costs one timeout per run, not one per alert),
    so that the queue comes back together and in order."""
    with store.write():
        for row in batch.rows:
            store.db.execute(
                "update alerts set next_attempt_at = ?, last_error = ? where id = ? and state = 'pending' and attempts = ?",
                [until, one_line(f"waiting: {error}", MAX_ERROR_CHARS), row.id, row.attempts],
            )


def _due_rows(store: Store, alerts: AlertsConfig, now: datetime) -> list[AlertRow]:
    """The rows to try in this run, oldest first: pending rows whose time has come, claims
    whose lease ran out (a dead sender's), and the rows queued before them.

    Each channel's alerts are one queue. When any of them is due, the older ones still
    waiting out a backoff are tried first (the server may be back), so alerts held through
    an outage go out oldest first and, per target, in the order of their changes; if the
    oldest fails again, the others wait with it (`_defer`). Change emails held for the
    digest are not in the queue: they go out on the digest's schedule."""
    stamp = to_timestamp(now)
    rows = [AlertRow.from_db(r) for r in store.db.query("select * from alerts where state in ('pending', 'sending') order by created_at, id")]

    def due(row: AlertRow) -> bool:
        return (row.next_attempt_at or "") <= stamp

    def digest_held(row: AlertRow) -> bool:
        return alerts.mode == "digest" and row.channel == "email" and row.kind == "change"

    chosen = {r.id for r in rows if due(r)}
    for name in {r.channel for r in rows}:
        queue = [r for r in rows if r.channel == name and not digest_held(r)]
        last_due = max((i for i, r in enumerate(queue) if due(r)), default=-1)
        chosen.update(r.id for r in queue[:last_due] if r.state == "pending")  # a live claim is another sender's
    return [r for r in rows if r.id in chosen]


def _batches(store: Store, alerts: AlertsConfig, rows: list[AlertRow], now: datetime) -> tuple[list[Outgoing], list[AlertRow]]:
    """Group due rows into deliveries; in digest mode, change emails wait for the digest.
    Returns (deliveries, rows held back)."""
    store_id = store.get_meta("store_id") or "0"
    domain = message_domain(alerts.sender)
    digest_rows = [r for r in rows if alerts.mode == "digest" and r.channel == "email" and r.kind == "change"]
    held_ids = {r.id for r in digest_rows}
    out = [Outgoing(r.channel, (r,), message_id(store_id, r.id, domain)) for r in rows if r.id not in held_ids]
    if not digest_rows:
        return out, []
    if not digest_due(store, alerts, digest_rows, now):
        return out, digest_rows
    groups: dict[tuple[str, ...], list[AlertRow]] = {}
    for row in digest_rows:
        groups.setdefault(row.recipients, []).append(row)
    for group in groups.values():
        out.append(Outgoing("email", tuple(group), digest_message_id(store_id, [r.id for r in group], domain), digest=True))
    return out, []


def digest_due(store: Store, alerts: AlertsConfig, rows: Sequence[AlertRow], now: datetime) -> bool:
    """A digest is due once the schedule has fired since the last digest (or, before the
    first one, since the oldest waiting change)."""
    last = store.get_meta(DIGEST_META_KEY)
    since = parse_timestamp(last) if last else min(parse_timestamp(r.created_at) for r in rows)
    return next_digest_time(alerts.digest_schedule, since) <= now


def next_digest_time(schedule: Schedule | None, after: datetime) -> datetime:
    """The first digest time after `after` (cron strings are read in UTC)."""
    if schedule is None or (schedule.cron is None and schedule.interval is None):
        from .targets import parse_schedule

        schedule = parse_schedule("0 8 * * *")
    if schedule.interval is not None:
        return after + timedelta(seconds=schedule.interval)
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(schedule.cron, timezone=UTC)
    fire = trigger.get_next_fire_time(None, after + timedelta(seconds=1))
    return fire if fire is not None else after + timedelta(days=1)


def message_domain(sender: str | None) -> str:
    """The right-hand side of our Message-IDs: the From address's domain. Spam filters want a
    dot in it, so a bare host (privacy-monitor@localhost) gets '.localdomain'."""
    domain = (sender or "").rpartition("@")[2].strip().strip(">").lower()
    domain = re.sub(r"[^a-z0-9.-]", "", domain).strip(".") or "privacy-monitor"
    return domain if "." in domain else f"{domain}.localdomain"


def message_id(store_id: str, alert_id: int, domain: str) -> str:
    """Stable across retries, restarts and processes: the same alert, the same Message-ID."""
    return f"<alert-{alert_id}.{store_id}@{domain}>"


def digest_message_id(store_id: str, alert_ids: Sequence[int], domain: str) -> str:
    digest = hashlib.sha256(",".join(str(i) for i in sorted(alert_ids)).encode()).hexdigest()[:10]
    return f"<digest-{min(alert_ids)}-{digest}.{store_id}@{domain}>"


def thread_id(store_id: str, target_id: str, domain: str) -> str:
    """One id per document that every alert about it refers to (References, In-Reply-To), so
    mail clients show a document's alerts as one thread. No message carries it as its own id."""
    slug = re.sub(r"[^A-Za-z0-9-]", "-", target_id)[:48] or "target"
    digest = hashlib.sha256(target_id.encode("utf-8")).hexdigest()[:8]
    return f"<document-{slug}-{digest}.{store_id}@{domain}>"


def lease_seconds(config: Config) -> float:
    """How long a claim holds. Longer than any send can take (each SMTP step has its own
    timeout), so a live sender is never overtaken; a dead one is, after this long."""
    timeouts = [c.timeout for c in (config.alerts.smtp, config.alerts.webhook) if c is not None]
    return 10 * max(timeouts, default=30.0) + 60


def _claim(store: Store, batch: Outgoing, now: datetime, config: Config) -> Outgoing | None:
    """Take the rows for this sender: pending (or lease-expired) -> sending, attempts + 1.
    The conditional UPDATE inside BEGIN IMMEDIATE is what makes two senders safe: it only
    succeeds if the row is still as this sender read it (state, attempts, next attempt)."""
    # from the real clock: a long run must not hand out leases that are already running out
    lease_until = to_timestamp(max(now, _utcnow()) + timedelta(seconds=lease_seconds(config)))
    claimed: list[AlertRow] = []
    with store.write():
        for row in batch.rows:
            cursor = store.db.execute(
                "update alerts set state = 'sending', attempts = attempts + 1, next_attempt_at = ?, message_id = ? "
                "where id = ? and state = ? and attempts = ? and coalesce(next_attempt_at, '') = ?",
                [lease_until, batch.message_id, row.id, row.state, row.attempts, row.next_attempt_at or ""],
            )
            if cursor.rowcount == 1:
                claimed.append(replace(row, state="sending", attempts=row.attempts + 1))
    if not claimed:
        return None
    if len(claimed) != len(batch.rows) and batch.digest:
        message = digest_message_id(store.get_meta("store_id") or "0", [r.id for r in claimed], message_domain(config.alerts.sender))
        with store.write():
            for row in claimed:
                store.db.execute("update alerts set message_id = ? where id = ?", [message, row.id])
        return replace(batch, rows=tuple(claimed), message_id=message)
    return replace(batch, rows=tuple(claimed))


def _mark_sent(store: Store, batch: Outgoing, now: datetime) -> None:
    """Recorded only after the server accepted the message; fenced by the attempt number,
    so a sender whose lease was taken over cannot overwrite the new owner's outcome."""
    with store.write():
        for row in batch.rows:
            store.db.execute(
                "update alerts set state = 'sent', sent_at = ?, last_error = null, next_attempt_at = null "
                "where id = ? and state = 'sending' and attempts = ?",
                [to_timestamp(now), row.id, row.attempts],
            )
        if batch.digest:
            store.set_meta(DIGEST_META_KEY, to_timestamp(now))


def _record_failure(store: Store, batch: Outgoing, error: str, *, permanent: bool, now: datetime) -> str | None:
    """Back to pending with a backoff, or `failed` when permanent. Returns the retry time
    (None when permanent): the rest of the channel's queue waits until then."""
    error = one_line(error, MAX_ERROR_CHARS)
    retry_at: str | None = None
    with store.write():
        for row in batch.rows:
            if permanent:
                state, next_at = "failed", None
            else:
                state, next_at = "pending", to_timestamp(now + timedelta(seconds=backoff_delay(row.attempts)))
                retry_at = max(retry_at or next_at, next_at)
            store.db.execute(
                "update alerts set state = ?, next_attempt_at = ?, last_error = ? where id = ? and state = 'sending' and attempts = ?",
                [state, next_at, error, row.id, row.attempts],
            )
    return retry_at


def backoff_delay(attempts: int, *, rand: Callable[[], float] = random.random) -> float:
    """Seconds until the next try after `attempts` failed ones: doubling, at most an hour,
    spread by +-20% so that many waiting alerts do not hit a recovering server at once."""
    return backoff(attempts, base=BACKOFF_BASE, cap=BACKOFF_MAX, rand=rand)


# ============================================================================= email


@channel("email")
def _deliver_email(delivery: Delivery, batch: Outgoing) -> None:
    alerts = delivery.config.alerts
    if alerts.smtp is None or not alerts.sender:
        raise AlertError("email alert queued but alerts.smtp (or alerts.from) is no longer configured", permanent=True)
    rendered = _render_batch(delivery, batch)
    recipients = batch.rows[0].recipients or alerts.to
    if not recipients:
        raise AlertError("email alert has no recipients; set alerts.to", permanent=True)
    store_id = delivery.store.get_meta("store_id") or "0"
    domain = message_domain(alerts.sender)
    targets = dict.fromkeys(r.target_id for r in batch.rows if r.target_id)
    thread = [thread_id(store_id, t, domain) for t in targets]
    message = build_email(rendered, sender=alerts.sender, recipients=recipients, msg_id=batch.message_id, now=delivery.now, thread=thread)
    message["X-Monitor-Chain"] = delivery.store.chain_head()  # a copy of the ledger head outside the database
    send_email(alerts.smtp, message, recipients)


def _render_batch(delivery: Delivery, batch: Outgoing) -> Rendered:
    config, store = delivery.config, delivery.store
    if batch.digest:
        return render_digest(config, [ChangeView.load(store, row) for row in batch.rows])
    row = batch.rows[0]
    if row.kind == "change":
        return render_change(config, ChangeView.load(store, row))
    return render_state(config, row.kind, row.payload, row.target_id)


def send_test_email(config: Config, recipients: Sequence[str] = (), *, now: datetime | None = None) -> list[str]:
    """`monitor alerts test`: one message through the configured server. Returns the recipients."""
    alerts = config.alerts
    if alerts.smtp is None or not alerts.sender:
        raise AlertError("alerts.smtp is not configured; add alerts: smtp: host: ... and from: to targets.yaml", permanent=True)
    to = list(recipients or alerts.to)
    now = now or _utcnow()
    msg_id = f"<test-{now.strftime('%Y%m%d%H%M%S')}-{os.urandom(4).hex()}@{message_domain(alerts.sender)}>"
    message = build_email(render_test(config), sender=alerts.sender, recipients=to, msg_id=msg_id, now=now)
    send_email(alerts.smtp, message, to)
    return to


# ============================================================================= other channels
# The webhook and Apprise live in monitor.channels (imported at the end: they register
# themselves with @channel, and they need this module's outbox types).


from . import channels as _channels  # noqa: E402,F401 - registers the webhook and Apprise channels (they import this module)

__all__ = [
    "AlertRow", "ChangeView", "DeliveryReport", "Rendered", "STATES", "build_email", "deliver_pending",
    "list_alerts", "plan_change_alerts", "plan_outage_alerts", "plan_state_alerts", "release_held", "render_change",
    "render_digest", "requeue", "send_test_email",
]
