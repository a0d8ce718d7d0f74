"""Alert messages: a stored change (or a failing target) as a subject, a plain-text body and
an HTML body. The HTML goes through a Jinja2 template with autoescaping and inline styles
only (mail clients drop <style>); everything that came from a page is escaped, bounded per
clause, kept out of the headers, and isolated when it holds direction overrides."""

from __future__ import annotations

import json
import re
import shlex
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import AlertError, InputError
from ..severity import severity_rank
from ..store import parse_timestamp
from .jinja import environment
from .text import marked, segment_runs
from .view import (
    SEVERITY_COLOURS,
    ClauseView,
    DiffView,
    FlagView,
    Segment,
    cut_segments,
    isolate,
    one_line,
    plural,
    short_category,
)

if TYPE_CHECKING:
    from ..store import Store
    from ..targets import Config

# What one message may hold; anything beyond is cut with a note, never silently.
MAX_CLAUSES = 10  # changed clauses shown in a change email (flagged first)
MAX_DIGEST_CLAUSES = 3  # per change, in a digest
MAX_DIGEST_CHANGES = 25
MAX_CLAUSE_CHARS = 1200  # visible characters of one clause
MAX_EVIDENCE_CHARS = 300
MAX_SECTION_CHARS = 160
MAX_SUBJECT_CHARS = 200
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class Rendered:
    """A message before it has an envelope: a one-line subject and two bodies."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class ChangeView:
    """A stored change as an alert shows it: the target as queued, versions, the diff JSON."""

    change_id: int
    target: dict[str, str]
    detected_at: str
    old_seq: int | None
    new_seq: int | None
    diff: dict[str, Any]

    @classmethod
    def load(cls, store: Store, row: Any) -> ChangeView:
        """From an outbox row (alerts.AlertRow); a change gone is a permanent failure."""
        if row.change_id is None:
            raise AlertError(f"alert {row.id} has no change", permanent=True)
        try:
            change = store.change(row.change_id)
        except InputError:
            raise AlertError(f"alert {row.id}: change {row.change_id} no longer exists", permanent=True) from None
        target = row.payload.get("target") or {"id": change["target_id"], "service": change["target_id"], "document": "", "url": "", "title": change["target_id"]}
        return cls(
            change_id=int(change["id"]), target=target, detected_at=change["detected_at"],
            old_seq=change["old_seq"], new_seq=change["new_seq"], diff=json.loads(change["diff"] or "{}"),
        )

    def view(self) -> DiffView:
        meta = {
            "id": self.change_id, "target": self.target.get("id", ""), "service": self.target.get("service", ""),
            "document": self.target.get("document", ""), "url": self.target.get("url", ""), "detected_at": self.detected_at,
            "old_version": self.old_seq, "new_version": self.new_seq,
        }
        return DiffView.of(self.diff, meta, title=self.target.get("title") or self.target.get("id", ""))


def counted(flags: Sequence[FlagView], min_severity: str) -> list[FlagView]:
    """The flags at or above min_severity: those the alert calls flagged."""
    floor = severity_rank(min_severity)
    return [f for f in flags if severity_rank(f.severity) >= floor]


@dataclass(frozen=True)
class ChangeSummary:
    """The decisions a change email makes, shared by the subject, the text and the HTML."""

    source: ChangeView
    view: DiffView
    flagged: list[ClauseView]  # clauses with counted flags, most severe first
    others: list[ClauseView]
    n_flags: int
    headline: str
    min_severity: str

    @classmethod
    def of(cls, source: ChangeView, min_severity: str) -> ChangeSummary:
        return cls.of_view(source.view(), min_severity, source)

    @classmethod
    def of_view(cls, view: DiffView, min_severity: str, source: Any = None) -> ChangeSummary:
        """From the one view of a change (a report entry or a feed's), without a ChangeView."""
        flagged = [c for c in view.clauses if counted(c.flags, min_severity)]
        others = [c for c in view.clauses if not counted(c.flags, min_severity)]
        n_flags = sum(len(counted(c.flags, min_severity)) for c in flagged)
        return cls(source, view, flagged, others, n_flags, _headline(view, flagged, others, min_severity), min_severity)

    def flags_of(self, clause: ClauseView) -> list[FlagView]:
        return counted(clause.flags, self.min_severity)

    @property
    def title_line(self) -> str:
        flags = f" ({plural(self.n_flags, 'flag')})" if self.n_flags else ""
        return one_line(f"{self.view.title} changed: {self.headline}{flags}", MAX_SUBJECT_CHARS)


def _headline(view: DiffView, flagged: list[ClauseView], others: list[ClauseView], min_severity: str) -> str:
    """The most important flag ('AI training clause added'), else the change counts."""
    best: tuple[int, ClauseView, FlagView] | None = None
    for clause in flagged:
        for flag in counted(clause.flags, min_severity):
            if best is None or severity_rank(flag.severity) > best[0]:
                best = (severity_rank(flag.severity), clause, flag)
    if best is not None:
        _, clause, flag = best
        verb = "added" if clause.kind == "added" else "removed" if clause.kind == "removed" or flag.side == "old" else "changed"
        return f"{short_category(flag.category or 'flagged')} clause {verb}"
    return count_text(flagged + others) or "cosmetic changes only"


def count_text(clauses: Sequence[ClauseView]) -> str:
    """'3 modified, 1 added'."""
    counts: dict[str, int] = {}
    for clause in clauses:
        counts[clause.kind] = counts.get(clause.kind, 0) + 1
    return ", ".join(f"{counts[k]} {k}" for k in ("modified", "added", "removed", "moved") if counts.get(k))


def show_command(config: Config, change_id: int) -> str:
    """The exact command that prints the full diff of this change."""
    return f"monitor --config {shlex.quote(str(config.path))} show {change_id}"


def change_link(config: Config, change_id: int) -> str | None:
    """The change's place in the published report (alerts.report_url), if there is one."""
    base = config.alerts.report_url
    if not base:
        return None
    if "{id}" in base:
        return base.replace("{id}", str(change_id))
    return f"{base.split('#', 1)[0]}#change-{change_id}"


def change_subject(prefix: str, summary: ChangeSummary) -> str:
    """'[privacy monitor] LinkedIn · Privacy Policy changed: AI training clause added (2 flags)'."""
    return one_line(f"{prefix} {summary.title_line}", MAX_SUBJECT_CHARS)


# ----------------------------------------------------------------------------- the parts of a change


@dataclass(frozen=True)
class Fact:
    text: str
    signal: bool = False  # a document-level warning (silent update, reverted): shown prominently


def facts(summary: ChangeSummary) -> list[Fact]:
    """Version numbers, the stated effective date, and any document-level signal."""
    view = summary.view
    out = [Fact(f"Change #{view.id} ({view.versions}), detected {_when(view.detected_at)}.")]
    if view.new_date and view.old_date and view.new_date != view.old_date:
        out.append(Fact(one_line(f"Stated effective date: {view.new_date} (was {view.old_date}).", 120)))
    elif view.new_date:
        out.append(Fact(one_line(f"Stated effective date: {view.new_date} (unchanged).", 120)))
    else:
        out.append(Fact("The page states no effective date."))
    for signal in view.signals:
        out.append(Fact(one_line(f"{short_category(signal.kind or 'signal')}: {signal.message}", 300), signal=True))
    return out


def _when(stamp: str) -> str:
    try:
        return parse_timestamp(stamp).strftime("%Y-%m-%d %H:%M UTC")
    except (ValueError, TypeError):
        return one_line(str(stamp), 40)


def clause_label(clause: ClauseView) -> str:
    kind = {"added": "Added clause", "removed": "Removed clause", "modified": "Changed clause"}.get(clause.kind, "Clause")
    section = one_line(clause.section, MAX_SECTION_CHARS)
    return f"{kind} · {section}" if section else kind


def flag_line(flag: FlagView) -> str:
    """'Uses your data to train AI (high)': plain words first, the rule for those who tune it."""
    return one_line(f"{flag.label} ({flag.severity or '?'})", 200)


def evidence(flag: FlagView) -> str | None:
    return one_line(flag.evidence, MAX_EVIDENCE_CHARS) if flag.evidence else None


def cut_note(cut: int, command: str) -> str:
    return f"[clause cut here: {cut:,} more characters; run `{command}` for all of it]"


def more_note(more: int, command: str) -> str:
    return f"{plural(more, 'more changed clause')}: run `{command}` for the full diff."


def _pick(summary: ChangeSummary, limit: int) -> tuple[list[ClauseView], int]:
    ordered = summary.flagged + summary.others
    return ordered[:limit], max(len(ordered) - limit, 0)


@dataclass(frozen=True)
class ClausePart:
    """One clause as both bodies show it."""

    number: int
    label: str
    kind: str
    flags: list[FlagView]
    segments: list[Segment]
    cut: int
    severity: str | None  # the most severe counted flag's, for the box colour

    @property
    def colours(self) -> dict[str, str]:
        return SEVERITY_COLOURS.get(self.severity or "", SEVERITY_COLOURS[""])


@dataclass(frozen=True)
class ChangePart:
    """One change of a message (a digest holds several)."""

    number: int | None
    title: str
    url: str
    facts: list[Fact]
    flagged: list[ClausePart]
    others: list[ClausePart]
    n_flagged: int
    n_others: int
    cosmetic: int
    more: int
    command: str
    link: str | None
    target_id: str


def change_part(config: Config, summary: ChangeSummary, limit: int, *, number: int | None = None) -> ChangePart:
    shown, more = _pick(summary, limit)
    parts = []
    for index, clause in enumerate(shown, start=1):
        segments, cut = cut_segments(clause.segments, MAX_CLAUSE_CHARS)
        flags = summary.flags_of(clause)
        top = max(flags, key=lambda f: severity_rank(f.severity), default=None)
        parts.append(ClausePart(index, clause_label(clause), clause.kind, flags, segments, cut, top.severity if top else None))
    n_flagged = len(summary.flagged)
    view = summary.view
    return ChangePart(
        number=number, title=summary.title_line, url=one_line(view.url, 2000), facts=facts(summary),
        flagged=[p for p in parts if p.flags], others=[p for p in parts if not p.flags], n_flagged=n_flagged,
        n_others=len(summary.others), cosmetic=len(view.cosmetic), more=more, command=show_command(config, summary.source.change_id),
        link=change_link(config, summary.source.change_id), target_id=view.target,
    )


# ----------------------------------------------------------------------------- plain text


def _text_change(part: ChangePart) -> list[str]:
    lines = [f"{part.number}. {part.title}" if part.number else part.title, part.url, ""]
    lines += [f"{'! ' if fact.signal else ''}{isolate(fact.text)}" for fact in part.facts]
    if part.flagged:
        lines += ["", f"FLAGGED CHANGES ({part.n_flagged})"]
    for clause in part.flagged:
        lines += ["", *_text_clause(clause, part.command)]
    if part.others:
        lines += ["", f"{'OTHER CHANGES' if part.n_flagged else 'CHANGES'} ({part.n_others})"]
    for clause in part.others:
        lines += ["", *_text_clause(clause, part.command)]
    if part.cosmetic:
        lines += ["", f"Also {plural(part.cosmetic, 'cosmetic change')} (typography, moves, dates), not shown."]
    if part.more:
        lines += ["", more_note(part.more, part.command)]
    lines += [""]
    if part.link:
        lines += [f"See the change: {part.link}"]
    return [*lines, f"Full diff: {part.command}"]


def _text_clause(clause: ClausePart, command: str) -> list[str]:
    whole = clause.kind in ("added", "removed")
    body = "".join(text if whole else marked(op, text) for op, text in segment_runs(clause.segments))
    lines = [f"{clause.number}. {isolate(clause.label)}"]
    lines += [f"   Flag: {flag_line(flag)}" for flag in clause.flags]
    lines += _wrap(isolate(body), "   ")
    if clause.cut:
        lines.append(f"   {cut_note(clause.cut, command)}")
    for flag in clause.flags:
        if flag.summary:
            lines.append(f"   {one_line(isolate(flag.summary), 300)}")
        quote = evidence(flag)
        if quote:
            lines.append(f'   Evidence: "{isolate(quote)}"')
    return lines


def _wrap(text: str, indent: str) -> list[str]:
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]", " ", text)
    out: list[str] = []
    for paragraph in text.split("\n"):
        out += textwrap.wrap(paragraph, 78, initial_indent=indent, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False) or [indent.rstrip()]
    return out


