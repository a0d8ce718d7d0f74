"""One view of a change, built once from the stored diff JSON and read by every writer
(HTML report, email, Markdown, plain text, terminal), so no writer re-parses Markdown links
or re-decides what is flagged, in what order, under which label."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..severity import SEVERITIES, severity_rank
from ..text import visible_text

# ----------------------------------------------------------------------------- severities and labels


SEVERITY_COLOURS = {  # severity -> colours of its mark (text on white, box edge, box fill)
    "high": {"fg": "#a4161a", "edge": "#c9252c", "fill": "#fdecec"},
    "medium": {"fg": "#8a4b00", "edge": "#d97706", "fill": "#fff4e0"},
    "low": {"fg": "#3c4a5a", "edge": "#7a8aa0", "fill": "#eef2f6"},
    "": {"fg": "#3c4a5a", "edge": "#d0d7de", "fill": "#ffffff"},
}


def one_line(text: str, limit: int) -> str:
    """Any text as one bounded line: no CR, LF or other control characters survive."""
    text = re.sub(r"[\x00-\x1f\x7f\x85\u2028\u2029]+", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


CATEGORY_LABELS = {
    "ai-training": "Uses your data to train AI",
    "ai-third-party": "Shares your data for others' AI",
    "opt-out-scope": "Limits on opting out",
    "sensitive-data": "Uses sensitive data",
    "retention": "How long data is kept",
}


def category_label(category: str) -> str:
    """Plain words for a flag category ('ai-training' -> 'Uses your data to train AI')."""
    if category in CATEGORY_LABELS:
        return CATEGORY_LABELS[category]
    words = category.replace("_", "-").split("-")
    label = " ".join("AI" if w.lower() == "ai" else w for w in words if w)
    return label[:1].upper() + label[1:]


def short_category(category: str) -> str:
    """'ai-training' -> 'AI training' (subjects and headlines, where space is short)."""
    words = category.replace("_", "-").split("-")
    label = " ".join("AI" if w.lower() == "ai" else w for w in words if w)
    return label[:1].upper() + label[1:]


# ----------------------------------------------------------------------------- segments


@dataclass(frozen=True)
class Segment:
    """A run of readable clause text: kept, inserted or deleted, perhaps a link."""

    op: str  # equal | insert | delete
    text: str
    href: str | None = None
    target: bool = False  # stands for a link's changed address (text " <url>"), not for words


# Markdown escapes, link ends with their target, '[', runs of other text, stray brackets.
_PIECE = re.compile(r"\\[\\\[\]*_#|>`-]|\]\([^)\s]*\)|\[|[^\\\[\]]+|[\\\]]")


def readable_segments(spans: Sequence[dict[str, str]]) -> list[Segment]:
    """Clause Markdown (as word-diff spans) to readable runs: `[text](url)` becomes the link
    text carrying its href; a link whose target changed shows the target in <...>."""
    out: list[Segment] = []
    open_at: int | None = None  # index in `out` of the '[' that may open a link
    just_closed: str | None = None  # op of the link text just closed
    for op, piece in ((s["op"], p) for s in spans for p in _PIECE.findall(s["text"])):
        if piece.startswith("](") and open_at is not None:
            url = piece[2:-1]
            text_ops = {seg.op for seg in out[open_at + 1:]}
            out[open_at:] = [replace(seg, href=url) for seg in out[open_at + 1:]]
            if text_ops != {op}:
                out.append(Segment(op, f" <{url}>", url, target=True))
            open_at, just_closed = None, op
            continue
        if piece.startswith("](") and just_closed is not None:
            out.append(Segment(op, f" <{piece[2:-1]}>", piece[2:-1], target=True))  # the other side of a changed target
            continue
        just_closed = None
        if piece == "[":
            open_at = len(out)
            piece = ""  # a link opener: never shown, closed or not
        elif len(piece) == 2 and piece[0] == "\\":
            piece = piece[1]
        out.append(Segment(op, piece))
    return tidy(out)


def tidy(segments: Iterable[Segment]) -> list[Segment]:
    """Merge neighbours alike; a word deleted and inserted again unchanged is kept (equal),
    so a link re-added with the same words never reads `[-salary-]{+salary+}`."""
    merged: list[Segment] = []
    for seg in segments:
        if not seg.text:
            continue
        if merged and merged[-1].op == seg.op and merged[-1].href == seg.href and not (seg.target or merged[-1].target):
            merged[-1] = replace(merged[-1], text=merged[-1].text + seg.text)
        else:
            merged.append(seg)
    out: list[Segment] = []
    i = 0
    while i < len(merged):
        seg = merged[i]
        nxt = merged[i + 1] if i + 1 < len(merged) else None
        if nxt is not None and {seg.op, nxt.op} == {"insert", "delete"} and seg.text == nxt.text and not (seg.target or nxt.target):
            old, new = (seg, nxt) if seg.op == "delete" else (nxt, seg)
            out.append(Segment("equal", seg.text, new.href))
            if old.href != new.href:  # same words, another address: the address change shows
                out += [Segment(op, f" <{href}>", href, target=True) for op, href in (("delete", old.href), ("insert", new.href)) if href]
            i += 2
            continue
        out.append(seg)
        i += 1
    if len(out) != len(merged):
        return tidy(out)
    return out


def clause_segments(change: dict[str, Any]) -> list[Segment]:
    """A changed clause as segments: word-level for a modified clause, whole otherwise."""
    kind = change.get("kind")
    spans = change.get("spans") or []
    if kind == "added":
        spans = [{"op": "insert", "text": change.get("new") or ""}]
    elif kind == "removed":
        spans = [{"op": "delete", "text": change.get("old") or ""}]
    elif kind == "modified" and not spans:
        spans = [{"op": "delete", "text": change.get("old") or ""}, {"op": "insert", "text": change.get("new") or ""}]
    elif kind != "modified":
        spans = [{"op": "equal", "text": change.get("new") or change.get("old") or ""}]
    return readable_segments(spans)


def cut_segments(segments: Sequence[Segment], limit: int) -> tuple[list[Segment], int]:
    """At most `limit` characters; returns the kept segments and how many were cut."""
    kept: list[Segment] = []
    used = 0
    total = sum(len(s.text) for s in segments)
    for seg in segments:
        room = limit - used
        if room <= 0:
            break
        if len(seg.text) > room:
            kept.append(replace(seg, text=seg.text[:room].rstrip() + "…"))
            used = limit
            break
        kept.append(seg)
        used += len(seg.text)
    return kept, max(total - used, 0)


_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def isolate(text: str) -> str:
    """Text holding direction controls (a right-to-left override makes "fdp.exe" read
    "exe.pdf") wrapped in FSI..PDI, so they cannot reorder anything around it."""
    return f"\u2068{text}\u2069" if _BIDI_CONTROLS.search(text) else text


def has_bidi(text: str) -> bool:
    return _BIDI_CONTROLS.search(text) is not None


def safe_href(url: str | None) -> str | None:
    """Only web and mail addresses become links; anything else (javascript:, data:) is text."""
    if not url:
        return None
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    return url if scheme in ("http", "https", "mailto") else None


# ----------------------------------------------------------------------------- the view


@dataclass(frozen=True)
class FlagView:
    category: str
    label: str  # plain words: "Uses your data to train AI"
    severity: str
    what: str  # what happened to the statement: added, removed, qualifier-removed, ...
    rule: str
    evidence: str
    summary: str
    side: str

    @classmethod
    def of(cls, flag: dict[str, Any]) -> FlagView:
        category = str(flag.get("category", ""))
        return cls(
            category=category, label=category_label(category), severity=str(flag.get("severity", "")),
            what=str(flag.get("change") or flag.get("side") or ""), rule=str(flag.get("rule", "")),
            evidence=str(flag.get("evidence") or ""), summary=str(flag.get("summary") or ""), side=str(flag.get("side") or ""),
        )


@dataclass(frozen=True)
class ClauseView:
    kind: str  # added | removed | modified | moved | ...
    section: str
    cosmetic: bool
    reason: str | None
    segments: tuple[Segment, ...]
    flags: tuple[FlagView, ...]

    @property
    def whole(self) -> bool:
        """Added or removed as a whole: the clause is one mark, not word marks."""
        return self.kind in ("added", "removed")

    @property
    def best_severity(self) -> int:
        return max((severity_rank(f.severity) for f in self.flags), default=-1)

    @property
    def top_severity(self) -> str:
        """The most severe flag's severity ('' when unflagged): the colour of its box."""
        return SEVERITIES[self.best_severity] if self.best_severity >= 0 else ""

    @property
    def categories(self) -> list[str]:
        return sorted({f.category for f in self.flags})

    @classmethod
    def of(cls, change: dict[str, Any]) -> ClauseView:
        return cls(
            kind=str(change.get("kind", "modified")), section=visible_text(change.get("section") or ""),
            cosmetic=bool(change.get("cosmetic")), reason=change.get("reason"),
            segments=tuple(clause_segments(change)), flags=tuple(FlagView.of(f) for f in change.get("flags") or []),
        )


