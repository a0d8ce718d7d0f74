"""The daemon as a real subprocess, with schedules in seconds, against a local server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from monitor.store import Store, utcnow
from monitor.targets import load_config

from .conftest import POLICY, ROOT, Site, browser_pids, in_process, local_server, page, run_cli, wait_for, write_config
from .test_alerts import Mailbox, SmtpServer, email_alerts, smtp  # noqa: F401 - smtp is a fixture

pytestmark = pytest.mark.slow
AI_CLAUSE = "We may use your personal data to develop and train artificial intelligence (AI) models."


class DaemonProcess:
    """`monitor run` in a subprocess, its JSON event log read from a file."""

    def __init__(self, config: Path, log: Path):
        self.config = config
        self.log = log
        self.handle = log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(config), "run", "--log-format", "json"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self.handle, stdin=subprocess.DEVNULL,
        )

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if name is None or event.get("event") == name:
                out.append(event)
        return out

    def wait_event(self, name: str, *, count: int = 1, timeout: float = 30, where: Callable[[dict[str, Any]], bool] = lambda e: True) -> list[dict[str, Any]]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = [e for e in self.events(name) if where(e)]
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        raise AssertionError(f"no {name} event within {timeout}s: {self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.handle.close()
        return code


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        d.handle.close()


def start(daemons: list[DaemonProcess], config: Path, log: Path) -> DaemonProcess:
    d = DaemonProcess(config, log)
    daemons.append(d)
    return d


def targets_for(site: Site, count: int, schedule: str = "2s") -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        url = site.set(f"/p{i}", page(*POLICY, f"Clause {i}."))
        out.append({"id": f"p{i}", "service": "S", "document": "terms", "url": url, "schedule": schedule})
    return out


def test_detects_a_change_within_its_interval_and_stops_cleanly(tmp_path: Path, site: Site, daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path, targets_for(site, 2), defaults={"jitter": 0})
    d = start(daemons, config, tmp_path / "daemon.log")
    d.wait_event("new-version", count=2, timeout=30)
    site.set("/p0", page(*POLICY, "Clause 0.", AI_CLAUSE))
    changed_at = time.time()
    found = d.wait_event("new-version", count=1, timeout=15, where=lambda e: e["target"] == "p0" and e.get("version") == 2)
    assert found and time.time() - changed_at < 2 * 2 + 3  # within its 2s interval (plus a fetch)
    flagged = d.wait_event("flagged-change", where=lambda e: e["target"] == "p0")
    assert flagged[0]["flags"] >= 1
    stop_at = time.time()
    assert d.stop() == 0
    assert time.time() - stop_at < 10
    assert d.events("daemon-stop")
    assert run_cli("--config", str(config), "verify").code == 0


def test_restart_does_not_refetch_everything(tmp_path: Path, site: Site, daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path, targets_for(site, 3, schedule="1h"))
    first = start(daemons, config, tmp_path / "first.log")
    first.wait_event("fetch-end", count=3)
    assert first.stop() == 0
    hits = sum(site.hits.values())
    second = start(daemons, config, tmp_path / "second.log")
    second.wait_event("schedule")
    time.sleep(3)
    assert sum(site.hits.values()) == hits  # nothing was due: the last fetches are recent
    assert second.events("schedule")[0]["due_now"] == 0
    assert second.stop() == 0


def test_kill_9_then_restart_and_verify(tmp_path: Path, site: Site, daemons: list[DaemonProcess]) -> None:
    targets = targets_for(site, 6, schedule="1s")
    config = write_config(tmp_path, targets, defaults={"jitter": 0})
    counter = {"n": 0}

    def changing() -> str:
        counter["n"] += 1
        return page(*POLICY, f"Revision {counter['n']}.")

    for i in range(6):
        site.set(f"/p{i}", changing)
    d = start(daemons, config, tmp_path / "a.log")
    d.wait_event("new-version", count=10, timeout=40)
    d.stop(signal.SIGKILL)
    lock_holder = start(daemons, config, tmp_path / "b.log")  # the stale lock does not block a restart
    lock_holder.wait_event("new-version", count=3, timeout=30)
    assert lock_holder.stop() == 0
    verify = run_cli("--config", str(config), "verify")
    assert verify.code == 0, verify.out


def test_a_second_daemon_is_refused(tmp_path: Path, site: Site, daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path, targets_for(site, 1, schedule="1h"))
    d = start(daemons, config, tmp_path / "a.log")
    d.wait_event("daemon-start")
    second = run_cli("--config", str(config), "run", timeout=30)
    assert second.code == 2
    assert second.err.strip().startswith("error: another daemon (pid ")
    assert len(second.err.strip().splitlines()) == 1
    assert d.proc.poll() is None
    assert d.stop() == 0


def test_bad_config_reload_keeps_the_old_config_then_a_good_one_applies(tmp_path: Path, site: Site, daemons: list[DaemonProcess]) -> None:
    targets = targets_for(site, 1, schedule="2s")
    config = write_config(tmp_path, targets, defaults={"jitter": 0})
    good_text = config.read_text()
    d = start(daemons, config, tmp_path / "d.log")
    d.wait_event("fetch-end")
    config.write_text(good_text.replace("schedule: 2s", "schedule: whenever"))
    os.kill(d.proc.pid, signal.SIGHUP)
    failed = d.wait_event("reload-failed")
    assert "'whenever' is not a schedule" in failed[0]["errors"]
    before = len(d.events("fetch-end"))
    d.wait_event("fetch-end", count=before + 1, timeout=10)  # still checking on the old config
    new_url = site.set("/new", page(*POLICY, "A new document."))
    extra = write_config(tmp_path, [*targets, {"id": "added", "service": "N", "document": "faq", "url": new_url, "schedule": "2s"}], defaults={"jitter": 0}, name="next.yaml")
    time.sleep(1.1)  # a new modification time
    config.write_text(extra.read_text())
    reload = d.wait_event("reload", timeout=15)
    assert reload[0]["added"] == 1
    d.wait_event("new-version", where=lambda e: e["target"] == "added", timeout=15)
    assert d.stop() == 0


def test_chromium_killed_and_the_next_checks_succeed(tmp_path: Path, site: Site, daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path, targets_for(site, 2, schedule="2s"), defaults={"engine": "browser", "jitter": 0})
    d = start(daemons, config, tmp_path / "c.log")
    d.wait_event("fetch-end", count=2, timeout=40)
    pids = browser_pids(d.proc.pid)
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    marker = len(d.events("fetch-end"))
    ok = d.wait_event("fetch-end", count=marker + 3, timeout=40)
    assert all(e["outcome"] != "failed" for e in ok[marker + 1:]), ok[marker:]
    assert d.stop() == 0


def test_failures_back_off_and_status_shows_the_daemon(tmp_path: Path, site: Site, daemons: list[DaemonProcess]) -> None:
    url = site.set("/bad", page("x"), status=503)
    config = write_config(tmp_path, [{"id": "bad", "service": "B", "document": "terms", "url": url, "schedule": "8s"}],
                          defaults={"jitter": 0, "retries": 0, "failure_threshold": 2})
    d = start(daemons, config, tmp_path / "f.log")
    failures = d.wait_event("failure", count=3, timeout=40)
    delays = [e["retry_in"] for e in failures]
    assert delays == sorted(delays) and delays[0] < delays[-1] <= 8  # doubling, capped at the interval
    d.wait_event("failing", timeout=10)
    status = run_cli("--config", str(config), "status", "--format", "json")
    data = json.loads(status.out)
    assert data["daemon"]["alive"] is True
    assert data["targets"][0]["state"] == "failing" and data["targets"][0]["consecutive_failures"] >= 2
    assert d.stop() == 0
    with Store.open(load_config(config)) as store:
        assert store.get_meta("heartbeat") == ""


# ----------------------------------------------------------------------------- stopping with mail in flight


class HeldMailbox(Mailbox):
    """Tells the test when a message's DATA has arrived, then holds the server's 250 until
    the test lets it go: the daemon is signalled between the data and the acceptance."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd hook name
        self.envelopes.append(envelope)
        self.arrived.set()
        deadline = time.monotonic() + 60
        while not self.release.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return "250 OK"


