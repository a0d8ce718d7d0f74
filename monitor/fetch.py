"""Getting pages: plain HTTP, a shared headless Chromium, or `auto` (HTTP first).

Engines register themselves by name (`@engine("http")`). One `Fetcher` holds what outlives a
single fetch: the long-lived browser (relaunched if it dies, recycled every N fetches to bound
memory), the per-host politeness gate, and the retry policy. `capture_target` turns a target
into a `Capture`: the raw pages, the extracted document and the fetch record, or a typed
FetchError. A browser context and its page serve one fetch at a time and are kept for the next
fetch of the same host (same user agent and locale) once the page is on about:blank and the
cookies, permissions and the site's storage are cleared; contexts are never shared between
hosts, and a failed fetch's context is closed.

Every fetch is bounded (`Limits`): total time (the target's `timeout`, per attempt), the
document's bytes (after decompression), everything a browser page loads, the elements of its
DOM, and how long a renderer may stay busy in a script when the engine reads the page. A page
that crosses one ends as a typed failure (`timeout`, `too-large`), as does a block page served
with a 200 (`bot-wall`) and a page that leaves its site or navigates after loading
(`navigated-away`): none of them becomes a version.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import re
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .charset import HTML_TYPES, decode_body
from .errors import BrowserError, FetchError, InputError
from .extract import Document, extract_bytes, load_data, sha256_text, sniff_format
from .store import Exchange, FetchRecord, RawPart, Shot, sha256_bytes, utcnow

if TYPE_CHECKING:
    from .targets import Defaults, Target

log = logging.getLogger("monitor")

MAX_BYTES = 25 * 1024 * 1024
MAX_RETRY_AFTER = 120.0
TOO_SHORT_RATIO = 0.3
BLOCKED_RESOURCES = frozenset({"image", "media", "font"})
TEXT_TYPES = {"text/plain": "text", "text/markdown": "markdown", "text/x-markdown": "markdown", "application/pdf": "pdf"}
# Part of the extraction key: bump it when the bytes-to-text decoding changes, so pages whose
# bytes did not change are decoded again (and a page once read with U+FFFD is read right).
DECODER_VERSION = 2


@dataclass(frozen=True)
class Limits:
    """What one fetch may take, in both engines (README: "Limits of a fetch"). Total time is
    the target's `timeout`, for each attempt: the HTTP engine's whole request and body, the
    browser's load, settle and read."""

    max_bytes: int = MAX_BYTES  # one document, after decompression (HTTP body; browser main document and its HTML)
    max_page_bytes: int = 100 * 1024 * 1024  # everything one browser page receives: document, scripts, XHR
    max_dom_nodes: int = 200_000  # elements in the rendered page
    script_time: float = 10.0  # the longest a renderer may stay busy (a script running) when the engine reads the page
    close_time: float = 10.0  # to close a fetch's browser context; past it the browser is probed, killed if it does not answer


def _too_large(url: str, what: str, limit: int, status: int | None = None) -> FetchError:
    return FetchError("too-large", f"{url}: {what} is larger than {limit // 2**20} MB; not recorded", url=url, status=status)


@dataclass
class Page:
    """One response, as received."""

    url: str
    final_url: str
    status: int
    body: bytes
    content_type: str | None
    engine: str
    etag: str | None = None
    last_modified: str | None = None
    browser_version: str | None = None
    attempts: int = 1
    not_modified: bool = False  # a 304 to a conditional request: the body is the last fetch's
    exchange: Exchange | None = None  # the main document's network response, kept for evidence
    shots: tuple[Shot, ...] = ()  # a full-page screenshot (browser engine; see ShotPolicy)

    @property
    def fmt(self) -> str:
        mime = (self.content_type or "").split(";")[0].strip().lower()
        if mime in HTML_TYPES:
            return "html"
        if mime in TEXT_TYPES:
            return TEXT_TYPES[mime]
        if not mime or mime in ("application/octet-stream", "binary/octet-stream"):
            path = urlsplit(self.final_url).path
            try:
                return sniff_format(self.body, path)
            except InputError:
                if b"\x00" in self.body[:4096]:
                    raise FetchError("non-html", f"{self.final_url} is binary data, not a web page or PDF", url=self.final_url, status=self.status) from None
                return sniff_format(decode_body(self.body[:4096], None).encode("utf-8"), path)  # text in a legacy encoding
        raise FetchError("non-html", f"{self.final_url} is {mime}, not a web page or PDF", url=self.final_url, status=self.status)

    @property
    def ext(self) -> str:
        return {"html": "html", "pdf": "pdf", "markdown": "md", "text": "txt"}[self.fmt]


