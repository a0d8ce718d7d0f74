"""`monitor import`: Wayback Machine and Open Terms Archive history, backfilled.

The archive is a real HTTP server on 127.0.0.1 that speaks the CDX API (it honours url,
from, to, filter and fl like the Wayback Machine) and serves captures made from the real
LinkedIn privacy-policy versions in the shared corpus. The database is real SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from monitor.errors import InputError
from monitor.extract import extract_markdown
from monitor.importers import (
    ArchiveClient,
    ArchiveError,
    CdxRow,
    ImportContext,
    WaybackOptions,
    import_wayback,
    parse_archive_date,
    parse_cdx,
    parse_period,
    thin,
)
from monitor.store import Store

from .conftest import ROOT, Site, corpus_file, in_process, run_cli, write_config

POLICY_URL = "https://www.linkedin.com/legal/privacy-policy"
LINKEDIN = ("LinkedIn", "Privacy Policy")
# Capture time -> corpus file (OTA recording times, so the texts are what the page said then).
CAPTURES = {
    "20240307003929": "2024-03-07T00-39-29Z.md",
    "20240716060935": "2024-07-16T06-09-35Z.md",
    "20240801181011": "2024-08-01T18-10-11Z.md",
    "20240919061013": "2024-09-19T06-10-13Z.md",
}
DUPLICATE = "20240716180000"  # same digest as the capture before it: listed, never fetched
LOGIN_WALL = "20240810000000"  # the archive caught a sign-in page: select matches nothing
REDIRECT = "20240901000000"  # status 301: the CDX filter leaves it out


# ----------------------------------------------------------------------------- the archive


def render_capture(name: str) -> bytes:
    """A corpus version as the page looked: Markdown to HTML inside LinkedIn-like chrome."""
    from markdown_it import MarkdownIt

    text = corpus_file(*LINKEDIN, name).read_text(encoding="utf-8")
    body = MarkdownIt("commonmark").enable("table").render(text)
    return (
        "<!doctype html><html><head><title>Privacy Policy | LinkedIn</title></head><body>"
        "<header><nav><a href='/feed'>Home</a> <a href='/jobs'>Jobs</a></nav></header>"
        f'<main role="main">{body}</main><footer><p>LinkedIn Corporation © 2024</p></footer></body></html>'
    ).encode("utf-8")


@dataclass
class Hit:
    path: str
    query: dict[str, list[str]]
    at: float
    user_agent: str = ""


@dataclass
class FakeArchive:
    """A Wayback Machine on loopback: a CDX endpoint and `id_` captures, with faults on demand."""

    rows: list[list[str]] = field(default_factory=list)  # timestamp, original, digest, statuscode, mimetype
    pages: dict[str, bytes] = field(default_factory=dict)  # timestamp -> body
    faults: dict[str, list[int]] = field(default_factory=dict)  # timestamp -> statuses to answer first
    broken: dict[str, int] = field(default_factory=dict)  # timestamp -> status answered every time
    delay: float = 0.0  # seconds before each capture answer
    hits: list[Hit] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)  # JSON POSTed to /hook (alert webhooks)

    def __post_init__(self) -> None:
        archive = self
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                archive._serve(self)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with archive._lock:
                    archive.posts.append(json.loads(body))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, timestamp: str, body: bytes, *, digest: str | None = None, status: str = "200", original: str = POLICY_URL) -> None:
        import hashlib

        self.rows.append([timestamp, original, digest or hashlib.sha1(body).hexdigest(), status, "text/html"])
        self.pages[timestamp] = body

    def capture_url(self, timestamp: str, original: str = POLICY_URL) -> str:
        return f"{self.url}/web/{timestamp}id_/{original}"

    def requested(self, timestamp: str) -> int:
        return sum(1 for h in self.hits if h.path.startswith(f"/web/{timestamp}id_/"))

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        with self._lock:
            self.hits.append(Hit(parts.path, parse_qs(parts.query), time.monotonic(), handler.headers.get("User-Agent", "")))
        if parts.path == "/cdx/search/cdx":
            status, body, ctype, headers = 200, self._cdx(parse_qs(parts.query)), "application/json", {}
        else:
            status, body, ctype, headers = self._capture(parts.path)
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def _cdx(self, query: dict[str, list[str]]) -> bytes:
        """Like the real CDX server: url match, from/to as timestamp prefixes, filter, fl."""
        fields = query.get("fl", ["timestamp,original,digest,statuscode,mimetype"])[0].split(",")
        names = ["timestamp", "original", "digest", "statuscode", "mimetype"]
        start, end = query.get("from", [""])[0], query.get("to", [""])[0]
        wanted = [f.split(":", 1) for f in query.get("filter", [])]
        table = [fields]
        for row in self.rows:
            record = dict(zip(names, row))
            if record["original"] != query.get("url", [""])[0]:
                continue
            if (start and record["timestamp"][: len(start)] < start) or (end and record["timestamp"][: len(end)] > end):
                continue
            if any(record.get(name) != value for name, value in wanted):
                continue
            table.append([record[f] for f in fields])
        return json.dumps(table if len(table) > 1 else []).encode()

    def _capture(self, path: str) -> tuple[int, bytes, str, dict[str, str]]:
        match = re.match(r"^/web/(\d{14})id_/(.+)$", path)
        if not match or match.group(1) not in self.pages:
            return 404, b"<html><body>Not in archive</body></html>", "text/html", {}
        timestamp = match.group(1)
        with self._lock:
            fault = self.faults[timestamp].pop(0) if self.faults.get(timestamp) else self.broken.get(timestamp)
        if fault:
            headers = {"Retry-After": "1"} if fault == 429 else {}
            return fault, f"<html><body>error {fault}</body></html>".encode(), "text/html", headers
        if self.delay:
            time.sleep(self.delay)
        return 200, self.pages[timestamp], "text/html; charset=utf-8", {}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def archive() -> Iterator[FakeArchive]:
    server = FakeArchive()
    for timestamp, name in CAPTURES.items():
        server.add(timestamp, render_capture(name))
    july = server.rows[1][2]
    server.add(DUPLICATE, render_capture(CAPTURES["20240716060935"]) + b"<!-- another crawl -->", digest=july)
    server.rows.sort(key=lambda r: r[0])
    server.add(LOGIN_WALL, b"<html><body><form><h1>Sign in</h1><p>Join LinkedIn to see this page.</p></form></body></html>")
    server.add(REDIRECT, b"<html><body>Moved</body></html>", status="301")
    server.rows.sort(key=lambda r: r[0])
    yield server
    server.close()


LINKEDIN_TARGET = {
    "id": "linkedin-privacy", "service": "LinkedIn", "document": "privacy-policy", "url": POLICY_URL,
    "select": ['[role="main"]'], "remove": [".banner__image-container"],
}


@pytest.fixture
def config(workdir: Path) -> Path:
    return write_config(workdir, [LINKEDIN_TARGET])


def open_store(workdir: Path) -> Store:
    return Store(workdir / "monitor.db", workdir / "snapshots")


def wayback(archive: FakeArchive, *extra: str) -> tuple[int, str, str]:
    return in_process("import", "wayback", "linkedin-privacy", "--archive-url", archive.url, "--rate", "20", *extra)


def changes_by_pair(store: Store, target_id: str = "linkedin-privacy") -> dict[tuple[int, int], dict[str, Any]]:
    """The changes that stand (superseded ones are kept for the audit trail, not counted)."""
    rows = store.db.query("select * from changes where target_id = ? and superseded_by is null", [target_id])
    return {(r["old_version_id"], r["new_version_id"]): r for r in rows}


def assert_changes_follow_time(store: Store, target_id: str = "linkedin-privacy") -> None:
    """Exactly the time-consecutive pairs with different texts have a change; nothing stale."""
    history = store.versions(target_id)
    expected = {(a.id, b.id) for a, b in zip(history, history[1:]) if a.text_sha256 != b.text_sha256}
    assert set(changes_by_pair(store, target_id)) == expected


def flags_of(change: dict[str, Any]) -> list[dict[str, str]]:
    return [flag for c in json.loads(change["diff"])["changes"] for flag in c["flags"]]


# ----------------------------------------------------------------------------- pure parts


def test_cdx_answer_is_parsed_filtered_and_collapsed() -> None:
    answer = json.dumps([
        ["timestamp", "original", "digest", "statuscode", "mimetype"],
        ["20240716060935", POLICY_URL, "AAA", "200", "text/html"],
        ["20240301000000", POLICY_URL, "ZZZ", "200", "text/html"],  # out of order: sorted
        ["20240716180000", POLICY_URL, "AAA", "200", "text/html"],  # same digest as the one before
        ["20240720000000", POLICY_URL, "BBB", "-", "warc/revisit"],  # not a 200
        ["20240801000000", POLICY_URL, "CCC", "200", "text/html"],
        ["20240901000000", POLICY_URL, "AAA", "200", "text/html"],  # back to AAA: a revert, kept
        ["2024", POLICY_URL, "DDD", "200", "text/html"],  # malformed timestamp
    ]).encode()
    rows = parse_cdx(answer)
    assert [r.timestamp for r in rows] == ["20240301000000", "20240716060935", "20240801000000", "20240901000000"]
    assert rows[1].observed_at == "2024-07-16T06:09:35.000Z"
    assert rows[1].archive_url("https://web.archive.org") == f"https://web.archive.org/web/20240716060935id_/{POLICY_URL}"
    assert [r.timestamp for r in parse_cdx(answer, start="202407", end="20240731")] == ["20240716060935"]
    assert parse_cdx(b"[]") == []


def test_every_keeps_the_first_capture_of_each_period() -> None:
    stamps = ["20240101120000", "20240101230000", "20240102000000", "20240107000000", "20240108000000", "20240131000000", "20240201000000"]
    rows = [CdxRow(s, POLICY_URL) for s in stamps]
    assert [r.timestamp for r in thin(rows, None)] == stamps
    assert [r.timestamp for r in thin(rows, "1d")] == [s for s in stamps if s != "20240101230000"]
    # ISO weeks: Mon 1 Jan - Sun 7 Jan, Mon 8 Jan - ..., 29 Jan - 4 Feb
    assert [r.timestamp for r in thin(rows, "1w")] == ["20240101120000", "20240108000000", "20240131000000"]
    assert [r.timestamp for r in thin(rows, "1m")] == ["20240101120000", "20240201000000"]


def test_dates_and_periods_are_checked() -> None:
    assert parse_archive_date("2024-09-01", "--from") == "20240901"
    assert parse_archive_date("2024-09", "--from") == "202409"
    assert parse_archive_date("20240901", "--to") == "20240901"
    assert parse_period("1W") == "1w"
    for bad in ("2024-13-01", "2024-02-30", "yesterday", "24-09-01"):
        with pytest.raises(InputError, match="--from"):
            parse_archive_date(bad, "--from")
    with pytest.raises(InputError, match="1d, 1w or 1m"):
        parse_period("2w")


# ----------------------------------------------------------------------------- manners


class Sleeps:
    """An asyncio.sleep that records instead of waiting (backoff is tested, not endured)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_client_retries_with_backoff_and_honours_retry_after(archive: FakeArchive) -> None:
    sleeps = Sleeps()
    archive.faults = {"20240307003929": [503, 502, 429]}
    options = WaybackOptions(archive_url=archive.url, rate=1000, backoff=0.5, sleep=sleeps)

    async def fetch(timestamp: str) -> Any:
        async with ArchiveClient(options, user_agent="test-agent/1.0", timeout=5) as client:
            return await client.get(archive.capture_url(timestamp))

    answer = asyncio.run(fetch("20240307003929"))
    assert answer.status == 200 and answer.attempts == 4 and b"Privacy" in answer.body
    backoffs = [w for w in sleeps.waits if w > 0.01]  # the rate limit's own waits are ~1 ms here
    assert 0.5 <= backoffs[0] <= 0.6 and 1.0 <= backoffs[1] <= 1.2  # doubling, with jitter
    assert backoffs[2] == 1.0  # the 429's Retry-After, exactly
    assert {h.user_agent for h in archive.hits} == {"test-agent/1.0"}

    archive.broken = {"20240716060935": 404}  # not retryable: one request, then the error
    with pytest.raises(ArchiveError) as caught:
        asyncio.run(fetch("20240716060935"))
    assert caught.value.kind == "http-404" and caught.value.attempts == 1
    assert archive.requested("20240716060935") == 1