def queue_change_alert(tmp_path: Path, site: Site, alerts: dict[str, Any], path: str = "/privacy") -> Path:
    """A target with a recorded change whose email is queued but not sent."""
    site.set(path, page(*POLICY))
    config = write_config(tmp_path, [{"id": "acme", "service": "Acme", "document": "privacy-policy", "url": site.url(path)}], alerts=alerts)
    assert in_process("--config", str(config), "check")[0] == 0
    site.set(path, page(*POLICY, AI_CLAUSE))
    assert in_process("--config", str(config), "check", "--no-alerts")[0] == 0
    return config


def test_sigterm_between_data_and_acceptance_delivers_once(tmp_path: Path, site: Site, smtp: Callable[..., SmtpServer], daemons: list[DaemonProcess]) -> None:
    server = smtp()
    held = server.mailbox = HeldMailbox()
    server.start()
    config = queue_change_alert(tmp_path, site, email_alerts(server.port))
    d = start(daemons, config, tmp_path / "a.log")
    assert held.arrived.wait(30), f"the daemon's sender never sent DATA: {d.log.read_text()[-2000:]}"
    d.proc.send_signal(signal.SIGTERM)
    d.wait_event("daemon-signal")  # the daemon is stopping; only now does the server accept
    held.release.set()
    assert d.proc.wait(timeout=60) == 0, d.log.read_text()[-2000:]  # one signal: a clean stop
    assert d.events("daemon-stop")

    server.mailbox.arrived = threading.Event()
    site.set("/privacy", page(*POLICY, AI_CLAUSE, "We keep logs for two years."))
    again = start(daemons, config, tmp_path / "b.log")  # restart; a new change gives the sender work
    assert in_process("--config", str(config), "check", "--no-alerts")[0] == 0
    again.wait_event("alerts", where=lambda e: e.get("sent", 0) >= 1, timeout=30)
    assert again.stop() == 0
    cfg = load_config(config)
    from monitor.alerts import deliver_pending, list_alerts

    with Store.open(cfg) as store:  # long after every claim's lease: nothing is left to resend
        deliver_pending(store, cfg, now=datetime.now(timezone.utc) + timedelta(days=1))
        rows = list_alerts(store)
    ids = Counter(m["Message-ID"] for m in server.messages)
    assert len(ids) == 2 and set(ids.values()) == {1}, ids
    assert {r.state for r in rows} == {"sent"} and {r.message_id for r in rows} == set(ids)


