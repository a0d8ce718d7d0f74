"""`monitor check` end to end: real server, real SQLite, real CLI process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.store import Store
from monitor.targets import load_config

from .conftest import POLICY, ROOT, Site, browser_pids, page, run_cli, write_config
from .test_faults import count, kill_when, start_check

AI_CLAUSE = "We may use your personal data to improve, develop, and provide products and Services, develop and train artificial intelligence (AI) models."


def one_target(tmp_path: Path, site: Site, **target: object) -> Path:
    url = site.set("/privacy", page(*POLICY))
    return write_config(tmp_path, [{"id": "example-privacy", "service": "Example", "document": "privacy-policy", "url": url, **target}])


def open_store(config_path: Path) -> Store:
    return Store.open(load_config(config_path))


def test_first_check_unchanged_check_then_a_flagged_change(tmp_path: Path, site: Site) -> None:
    config = one_target(tmp_path, site)
    first = run_cli("--config", str(config), "check")
    assert first.code == 0, first.err
    assert "example-privacy: first version recorded (example-privacy@1)" in first.out
    assert "checked 1, new version 1, unchanged 0, failed 0" in first.out

    snapshots = tmp_path / "snapshots" / "example-privacy"
    files_before = sorted(p.name for p in snapshots.iterdir())
    again = run_cli("--config", str(config), "check")
    assert again.code == 0 and "example-privacy: unchanged" in again.out
    assert sorted(p.name for p in snapshots.iterdir()) == files_before
    with open_store(config) as store:
        assert store.counts()["fetches"] == 2 and store.counts()["versions"] == 1

    site.set("/privacy", page(*POLICY[:3], AI_CLAUSE, *POLICY[3:]))
    changed = run_cli("--config", str(config), "check")
    assert changed.code == 0, changed.err
    assert "new version example-privacy@2: 1 added; 1 flag (ai-training)" in changed.out
    with open_store(config) as store:
        change = next(store.db.query("select * from changes"))
        diff = json.loads(change["diff"])
    assert change["old_seq"] == 1 and change["new_seq"] == 2 and change["n_flags"] == 1
    added = [c for c in diff["changes"] if c["kind"] == "added"]
    assert added[0]["new"] == AI_CLAUSE
    assert added[0]["flags"][0]["category"] == "ai-training" and added[0]["flags"][0]["side"] == "new"

    stored = run_cli("--config", str(config), "diff", "example-privacy@latest~1", "example-privacy@latest", "--format", "json")
    assert stored.code == 0, stored.err
    assert json.loads(stored.out)["changes"][0]["flags"][0]["category"] == "ai-training"


def test_json_output_and_exit_codes(tmp_path: Path, site: Site) -> None:
    good = site.set("/good", page(*POLICY))
    config = write_config(tmp_path, [
        {"id": "good", "service": "A", "document": "terms", "url": good},
        {"id": "missing", "service": "B", "document": "terms", "url": site.url("/missing")},
    ])
    result = run_cli("--config", str(config), "check", "--format", "json")
    assert result.code == 0  # the pass completed; the failure is recorded and reported
    lines = [json.loads(line) for line in result.out.splitlines()]
    by_target = {line["target"]: line for line in lines if "target" in line}
    assert by_target["good"]["outcome"] == "first-version"
    assert by_target["missing"]["outcome"] == "failed" and by_target["missing"]["error_kind"] == "http-404"
    assert lines[-1]["summary"] == {"first-version": 1, "failed": 1}

    only_missing = run_cli("--config", str(config), "check", "missing")
    assert only_missing.code == 1  # every target failed
    assert "missing: failed (http-404)" in only_missing.out

    unknown = run_cli("--config", str(config), "check", "nope")
    assert unknown.code == 2 and unknown.err.startswith("error: ") and "no target with id 'nope'" in unknown.err
    assert "Traceback" not in unknown.err

    broken = tmp_path / "broken.yaml"
    broken.write_text("targets:\n  - id: x\n")
    invalid = run_cli("--config", str(broken), "check")
    assert invalid.code == 2 and "missing required field 'service'" in invalid.err


def test_failures_are_classified_and_a_target_becomes_failing_then_recovers(tmp_path: Path, site: Site) -> None:
    config = one_target(tmp_path, site)
    assert run_cli("--config", str(config), "check").code == 0
    site.set("/privacy", page("x"), status=500)
    for _ in range(4):
        run_cli("--config", str(config), "check")
    with open_store(config) as store:
        row = store.target_row("example-privacy")
        kinds = [r["error_kind"] for r in store.db.query("select error_kind from fetches where outcome = 'failed'")]
    assert row["state"] == "failing" and row["consecutive_failures"] == 4
    assert kinds == ["http-5xx"] * 4
    site.set("/privacy", page(*POLICY))
    result = run_cli("--config", str(config), "check")
    assert result.code == 0 and "unchanged" in result.out
    with open_store(config) as store:
        row = store.target_row("example-privacy")
    assert row["state"] == "ok" and row["consecutive_failures"] == 0


def test_short_content_is_recorded_as_a_failed_fetch_not_a_version(tmp_path: Path, site: Site) -> None:
    config = one_target(tmp_path, site)
    run_cli("--config", str(config), "check")
    site.set("/privacy", page("Loading"))
    result = run_cli("--config", str(config), "check")
    assert "failed (too-short)" in result.out
    with open_store(config) as store:
        assert store.counts()["versions"] == 1


def test_a_change_is_recorded_only_when_a_second_fetch_confirms_it(tmp_path: Path, site: Site) -> None:
    config = one_target(tmp_path, site, confirm_delay="1s")
    assert run_cli("--config", str(config), "check").code == 0
    # A/B flapping: the next fetch shows a change, the confirming one the old page again
    served = iter([page(*POLICY, AI_CLAUSE), page(*POLICY)])
    site.set("/privacy", lambda: next(served, page(*POLICY)))
    flap = run_cli("--config", str(config), "check")
    assert "change not confirmed by a second fetch; not recorded" in flap.out
    with open_store(config) as store:
        assert store.counts()["versions"] == 1
        outcomes = [r["outcome"] for r in store.db.query("select outcome from fetches order by id")]
    assert outcomes == ["new-version", "unconfirmed", "unchanged"]
    # a real change survives the confirmation; both fetches are kept
    site.set("/privacy", page(*POLICY, AI_CLAUSE))
    real = run_cli("--config", str(config), "check")
    assert "new version example-privacy@2" in real.out
    with open_store(config) as store:
        outcomes = [r["outcome"] for r in store.db.query("select outcome from fetches order by id")]
    assert outcomes[-2:] == ["confirmed", "new-version"]


def test_kill_9_during_a_check_then_verify_passes(tmp_path: Path, site: Site) -> None:
    targets = []
    for i in range(24):
        url = site.set(f"/p{i}", page(*POLICY, f"Clause number {i}."), delay=0.05)
        targets.append({"id": f"p{i}", "service": "S", "document": "terms", "url": url})
    config = write_config(tmp_path, targets, defaults={"concurrency": 4})
    for round_ in range(3):
        for i in range(24):
            site.set(f"/p{i}", page(*POLICY, f"Clause number {i}, round {round_}."), delay=0.05)
        db = tmp_path / "monitor.db"
        baseline = count(db, "select count(*) from versions") if db.exists() else 0
        proc = start_check(config)
        # aimed by polling the database: killed mid-pass, a few more versions in each round
        assert kill_when(db, proc, "select count(*) from versions", baseline + 3 + 4 * round_)
    verify = run_cli("--config", str(config), "verify")
    assert verify.code == 0, verify.out + verify.err
    assert "verify: ok" in verify.out
    with open_store(config) as store:
        assert store.counts()["versions"] > 0


def test_chromium_killed_during_a_run_and_the_run_recovers(tmp_path: Path, site: Site) -> None:
    targets = []
    for i in range(6):
        url = site.set(f"/p{i}", page(*POLICY, f"Clause {i}."), delay=0.6)
        targets.append({"id": f"p{i}", "service": "S", "document": "terms", "url": url})
    config = write_config(tmp_path, targets, defaults={"engine": "browser", "concurrency": 2, "retries": 2})
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "check"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    killed = False
    deadline = time.time() + 60
    while time.time() < deadline and not killed:
        pids = browser_pids(proc.pid)
        if pids and (site.hits["/p0"] or site.hits["/p1"]):
            os.kill(pids[0], signal.SIGKILL)
            killed = True
        time.sleep(0.1)
    out, err = proc.communicate(timeout=120)
    assert killed
    assert proc.returncode == 0, err
    assert "failed 0" in out, out
    assert "checked 6, new version 6" in out


@pytest.mark.parametrize("command", ["validate", "verify", "doctor", "status"])
def test_commands_work_before_any_check(tmp_path: Path, site: Site, command: str) -> None:
    config = one_target(tmp_path, site)
    result = run_cli("--config", str(config), command)
    assert result.code == 0, result.out + result.err
    assert "Traceback" not in result.err


def test_identical_bytes_skip_extraction_but_new_settings_do_not(tmp_path: Path, site: Site) -> None:
    html = page(*POLICY, extra='<aside id="promo"><p>Try Premium free for a month.</p></aside>')
    url = site.set("/privacy", html)
    config = write_config(tmp_path, [{"id": "t", "service": "S", "document": "terms", "url": url}])
    assert run_cli("--config", str(config), "check").code == 0
    assert run_cli("--config", str(config), "check").code == 0
    with open_store(config) as store:
        rows = list(store.db.query("select outcome, extract_key, text_sha256 from fetches order by id"))
        known = store.known_extraction("t", store.latest_version("t"))
    assert [r["outcome"] for r in rows] == ["new-version", "unchanged"]
    assert rows[0]["extract_key"] == rows[1]["extract_key"] and known == (rows[0]["extract_key"], rows[0]["text_sha256"])
    # same bytes, but the target now removes a part: the key changes, the page is extracted again
    write_config(tmp_path, [{"id": "t", "service": "S", "document": "terms", "url": url, "remove": ["#promo"]}])
    result = run_cli("--config", str(config), "check")
    assert "new version t@2: 1 removed" in result.out, result.out


def test_a_revert_is_reported_as_such(tmp_path: Path, site: Site) -> None:
    config = one_target(tmp_path, site)
    run_cli("--config", str(config), "check")
    site.set("/privacy", page(*POLICY, AI_CLAUSE))
    run_cli("--config", str(config), "check")
    site.set("/privacy", page(*POLICY))
    result = run_cli("--config", str(config), "check")
    assert "new version example-privacy@3" in result.out
    with open_store(config) as store:
        last = next(store.db.query("select signals from changes order by id desc limit 1"))
    assert json.loads(last["signals"]) == [{"kind": "reverted", "message": "reverted to version 1", "version": 1}]


class ConditionalSite:
    """A real http.server that answers conditional GETs by ETag or Last-Modified (a server
    choosing one), and counts full answers and 304s."""

    def __init__(self, use: str) -> None:
        import threading
        from collections import Counter

        from .conftest import local_server

        self.use = use  # "etag" or "last-modified"
        self.bodies: dict[str, bytes] = {}
        self.stamps: dict[str, str] = {}
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.server = local_server(self._serve)
        self.port = self.server.server_address[1]

    def set(self, path: str, html: str, stamp: str) -> str:
        with self.lock:
            self.bodies[path], self.stamps[path] = html.encode(), stamp
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self, handler: Any, head: bool) -> None:
        with self.lock:
            body, stamp = self.bodies[handler.path], self.stamps[handler.path]
        name, asked = ("ETag", "If-None-Match") if self.use == "etag" else ("Last-Modified", "If-Modified-Since")
        value = f'"{stamp}"' if self.use == "etag" else stamp
        if handler.headers.get(asked) == value:
            with self.lock:
                self.counts["304"] += 1
            handler.send_response(304)
            handler.send_header(name, value)
            handler.end_headers()
            return
        with self.lock:
            self.counts["200"] += 1
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("use", ["etag", "last-modified"])
def test_conditional_requests_make_an_unchanged_check_a_304(tmp_path: Path, use: str) -> None:
    server = ConditionalSite(use)
    try:
        stamps = ["v1", "Tue, 01 Dec 2026 10:00:00 GMT"]
        stamp = stamps[0] if use == "etag" else stamps[1]
        targets = [
            {"id": f"t{i}", "service": "S", "document": "privacy-policy", "url": server.set(f"/p{i}", page(*POLICY, title=f"Policy {i}"), stamp)}
            for i in range(3)
        ]
        config = write_config(tmp_path, targets)
        assert run_cli("--config", str(config), "check").code == 0
        assert server.counts == {"200": 3}
        again = run_cli("--config", str(config), "check")
        assert again.code == 0 and again.out.count(": unchanged") == 3, again.out
        assert server.counts == {"200": 3, "304": 3}
        with open_store(config) as store:
            rows = list(store.db.query("select target_id, outcome, status, text_sha256, raw_sha256, extract_key from fetches order by id"))
        first, second = rows[:3], rows[3:]
        assert [r["outcome"] for r in second] == ["unchanged"] * 3 and [r["status"] for r in second] == [304] * 3
        for before, after in zip(sorted(first, key=lambda r: r["target_id"]), sorted(second, key=lambda r: r["target_id"])):
            assert (before["text_sha256"], before["raw_sha256"], before["extract_key"]) == (after["text_sha256"], after["raw_sha256"], after["extract_key"])

        # a change gets a new validator and a full answer: a new version
        server.set("/p1", page(*POLICY[:3], AI_CLAUSE, *POLICY[3:], title="Policy 1"), "v2" if use == "etag" else "Wed, 02 Dec 2026 10:00:00 GMT")
        changed = run_cli("--config", str(config), "check")
        assert "new version t1@2" in changed.out, changed.out
        assert server.counts == {"200": 4, "304": 5}
        # the next check asks with the new validator
        assert run_cli("--config", str(config), "check").code == 0
        assert server.counts == {"200": 4, "304": 8}

        # switched off: full GETs, still unchanged
        write_config(tmp_path, targets, defaults={"conditional": False})
        off = run_cli("--config", str(config), "check")
        assert off.out.count(": unchanged") == 3, off.out
        assert server.counts == {"200": 7, "304": 8}
        with open_store(config) as store:
            assert store.verify() == []
    finally:
        server.close()


def test_an_unchanged_check_is_a_few_statements_in_one_transaction(tmp_path: Path, site: Site) -> None:
    """Reading what the check needs, then one transaction: the fetch row and the target's
    status. Counted, not timed."""
    import asyncio

    from monitor.check import CheckContext, check_target
    from monitor.fetch import Fetcher

    config = load_config(one_target(tmp_path, site))
    statements: list[str] = []

    async def go() -> list[str]:
        with Store.open(config) as store:
            store.sync_targets(config.targets)
            async with Fetcher(config.defaults) as fetcher:
                ctx = CheckContext(config, store, fetcher)
                assert (await check_target(ctx, config.targets[0])).outcome == "first-version"
                store.db.conn.set_trace_callback(statements.append)
                outcome = (await check_target(ctx, config.targets[0])).outcome
                store.db.conn.set_trace_callback(None)
                return [outcome]

    assert asyncio.run(go()) == ["unchanged"]
    words = [s.split()[0].upper() for s in statements]
    assert words.count("BEGIN") == 1 and words.count("COMMIT") == 1
    assert len(statements) <= 10, statements
    assert words.count("INSERT") == 1 and words.count("UPDATE") == 1