def test_persistent_429_stops_the_run_for_a_later_resume(config: Path, archive: FakeArchive, workdir: Path) -> None:
    from monitor.targets import load_config

    archive.broken = {"20240716060935": 429}
    loaded = load_config(config)
    options = WaybackOptions(archive_url=archive.url, rate=1000, retries=2, sleep=Sleeps())
    with open_store(workdir) as store:
        store.sync_targets(loaded.targets)
        ctx = ImportContext(loaded, store, loaded.target("linkedin-privacy"))
        summary = asyncio.run(import_wayback(ctx, options))
        assert summary.stopped and "429" in summary.stopped
        assert [r.outcome for r in summary.results] == ["imported", "failed"]
        assert archive.requested("20240716060935") == 3  # first try and two retries
        assert archive.requested("20240801181011") == 0  # no hammering after that
        assert "stopped: the archive keeps answering 429" in summary.text()


# ----------------------------------------------------------------------------- Wayback, end to end


def test_wayback_import_end_to_end(config: Path, archive: FakeArchive, workdir: Path) -> None:
    archive.faults = {"20240801181011": [429], "20240919061013": [503]}
    started = time.monotonic()
    result = run_cli("import", "wayback", "linkedin-privacy", "--archive-url", archive.url, "--rate", "20", cwd=workdir)
    assert result.code == 0, result.err
    summary = result.out.strip().splitlines()[-1]
    assert "imported 4" in summary and "skipped 1 (selector-missing 1)" in summary, result.out
    assert "changes 3" in summary and "flagged 1" in summary, summary
    assert len(result.out.strip().splitlines()) == 6  # one line per fetched capture, then the summary

    # The CDX query, and what was never fetched: the duplicate digest, the 301.
    cdx = [h for h in archive.hits if h.path == "/cdx/search/cdx"]
    assert len(cdx) == 1
    query = {k: v[0] for k, v in cdx[0].query.items()}
    assert query == {"url": POLICY_URL, "output": "json", "filter": "statuscode:200", "collapse": "digest",
                     "fl": "timestamp,original,digest,statuscode,mimetype"}
    assert archive.requested(DUPLICATE) == 0 and archive.requested(REDIRECT) == 0
    # 429 then 200 (Retry-After: 1 honoured), 503 then 200.
    assert archive.requested("20240801181011") == 2 and archive.requested("20240919061013") == 2
    retried = [h.at for h in archive.hits if h.path.startswith("/web/20240801181011id_/")]
    assert retried[1] - retried[0] >= 0.95
    # The rate limit spaced every request (20 per second: 50 ms apart at least).
    times = [h.at for h in archive.hits]
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.04
    assert time.monotonic() - started < 60

    with open_store(workdir) as store:
        history = store.versions("linkedin-privacy")
        assert [v.observed_at for v in history] == [
            "2024-03-07T00:39:29.000Z", "2024-07-16T06:09:35.000Z", "2024-08-01T18:10:11.000Z", "2024-09-19T06:10:13.000Z"
        ]
        assert [v.provenance for v in history] == ["wayback"] * 4
        assert [v.provenance_ref for v in history] == [archive.capture_url(t) for t in CAPTURES]
        assert history[-1].effective_date == "2024-09-18"
        fetches = list(store.db.query("select * from fetches order by id"))
        assert {f["engine"] for f in fetches} == {"wayback"} and len(fetches) == 5
        assert {f["requested_url"]: f["attempts"] for f in fetches}[archive.capture_url("20240801181011")] == 2
        skipped = [f for f in fetches if f["outcome"] == "failed"]
        assert [(f["requested_url"], f["error_kind"]) for f in skipped] == [(archive.capture_url(LOGIN_WALL), "selector-missing")]
        assert_changes_follow_time(store)
        change = changes_by_pair(store)[(history[2].id, history[3].id)]
        assert "ai-training" in change["categories"].split(",")
        assert store.counts()["alerts"] == 0  # history is not news
        row = store.target_row("linkedin-privacy")
        assert row is not None and row["last_fetch_at"] is None and row["last_change_at"] is None  # not a live check

    assert run_cli("verify", cwd=workdir).code == 0

    # A re-run fetches nothing again and stores nothing twice.
    hits_before = len(archive.hits)
    code, out, _ = wayback(archive)
    assert code == 0 and "imported 0" in out and "already imported 5" in out, out
    assert len(archive.hits) == hits_before + 1  # the CDX query only
    with open_store(workdir) as store:
        assert store.counts()["versions"] == 4