@dataclass(frozen=True)
class ShotPolicy:
    """Whether the browser takes a full-page screenshot of the page it read: `take`, unless
    the rendered page is byte for byte the one whose sha256 is `unless_sha` (the last good
    fetch's: its version has its picture already)."""

    take: bool = False
    unless_sha: str | None = None


NO_SHOTS = ShotPolicy()

# Screenshots: the format and quality the corpus measurement chose (benchmarks/screenshots.py,
# README "Screenshots"), tiles no taller than the format allows, and a bound on the page height.
SHOT_FORMAT = "webp"
SHOT_QUALITY = 100  # Chromium encodes WebP at 100 losslessly: pixel for pixel the PNG, ~half its size on policy pages
SHOT_MAX_TILE = {"webp": 16383, "jpeg": 65500, "png": 32000}
SHOT_MAX_HEIGHT = 100_000


@dataclass(frozen=True)
class Validators:
    """What the last good fetch of a one-page target said about its bytes, sent back as
    If-None-Match / If-Modified-Since: a 304 then means the same bytes, with no body sent."""

    etag: str | None
    last_modified: str | None
    final_url: str | None = None
    content_type: str | None = None


@dataclass
class Capture:
    """What one check of a target produced: a document, or the error that stopped it."""

    target_id: str
    record: FetchRecord
    document: Document | None = None
    raws: list[RawPart] = field(default_factory=list)
    error: FetchError | None = None
    engine_choice: str | None = None  # what `auto` settled on, to remember
    same_as: str | None = None  # text sha256, when the bytes equal the last fetch's (not extracted)

    @property
    def ok(self) -> bool:
        return self.error is None


# ----------------------------------------------------------------------------- classification


def _status_error(status: int, url: str, body: bytes, headers: dict[str, str]) -> FetchError | None:
    """A typed error for a non-2xx response (None when the status is fine)."""
    if 200 <= status < 300:
        return None
    if status in (401, 403, 429, 503) and looks_like_bot_wall(body):
        return FetchError("bot-wall", f"{url} answered {status} with a bot wall or captcha", url=url, status=status)
    if status == 429:
        return FetchError("http-429", f"{url} answered 429 Too Many Requests", url=url, status=status, retry_after=retry_after(headers))
    if status >= 500:
        return FetchError("http-5xx", f"{url} answered {status}", url=url, status=status, retry_after=retry_after(headers))
    if status in (403, 404, 410):
        return FetchError(f"http-{status}", f"{url} answered {status}", url=url, status=status)
    return FetchError("http-error", f"{url} answered {status}", url=url, status=status)


def looks_like_bot_wall(body: bytes) -> bool:
    head = body[:20000].decode("utf-8", errors="replace").lower()
    return any(marker in head for marker in load_data("botwall.yaml")["markers"])


def needs_javascript(body: bytes) -> bool:
    head = body[:50000].decode("utf-8", errors="replace").lower()
    return any(marker in head for marker in load_data("botwall.yaml")["needs_javascript"])


def check_block_page(page: Page) -> None:
    """Raise `bot-wall` if a 2xx HTML page is a block or challenge page (Cloudflare, Akamai,
    PerimeterX, DataDome, ...) rather than the document. A block page is short: only pages
    whose visible text is under `block_pages.max_text` are looked at, and they must show a
    block page's title, a phrase of one, or a vendor's fingerprint in the HTML (all data, in
    monitor/data/botwall.yaml). Pages that merely mention captchas or bot vendors are long,
    or lack the titles and phrases, and pass."""
    reason = block_page_reason(page)
    if reason:
        raise FetchError("bot-wall", f"{page.url} answered {page.status} with a block page ({reason}); not recorded",
                         url=page.url, status=page.status)


def block_page_reason(page: Page) -> str | None:
    if page.fmt != "html":
        return None
    rules = load_data("botwall.yaml")["block_pages"]
    if len(page.body) > rules["max_html_bytes"]:
        return None
    title, text, markup = _read_html(decode_body(page.body, page.content_type, html=True))
    if len(text) > rules["max_text"]:
        return None
    if title in rules["titles"]:
        return f"title {title!r}"
    for phrase in rules["phrases"]:
        if phrase in text:
            return repr(phrase)
    for mark in rules["fingerprints"]:
        if mark in markup:
            return repr(mark)
    return None


