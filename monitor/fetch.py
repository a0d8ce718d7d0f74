"""Getting pages: plain HTTP, a shared headless Chromium, or `auto` (HTTP first).

Engines register themselves by name (`@engine("http")`). One `Fetcher` holds what outlives a
single fetch: the long-lived browser (relaunched if it dies, recycled every N fetches to bound
memory), the per-host politeness gate, and the retry policy. `capture_target` turns a target
into a `Capture`: the raw pages, the extracted document and the fetch record, or a typed
FetchError. Each browser fetch runs in a fresh context, so nothing is carried between targets.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import BrowserError, FetchError
from .extract import Document, extract_bytes, load_data, sniff_format
from .store import FetchRecord, RawPart, utcnow

if TYPE_CHECKING:
    from .targets import Defaults, Target

MAX_BYTES = 25 * 1024 * 1024
MAX_RETRY_AFTER = 120.0
TOO_SHORT_RATIO = 0.3
BLOCKED_RESOURCES = frozenset({"image", "media", "font"})
HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = {"text/plain": "text", "text/markdown": "markdown", "text/x-markdown": "markdown", "application/pdf": "pdf"}


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

    @property
    def fmt(self) -> str:
        mime = (self.content_type or "").split(";")[0].strip().lower()
        if mime in HTML_TYPES:
            return "html"
        if mime in TEXT_TYPES:
            return TEXT_TYPES[mime]
        if not mime or mime in ("application/octet-stream", "binary/octet-stream"):
            return sniff_format(self.body, urlsplit(self.final_url).path)
        raise FetchError("non-html", f"{self.final_url} is {mime}, not a web page or PDF", url=self.final_url, status=self.status)

    @property
    def ext(self) -> str:
        return {"html": "html", "pdf": "pdf", "markdown": "md", "text": "txt"}[self.fmt]


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

    async def get(self, url: str, target: Target) -> Page:
        raise NotImplementedError

    async def close(self) -> None:
        return None


@engine("http")
class HttpEngine(Engine):
    """Plain HTTP(S) with httpx: fast and cheap, enough for most static policy pages."""

    async def get(self, url: str, target: Target) -> Page:
        import httpx

        headers = {
            "User-Agent": target.user_agent,
            "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,application/pdf;q=0.8,*/*;q=0.5",
            "Accept-Language": f"{target.locale},{target.locale.split('-')[0]};q=0.9,en;q=0.5",
        }
        timeout = httpx.Timeout(target.timeout)
        try:
            async with httpx.AsyncClient(follow_redirects=True, timeout=timeout, headers=headers, max_redirects=10) as client:
                async with client.stream("GET", url) as response:
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > MAX_BYTES:
                            raise FetchError("non-html", f"{url} is larger than {MAX_BYTES // 2**20} MB", url=url)
                        chunks.append(chunk)
                    body = b"".join(chunks)
        except httpx.TimeoutException:
            raise FetchError("timeout", f"{url} did not answer within {target.timeout:g}s", url=url) from None
        except httpx.TooManyRedirects:
            raise FetchError("http-error", f"{url} redirects too many times", url=url) from None
        except (httpx.HTTPError, OSError) as exc:
            kind = "dns" if _in_chain(exc, socket.gaierror) else "network"
            raise FetchError(kind, f"{url}: {exc.__class__.__name__}: {exc or 'connection failed'}", url=url) from None
        head = {k.lower(): v for k, v in response.headers.items()}
        error = _status_error(response.status_code, url, body, head)
        if error:
            raise error
        return Page(
            url=url, final_url=str(response.url), status=response.status_code, body=body,
            content_type=head.get("content-type"), engine="http", etag=head.get("etag"),
            last_modified=head.get("last-modified"),
        )


_NET_ERROR = re.compile(r"net::(ERR_[A-Z_]+)")
_DNS_CODES = {"ERR_NAME_NOT_RESOLVED", "ERR_NAME_RESOLUTION_FAILED", "ERR_ADDRESS_UNREACHABLE"}
_TIMEOUT_CODES = {"ERR_TIMED_OUT", "ERR_CONNECTION_TIMED_OUT"}


@engine("browser")
class BrowserEngine(Engine):
    """A shared headless Chromium through Playwright; a fresh context for every fetch."""

    def __init__(self, fetcher: Fetcher):
        super().__init__(fetcher)
        self._pw: Any = None
        self._browser: Any = None
        self._lock = asyncio.Lock()
        self._fetches = 0
        self._active = 0
        self._suspect = False  # an unexplained browser error: relaunch before the next fetch
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
            return self._browser

    async def _close_browser(self) -> None:
        browser, self._browser = self._browser, None
        if browser is not None:
            try:
                await asyncio.wait_for(browser.close(), timeout=10)
            except Exception:  # a dead browser may fail to close; it is gone either way
                pass

    async def close(self) -> None:
        async with self._lock:
            await self._close_browser()
            if self._pw is not None:
                try:
                    await asyncio.wait_for(self._pw.stop(), timeout=10)
                except Exception:
                    pass
                self._pw = None

    async def get(self, url: str, target: Target) -> Page:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        browser = await self._ensure_browser()
        self._active += 1
        self._fetches += 1
        context = None
        deadline = time.monotonic() + target.timeout
        try:
            context = await browser.new_context(
                user_agent=target.user_agent, locale=target.locale, service_workers="block",
                accept_downloads=False, java_script_enabled=True,
            )
            await context.route("**/*", _block_heavy)
            page = await context.new_page()
            try:
                response = await page.goto(url, wait_until="domcontentloaded", timeout=target.timeout * 1000)
            except PlaywrightError as exc:
                if "Download is starting" in str(exc) or "net::ERR_ABORTED" in str(exc):
                    return await self._download(context, url, target)
                raise
            if response is None:
                raise FetchError("network", f"{url}: the browser got no response", url=url)
            status = response.status
            headers = {k.lower(): v for k, v in (await response.all_headers()).items()}
            mime = (headers.get("content-type") or "").split(";")[0].strip().lower()
            if mime and mime not in HTML_TYPES and mime not in TEXT_TYPES:
                body = await response.body()
                raise FetchError("non-html", f"{url} is {mime}, not a web page or PDF", url=url, status=status)
            if mime == "application/pdf":
                return await self._download(context, url, target)
            if not 200 <= status < 300:
                body = (await page.content()).encode("utf-8")
                error = _status_error(status, url, body, headers)
                if error:
                    raise error
            wanted = target.wait_for or (target.select[0] if target.select else None)
            remaining = max(0.5, deadline - time.monotonic())
            if wanted:
                try:
                    await page.wait_for_selector(wanted, state="attached", timeout=remaining * 1000)
                except PlaywrightTimeout:
                    body = (await page.content()).encode("utf-8")
                    if looks_like_bot_wall(body):
                        raise FetchError("bot-wall", f"{url} showed a bot wall or captcha", url=url, status=status) from None
                    raise FetchError("selector-missing", f"{wanted!r} did not appear on {url} within {target.timeout:g}s", url=url, status=status) from None
            remaining = deadline - time.monotonic()
            if remaining > 0.2:
                try:
                    await page.wait_for_load_state("networkidle", timeout=min(remaining, 3.0) * 1000)
                except PlaywrightTimeout:
                    pass  # pages that poll forever: capture what is there
            await page.evaluate(_REMOVE_OVERLAYS, load_data("consent.yaml")["selectors"])
            html = await page.content()
            return Page(
                url=url, final_url=page.url, status=status, body=html.encode("utf-8"),
                content_type="text/html; charset=utf-8", engine="browser", etag=headers.get("etag"),
                last_modified=headers.get("last-modified"), browser_version=self.version,
            )
        except PlaywrightTimeout:
            raise FetchError("timeout", f"{url} did not load within {target.timeout:g}s", url=url) from None
        except PlaywrightError as exc:
            raise self._classify(exc, url) from None
        finally:
            self._active -= 1
            if context is not None:
                try:
                    await asyncio.wait_for(context.close(), timeout=5)
                except Exception:  # the browser may already be gone
                    pass

    async def _download(self, context: Any, url: str, target: Target) -> Page:
        """Non-HTML documents (a PDF policy) are fetched through the context's request API."""
        response = await context.request.get(url, timeout=target.timeout * 1000)
        body = await response.body()
        headers = {k.lower(): v for k, v in response.headers.items()}
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


