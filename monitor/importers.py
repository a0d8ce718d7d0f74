"""Backfill a target's history from public archives: the Wayback Machine and Open Terms Archive.

Archived captures take the same road as live ones: the same extraction (the target's
select/remove for archived HTML), the same store (a text equal to the version before it in
time is never stored twice), the same diff and flags. What differs, and why:

- Time. An import usually lands *before* versions already stored. Every inserted version gets
  the change from its time predecessor and the change to its time successor, and the change
  that joined those two is marked superseded: it no longer describes consecutive versions
  (`_link`); the row stays for the audit trail, reports skip it.
- The hash chain. Imports append to each target's chain in the order they are recorded, like
  any capture; the observed time is inside the hashed payload. The chain proves what was
  recorded, in which order, claiming which time; `Store.versions` orders by that time.
- Alerts. Backfilled history is not news: no alerts unless asked for.
- Live status. Importing is not checking: the target's last fetch, failure count and last
  change (which the scheduler reads) are left as they were (the store only updates them for
  live captures).
- Resuming. Each capture is one transaction (version, fetch row, changes), and a re-run skips
  what is already imported, so an interrupted import is finished by running it again.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from .diff import DiffResult, compare, summary_line
from .errors import FetchError, InputError
from .extract import Document, extract_bytes, sha256_text, sniff_format
from .fetch import HTML_TYPES, MAX_BYTES, MAX_RETRY_AFTER, TEXT_TYPES, refuse_unusable, retry_after
from .store import FetchRecord, RawPart, Store, Version, sha256_bytes, to_timestamp, utcnow

if TYPE_CHECKING:
    import httpx

    from .flags import RuleSet
    from .targets import Config, Target

DEFAULT_ARCHIVE = "https://web.archive.org"
CDX_FIELDS = "timestamp,original,digest,statuscode,mimetype"
PERIODS = ("1d", "1w", "1m")
# Commits OTA makes after changing its own filters or code: not a change by the provider.
OTA_TECHNICAL = ("Refilter", "Apply technical or declaration upgrade")
_OTA_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})-(\d{2})(\.\d+)?Z\.md$")
_DATE = re.compile(r"^(\d{4})(?:-?(\d{2})(?:-?(\d{2}))?)?$")
_EXT = {"html": "html", "pdf": "pdf", "markdown": "md", "text": "txt"}


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CaptureResult:
    """What became of one archived capture: one progress line, one summary count."""

    ref: str  # archive URL, commit hash or file name
    observed_at: str
    outcome: str  # imported | unchanged | skipped | failed
    reason: str | None = None  # why skipped or failed (a FetchError kind)
    version: Version | None = None
    summary: str | None = None  # the change into this version, if any
    note: str | None = None

    def line(self) -> str:
        when = self.observed_at[:19].replace("T", " ") or "-"
        if self.outcome == "imported" and self.version is not None:
            text = f"{when}  imported {self.version.ref}" + (f": {self.summary}" if self.summary else " (the earliest version)")
        elif self.outcome == "unchanged":
            text = f"{when}  unchanged"
        else:
            text = f"{when}  {self.outcome} ({self.reason}): {self.ref}"
        return f"{text}  [{self.note}]" if self.note else text


@dataclass
class ImportSummary:
    """Counts for the closing line, the exit code and tests."""

    target_id: str
    results: list[CaptureResult] = field(default_factory=list)
    already: int = 0  # captures a previous run imported (not fetched again)
    changes: int = 0  # changes now standing that touch a version imported by this run
    flagged: int = 0
    stopped: str | None = None  # why the run ended early, if it did

    @property
    def counts(self) -> Counter[str]:
        return Counter(r.outcome for r in self.results)

    @property
    def imported(self) -> list[Version]:
        return [r.version for r in self.results if r.version is not None]

    @property
    def all_failed(self) -> bool:
        """Nothing could be imported because every fetch failed (exit 1)."""
        return bool(self.results) and all(r.outcome == "failed" for r in self.results)

    def text(self) -> str:
        counts = self.counts
        skipped = Counter(r.reason or "?" for r in self.results if r.outcome == "skipped")
        if self.already:
            skipped["already imported"] = self.already
        failed = Counter(r.reason or "?" for r in self.results if r.outcome == "failed")
        parts = [f"imported {counts['imported']}", f"unchanged {counts['unchanged']}", f"skipped {sum(skipped.values())}{_reasons(skipped)}"]
        if failed:
            parts.append(f"failed {sum(failed.values())}{_reasons(failed)}")
        parts += [f"changes {self.changes}", f"flagged {self.flagged}"]
        line = f"{self.target_id}: " + ", ".join(parts)
        return f"{line}; stopped: {self.stopped}" if self.stopped else line


def _reasons(counter: Counter[str]) -> str:
    return " (" + ", ".join(f"{reason} {n}" for reason, n in sorted(counter.items())) + ")" if counter else ""


class Progress(Protocol):
    """Where an import reports as it goes (a progress bar, log lines, nothing)."""

    def start(self, total: int) -> None: ...

    def done(self, result: CaptureResult) -> None: ...


@dataclass
class ImportContext:
    """What an import needs, passed in (never global)."""

    config: Config
    store: Store
    target: Target
    rules: RuleSet | None = None
    alert: bool = False
    progress: Progress | None = None
    detected_at: str | None = None  # when changes count as detected (default: now); the demo replays real times
    _documents: dict[int, Document] = field(default_factory=dict, init=False, repr=False)

    def document(self, version: Version) -> Document:
        """Stored documents, parsed once per run (each is diffed against both neighbours)."""
        if version.id not in self._documents:
            self._documents[version.id] = self.store.document(version)
        return self._documents[version.id]


# ----------------------------------------------------------------------------- storing


def store_capture(
    ctx: ImportContext,
    raws: Sequence[RawPart],
    document: Document,
    *,
    observed_at: str,
    provenance: str,
    ref: str,
    fetch: FetchRecord | None = None,
) -> tuple[Version | None, DiffResult | None]:
    """Record one archived capture and its changes in one transaction.

    Returns (None, None) when the text equals the version before it in time."""
    store, target = ctx.store, ctx.target
    with store.write():
        version = store.add_version(
            target.id, raws, document, observed_at=observed_at, fetch=fetch, provenance=provenance, provenance_ref=ref
        )
        if version is None:
            return None, None
        return version, _link(ctx, version)


def _link(ctx: ImportContext, version: Version) -> DiffResult | None:
    """Changes between time-consecutive versions around a newly inserted one.

    Records predecessor -> version and version -> successor (none when the successor has the
    same text: the import is the earlier sighting of it) and marks the stale change
    predecessor -> successor superseded. Returns the change into the version, if it has a predecessor."""
    history = ctx.store.versions(ctx.target.id)
    index = next(i for i, v in enumerate(history) if v.id == version.id)
    before = history[index - 1] if index > 0 else None
    after = history[index + 1] if index + 1 < len(history) else None
    into = _record(ctx, history, before, version) if before is not None else None
    if after is not None:
        if after.text_sha256 != version.text_sha256:
            _record(ctx, history, version, after)
        if before is not None:
            ctx.store.supersede_change(before, after, by_change_id=None)
    return into


def _record(ctx: ImportContext, history: list[Version], old: Version, new: Version) -> DiffResult:
    from .check import record_change

    result = compare(ctx.document(old), ctx.document(new), rules=ctx.rules, service=ctx.target.service)
    earlier = reverted_to(history, old, new)
    if earlier is not None:
        result.mark_reverted(earlier.seq)
    record_change(ctx.config, ctx.store, ctx.target, old, new, result, alert=ctx.alert, detected_at=ctx.detected_at)
    return result


def reverted_to(history: Sequence[Version], old: Version, new: Version) -> Version | None:
    """The latest version before `old` in time with the same text as `new`.

    Computed from the time order, not from versions.reverted_to: Store.add_version looks for
    the same text at any time, so an import landing before a live version with its text
    would call itself a revert to the future."""
    ids = [v.id for v in history]
    for earlier in reversed(history[: ids.index(old.id)]):
        if earlier.text_sha256 == new.text_sha256:
            return earlier
    return None


def _record_attempt(store: Store, record: FetchRecord, outcome: str) -> None:
    """A fetch row for an archive fetch that made no version (failed or skipped)."""
    store.record_fetch(record, outcome, live=False)


def _finish(ctx: ImportContext, summary: ImportSummary) -> ImportSummary:
    """Count the changes that stand after the run (some recorded on the way were superseded)."""
    ids = [v.id for v in summary.imported]
    if ids:
        marks = ", ".join("?" for _ in ids)
        row = ctx.store.db.execute(
            f"select count(*), coalesce(sum(n_flags > 0), 0) from changes where target_id = ? "  # noqa: S608 - placeholders only
            f"and (old_version_id in ({marks}) or new_version_id in ({marks}))",
            [ctx.target.id, *ids, *ids],
        ).fetchone()
        summary.changes, summary.flagged = int(row[0]), int(row[1])
    return summary


def _outcome(ref: str, observed_at: str, stored: tuple[Version | None, DiffResult | None], note: str | None = None) -> CaptureResult:
    version, into = stored
    if version is None:
        return CaptureResult(ref, observed_at, "unchanged", note=note)
    return CaptureResult(ref, observed_at, "imported", version=version, summary=summary_line(into) if into else None, note=note)


def _run(ctx: ImportContext, summary: ImportSummary, result: CaptureResult) -> None:
    summary.results.append(result)
    if ctx.progress is not None:
        ctx.progress.done(result)


# ----------------------------------------------------------------------------- input


def parse_period(text: str | None) -> str | None:
    """--every: '1d', '1w' or '1m' (one capture per day, week or month)."""
    if text is None:
        return None
    value = text.strip().lower()
    if value not in PERIODS:
        raise InputError(f"--every {text!r}: use 1d, 1w or 1m (at most one capture per day, week or month)")
    return value


def parse_archive_date(text: str | None, option: str) -> str | None:
    """--from/--to: YYYY, YYYY-MM or YYYY-MM-DD (dashes optional), as CDX digits."""
    if text is None:
        return None
    match = _DATE.match(text.strip())
    if not match:
        raise InputError(f"{option} {text!r}: use a date like 2024-09-01, 2024-09 or 2024")
    year, month, day = match.groups()
    try:
        date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        raise InputError(f"{option} {text!r}: no such date") from None
    return "".join(part for part in (year, month, day) if part)


@dataclass(frozen=True)
class WaybackOptions:
    """How to talk to the archive and which captures to take."""

    archive_url: str = DEFAULT_ARCHIVE
    start: str | None = None  # CDX digits: YYYY[MM[DD]]
    end: str | None = None
    every: str | None = None  # 1d | 1w | 1m
    rate: float = 1.0  # requests per second, every request counted (retries too)
    retries: int = 4
    backoff: float = 1.0  # seconds before the first retry without Retry-After; doubles
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep

    @classmethod
    def parse(cls, *, archive_url: str = DEFAULT_ARCHIVE, start: str | None = None, end: str | None = None,
              every: str | None = None, rate: float = 1.0, **kwargs: Any) -> WaybackOptions:
        """Options from command-line text; InputError names the bad one."""
        first, last = parse_archive_date(start, "--from"), parse_archive_date(end, "--to")
        if first and last and first[: len(last)] > last:
            raise InputError(f"--from {start} is after --to {end}")
        if not rate > 0:
            raise InputError(f"--rate {rate:g}: give a number of requests per second above 0, e.g. 1 or 0.5")
        parts = urlsplit(archive_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InputError(f"--archive-url {archive_url!r}: give an http(s) URL such as {DEFAULT_ARCHIVE}")
        return cls(archive_url.rstrip("/"), first, last, parse_period(every), rate, **kwargs)


# ----------------------------------------------------------------------------- the archive over HTTP


class RateLimit:
    """At most `per_second` requests per second, counted from the end of one request to the
    start of the next: a slow archive is never asked faster, and retries count too."""

    def __init__(self, per_second: float, sleep: Callable[[float], Awaitable[Any]], clock: Callable[[], float] = time.monotonic):
        self.interval = 1.0 / per_second
        self._sleep = sleep
        self._clock = clock
        self._next = 0.0

    async def wait(self) -> None:
        delay = self._next - self._clock()
        if delay > 0:
            await self._sleep(delay)

    def done(self) -> None:
        self._next = self._clock() + self.interval


class ArchiveError(FetchError):
    """A FetchError that knows how many attempts were made (for the fetch row)."""

    def __init__(self, error: FetchError, attempts: int):
        super().__init__(error.kind, str(error), url=error.url, status=error.status, retry_after=error.retry_after)
        self.attempts = attempts


@dataclass(frozen=True)
class Fetched:
    url: str
    final_url: str
    status: int
    body: bytes
    content_type: str | None
    attempts: int


class ArchiveClient:
    """httpx with manners: one rate limit over every request, retries with backoff on 429,
    5xx and network errors, Retry-After honoured (a longer wait than MAX_RETRY_AFTER gives up)."""

    def __init__(self, options: WaybackOptions, *, user_agent: str, timeout: float):
        self.options = options
        self.rate = RateLimit(options.rate, options.sleep)
        self._headers = {"User-Agent": user_agent}
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> ArchiveClient:
        import httpx

        self._client = httpx.AsyncClient(follow_redirects=True, timeout=httpx.Timeout(self._timeout), headers=self._headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def get(self, url: str, params: dict[str, str] | None = None) -> Fetched:
        attempt = 0
        while True:
            attempt += 1
            await self.rate.wait()
            try:
                return await self._once(url, params, attempt)
            except FetchError as exc:
                wait = exc.retry_after if exc.retry_after is not None else self.options.backoff * 2 ** (attempt - 1) * random.uniform(1.0, 1.2)
                if not exc.retryable or attempt > self.options.retries or wait > MAX_RETRY_AFTER:
                    raise ArchiveError(exc, attempt) from None
            finally:
                self.rate.done()
            await self.options.sleep(wait)

    async def _once(self, url: str, params: dict[str, str] | None, attempt: int) -> Fetched:
        import httpx

        assert self._client is not None, "use `async with ArchiveClient(...)`"
        try:
            response = await self._client.get(url, params=params)
        except httpx.TimeoutException:
            raise FetchError("timeout", f"{url} did not answer within {self._timeout:g}s", url=url) from None
        except (httpx.HTTPError, OSError) as exc:
            raise FetchError("network", f"{url}: {exc.__class__.__name__}: {exc or 'connection failed'}", url=url) from None
        headers = {k.lower(): v for k, v in response.headers.items()}
        status = response.status_code
        if status == 429 or status >= 500:
            kind = "http-429" if status == 429 else "http-5xx"
            raise FetchError(kind, f"{url} answered {status}", url=url, status=status, retry_after=retry_after(headers))
        if not 200 <= status < 300:
            kind = f"http-{status}" if status in (403, 404, 410) else "http-error"
            raise FetchError(kind, f"{url} answered {status}", url=url, status=status)
        if len(response.content) > MAX_BYTES:
            raise FetchError("too-large", f"{url} is larger than {MAX_BYTES // 2**20} MB", url=url, status=status)
        return Fetched(url, str(response.url), status, response.content, headers.get("content-type"), attempt)


# ----------------------------------------------------------------------------- Wayback CDX


@dataclass(frozen=True)
class CdxRow:
    """One capture listed by the CDX API."""

    timestamp: str  # 14 digits, UTC
    original: str
    digest: str | None = None
    mimetype: str | None = None

    @property
    def observed_at(self) -> str:
        return to_timestamp(datetime.strptime(self.timestamp, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc))

    def archive_url(self, base: str) -> str:
        """The `id_` form: the bytes as captured, without the archive's toolbar or rewriting."""
        return f"{base}/web/{self.timestamp}id_/{self.original}"