def test_every_and_date_range_choose_the_captures(config: Path, archive: FakeArchive, workdir: Path) -> None:
    code, out, err = wayback(archive, "--from", "2024-07", "--to", "2024-08", "--every", "1m")
    assert code == 0, err
    query = next(h.query for h in archive.hits if h.path == "/cdx/search/cdx")
    assert query["from"] == ["202407"] and query["to"] == ["202408"]
    fetched = sorted({h.path.split("id_")[0].removeprefix("/web/") for h in archive.hits if h.path.startswith("/web/")})
    assert fetched == ["20240716060935", "20240801181011"]  # the first of July, the first of August
    with open_store(workdir) as store:
        assert [v.observed_at[:10] for v in store.versions("linkedin-privacy")] == ["2024-07-16", "2024-08-01"]


def test_failed_capture_is_fetched_again_and_lands_in_time_order(config: Path, archive: FakeArchive, workdir: Path) -> None:
    """A permanent fault leaves a gap; the next run fills it between versions already stored,
    and the changes are relinked: before -> filled -> after, and before -> after is gone."""
    archive.broken = {"20240716060935": 404}
    code, out, _ = wayback(archive)
    assert code == 0 and "imported 3" in out and "failed 1 (http-404 1)" in out, out
    with open_store(workdir) as store:
        first, august, september = store.versions("linkedin-privacy")
        assert (first.id, august.id) in changes_by_pair(store)

    archive.broken = {}
    code, out, _ = wayback(archive)
    assert code == 0 and "imported 1" in out and "already imported 4" in out, out
    assert archive.requested("20240919061013") == 1  # imported by the first run: not fetched again
    with open_store(workdir) as store:
        history = store.versions("linkedin-privacy")
        assert [v.seq for v in history] == [1, 4, 2, 3]  # recorded last, placed by time
        july = history[1]
        assert july.observed_at == "2024-07-16T06:09:35.000Z"
        pairs = changes_by_pair(store)
        assert (first.id, august.id) not in pairs  # stale: July sits between them now
        assert (first.id, july.id) in pairs and (july.id, august.id) in pairs
        assert_changes_follow_time(store)
    assert run_cli("verify", cwd=workdir).code == 0