# ----------------------------------------------------------------------------- messages


def _html(**context: Any) -> str:
    return environment().get_template("email.html.j2").render(**context)


def render_change(config: Config, source: ChangeView) -> Rendered:
    """One change: flagged clauses first with their evidence, then the others, bounded."""
    summary = ChangeSummary.of(source, config.alerts.min_severity)
    part = change_part(config, summary, MAX_CLAUSES)
    subject = change_subject(config.alerts.subject_prefix, summary)
    text = "\n".join([*_text_change(part), ""])
    return Rendered(subject, text, _html(subject=subject, lead=None, changes=[part], notes=[], lines=[]))


def render_digest(config: Config, sources: Sequence[ChangeView]) -> Rendered:
    """Several changes in one email, most flagged first, each cut to a few clauses."""
    summaries = sorted((ChangeSummary.of(s, config.alerts.min_severity) for s in sources), key=lambda s: (-s.n_flags, s.view.detected_at))
    n_flags = sum(s.n_flags for s in summaries)
    documents = len({s.view.target for s in summaries})
    flags = f" ({plural(n_flags, 'flag')})" if n_flags else ""
    subject = one_line(f"{config.alerts.subject_prefix} digest: {plural(len(summaries), 'change')} in {plural(documents, 'document')}{flags}", MAX_SUBJECT_CHARS)
    lead = f"{plural(len(summaries), 'change')} in {plural(documents, 'document')}{flags}."
    parts = [change_part(config, s, MAX_DIGEST_CLAUSES, number=n) for n, s in enumerate(summaries[:MAX_DIGEST_CHANGES], start=1)]
    text = [lead, ""]
    for part in parts:
        text += ["-" * 78, *_text_change(part), ""]
    notes = []
    if len(summaries) > MAX_DIGEST_CHANGES:
        rest = len(summaries) - MAX_DIGEST_CHANGES
        notes.append(f"{plural(rest, 'more change')} not shown: run `monitor --config {shlex.quote(str(config.path))} report` to see them all.")
        text += [notes[-1], ""]
    return Rendered(subject, "\n".join(text), _html(subject=subject, lead=lead, changes=parts, notes=notes, lines=[]))