@dataclass(frozen=True)
class Signal:
    """A signal on a change: silent-update and reverted from its own diff; policy-lag and
    policy-silent from the service's other documents (monitor.service), which name the
    other document, its date, the days between and the statement's category."""

    kind: str
    message: str
    category: str = ""
    days: float | None = None
    other_target: str = ""
    other_document: str = ""
    other_date: str = ""

    @classmethod
    def of(cls, signal: dict[str, Any]) -> Signal:
        other = signal.get("other") or {}
        days = signal.get("days")
        return cls(
            kind=str(signal.get("kind", "")), message=str(signal.get("message", "")), category=str(signal.get("category") or ""),
            days=float(days) if isinstance(days, (int, float)) else None, other_target=str(other.get("target") or ""),
            other_document=str(other.get("document") or ""), other_date=str(other.get("date") or signal.get("since") or ""),
        )

    @property
    def label(self) -> str:
        """'policy-lag (ai-training)': the kind, with the statement's category when it has one."""
        return f"{self.kind} ({self.category})" if self.category else self.kind


@dataclass(frozen=True)
class DiffView:
    """A change between two versions, as every writer shows it."""

    title: str
    substantive: bool
    old_date: str | None
    new_date: str | None
    signals: tuple[Signal, ...]
    clauses: tuple[ClauseView, ...]  # substantive clauses, flagged first (most severe first)
    cosmetic: tuple[ClauseView, ...]
    counts: dict[str, int] = field(default_factory=dict)  # kind -> substantive clauses
    # set when the diff is a stored change
    id: int | None = None
    target: str = ""
    service: str = ""
    document: str = ""
    url: str = ""
    detected_at: str = ""
    observed_at: str = ""
    old_version: int | None = None
    new_version: int | None = None
    provenance: str = "live"

    @classmethod
    def of(cls, diff: dict[str, Any], meta: dict[str, Any] | None = None, *, title: str | None = None) -> DiffView:
        meta = meta or {}
        clauses = [ClauseView.of(c) for c in diff.get("changes") or []]
        substantive = [c for c in clauses if not c.cosmetic]
        ordered = sorted(substantive, key=lambda c: (0 if c.flags else 1, -c.best_severity))
        counts = dict(Counter(c.kind for c in substantive).most_common())
        return cls(
            title=title or entry_title(meta or diff),
            substantive=bool(diff.get("substantive")),
            old_date=(diff.get("old") or {}).get("effective_date"),
            new_date=(diff.get("new") or {}).get("effective_date"),
            signals=tuple(Signal.of(s) for s in diff.get("signals") or []),
            clauses=tuple(ordered),
            cosmetic=tuple(c for c in clauses if c.cosmetic),
            counts=counts,
            id=meta.get("id"), target=meta.get("target") or "", service=meta.get("service") or "",
            document=meta.get("document") or "", url=meta.get("url") or "", detected_at=meta.get("detected_at") or "",
            observed_at=meta.get("observed_at") or "", old_version=meta.get("old_version"), new_version=meta.get("new_version"),
            provenance=meta.get("provenance") or "live",
        )

    @property
    def flags(self) -> list[FlagView]:
        return [f for c in self.clauses for f in c.flags]

    @property
    def categories(self) -> list[str]:
        return sorted({f.category for f in self.flags})

    @property
    def counts_line(self) -> str:
        parts = [f"{n} {kind}" for kind, n in self.counts.items()]
        if self.cosmetic:
            parts.append(f"{len(self.cosmetic)} cosmetic")
        return ", ".join(parts) or "no changes"

    @property
    def dates_line(self) -> str:
        return dates_line(self.old_date, self.new_date)

    @property
    def versions(self) -> str:
        """'v14→v15': the version pair that names a change everywhere, with its id."""
        return f"v{self.old_version}→v{self.new_version}" if self.old_version is not None else ""

    @property
    def detected(self) -> str:
        return self.detected_at[:16].replace("T", " ")


def dates_line(old: str | None, new: str | None) -> str:
    if not old and not new:
        return "stated date: none found"
    if old == new:
        return f"stated date: {new} (unchanged)"
    return f"stated date: {old or '?'} → {new or '?'}"


def entry_title(entry: dict[str, Any]) -> str:
    if entry.get("service"):
        return f"{entry['service']} · {str(entry.get('document', '')).replace('-', ' ').title()}"
    old, new = entry.get("old") or {}, entry.get("new") or {}
    return f"{old.get('source', '?')} → {new.get('source', '?')}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