# ----------------------------------------------------------------------------- limits, reload, heartbeat


class HeldSite:
    """A local server that answers only while its gate is open, and counts the requests it
    is holding at once: what the daemon's concurrency limits are measured by."""

    def __init__(self) -> None:
        self.bodies: dict[str, str] = {}
        self.gate = threading.Event()
        self.gate.set()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self.server = local_server(lambda handler, _head: self._serve(handler))

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def hold(self) -> None:
        with self._lock:
            self.max_in_flight = self.in_flight
        self.gate.clear()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self.gate.wait(90)
            body = self.bodies.get(handler.path, "").encode()
            handler.send_response(200 if body else 404)
            handler.send_header("Content-Type", "text/html; charset=utf-8")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with self._lock:
                self.in_flight -= 1

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def held_site() -> Iterator[HeldSite]:
    server = HeldSite()
    yield server
    server.close()




def held_targets(held: HeldSite, count: int, schedule: str = "1h") -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        held.bodies[f"/p{i}"] = page(*POLICY, f"Clause {i}.")
        out.append({"id": f"p{i}", "service": f"S{i}", "document": "terms", "url": held.url(f"/p{i}"), "schedule": schedule})
    return out


def test_the_daemon_runs_at_most_concurrency_checks_at_once(tmp_path: Path, held_site: HeldSite, daemons: list[DaemonProcess]) -> None:
    held_site.hold()
    config = write_config(tmp_path, held_targets(held_site, 4), defaults={"concurrency": 2, "host_concurrency": 8, "jitter": 0, "timeout": "90s"})
    d = start(daemons, config, tmp_path / "d.log")
    # all four are overdue and start within seconds: either they all reach the server, or two wait for a slot
    reached = wait_for(lambda: held_site.in_flight + len(d.events("fetch-queued")) >= 4, 40)
    assert reached, f"in flight {held_site.in_flight}, queued {d.events('fetch-queued')}"
    assert held_site.max_in_flight == 2
    held_site.gate.set()
    d.wait_event("fetch-end", count=4, timeout=40)
    assert held_site.max_in_flight == 2
    assert d.stop() == 0


