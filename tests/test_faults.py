"""Fault injection: `monitor check` killed with SIGKILL at moments aimed by polling the
database, run twice at once, and run beside the daemon, while a local server's pages change
(one test holds a fetch in the server until the other check's version is in the database).

Everything is real: the CLI in subprocesses, SQLite, the HTTP server, an SMTP server
(aiosmtpd), Chromium for one target. After the faults the database must still hold:
every version after the first joined to its predecessor in time by exactly one live
change, every substantive change with its alerts, no alert delivered under two
Message-IDs, `monitor verify` passing, and no process left behind.

The random suite runs MONITOR_FAULT_ITERATIONS iterations (default 6, bounded for
`make test`); set it higher for a long soak, e.g. MONITOR_FAULT_ITERATIONS=200.
MONITOR_FAULT_SEED replays one run.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import POLICY, ROOT, Site, page, run_cli, write_config
from .test_alerts import SmtpServer, email_alerts, free_port

POLL_DEADLINE = 120.0  # generous: a condition is waited for, never slept on


# ----------------------------------------------------------------------------- helpers


def start_check(config: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "check", *extra], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"},
    )


def count(db: Path, sql: str) -> int:
    """One read on its own connection (WAL: never blocks the writer, sees only commits)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:  # a table not created yet
        return 0
    finally:
        conn.close()


def kill_when(db: Path, proc: subprocess.Popen[str], sql: str, threshold: int, *, spawned: list[Any] | None = None) -> bool:
    """SIGKILL `proc` as soon as `sql` counts `threshold` or more; False if it ended first.
    The processes it had started at that moment (its browser) are added to `spawned`."""
    conn: sqlite3.Connection | None = None
    deadline = time.monotonic() + POLL_DEADLINE
    try:
        while time.monotonic() < deadline:
            hit = False
            try:
                if conn is None and db.exists():
                    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
                hit = conn is not None and int(conn.execute(sql).fetchone()[0]) >= threshold
            except sqlite3.OperationalError:  # not created yet
                pass
            if hit:
                if spawned is not None:
                    spawned.extend(descendants(proc.pid))
                proc.kill()
                proc.communicate(timeout=60)
                return True
            if proc.poll() is not None:
                proc.communicate(timeout=60)
                return False
            time.sleep(0.001)
    finally:
        if conn is not None:
            conn.close()
    proc.kill()
    proc.communicate(timeout=60)
    raise AssertionError(f"condition never met within {POLL_DEADLINE}s: {sql} >= {threshold}")


def rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def assert_invariants(db: Path, *, channels: int = 1) -> None:
    """What must hold whatever was killed, and when."""
    problems: list[str] = []
    for target in rows(db, "select id from targets"):
        versions = rows(db, "select id, seq, text_sha256 from versions where target_id = ? order by observed_at, seq", (target["id"],))
        if versions:
            into_first = rows(db, "select id from changes where new_version_id = ? and superseded_by is null", (versions[0]["id"],))
            if into_first:
                problems.append(f"{target['id']}@{versions[0]['seq']}: a live change into the first version")
        for prev, cur in zip(versions, versions[1:]):
            where = f"{target['id']}@{cur['seq']}"
            if prev["text_sha256"] == cur["text_sha256"]:
                problems.append(f"{where}: the same text as the version before it (stored twice)")
            live = rows(db, "select * from changes where new_version_id = ? and superseded_by is null", (cur["id"],))
            if len(live) != 1:
                problems.append(f"{where}: {len(live)} live changes into it (expected 1)")
                continue
            if live[0]["old_version_id"] != prev["id"]:
                problems.append(f"{where}: its change starts at version id {live[0]['old_version_id']}, not its predecessor {prev['id']}")
            if live[0]["substantive"]:
                n = count(db, f"select count(*) from alerts where change_id = {int(live[0]['id'])}")  # noqa: S608 - an int
                if n != channels:
                    problems.append(f"{where}: substantive change {live[0]['id']} has {n} alert rows (expected {channels})")
    assert problems == [], "\n".join(problems)


def assert_single_message_ids(db: Path, smtp: SmtpServer) -> None:
    """Each alert is delivered under one Message-ID, and each change by one alert."""
    alert_of = {r["message_id"]: r for r in rows(db, "select id, change_id, message_id from alerts where message_id is not null")}
    ids_by_change: dict[int, set[str]] = defaultdict(set)
    for message in smtp.messages:
        mid = str(message["Message-ID"])
        assert mid in alert_of, f"delivered {mid} belongs to no alert row (a row rolled back after sending?)"
        if alert_of[mid]["change_id"] is not None:
            ids_by_change[alert_of[mid]["change_id"]].add(mid)
    doubled = {change: mids for change, mids in ids_by_change.items() if len(mids) > 1}
    assert doubled == {}, f"changes announced under several Message-IDs: {doubled}"