def _read_html(html: str) -> tuple[str, str, str]:
    """(title, visible text, markup) of a page, lowercased, whitespace collapsed. The markup
    is what a reader does not see (attribute values, scripts, styles), where vendors leave
    their fingerprints; a page that names a vendor in its text does not match there."""
    import lxml.html
    from lxml.etree import ParserError

    try:
        doc = lxml.html.document_fromstring(html)
    except (ParserError, ValueError):
        return "", "", ""
    hidden = [" ".join(node.attrib.values()) for node in doc.iter() if isinstance(node.tag, str) and node.attrib]
    for node in doc.xpath("//script|//style|//noscript|//template"):
        hidden.append(node.text_content())
        node.drop_tree()
    titles = doc.xpath("//title")
    title = " ".join(titles[0].text_content().split()).lower() if titles else ""
    body = doc.find("body")
    text = " ".join((body if body is not None else doc).text_content().split()).lower()
    return title, text, " ".join(hidden).lower()


# ----------------------------------------------------------------------------- sites


def site_of(url: str) -> str:
    """The site a URL belongs to: its registrable domain, approximately (the last two labels
    of the host; three under a second-level suffix such as co.uk, or under a shared hosting
    suffix such as github.io, both listed in monitor/data/sites.yaml). An IP address or a
    single-label host is its own site. Scheme and port do not matter."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    labels = host.split(".")
    if len(labels) <= 2:
        return host
    data = load_data("sites.yaml")
    tail2, tail3 = ".".join(labels[-2:]), ".".join(labels[-3:])
    if tail3 in data["shared_suffixes"] and len(labels) > 3:
        return ".".join(labels[-4:])
    if tail2 in data["shared_suffixes"] or (len(labels[-1]) == 2 and labels[-2] in data["second_level"]):
        return tail3
    return tail2


def same_site(url: str, other: str) -> bool:
    return site_of(url) == site_of(other)


def _left_site(url: str, final: str, status: int | None) -> FetchError:
    return FetchError("navigated-away", f"{url} ended on {final}, another site; not recorded", url=url, status=status)


def retry_after(headers: dict[str, str]) -> float | None:
    """Retry-After in seconds (either form the RFC allows)."""
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _in_chain(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


# ----------------------------------------------------------------------------- politeness


class HostGate:
    """At most N requests at once per host, and a minimum pause between hits on a host: the
    next request starts at least `delay` after the previous one started and after the last
    one finished (so the pause holds at the server, whatever the client's own latency)."""

    def __init__(self, per_host: int, delay: float):
        self.per_host = per_host
        self.delay = delay
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._next_start: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _host(self, url: str) -> str:
        return (urlsplit(url).hostname or "").lower()

    async def __call__(self, url: str) -> _GateSlot:
        host = self._host(url)
        sem = self._sems.setdefault(host, asyncio.Semaphore(self.per_host))
        await sem.acquire()
        lock = self._locks.setdefault(host, asyncio.Lock())
        async with lock:
            wait = self._next_start.get(host, 0.0) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next_start[host] = time.monotonic() + self.delay
        return _GateSlot(self, host, sem)

    def finished(self, host: str) -> None:
        self._next_start[host] = max(self._next_start.get(host, 0.0), time.monotonic() + self.delay)


class _GateSlot:
    def __init__(self, gate: HostGate, host: str, sem: asyncio.Semaphore):
        self.gate = gate
        self.host = host
        self.sem = sem

    def release(self) -> None:
        self.gate.finished(self.host)
        self.sem.release()


# ----------------------------------------------------------------------------- engines

ENGINES: dict[str, type[Engine]] = {}


def engine(name: str) -> Callable[[type[Engine]], type[Engine]]:
    """Register a fetch engine under a name usable in targets.yaml."""

    def register(cls: type[Engine]) -> type[Engine]:
        cls.name = name
        ENGINES[name] = cls
        return cls

    return register


class Engine:
    name = "base"

    def __init__(self, fetcher: Fetcher):
        self.fetcher = fetcher

    async def get(self, url: str, target: Target, validators: Validators | None = None, shots: ShotPolicy = NO_SHOTS) -> Page:
        """One page; engines that cannot make conditional requests ignore `validators`, and
        engines that render nothing ignore `shots`."""
        raise NotImplementedError

    async def close(self) -> None:
        return None


def _lazy_transport(httpx: Any, **options: Any) -> Any:
    """httpx's transports, one per scheme, each built on its first request. Building the
    https one makes the SSL context (the CA bundle parsed, 20-60 ms), which a pass over
    http:// pages never uses and a one-target check would pay in full. The http:// one gets
    a TLS context that trusts nothing: it never speaks TLS (a redirect to https:// is a new
    request, routed to the verifying transport), and if it ever did, it would fail closed."""
    import ssl

    class LazyTransport(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self._by_scheme: dict[str, Any] = {}

        async def handle_async_request(self, request: Any) -> Any:
            scheme = "http" if request.url.scheme == "http" else "https"
            transport = self._by_scheme.get(scheme)
            if transport is None:
                extra = {"verify": ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)} if scheme == "http" else {}
                transport = self._by_scheme[scheme] = httpx.AsyncHTTPTransport(**options, **extra)
            return await transport.handle_async_request(request)

        async def aclose(self) -> None:
            for transport in self._by_scheme.values():
                await transport.aclose()

    return LazyTransport()


@engine("http")
class HttpEngine(Engine):
    """Plain HTTP(S) with httpx: fast and cheap, enough for most static policy pages. The whole
    request, body included, must finish within the target's timeout (a server that sends one
    byte a second does not hold it), and the body may not exceed Limits.max_bytes once
    decompressed (a gzip bomb is cut off after the limit, not inflated)."""

    def __init__(self, fetcher: Fetcher):
        super().__init__(fetcher)
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> Any:
        """The engine's one client, made on first use: a client per fetch would build a new
        SSL context (parsing the CA bundle, ~20 ms) and a new connection every time. Headers
        and timeouts are per request; the client holds no cookies between fetches."""
        import httpx

        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0)
            self._client = httpx.AsyncClient(
                follow_redirects=False, cookies=_NoCookies(), transport=_lazy_transport(httpx, limits=limits),
            )
            self._loop = loop
        return self._client

    @staticmethod
    async def _follow(client: Any, url: str, headers: dict[str, str], timeout: Any) -> Any:
        """The final response (streaming) after at most 10 redirects. Cookies set during the
        redirects are kept for this fetch only, in its own jar (the client keeps none)."""
        import httpx

        jar = httpx.Cookies()
        redirects: list[dict[str, Any]] = []
        for _ in range(11):
            request = client.build_request("GET", url, headers=headers, timeout=timeout, cookies=jar)
            response = await client.send(request, stream=True, follow_redirects=False)
            if not response.has_redirect_location:  # 301, 302, 303, 307, 308 with a Location (not a 304)
                response.extensions = {**response.extensions, "monitor_redirects": redirects}
                return response
            jar.extract_cookies(response)
            redirects.append({"url": str(response.url), "status": response.status_code, "location": response.headers["location"]})
            url = str(response.url.join(response.headers["location"]))
            await response.aclose()
        raise httpx.TooManyRedirects("too many redirects", request=request)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()

    async def get(self, url: str, target: Target, validators: Validators | None = None, shots: ShotPolicy = NO_SHOTS) -> Page:
        import httpx

        limits = self.fetcher.limits
        headers = {
            "User-Agent": target.user_agent,
            "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,application/pdf;q=0.8,*/*;q=0.5",
            "Accept-Language": f"{target.locale},{target.locale.split('-')[0]};q=0.9,en;q=0.5",
        }
        if validators is not None:
            if validators.etag:
                headers["If-None-Match"] = validators.etag
            if validators.last_modified:
                headers["If-Modified-Since"] = validators.last_modified
        timeout = httpx.Timeout(target.timeout)
        client = self._http()
        started = utcnow()
        try:
            async with asyncio.timeout(target.timeout):
                try:
                    response = await self._follow(client, url, headers, timeout)
                    try:
                        declared = response.headers.get("content-length", "").strip()
                        if declared.isdigit() and int(declared) > limits.max_bytes:
                            raise _too_large(url, "the page", limits.max_bytes, response.status_code)
                        chunks: list[bytes] = []
                        size = 0
                        async for chunk in response.aiter_bytes():  # decompressed, chunk by chunk
                            size += len(chunk)
                            if size > limits.max_bytes:
                                raise _too_large(url, "the page", limits.max_bytes, response.status_code)
                            chunks.append(chunk)
                        body = b"".join(chunks)
                    finally:
                        await response.aclose()
                except httpx.TimeoutException:
                    raise FetchError("timeout", f"{url} did not answer within {target.timeout:g}s", url=url) from None
                except httpx.TooManyRedirects:
                    raise FetchError("http-error", f"{url} redirects too many times", url=url) from None
                except (httpx.HTTPError, OSError) as exc:
                    kind = "dns" if _in_chain(exc, socket.gaierror) else "network"
                    raise FetchError(kind, f"{url}: {exc.__class__.__name__}: {exc or 'connection failed'}", url=url) from None
        except TimeoutError:
            raise FetchError("timeout", f"{url} did not finish within {target.timeout:g}s (the fetch's time limit)", url=url) from None
        final_url = str(response.url)
        if not same_site(url, final_url):
            raise _left_site(url, final_url, response.status_code)
        head = {k.lower(): v for k, v in response.headers.items()}
        if response.status_code == 304 and validators is not None:
            return Page(
                url=url, final_url=validators.final_url or final_url, status=304, body=b"", content_type=validators.content_type,
                engine="http", etag=head.get("etag") or validators.etag,
                last_modified=head.get("last-modified") or validators.last_modified, not_modified=True,
            )
        error = _status_error(response.status_code, url, body, head)
        if error:
            raise error
        exchange = Exchange(
            requested_url=url, url=final_url, status=response.status_code, reason=response.reason_phrase,
            headers=_raw_headers(response.headers), body=body, started_at=started, engine="http",
            http_version=response.http_version, request_headers=_raw_headers(response.request.headers),
            redirects=tuple(response.extensions.get("monitor_redirects") or ()),
        )
        return Page(
            url=url, final_url=final_url, status=response.status_code, body=body,
            content_type=head.get("content-type"), engine="http", etag=head.get("etag"),
            last_modified=head.get("last-modified"), exchange=exchange,
        )