def test_interrupted_import_resumes_without_duplicates(config: Path, archive: FakeArchive, workdir: Path) -> None:
    """Killed (SIGKILL) mid-run, then run again: every capture once, chain intact."""
    archive.delay = 0.4
    command = [sys.executable, "-m", "monitor", "import", "wayback", "linkedin-privacy", "--archive-url", archive.url, "--rate", "50"]
    proc = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "NO_COLOR": "1"})
    deadline = time.monotonic() + 60
    versions = 0
    while time.monotonic() < deadline and versions < 2:
        time.sleep(0.05)
        if (workdir / "monitor.db").exists():
            versions = _count_versions(workdir / "monitor.db")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert versions >= 2 and proc.returncode == -signal.SIGKILL

    with open_store(workdir) as store:
        before = {v.provenance_ref for v in store.versions("linkedin-privacy")}
    assert 2 <= len(before) < 4

    archive.delay = 0.0
    code, out, err = wayback(archive)
    assert code == 0, err
    assert "already imported" in out, out
    with open_store(workdir) as store:
        refs = [v.provenance_ref for v in store.versions("linkedin-privacy")]
        assert refs == [archive.capture_url(t) for t in CAPTURES]  # each once, in time order
        assert_changes_follow_time(store)
    for ref in before:
        timestamp = ref.split("/web/")[1][:14]
        assert archive.requested(timestamp) == 1, timestamp  # not fetched again
    assert run_cli("verify", cwd=workdir).code == 0


