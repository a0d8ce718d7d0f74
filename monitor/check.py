"""One check of one target, and a pass over many: fetch -> extract -> record -> diff -> alert.

Used by `monitor check` and by the daemon, so both follow the same rules:
- an unchanged page adds one fetch row and nothing else;
- a substantive change is confirmed by a second fetch after `confirm_delay` before it is
  recorded (half-loaded pages and A/B flapping do not become changes); both fetches are kept;
- a new version is diffed against the previous one, the change is stored with its flags, and
  its alerts are queued;
- a failure is recorded and classified; after `failure_threshold` consecutive failures the
  target is `failing` (an alert), and its recovery is recorded (another alert).
Fetching and diffing happen outside any transaction; what a check found is then one
CheckOutcome (fetch rows, the candidate version, how to describe its change, the state), which
Store.commit_check writes in one transaction, deciding the predecessor under the write lock: a
kill leaves all of it or none, and a concurrent check cannot make the same text a version twice.
A failure, even an unexpected exception, stays with its target: the other targets go on.
Fetching and extraction are behind one seam, CheckContext.capture(target, prior): here by
default, or on Celery workers with `distributed:` (monitor.distributed), the rest unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .extract import sha256_text
from .fetch import Capture, Fetcher, Prior, Validators, capture_with
from .records import Candidate, ChangePlan, CheckOutcome, Committed, FetchRecord, Planner, Version, utcnow
from .store import Store

if TYPE_CHECKING:
    from .diff import DiffResult
    from .extract import Document
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
    rules: RuleSet | None = None  # loaded on the first change: an unchanged pass never needs them
    sleep: Callable[[float], Any] = asyncio.sleep
    confirm: bool = True
    # (target, prior) -> Capture: where fetching and extraction run. None: here, with
    # `fetcher`; the distributed Fleet sends them to a worker (monitor.distributed).
    capturer: Callable[[Target, Prior], Awaitable[Capture]] | None = None

    async def capture(self, target: Target, prior: Prior) -> Capture:
        if self.capturer is not None:
            return await self.capturer(target, prior)
        return await capture_with(self.fetcher, target, prior)

    def ruleset(self) -> RuleSet:
        if self.rules is None:
            from .flags import load_rules

            self.rules = load_rules(strict=False)
        return self.rules


async def check_target(ctx: CheckContext, target: Target) -> TargetResult:
    """Check one target; never raises for a failure of the target itself."""
    try:
        return await _check_target(ctx, target)
    except Exception as exc:  # a bug or an odd page must not stop the other targets
        log.exception("unexpected error while checking %s", target.id)
        now = utcnow()
        message = f"{exc.__class__.__name__}: {exc}"
        record = FetchRecord(target.id, now, now, target.url, error_kind="internal", error_message=message)
        outcome = _outcome(ctx, target)
        outcome.fetches.append((record, "failed"))
        outcome.failed, outcome.error = True, message
        committed = _commit(ctx, target, outcome)
        return TargetResult(target.id, "failed", error_kind="internal", error=message, state_change=committed.state_change)


async def _check_target(ctx: CheckContext, target: Target) -> TargetResult:
    """Fetch and compare outside any transaction, then hand one CheckOutcome to the store,
    which decides (under its write lock) what the capture is."""
    store = ctx.store
    row = store.target_row(target.id) or {}
    latest = store.latest_version(target.id)
    capture = await ctx.capture(target, prior_state(ctx, target, row, latest))
    outcome = _outcome(ctx, target)
    if capture.engine_choice and capture.engine_choice != row.get("engine_choice"):
        outcome.engine_choice = capture.engine_choice
    engine = capture.record.engine
    if not capture.ok:
        assert capture.error is not None
        outcome.fetches.append((capture.record, "failed"))
        outcome.failed, outcome.error = True, f"{capture.error.kind}: {capture.error}"
        committed = _commit(ctx, target, outcome)
        return TargetResult(target.id, "failed", error_kind=capture.error.kind, error=str(capture.error), state_change=committed.state_change, engine=engine)
    text_sha = capture.same_as if capture.document is None else sha256_text(capture.document.to_markdown())
    assert text_sha is not None
    result: DiffResult | None = None
    if capture.document is not None and latest is not None and latest.text_sha256 != text_sha:
        from .diff import compare

        result = compare(store.document(latest), capture.document, rules=ctx.ruleset(), service=target.service)
        if result.substantive and ctx.confirm and target.confirm_delay > 0:
            confirmed = await _confirm(ctx, target, capture, text_sha, latest, outcome)
            if confirmed is None:
                committed = _commit(ctx, target, outcome)
                return TargetResult(target.id, "unconfirmed", state_change=committed.state_change, engine=engine)
            capture = confirmed  # the second fetch becomes the version's fetch; the first is kept as 'confirmed'
    record = replace(capture.record, text_sha256=text_sha)
    outcome.candidate = Candidate(record, capture.raws, capture.document, _planner(ctx, target, latest, result))
    committed = _commit(ctx, target, outcome)
    engine = record.engine
    if committed.outcome == "first-version":
        assert committed.version is not None
        log.info("first version %s", committed.version.ref)
    if committed.outcome != "new-version" or committed.result is None:
        return TargetResult(target.id, committed.outcome, version=committed.version, state_change=committed.state_change, engine=engine)
    from .diff import (
        summary_line,  # diff and flags are imported by the first change, not by an unchanged pass
    )

    return TargetResult(
        target.id, "new-version", version=committed.version, change_id=committed.change_id, summary=summary_line(committed.result),
        n_flags=len(committed.result.flags), substantive=committed.result.substantive, state_change=committed.state_change, engine=engine,
    )


def prior_state(ctx: CheckContext, target: Target, row: dict[str, Any], latest: Version | None) -> Prior:
    """What the fetch needs from the store (see fetch.Prior)."""
    good = ctx.store.last_good_fetch(target.id, latest)
    validators = None
    if good and ctx.config.defaults.conditional and good["engine"] == "http" and (good["etag"] or good["last_modified"]):
        validators = Validators(good["etag"], good["last_modified"], good["final_url"], good["content_type"])
    return Prior(
        engine_choice=row.get("engine_choice"), previous_length=latest.text_bytes if latest else None,
        known=(good["extract_key"], good["text_sha256"]) if good else None, validators=validators,
        known_raw=good["raw_sha256"] if good else None,
    )


def _outcome(ctx: CheckContext, target: Target) -> CheckOutcome:
    def state_alerts(change: str, detail: str) -> list[dict[str, Any]]:
        if not ctx.config.alerts.enabled:
            return []
        from .alerts import plan_state_alerts
        from .outage import hold, muted

        if muted(ctx.store, target.id, change):  # an outage of many targets says it once
            return []
        return hold(ctx.config, plan_state_alerts(ctx.config.alerts, target, change, detail))  # an outage declared soon absorbs it

    def watch() -> list[dict[str, Any]]:
        if not ctx.config.alerts.enabled:
            return []
        from .outage import assess

        return assess(ctx.store, ctx.config, target.id)

    return CheckOutcome(target.id, failure_threshold=ctx.config.defaults.failure_threshold, state_alerts=state_alerts, watch=watch)


def _commit(ctx: CheckContext, target: Target, outcome: CheckOutcome) -> Committed:
    committed = ctx.store.commit_check(outcome)
    if committed.state_change:
        detail = outcome.error if committed.state_change == "failing" else "checks succeed again"
        log.warning("%s is %s: %s", target.id, committed.state_change, detail)
    return committed


def _planner(ctx: CheckContext, target: Target, base: Version | None, result: DiffResult | None) -> Planner:
    """How the change into the new version is described, from whichever predecessor the store
    finds: the diff computed against `base` is reused when that is still the predecessor."""

    def plan(old: Version, document: Document, reverted_to: int | None) -> ChangePlan:
        diff = result if result is not None and base is not None and old.id == base.id else None
        if diff is None:
            from .diff import compare

            diff = compare(ctx.store.document(old), document, rules=ctx.ruleset(), service=target.service)
        if reverted_to is not None:
            diff.mark_reverted(reverted_to)
        return change_plan(ctx.config, target, diff)

    return plan


def change_plan(config: Config, target: Target, result: DiffResult, *, alert: bool = True) -> ChangePlan:
    """The change's outbox rows and its clause HTML (pre-rendered for reports over many changes)."""
    from .report import RENDER_VERSION, clauses_html

    rows: list[dict[str, Any]] = []
    if alert and config.alerts.enabled and result.substantive:
        from .alerts import plan_change_alerts

        rows = plan_change_alerts(config.alerts, target, result)
    return ChangePlan(result, rows, clauses_html(result.to_dict()), RENDER_VERSION)