def _raw_headers(headers: Any) -> tuple[tuple[str, str], ...]:
    """Headers as they were on the wire: names in their own case, repeats kept, in order."""
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers.raw)


class _NoCookies:
    """A cookie jar that keeps nothing: the shared client must not carry one target's
    cookies to the next (each fetch starts as a fresh visitor, as with a client per fetch)."""

    def __new__(cls) -> Any:
        import http.cookiejar

        class _Policy(http.cookiejar.DefaultCookiePolicy):
            def set_ok(self, cookie: Any, request: Any) -> bool:
                return False

        return http.cookiejar.CookieJar(policy=_Policy())


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

            from .browser import launch_args

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
        if shots.take and (shots.unless_sha is None or sha256_bytes(body) != shots.unless_sha):
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


class _Watch:
    """What one browser page does, seen from the browser's events rather than from inside the
    page (so a script cannot hide it, nor a stuck renderer delay it): the bytes it receives,
    per document and in all, and navigations of its main frame once it has loaded. Crossing a
    limit sets `error` at once; the fetch stops there."""

    def __init__(self, url: str, limits: Limits):
        self.url = url
        self.limits = limits
        self.error: asyncio.Future[FetchError] = asyncio.get_running_loop().create_future()
        self.loaded = False
        self.page: Any = None
        self.received = 0
        self.documents: dict[str, int] = {}  # DevTools request id -> bytes received
        self.session: Any = None
        self.inflight = 0  # XHR and fetch requests under way (the page may still render what they bring)
        self._idle = asyncio.Event()
        self._idle.set()

    def trip(self, error: FetchError) -> None:
        if not self.error.done():
            self.error.set_result(error)

    def check(self) -> None:
        if self.error.done():
            raise self.error.result()

    async def attach(self, context: Any, page: Any) -> None:
        self.page = page
        page.on("load", self._on_load)
        page.on("request", self._on_request)
        page.on("requestfinished", self._on_request_done)
        page.on("requestfailed", self._on_request_done)
        session = self.session = await context.new_cdp_session(page)
        session.on("Network.responseReceived", self._on_response)
        session.on("Network.dataReceived", self._on_data)
        session.on("Fetch.requestPaused", self._on_paused)
        await session.send("Network.enable")
        # images, media and fonts are never loaded: only they are paused (and failed), so the
        # document and scripts do not wait on a round trip through this process
        await session.send("Fetch.enable", {"patterns": [{"urlPattern": "*", "resourceType": t} for t in _BLOCKED_CDP_TYPES]})

    async def detach(self) -> None:
        """Stop watching the page (it is kept for another fetch, which brings its own watch)."""
        page, session = self.page, self.session
        for name, handler in (("load", self._on_load), ("request", self._on_request),
                              ("requestfinished", self._on_request_done), ("requestfailed", self._on_request_done)):
            page.remove_listener(name, handler)
        if session is not None:
            await session.detach()

    def _on_paused(self, event: dict[str, Any]) -> None:
        asyncio.ensure_future(self._fail(event.get("requestId", "")))

    async def _fail(self, request_id: str) -> None:
        try:
            await self.session.send("Fetch.failRequest", {"requestId": request_id, "errorReason": "BlockedByClient"})
        except Exception:  # the page is gone already
            pass

    def _on_load(self, _page: Any) -> None:
        self.loaded = True  # the document's load event: from here on, a navigation leaves it

    async def idle(self, timeout: float) -> None:
        """Until no XHR or fetch is in flight, at most `timeout` seconds."""
        if timeout > 0:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except TimeoutError:
                pass

    def _tracked(self, request: Any) -> bool:
        try:
            return request.resource_type in ("xhr", "fetch")
        except Exception:
            return False

    def _on_request_done(self, request: Any) -> None:
        if self._tracked(request) and self.inflight > 0:
            self.inflight -= 1
            if self.inflight == 0:
                self._idle.set()

    def _on_request(self, request: Any) -> None:
        if self._tracked(request):
            self.inflight += 1
            self._idle.clear()
        if not self.loaded:
            return  # redirects and script redirects during the load: the final URL's site is checked
        try:
            leaving = request.is_navigation_request() and request.frame == self.page.main_frame
        except Exception:
            return
        if leaving:
            self.trip(FetchError("navigated-away", f"{self.url}: a script navigated to {request.url} after the page had loaded; not recorded", url=self.url))

    def _on_response(self, event: dict[str, Any]) -> None:
        if event.get("type") != "Document":
            return
        response = event.get("response", {})
        self.documents.setdefault(event.get("requestId", ""), 0)
        length = {k.lower(): v for k, v in response.get("headers", {}).items()}.get("content-length", "").strip()
        if length.isdigit() and int(length) > self.limits.max_bytes:
            self.trip(_too_large(self.url, "the page", self.limits.max_bytes, response.get("status")))

    def _on_data(self, event: dict[str, Any]) -> None:
        size = int(event.get("dataLength") or 0)
        self.received += size
        request_id = event.get("requestId", "")
        if request_id in self.documents:
            self.documents[request_id] += size
            if self.documents[request_id] > self.limits.max_bytes:
                self.trip(_too_large(self.url, "the page (decompressed)", self.limits.max_bytes))
        if self.received > self.limits.max_page_bytes:
            self.trip(_too_large(self.url, "what the page loaded", self.limits.max_page_bytes))