def _count_versions(db_path: Path) -> int:
    """Read while the importer writes; a database still being created counts as empty."""
    try:
        with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as conn:
            return conn.execute("select count(*) from versions").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_import_lands_before_a_live_version(workdir: Path, archive: FakeArchive, site: Site) -> None:
    """A target watched since today: history goes before the live version, and the change into
    the live version is recomputed from the newest imported one."""
    live_url = site.set("/legal/privacy-policy", render_capture("2025-04-01T18-11-15Z.md"))
    write_config(workdir, [{**LINKEDIN_TARGET, "url": live_url}])
    for row in archive.rows:
        row[1] = live_url
    code, out, err = in_process("check", "linkedin-privacy", "--no-confirm")
    assert code == 0, err
    with open_store(workdir) as store:
        (live,) = store.versions("linkedin-privacy")
        status = store.target_row("linkedin-privacy")

    code, out, err = in_process("import", "wayback", "linkedin-privacy", "--archive-url", archive.url, "--rate", "50")
    assert code == 0 and "imported 4" in out, out + err
    with open_store(workdir) as store:
        history = store.versions("linkedin-privacy")
        assert [v.provenance for v in history] == ["wayback"] * 4 + ["live"]
        assert history[-1].id == live.id and live.seq == 1
        newest_import = history[-2]
        pairs = changes_by_pair(store)
        assert (newest_import.id, live.id) in pairs
        assert not any(new == live.id and old != newest_import.id for old, new in pairs)
        assert_changes_follow_time(store)
        assert store.latest_version("linkedin-privacy").id == live.id  # the next check diffs against it
        after = store.target_row("linkedin-privacy")
        assert {k: after[k] for k in ("last_fetch_at", "last_success_at", "last_change_at", "consecutive_failures")} == {
            k: status[k] for k in ("last_fetch_at", "last_success_at", "last_change_at", "consecutive_failures")
        }
    assert run_cli("verify", cwd=workdir).code == 0


