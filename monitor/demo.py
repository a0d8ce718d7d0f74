"""`monitor demo`: LinkedIn's real privacy-policy history, replayed offline through the real
pipeline (Chromium fetch, store, diff, flags, email to a local SMTP server, HTML report).

The versions ship inside the package (monitor/demo_data, Open Terms Archive data under
ODC-By 1.0; see its ATTRIBUTION.md). A local web server serves them one after another at
the same address, as if LinkedIn were editing its page; the monitor checks after each edit.
"""

from __future__ import annotations

import asyncio
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import InputError

DEMO_TARGET = "linkedin-privacy"
PAGE_PATH = "/legal/privacy-policy"
KEY_CHANGE_DATE = "2024-09-18"  # the effective date of the policy that added AI training


class LocalServer:
    """A threaded web server on 127.0.0.1 serving a dict of pages (path -> HTML bytes)."""

    def __init__(self, pages: dict[str, bytes] | None = None):
        self.pages: dict[str, bytes] = dict(pages or {})
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # as real servers do: no ~40 ms stall per kept-alive response

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                body = server.pages.get(self.path.split("?")[0])
                status = 200 if body is not None else 404
                body = body if body is not None else b"<html><body><h1>Not found</h1></body></html>"
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # http.server's default backlog of 5 drops bursts
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True, name="demo-web").start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class MailCatcher:
    """A local SMTP server (aiosmtpd) that keeps every message as an .eml file."""

    def __init__(self, directory: Path):
        from aiosmtpd.controller import Controller

        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.count = 0
        catcher = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd naming
                catcher.count += 1
                (catcher.directory / f"{catcher.count:03d}.eml").write_bytes(envelope.original_content or envelope.content)
                return "250 Message accepted for delivery"

        self.port = _free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DemoVersion:
    name: str  # the OTA recording time, e.g. 2024-09-19T06-10-13Z
    markdown: str


@dataclass
class DemoResult:
    directory: Path
    report: Path
    mail_dir: Path
    emails: int
    versions: int
    changes: int
    key_change: dict[str, Any] | None = None
    lines: list[str] = field(default_factory=list)


def demo_versions() -> list[DemoVersion]:
    folder = resources.files("monitor").joinpath("demo_data", "linkedin-privacy-policy")
    out = []
    for entry in folder.iterdir():
        if re.match(r"\d{4}-\d\d-\d\dT[\d-]+Z\.md$", entry.name):
            out.append(DemoVersion(entry.name[:-3], entry.read_text(encoding="utf-8")))
    return sorted(out, key=lambda v: v.name)


def render_page(markdown: str) -> bytes:
    """A LinkedIn-like legal page: navigation, a cookie banner and a footer around the policy."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Privacy Policy | LinkedIn</title></head><body>"
        "<nav><a href='/'>LinkedIn</a> <a href='/legal/user-agreement'>User Agreement</a></nav>"
        "<section class='artdeco-global-alert' role='dialog'><p>LinkedIn and 3rd parties use essential and "
        "non-essential cookies to provide, secure, analyze and improve our Services.</p><button>Accept</button></section>"
        f"<main id='main-content'>{body}</main><footer><p>LinkedIn Corporation © 2026</p></footer></body></html>"
    ).encode("utf-8")


def demo_config_text(web: LocalServer, mail_port: int) -> str:
    return f"""\
# Written by `monitor demo`. The page is served locally; alerts go to a local mail catcher.
defaults:
  engine: browser        # the demo drives a real headless Chromium
  confirm_delay: 0s      # the demo server never flaps, so no confirming second fetch
  host_delay: 0s
  timeout: 30s
storage:
  db: monitor.db
  snapshots: snapshots
alerts:
  smtp:
    host: 127.0.0.1
    port: {mail_port}
    security: none
  from: privacy-monitor@localhost
  to: [you@localhost]
targets:
  - id: {DEMO_TARGET}
    service: LinkedIn
    document: privacy-policy
    url: {web.url(PAGE_PATH)}
    select: main
    tags: [demo, linkedin]
