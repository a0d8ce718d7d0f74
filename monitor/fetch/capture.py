"""From a target to a `Capture`: the `Fetcher` (engines, politeness, retries for one run),
then fetching every page of the target, `auto`'s choice of engine, the extraction key that
lets unchanged bytes skip extraction, the refusal of empty or too-short text, and the fetch
record for the store."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..charset import decode_body
from ..errors import BrowserError, FetchError
from ..extract import Document, extract_bytes, sha256_text
from ..store import FetchRecord, RawPart, utcnow
from .browser import BrowserEngine
from .classify import check_block_page, needs_javascript
from .engines import ENGINES, Engine
from .gate import HostGate
from .model import NO_SHOTS, Capture, Limits, Page, Prior, ShotPolicy, Validators, same_digest

if TYPE_CHECKING:
    from ..targets import Defaults, Target

log = logging.getLogger("monitor")

MAX_RETRY_AFTER = 120.0
TOO_SHORT_RATIO = 0.3


# Part of the extraction key: bump it when the bytes-to-text decoding changes, so pages whose
# bytes did not change are decoded again (and a page once read with U+FFFD is read right).
DECODER_VERSION = 2


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

    from .. import __version__
    from ..extract import EXTRACTOR_VERSION

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
        if known and same_digest(known[0], key):
            return None, pages, chosen, key
        return _extract_checked(target, pages, previous_length), pages, chosen, key
    # auto: plain HTTP first; the browser when the page needs it.
    try:
        pages = fetched or [await fetcher.get(url, target, "http") for url in target.urls]
        key = extraction_key(target, pages)
        if known and same_digest(known[0], key):
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
        from ..extract import find_effective_date

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