def test_alert_flag_announces_only_the_changes_that_stand(workdir: Path, archive: FakeArchive, site: Site) -> None:
    """With --alert, changes superseded during the import (first import -> live, ...) take
    their queued alerts with them: one webhook per change in the final history."""
    live_url = site.set("/legal/privacy-policy", render_capture("2025-04-01T18-11-15Z.md"))
    write_config(workdir, [{**LINKEDIN_TARGET, "url": live_url}], alerts={"webhook": {"url": f"{archive.url}/hook"}})
    for row in archive.rows:
        row[1] = live_url
    assert in_process("check", "linkedin-privacy", "--no-confirm", "--no-alerts")[0] == 0
    code, out, err = in_process("import", "wayback", "linkedin-privacy", "--archive-url", archive.url, "--rate", "50", "--alert")
    # 4 changes stand; the one made only of link-target edits is cosmetic and alerts nobody
    assert code == 0 and "alerts: 3 sent" in out, out + err
    with open_store(workdir) as store:
        changes = list(changes_by_pair(store).values())
        assert len(changes) == 4
        standing = {c["id"] for c in changes if c["substantive"]}
        assert len(standing) == 3
        assert {a["change_id"] for a in store.db.query("select change_id from alerts")} == standing
    assert {p["change_id"] for p in archive.posts} == standing and len(archive.posts) == 3


