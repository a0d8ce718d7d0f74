"""Shared fixtures: a real local web server, real config files, the real CLI.

Nothing here is mocked: pages are served over HTTP on 127.0.0.1, the browser is a real
headless Chromium, the database a real SQLite file in a temporary directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "ota"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def corpus_file(*parts: str) -> Path:
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared corpus not found at {CORPUS} (copy ../shared next to the repository)")
    return path


# ----------------------------------------------------------------------------- web server


def local_server(serve: Callable[[BaseHTTPRequestHandler, bool], None]) -> ThreadingHTTPServer:
    """A threaded HTTP server on 127.0.0.1, already serving, that hands every GET and HEAD
    (head=True) to `serve`. Its backlog takes bursts of concurrent fetches."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            serve(self, False)

        def do_HEAD(self) -> None:  # noqa: N802
            serve(self, True)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # the default backlog of 5 drops concurrent fetches
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def archive_tool(name: str) -> Path:
    """A command of the archive tools (pywb's `wayback`, `wb-manager`; `wacz`), installed by
    `make test` into a virtualenv of their own (.venv-archive; MONITOR_ARCHIVE_VENV elsewhere).
    Missing: the test skips with the fix, except under CI=true, where the set-up installs them."""
    venv = Path(os.environ.get("MONITOR_ARCHIVE_VENV") or ROOT / ".venv-archive")
    path = venv / "bin" / name
    if not path.exists():
        message = f"{path} not found: run `make archive-tools` (pywb and wacz in their own virtualenv)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " - under CI=true this test never skips")
        pytest.skip(message)
    return path


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


@dataclass
class Route:
    body: bytes | str | Callable[[], bytes | str] = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # statuses to answer before the real one, one per request (e.g. [503, 429])
    first: list[int] = field(default_factory=list)


class Site:
    """A local web server whose pages a test sets and changes at will."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.user_agents: list[str] = []
        self.cookies: list[tuple[str, str]] = []  # (path, Cookie header) per request
        self._lock = threading.Lock()
        site = self

        self.server = local_server(lambda handler, head: site._serve(handler, head=head))
        self.port = self.server.server_address[1]

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def set(self, path: str, body: bytes | str | Callable[[], bytes | str] = b"", **kwargs: Any) -> str:
        self.routes[path] = Route(body=body, **kwargs)
        return self.url(path)

    def _serve(self, handler: BaseHTTPRequestHandler, head: bool = False) -> None:
        path = handler.path.split("?")[0]
        with self._lock:
            self.hits[path] += 1
            self.user_agents.append(handler.headers.get("User-Agent", ""))
            self.cookies.append((path, handler.headers.get("Cookie", "")))
            route = self.routes.get(path)
            status_override = route.first.pop(0) if route and route.first else None
        if route is None:
            body, status, ctype, headers, delay = b"<html><body><h1>Not found</h1></body></html>", 404, "text/html", {}, 0.0
        else:
            body = route.body() if callable(route.body) else route.body
            status, ctype, headers, delay = route.status, route.content_type, dict(route.headers), route.delay
            if status_override is not None:
                status, body = status_override, f"<html><body>error {status_override}</body></html>"
                if status_override == 429:
                    headers.setdefault("Retry-After", "1")
        if isinstance(body, str):
            body = body.encode("utf-8")
        if delay:
            time.sleep(delay)
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", ctype)
            handler.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            if not head:
                handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site()
    yield server
    server.close()


def page(*paragraphs: str, title: str = "Privacy Policy", extra: str = "") -> str:
    """A small policy page."""
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return f"<!doctype html><html><head><title>{title}</title></head><body><main><h1>{title}</h1>{body}</main>{extra}</body></html>"


POLICY = [
    "Effective September 18, 2024",
    "We collect the data you give us when you create an account, such as your name and email address.",
    "We use your data to provide, support and personalise our Services, and to keep them secure.",
    "We share data with service providers who process it on our behalf under contract.",
    "You can access, correct or delete your data in your settings at any time.",
]


# ----------------------------------------------------------------------------- config files


FAST_DEFAULTS = {
    "schedule": "1h",
    "engine": "http",
    "timeout": "10s",
    "concurrency": 4,
    "retries": 1,
    "confirm_delay": "0s",
    "host_delay": "0s",
    "host_concurrency": 8,
}


def write_config(
    directory: Path,
    targets: list[dict[str, Any]],
    *,
    defaults: dict[str, Any] | None = None,
    alerts: dict[str, Any] | None = None,
    name: str = "targets.yaml",
) -> Path:
    data: dict[str, Any] = {"defaults": {**FAST_DEFAULTS, **(defaults or {})}, "targets": targets}
    if alerts is not None:
        data["alerts"] = alerts
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    return tmp_path


# ----------------------------------------------------------------------------- CLI


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 240) -> Result:
    """The real `monitor` command in a subprocess (exit codes, stderr and all)."""
    full_env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("MONITOR_CONFIG", None) if env is None or "MONITOR_CONFIG" not in env else None
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", *args], capture_output=True, text=True, env=full_env,
        cwd=str(cwd) if cwd else None, timeout=timeout, stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def in_process(*args: str) -> tuple[int, str, str]:
    """The CLI in this process (faster); returns (exit code, stdout, stderr)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from monitor.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def make_pdf(lines: list[str]) -> bytes:
    """A small, valid one-page PDF with these lines of text (Helvetica)."""

    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    content = "BT /F1 11 Tf 72 740 Td 16 TL " + " ".join(f"({esc(line)}) Tj T*" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content.encode('latin-1'))} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def browser_pids(root: int | None = None) -> list[int]:
    """Main Chromium processes under a process (default: this one): started by Playwright
    with --remote-debugging-pipe, and not a helper (renderers carry --type=...)."""
    import psutil

    found = []
    for child in psutil.Process(root).children(recursive=True):
        try:
            cmdline = child.cmdline()
            if "--remote-debugging-pipe" in cmdline and not any(arg.startswith("--type=") for arg in cmdline):
                found.append(child.pid)
        except psutil.Error:
            continue
    return found