async def _block_heavy(route: Any) -> None:
    if route.request.resource_type in BLOCKED_RESOURCES:
        await route.abort()
    else:
        await route.continue_()


_REMOVE_OVERLAYS = """(selectors) => {
  for (const s of selectors) {
    try { document.querySelectorAll(s).forEach((e) => e.remove()); } catch (e) {}
  }
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

    def __init__(self, defaults: Defaults, *, sleep: Callable[[float], Any] = asyncio.sleep):
        self.defaults = defaults
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

    async def get(self, url: str, target: Target, engine_name: str) -> Page:
        """One page, with retries and backoff for transient failures (Retry-After honoured)."""
        attempts = 0
        while True:
            attempts += 1
            slot = await self.gate(url)
            try:
                page = await self.engine(engine_name).get(url, target)
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


def extraction_key(target: Target, pages: list[Page]) -> str:
    """What the extracted text depends on: the bytes of each page, the target's select and
    remove, and the extractor's version. Equal keys give equal text, so an unchanged static
    page costs a hash instead of a parse (most checks of most pages)."""
    import hashlib

    from . import __version__
    from .extract import EXTRACTOR_VERSION

    digest = hashlib.sha256(f"{__version__}|{EXTRACTOR_VERSION}|{target.select}|{target.remove}".encode())
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
) -> Capture:
    """Fetch every page of a target and extract one document, never raising FetchError:
    failures come back on the Capture, classified, with a fetch record for the store.

    `known` is (extraction key, text sha256) of the last fetch: when the new bytes give the
    same key, extraction is skipped and the Capture says so (`same_as`)."""
    started = utcnow()
    chosen = target.engine
    if chosen == "auto" and engine_choice in ("http", "browser"):
        chosen = engine_choice
    pages: list[Page] = []
    engine_used = chosen if chosen != "auto" else "http"
    try:
        document, pages, engine_used, key = await _fetch_and_extract(fetcher, target, chosen, previous_length, known)
    except FetchError as exc:
        record = _record(target, started, pages, engine_used, fetcher, error=exc)
        return Capture(target.id, record, error=exc, engine_choice=None)
    raws = [RawPart(p.final_url, p.body, p.ext, p.content_type) for p in pages]
    record = _record(target, started, pages, engine_used, fetcher)
    record = replace(record, raw_sha256=raws[0].sha256 if len(raws) == 1 else _combined_sha(raws), extract_key=key)
    choice = engine_used if target.engine == "auto" else None
    same_as = known[1] if document is None and known else None
    return Capture(target.id, record, document=document, raws=raws, engine_choice=choice, same_as=same_as)


def _combined_sha(raws: list[RawPart]) -> str:
    import hashlib

    return hashlib.sha256("".join(r.sha256 for r in raws).encode()).hexdigest()


async def _fetch_and_extract(
    fetcher: Fetcher, target: Target, chosen: str, previous_length: int | None, known: tuple[str, str] | None
) -> tuple[Document | None, list[Page], str, str]:
    """(document, pages, engine used, extraction key); the document is None when the key
    equals the known one (same bytes as last time: nothing to extract)."""
    if chosen != "auto":
        pages = [await fetcher.get(url, target, chosen) for url in target.urls]
        key = extraction_key(target, pages)
        if known and known[0] == key:
            return None, pages, chosen, key
        return _extract_checked(target, pages, previous_length), pages, chosen, key
    # auto: plain HTTP first; the browser when the page needs it.
    try:
        pages = [await fetcher.get(url, target, "http") for url in target.urls]
        document = _extract_checked(target, pages, previous_length)
        if not _needs_browser(pages, document):
            return document, pages, "http", extraction_key(target, pages)
    except FetchError as exc:
        if exc.kind not in ("bot-wall", "http-403", "http-401", "selector-missing", "too-short", "empty", "http-error"):
            raise
    pages = [await fetcher.get(url, target, "browser") for url in target.urls]
    return _extract_checked(target, pages, previous_length), pages, "browser", extraction_key(target, pages)


def _needs_browser(pages: list[Page], document: Document) -> bool:
    """Plain HTTP worked, but did it get the document or a JavaScript shell?"""
    length = document.text_length
    if length < 200:
        return True
    return length < 1500 and any(p.fmt == "html" and needs_javascript(p.body) for p in pages)


def _extract_checked(target: Target, pages: list[Page], previous_length: int | None) -> Document:
    """Extract and combine the pages; refuse empty or suspiciously short results."""
    docs = [
        extract_bytes(page.body, page.fmt, source=page.final_url, base_url=page.final_url, select=target.select, remove=target.remove)
        for page in pages
    ]
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