def render_state(config: Config, kind: str, payload: dict[str, Any], target_id: str | None) -> Rendered:
    """A target entering ("failing") or leaving ("recovered") the failing state, or many
    targets at once (monitor.outage: "outage", "outage-recovered")."""
    if kind.startswith("outage"):
        return render_outage(config, kind, payload.get("outage") or {})
    target = payload.get("target") or {"id": target_id or "", "title": target_id or "", "url": ""}
    title = target.get("title") or target.get("id", "")
    detail = one_line(str(payload.get("detail") or ""), MAX_ERROR_CHARS)
    if kind == "failing":
        headline = f"{title} is failing"
        lines = [f"Checks of {title} keep failing: {detail}", "Changes to this page go unseen until it recovers."]
    elif kind == "discovered":  # monitor/discover.py: new linked help pages, one per line
        pages = payload.get("pages") or []
        headline = f"{title}: {len(pages)} new linked page(s) to consider watching"
        lines = [one_line(line, MAX_ERROR_CHARS) for line in str(payload.get("detail") or "").splitlines()]
    else:
        headline = f"{title} recovered"
        lines = [f"Checks of {title} succeed again; changes to it are seen again."]
    lines += [f"Page: {target.get('url', '')}", f"Status: monitor --config {shlex.quote(str(config.path))} status"]
    subject = one_line(f"{config.alerts.subject_prefix} {headline}", MAX_SUBJECT_CHARS)
    text = "\n".join([headline, "", *lines, ""])
    return Rendered(subject, text, _html(subject=subject, lead=None, heading=headline, changes=[], notes=[], lines=lines))