def parse_cdx(data: bytes, *, start: str | None = None, end: str | None = None) -> list[CdxRow]:
    """The CDX JSON answer (header row first) as captures in time order: status 200 only,
    within start..end, and a run of captures with one digest listed once (as collapse=digest
    does; done here too, so an archive that ignores a parameter changes nothing)."""
    try:
        table = json.loads(data or b"[]")
    except ValueError:
        raise FetchError("extract-failed", "the archive's CDX answer is not JSON") from None
    if not isinstance(table, list) or (table and not all(isinstance(r, list) for r in table)):
        raise FetchError("extract-failed", "the archive's CDX answer is not a JSON table")
    if not table:
        return []
    header, body = [str(h) for h in table[0]], table[1:]
    if "timestamp" not in header or "original" not in header:
        raise FetchError("extract-failed", f"the archive's CDX answer lacks timestamp/original columns (got {', '.join(header)})")
    rows: list[CdxRow] = []
    for values in body:
        record = dict(zip(header, (str(v) for v in values)))
        timestamp = record.get("timestamp", "")
        if not re.fullmatch(r"\d{14}", timestamp) or record.get("statuscode", "200") != "200":
            continue
        if (start and timestamp[: len(start)] < start) or (end and timestamp[: len(end)] > end):
            continue
        rows.append(CdxRow(timestamp, record["original"], record.get("digest") or None, record.get("mimetype") or None))
    rows.sort(key=lambda r: r.timestamp)
    return [r for i, r in enumerate(rows) if i == 0 or r.digest is None or r.digest != rows[i - 1].digest]


