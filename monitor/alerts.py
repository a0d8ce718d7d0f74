"""Alerts: deciding who hears about a change, writing the message, and delivering it once.

Three stages, each a small set of functions:

- **Planning** (`plan_change_alerts`, `plan_state_alerts`) runs inside the check, before the
  change is stored. It returns rows for the `alerts` table, which the store writes in the
  same transaction as the change: an alert is never lost, and never without its change.
- **Rendering** turns a stored change (the diff JSON of `monitor diff`) into a subject, a
  plain-text body and an inline-styled HTML body. Everything that came from a page is
  escaped, bounded per clause, and kept out of the headers.
- **Delivery** (`deliver_pending`) is the durable outbox's sender. It claims due rows with a
  conditional UPDATE inside a write transaction, so two senders (the daemon's thread and a
  `monitor check`, say) never deliver one row both. A row is marked sent only after the
  server accepted it; a failure is retried with capped exponential backoff; a permanent
  failure (the message itself was refused) leaves the row `failed` for `monitor alerts retry`.

Row states: pending (waiting, maybe with backoff or for the digest), sending (claimed; the
claim is a lease, so a sender that died mid-send is taken over once the lease runs out),
sent, failed. The only window for a duplicate is a crash between the server's acceptance and
the UPDATE that records it; the Message-ID is stable, so mail clients drop such a copy.

Webhook JSON (one POST per change, `Content-Type: application/json`):

    {"event": "change",
     "target": {"id", "service", "document", "url", "title"},
     "change_id": 17, "detected_at": "2024-09-18T10:00:00.000Z",
     "substantive", "old", "new", "signals", "changes"}      <- the JSON of `monitor diff`

and for a target entering or leaving the failing state:

    {"event": "failing" | "recovered", "target": {...}, "detail": "...", "detected_at": "..."}

Each request carries `X-Privacy-Monitor-Delivery: <message id>` so receivers can drop repeats.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import random
import re
import shlex
import smtplib
import socket
import ssl
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .backoff import backoff
from .errors import AlertError, InputError
from .extract import visible_text
from .store import parse_timestamp, to_timestamp
from .targets import SEVERITIES

if TYPE_CHECKING:
    from .diff import DiffResult
    from .store import Store
    from .targets import AlertsConfig, Config, Schedule, SmtpConfig, Target, WebhookConfig

log = logging.getLogger("monitor.alerts")

STATES = ("pending", "sending", "sent", "failed")
KINDS = ("change", "failing", "recovered")
CHANNEL_NAMES = ("email", "webhook")

BACKOFF_BASE = 30.0  # seconds before the first retry; doubles with each attempt
BACKOFF_MAX = 3600.0
DIGEST_META_KEY = "alerts.last_digest_at"
MESSAGE_ID_DOMAIN = "privacy-monitor"
USER_AGENT = "privacy-monitor/0.1 (alerts)"

# What one message may hold; anything beyond is cut with a note, never silently.
MAX_CLAUSES = 10  # changed clauses shown in a change email (flagged first)
MAX_DIGEST_CLAUSES = 3  # per change, in a digest
MAX_DIGEST_CHANGES = 25
MAX_CLAUSE_CHARS = 1200  # visible characters of one clause
MAX_EVIDENCE_CHARS = 300
MAX_SECTION_CHARS = 160
MAX_SUBJECT_CHARS = 200
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


def _rows_for_channels(config: AlertsConfig, target: Target, kind: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    recipients = list(target.alerts_to or config.to)
    if config.smtp is not None and recipients:
        rows.append(_row(kind, "email", target.id, recipients, payload))
    if config.webhook is not None:
        rows.append(_row(kind, "webhook", target.id, None, payload))
    return rows


def _row(kind: str, channel: str, target_id: str, recipients: list[str] | None, payload: dict[str, Any]) -> dict[str, Any]:
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


def severity_rank(severity: str | None) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


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


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


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
    sender = _CHANNELS.get(batch.channel)
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
    digest_rows = [r for r in rows if alerts.mode == "digest" and r.channel == "email" and r.kind == "change"]
    held_ids = {r.id for r in digest_rows}
    out = [Outgoing(r.channel, (r,), message_id(store_id, r.id)) for r in rows if r.id not in held_ids]
    if not digest_rows:
        return out, []
    if not digest_due(store, alerts, digest_rows, now):
        return out, digest_rows
    groups: dict[tuple[str, ...], list[AlertRow]] = {}
    for row in digest_rows:
        groups.setdefault(row.recipients, []).append(row)
    for group in groups.values():
        out.append(Outgoing("email", tuple(group), digest_message_id(store_id, [r.id for r in group]), digest=True))
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

    trigger = CronTrigger.from_crontab(schedule.cron, timezone=timezone.utc)
    fire = trigger.get_next_fire_time(None, after + timedelta(seconds=1))
    return fire if fire is not None else after + timedelta(days=1)


def message_id(store_id: str, alert_id: int) -> str:
    """Stable across retries, restarts and processes: the same alert, the same Message-ID."""
    return f"<alert-{alert_id}.{store_id}@{MESSAGE_ID_DOMAIN}>"


def digest_message_id(store_id: str, alert_ids: Sequence[int]) -> str:
    digest = hashlib.sha256(",".join(str(i) for i in sorted(alert_ids)).encode()).hexdigest()[:10]
    return f"<digest-{min(alert_ids)}-{digest}.{store_id}@{MESSAGE_ID_DOMAIN}>"


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
        message = digest_message_id(store.get_meta("store_id") or "0", [r.id for r in claimed])
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


def one_line(text: str, limit: int) -> str:
    """Any text as one bounded line: no CR, LF or other control characters survive."""
    text = re.sub(r"[\x00-\x1f\x7f\x85\u2028\u2029]+", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# ============================================================================= what a change looks like


@dataclass(frozen=True)
class ChangeView:
    """A stored change with what rendering needs: target, versions, the diff JSON."""

    change_id: int
    target: dict[str, str]
    detected_at: str
    old_seq: int | None
    new_seq: int | None
    diff: dict[str, Any]

    @classmethod
    def load(cls, store: Store, row: AlertRow) -> ChangeView:
        if row.change_id is None:
            raise AlertError(f"alert {row.id} has no change", permanent=True)
        try:
            change = store.change(row.change_id)
        except InputError:
            raise AlertError(f"alert {row.id}: change {row.change_id} no longer exists", permanent=True) from None
        target = row.payload.get("target") or {"id": change["target_id"], "service": change["target_id"], "document": "", "url": "", "title": change["target_id"]}
        return cls(
            change_id=int(change["id"]), target=target, detected_at=change["detected_at"],
            old_seq=change["old_seq"], new_seq=change["new_seq"], diff=json.loads(change["diff"] or "{}"),
        )

    @property
    def substantive_changes(self) -> list[dict[str, Any]]:
        return [c for c in self.diff.get("changes", []) if not c.get("cosmetic")]

    @property
    def cosmetic_changes(self) -> list[dict[str, Any]]:
        return [c for c in self.diff.get("changes", []) if c.get("cosmetic")]


@dataclass(frozen=True)
class Segment:
    """A run of readable clause text: kept, inserted or deleted, perhaps a link."""

    op: str  # equal | insert | delete
    text: str
    href: str | None = None


# Markdown escapes, link ends with their target, '[', runs of other text, stray brackets.
_PIECE = re.compile(r"\\[\\\[\]*_#|>`-]|\]\([^)\s]*\)|\[|[^\\\[\]]+|[\\\]]")


def readable_segments(spans: Sequence[dict[str, str]]) -> list[Segment]:
    """Clause Markdown (as word-diff spans) to readable runs: `[text](url)` becomes the link
    text carrying its href; a link whose target changed shows the target in <...>."""
    out: list[Segment] = []
    open_at: int | None = None  # index in `out` of the '[' that may open a link
    just_closed: str | None = None  # op of the link text just closed
    for op, piece in ((s["op"], p) for s in spans for p in _PIECE.findall(s["text"])):
        if piece.startswith("](") and open_at is not None:
            url = piece[2:-1]
            text_ops = {seg.op for seg in out[open_at + 1:]}
            out[open_at:] = [replace(seg, href=url) for seg in out[open_at + 1:]]
            if text_ops != {op}:
                out.append(Segment(op, f" <{url}>"))
            open_at, just_closed = None, op
            continue
        if piece.startswith("](") and just_closed is not None:
            out.append(Segment(op, f" <{piece[2:-1]}>"))  # the other side of a changed target
            continue
        just_closed = None
        if piece == "[":
            open_at = len(out)
        elif len(piece) == 2 and piece[0] == "\\":
            piece = piece[1]
        out.append(Segment(op, piece))
    return _merge(out)


def _merge(segments: Iterable[Segment]) -> list[Segment]:
    merged: list[Segment] = []
    for seg in segments:
        if merged and merged[-1].op == seg.op and merged[-1].href == seg.href:
            merged[-1] = replace(merged[-1], text=merged[-1].text + seg.text)
        elif seg.text:
            merged.append(seg)
    return merged


def change_segments(change: dict[str, Any]) -> list[Segment]:
    """A changed clause as segments: word-level for a modified clause, whole otherwise."""
    spans = change.get("spans") or []
    if not spans:
        spans = []
        if change.get("old") and change.get("kind") != "added":
            spans.append({"op": "delete", "text": change["old"]})
        if change.get("new") and change.get("kind") != "removed":
            spans.append({"op": "insert", "text": change["new"]})
    return readable_segments(spans)


def cut_segments(segments: Sequence[Segment], limit: int) -> tuple[list[Segment], int]:
    """At most `limit` characters; returns the kept segments and how many were cut."""
    kept: list[Segment] = []
    used = 0
    total = sum(len(s.text) for s in segments)
    for seg in segments:
        room = limit - used
        if room <= 0:
            break
        if len(seg.text) > room:
            kept.append(replace(seg, text=seg.text[:room].rstrip() + "…"))
            used = limit
            break
        kept.append(seg)
        used += len(seg.text)
    return kept, max(total - used, 0)


def category_label(category: str) -> str:
    """'ai-training' -> 'AI training'."""
    words = category.replace("_", "-").split("-")
    label = " ".join("AI" if w.lower() == "ai" else w for w in words if w)
    return label[:1].upper() + label[1:]


@dataclass(frozen=True)
class ChangeSummary:
    """The decisions a change email makes, shared by the subject, the text and the HTML."""

    view: ChangeView
    flagged: list[dict[str, Any]]  # changes with counted flags, in document order
    others: list[dict[str, Any]]  # other substantive changes
    n_flags: int
    headline: str
    min_severity: str

    @classmethod
    def of(cls, view: ChangeView, min_severity: str) -> ChangeSummary:
        flagged, others = [], []
        for change in view.substantive_changes:
            (flagged if counted_flags(change.get("flags") or [], min_severity) else others).append(change)
        n_flags = sum(len(counted_flags(c.get("flags") or [], min_severity)) for c in flagged)
        return cls(view, flagged, others, n_flags, _headline(flagged, others, min_severity), min_severity)

    def flags_of(self, change: dict[str, Any]) -> list[dict[str, Any]]:
        return counted_flags(change.get("flags") or [], self.min_severity)


def _headline(flagged: list[dict[str, Any]], others: list[dict[str, Any]], min_severity: str) -> str:
    """The most important flag ('AI training clause added'), else the change counts."""
    best: tuple[int, dict[str, Any], dict[str, Any]] | None = None
    for change in flagged:
        for flag in counted_flags(change.get("flags") or [], min_severity):
            rank = severity_rank(flag.get("severity"))
            if best is None or rank > best[0]:
                best = (rank, change, flag)
    if best is not None:
        _, change, flag = best
        return f"{category_label(str(flag.get('category', 'flagged')))} clause {_flag_verb(change, flag)}"
    return count_text(flagged + others) or "cosmetic changes only"


def _flag_verb(change: dict[str, Any], flag: dict[str, Any]) -> str:
    """Wording found only in the old text was removed, even inside a modified clause."""
    if change.get("kind") == "added":
        return "added"
    if change.get("kind") == "removed" or flag.get("side") == "old":
        return "removed"
    return "changed"


def count_text(changes: Sequence[dict[str, Any]]) -> str:
    """'3 modified, 1 added'."""
    counts: dict[str, int] = {}
    for change in changes:
        counts[change.get("kind", "modified")] = counts.get(change.get("kind", "modified"), 0) + 1
    return ", ".join(f"{counts[k]} {k}" for k in ("modified", "added", "removed", "moved") if counts.get(k))


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def show_command(config: Config, change_id: int) -> str:
    """The exact command that prints the full diff of this change."""
    return f"monitor --config {shlex.quote(str(config.path))} show {change_id}"


# ============================================================================= rendering


@dataclass(frozen=True)
class Rendered:
    """A message before it has an envelope: a one-line subject and two bodies."""

    subject: str
    text: str
    html: str


def change_subject(prefix: str, summary: ChangeSummary) -> str:
    """'[privacy monitor] LinkedIn · Privacy Policy changed: AI training clause added (2 flags)'."""
    title = summary.view.target.get("title") or summary.view.target.get("id", "")
    flags = f" ({plural(summary.n_flags, 'flag')})" if summary.n_flags else ""
    return one_line(f"{prefix} {title} changed: {summary.headline}{flags}", MAX_SUBJECT_CHARS)


def render_change(config: Config, view: ChangeView) -> Rendered:
    """One change: flagged clauses first with their evidence, then the others, bounded."""
    summary = ChangeSummary.of(view, config.alerts.min_severity)
    command = show_command(config, view.change_id)
    shown, more = _pick_clauses(summary, MAX_CLAUSES)
    text = "\n".join([*_text_change(summary, shown, more, command), ""])
    body = _html_change(summary, shown, more, command)
    return Rendered(change_subject(config.alerts.subject_prefix, summary), text, _html_document(body))


def render_digest(config: Config, views: Sequence[ChangeView]) -> Rendered:
    """Several changes in one email, most flagged first, each cut to a few clauses."""
    summaries = sorted(
        (ChangeSummary.of(v, config.alerts.min_severity) for v in views),
        key=lambda s: (-s.n_flags, s.view.detected_at),
    )
    n_flags = sum(s.n_flags for s in summaries)
    documents = len({s.view.target.get("id") for s in summaries})
    flags = f" ({plural(n_flags, 'flag')})" if n_flags else ""
    subject = one_line(
        f"{config.alerts.subject_prefix} digest: {plural(len(summaries), 'change')} in {plural(documents, 'document')}{flags}",
        MAX_SUBJECT_CHARS,
    )
    text = [f"{plural(len(summaries), 'change')} in {plural(documents, 'document')}{flags}.", ""]
    body = [_html_p(text[0], style=STYLE["lead"])]
    for number, summary in enumerate(summaries[:MAX_DIGEST_CHANGES], start=1):
        command = show_command(config, summary.view.change_id)
        shown, more = _pick_clauses(summary, MAX_DIGEST_CLAUSES)
        text += ["-" * 78, *_text_change(summary, shown, more, command, number=number), ""]
        body += _html_change(summary, shown, more, command, number=number)
    if len(summaries) > MAX_DIGEST_CHANGES:
        rest = len(summaries) - MAX_DIGEST_CHANGES
        note = f"{plural(rest, 'more change')} not shown: run `monitor --config {shlex.quote(str(config.path))} report` to see them all."
        text += [note, ""]
        body.append(_html_p(note, style=STYLE["note"]))
    return Rendered(subject, "\n".join(text), _html_document(body))


def render_state(config: Config, row: AlertRow) -> Rendered:
    """A target entering or leaving the failing state."""
    target = row.payload.get("target") or {"id": row.target_id or "", "title": row.target_id or "", "url": ""}
    title = target.get("title") or target.get("id", "")
    detail = one_line(str(row.payload.get("detail") or ""), MAX_ERROR_CHARS)
    if row.kind == "failing":
        headline = f"{title} is failing"
        lines = [f"Checks of {title} keep failing: {detail}", "Changes to this page go unseen until it recovers."]
    else:
        headline = f"{title} recovered"
        lines = [f"Checks of {title} succeed again; changes to it are seen again."]
    lines += [f"Page: {target.get('url', '')}", f"Status: monitor --config {shlex.quote(str(config.path))} status"]
    subject = one_line(f"{config.alerts.subject_prefix} {headline}", MAX_SUBJECT_CHARS)
    text = "\n".join([headline, "", *lines, ""])
    body = [f'<h2 style="{STYLE["h2"]}">{_esc(headline)}</h2>', *(_html_p(line) for line in lines)]
    return Rendered(subject, text, _html_document(body))


def render_test(config: Config) -> Rendered:
    subject = one_line(f"{config.alerts.subject_prefix} test message", MAX_SUBJECT_CHARS)
    lines = [
        "This is a test message from the privacy monitor.",
        f"Configuration: {config.path}",
        "If you can read this, alerts for changed policies will reach you.",
    ]
    return Rendered(subject, "\n".join(lines) + "\n", _html_document([_html_p(line) for line in lines]))


def _pick_clauses(summary: ChangeSummary, limit: int) -> tuple[list[dict[str, Any]], int]:
    ordered = summary.flagged + summary.others
    return ordered[:limit], max(len(ordered) - limit, 0)


def _change_title_line(summary: ChangeSummary) -> str:
    title = summary.view.target.get("title") or summary.view.target.get("id", "")
    flags = f" ({plural(summary.n_flags, 'flag')})" if summary.n_flags else ""
    return one_line(f"{title} changed: {summary.headline}{flags}", MAX_SUBJECT_CHARS)


@dataclass(frozen=True)
class Fact:
    text: str
    signal: bool = False  # a document-level warning (silent update, reverted): shown prominently


def _facts(summary: ChangeSummary) -> list[Fact]:
    """Version numbers, the stated effective date, and any document-level signal."""
    view = summary.view
    facts = [Fact(f"Version {view.old_seq} -> {view.new_seq}, detected {_when(view.detected_at)}.")]
    old_date = (view.diff.get("old") or {}).get("effective_date")
    new_date = (view.diff.get("new") or {}).get("effective_date")
    if new_date and old_date and new_date != old_date:
        facts.append(Fact(one_line(f"Stated effective date: {new_date} (was {old_date}).", 120)))
    elif new_date:
        facts.append(Fact(one_line(f"Stated effective date: {new_date} (unchanged).", 120)))
    else:
        facts.append(Fact("The page states no effective date."))
    for signal in view.diff.get("signals") or []:
        label = category_label(str(signal.get("kind", "signal")))
        facts.append(Fact(one_line(f"{label}: {signal.get('message', '')}", 300), signal=True))
    return facts


def _when(stamp: str) -> str:
    try:
        return parse_timestamp(stamp).strftime("%Y-%m-%d %H:%M UTC")
    except (ValueError, TypeError):
        return one_line(str(stamp), 40)


def _clause_label(change: dict[str, Any]) -> str:
    kind = {"added": "Added clause", "removed": "Removed clause", "modified": "Changed clause"}.get(change.get("kind", ""), "Clause")
    section = one_line(visible_text(change.get("section") or ""), MAX_SECTION_CHARS)
    return f"{kind} · {section}" if section else kind


def _flag_line(flag: dict[str, Any]) -> str:
    rule = f", rule {flag['rule']}" if flag.get("rule") else ""
    return one_line(f"{category_label(str(flag.get('category', '')))} ({flag.get('severity', '?')}{rule})", 200)


def _evidence(flag: dict[str, Any]) -> str | None:
    evidence = flag.get("evidence")
    if not evidence:
        return None
    return one_line(str(evidence), MAX_EVIDENCE_CHARS)  # already the visible text: a literal "<b>" the page showed stays, escaped


def _cut_note(cut: int, command: str) -> str:
    return f"[clause cut here: {cut:,} more characters; run `{command}` for all of it]"


def _more_note(more: int, command: str) -> str:
    return f"{plural(more, 'more changed clause')}: run `{command}` for the full diff."


# ----------------------------------------------------------------------------- plain text


def _text_change(summary: ChangeSummary, shown: list[dict[str, Any]], more: int, command: str, *, number: int | None = None) -> list[str]:
    """One change as text; `number` is its place in a digest."""
    view = summary.view
    title = _change_title_line(summary)
    lines = [f"{number}. {title}" if number else title, one_line(view.target.get("url", ""), 2000), ""]
    lines += [f"{'! ' if fact.signal else ''}{fact.text}" for fact in _facts(summary)]
    if summary.flagged:
        lines += ["", f"FLAGGED CHANGES ({len(summary.flagged)})"]
    for number, change in enumerate(shown, start=1):
        if number == len(summary.flagged) + 1:
            lines += ["", f"{'OTHER CHANGES' if summary.flagged else 'CHANGES'} ({len(summary.others)})"]
        lines += ["", *_text_clause(number, change, summary.flags_of(change), command)]
    cosmetic = len(view.cosmetic_changes)
    if cosmetic:
        lines += ["", f"Also {plural(cosmetic, 'cosmetic change')} (typography, moves, dates), not shown."]
    if more:
        lines += ["", _more_note(more, command)]
    return [*lines, "", f"Full diff: {command}"]


def _text_clause(number: int, change: dict[str, Any], flags: list[dict[str, Any]], command: str) -> list[str]:
    segments, cut = cut_segments(change_segments(change), MAX_CLAUSE_CHARS)
    marked = change.get("kind") == "modified"
    body = "".join(_text_segment(seg, marked) for seg in segments)
    lines = [f"{number}. {_clause_label(change)}"]
    lines += [f"   Flag: {_flag_line(flag)}" for flag in flags]
    lines += _wrap(body, "   ")
    if cut:
        lines.append(f"   {_cut_note(cut, command)}")
    for flag in flags:
        evidence = _evidence(flag)
        if evidence:
            lines.append(f'   Evidence: "{evidence}"')
    return lines


def _text_segment(seg: Segment, marked: bool) -> str:
    """wdiff style: [-deleted-] {+inserted+}; an added or removed clause needs no marks."""
    text = seg.text
    if not marked or seg.op == "equal" or not text.strip():
        return text
    return f"[-{text}-]" if seg.op == "delete" else f"{{+{text}+}}"


def _wrap(text: str, indent: str) -> list[str]:
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]", " ", text)
    out: list[str] = []
    for paragraph in text.split("\n"):
        out += textwrap.wrap(paragraph, 78, initial_indent=indent, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False) or [indent.rstrip()]
    return out


# ----------------------------------------------------------------------------- HTML (inline styles only)

STYLE = {
    "body": "margin:0;padding:16px;background:#ffffff;color:#1f2328;font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:1.5",
    "h2": "margin:16px 0 4px;font-size:18px;color:#1f2328",
    "h3": "margin:16px 0 8px;font-size:15px;color:#1f2328;border-bottom:1px solid #d0d7de;padding-bottom:4px",
    "lead": "margin:4px 0;color:#1f2328",
    "muted": "margin:2px 0;color:#59636e;font-size:13px",
    "signal": "margin:8px 0;padding:8px 12px;background:#fff8c5;border-left:4px solid #d4a72c",
    "card": "margin:0 0 12px;padding:10px 12px;border:1px solid #d0d7de;border-radius:6px",
    "card_flagged": "margin:0 0 12px;padding:10px 12px;border:1px solid #cf222e;border-left:4px solid #cf222e;border-radius:6px",
    "label": "margin:0 0 4px;color:#59636e;font-size:12px",
    "badge": "display:inline-block;margin:0 4px 4px 0;padding:1px 8px;border-radius:10px;background:#cf222e;color:#ffffff;font-size:12px",
    "clause": "margin:6px 0;white-space:pre-wrap",
    "ins": "background:#dafbe1;color:#116329;text-decoration:none",
    "del": "background:#ffebe9;color:#82071e;text-decoration:line-through",
    "added": "background:#dafbe1",
    "removed": "background:#ffebe9;text-decoration:line-through",
    "evidence": "margin:6px 0 0;padding:2px 10px;border-left:3px solid #d0d7de;color:#59636e;font-style:italic",
    "note": "margin:8px 0;color:#59636e;font-size:13px",
    "code": "font-family:Menlo,Consolas,monospace;font-size:13px;background:#f6f8fa;padding:1px 4px;border-radius:4px",
    "link": "color:#0969da",
}


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _code(text: str) -> str:
    return f'<code style="{STYLE["code"]}">{_esc(text)}</code>'


def _html_p(text: str, *, style: str = STYLE["lead"], raw: bool = False) -> str:
    return f'<p style="{style}">{text if raw else _esc(text)}</p>'


def _link(url: str, text: str | None = None) -> str:
    """A link only for http(s) addresses; anything else is shown as text."""
    label = _esc(text if text is not None else url)
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        return label
    return f'<a href="{_esc(url)}" style="{STYLE["link"]}">{label}</a>'


def _html_document(parts: Sequence[str]) -> str:
    inner = "\n".join(parts)
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8"></head>'
        f'<body style="{STYLE["body"]}">\n{inner}\n</body></html>\n'
    )


def _html_change(summary: ChangeSummary, shown: list[dict[str, Any]], more: int, command: str, *, number: int | None = None) -> list[str]:
    """One change as HTML parts; `number` is its place in a digest."""
    view = summary.view
    title = _change_title_line(summary)
    parts = [
        f'<h2 style="{STYLE["h2"]}">{_esc(f"{number}. {title}" if number else title)}</h2>',
        _html_p(_link(view.target.get("url", "")), style=STYLE["muted"], raw=True),
    ]
    for fact in _facts(summary):
        parts.append(_html_p(fact.text, style=STYLE["signal"] if fact.signal else STYLE["muted"]))
    if summary.flagged:
        parts.append(f'<h3 style="{STYLE["h3"]}">Flagged changes ({len(summary.flagged)})</h3>')
    for number, change in enumerate(shown, start=1):
        if number == len(summary.flagged) + 1:
            heading_text = "Other changes" if summary.flagged else "Changes"
            parts.append(f'<h3 style="{STYLE["h3"]}">{heading_text} ({len(summary.others)})</h3>')
        parts.append(_html_clause(change, summary.flags_of(change), command))
    cosmetic = len(view.cosmetic_changes)
    if cosmetic:
        parts.append(_html_p(f"Also {plural(cosmetic, 'cosmetic change')} (typography, moves, dates), not shown.", style=STYLE["note"]))
    if more:
        parts.append(_html_p(_esc(f"{plural(more, 'more changed clause')}: run ") + _code(command) + " for the full diff.", style=STYLE["note"], raw=True))
    parts.append(_html_p("Full diff: " + _code(command), raw=True))
    return parts


def _html_clause(change: dict[str, Any], flags: list[dict[str, Any]], command: str) -> str:
    segments, cut = cut_segments(change_segments(change), MAX_CLAUSE_CHARS)
    kind = change.get("kind")
    whole = STYLE["added"] if kind == "added" else STYLE["removed"] if kind == "removed" else None
    clause = "".join(_html_segment(seg, whole) for seg in segments)
    parts = [f'<div style="{STYLE["card_flagged"] if flags else STYLE["card"]}">', f'<p style="{STYLE["label"]}">{_esc(_clause_label(change))}</p>']
    if flags:
        parts.append("<div>" + "".join(f'<span style="{STYLE["badge"]}">{_esc(_flag_line(f))}</span>' for f in flags) + "</div>")
    parts.append(f'<p style="{STYLE["clause"]}">{clause}</p>')
    if cut:
        parts.append(_html_p(_cut_note(cut, command), style=STYLE["note"]))
    for flag in flags:
        evidence = _evidence(flag)
        if evidence:
            parts.append(f'<p style="{STYLE["evidence"]}">Evidence: “{_esc(evidence)}”</p>')
    parts.append("</div>")
    return "".join(parts)


def _html_segment(seg: Segment, whole: str | None) -> str:
    text = _link(seg.href, seg.text) if seg.href else _esc(seg.text)
    if whole is not None:
        return f'<span style="{whole}">{text}</span>'
    if seg.op == "insert":
        return f'<ins style="{STYLE["ins"]}">{text}</ins>'
    if seg.op == "delete":
        return f'<del style="{STYLE["del"]}">{text}</del>'
    return text


# ============================================================================= email


def build_email(rendered: Rendered, *, sender: str, recipients: Sequence[str], msg_id: str, now: datetime) -> EmailMessage:
    """multipart/alternative: plain text first, HTML second. Header values are one line."""
    message = EmailMessage()
    message["Subject"] = one_line(rendered.subject, MAX_SUBJECT_CHARS)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(now.astimezone(timezone.utc))
    message["Message-ID"] = msg_id
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


@channel("email")
def _deliver_email(delivery: Delivery, batch: Outgoing) -> None:
    alerts = delivery.config.alerts
    if alerts.smtp is None or not alerts.sender:
        raise AlertError("email alert queued but alerts.smtp (or alerts.from) is no longer configured", permanent=True)
    rendered = _render_batch(delivery, batch)
    recipients = batch.rows[0].recipients or alerts.to
    if not recipients:
        raise AlertError("email alert has no recipients; set alerts.to", permanent=True)
    message = build_email(rendered, sender=alerts.sender, recipients=recipients, msg_id=batch.message_id, now=delivery.now)
    message["X-Monitor-Chain"] = delivery.store.chain_head()  # a copy of the ledger head outside the database
    send_email(alerts.smtp, message, recipients)


def _render_batch(delivery: Delivery, batch: Outgoing) -> Rendered:
    config, store = delivery.config, delivery.store
    if batch.digest:
        return render_digest(config, [ChangeView.load(store, row) for row in batch.rows])
    row = batch.rows[0]
    if row.kind == "change":
        return render_change(config, ChangeView.load(store, row))
    return render_state(config, row)


def send_test_email(config: Config, recipients: Sequence[str] = (), *, now: datetime | None = None) -> list[str]:
    """`monitor alerts test`: one message through the configured server. Returns the recipients."""
    alerts = config.alerts
    if alerts.smtp is None or not alerts.sender:
        raise AlertError("alerts.smtp is not configured; add alerts: smtp: host: ... and from: to targets.yaml", permanent=True)
    to = list(recipients or alerts.to)
    now = now or _utcnow()
    msg_id = f"<test-{now.strftime('%Y%m%d%H%M%S')}-{os.urandom(4).hex()}@{MESSAGE_ID_DOMAIN}>"
    message = build_email(render_test(config), sender=alerts.sender, recipients=to, msg_id=msg_id, now=now)
    send_email(alerts.smtp, message, to)
    return to


# ============================================================================= webhook


def webhook_payload(delivery: Delivery, row: AlertRow) -> dict[str, Any]:
    """The documented JSON (see the module docstring)."""
    if row.kind == "change":
        view = ChangeView.load(delivery.store, row)
        return {"event": "change", "target": view.target, "change_id": view.change_id, "detected_at": view.detected_at, **view.diff}
    return {"event": row.kind, "target": row.payload.get("target"), "detail": row.payload.get("detail"), "detected_at": row.created_at}


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
    post_webhook(webhook, payload, delivery_id=f"<test-{os.urandom(4).hex()}@{MESSAGE_ID_DOMAIN}>")


__all__ = [
    "AlertRow", "ChangeView", "DeliveryReport", "Rendered", "STATES", "build_email", "deliver_pending",
    "list_alerts", "plan_change_alerts", "plan_state_alerts", "render_change", "render_digest", "requeue",
    "send_test_email", "send_test_webhook",
]
