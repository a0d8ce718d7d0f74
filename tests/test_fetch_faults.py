"""Hostile and broken pages against the real engines (httpx and a real headless Chromium),
served from this machine: a slowloris server, a renderer stuck in `while(true){}`, a browser
that stops answering, block pages served with a 200, scripts that navigate away, a 30 MB
page, a gzip bomb, a DOM grown by script, latin-1 pages. Each ends as a typed failure (or,
for the charset cases, as the right text) within the fetch's limits."""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import signal
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.errors import FAILURE_KINDS
from monitor.charset import decode_body
from monitor.fetch import Capture, Fetcher, Limits, capture_target, same_site

from .conftest import POLICY, ROOT, Site, browser_pids, page, run_cli, write_config
from .test_fetch import defaults, no_sleep, target

pytestmark = pytest.mark.browser

BOTH = ("http", "browser")


def capture(t: Any, *, limits: Limits | None = None, **kwargs: Any) -> Capture:
    async def go() -> Capture:
        async with Fetcher(defaults(), sleep=no_sleep, limits=limits or Limits()) as fetcher:
            return await capture_target(fetcher, t, **kwargs)

    return asyncio.run(go())


def timed(t: Any, **kwargs: Any) -> tuple[Capture, float]:
    start = time.monotonic()
    result = capture(t, **kwargs)
    return result, time.monotonic() - start


def kind(result: Capture) -> str:
    return result.error.kind if result.error else "ok"


# ----------------------------------------------------------------------------- deadlines


class Slowloris:
    """Answers every request with headers, then one byte of body a second (bounded: it stops
    after `limit` seconds, or when the client goes away)."""

    def __init__(self, limit: float = 60.0) -> None:
        self.limit = limit
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def url(self, path: str = "/policy") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        started = time.monotonic()
        try:
            conn.settimeout(5)
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 100000\r\n\r\n")
            body = page(*POLICY).encode() * 50
            for i in range(len(body)):
                if self._stop.is_set() or time.monotonic() - started > self.limit:
                    break
                conn.sendall(body[i : i + 1])
                time.sleep(1.0)
        except OSError:
            pass  # the client gave up: that is the point
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture
def slowloris() -> Iterator[Slowloris]:
    server = Slowloris()
    yield server
    server.close()


@pytest.mark.parametrize("engine", BOTH)
def test_slowloris_server_is_a_timeout_within_the_deadline(slowloris: Slowloris, engine: str) -> None:
    result, took = timed(target(slowloris.url(), engine=engine, timeout=3.0, retries=0))
    assert kind(result) == "timeout", result.error
    assert took < 3.0 + 4.0, took  # the deadline, plus closing the page
    assert "3s" in str(result.error)


def test_monitor_check_finishes_with_a_slowloris_target_and_records_the_failure(tmp_path: Path, site: Site, slowloris: Slowloris) -> None:
    good = site.set("/good", page(*POLICY))
    config = write_config(tmp_path, [
        {"id": "slow", "service": "A", "document": "terms", "url": slowloris.url()},
        {"id": "good", "service": "B", "document": "terms", "url": good},
    ], defaults={"timeout": "3s", "retries": 0})
    start = time.monotonic()
    result = run_cli("--config", str(config), "check", timeout=60)
    assert time.monotonic() - start < 30
    assert result.code == 0, result.err
    assert "slow: failed (timeout)" in result.out
    assert "checked 2, new version 1, unchanged 0, failed 1 (timeout 1)" in result.out