def test_every_fetch_failing_exits_1(config: Path, archive: FakeArchive, workdir: Path) -> None:
    archive.broken = {t: 404 for t in archive.pages}
    code, out, _ = wayback(archive)
    assert code == 1 and "imported 0" in out and "failed 5 (http-404 5)" in out, out
    code, _, err = in_process("import", "wayback", "linkedin-privacy", "--archive-url", archive.url + "/nothing-here", "--rate", "50")
    assert code == 1 and err.startswith("error: ") and "404" in err, err


def test_bad_input_is_one_line_and_exit_2(config: Path, workdir: Path) -> None:
    cases = [
        (("import", "wayback", "linkedin-privcy"), "did you mean 'linkedin-privacy'"),
        (("import", "wayback", "linkedin-privacy", "--from", "2024-13"), "--from '2024-13'"),
        (("import", "wayback", "linkedin-privacy", "--from", "2025", "--to", "2024"), "is after --to"),
        (("import", "wayback", "linkedin-privacy", "--every", "2w"), "1d, 1w or 1m"),
        (("import", "wayback", "linkedin-privacy", "--rate", "0"), "--rate 0"),
        (("import", "ota", str(workdir / "missing"), "--target", "linkedin-privacy"), "no such file or directory"),
        (("import", "ota", str(workdir), "--target", "linkedin-privacy"), "no files named like"),
    ]
    for args, message in cases:
        code, out, err = in_process(*args)
        assert code == 2, (args, out, err)
        assert len(err.strip().splitlines()) == 1 and message in err, (args, err)
    assert not (workdir / "monitor.db").exists()  # bad input touches nothing


# ----------------------------------------------------------------------------- Open Terms Archive


def distinct_in_a_row(paths: list[Path]) -> int:
    texts = [extract_markdown(p.read_text(encoding="utf-8")).to_markdown() for p in paths]
    return sum(1 for i, text in enumerate(texts) if i == 0 or text != texts[i - 1])


def test_ota_folder_import_of_the_linkedin_privacy_policy(config: Path, workdir: Path) -> None:
    folder = corpus_file(*LINKEDIN)
    files = sorted(folder.glob("*.md"))
    assert len(files) == 28
    code, out, err = in_process("import", "ota", str(folder), "--target", "linkedin-privacy")
    assert code == 0, err
    expected = distinct_in_a_row(files)
    assert expected < 28  # some recordings repeat the text before them
    assert f"imported {expected}, unchanged {28 - expected}" in out, out

    with open_store(workdir) as store:
        history = store.versions("linkedin-privacy")
        assert len(history) == expected
        assert {v.provenance for v in history} == {"ota"}
        assert history[0].provenance_ref == "2021-10-07T17-30-12Z.md"
        assert history[0].observed_at == "2021-10-07T17:30:12.000Z"
        assert store.counts()["fetches"] == 0  # nothing was fetched
        assert_changes_follow_time(store)
        by_ref = {v.provenance_ref: v for v in history}
        september = by_ref["2024-09-19T06-10-13Z.md"]
        assert september.effective_date == "2024-09-18"
        pairs = changes_by_pair(store)
        change = next(c for (old, new), c in pairs.items() if new == september.id)
        assert old_seq_of(change, history) == by_ref["2024-08-01T18-10-11Z.md"].seq
        ai = [f for f in flags_of(change) if f["category"] == "ai-training"]
        assert ai and any("train artificial intelligence" in f["evidence"].lower() for f in ai), ai
        # 2021-10-25 has the text of 2021-10-07 again: a revert to version 1.
        revert = next(c for (old, new), c in pairs.items() if new == by_ref["2021-10-25T08-09-31Z.md"].id)
        assert {"kind": "reverted", "message": "reverted to version 1", "version": 1} in json.loads(revert["signals"])

    assert run_cli("verify", cwd=workdir).code == 0
    code, out, _ = in_process("import", "ota", str(folder), "--target", "linkedin-privacy")
    assert code == 0 and f"already imported {expected}" in out and "imported 0" in out, out