_BLOCKED_CDP_TYPES = ("Image", "Media", "Font")  # BLOCKED_RESOURCES, as DevTools names them


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

    from .browser import system_browser

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


# ----------------------------------------------------------------------------- the fetcher


class Fetcher:
    """Shared fetch state for one run: engines, politeness, retries. Use `async with`."""

    def __init__(self, defaults: Defaults, *, sleep: Callable[[float], Any] = asyncio.sleep, limits: Limits | None = None):
        self.defaults = defaults
        self.limits = limits or Limits()
        self.recycle_after = defaults.recycle_after
        self.gate = HostGate(defaults.host_concurrency, defaults.host_delay)
        self._engines: dict[str, Engine] = {}
        self._sleep = sleep

    def engine(self, name: str) -> Engine:
        if name not in self._engines:
            self._engines[name] = ENGINES[name](self)
        return self._engines[name]

    def browser_version(self) -> str | None:
        """The running Chromium's version, if the browser was used in this run."""
        engine = self._engines.get("browser")
        return engine.version if isinstance(engine, BrowserEngine) else None

    @property
    def browser(self) -> BrowserEngine:
        return self.engine("browser")  # type: ignore[return-value]

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for eng in self._engines.values():
            await eng.close()

    async def get(self, url: str, target: Target, engine_name: str, validators: Validators | None = None, shots: ShotPolicy = NO_SHOTS) -> Page:
        """One page, with retries and backoff for transient failures (Retry-After honoured)."""
        attempts = 0
        while True:
            attempts += 1
            slot = await self.gate(url)
            try:
                page = await self._attempt(url, target, engine_name, validators, shots)
                page.attempts = attempts
                return page
            except FetchError as exc:
                exc.attempts = attempts  # type: ignore[attr-defined]
                if not exc.retryable or attempts > target.retries:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else min(30.0, 1.0 * 2 ** (attempts - 1))
                if wait > MAX_RETRY_AFTER:
                    raise
                wait = wait * (1 + random.uniform(0, 0.2)) if exc.retry_after is None else wait
            finally:
                slot.release()
            await self._sleep(wait)

    async def _attempt(self, url: str, target: Target, engine_name: str, validators: Validators | None = None, shots: ShotPolicy = NO_SHOTS) -> Page:
        """One attempt. Each engine keeps to the target's timeout itself (and closes what it
        opened); this outer bound, with room for that closing and a browser launch, only
        guarantees that no attempt outlives it whatever an engine does."""
        bound = target.timeout + self.limits.close_time + 30.0
        try:
            async with asyncio.timeout(bound):
                page = await self.engine(engine_name).get(url, target, validators, shots)
        except TimeoutError:
            raise FetchError("timeout", f"{url} did not finish within {target.timeout:g}s (the fetch's time limit)", url=url) from None
        if 200 <= page.status < 300:
            check_block_page(page)
        return page