def test_the_daemon_records_a_slowloris_timeout_and_runs_the_target_again(tmp_path: Path, site: Site, slowloris: Slowloris) -> None:
    import json
    import subprocess
    import sys

    good = site.set("/good", page(*POLICY))
    config = write_config(tmp_path, [
        {"id": "slow", "service": "A", "document": "terms", "url": slowloris.url(), "schedule": "3s"},
        {"id": "good", "service": "B", "document": "terms", "url": good, "schedule": "1h"},
    ], defaults={"timeout": "2s", "retries": 0, "jitter": 0, "failure_threshold": 10})
    with (tmp_path / "daemon.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), "run", "--log-format", "json"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        try:
            deadline, slow = time.monotonic() + 60, {}
            while time.monotonic() < deadline:
                status = run_cli("--config", str(config), "status", "--format", "json", timeout=30)
                if status.code == 0:
                    slow = {t["id"]: t for t in json.loads(status.out)["targets"]}["slow"]
                    if slow["consecutive_failures"] >= 2:
                        break
                time.sleep(1)
            assert slow.get("consecutive_failures", 0) >= 2, (slow, (tmp_path / "daemon.log").read_text()[-2000:])
            assert slow["last_error"].startswith("timeout:"), slow
            assert slow["next_due"] and slow["next_due"] != "now"
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0


HANG_AFTER_LOAD = "<script>addEventListener('load', function () { setTimeout(function () { while (true) {} }, 50); });</script>"


def _renderer_cpu() -> dict[int, float]:
    import psutil

    found = {}
    for child in psutil.Process().children(recursive=True):
        try:
            if "--type=renderer" in child.cmdline():
                times = child.cpu_times()
                found[child.pid] = times.user + times.system
        except psutil.Error:
            continue
    return found


def test_a_renderer_stuck_in_a_loop_is_a_timeout_and_the_page_is_discarded(site: Site) -> None:
    hung = site.set("/hung", page(*POLICY, extra=HANG_AFTER_LOAD))
    fine = site.set("/fine", page(*POLICY))

    async def go() -> tuple[Capture, float, Capture, int, list[int]]:
        async with Fetcher(defaults(), sleep=no_sleep, limits=Limits(script_time=2.0)) as fetcher:
            start = time.monotonic()
            stuck = await capture_target(fetcher, target(hung, engine="browser", timeout=10.0, retries=0))
            took = time.monotonic() - start
            before = _renderer_cpu()
            await asyncio.sleep(1.0)
            after = _renderer_cpu()
            spinning = [pid for pid, cpu in after.items() if cpu - before.get(pid, cpu) > 0.5]
            then = await capture_target(fetcher, target(fine, engine="browser"))
            return stuck, took, then, fetcher.browser.launches, spinning

    stuck, took, then, launches, spinning = asyncio.run(go())
    assert kind(stuck) == "timeout", stuck.error
    assert "renderer" in str(stuck.error)
    assert took < 10.0, took  # found by the script-time limit, not the whole deadline
    assert spinning == []  # the stuck renderer is gone, not left burning a core
    assert then.ok, then.error
    assert launches == 1  # the browser itself answered: no relaunch needed


def test_a_browser_that_stops_responding_is_killed_and_relaunched(site: Site) -> None:
    import psutil

    fine = site.set("/fine", page(*POLICY))
    earlier = set(browser_pids())

    async def go() -> tuple[Capture, float, Capture, int, int]:
        async with Fetcher(defaults(), sleep=no_sleep, limits=Limits(script_time=2.0, close_time=2.0)) as fetcher:
            assert (await capture_target(fetcher, target(fine, engine="browser"))).ok
            pids = [pid for pid in browser_pids() if pid not in earlier]
            assert len(pids) == 1
            os.kill(pids[0], signal.SIGSTOP)  # alive, but answers nothing
            start = time.monotonic()
            frozen = await capture_target(fetcher, target(fine, engine="browser", timeout=3.0, retries=0))
            took = time.monotonic() - start
            after = await capture_target(fetcher, target(fine, engine="browser"))
            return frozen, took, after, fetcher.browser.launches, pids[0]

    frozen, took, after, launches, pid = asyncio.run(go())
    assert kind(frozen) == "timeout", frozen.error
    assert took < 3.0 + 2.0 + 6.0, took  # deadline + close_time + the probe
    assert after.ok, after.error
    assert launches == 2
    try:
        status = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        status = "gone"
    assert status in ("gone", psutil.STATUS_ZOMBIE)


# ----------------------------------------------------------------------------- block pages

CLOUDFLARE_BLOCK = """<!DOCTYPE html><html lang="en-US"><head><title>Attention Required! | Cloudflare</title>
<meta charset="UTF-8"><style>body{font-family:sans-serif} .cf-error-details{margin:0}</style></head><body>
<div id="cf-wrapper"><div id="cf-error-details" class="cf-error-details-wrapper"><div class="cf-wrapper cf-header cf-error-overview">
<h1 data-translate="block_headline">Sorry, you have been blocked</h1>
<h2 class="cf-subheadline"><span data-translate="unable_to_access">You are unable to access</span> example.com</h2></div>
<div class="cf-section cf-wrapper"><div class="cf-columns two"><div class="cf-column">
<h2 data-translate="blocked_why_headline">Why have I been blocked?</h2>
<p>This website is using a security service to protect itself from online attacks. The action you just performed triggered the security solution. There are several actions that could trigger this block including submitting a certain word or phrase, a SQL command or malformed data.</p>
</div><div class="cf-column"><h2 data-translate="blocked_resolve_headline">What can I do to resolve this?</h2>
<p>You can email the site owner to let them know you were blocked. Please include what you were doing when this page came up and the Cloudflare Ray ID found at the bottom of this page.</p>
</div></div></div><div class="cf-error-footer cf-wrapper"><p><span>Cloudflare Ray ID: <strong>8c1f2a3b4c5d6e7f</strong></span>
<span>Your IP: 127.0.0.1</span><span>Performance &amp; security by Cloudflare</span></p></div></div></div></body></html>"""

AKAMAI_BLOCK = """<HTML><HEAD>
<TITLE>Access Denied</TITLE>
</HEAD><BODY>
<H1>Access Denied</H1>

You don't have permission to access "http&#58;&#47;&#47;www&#46;example&#46;com&#47;help&#47;" on this server.<P>
Reference&#32;&#35;18&#46;2d5f1602&#46;1726650000&#46;1a2b3c4d
<P>https&#58;&#47;&#47;errors&#46;edgesuite&#46;net&#47;18&#46;2d5f1602&#46;1726650000&#46;1a2b3c4d</P>
</BODY>
</HTML>"""

PERIMETERX_BLOCK = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Access to this page has been denied.</title></head><body>
<div class="px-captcha-error-container"><div class="px-captcha-error-header">Access to this page has been denied.</div>
<div class="px-captcha-error-message">Press &amp; Hold to confirm you are a human (and not a bot).</div>
<div id="px-captcha"></div><p>Reference ID 3f0c9a1e-7533-11ef-8d2a-0242ac120002</p></div></body></html>"""

DATADOME_BLOCK = """<html><head><title>example.com</title><style>#cmsg{animation: A 1.5s;}@keyframes A{0%{opacity:0;}99%{opacity:0;}100%{opacity:1;}}</style></head>
<body style="margin:0"><p id="cmsg">Please enable JS and disable any ad blocker</p>
<script data-cfasync="false">var dd={'rt':'c','cid':'AHrlqAAAAAMA','hsh':'2211F5','t':'bv','s':40300,'e':'abc','host':'geo.captcha-delivery.com'}</script>
<script data-cfasync="false" src="https://ct.captcha-delivery.com/c.js"></script></body></html>"""

BLOCK_PAGES = {"cloudflare": CLOUDFLARE_BLOCK, "akamai": AKAMAI_BLOCK, "perimeterx": PERIMETERX_BLOCK, "datadome": DATADOME_BLOCK}

HELP_PAGE = page(
    "To turn off the setting, open Settings, then Data privacy, then Data for Generative AI Improvement.",
    title="Control whether your data is used for AI",
)


@pytest.mark.parametrize("engine", BOTH)
@pytest.mark.parametrize("vendor", sorted(BLOCK_PAGES))
def test_a_block_page_with_status_200_is_a_bot_wall_even_after_a_short_version(site: Site, engine: str, vendor: str) -> None:
    url = site.set("/help", HELP_PAGE)
    first = capture(target(url, engine=engine))
    assert first.ok, first.error
    previous = len(first.document.to_markdown().encode())
    assert previous < 400  # a short help page: the too-short rule cannot protect it
    site.set("/help", BLOCK_PAGES[vendor])
    result = capture(target(url, engine=engine, retries=0), previous_length=previous)
    assert kind(result) == "bot-wall", (vendor, result.error)
    assert result.record.status == 200


def test_pages_that_only_mention_bot_defences_are_not_bot_walls(site: Site) -> None:
    short = site.set("/captcha-help", page(
        "If we ask you to complete a security check or a captcha, we do so to keep your account safe.",
        "Members you have blocked cannot see your profile; if you have been blocked, you cannot see theirs.",
        title="Access denied when signing in",
    ))
    vendors = site.set("/cookies", page(
        *POLICY,
        "We use Cloudflare, DataDome (captcha-delivery.com), PerimeterX and hCaptcha to tell people from bots.",
        "A security check may ask you to verify you are human. Attention required: these providers see your IP address.",
        title="Cookie Policy",
    ))
    for url in (short, vendors):
        for engine in BOTH:
            result = capture(target(url, engine=engine))
            assert result.ok, (url, engine, result.error)


# ----------------------------------------------------------------------------- navigation


def other_site(site: Site, path: str) -> str:
    """The same local server under another site's name (localhost is not 127.0.0.1)."""
    return site.url(path).replace("127.0.0.1", "localhost")


def test_a_script_that_navigates_after_load_is_navigated_away(site: Site) -> None:
    attacker = other_site(site, "/attacker")
    site.set("/attacker", page("We no longer train AI models on your data.", title="Privacy Policy"))
    site.set("/elsewhere", page("We no longer train AI models on your data.", title="Privacy Policy"))
    script = "<script>addEventListener('load', function () { setTimeout(function () { location.href = %r; }, 300); });</script>"
    away = site.set("/away", page(*POLICY, extra=script % attacker))
    same = site.set("/same", page(*POLICY, extra=script % "/elsewhere"))
    for url in (away, same):
        result = capture(target(url, engine="browser", retries=0))
        assert kind(result) == "navigated-away", (url, result.error)
        assert result.document is None and not result.raws


@pytest.mark.parametrize("engine", BOTH)
def test_a_redirect_to_another_site_is_navigated_away(site: Site, engine: str) -> None:
    site.set("/landing", page(*POLICY))
    url = site.set("/moved", "", status=302, headers={"Location": other_site(site, "/landing")})
    result = capture(target(url, engine=engine, retries=0))
    assert kind(result) == "navigated-away", result.error
    assert "localhost" in str(result.error)


@pytest.mark.parametrize("engine", BOTH)
def test_redirects_within_the_site_during_the_load_stay_normal(site: Site, engine: str) -> None:
    final = site.set("/en/privacy/", page(*POLICY))
    site.set("/en/privacy", "", status=301, headers={"Location": "/en/privacy/"})
    url = site.set("/privacy", "", status=302, headers={"Location": "/en/privacy"})
    result = capture(target(url, engine=engine))
    assert result.ok, result.error
    assert result.record.final_url == final


def test_script_redirect_during_the_load_and_history_changes_after_it_stay_normal(site: Site) -> None:
    site.set("/de/privacy", page(*POLICY, extra="<script>setTimeout(function () { history.pushState({}, '', '/de/privacy#s2'); }, 100);</script>"))
    url = site.set("/privacy", "<html><head><script>location.replace('/de/privacy');</script></head><body></body></html>")
    result = capture(target(url, engine="browser"))
    assert result.ok, result.error
    assert result.record.final_url.startswith(site.url("/de/privacy"))


def test_same_site_rules() -> None:
    assert same_site("https://www.linkedin.com/legal/privacy-policy", "https://de.linkedin.com/legal/privacy-policy")
    assert same_site("http://mbasic.facebook.com/privacy/", "https://www.facebook.com/privacy/policy/")
    assert same_site("https://www.example.co.uk/a", "https://help.example.co.uk/b")
    assert not same_site("https://www.example.co.uk/a", "https://other.co.uk/b")
    assert not same_site("https://www.linkedin.com/legal", "https://linkedin.com.evil.example/legal")
    assert not same_site("http://127.0.0.1:8000/a", "http://localhost:8000/a")
    assert same_site("http://127.0.0.1:8000/a", "http://127.0.0.1:9000/b")


# ----------------------------------------------------------------------------- sizes


def gzip_bomb(decoded: int = 1 << 30) -> bytes:
    """A gzip body that inflates to `decoded` bytes of paragraphs (about 10 MB on the wire).
    One block is deflated with a full flush, so its compressed form repeats byte for byte."""
    block = (("<p>" + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 8 + "</p>\n") * 2300).encode()[: 1 << 20]
    count = decoded // len(block)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = deflate.compress(b"<!doctype html><html><body>") + deflate.flush(zlib.Z_FULL_FLUSH)
    repeated = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    tail = deflate.flush()
    crc = zlib.crc32(b"<!doctype html><html><body>")
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    size = (len(b"<!doctype html><html><body>") + count * len(block)) & 0xFFFFFFFF
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + head + repeated * count + tail + struct.pack("<II", crc & 0xFFFFFFFF, size)


def test_gzip_bomb_helper_is_what_it_says() -> None:
    bomb = gzip_bomb(64 << 20)
    assert len(bomb) < 2 << 20
    assert len(gzip.decompress(bomb)) == len(b"<!doctype html><html><body>") + 64 * (1 << 20)


def _renderer_peak(stop: threading.Event, peak: list[int]) -> None:
    import psutil

    while not stop.is_set():
        total = 0
        for child in psutil.Process().children(recursive=True):
            try:
                if "--type=renderer" in child.cmdline():
                    total = max(total, child.memory_info().rss)
            except psutil.Error:
                continue
        peak[0] = max(peak[0], total)
        time.sleep(0.1)


@pytest.mark.parametrize("engine", BOTH)
def test_a_30_mb_page_is_too_large(site: Site, engine: str) -> None:
    url = site.set("/huge", page(*POLICY, extra="<p>" + "x" * (30 << 20) + "</p>"))
    result, took = timed(target(url, engine=engine, retries=0, timeout=30.0))
    assert kind(result) == "too-large", result.error
    assert "25 MB" in str(result.error)
    assert took < 20, took


@pytest.mark.parametrize("engine", BOTH)
def test_a_gzip_bomb_is_too_large_and_the_renderer_stays_small(site: Site, engine: str) -> None:
    bomb = gzip_bomb()
    url = site.set("/bomb", bomb, headers={"Content-Encoding": "gzip"})
    stop, peak = threading.Event(), [0]
    watcher = threading.Thread(target=_renderer_peak, args=(stop, peak), daemon=True)
    watcher.start()
    try:
        result, took = timed(target(url, engine=engine, retries=0, timeout=60.0))
    finally:
        stop.set()
        watcher.join()
    assert kind(result) == "too-large", result.error
    assert took < 45, took
    assert peak[0] < 1536 << 20, f"a renderer reached {peak[0] >> 20} MB"


def test_a_dom_grown_by_script_is_too_large(site: Site) -> None:
    grow = "<script>addEventListener('load', function () { var b = document.body; for (var i = 0; i < 60000; i++) b.appendChild(document.createElement('span')); });</script>"
    url = site.set("/grow", page(*POLICY, extra=grow))
    result = capture(target(url, engine="browser", retries=0), limits=Limits(max_dom_nodes=50_000))
    assert kind(result) == "too-large", result.error
    assert "elements" in str(result.error)


# ----------------------------------------------------------------------------- charsets

LATIN1_TEXT = [
    "Politique de confidentialité — mise à jour le 18 septembre 2024",
    "Nous utilisons vos données personnelles pour développer et entraîner des modèles d'intelligence artificielle.",
    "Vous pouvez vous opposer à ce traitement à tout moment ; l'opposition n'a pas d'effet rétroactif.",
    "Les données déjà utilisées pour l'entraînement ne seront pas effacées. Ça concerne aussi les élèves, "
    "les événements, les œuvres publiées et les reçus de paiement à l'étranger.",
    "Datenschutzerklärung: Wir verarbeiten Ihre Daten für Künstliche Intelligenz. Größe, Straße, Übersicht, Änderung.",
    "Política de privacidad: utilizamos sus datos para entrenar modelos de inteligencia artificial. Año, niño, señal.",
]


def latin1_page(meta: str = "") -> bytes:
    # The em dash and the oe ligature are not in latin-1; windows-1252 has both (0x97, 0x9c),
    # and a page labelled iso-8859-1 is read as windows-1252 by every browser.
    html = page(*LATIN1_TEXT, title="Politique de confidentialité").replace("<head>", f"<head>{meta}")
    return html.encode("windows-1252")


CHARSET_CASES = {
    "no-charset": (latin1_page(), "text/html"),
    "header-iso-8859-1": (latin1_page(), "text/html; charset=iso-8859-1"),
    "header-quoted": (latin1_page(), 'text/html; charset="ISO-8859-1"'),
    "meta-charset": (latin1_page('<meta charset="iso-8859-1">'), "text/html"),
    "meta-http-equiv": (latin1_page('<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'), "text/html"),
    "wrong-header-utf-8": (latin1_page(), "text/html; charset=utf-8"),
    "no-content-type": (latin1_page(), ""),
}


@pytest.mark.parametrize("case", sorted(CHARSET_CASES))
def test_a_latin1_page_is_stored_without_replacement_characters(site: Site, case: str) -> None:
    body, content_type = CHARSET_CASES[case]
    url = site.set(f"/{case}", body, content_type=content_type)
    result = capture(target(url, engine="http"))
    assert result.ok, result.error
    text = result.document.to_markdown()
    assert "\ufffd" not in text
    for paragraph in LATIN1_TEXT:
        assert paragraph in text, paragraph
    assert result.raws[0].data == body  # the evidence is the bytes as received


@pytest.mark.parametrize("case", ["header-iso-8859-1", "meta-charset", "meta-http-equiv", "no-charset"])
def test_both_engines_read_a_latin1_page_alike(site: Site, case: str) -> None:
    body, content_type = CHARSET_CASES[case]
    url = site.set(f"/{case}", body, content_type=content_type)
    http, browser = capture(target(url, engine="http")), capture(target(url, engine="browser"))
    assert http.ok and browser.ok, (http.error, browser.error)
    assert http.document.to_markdown() == browser.document.to_markdown()


def test_decoding_follows_the_html_sniffing_order() -> None:
    text = "Données personnelles — “entraînement”"
    utf8, cp1252 = f"<p>{text}</p>".encode(), f"<p>{text}</p>".encode("windows-1252")
    bom = b"\xef\xbb\xbf" + utf8
    # a byte order mark wins over everything, as in browsers
    assert decode_body(bom, "text/html; charset=iso-8859-1") == f"<p>{text}</p>"
    # then the Content-Type charset, over the page's own <meta>
    assert decode_body(b'<meta charset="utf-8">' + cp1252, "text/html; charset=windows-1252").endswith(f"<p>{text}</p>")
    # then <meta charset> or http-equiv in the head
    assert decode_body(b'<meta charset="windows-1252">' + cp1252, "text/html").endswith(f"<p>{text}</p>")
    assert decode_body(b"<!-- <meta charset=utf-8> -->" + b'<meta charset="windows-1252">' + cp1252, "text/html").endswith(text + "</p>")
    # then detection: valid UTF-8 is UTF-8, anything else goes to the detector
    assert decode_body(utf8, "text/html") == f"<p>{text}</p>"
    assert decode_body(cp1252, "text/html") == f"<p>{text}</p>"
    # a U+FFFD the page really contains is kept
    assert decode_body("<p>caf\ufffd</p>".encode(), "text/html; charset=utf-8") == "<p>caf\ufffd</p>"
    # every byte of windows-1252 decodes (the five holes map to C1 controls, as in browsers)
    assert decode_body(bytes(range(0x80, 0x100)), "text/plain; charset=iso-8859-1")[:2] == "€\x81"
    # an unknown label is skipped, not fatal
    assert decode_body(cp1252, "text/html; charset=x-no-such-thing") == f"<p>{text}</p>"


# ----------------------------------------------------------------------------- the table of kinds


def test_every_failure_kind_is_in_the_readme_failure_list_and_nothing_else() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- failure-kinds -->")[1].split("<!-- /failure-kinds -->")[0]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|.*\|\s*(yes)?\s*\|$", section, flags=re.M)
    assert sorted(kind for kind, _ in rows) == sorted(FAILURE_KINDS)
    assert {kind for kind, retried in rows if retried} == {kind for kind, (_, retried) in FAILURE_KINDS.items() if retried}