def record_change(config: Config, store: Store, target: Target, old: Version, new: Version, result: DiffResult, *, alert: bool = True, detected_at: str | None = None) -> int:
    """Store the change and queue its alerts in one transaction (imports; a live check goes
    through Store.commit_check)."""
    plan = change_plan(config, target, result, alert=alert)
    return store.add_change(old, new, result, alert_rows=plan.alert_rows, detected_at=detected_at, html=plan.html, html_version=plan.html_version)


async def _confirm(ctx: CheckContext, target: Target, first: Capture, text_sha: str, latest: Version | None, outcome: CheckOutcome) -> Capture | None:
    """Fetch again after confirm_delay; the change stands only if the second capture agrees.
    The first fetch is kept as 'confirmed' or 'unconfirmed' in the outcome."""
    await ctx.sleep(target.confirm_delay)
    second = await ctx.capture(target, Prior(engine_choice=first.record.engine, previous_length=latest.text_bytes if latest else None))
    second_sha = sha256_text(second.document.to_markdown()) if second.ok and second.document else None
    if second_sha == text_sha:
        outcome.fetches.append((replace(first.record, text_sha256=text_sha), "confirmed"))
        return second
    outcome.fetches.append((replace(first.record, text_sha256=text_sha), "unconfirmed"))
    if second.ok:
        kind = "unchanged" if latest is not None and second_sha == latest.text_sha256 else "unconfirmed"
        outcome.fetches.append((replace(second.record, text_sha256=second_sha), kind))
    else:
        outcome.fetches.append((second.record, "failed"))
    log.info("change of %s not confirmed by a second fetch", target.id)
    return None


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


__all__ = ["CheckContext", "PassSummary", "TargetResult", "change_plan", "check_target", "prior_state", "record_change", "run_pass"]
