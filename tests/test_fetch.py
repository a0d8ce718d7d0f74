"""Fetching with real engines: plain HTTP and a real headless Chromium, against a local server."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from monitor.fetch import Capture, Fetcher, capture_target
from monitor.targets import Defaults, Target, parse_schedule

from .conftest import POLICY, Site, browser_pids, make_pdf, page

pytestmark = pytest.mark.browser

JS_PAGE = """<!doctype html><html><head><title>Policy</title></head><body>
<main id="app"></main><noscript>You need to enable JavaScript to run this app.</noscript>
<script>
setTimeout(function () {
  var html = '<h1>Privacy Policy</h1>';
  var paras = %s;
  for (var i = 0; i < paras.length; i++) { html += '<p>' + paras[i] + '</p>'; }
  document.getElementById('app').innerHTML = html;
}, 150);
</script></body></html>"""


def js_page(paragraphs: list[str]) -> str:
    import json

    return JS_PAGE % json.dumps(paragraphs)


def defaults(**overrides: Any) -> Defaults:
    values = dict(
        schedule=parse_schedule("1h"), engine="auto", timeout=10.0, user_agent="monitor-test/1", locale="en-US",
        concurrency=4, retries=2, confirm_delay=0.0, failure_threshold=3, jitter=0.0, host_concurrency=8,
        host_delay=0.0, recycle_after=200, lang="en",
    )
    values.update(overrides)
    return Defaults(**values)


def target(url: str | list[str], **overrides: Any) -> Target:
    urls = tuple(url) if isinstance(url, list) else (url,)
    values = dict(id="t", service="Example", document="privacy-policy", urls=urls, timeout=10.0, retries=2, user_agent="monitor-test/1")
    values.update(overrides)
    return Target(**values)


async def no_sleep(_: float) -> None:
    return None


def capture(t: Target, *, d: Defaults | None = None, **kwargs: Any) -> Capture:
    async def go() -> Capture:
        async with Fetcher(d or defaults(), sleep=no_sleep) as fetcher:
            return await capture_target(fetcher, t, **kwargs)

    return asyncio.run(go())


def test_browser_captures_javascript_rendered_content(site: Site) -> None:
    url = site.set("/js", js_page(POLICY))
    result = capture(target(url, engine="browser"))
    assert result.ok, result.error
    texts = [c.text for c in result.document.clauses]
    assert texts[0] == "Privacy Policy" and POLICY[1] in texts
    assert result.record.engine == "browser" and result.record.browser_version
    assert result.record.status == 200 and result.record.final_url == url


def test_http_engine_sees_only_the_shell_of_a_javascript_page(site: Site) -> None:
    url = site.set("/js", js_page(POLICY))
    result = capture(target(url, engine="http"))
    assert not result.ok and result.error.kind == "empty"


def test_auto_uses_http_for_static_pages_and_the_browser_when_needed(site: Site) -> None:
    static = site.set("/static", page(*POLICY))
    dynamic = site.set("/js", js_page(POLICY))
    first = capture(target(static, engine="auto"))
    assert first.ok and first.record.engine == "http" and first.engine_choice == "http"
    second = capture(target(dynamic, engine="auto"))
    assert second.ok, second.error
    assert second.record.engine == "browser" and second.engine_choice == "browser"
    assert POLICY[2] in [c.text for c in second.document.clauses]
    # the remembered choice goes straight to the browser: one request, not two
    site.hits.clear()
    third = capture(target(dynamic, engine="auto"), engine_choice="browser")
    assert third.ok and third.record.engine == "browser" and site.hits["/js"] == 1


def test_select_remove_and_wait_for_in_the_browser(site: Site) -> None:
    html = """<html><body><nav>Menu</nav><div id="policy"><h1>Terms</h1><p>Keep me.</p>
    <aside class="promo"><p>Buy premium!</p></aside></div><div id="other"><p>Not me.</p></div>
    <script>setTimeout(function(){var p=document.createElement('p');p.id='late';p.textContent='Arrived late.';
    document.getElementById('policy').appendChild(p);}, 300);</script></body></html>"""
    url = site.set("/sel", html)
    result = capture(target(url, engine="browser", select=("#policy",), remove=(".promo",), wait_for="#late"))
    assert result.ok, result.error
    assert [c.text for c in result.document.clauses] == ["Terms", "Keep me.", "Arrived late."]


def test_missing_selector_is_classified(site: Site) -> None:
    url = site.set("/p", page(*POLICY))
    for engine in ("http", "browser"):
        result = capture(target(url, engine=engine, select=("#nowhere",), timeout=2.0))
        assert result.error is not None and result.error.kind == "selector-missing", engine


def test_consent_overlay_is_removed(site: Site) -> None:
    overlay = """<script>var d=document.createElement('div');d.id='onetrust-consent-sdk';
    d.innerHTML='<p>We value your privacy. Accept all cookies?</p>';document.body.appendChild(d);</script>"""
    url = site.set("/consent", page(*POLICY, extra=overlay))
    for engine in ("browser", "http"):
        result = capture(target(url, engine=engine))
        assert result.ok
        assert not any("Accept all cookies" in c.text for c in result.document.clauses), engine


def test_redirects_are_followed_and_recorded(site: Site) -> None:
    final = site.set("/final", page(*POLICY))
    url = site.set("/old", "", status=301, headers={"Location": "/final"})
    for engine in ("http", "browser"):
        result = capture(target(url, engine=engine))
        assert result.ok and result.record.final_url == final and result.record.requested_url == url, engine


@pytest.mark.parametrize("engine", ["http", "browser"])
def test_http_errors_are_classified(site: Site, engine: str) -> None:
    missing = site.url("/missing")
    gone = site.set("/gone", page("Gone"), status=410)
    broken = site.set("/broken", page("Oops"), status=500)
    wall = site.set("/wall", "<html><title>Just a moment...</title><body><div id='cf-challenge'>Checking your browser before accessing</div></body></html>", status=403)
    forbidden = site.set("/forbidden", page("Forbidden"), status=403)
    kinds = {}
    for url in (missing, gone, broken, wall, forbidden):
        result = capture(target(url, engine=engine, retries=1))
        kinds[url.rsplit("/", 1)[1]] = result.error.kind if result.error else "ok"
    assert kinds == {"missing": "http-404", "gone": "http-410", "broken": "http-5xx", "wall": "bot-wall", "forbidden": "http-403"}
    assert site.hits["/broken"] == 2  # one retry for a 5xx


def test_retries_honour_retry_after_then_succeed(site: Site) -> None:
    waits: list[float] = []

    async def record_sleep(seconds: float) -> None:
        waits.append(seconds)

    url = site.set("/flaky", page(*POLICY), first=[503, 429])
    site.routes["/flaky"].headers = {}

    async def go() -> Capture:
        async with Fetcher(defaults(), sleep=record_sleep) as fetcher:
            return await capture_target(fetcher, target(url, engine="http", retries=3))

    result = asyncio.run(go())
    assert result.ok and result.record.attempts == 3
    assert site.hits["/flaky"] == 3
    assert waits[1] == 1.0  # the 429's Retry-After: 1


def test_timeouts_and_slow_pages(site: Site) -> None:
    slow = site.set("/slow", page(*POLICY), delay=1.0)
    assert capture(target(slow, engine="http", timeout=5.0)).ok
    too_slow = site.set("/too-slow", page(*POLICY), delay=3.0)
    for engine in ("http", "browser"):
        result = capture(target(too_slow, engine=engine, timeout=1.0, retries=0))
        assert result.error is not None and result.error.kind == "timeout", engine


def test_network_and_dns_failures(site: Site) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    refused = capture(target(f"http://127.0.0.1:{port}/", engine="http", retries=0))
    assert refused.error is not None and refused.error.kind == "network"
    for engine in ("http", "browser"):
        result = capture(target("http://no-such-host.invalid/privacy", engine=engine, retries=0))
        assert result.error is not None and result.error.kind in ("dns", "network"), (engine, result.error)


def test_images_media_and_fonts_are_blocked(site: Site) -> None:
    site.set("/img.png", b"\x89PNG", content_type="image/png")
    site.set("/font.woff2", b"wOF2", content_type="font/woff2")
    extra = '<img src="/img.png"><style>@font-face{font-family:x;src:url(/font.woff2)} p{font-family:x}</style>'
    url = site.set("/withimg", page(*POLICY, extra=extra))
    assert capture(target(url, engine="browser")).ok
    assert site.hits["/img.png"] == 0 and site.hits["/font.woff2"] == 0


def test_each_fetch_starts_with_a_fresh_context(site: Site) -> None:
    setter = site.set("/setter", page(*POLICY, extra="<script>document.cookie='visited=yes; path=/';</script>"))
    reader = site.set("/reader", page(*POLICY))

    async def go() -> None:
        async with Fetcher(defaults(), sleep=no_sleep) as fetcher:
            for url in (setter, reader, setter):
                assert (await capture_target(fetcher, target(url, engine="browser"))).ok

    asyncio.run(go())
    sent = [cookie for path, cookie in site.cookies if path in ("/setter", "/reader")]
    assert sent == ["", "", ""]


def test_contexts_are_reused_per_host_with_cookies_and_storage_cleared(site: Site) -> None:
    """A context is kept for the next fetch of the same host (one fetch at a time in it);
    what a page leaves behind (cookies, local storage) is cleared before it is reused."""
    keep = "<script>document.cookie='seen=1; path=/'; localStorage.setItem('k', 'v');</script>"
    show = "<script>document.addEventListener('DOMContentLoaded', function () { var p = document.createElement('p'); p.textContent = 'Stored value: ' + localStorage.getItem('k') + '.'; document.querySelector('main').appendChild(p); });</script>"
    setter = site.set("/keep", page(*POLICY, extra=keep))
    reader = site.set("/show", page(*POLICY, extra=show))

    async def go() -> tuple[list[Capture], int]:
        async with Fetcher(defaults(), sleep=no_sleep) as fetcher:
            results = [await capture_target(fetcher, target(url, engine="browser")) for url in (setter, reader, setter)]
            return results, len(fetcher.browser._browser.contexts)

    results, contexts = asyncio.run(go())
    assert all(r.ok for r in results), [r.error for r in results]
    assert contexts == 1
    assert "Stored value: null." in [c.text for c in results[1].document.clauses]
    assert [cookie for path, cookie in site.cookies if path in ("/keep", "/show")] == ["", "", ""]


def test_content_fetched_by_script_after_load_is_captured(site: Site) -> None:
    """No `networkidle`: the engine waits while an XHR/fetch is in flight, then for the DOM
    to be quiet, so text a script fetches after the load event is still read."""
    site.set("/late.json", '{"text": "We may use your content to train AI models."}', content_type="application/json", delay=0.6)
    script = ("<script>addEventListener('load', function () { fetch('/late.json').then(function (r) { return r.json(); })"
              ".then(function (d) { var p = document.createElement('p'); p.textContent = d.text; document.querySelector('main').appendChild(p); }); });</script>")
    url = site.set("/late", page(*POLICY, extra=script))
    result = capture(target(url, engine="browser"))
    assert result.ok, result.error
    assert "We may use your content to train AI models." in [c.text for c in result.document.clauses]


def test_http_engine_keeps_cookies_for_one_fetch_only(site: Site) -> None:
    """One client serves every fetch, but a cookie set during a fetch's redirects goes with
    that fetch only: the next target is a fresh visitor."""
    site.set("/final", page(*POLICY))
    start = site.set("/start", b"", status=302, headers={"Location": "/final", "Set-Cookie": "gate=passed; Path=/"})
    other = site.set("/other", page(*POLICY))

    async def go() -> None:
        async with Fetcher(defaults(), sleep=no_sleep) as fetcher:
            for url in (start, other, start):
                assert (await capture_target(fetcher, target(url, engine="http"))).ok

    asyncio.run(go())
    sent = [(path, cookie) for path, cookie in site.cookies]
    assert sent == [("/start", ""), ("/final", "gate=passed"), ("/other", ""), ("/start", ""), ("/final", "gate=passed")]


def test_pdf_policy_is_stored_raw_and_its_text_extracted(site: Site) -> None:
    pdf = make_pdf(["Privacy Policy", "", "Effective date: 2024-09-18", "", "We may use your content to train AI models."])
    url = site.set("/policy.pdf", pdf, content_type="application/pdf")
    for engine in ("http", "browser", "auto"):
        result = capture(target(url, engine=engine))
        assert result.ok, (engine, result.error)
        assert result.raws[0].ext == "pdf" and result.raws[0].data == pdf
        assert result.document.effective_date == "2024-09-18"


def test_non_html_content_is_refused(site: Site) -> None:
    url = site.set("/data.json", b'{"a": 1}', content_type="application/json")
    for engine in ("http", "browser"):
        result = capture(target(url, engine=engine))
        assert result.error is not None and result.error.kind == "non-html", engine


def test_suspiciously_short_content_is_a_failure_not_a_version(site: Site) -> None:
    url = site.set("/short", page("Loading..."))
    result = capture(target(url, engine="http"), previous_length=5000)
    assert result.error is not None and result.error.kind == "too-short"
    assert "not recorded as a version" in str(result.error)


def test_several_pages_make_one_document(site: Site) -> None:
    a = site.set("/a", page(POLICY[1], title="Part A"))
    b = site.set("/b", page(POLICY[2], title="Part B"))
    result = capture(target([a, b], engine="http"))
    assert result.ok
    texts = [c.text for c in result.document.clauses]
    assert texts == ["Part A", POLICY[1], "Part B", POLICY[2]]
    assert [r.url for r in result.raws] == [a, b]


def test_user_agent_and_locale_are_sent(site: Site) -> None:
    url = site.set("/ua", page(*POLICY))
    assert capture(target(url, engine="http", user_agent="PolicyWatch/9")).ok
    assert capture(target(url, engine="browser", user_agent="PolicyWatch/9")).ok
    assert site.user_agents[-2:] == ["PolicyWatch/9", "PolicyWatch/9"]


def test_browser_killed_mid_run_is_relaunched(site: Site) -> None:
    url = site.set("/p", page(*POLICY))
    slow = site.set("/slow", page(*POLICY), delay=2.0)

    earlier = set(browser_pids())  # a previous test's browser may still be exiting

    async def go() -> tuple[Capture, Capture, int]:
        async with Fetcher(defaults(), sleep=no_sleep) as fetcher:
            first = await capture_target(fetcher, target(url, engine="browser"))
            assert first.ok
            pids = [pid for pid in browser_pids() if pid not in earlier]
            assert len(pids) == 1
            during = asyncio.create_task(capture_target(fetcher, target(slow, engine="browser", retries=2)))
            await asyncio.sleep(0.8)
            os.kill(pids[0], signal.SIGKILL)
            interrupted = await during
            after = await capture_target(fetcher, target(url, engine="browser"))
            return interrupted, after, fetcher.browser.launches

    interrupted, after, launches = asyncio.run(go())
    assert interrupted.ok, interrupted.error  # retried on a relaunched browser
    assert after.ok and launches >= 2


def test_browser_is_recycled_after_n_fetches(site: Site) -> None:
    url = site.set("/p", page(*POLICY))

    async def go() -> int:
        async with Fetcher(defaults(recycle_after=2), sleep=no_sleep) as fetcher:
            for _ in range(5):
                assert (await capture_target(fetcher, target(url, engine="browser"))).ok
            return fetcher.browser.launches

    assert asyncio.run(go()) == 3


def test_politeness_per_host(site: Site) -> None:
    import time

    urls = [site.set(f"/p{i}", page(*POLICY)) for i in range(4)]
    starts: list[float] = []

    def stamp() -> str:
        starts.append(time.monotonic())
        return page(*POLICY)

    for i in range(4):
        site.set(f"/p{i}", stamp)

    async def go() -> None:
        async with Fetcher(defaults(host_concurrency=1, host_delay=0.4), sleep=no_sleep) as fetcher:
            await capture_target(fetcher, target(site.set("/warm", page(*POLICY)), engine="http"))  # first-use costs
            await asyncio.sleep(0.5)
            starts.clear()
            await asyncio.gather(*(capture_target(fetcher, target(u, engine="http")) for u in urls))

    asyncio.run(go())
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert len(starts) == 4 and min(gaps) >= 0.4 * 0.9, gaps  # 10% for timer and scheduling slack