def thin(rows: Sequence[CdxRow], every: str | None) -> list[CdxRow]:
    """At most one capture per day, ISO week or month: the first of each."""
    if every is None:
        return list(rows)

    def period(row: CdxRow) -> tuple[int, ...]:
        day = datetime.strptime(row.timestamp[:8], "%Y%m%d").date()
        if every == "1d":
            return (day.toordinal(),)
        if every == "1w":
            return tuple(day.isocalendar())[:2]
        return (day.year, day.month)

    seen: set[tuple[int, ...]] = set()
    kept = []
    for row in rows:
        key = period(row)
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


async def list_captures(client: ArchiveClient, url: str) -> list[CdxRow]:
    options = client.options
    params = {"url": url, "output": "json", "filter": "statuscode:200", "collapse": "digest", "fl": CDX_FIELDS}
    if options.start:
        params["from"] = options.start
    if options.end:
        params["to"] = options.end
    answer = await client.get(f"{options.archive_url}/cdx/search/cdx", params=params)
    return thin(parse_cdx(answer.body, start=options.start, end=options.end), options.every)


def imported_refs(store: Store, target_id: str) -> set[str]:
    """Archive URLs a previous run already dealt with: a version's provenance, or a fetch that
    got the capture (even if it made no version, e.g. a login wall). Failed fetches are tried again."""
    refs = {r["provenance_ref"] for r in store.db.query(
        "select provenance_ref from versions where target_id = ? and provenance_ref is not null", [target_id]
    )}
    refs |= {r["requested_url"] for r in store.db.query(
        "select requested_url from fetches where target_id = ? and engine = 'wayback' and status between 200 and 299",
        [target_id],
    )}
    return refs


