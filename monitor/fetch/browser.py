"""The `browser` engine: a shared headless Chromium through Playwright, its contexts reused
per host, each fetch bounded by a deadline and watched (watch.py), and a full-page
screenshot when asked. Playwright is imported inside the methods that use it, not here:
importing it costs start-up time that a check over plain HTTP never needs. (Finding and
launching Chromium itself is monitor/browser.py.)"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..charset import HTML_TYPES
from ..errors import BrowserError, FetchError
from ..extract import load_data
from ..store import Exchange, Shot, sha256_bytes, utcnow
from .classify import _status_error, looks_like_bot_wall
from .engines import Engine, engine
from .model import NO_SHOTS, TEXT_TYPES, Page, ShotPolicy, Validators, _too_large, same_digest
from .sites import _left_site, same_site
from .watch import _Watch

if TYPE_CHECKING:
    from ..targets import Target
    from .capture import Fetcher

log = logging.getLogger("monitor")


# Screenshots: the format and quality the corpus measurement chose (benchmarks/screenshots.py,
# README "Screenshots"), tiles no taller than the format allows, and a bound on the page height.
SHOT_FORMAT = "webp"
SHOT_QUALITY = 100  # Chromium encodes WebP at 100 losslessly: pixel for pixel the PNG, ~half its size on policy pages
SHOT_MAX_TILE = {"webp": 16383, "jpeg": 65500, "png": 32000}
SHOT_MAX_HEIGHT = 100_000


_NET_ERROR = re.compile(r"net::(ERR_[A-Z_]+)")
_DNS_CODES = {"ERR_NAME_NOT_RESOLVED", "ERR_NAME_RESOLUTION_FAILED", "ERR_ADDRESS_UNREACHABLE"}
_TIMEOUT_CODES = {"ERR_TIMED_OUT", "ERR_CONNECTION_TIMED_OUT"}


@engine("browser")
class BrowserEngine(Engine):
    """A shared headless Chromium through Playwright; contexts reused per host (see _release).

    A page is read after its `load` event, then the target's `wait_for` (or first `select`),
    or else, for a page with scripts, a short DOM-quiet window (_settle); not `networkidle`.

    Each fetch runs under a deadline (the target's timeout) and a `_Watch` that sees, from
    the browser's network events rather than from inside the page, the bytes the page
    receives and any navigation of its main frame; crossing a limit ends the fetch at once.
    Reading the page (its DOM size, its HTML) must answer within Limits.script_time, or the
    renderer is stuck in a script. Whatever happened, the fetch's context is closed, which
    ends its renderer; a browser that does not answer then is killed and relaunched."""

    def __init__(self, fetcher: Fetcher):
        super().__init__(fetcher)
        self._pw: Any = None
        self._browser: Any = None
        self._cdp: Any = None  # a browser-level DevTools session: the liveness probe
        self._pid: int | None = None  # the browser process, to kill if it stops answering
        self._lock = asyncio.Lock()
        self._fetches = 0
        self._active = 0
        self._suspect = False  # an unexplained browser error: relaunch before the next fetch
        self._idle: dict[tuple[str, str, str], list[tuple[Any, Any]]] = {}  # (host, user agent, locale) -> idle (context, page)
        self.launches = 0
        self.version: str | None = None

    async def _ensure_browser(self) -> Any:
        async with self._lock:
            recycle = (self._fetches >= self.fetcher.recycle_after or self._suspect) and self._active == 0
            if self._browser is not None and self._browser.is_connected() and not recycle:
                return self._browser
            self._suspect = False
            await self._close_browser()
            if self._pw is None:
                from playwright.async_api import async_playwright

                self._pw = await async_playwright().start()
            executable = _executable_for(self._pw)
            from playwright.async_api import Error as PlaywrightError

            from ..browser import launch_args

            try:
                self._browser = await self._pw.chromium.launch(executable_path=executable, args=launch_args(), headless=True)
            except PlaywrightError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
                raise BrowserError(f"Chromium could not be started ({first}); run `monitor doctor`") from None
            self.version = self._browser.version
            self._fetches = 0
            self.launches += 1
            await self._find_process()
            return self._browser

    async def _find_process(self) -> None:
        self._cdp, self._pid = None, None
        try:
            self._cdp = await self._browser.new_browser_cdp_session()
            info = await asyncio.wait_for(self._cdp.send("SystemInfo.getProcessInfo"), 10)
            self._pid = next((int(p["id"]) for p in info.get("processInfo", []) if p.get("type") == "browser"), None)
        except Exception:  # without a pid an unresponsive browser is ended by stopping the driver
            pass

    async def _close_browser(self) -> None:
        self._idle.clear()  # they close with their browser
        browser, self._browser = self._browser, None
        self._cdp, self._pid = None, None
        if browser is not None:
            try:
                await asyncio.wait_for(browser.close(), timeout=10)
            except Exception:  # a dead browser may fail to close; it is gone either way
                pass

    async def close(self) -> None:
        async with self._lock:
            await self._close_browser()
            await self._stop_driver()

    async def _stop_driver(self) -> None:
        pw, self._pw = self._pw, None
        if pw is not None:
            try:
                await asyncio.wait_for(pw.stop(), timeout=10)
            except Exception:
                pass

    async def get(self, url: str, target: Target, validators: Validators | None = None, shots: ShotPolicy = NO_SHOTS) -> Page:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        browser = await self._ensure_browser()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + target.timeout
        self._active += 1
        self._fetches += 1
        held: dict[str, Any] = {}
        watch = _Watch(url, self.fetcher.limits)
        work = asyncio.ensure_future(self._load(browser, url, target, held, watch, deadline, shots))
        try:
            await asyncio.wait({work, watch.error}, timeout=max(0.0, deadline - loop.time()), return_when=asyncio.FIRST_COMPLETED)
            watch.check()  # a limit crossed, a navigation: that, whatever the load was doing then
            if work.done():
                return work.result()
            raise FetchError("timeout", f"{url} did not load within {target.timeout:g}s (the fetch's time limit)", url=url)
        except PlaywrightTimeout:
            raise FetchError("timeout", f"{url} did not load within {target.timeout:g}s", url=url) from None
        except PlaywrightError as exc:
            watch.check()  # the page navigated or was stopped under the reading
            raise self._classify(exc, url) from None
        finally:
            abandoned = not work.done()
            if abandoned:
                work.cancel()
                await asyncio.wait({work}, timeout=1.0)
            if work.done() and not work.cancelled():
                work.exception()  # retrieved: an abandoned load's error is not news
            self._active -= 1
            if work.done() and not work.cancelled() and work.exception() is None and not watch.error.done():
                await self._release(held, browser, watch)
            else:
                await self._discard(held.get("context"), url, abandoned=abandoned)

    async def _load(self, browser: Any, url: str, target: Target, held: dict[str, Any], watch: _Watch, deadline: float, shots: ShotPolicy = NO_SHOTS) -> Page:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        limits = self.fetcher.limits
        loop = asyncio.get_running_loop()

        def remaining() -> float:
            return max(0.1, deadline - loop.time())

        key = ((urlsplit(url).hostname or "").lower(), target.user_agent, target.locale)
        held["key"] = key
        idle = self._idle.get(key)
        page = None
        if idle:
            context, page = idle.pop()
            held["context"] = context
        else:
            context = held["context"] = await browser.new_context(
                user_agent=target.user_agent, locale=target.locale, service_workers="block",
                accept_downloads=False, java_script_enabled=True,
            )
        if page is None or page.is_closed():
            page = await context.new_page()
        held["page"] = page
        await watch.attach(context, page)
        held["session"] = watch.session
        started = utcnow()
        try:
            response = await page.goto(url, wait_until="load", timeout=remaining() * 1000)
        except PlaywrightError as exc:
            watch.check()
            if "Download is starting" in str(exc) or "net::ERR_ABORTED" in str(exc):
                return await self._download(context, url, target)
            raise
        if response is None:
            raise FetchError("network", f"{url}: the browser got no response", url=url)
        status = response.status
        headers = {k.lower(): v for k, v in (await response.all_headers()).items()}
        mime = (headers.get("content-type") or "").split(";")[0].strip().lower()
        if mime and mime not in HTML_TYPES and mime not in TEXT_TYPES:
            raise FetchError("non-html", f"{url} is {mime}, not a web page or PDF", url=url, status=status)
        if mime == "application/pdf":
            return await self._download(context, url, target)
        if not 200 <= status < 300:
            body = (await self._read(page.content(), url)).encode("utf-8")
            error = _status_error(status, url, body, headers)
            if error:
                raise error
        wanted = target.wait_for or (target.select[0] if target.select else None)
        if wanted:
            reserve = min(2.0, 0.2 * target.timeout)  # to read the page and tell a bot wall from a missing selector
            try:
                await page.wait_for_selector(wanted, state="attached", timeout=max(0.1, remaining() - reserve) * 1000)
            except PlaywrightTimeout:
                watch.check()
                body = (await self._read(page.content(), url)).encode("utf-8")
                if looks_like_bot_wall(body):
                    raise FetchError("bot-wall", f"{url} showed a bot wall or captcha", url=url, status=status) from None
                raise FetchError("selector-missing", f"{wanted!r} did not appear on {url} within {target.timeout:g}s", url=url, status=status) from None
        elif deadline - loop.time() > 0.2:
            await self._settle(page, watch, url, min(remaining() - 0.1, SETTLE_CAP))
        watch.loaded = True  # loaded or not, the page is what we read now: it may not navigate any more
        watch.check()
        nodes = await self._read(page.evaluate(_REMOVE_OVERLAYS, load_data("consent.yaml")["selectors"]), url)
        if nodes > limits.max_dom_nodes:
            raise FetchError("too-large", f"{url}: the page has {nodes} elements (limit {limits.max_dom_nodes}); not recorded", url=url, status=status)
        html = await self._read(page.content(), url)
        watch.check()
        body = html.encode("utf-8")
        if len(body) > limits.max_bytes:
            raise _too_large(url, "the rendered page", limits.max_bytes, status)
        final_url = page.url
        if not same_site(url, final_url):
            raise _left_site(url, final_url, status)
        exchange = await self._exchange(response, url, started)
        taken: tuple[Shot, ...] = ()
        if shots.take and (shots.unless_sha is None or not same_digest(shots.unless_sha, sha256_bytes(body))):
            taken = await self._screenshots(watch.session, url)
        return Page(
            url=url, final_url=final_url, status=status, body=body,
            content_type="text/html; charset=utf-8", engine="browser", etag=headers.get("etag"),
            last_modified=headers.get("last-modified"), browser_version=self.version, exchange=exchange, shots=taken,
        )

    async def _exchange(self, response: Any, url: str, started: str) -> Exchange | None:
        """The main document's network response beside the DOM the page became: status,
        headers as Chromium received them, the body (decoded), the request and redirects.
        None, with the fetch going on, if the browser no longer has the body."""
        from playwright.async_api import Error as PlaywrightError

        try:
            body = await self._read(response.body(), url)
            headers = tuple((h["name"], h["value"]) for h in await self._read(response.headers_array(), url))
            request = response.request
            sent = tuple((h["name"], h["value"]) for h in await self._read(request.headers_array(), url))
            redirects: list[dict[str, Any]] = []
            hop = request.redirected_from
            while hop is not None and len(redirects) < 20:
                answer = await self._read(hop.response(), url)
                location = await self._read(answer.header_value("location"), url) if answer else None
                redirects.insert(0, {"url": hop.url, "status": answer.status if answer else None, "location": location})
                hop = hop.redirected_from
        except (PlaywrightError, FetchError) as exc:
            log.info("%s: the network response was not kept (%s)", url, str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
            return None
        return Exchange(
            requested_url=url, url=response.url, status=response.status, reason=response.status_text, headers=headers, body=body,
            started_at=started, engine="browser", request_headers=sent, redirects=tuple(redirects), browser_version=self.version,
        )

    async def _screenshots(self, session: Any, url: str) -> tuple[Shot, ...]:
        """A full-page screenshot through the page's DevTools session, in tiles no taller
        than the format allows (pages past SHOT_MAX_HEIGHT are cut there). A failure costs
        the picture, never the fetch."""
        import base64
        import math

        from playwright.async_api import Error as PlaywrightError

        if session is None:
            return ()
        try:
            metrics = await self._read(session.send("Page.getLayoutMetrics"), url)
            size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
            width = max(1, math.ceil(size.get("width") or 1))
            height = max(1, min(SHOT_MAX_HEIGHT, math.ceil(size.get("height") or 1)))
            tile = SHOT_MAX_TILE[SHOT_FORMAT]
            tiles = []
            for top in range(0, height, tile):
                rows = min(tile, height - top)
                params: dict[str, Any] = {"format": SHOT_FORMAT, "captureBeyondViewport": True,
                                          "clip": {"x": 0, "y": top, "width": width, "height": rows, "scale": 1}}
                if SHOT_FORMAT != "png":
                    params["quality"] = SHOT_QUALITY
                answer = await self._read(session.send("Page.captureScreenshot", params), url)
                tiles.append(Shot(base64.b64decode(answer["data"]), SHOT_FORMAT, width, rows, top))
        except (PlaywrightError, FetchError, KeyError, ValueError) as exc:
            log.warning("%s: no screenshot (%s)", url, str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
            return ()
        return tuple(tiles)

    async def _settle(self, page: Any, watch: _Watch, url: str, cap: float) -> None:
        """After `load`, with no `wait_for`: a page without scripts is done; one with scripts
        until its DOM has been quiet for SETTLE_QUIET with no XHR or fetch in flight, at most
        `cap` (pages that poll forever are read as they are then). Not `networkidle`, which
        always costs half a second more."""
        loop = asyncio.get_running_loop()
        end = loop.time() + max(0.0, cap)
        while True:
            left = end - loop.time()
            if left <= 0:
                return
            quiet = await self._read(page.evaluate(_DOM_QUIET, {"quiet": SETTLE_QUIET * 1000, "cap": left * 1000}), url)
            if quiet == "static":
                return
            if watch.inflight == 0:
                return
            await watch.idle(end - loop.time())

    async def _release(self, held: dict[str, Any], browser: Any, watch: _Watch) -> None:
        """After a good fetch: take the fetch's watch off its page, clear the site's storage,
        leave the page for about:blank (its scripts stop), clear the context's cookies and
        permissions, and keep context and page for the next fetch of the same host (same user
        agent and locale): a new page would cost a new renderer. A context serves one fetch at
        a time; a failed fetch's is closed."""
        context, page, key = held.get("context"), held.get("page"), held.get("key")
        if context is None:
            return
        try:
            async with asyncio.timeout(self.fetcher.limits.close_time):
                origin = _origin(page.url) if page is not None else None
                if page is not None:
                    session = held.get("session")
                    if origin and session is not None:
                        await session.send("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"})
                    await watch.detach()
                    await page.goto("about:blank")
                await context.clear_cookies()
                await context.clear_permissions()
        except Exception:  # cannot be cleaned: not reused
            await self._discard(context, "", abandoned=False)
            return
        if browser is not self._browser or key is None or sum(len(v) for v in self._idle.values()) >= MAX_IDLE_CONTEXTS:
            await self._discard(context, "", abandoned=False)
            return
        self._idle.setdefault(key, []).append((context, page))

    async def _read(self, awaitable: Any, url: str) -> Any:
        """An answer from the renderer, within Limits.script_time: a renderer that cannot
        answer is stuck in a script (`while(true){}`), and waiting longer will not help."""
        limit = self.fetcher.limits.script_time
        try:
            return await asyncio.wait_for(awaitable, limit)
        except TimeoutError:
            raise FetchError(
                "timeout", f"{url}: the page's scripts kept its renderer busy for over {limit:g}s (a hung renderer); the page was closed",
                url=url,
            ) from None

    async def _discard(self, context: Any, url: str, *, abandoned: bool) -> None:
        """Close a fetch's context, and with it its renderer, even one stuck in a script. A
        browser that does not manage that within Limits.close_time (or never even opened the
        context of a fetch that ran out of time), and then does not answer a probe, is
        killed; the next fetch relaunches it."""
        if context is not None:
            try:
                await asyncio.wait_for(context.close(), self.fetcher.limits.close_time)
                return
            except TimeoutError:
                pass
            except Exception:  # the browser is gone already; the next fetch relaunches it
                return
        elif not abandoned:
            return
        if await self._responsive():
            return
        await self._kill_browser(f"it stopped answering during the fetch of {url}")

    async def _responsive(self) -> bool:
        browser, session = self._browser, self._cdp
        if browser is None or not browser.is_connected():
            return True  # dead, not hung: relaunched on the next fetch anyway
        if session is None:
            return False
        try:
            await asyncio.wait_for(session.send("Browser.getVersion"), min(5.0, self.fetcher.limits.close_time))
            return True
        except Exception:
            return False

    async def _kill_browser(self, why: str) -> None:
        pid = self._pid
        self._suspect = True
        log.warning("browser: killing Chromium (pid %s): %s; it is relaunched for the next fetch", pid, why)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        async with self._lock:
            self._idle.clear()
            browser, self._browser = self._browser, None
            self._cdp, self._pid = None, None
            if pid is None:
                await self._stop_driver()  # the driver takes its browser with it
            elif browser is not None:
                try:
                    await asyncio.wait_for(browser.close(), timeout=5)
                except Exception:
                    pass

    async def _download(self, context: Any, url: str, target: Target) -> Page:
        """Non-HTML documents (a PDF policy) are fetched through the context's request API."""
        limits = self.fetcher.limits
        response = await context.request.get(url, timeout=target.timeout * 1000)
        headers = {k.lower(): v for k, v in response.headers.items()}
        declared = headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > limits.max_bytes:
            raise _too_large(url, "the document", limits.max_bytes, response.status)
        body = await response.body()
        if len(body) > limits.max_bytes:
            raise _too_large(url, "the document", limits.max_bytes, response.status)
        if not same_site(url, response.url):
            raise _left_site(url, response.url, response.status)
        error = _status_error(response.status, url, body, headers)
        if error:
            raise error
        return Page(url=url, final_url=response.url, status=response.status, body=body,
                    content_type=headers.get("content-type"), engine="browser", etag=headers.get("etag"),
                    last_modified=headers.get("last-modified"), browser_version=self.version)

    def _classify(self, exc: Exception, url: str) -> FetchError:
        match = _NET_ERROR.search(str(exc))
        code = match.group(1) if match else None
        if code is None or self._browser is None or not self._browser.is_connected():
            # Not a network error the page caused: the browser itself is in doubt (killed,
            # crashed, out of memory). Relaunch it before the next fetch; the retry will tell.
            self._suspect = True
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:160]
            return FetchError("browser-crashed", f"{url}: the browser failed during the fetch ({first}); it will be restarted", url=url)
        if code in _DNS_CODES:
            return FetchError("dns", f"{url}: host not found ({code})", url=url)
        if code in _TIMEOUT_CODES:
            return FetchError("timeout", f"{url}: {code}", url=url)
        return FetchError("network", f"{url}: {code}", url=url)