def descendants(pid: int) -> list[Any]:
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def leftover_processes(spawned: list[Any]) -> list[str]:
    """Still running: our own children, or anything a killed check had started (orphans are
    re-parented to init, so they are tracked from the moment of the kill)."""
    import psutil

    found = []
    for proc in [*psutil.Process().children(recursive=True), *spawned]:
        try:
            if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "monitor" in cmd or "chrom" in cmd or "playwright" in cmd or "node" in cmd:
            found.append(f"{proc.pid} {cmd[:120]}")
    return sorted(set(found))


def wait_no_leftovers(spawned: list[Any]) -> list[str]:
    deadline = time.monotonic() + 30
    while (found := leftover_processes(spawned)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


class Pages:
    """Targets whose text the test revises: each revision adds a clause (a substantive change)."""

    def __init__(self, site: Site, n: int, *, browser: int = 0):
        self.site = site
        self.revision = [0] * n
        self.specs = []
        for i in range(n):
            url = site.set(f"/p{i}", self.body(i))
            engine = "browser" if i < browser else "http"
            self.specs.append({"id": f"p{i}", "service": "S", "document": "terms", "url": url, "engine": engine})

    def body(self, i: int) -> str:
        clauses = [f"From revision {r} on, we keep server logs for {r + 2} months." for r in range(1, self.revision[i] + 1)]
        return page(*POLICY, *clauses, f"This page is number {i}.")

    def revise(self, i: int) -> None:
        self.revision[i] += 1
        self.site.set(f"/p{i}", self.body(i))


def setup(tmp_path: Path, site: Site, n: int, *, smtp_port: int, browser: int = 0) -> tuple[Pages, Path, Path]:
    pages = Pages(site, n, browser=browser)
    config = write_config(tmp_path, pages.specs, alerts=email_alerts(smtp_port), defaults={"concurrency": 3})
    first = run_cli("--config", str(config), "check", "--no-alerts")
    assert first.code == 0, first.out + first.err
    return pages, config, tmp_path / "monitor.db"


# ----------------------------------------------------------------------------- reproductions


def test_kill_9_just_after_a_version_commits_loses_no_change(tmp_path: Path, site: Site) -> None:
    """The commit window of issue 12 #1: kill the moment a new version is visible."""
    pages, config, db = setup(tmp_path, site, 4, smtp_port=free_port())
    kills = 0
    for _ in range(4):
        for i in range(4):
            pages.revise(i)
        baseline = count(db, "select count(*) from versions")
        proc = start_check(config, "--no-alerts")
        kills += kill_when(db, proc, "select count(*) from versions", baseline + 1)
    assert kills > 0
    settle = run_cli("--config", str(config), "check", "--no-alerts")
    assert settle.code == 0, settle.out + settle.err
    assert_invariants(db)
    verify = run_cli("--config", str(config), "verify")
    assert verify.code == 0, verify.out + verify.err


def test_two_checks_at_once_store_one_version_and_one_alert(tmp_path: Path, site: Site) -> None:
    """Issue 12 #9: two `monitor check` processes on the same changed pages."""
    pages, config, db = setup(tmp_path, site, 3, smtp_port=free_port())
    for _ in range(4):
        for i in range(3):
            pages.revise(i)
        procs = [start_check(config, "--no-alerts") for _ in range(2)]
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, out + err
        assert_invariants(db)
    assert count(db, "select count(*) from versions") == 3 * 5
    assert count(db, "select count(*) from changes") == 3 * 4
    assert count(db, "select count(*) from alerts") == 3 * 4


def test_a_check_whose_predecessor_moved_meanwhile_diffs_against_the_new_one(tmp_path: Path, site: Site) -> None:
    """Issue 12 #9, aimed: two checks read the same latest version; the server answers the
    first, and holds the second until the first's version is in the database (polled), then
    serves another edit. The second change must start at the first's version, not at the
    version both read."""
    import threading

    pages, config, db = setup(tmp_path, site, 1, smtp_port=free_port())
    arrived = threading.Barrier(2, timeout=POLL_DEADLINE)
    served = 0
    lock = threading.Lock()
    baseline = count(db, "select count(*) from versions")

    def body() -> str:
        nonlocal served
        arrived.wait()  # both checks have read the latest version and are fetching
        with lock:
            served += 1
            mine = served
        if mine == 1:
            return pages.body(0)
        deadline = time.monotonic() + POLL_DEADLINE
        while count(db, "select count(*) from versions") == baseline and time.monotonic() < deadline:
            time.sleep(0.005)
        pages.revision[0] += 1
        return pages.body(0)

    pages.revision[0] += 1
    site.set("/p0", body)
    procs = [start_check(config, "--no-alerts") for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, out + err
    assert count(db, "select count(*) from versions") == baseline + 2
    assert_invariants(db)


def test_checks_beside_the_daemon_store_each_edit_once(tmp_path: Path, site: Site) -> None:
    """Issue 12 #9 with the daemon: `monitor check` runs again and again while the daemon
    checks the same pages every second; its heartbeat carries the chain head verify checks."""
    import json

    from .test_daemon import DaemonProcess

    pages, config, db = setup(tmp_path, site, 3, smtp_port=free_port())
    write_config(tmp_path, [{**spec, "schedule": "1s"} for spec in pages.specs], alerts=email_alerts(free_port()), defaults={"jitter": 0})
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        for round_ in range(4):
            for i in range(3):
                pages.revise(i)
            checked = run_cli("--config", str(config), "check", "--no-alerts")
            assert checked.code == 0, checked.out + checked.err
            daemon.wait_event("fetch-end", count=3 * (round_ + 1), timeout=POLL_DEADLINE)
        beat: dict[str, Any] = {}
        deadline = time.monotonic() + POLL_DEADLINE
        while "chain" not in beat and time.monotonic() < deadline:
            raw = rows(db, "select value from meta where key = 'heartbeat'")
            beat = json.loads(raw[0]["value"]) if raw and raw[0]["value"] else {}
            time.sleep(0.05)
        assert beat.get("chain"), beat
        assert daemon.stop() == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
    assert_invariants(db)
    assert count(db, "select count(*) from versions") == 3 * 5
    verify = run_cli("--config", str(config), "verify", "--head", beat["chain"])
    assert verify.code == 0, verify.out + verify.err


# ----------------------------------------------------------------------------- the random suite


def iterations() -> int:
    return int(os.environ.get("MONITOR_FAULT_ITERATIONS", "6"))


KILL_POINTS: list[tuple[str, Callable[[int], str]]] = [
    ("a fetch row", lambda _: "select count(*) from fetches"),
    ("a version", lambda _: "select count(*) from versions"),
    ("a change", lambda _: "select count(*) from changes"),
    ("an alert claimed", lambda _: "select count(*) from alerts where state in ('sending', 'sent')"),
    ("an alert sent", lambda _: "select count(*) from alerts where state = 'sent'"),
]


@pytest.mark.slow
@pytest.mark.timeout(300 + 60 * iterations())  # a soak scales the per-test limit with it
def test_random_kills_while_pages_change(tmp_path: Path, site: Site) -> None:
    seed = int(os.environ.get("MONITOR_FAULT_SEED", str(random.SystemRandom().randrange(10**6))))
    rng = random.Random(seed)
    smtp = SmtpServer().start()
    try:
        pages, config, db = setup(tmp_path, site, 5, smtp_port=smtp.port, browser=1)
        log: list[str] = []
        spawned: list[Any] = []
        for n in range(iterations()):
            for i in rng.sample(range(5), rng.randint(1, 3)):
                pages.revise(i)
            name, sql_of = rng.choice(KILL_POINTS)
            sql = sql_of(n)
            threshold = count(db, sql) + rng.randint(1, 3)
            procs = [start_check(config) for _ in range(rng.choice((1, 1, 2)))]
            killed = kill_when(db, procs[0], sql, threshold, spawned=spawned)
            for other in procs[1:]:
                other.communicate(timeout=240)
            log.append(f"{n}: {len(procs)} check(s), kill after {name} #{threshold}: {'killed' if killed else 'ended first'}")
        settle = run_cli("--config", str(config), "check")
        assert settle.code == 0, settle.out + settle.err
        delivered = [str(m["Message-ID"]) for m in smtp.messages]
        resent = len(delivered) - len(set(delivered))  # same Message-ID again: a kill between 250 and the commit
        context = f"seed {seed}; {len(spawned)} processes of killed checks tracked; {len(delivered)} emails, {resent} resent\n" + "\n".join(log)
        try:
            assert_invariants(db)
            assert_single_message_ids(db, smtp)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{context}") from None
        heads = sorted({str(m["X-Monitor-Chain"]) for m in smtp.messages})
        assert smtp.messages and all(m["X-Monitor-Chain"] for m in smtp.messages), context
        verify = run_cli("--config", str(config), "verify", *(arg for head in heads for arg in ("--head", head)))
        assert verify.code == 0, verify.out + verify.err + context
        print(context)
        assert wait_no_leftovers(spawned) == [], context
    finally:
        smtp.stop()


@pytest.fixture(autouse=True)
def _reap() -> Any:
    """Whatever a test leaves running is killed (and reported by the test that checks it)."""
    yield
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            if "monitor" in " ".join(child.cmdline()):
                child.send_signal(signal.SIGKILL)
        except psutil.Error:
            continue