async def import_wayback(ctx: ImportContext, options: WaybackOptions) -> ImportSummary:
    """List the target's captures, then fetch, extract and store each in time order.

    Raises FetchError when the capture list itself cannot be had."""
    target = ctx.target
    if len(target.urls) != 1:
        raise InputError(f"{target.id}: combines {len(target.urls)} pages; Wayback import handles single-page targets only")
    summary = ImportSummary(target.id)
    async with ArchiveClient(options, user_agent=target.user_agent, timeout=target.timeout) as client:
        rows = await list_captures(client, target.url)
        done = imported_refs(ctx.store, target.id)
        todo = [r for r in rows if r.archive_url(options.archive_url) not in done]
        summary.already = len(rows) - len(todo)
        if ctx.progress is not None:
            ctx.progress.start(len(todo))
        for row in todo:
            result = await _import_capture(ctx, client, row)
            _run(ctx, summary, result)
            if result.reason == "http-429":  # still rate-limited after every retry: stop, resume later
                summary.stopped = "the archive keeps answering 429 Too Many Requests; run again later to resume"
                break
    return _finish(ctx, summary)


async def _import_capture(ctx: ImportContext, client: ArchiveClient, row: CdxRow) -> CaptureResult:
    target, store = ctx.target, ctx.store
    url = row.archive_url(client.options.archive_url)
    observed = row.observed_at
    if row.mimetype and _format_of(row.mimetype) is None:
        return CaptureResult(url, observed, "skipped", "non-html")  # not worth a request
    started = utcnow()
    try:
        answer = await client.get(url)
    except ArchiveError as exc:
        record = FetchRecord(target.id, started, utcnow(), url, status=exc.status, engine="wayback",
                             attempts=exc.attempts, error_kind=exc.kind, error_message=str(exc))
        _record_attempt(store, record, "failed")
        return CaptureResult(url, observed, "failed", exc.kind)
    record = FetchRecord(
        target.id, started, utcnow(), url, final_url=answer.final_url, status=answer.status,
        content_type=answer.content_type, engine="wayback", attempts=answer.attempts, raw_sha256=sha256_bytes(answer.body),
    )
    try:
        fmt, document = _extract_capture(ctx, row, answer)
    except FetchError as exc:
        _record_attempt(store, replace(record, error_kind=exc.kind, error_message=str(exc)), "failed")
        return CaptureResult(url, observed, "skipped", exc.kind)
    record = replace(record, text_sha256=sha256_text(document.to_markdown()))
    raws = [RawPart(url, answer.body, _EXT[fmt], answer.content_type)]
    stored = store_capture(ctx, raws, document, observed_at=observed, provenance="wayback", ref=url, fetch=record)
    return _outcome(url, observed, stored)


