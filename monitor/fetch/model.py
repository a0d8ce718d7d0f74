"""What a fetch takes and gives, as plain values: its bounds (`Limits`), one response
(`Page`), the screenshot decision (`ShotPolicy`), the conditional-request validators, the
last good fetch's state (`Prior`) and what one check produced (`Capture`). No engine, no
network: every other module of the package builds on these."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..charset import HTML_TYPES, decode_body
from ..errors import FetchError, InputError
from ..extract import Document, sniff_format
from ..store import Exchange, FetchRecord, RawPart, Shot

MAX_BYTES = 25 * 1024 * 1024
TEXT_TYPES = {"text/plain": "text", "text/markdown": "markdown", "text/x-markdown": "markdown", "application/pdf": "pdf"}


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


def same_digest(known: str | None, digest: str) -> bool:
    """Is `digest` (an extraction key, a raw sha256) the known one? A distributed task
    carries only the first 16 digits of each (monitor.distributed); a local check has them
    whole."""
    return bool(known) and len(known) >= 16 and digest.startswith(known)  # type: ignore[arg-type]