@dataclass(frozen=True)
class Prior:
    """What a fetch needs to know of the target's last good fetch: the remembered `auto`
    engine, the latest version's text length (too-short guard), the last extraction key and
    text sha256, the conditional-request validators and the raw sha256. The seam between
    the store and fetching: a check reads it from the database, and a distributed worker
    receives it in its task, so neither needs the other's side."""

    engine_choice: str | None = None
    previous_length: int | None = None
    known: tuple[str, str] | None = None
    validators: Validators | None = None
    known_raw: str | None = None


async def capture_with(fetcher: Fetcher, target: Target, prior: Prior) -> Capture:
    """capture_target with the prior state in one value (the local capturer of a check)."""
    return await capture_target(
        fetcher, target, engine_choice=prior.engine_choice, previous_length=prior.previous_length,
        known=prior.known, validators=prior.validators, known_raw=prior.known_raw,
    )


def extraction_key(target: Target, pages: list[Page]) -> str:
    """What the extracted text depends on: the bytes of each page, the target's select and
    remove, and the extractor's version. Equal keys give equal text, so an unchanged static
    page costs a hash instead of a parse (most checks of most pages)."""
    import hashlib

    from . import __version__
    from .extract import EXTRACTOR_VERSION

    digest = hashlib.sha256(f"{__version__}|{EXTRACTOR_VERSION}|{DECODER_VERSION}|{target.select}|{target.remove}".encode())
    for page in pages:
        digest.update(f"|{page.final_url}|{page.content_type}|".encode())
        digest.update(hashlib.sha256(page.body).digest())
    return digest.hexdigest()