def _format_of(content_type: str | None) -> str | None:
    """'html', 'pdf', 'markdown', 'text', '' (unknown: sniff it) or None (not a document)."""
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime in HTML_TYPES:
        return "html"
    if mime in TEXT_TYPES:
        return TEXT_TYPES[mime]
    if mime in ("", "unk", "application/octet-stream", "binary/octet-stream"):
        return ""
    return None


def _extract_capture(ctx: ImportContext, row: CdxRow, answer: Fetched) -> tuple[str, Document]:
    """Extract like a live capture (the target's select/remove); FetchError says why a
    capture is not a version: selector-missing (a login wall, a redesign), empty, too-short,
    non-html."""
    url = answer.url
    fmt = _format_of(answer.content_type)
    if fmt is None:
        raise FetchError("non-html", f"{url} is {answer.content_type}, not a web page or PDF", url=url)
    if not fmt:
        try:
            fmt = sniff_format(answer.body, urlsplit(row.original).path)
        except InputError as exc:
            raise FetchError("non-html", str(exc), url=url) from None
    target = ctx.target
    document = extract_bytes(answer.body, fmt, source=url, base_url=row.original, select=target.select, remove=target.remove)
    before = ctx.store.version_before(target.id, row.observed_at)
    refuse_unusable(document, before.text_bytes if before else None, url)
    return fmt, document