def test_a_reload_rebuilds_the_fetcher_and_starts_the_sender(tmp_path: Path, held_site: HeldSite, smtp: Callable[..., SmtpServer], daemons: list[DaemonProcess]) -> None:
    server = smtp().start()
    targets = held_targets(held_site, 3)
    limits = {"jitter": 0, "timeout": "90s"}
    config = write_config(tmp_path, targets, defaults={**limits, "concurrency": 1, "host_concurrency": 1})  # no alerts yet
    d = start(daemons, config, tmp_path / "d.log")
    d.wait_event("fetch-end", count=3, timeout=40)
    assert held_site.max_in_flight == 1
    held_site.hold()
    for i in range(3):
        held_site.bodies[f"/p{i}"] = page(*POLICY, f"Clause {i}.", AI_CLAUSE)
    write_config(tmp_path, [{**t, "schedule": "2s"} for t in targets], defaults={**limits, "concurrency": 3, "host_concurrency": 3},
                 alerts=email_alerts(server.port))
    os.kill(d.proc.pid, signal.SIGHUP)
    d.wait_event("reload", timeout=15)
    assert wait_for(lambda: held_site.in_flight == 3, 30), f"at most {held_site.max_in_flight} fetches at once after the reload"
    held_site.gate.set()
    assert wait_for(lambda: len(server.messages) == 3, 60), f"{len(server.messages)} emails: {d.log.read_text()[-2000:]}"
    assert d.stop() == 0


def test_the_heartbeat_outlives_a_locked_database(tmp_path: Path, site: Site, daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path, targets_for(site, 1, schedule="1h"))
    cfg = load_config(config)
    d = start(daemons, config, tmp_path / "d.log")
    d.wait_event("fetch-end")

    def beat() -> dict[str, Any] | None:
        with Store.open(cfg) as store:
            raw = store.get_meta("heartbeat")
        return json.loads(raw) if raw else None

    assert wait_for(lambda: beat() is not None)
    blocker = sqlite3.connect(cfg.db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database
    try:
        failed = d.wait_event("heartbeat-failed", timeout=90)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert "locked" in failed[0]["error"]
    released = utcnow()
    assert wait_for(lambda: (beat() or {}).get("at", "") > released, 30), "the heartbeat did not resume"
    status = json.loads(run_cli("--config", str(config), "status", "--format", "json").out)
    assert status["daemon"]["alive"] is True
    assert len(d.events("heartbeat-failed")) == 1  # one line for the outage, not one per retry
    assert d.events("heartbeat-restored")
    assert d.stop() == 0


def test_library_warnings_are_json_events_under_log_format_json(tmp_path: Path, held_site: HeldSite, daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path, held_targets(held_site, 1, schedule="1s"), defaults={"jitter": 0, "timeout": "90s"})
    held_site.hold()  # the check outlasts its 1s interval: APScheduler skips the next run and says so
    d = start(daemons, config, tmp_path / "d.log")
    assert wait_for(lambda: "maximum number of running instances" in d.log.read_text(), 30), d.log.read_text()[-2000:]
    held_site.gate.set()
    assert d.stop() == 0
    lines = d.log.read_text().splitlines()
    not_json = [line for line in lines if not line.startswith("{")]
    assert not not_json, not_json
    [skipped, *_] = [e for e in d.events("log") if "maximum number of running instances" in e["message"]]
    assert skipped["level"] == "warning" and skipped["logger"].startswith("apscheduler")
