"""`monitor run`: the long-running daemon, on APScheduler 3 (AsyncIOScheduler).

One job per enabled target, on its interval or cron schedule, with jitter so targets do not
fire together; at most one run of a target at a time; missed runs coalesced. At start, each
target's next run comes from its last fetch in the database, so a restart does not refetch
everything; overdue targets run soon, spread out. Failures back off exponentially (capped at
the target's interval). At most `defaults.concurrency` checks run at once. SIGHUP or an edit of
targets.yaml reloads the config (new `defaults:` bring a new fetcher and concurrency; alerts
configured later start the sender); an invalid file is logged and the daemon keeps the last
good one. SIGTERM/SIGINT stops cleanly within seconds: no new check or email is started, an
email in flight is finished and recorded first (so it is never sent twice); a second signal
forces the exit. One daemon per database, enforced by a lock file. Every line on stderr,
library warnings included, is one event in the chosen format.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .errors import ConfigError, LockError
from .store import Store, parse_timestamp, to_timestamp, utcnow

if TYPE_CHECKING:
    from .check import CheckContext, TargetResult
    from .targets import Config, Target

HEARTBEAT_SECONDS = 5.0
RELOAD_POLL_SECONDS = 2.0
SENDER_POLL_SECONDS = 5.0
STOP_GRACE_SECONDS = 7.0
MAX_JITTER_SECONDS = 900.0


# ----------------------------------------------------------------------------- events


class EventLog:
    """One structured line per event on stderr: `text` for people, `json` for machines."""

    def __init__(self, fmt: str = "text", stream: TextIO | None = None):
        self.fmt = fmt
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        fields = {k: v for k, v in fields.items() if v is not None}
        if self.fmt == "json":
            line = json.dumps({"ts": utcnow(), "event": event, **fields}, ensure_ascii=False, default=str)
        else:
            parts = [utcnow(), event]
            for key, value in fields.items():
                text = str(value)
                parts.append(f"{key}={json.dumps(text, ensure_ascii=False) if (' ' in text or not text) else text}")
            line = " ".join(parts)
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr must not stop the daemon


# ----------------------------------------------------------------------------- lock


class DaemonLock:
    """An exclusive lock next to the database: one daemon per database."""

    def __init__(self, db_path: Path):
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockError(
                f"another daemon (pid {holder}) is already running on {self.path.with_suffix('')}; "
                "stop it first, or give this one its own storage.db"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None


# ----------------------------------------------------------------------------- timing


def jitter_seconds(target: Target, fraction: float) -> float:
    """Plus or minus `fraction` of the interval, at most 15 minutes."""
    return min(target.schedule.approx_interval() * fraction, MAX_JITTER_SECONDS)


def next_run_after_restart(target: Target, last_fetch_at: str | None, now: datetime) -> datetime | None:
    """When the target is due, judged from its last fetch; None when it is overdue."""
    if last_fetch_at is None:
        return None
    last = parse_timestamp(last_fetch_at)
    if target.schedule.interval is not None:
        due = last + timedelta(seconds=target.schedule.interval)
    else:
        from apscheduler.triggers.cron import CronTrigger

        trigger = CronTrigger.from_crontab(target.schedule.cron, timezone=timezone.utc)
        due = trigger.get_next_fire_time(None, last)
    return due if due > now else None


def failure_backoff(target: Target, consecutive_failures: int) -> float:
    """Seconds before retrying a failing target: doubling from a quarter of the interval
    (at most a minute) and never longer than the interval itself."""
    from .backoff import backoff

    interval = target.schedule.approx_interval()
    return backoff(consecutive_failures, base=max(1.0, min(60.0, interval / 4)), cap=interval, spread=0.0)


# ----------------------------------------------------------------------------- the daemon


@dataclass
class DaemonStats:
    checks: int = 0
    failures: int = 0
    new_versions: int = 0
    started: float = field(default_factory=time.monotonic)


class CheckSlots:
    """At most `limit` checks at once over all targets (defaults.concurrency), as in
    `monitor check`; a reload may change the limit while checks wait or run."""

    def __init__(self, limit: int):
        self.limit = limit
        self.running = 0
        self._changed = asyncio.Condition()

    @property
    def full(self) -> bool:
        return self.running >= self.limit

    @contextlib.asynccontextmanager
    async def hold(self) -> Any:
        async with self._changed:
            await self._changed.wait_for(lambda: self.running < self.limit)
            self.running += 1
        try:
            yield
        finally:
            self.running -= 1  # before any await: a cancelled release still frees the slot
            async with self._changed:
                self._changed.notify_all()

    async def resize(self, limit: int) -> None:
        async with self._changed:
            self.limit = limit
            self._changed.notify_all()


class Daemon:
    """Owns the scheduler, the shared fetcher (one browser), the store and the sender."""

    def __init__(self, config: Config, *, log: EventLog | None = None, deliver_alerts: bool = True):
        self.config = config
        self.log = log or EventLog()
        self.deliver_alerts = deliver_alerts
        self.stats = DaemonStats()
        self._stop = asyncio.Event()
        self._signals = 0
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._config_mtime = self._mtime()
        self.sender: AlertSender | None = None
        self.scheduler: Any = None
        self.store: Store | None = None
        self.ctx: CheckContext | None = None
        self.slots = CheckSlots(config.distributed.max_pending if config.distributed else config.defaults.concurrency)
        self.fleet: Any = None  # monitor.distributed.Fleet, with `distributed:` only
        self._fetcher_of: dict[str, Any] = {}  # target id -> the fetcher its running check uses
        self._retired: list[Any] = []  # fetchers replaced by a reload, closed once idle
        self._feeds: Any = None  # the FeedUpdater, once feeds: is set

    # -------------------------------------------------------------- lifecycle

    async def run(self) -> int:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        from .check import CheckContext
        from .fetch import Fetcher
        from .flags import load_rules

        lock = DaemonLock(self.config.db_path)
        lock.acquire()
        self.store = Store.open(self.config)
        self.store.sync_targets(self.config.targets)
        fetcher = Fetcher(self.config.defaults)
        self.ctx = CheckContext(self.config, self.store, fetcher, rules=load_rules(), sleep=self._sleep)
        if self.config.distributed is not None:  # workers fetch; this process stays the one writer
            from .distributed import Fleet

            self.fleet = await Fleet(self.config.distributed, self.config.defaults, event=self.log).start()
            self.ctx.capturer = self.fleet.capture
        self.scheduler = AsyncIOScheduler(timezone=timezone.utc, job_defaults={"coalesce": True, "max_instances": 1})
        self._install_signals()
        self.log("daemon-start", pid=os.getpid(), config=self.config.path, db=self.config.db_path,
                 targets=len(self.config.enabled_targets))
        background: list[asyncio.Task[Any]] = []
        try:
            self.scheduler.start()
            self._schedule_all(self.config, initial=True)
            background = [
                asyncio.create_task(self._heartbeat()),
                asyncio.create_task(self._watch_config()),
            ]
            self._start_sender()
            self._write_feeds(None)
            await self._stop.wait()
        finally:
            await self._shutdown(background)
            lock.release()
        return 0

    async def _shutdown(self, background: list[asyncio.Task[Any]]) -> None:
        """Stop scheduling and sending, let in-flight checks finish (database writes never
        straddle an await, so cancelling a check cannot leave half a version), let the
        message in flight be recorded, close the browser, and only then the store."""
        if self.scheduler is not None:
            with contextlib.suppress(Exception):
                self.scheduler.shutdown(wait=False)
        if self.sender is not None:
            self.sender.stop()
        running = [t for t in self._running.values() if not t.done()]
        sending = self.sender is not None and self.sender.busy
        if running or sending:
            self.log("daemon-stopping", in_flight=len(running), sending=sending or None)
        if running:
            _, pending = await asyncio.wait(running, timeout=STOP_GRACE_SECONDS / 2)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        heartbeat, others = background[:1], background[1:]
        for task in others:
            task.cancel()
        if heartbeat:  # not cancelled: it finishes the write it is in, then clears the heartbeat
            await asyncio.wait(heartbeat, timeout=2 * HEARTBEAT_SECONDS)
        if self.sender is not None:
            bound = sender_stop_seconds(self.config)
            if not await asyncio.to_thread(self.sender.join, bound):
                # its claim is a lease: a later sender takes the message over when it runs out
                self.log("sender-abandoned", waited=bound)
        for fetcher in [*self._retired, *([self.ctx.fetcher] if self.ctx else [])]:
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(fetcher.close(), timeout=3.0)
        if self.fleet is not None:
            await self.fleet.close()
        if self.store is not None:
            self.store.set_meta("heartbeat", "")
            self.store.close()
        self.log("daemon-stop", checks=self.stats.checks, new_versions=self.stats.new_versions, failures=self.stats.failures)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload("SIGHUP")))
        loop.set_exception_handler(self._on_loop_error)

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Errors no task awaited (inside libraries) become one event line, not a traceback.
        While stopping they are expected: Ctrl-C in a terminal also reaches the browser and
        its Playwright driver, which then close under our feet."""
        if self._stop.is_set():
            return
        exc = context.get("exception")
        self.log("internal-error", message=context.get("message"), error=f"{exc.__class__.__name__}: {exc}" if exc else None)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals > 1:
            self.log("daemon-forced-exit", signal=sig.name)
            os._exit(1)
        self.log("daemon-signal", signal=sig.name)
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()

    async def _sleep(self, seconds: float) -> None:
        """Sleeps inside checks (the confirm delay) end early when the daemon stops."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        if self._stop.is_set():
            raise asyncio.CancelledError

    def _mtime(self) -> float | None:
        try:
            return self.config.path.stat().st_mtime
        except OSError:
            return None

    # -------------------------------------------------------------- scheduling

    def _schedule_all(self, config: Config, *, initial: bool) -> None:
        now = datetime.now(timezone.utc)
        overdue: list[Target] = []
        for target in config.enabled_targets:
            row = self.store.target_row(target.id) if self.store else None
            due = next_run_after_restart(target, (row or {}).get("last_fetch_at"), now)
            if due is None:
                overdue.append(target)
            self._add_job(target, due or now)
        # overdue targets run soon, spread over up to a minute rather than all at once
        spread = min(60.0, 2.0 * len(overdue)) if len(overdue) > 1 else 0.0
        for index, target in enumerate(overdue):
            offset = spread * index / max(1, len(overdue))
            self._reschedule(target.id, now + timedelta(seconds=offset + random.uniform(0, 0.5)))
        if initial:
            self.log("schedule", due_now=len(overdue), waiting=len(config.enabled_targets) - len(overdue))

    def _trigger(self, target: Target) -> Any:
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        jitter = jitter_seconds(target, self.config.defaults.jitter) or None
        if target.schedule.interval is not None:
            return IntervalTrigger(seconds=target.schedule.interval, jitter=jitter, timezone=timezone.utc)
        minute, hour, day, month, day_of_week = target.schedule.cron.split()
        return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week, jitter=jitter, timezone=timezone.utc)

    def _add_job(self, target: Target, first_run: datetime) -> None:
        self.scheduler.add_job(
            self._run_target, trigger=self._trigger(target), args=[target.id], id=target.id,
            name=target.id, next_run_time=first_run, replace_existing=True,
            misfire_grace_time=max(1, int(target.schedule.approx_interval())),
        )
        self._record_due(target.id)

    def _reschedule(self, target_id: str, when: datetime) -> None:
        job = self.scheduler.get_job(target_id)
        if job is not None:
            job.modify(next_run_time=when)
            self._record_due(target_id)

    def _record_due(self, target_id: str) -> None:
        job = self.scheduler.get_job(target_id)
        if job is not None and job.next_run_time is not None and self.store is not None:
            self.store.update_target(target_id, next_due_at=to_timestamp(job.next_run_time))

    # -------------------------------------------------------------- one check

    async def _run_target(self, target_id: str) -> None:
        if self._stop.is_set() or self.ctx is None:
            return
        try:
            target = self.config.target(target_id)
        except ConfigError:
            return  # removed by a reload while queued
        task = asyncio.current_task()
        assert task is not None
        self._running[target_id] = task
        from .check import check_target

        try:
            if self.slots.full:
                self.log("fetch-queued", target=target_id, running=self.slots.running, concurrency=self.slots.limit)
                if self.fleet is not None:
                    self.log("back-pressure", waiting_on_workers=self.fleet.pending, bound=self.slots.limit)
            async with self.slots.hold():
                if self._stop.is_set():
                    return
                ctx = self.ctx  # a reload may bring a new fetcher; this check keeps its own
                self._fetcher_of[target_id] = ctx.fetcher
                self.log("fetch-start", target=target_id)
                started = time.monotonic()
                result = await check_target(ctx, target)
                seconds = time.monotonic() - started
                if target.discover and result.outcome != "failed":
                    await self._discover(target, ctx)
        except asyncio.CancelledError:
            self.log("fetch-cancelled", target=target_id)
            return
        finally:
            self._running.pop(target_id, None)
            self._fetcher_of.pop(target_id, None)
        self._after_check(target, result, seconds)
        await self._close_idle_fetchers()

    async def _discover(self, target: Target, ctx: Any) -> None:
        """`discover:` targets: new linked help pages, reported as an alert (monitor/discover.py).
        A failure is one event line; the check it follows stands."""
        from .discover import discovery_due, scheduled_discovery
        from .flags import load_rules

        try:
            if not discovery_due(ctx.store, target, time.time()):
                return
            rules = ctx.rules or load_rules(strict=False)
            new = await scheduled_discovery(self.config, ctx.store, ctx.fetcher, rules, target, now=time.time())
        except Exception as exc:  # noqa: BLE001 - isolated like a listener: logged, the daemon goes on
            self.log("discover-failed", target=target.id, error=f"{exc.__class__.__name__}: {exc}")
            return
        self.log("discovered", target=target.id, new=len(new))
        if new:
            self._wake_sender()

    def _after_check(self, target: Target, result: TargetResult, seconds: float) -> None:
        self.stats.checks += 1
        self.log("fetch-end", target=target.id, outcome=result.outcome, engine=result.engine, seconds=round(seconds, 2))
        if result.version is not None and result.outcome in ("new-version", "first-version"):
            self.stats.new_versions += 1
            self.log("new-version", target=target.id, version=result.version.seq, summary=result.summary or None, change=result.change_id)
            self._wake_sender()
            if result.change_id is not None:
                self._write_feeds([target.id])
        if result.n_flags:
            self.log("flagged-change", target=target.id, change=result.change_id, flags=result.n_flags)
        if result.outcome == "failed":
            self.stats.failures += 1
            row = self.store.target_row(target.id) or {} if self.store else {}
            failures = int(row.get("consecutive_failures") or 1)
            delay = failure_backoff(target, failures)
            self.log("failure", target=target.id, kind=result.error_kind, error=result.error, consecutive=failures, retry_in=round(delay, 1))
            self._reschedule(target.id, datetime.now(timezone.utc) + timedelta(seconds=delay))
        else:
            self._record_due(target.id)
        if result.state_change:
            self.log(result.state_change, target=target.id)
            self._wake_sender()

    def _write_feeds(self, target_ids: list[str] | None) -> None:
        """Rewrite the Atom feeds (feeds: in targets.yaml) a change concerns, off the loop."""
        if self.config.feeds is not None:
            from .feeds import FeedUpdater

            self._feeds = self._feeds or FeedUpdater(self.log)
            self._feeds.update(self.config, target_ids)

    # -------------------------------------------------------------- background tasks

    async def _heartbeat(self) -> None:
        """Beat every few seconds, on a connection of its own and off the event loop, so a
        busy database delays neither the beat nor the checks. A failed beat (another writer
        holding the database, say) is one event line and a retry with backoff; the beats go
        on. Ends by clearing the heartbeat when the daemon stops."""
        from .backoff import backoff

        store: Store | None = None
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    if store is None:
                        store = await asyncio.to_thread(Store.open, self.config)
                        await asyncio.to_thread(store.db.execute, f"PRAGMA busy_timeout = {int(HEARTBEAT_SECONDS * 1000)}")
                    chain = await asyncio.to_thread(store.chain_head)  # verify can compare against it
                    beat = json.dumps({"at": utcnow(), "pid": os.getpid(), "checks": self.stats.checks, "chain": chain})
                    await asyncio.to_thread(store.set_meta, "heartbeat", beat)
                except Exception as exc:  # sqlite3.OperationalError ("database is locked"), StoreError
                    failures += 1
                    delay = backoff(failures, base=0.5, cap=HEARTBEAT_SECONDS)
                    if failures == 1:
                        self.log("heartbeat-failed", error=f"{exc.__class__.__name__}: {exc}", retry_in=round(delay, 1))
                else:
                    if failures:
                        self.log("heartbeat-restored", failures=failures)
                    failures, delay = 0, HEARTBEAT_SECONDS
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
        finally:
            if store is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(store.set_meta, "heartbeat", "")
                await asyncio.to_thread(store.close)

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_POLL_SECONDS)
            mtime = self._mtime()
            if mtime is not None and mtime != self._config_mtime:
                self._config_mtime = mtime
                await self.reload("file changed")

    async def reload(self, reason: str) -> None:
        from .targets import load_config

        try:
            new = load_config(self.config.path)
        except ConfigError as exc:
            self.log("reload-failed", reason=reason, problems=len(exc.problems), errors=" | ".join(str(p) for p in exc.problems), keeping="last good config")
            return
        old = self.config
        self.config = new
        if self.ctx is not None:
            self._apply_defaults(old, new)
        if self.store is not None:
            self.store.sync_targets(new.targets)
        old_targets = {t.id: t for t in old.enabled_targets}
        new_targets = {t.id: t for t in new.enabled_targets}
        for target_id in old_targets.keys() - new_targets.keys():
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(target_id)
        added = changed = 0
        now = datetime.now(timezone.utc)
        for target_id, target in new_targets.items():
            before = old_targets.get(target_id)
            if before == target:
                continue
            job = self.scheduler.get_job(target_id)
            keep = job.next_run_time if job is not None and before is not None and before.schedule == target.schedule else None
            row = self.store.target_row(target_id) if self.store else None
            due = keep or next_run_after_restart(target, (row or {}).get("last_fetch_at"), now) or now
            self._add_job(target, due)
            added += before is None
            changed += before is not None
        self._start_sender()
        self._wake_sender()
        self.log("reload", reason=reason, targets=len(new_targets), added=added, changed=changed,
                 removed=len(old_targets.keys() - new_targets.keys()))

    def _apply_defaults(self, old: Config, new: Config) -> None:
        """Checks from now on use the new config. When `defaults:` changed, they also get a
        new fetcher (host delay and concurrency, browser recycling, timeouts) and the new
        concurrency; running checks finish with the fetcher they started with."""
        from dataclasses import replace

        from .fetch import Fetcher

        assert self.ctx is not None
        if self.fleet is not None:
            self.fleet.defaults = new.defaults
        if new.defaults == old.defaults:
            self.ctx.config = new
            return
        self._retired.append(self.ctx.fetcher)
        self.ctx = replace(self.ctx, config=new, fetcher=Fetcher(new.defaults))
        asyncio.ensure_future(self.slots.resize(new.distributed.max_pending if self.fleet is not None and new.distributed else new.defaults.concurrency))
        asyncio.ensure_future(self._close_idle_fetchers())
        self.log("fetcher-rebuilt", concurrency=new.defaults.concurrency, host_concurrency=new.defaults.host_concurrency,
                 host_delay=new.defaults.host_delay, recycle_after=new.defaults.recycle_after)

    async def _close_idle_fetchers(self) -> None:
        """Close fetchers retired by a reload once no running check uses them."""
        in_use = {id(f) for f in self._fetcher_of.values()}
        idle = [f for f in self._retired if id(f) not in in_use]
        self._retired = [f for f in self._retired if id(f) in in_use]
        for fetcher in idle:
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(fetcher.close(), timeout=3.0)

    def _start_sender(self) -> None:
        """Start the sender once alerts are configured (at start, or by a later reload)."""
        if self.sender is None and self.deliver_alerts and self.config.alerts.enabled and not self._stop.is_set():
            self.sender = AlertSender(lambda: self.config, self.log)
            self.sender.start()

    def _wake_sender(self) -> None:
        if self.sender is not None:
            self.sender.wake()


class AlertSender:
    """The daemon's outbox sender: one thread with its own database connection, so a slow
    mail server never holds up checks. Stopping lets the message in flight finish and be
    recorded, starts no other, and the connection is closed by the thread itself once it
    is done: a stop never leaves an accepted message marked `sending`, to be sent again."""

    def __init__(self, config: Callable[[], Config], log: EventLog):
        self._config = config  # read before each run: a reload applies without a restart
        self._log = log
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.busy = False  # inside deliver_pending (a message may be in flight)
        self._thread = threading.Thread(target=self._loop, name="alert-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Ask the thread to finish: no new message is started after this."""
        self._stopping.set()
        self._wake.set()

    def join(self, timeout: float) -> bool:
        """Wait for the thread to end; True when it did (its connection is then closed)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        from .alerts import deliver_pending
        from .errors import MonitorError

        try:
            store = Store.open(self._config())
        except MonitorError as exc:
            self._log("alerts-error", error=str(exc))
            return
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                config = self._config()
                if config.alerts.enabled:
                    self.busy = True
                    try:
                        report = deliver_pending(store, config, stopping=self._stopping.is_set)
                        if report.sent or report.failed:
                            self._log("alerts", sent=report.sent, failed=report.failed, pending=report.pending)
                    except Exception as exc:  # a broken channel or a busy database must not stop the sender
                        self._log("alerts-error", error=f"{exc.__class__.__name__}: {exc}")
                    finally:
                        self.busy = False
                self._wake.wait(SENDER_POLL_SECONDS)
        finally:
            store.close()


def sender_stop_seconds(config: Config) -> float:
    """How long a stop waits for a message in flight: each SMTP step or webhook request has
    its own timeout, so two of them cover a send already under way."""
    timeouts = [c.timeout for c in (config.alerts.smtp, config.alerts.webhook) if c is not None]
    return max(STOP_GRACE_SECONDS, 2 * max(timeouts, default=0.0))


class EventLogHandler(logging.Handler):
    """Library log records (APScheduler's skipped runs, the check's warnings) as `log`
    events, so that under --log-format json every line on stderr is JSON."""

    def __init__(self, log: EventLog):
        super().__init__()
        self.event_log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            exc = record.exc_info[1] if record.exc_info else None
            self.event_log(
                "log", level=record.levelname.lower(), logger=record.name, message=record.getMessage(),
                error=f"{exc.__class__.__name__}: {exc}" if exc else None,
                traceback=self.formatException(record.exc_info) if record.exc_info else None,
            )
        except Exception:  # logging must never stop the daemon
            self.handleError(record)


def run_daemon(config: Config, *, log_format: str = "text", deliver_alerts: bool = True) -> int:
    log = EventLog(log_format)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [EventLogHandler(log)]  # every record through the daemon's formatter
    try:
        return asyncio.run(Daemon(config, log=log, deliver_alerts=deliver_alerts).run())
    finally:
        root.handlers = saved


# ----------------------------------------------------------------------------- status


@dataclass
class TargetStatus:
    id: str
    state: str
    last_check: str | None
    last_outcome: str | None
    last_error: str | None
    last_change: str | None
    next_due: str | None
    consecutive_failures: int
    versions: int


def daemon_status(store: Store) -> dict[str, Any]:
    """Is a daemon alive? Judged from its heartbeat in the database."""
    raw = store.get_meta("heartbeat")
    if not raw:
        return {"alive": False, "heartbeat": None, "pid": None}
    info = json.loads(raw)
    age = (datetime.now(timezone.utc) - parse_timestamp(info["at"])).total_seconds()
    return {"alive": age < HEARTBEAT_SECONDS * 3, "heartbeat": info["at"], "age_seconds": round(age, 1), "pid": info.get("pid"), "checks": info.get("checks")}


def target_statuses(config: Config, store: Store) -> list[TargetStatus]:
    out = []
    for target in config.targets:
        row = store.target_row(target.id) or {}
        last = store.last_fetch(target.id)
        versions = store.db.execute("select count(*) from versions where target_id = ?", [target.id]).fetchone()[0]
        next_due = row.get("next_due_at")
        if not next_due and target.enabled:
            due = next_run_after_restart(target, row.get("last_fetch_at"), datetime.now(timezone.utc))
            next_due = to_timestamp(due) if due else "now"
        out.append(TargetStatus(
            id=target.id,
            state=("disabled" if not target.enabled else row.get("state") or "new"),
            last_check=last["started_at"] if last else None,
            last_outcome=last["outcome"] if last else None,
            last_error=(f"{last['error_kind']}: {last['error_message']}" if last and last["error_kind"] else None),
            last_change=row.get("last_change_at"),
            next_due=next_due if target.enabled else None,
            consecutive_failures=int(row.get("consecutive_failures") or 0),
            versions=versions,
        ))
    return out