async def capture_target(
    fetcher: Fetcher,
    target: Target,
    *,
    engine_choice: str | None = None,
    previous_length: int | None = None,
    known: tuple[str, str] | None = None,
    validators: Validators | None = None,
    known_raw: str | None = None,
) -> Capture:
    """Fetch every page of a target and extract one document, never raising FetchError:
    failures come back on the Capture, classified, with a fetch record for the store.

    `known` is (extraction key, text sha256) of the last fetch: when the new bytes give the
    same key, extraction is skipped and the Capture says so (`same_as`). With `validators`
    (and `known`, and `known_raw`, the last fetch's raw sha256) a one-page target fetched
    over HTTP is asked conditionally; a 304 is the same bytes, so the same key, no body."""
    started = utcnow()
    chosen = target.engine
    if chosen == "auto" and engine_choice in ("http", "browser"):
        chosen = engine_choice
    pages: list[Page] = []
    engine_used = chosen if chosen != "auto" else "http"
    if validators is not None and known is not None and known_raw and len(target.urls) == 1 and chosen in ("http", "auto"):
        try:
            page = await fetcher.get(target.url, target, "http", validators)
        except FetchError as exc:
            record = _record(target, started, [], "http", fetcher, error=exc)
            return Capture(target.id, record, error=exc, engine_choice=None)
        if page.not_modified:
            record = replace(_record(target, started, [page], "http", fetcher), raw_sha256=known_raw, extract_key=known[0])
            return Capture(target.id, record, document=None, raws=[], engine_choice="http" if target.engine == "auto" else None, same_as=known[1])
        pages = [page]  # the server sent the page (changed, or it ignores validators): go on with it
    shots = NO_SHOTS
    if target.screenshot != "false":
        shots = ShotPolicy(True, known_raw if len(target.urls) == 1 else None)
    try:
        document, pages, engine_used, key = await _fetch_and_extract(fetcher, target, chosen, previous_length, known, pages, shots)
    except FetchError as exc:
        record = _record(target, started, pages, engine_used, fetcher, error=exc)
        return Capture(target.id, record, error=exc, engine_choice=None)
    if target.screenshot == "true" and engine_used != "browser" and document is not None and (known is None or sha256_text(document.to_markdown()) != known[1]):
        pages = [await _shoot_over_http(fetcher, target, p) for p in pages]
    raws = [RawPart(p.final_url, p.body, p.ext, p.content_type, p.exchange, p.shots) for p in pages]
    record = _record(target, started, pages, engine_used, fetcher)
    record = replace(record, raw_sha256=raws[0].sha256 if len(raws) == 1 else _combined_sha(raws), extract_key=key)
    choice = engine_used if target.engine == "auto" else None
    same_as = known[1] if document is None and known else None
    return Capture(target.id, record, document=document, raws=raws, engine_choice=choice, same_as=same_as)


def _combined_sha(raws: list[RawPart]) -> str:
    import hashlib

    return hashlib.sha256("".join(r.sha256 for r in raws).encode()).hexdigest()


async def _shoot_over_http(fetcher: Fetcher, target: Target, page: Page) -> Page:
    """`screenshot: true` on a page HTTP sufficed for: the browser loads it for the picture
    alone (its text and bytes stay the HTTP capture's). A failure costs the picture only."""
    if page.fmt != "html":
        return page
    try:
        shown = await fetcher.get(page.final_url, target, "browser", shots=ShotPolicy(True))
    except (FetchError, BrowserError) as exc:
        log.warning("%s: no screenshot (%s)", page.final_url, exc)
        return page
    return replace(page, shots=shown.shots)


