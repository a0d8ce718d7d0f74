"""One check of one target, and a pass over many: fetch -> extract -> record -> diff -> alert.

Used by `monitor check` and by the daemon, so both follow the same rules:
- an unchanged page adds one fetch row and nothing else;
- a substantive change is confirmed by a second fetch after `confirm_delay` before it is
  recorded (half-loaded pages and A/B flapping do not become changes); both fetches are kept;
- a new version is diffed against the previous one, the change is stored with its flags, and
  its alerts are queued in the same transaction;
- a failure is recorded and classified; after `failure_threshold` consecutive failures the
  target is `failing` (an alert), and its recovery is recorded (another alert).
A failure, even an unexpected exception, stays with its target: the other targets go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .diff import DiffResult, compare, summary_line
from .extract import sha256_text
from .fetch import Capture, Fetcher, capture_target
from .store import FetchRecord, Store, Version, utcnow

if TYPE_CHECKING:
    from .flags import RuleSet
    from .targets import Config, Target

log = logging.getLogger("monitor")

# Outcomes of a check (TargetResult.outcome). Fetch rows use new-version, unchanged, failed,
# unconfirmed, and confirmed (a first fetch whose change the second fetch confirmed).
OUTCOMES = ("first-version", "new-version", "unchanged", "unconfirmed", "failed")


@dataclass
class TargetResult:
    """What a check of one target came to, for progress lines, summaries and logs."""

    target_id: str
    outcome: str
    version: Version | None = None
    change_id: int | None = None
    summary: str = ""
    error_kind: str | None = None
    error: str | None = None
    n_flags: int = 0
    substantive: bool = False
    state_change: str | None = None  # "failing" or "recovered"
    engine: str | None = None

    def line(self) -> str:
        if self.outcome == "failed":
            return f"{self.target_id}: failed ({self.error_kind}): {self.error}"
        if self.outcome == "first-version":
            return f"{self.target_id}: first version recorded ({self.version.ref if self.version else ''})"
        if self.outcome == "new-version":
            return f"{self.target_id}: new version {self.version.ref if self.version else ''}: {self.summary}"
        if self.outcome == "unconfirmed":
            return f"{self.target_id}: change not confirmed by a second fetch; not recorded"
        return f"{self.target_id}: unchanged"


@dataclass
class CheckContext:
    """What a check needs besides the target: passed in, never global."""

    config: Config
    store: Store
    fetcher: Fetcher
    rules: RuleSet | None = None
    sleep: Callable[[float], Any] = asyncio.sleep
    confirm: bool = True


async def check_target(ctx: CheckContext, target: Target) -> TargetResult:
    """Check one target; never raises for a failure of the target itself."""
    try:
        return await _check_target(ctx, target)
    except Exception as exc:  # a bug or an odd page must not stop the other targets
        log.exception("unexpected error while checking %s", target.id)
        now = utcnow()
        record = FetchRecord(target.id, now, now, target.url, error_kind="internal", error_message=f"{exc.__class__.__name__}: {exc}")
        ctx.store.record_fetch(record, "failed")
        state = _update_failure_state(ctx, target, failed=True, error=record.error_message or "")
        return TargetResult(target.id, "failed", error_kind="internal", error=record.error_message, state_change=state)


async def _check_target(ctx: CheckContext, target: Target) -> TargetResult:
    store = ctx.store
    row = store.target_row(target.id) or {}
    latest = store.latest_version(target.id)
    capture = await capture_target(
        ctx.fetcher, target, engine_choice=row.get("engine_choice"), previous_length=latest.text_bytes if latest else None,
        known=store.known_extraction(target.id, latest),
    )
    if capture.engine_choice and capture.engine_choice != row.get("engine_choice"):
        store.update_target(target.id, engine_choice=capture.engine_choice)
    if not capture.ok:
        return _failed(ctx, target, capture)
    if capture.same_as is not None:  # the very bytes of the last fetch: the text is unchanged
        return _unchanged(ctx, target, capture, capture.same_as)
    assert capture.document is not None
    text_sha = sha256_text(capture.document.to_markdown())
    if latest is not None and latest.text_sha256 == text_sha:
        return _unchanged(ctx, target, capture, text_sha)

    previous_doc = store.document(latest) if latest else None
    result = compare(previous_doc, capture.document, rules=ctx.rules) if previous_doc else None
    if result is not None and result.substantive and ctx.confirm and target.confirm_delay > 0:
        confirmed = await _confirm(ctx, target, capture, text_sha, latest)
        if confirmed is None:
            state = _update_failure_state(ctx, target, failed=False)
            return TargetResult(target.id, "unconfirmed", state_change=state, engine=capture.record.engine)
        capture = confirmed  # the second fetch becomes the version's fetch; the first is kept as 'confirmed'

    record = replace(capture.record, text_sha256=text_sha)
    version = store.add_version(target.id, capture.raws, capture.document, observed_at=record.finished_at, fetch=record)
    state = _update_failure_state(ctx, target, failed=False)
    if version is None:  # another process recorded the same text meanwhile
        return TargetResult(target.id, "unchanged", state_change=state, engine=record.engine)
    if latest is None or result is None:
        log.info("first version %s", version.ref)
        return TargetResult(target.id, "first-version", version=version, state_change=state, engine=record.engine)
    if version.reverted_to is not None:
        result.mark_reverted(version.reverted_to)
    change_id = record_change(ctx.config, store, target, latest, version, result)
    return TargetResult(
        target.id, "new-version", version=version, change_id=change_id, summary=summary_line(result),
        n_flags=len(result.flags), substantive=result.substantive, state_change=state, engine=record.engine,
    )


def _unchanged(ctx: CheckContext, target: Target, capture: Capture, text_sha: str) -> TargetResult:
    """One fetch row, nothing else."""
    ctx.store.record_fetch(replace(capture.record, text_sha256=text_sha), "unchanged")
    state = _update_failure_state(ctx, target, failed=False)
    return TargetResult(target.id, "unchanged", state_change=state, engine=capture.record.engine)


def record_change(config: Config, store: Store, target: Target, old: Version, new: Version, result: DiffResult, *, alert: bool = True, detected_at: str | None = None) -> int:
    """Store the change and queue its alerts in one transaction."""
    from .report import RENDER_VERSION, clauses_html

    rows: list[dict[str, Any]] = []
    if alert and config.alerts.enabled and result.substantive:
        from .alerts import plan_change_alerts

        rows = plan_change_alerts(config.alerts, target, result)
    html = clauses_html(result.to_dict())  # pre-rendered for reports over many changes
    return store.add_change(old, new, result, alert_rows=rows, detected_at=detected_at, html=html, html_version=RENDER_VERSION)


async def _confirm(ctx: CheckContext, target: Target, first: Capture, text_sha: str, latest: Version | None) -> Capture | None:
    """Fetch again after confirm_delay; the change stands only if the second capture agrees.
    The first fetch is recorded as 'unconfirmed' if it does not."""
    await ctx.sleep(target.confirm_delay)
    second = await capture_target(ctx.fetcher, target, engine_choice=first.record.engine, previous_length=latest.text_bytes if latest else None)
    second_sha = sha256_text(second.document.to_markdown()) if second.ok and second.document else None
    if second_sha == text_sha:
        ctx.store.record_fetch(replace(first.record, text_sha256=text_sha), "confirmed")
        return second
    ctx.store.record_fetch(replace(first.record, text_sha256=text_sha), "unconfirmed")
    if second.ok:
        outcome = "unchanged" if latest is not None and second_sha == latest.text_sha256 else "unconfirmed"
        ctx.store.record_fetch(replace(second.record, text_sha256=second_sha), outcome)
    else:
        ctx.store.record_fetch(second.record, "failed")
    log.info("change of %s not confirmed by a second fetch", target.id)
    return None


def _failed(ctx: CheckContext, target: Target, capture: Capture) -> TargetResult:
    error = capture.error
    assert error is not None
    ctx.store.record_fetch(capture.record, "failed")
    state = _update_failure_state(ctx, target, failed=True, error=f"{error.kind}: {error}")
    return TargetResult(target.id, "failed", error_kind=error.kind, error=str(error), state_change=state, engine=capture.record.engine)


def _update_failure_state(ctx: CheckContext, target: Target, *, failed: bool, error: str = "") -> str | None:
    """Move a target into `failing` after N consecutive failures, and out of it on success.
    Returns 'failing' or 'recovered' when the state changed."""
    store = ctx.store
    row = store.target_row(target.id) or {}
    state = row.get("state") or "new"
    threshold = ctx.config.defaults.failure_threshold
    if failed and state != "failing" and (row.get("consecutive_failures") or 0) >= threshold:
        _set_state(ctx, target, "failing", f"{row.get('consecutive_failures')} consecutive failures; last: {error}")
        return "failing"
    if not failed and state == "failing":
        _set_state(ctx, target, "recovered", "checks succeed again")
        return "recovered"
    if not failed and state != "ok":
        store.update_target(target.id, state="ok")
    return None


def _set_state(ctx: CheckContext, target: Target, change: str, detail: str) -> None:
    store = ctx.store
    rows: list[dict[str, Any]] = []
    if ctx.config.alerts.enabled:
        from .alerts import plan_state_alerts

        rows = plan_state_alerts(ctx.config.alerts, target, change, detail)
    with store.write():
        store.db["targets"].update(
            target.id,
            {"state": "failing" if change == "failing" else "ok", "failing_since": utcnow() if change == "failing" else None},
        )
        if rows:
            store.add_alerts(rows)
    log.warning("%s is %s: %s", target.id, "failing" if change == "failing" else "recovered", detail)


# ----------------------------------------------------------------------------- a pass


@dataclass
class PassSummary:
    results: list[TargetResult] = field(default_factory=list)

    @property
    def counts(self) -> Counter[str]:
        return Counter(r.outcome for r in self.results)

    @property
    def all_failed(self) -> bool:
        return bool(self.results) and all(r.outcome == "failed" for r in self.results)

    def text(self) -> str:
        c = self.counts
        new = c["new-version"] + c["first-version"]
        parts = [f"checked {len(self.results)}", f"new version {new}", f"unchanged {c['unchanged']}"]
        if c["unconfirmed"]:
            parts.append(f"unconfirmed {c['unconfirmed']}")
        parts.append(f"failed {c['failed']}")
        line = ", ".join(parts)
        reasons = Counter(r.error_kind for r in self.results if r.outcome == "failed")
        if reasons:
            line += " (" + ", ".join(f"{kind} {n}" for kind, n in sorted(reasons.items())) + ")"
        return line


async def run_pass(
    ctx: CheckContext,
    targets: Sequence[Target],
    *,
    on_start: Callable[[Target], None] | None = None,
    on_done: Callable[[TargetResult], None] | None = None,
) -> PassSummary:
    """Check targets concurrently (at most defaults.concurrency at once)."""
    semaphore = asyncio.Semaphore(ctx.config.defaults.concurrency)
    summary = PassSummary()

    async def one(target: Target) -> None:
        async with semaphore:
            if on_start:
                on_start(target)
            result = await check_target(ctx, target)
            summary.results.append(result)
            if on_done:
                on_done(result)

    await asyncio.gather(*(one(t) for t in targets))
    order = {t.id: i for i, t in enumerate(targets)}
    summary.results.sort(key=lambda r: order.get(r.target_id, 0))
    return summary


__all__ = ["CheckContext", "PassSummary", "TargetResult", "check_target", "record_change", "run_pass"]