# ----------------------------------------------------------------------------- Open Terms Archive


@dataclass(frozen=True)
class OtaItem:
    """One version of one OTA document: a dated file, or a commit of a versions repository."""

    ref: str  # provenance_ref: file name or commit hash
    observed_at: str
    source: str  # where the bytes are (stored as the raw part's url)
    read: Callable[[], bytes]
    subject: str | None = None  # commit subject (git only)

    @property
    def note(self) -> str | None:
        if self.subject and self.subject.startswith(OTA_TECHNICAL):
            return "OTA technical commit: differences may come from OTA's filters, not the provider"
        return None


@dataclass(frozen=True)
class OtaSource:
    """The versions to import, oldest first, and the names of files left out (undated)."""

    items: list[OtaItem]
    ignored: list[str] = field(default_factory=list)


def read_ota(path: Path, file: str | None = None) -> OtaSource:
    """With `file`, `path` is a clone of an OTA versions repository and each commit touching
    the file is a version; without it, `path` holds files named by recording time.
    InputError when there is nothing usable (checked before the store is opened)."""
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if file is not None:
        return OtaSource(_git_items(path, file))
    if not path.is_dir():
        raise InputError(f"{path}: not a directory; give a folder of dated .md files, or a versions repository with --file")
    items, ignored = [], []
    for entry in sorted(path.iterdir()):
        if not entry.is_file() or entry.suffix != ".md":
            continue
        match = _OTA_NAME.match(entry.name)
        if not match:
            ignored.append(entry.name)
            continue
        day, hh, mm, ss, frac = match.groups()
        observed = to_timestamp(datetime.fromisoformat(f"{day}T{hh}:{mm}:{ss}{frac or ''}+00:00"))
        items.append(OtaItem(entry.name, observed, entry.resolve().as_uri(), entry.read_bytes))
    if not items:
        hint = "; it is a git repository: name the document with --file 'Service/Document.md'" if (path / ".git").exists() else ""
        raise InputError(f"{path}: no files named like 2024-09-19T06-10-13Z.md{hint}")
    items.sort(key=lambda item: item.observed_at)
    return OtaSource(items, ignored)