# After `load`: how long the DOM must stay unchanged before a scripted page is read, and the
# most any page waits for that (README: "How the browser engine reads a page").
SETTLE_QUIET = 0.3
SETTLE_CAP = 3.0
MAX_IDLE_CONTEXTS = 8  # kept open between fetches, over all hosts (the daemon's memory budget)

_DOM_QUIET = """({quiet, cap}) => new Promise((resolve) => {
  if (!document.querySelector('script, iframe, frame, meta[http-equiv="refresh" i]')) { resolve('static'); return; }
  let timer = null;
  const done = (why) => { observer.disconnect(); clearTimeout(timer); clearTimeout(limit); resolve(why); };
  const observer = new MutationObserver(() => { clearTimeout(timer); timer = setTimeout(() => done('quiet'), quiet); });
  observer.observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
  timer = setTimeout(() => done('quiet'), quiet);
  const limit = setTimeout(() => done('cap'), cap);
})"""


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None


# Removes the consent overlays and answers the DOM's size: one round trip to the renderer.
_REMOVE_OVERLAYS = """(selectors) => {
  for (const s of selectors) {
    try { document.querySelectorAll(s).forEach((e) => e.remove()); } catch (e) {}
  }
  return document.getElementsByTagName('*').length;
}"""


def _executable_for(pw: Any) -> str | None:
    """Which Chromium to launch: MONITOR_BROWSER, Playwright's own, then a system one."""
    import os
    from pathlib import Path

    from ..browser import system_browser

    env = os.environ.get("MONITOR_BROWSER")
    if env:
        return env
    try:
        bundled = pw.chromium.executable_path
    except Exception:
        bundled = None
    if bundled and Path(bundled).exists():
        return None
    system = system_browser()
    if system:
        return system
    raise BrowserError("no Chromium found; run `monitor browser --install` (or `make setup`), or set MONITOR_BROWSER")
