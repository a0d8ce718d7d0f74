"""The plain records passed between the stages and the store: raw parts, versions, fetch
attempts, and the outcome of one check (written by Store.commit_check in one transaction)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .diff import DiffResult
    from .extract import Document


def utcnow() -> str:
    """Timestamps are ISO 8601 UTC with milliseconds: sortable as text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Exchange:
    """The main document's HTTP exchange as the network gave it: what evidence needs beside
    the bytes the extractor read (for the browser engine those are the rendered DOM). The
    body is the payload after any Content-Encoding was undone (httpx and Chromium both hand
    it over decoded); the headers are kept as received, Content-Encoding included.

    Stored as two content-addressed files: the body (beside the raw capture, the same file
    when the raw capture is the body) and `head_json()`, which names the body by its sha256."""

    requested_url: str
    url: str  # the final URL, after redirects
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    started_at: str
    engine: str
    method: str = "GET"
    http_version: str | None = None  # None when the engine does not say (Chromium through Playwright)
    request_headers: tuple[tuple[str, str], ...] = ()
    redirects: tuple[dict[str, Any], ...] = ()  # [{url, status, location}] before the final response
    browser_version: str | None = None

    @property
    def body_sha256(self) -> str:
        return sha256_bytes(self.body)

    def head(self) -> dict[str, Any]:
        return {
            "format": "monitor-http-exchange/1", "requested_url": self.requested_url, "url": self.url,
            "method": self.method, "http_version": self.http_version, "status": self.status, "reason": self.reason,
            "headers": [list(h) for h in self.headers], "request_headers": [list(h) for h in self.request_headers],
            "redirects": list(self.redirects), "started_at": self.started_at, "engine": self.engine,
            "browser_version": self.browser_version, "body_sha256": self.body_sha256, "body_bytes": len(self.body),
        }

    def head_json(self) -> bytes:
        return json.dumps(self.head(), sort_keys=True, indent=1, ensure_ascii=False).encode("utf-8") + b"\n"


@dataclass(frozen=True)
class Shot:
    """One tile of a full-page screenshot (a page taller than the format allows is several)."""

    data: bytes
    fmt: str  # webp, jpeg, png
    width: int
    height: int
    top: int = 0  # where the tile starts on the page, in CSS pixels

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.data)


@dataclass(frozen=True)
class RawPart:
    """One fetched page as received (a document may combine several)."""

    url: str
    data: bytes
    ext: str  # html, pdf, md, txt
    content_type: str | None = None
    exchange: Exchange | None = None  # the network response (live captures since format 2 of raws)
    shots: tuple[Shot, ...] = ()  # a full-page screenshot, as tiles (browser engine, new versions)

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.data)


@dataclass(frozen=True)
class Version:
    id: int
    target_id: str
    seq: int
    observed_at: str
    text_sha256: str
    text_path: str
    raws: tuple[dict[str, Any], ...]
    effective_date: str | None
    chain_hash: str
    provenance: str
    provenance_ref: str | None
    text_bytes: int
    clause_count: int
    reverted_to: int | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Version:
        return cls(
            id=row["id"],
            target_id=row["target_id"],
            seq=row["seq"],
            observed_at=row["observed_at"],
            text_sha256=row["text_sha256"],
            text_path=row["text_path"],
            raws=tuple(json.loads(row["raws"] or "[]")),
            effective_date=row["effective_date"],
            chain_hash=row["chain_hash"],
            provenance=row["provenance"],
            provenance_ref=row["provenance_ref"],
            text_bytes=row["text_bytes"],
            clause_count=row["clause_count"],
            reverted_to=row["reverted_to"],
        )

    @property
    def ref(self) -> str:
        return f"{self.target_id}@{self.seq}"


@dataclass(frozen=True)
class FetchRecord:
    """What one fetch attempt saw; stored whether it succeeded or not."""

    target_id: str
    started_at: str
    finished_at: str
    requested_url: str
    final_url: str | None = None
    status: int | None = None
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    engine: str | None = None
    browser_version: str | None = None
    attempts: int = 1
    error_kind: str | None = None
    error_message: str | None = None
    raw_sha256: str | None = None
    text_sha256: str | None = None
    extract_key: str | None = None  # raw bytes + extraction settings; equal keys give equal text

    @property
    def duration_ms(self) -> int:
        return int((parse_timestamp(self.finished_at) - parse_timestamp(self.started_at)).total_seconds() * 1000)


@dataclass
class ChangePlan:
    """A change as its check described it: the diff, the outbox rows, the rendered clauses."""

    result: DiffResult
    alert_rows: list[dict[str, Any]] = field(default_factory=list)
    html: str | None = None
    html_version: int | None = None


# (predecessor, new document, reverted_to) -> the change from that predecessor. Called inside
# the write transaction, so the predecessor is the one really stored before the new version.
Planner = Callable[["Version", "Document", "int | None"], ChangePlan]


@dataclass
class Candidate:
    """A successful capture that may be a new version; the store decides, under its lock."""

    fetch: FetchRecord  # with text_sha256 set
    raws: Sequence[RawPart]
    document: Document | None  # None when the bytes equal the last fetch's (known by text sha)
    plan: Planner


@dataclass
class CheckOutcome:
    """Everything one check of one target wants stored, written by Store.commit_check in one
    transaction: a kill leaves all of it or none of it."""

    target_id: str
    fetches: list[tuple[FetchRecord, str]] = field(default_factory=list)  # attempts besides the candidate
    candidate: Candidate | None = None
    failed: bool = False
    error: str = ""
    engine_choice: str | None = None  # what `auto` settled on, when it changed
    failure_threshold: int = 3
    state_alerts: Callable[[str, str], list[dict[str, Any]]] | None = None  # (failing|recovered, detail) -> rows
    watch: Callable[[], list[dict[str, Any]]] | None = None  # rows about many targets (an outage), once the fetches are in


@dataclass
class Committed:
    """What the store made of a CheckOutcome."""

    outcome: str  # first-version, new-version, unchanged, unconfirmed, failed
    version: Version | None = None
    change_id: int | None = None
    result: DiffResult | None = None
    state_change: str | None = None  # failing or recovered


__all__ = [
    "Candidate", "ChangePlan", "CheckOutcome", "Committed", "Exchange", "FetchRecord", "Planner", "RawPart", "Shot", "Version",
    "parse_timestamp", "sha256_bytes", "to_timestamp", "utcnow",
]