def _git(repo: Path, *args: str) -> bytes:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=120, check=False)
    except FileNotFoundError:
        raise InputError("git is not installed; it is needed to read an OTA versions repository") from None
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise InputError(f"{repo}: git {args[0]}: {message[-1] if message else f'exit {proc.returncode}'}")
    return proc.stdout


def _git_items(repo: Path, file: str) -> list[OtaItem]:
    """Each commit that touched `file`, oldest first; the author date is when OTA recorded it."""
    if not repo.is_dir():
        raise InputError(f"{repo}: not a directory; --file needs a clone of an OTA versions repository")
    log = _git(repo, "log", "--reverse", "--format=%H%x09%aI%x09%s", "--", file).decode("utf-8", errors="replace")
    items = []
    for line in log.splitlines():
        commit, authored, subject = (line.split("\t", 2) + ["", ""])[:3]
        observed = to_timestamp(datetime.fromisoformat(authored))
        items.append(OtaItem(commit, observed, f"git:{commit}:{file}", _git_reader(repo, commit, file), subject))
    if not items:
        raise InputError(f"{repo}: no commit touches {file!r}; give the document's path inside the repository")
    items.sort(key=lambda item: item.observed_at)
    return items


def _git_reader(repo: Path, commit: str, file: str) -> Callable[[], bytes]:
    return lambda: _git(repo, "show", f"{commit}:{file}")


def import_ota(ctx: ImportContext, source: OtaSource) -> ImportSummary:
    """Import OTA versions (already extracted Markdown: select/remove do not apply).

    No fetch rows are written: nothing was fetched. The provenance (`ota`, with the file name
    or commit hash) and the raw file kept with each version are the audit trail."""
    items, ignored = source.items, source.ignored
    target = ctx.target
    summary = ImportSummary(target.id)
    done = {r["provenance_ref"] for r in ctx.store.db.query(
        "select provenance_ref from versions where target_id = ? and provenance = 'ota'", [target.id]
    )}
    todo = [item for item in items if item.ref not in done]
    summary.already = len(items) - len(todo)
    if ctx.progress is not None:
        ctx.progress.start(len(todo) + len(ignored))
    for name in ignored:
        _run(ctx, summary, CaptureResult(name, "", "skipped", "undated name"))
    for item in todo:
        _run(ctx, summary, _import_item(ctx, item))
    return _finish(ctx, summary)


def _import_item(ctx: ImportContext, item: OtaItem) -> CaptureResult:
    try:
        data = item.read()
    except InputError as exc:  # e.g. the commit deleted the file
        return CaptureResult(item.ref, item.observed_at, "skipped", "unreadable", note=str(exc))
    document = extract_bytes(data, "markdown", source=item.ref, base_url=ctx.target.url)
    if document.text_length == 0:
        return CaptureResult(item.ref, item.observed_at, "skipped", "empty")
    raws = [RawPart(item.source, data, "md", "text/markdown")]
    stored = store_capture(ctx, raws, document, observed_at=item.observed_at, provenance="ota", ref=item.ref)
    return _outcome(item.ref, item.observed_at, stored, note=item.note)


__all__ = [
    "DEFAULT_ARCHIVE",
    "ArchiveClient",
    "CaptureResult",
    "CdxRow",
    "ImportContext",
    "ImportSummary",
    "OtaItem",
    "OtaSource",
    "RateLimit",
    "WaybackOptions",
    "import_ota",
    "import_wayback",
    "read_ota",
    "parse_archive_date",
    "parse_cdx",
    "parse_period",
    "reverted_to",
    "store_capture",
    "thin",
]