"""


def run_demo(directory: Path | None = None, *, say: Callable[[str], None] = print, limit: int | None = None) -> DemoResult:
    """Replay the history and write the report; `say` receives one progress line per step."""
    directory = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="monitor-demo-"))
    if (directory / "monitor.db").exists():
        raise InputError(f"{directory} already holds a demo (monitor.db); pick another --dir or delete it")
    directory.mkdir(parents=True, exist_ok=True)
    versions = demo_versions()[:limit] if limit else demo_versions()
    web = LocalServer()
    mail = MailCatcher(directory / "mail")
    try:
        config_path = directory / "targets.yaml"
        config_path.write_text(demo_config_text(web, mail.port), encoding="utf-8")
        return asyncio.run(_replay(directory, config_path, web, mail, versions, say))
    finally:
        mail.close()
        web.close()


def recorded_at(version: DemoVersion) -> str:
    """The OTA recording time of a version as a store timestamp ('2024-09-19T06:10:13.000Z')."""
    day, clock = version.name.split("T")
    return f"{day}T{clock.rstrip('Z').replace('-', ':')}.000Z"


async def _replay(directory: Path, config_path: Path, web: LocalServer, mail: MailCatcher, versions: list[DemoVersion], say: Callable[[str], None]) -> DemoResult:
    """Each version is served, fetched by Chromium and extracted as a check would, then
    recorded at its real recording time (as `import ota` records it), so history, report
    and emails carry the 2024 dates, not the time of the replay."""
    from dataclasses import replace

    from .alerts import deliver_pending
    from .diff import summary_line
    from .fetch import Fetcher, capture_target
    from .flags import load_rules
    from .importers import ImportContext, store_capture
    from .report import ReportQuery, change_entry, query_changes, render_report_html
    from .store import Store
    from .targets import load_config

    config = load_config(config_path)
    target = config.target(DEMO_TARGET)
    store = Store.open(config)
    store.sync_targets(config.targets)
    lines: list[str] = []
    started = time.monotonic()
    rules = load_rules(strict=False)
    say(f"demo: replaying {len(versions)} versions of LinkedIn's privacy policy (Open Terms Archive data) in {directory}")
    try:
        async with Fetcher(config.defaults) as fetcher:
            for version in versions:
                web.pages[PAGE_PATH] = render_page(version.markdown)
                when = recorded_at(version)
                capture = await capture_target(fetcher, target)
                if not capture.ok or capture.document is None:
                    line = f"{version.name[:10]}  fetch failed: {capture.error}"
                else:
                    record = replace(capture.record, started_at=when, finished_at=when)
                    ctx = ImportContext(config, store, target, rules=rules, alert=True, detected_at=when)
                    stored, result = store_capture(ctx, capture.raws, capture.document, observed_at=when, provenance="live", ref=None, fetch=record)
                    sent = await asyncio.to_thread(_deliver_with_own_store, deliver_pending, config)
                    mailed = f" → {sent} email{'s' if sent != 1 else ''}" if sent else ""
                    line = f"{version.name[:10]}  {_step_text(store, stored, result, summary_line)}{mailed}"
                lines.append(line)
                say(line)
        rows = query_changes(store, ReportQuery())
        entries = [change_entry(row) for row in rows]
        report_path = directory / "report.html"
        report_path.write_text(render_report_html(rows, store), encoding="utf-8")
        key = next((e for e in entries if e["new"].get("effective_date") == KEY_CHANGE_DATE != e["old"].get("effective_date")), None)
        changes = len(entries)
    finally:
        store.close()
    result = DemoResult(directory, report_path, mail.directory, mail.count, len(versions), changes, key, lines)
    say(f"demo: done in {time.monotonic() - started:.0f}s")
    return result


def _step_text(store: Any, stored: Any, result: Any, summary_line: Callable[[Any], str]) -> str:
    """'change #14 (v14→v15): 5 added, …': one numbering, the change id with its versions."""
    if stored is None:
        return "unchanged"
    if result is None:
        return f"first version v{stored.seq}"
    row = store.db.execute("select id, old_seq from changes where new_version_id = ? and superseded_by is null order by id desc limit 1", [stored.id]).fetchone()
    if row is None:
        return f"v{stored.seq}: {summary_line(result)}"
    return f"change #{row[0]} (v{row[1]}→v{stored.seq}): {summary_line(result)}"


def _deliver_with_own_store(deliver: Callable[..., Any], config: Any) -> int:
    from .store import Store

    with Store.open(config) as store:
        return int(deliver(store, config).sent)


def key_change_lines(result: DemoResult) -> list[str]:
    """What happened on 18 September 2024, quoted from the flagged clauses."""
    entry = result.key_change
    if entry is None:
        return ["The 18 September 2024 version was not among the replayed versions."]
    lines = [
        f"The change to the policy effective {KEY_CHANGE_DATE}: change #{entry['id']} (v{entry['old_version']}→v{entry['new_version']}), "
        f"detected {entry['detected_at'][:10]}; `monitor show {entry['id']}`:"
    ]
    for change in entry["changes"]:
        for flag in change.get("flags") or []:
            if flag["category"] in ("ai-training", "ai-third-party", "opt-out-scope"):
                lines.append(f"  ⚑ {flag['category']} ({flag['severity']}, {flag.get('change') or flag['side']}): “{flag['evidence']}”")
                if flag.get("summary"):
                    lines.append(f"    {flag['summary']}")
    return lines