def old_seq_of(change: dict[str, Any], history: list[Any]) -> int:
    return next(v.seq for v in history if v.id == change["old_version_id"])


def test_report_lists_the_september_2024_change_after_an_ota_import(config: Path, workdir: Path) -> None:
    folder = corpus_file(*LINKEDIN)
    assert in_process("import", "ota", str(folder), "--target", "linkedin-privacy")[0] == 0
    result = run_cli("report", "--target", "linkedin-privacy", "--flagged", "--format", "json", cwd=workdir)
    assert result.code == 0, result.err
    changes = json.loads(result.out)["changes"]
    september = [c for c in changes if c["new"]["effective_date"] == "2024-09-18" and c["old"]["effective_date"] != "2024-09-18"]
    assert len(september) == 1, [c["new"]["effective_date"] for c in changes]
    entry = september[0]
    assert entry["provenance"] == "ota" and entry["observed_at"] == "2024-09-19T06:10:13.000Z"
    assert "ai-training" in {f["category"] for c in entry["changes"] for f in c["flags"]}


def test_ota_git_repository_import(config: Path, workdir: Path) -> None:
    """A versions repository: each commit touching the file is a version at its author date;
    a Refilter commit that leaves the text as it was adds nothing."""
    repo = workdir / "versions"
    document = "LinkedIn/Privacy Policy.md"
    (repo / "LinkedIn").mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.name=OTA", "-c", "user.email=bot@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    history = [
        ("2024-07-16T06-09-35Z.md", "2024-07-16T06:09:35+00:00", "Record new changes of LinkedIn Privacy Policy", ""),
        ("2024-08-01T18-10-11Z.md", "2024-08-01T18:10:11+00:00", "Record new changes of LinkedIn Privacy Policy", ""),
        ("2024-08-01T18-10-11Z.md", "2024-08-20T00:00:00+00:00", "Refilter LinkedIn Privacy Policy", "\n"),
        ("2024-09-19T06-10-13Z.md", "2024-09-19T06:10:13+00:00", "Record new changes of LinkedIn Privacy Policy", ""),
    ]
    commits = []
    for name, when, subject, extra in history:
        text = corpus_file(*LINKEDIN, name).read_text(encoding="utf-8") + extra  # refilter: whitespace only
        (repo / document).write_text(text, encoding="utf-8")
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", subject], check=True,
                       env={**os.environ, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when})
        commits.append(subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip())

    code, out, err = in_process("import", "ota", str(repo), "--file", document, "--target", "linkedin-privacy")
    assert code == 0, err
    assert "imported 3, unchanged 1" in out, out
    with open_store(workdir) as store:
        versions = store.versions("linkedin-privacy")
        assert [v.provenance_ref for v in versions] == [commits[0], commits[1], commits[3]]
        assert [v.observed_at for v in versions] == ["2024-07-16T06:09:35.000Z", "2024-08-01T18:10:11.000Z", "2024-09-19T06:10:13.000Z"]
        assert versions[-1].raws[0]["url"] == f"git:{commits[3]}:{document}"
        assert_changes_follow_time(store)
    code, _, err = in_process("import", "ota", str(repo), "--target", "linkedin-privacy")
    assert code == 2 and "--file" in err, err
    code, _, err = in_process("import", "ota", str(repo), "--file", "LinkedIn/Terms.md", "--target", "linkedin-privacy")
    assert code == 2 and "no commit touches" in err, err


def test_cli_help_shows_examples() -> None:
    result = run_cli("import", "wayback", "--help", cwd=ROOT)
    assert result.code == 0 and "Examples:" in result.out and "--archive-url" in result.out