async def _fetch_and_extract(
    fetcher: Fetcher, target: Target, chosen: str, previous_length: int | None, known: tuple[str, str] | None,
    fetched: list[Page] | None = None, shots: ShotPolicy = NO_SHOTS,
) -> tuple[Document | None, list[Page], str, str]:
    """(document, pages, engine used, extraction key); the document is None when the key
    equals the known one (same bytes as last time: nothing to extract). `fetched` are pages
    already got over HTTP (a conditional request the server answered in full)."""
    if chosen != "auto":
        pages = fetched or [await fetcher.get(url, target, chosen, shots=shots) for url in target.urls]
        key = extraction_key(target, pages)
        if known and known[0] == key:
            return None, pages, chosen, key
        return _extract_checked(target, pages, previous_length), pages, chosen, key
    # auto: plain HTTP first; the browser when the page needs it.
    try:
        pages = fetched or [await fetcher.get(url, target, "http") for url in target.urls]
        key = extraction_key(target, pages)
        if known and known[0] == key:
            return None, pages, "http", key  # the same bytes that HTTP gave last time, and sufficed
        document = _extract_checked(target, pages, previous_length)
        if not _needs_browser(pages, document):
            return document, pages, "http", key
    except FetchError as exc:
        if exc.kind not in ("bot-wall", "http-403", "http-401", "selector-missing", "too-short", "empty", "http-error"):
            raise
    pages = [await fetcher.get(url, target, "browser", shots=shots) for url in target.urls]
    return _extract_checked(target, pages, previous_length), pages, "browser", extraction_key(target, pages)


def _needs_browser(pages: list[Page], document: Document) -> bool:
    """Plain HTTP worked, but did it get the document or a JavaScript shell?"""
    length = document.text_length
    if length < 200:
        return True
    return length < 1500 and any(p.fmt == "html" and needs_javascript(p.body) for p in pages)


def _extract_checked(target: Target, pages: list[Page], previous_length: int | None) -> Document:
    """Extract and combine the pages; refuse empty or suspiciously short results."""
    docs = [_extract_page(target, page) for page in pages]
    if len(docs) == 1:
        document = docs[0]
        document.source = target.url
    else:
        from .extract import find_effective_date

        clauses = [clause for doc in docs for clause in doc.clauses]
        document = Document(clauses=clauses, source=target.url, title=docs[0].title, fmt=docs[0].fmt)
        found = find_effective_date(c.plain for c in clauses)
        if found:
            document.effective_date, document.effective_text = found
    refuse_unusable(document, previous_length, target.url, status=pages[-1].status)
    return document


def _extract_page(target: Target, page: Page) -> Document:
    """One page's document. Text formats are decoded here, by the HTML standard's sniffing
    order (decode_body), never as UTF-8 with replacement characters; PDFs carry their own."""
    fmt = page.fmt
    data = page.body if fmt == "pdf" else decode_body(page.body, page.content_type, html=fmt == "html").encode("utf-8")
    return extract_bytes(data, fmt, source=page.final_url, base_url=page.final_url, select=target.select, remove=target.remove)


def refuse_unusable(document: Document, previous_length: int | None, url: str, *, status: int | None = None) -> None:
    """A capture with no text, or under 30% of the version before it (a half-loaded page, an
    error page with a 200), is a failed fetch, never a new version. Lengths are bytes of the
    stored text, the measure kept as versions.text_bytes."""
    if document.text_length == 0:
        raise FetchError("empty", f"{url}: no text found on the page", url=url, status=status)
    length = len(document.to_markdown().encode("utf-8"))
    if previous_length and length < TOO_SHORT_RATIO * previous_length:
        raise FetchError(
            "too-short",
            f"{url}: {length} characters against {previous_length} before it (under {TOO_SHORT_RATIO:.0%}); not recorded as a version",
            url=url,
            status=status,
        )


def _record(target: Target, started: str, pages: list[Page], engine_used: str, fetcher: Fetcher, error: FetchError | None = None) -> FetchRecord:
    first = pages[0] if pages else None
    browser_version = fetcher.browser_version()
    return FetchRecord(
        target_id=target.id,
        started_at=started,
        finished_at=utcnow(),
        requested_url=target.url,
        final_url=first.final_url if first else (error.url if error else None),
        status=first.status if first else (error.status if error else None),
        content_type=first.content_type if first else None,
        etag=first.etag if first else None,
        last_modified=first.last_modified if first else None,
        engine=engine_used,
        browser_version=browser_version if engine_used == "browser" else None,
        attempts=sum(p.attempts for p in pages) if pages else getattr(error, "attempts", 1),
        error_kind=error.kind if error else None,
        error_message=str(error) if error else None,
    )