def render_outage(config: Config, kind: str, outage: dict[str, Any]) -> Rendered:
    """One message for many targets failing alike, and one when that ends."""
    what = one_line(str(outage.get("kind") or "?"), 40)
    meaning = one_line(str(outage.get("meaning") or what), 200)
    if kind == "outage":
        n = int(outage.get("failing") or 0)
        headline = f"{n} of {outage.get('checked')} targets failing with {what}"  # so far: more may follow
        window = int(float(outage.get("window") or 0) // 60)
        listed = ", ".join(outage.get("targets") or [])
        lines = [
            f"{n} of the {outage.get('checked')} targets checked in the last {window} minutes failed with {meaning}.",
            "That is most likely this machine's network or a shared service, not the pages: no alert per target is sent until it ends.",
            one_line(f"Targets: {listed}", 2000),
        ]
    else:
        headline = f"{what} outage over"
        waiting = ", ".join(outage.get("waiting") or [])
        lines = [f"Checks succeed again; the {what} failures of {outage.get('failing')} targets since {_when(str(outage.get('since')))} are over."]
        lines.append(one_line(f"Not checked again yet: {waiting} (each is alerted on its own if its next check fails and it is not back soon after).", 2000) if waiting else "No target is still failing.")
        if outage.get("recovered"):
            lines.append(one_line(f"Back just before it ended (their own recovered alerts are left out): {', '.join(outage['recovered'])}.", 2000))
    lines.append(f"Status: monitor --config {shlex.quote(str(config.path))} status")
    subject = one_line(f"{config.alerts.subject_prefix} {headline}", MAX_SUBJECT_CHARS)
    text = "\n".join([headline, "", *lines, ""])
    return Rendered(subject, text, _html(subject=subject, lead=None, heading=headline, changes=[], notes=[], lines=lines))


def render_test(config: Config) -> Rendered:
    subject = one_line(f"{config.alerts.subject_prefix} test message", MAX_SUBJECT_CHARS)
    lines = [
        "This is a test message from the privacy monitor.",
        f"Configuration: {config.path}",
        "If you can read this, alerts for changed policies will reach you.",
    ]
    return Rendered(subject, "\n".join(lines) + "\n", _html(subject=subject, lead=None, changes=[], notes=[], lines=lines))


__all__ = ["ChangeView", "Rendered", "render_change", "render_digest", "render_state", "render_test"]
