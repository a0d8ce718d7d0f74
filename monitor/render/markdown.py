"""The Markdown writer: a report or one diff as CommonMark (+ GFM tables and strikethrough)
that renders cleanly. Inserted words are **bold**, deleted ones ~~struck~~; whitespace stays
outside the markers, and where CommonMark would not read a marker as emphasis (a mark that
starts or ends on punctuation inside a word) the words are wrapped in <ins>/<del> instead,
so no reader ever sees a literal `**` or `~~`."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from .view import ClauseView, DiffView, Segment, isolate, plural, safe_href

_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~!])")


def escape(text: str) -> str:
    """Page text as literal Markdown: every character that could start markup is escaped,
    a paragraph never starts as a list item by accident, and direction overrides are isolated."""
    text = _SPECIAL.sub(r"\\\1", isolate(text))
    return re.sub(r"^(\s*)([-+]|\d+)([.)]?\s)", lambda m: f"{m.group(1)}\\{m.group(2)}{m.group(3)}" if m.group(2) in "-+" else f"{m.group(1)}{m.group(2)}\\{m.group(3)}" if m.group(3)[0] in ".)" else m.group(0), text)


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


def _flanks(before: str, core: str, after: str) -> bool:
    """Would CommonMark open a delimiter run just before `core` and close it just after?"""
    first, last = core[0], core[-1]
    opens = not _is_punct(first) or not before or before.isspace() or _is_punct(before)
    closes = not _is_punct(last) or not after or after.isspace() or _is_punct(after)
    return opens and closes


def _link(text: str, href: str | None) -> str:
    url = safe_href(href)
    if not url:
        return escape(text)
    target = f"<{url}>" if re.search(r"[\s()<>]", url) is None else "<" + re.sub(r"[\s<>]", lambda m: f"%{ord(m.group()):02X}", url) + ">"
    return f"[{escape(text)}]({target})"


def _inline(seg: Segment) -> str:
    if seg.target:
        return _link("new link" if seg.op == "insert" else "old link" if seg.op == "delete" else "link", seg.href)
    return _link(seg.text.replace("\n", " "), seg.href) if seg.href else escape(seg.text.replace("\n", " "))


def segments_markdown(segments: Sequence[Segment]) -> str:
    """Segments as Markdown: each run of inserted or deleted words is one mark, with the
    whitespace at its ends outside it (an added or removed clause is one run: one mark)."""
    runs: list[tuple[str, list[Segment]]] = []
    for seg in segments:
        if runs and runs[-1][0] == seg.op:
            runs[-1][1].append(seg)
        else:
            runs.append((seg.op, [seg]))
    pieces: list[tuple[str, str, str, str]] = []  # (lead, op, core Markdown, trail)
    for op, segs in runs:
        if segs[0].target:
            segs = [Segment(segs[0].op, " ", None), *segs]
        raw = "".join(s.text for s in segs)
        if not raw.strip() and not any(s.target for s in segs):
            pieces.append(("" if op == "delete" else raw, "equal", "", ""))
            continue
        lead = " " if raw[:1].isspace() else ""
        trail = " " if raw[-1:].isspace() else ""
        core = "".join(_inline(s) for s in segs).strip()
        pieces.append((lead, op, core, trail))
    out: list[str] = []
    for index, (lead, op, core, trail) in enumerate(pieces):
        out.append(" " if lead.strip() == "" and lead else lead)
        if op == "equal":
            out.append(core)
        else:
            before = "".join(out)[-1:]
            after = ""
            for next_lead, _, next_core, _ in pieces[index + 1:]:
                if trail or next_lead:
                    after = " "
                    break
                if next_core:
                    after = next_core[0]
                    break
            marker = "**" if op == "insert" else "~~"
            if _flanks(before, core, after):
                out.append(f"{marker}{core}{marker}")
            else:
                tag = "ins" if op == "insert" else "del"
                out.append(f"<{tag}>{core}</{tag}>")
        out.append(trail)
    return re.sub(r"[ \t\n]{2,}", " ", "".join(out)).strip()


def clause_markdown(clause: ClauseView, level: int) -> list[str]:
    section = f" in _{escape(clause.section)}_" if clause.section else ""
    out = [f"{'#' * level} {clause.kind}{section}", ""]
    for flag in clause.flags:
        out.append(f"> **{flag.category}** ({flag.severity}, {flag.what}, `{flag.rule}`): “{escape(flag.evidence)}”")
        if flag.summary:
            out.append(f"> {escape(flag.summary)}")
        out.append(">")
    if clause.flags:
        out.append("")
    out.append(segments_markdown(clause.segments))
    out.append("")
    return out


def diff_markdown(view: DiffView, *, level: int = 2) -> str:
    h = "#" * level
    out = [f"{h} {escape(view.title)}", ""]
    out.append(f"- {escape(view.dates_line)}")
    out.append(f"- substantive: {'yes' if view.substantive else 'no'} ({view.counts_line})")
    for signal in view.signals:
        out.append(f"- **{escape(signal.label)}**: {escape(signal.message)}")
    out.append("")
    for clause in view.clauses:
        out.extend(clause_markdown(clause, level + 1))
    return "\n".join(out).rstrip() + "\n"


def report_markdown(views: Sequence[DiffView]) -> str:
    if not views:
        return "# Privacy monitor report\n\nNo changes to review.\n"
    out = ["# Privacy monitor report", "", "| change | document | detected | flags |", "|---|---|---|---|"]
    for view in views:
        out.append(f"| #{view.id} ({view.versions}) | {escape(view.title)} | {view.detected} | {len(view.flags)} |")
    out.append("")
    flagged = sum(1 for v in views if v.flags)
    out.append(f"{plural(len(views), 'change')}, {flagged} flagged.")
    out.append("")
    for view in views:
        out.append(diff_markdown(_titled(view)))
    return "\n".join(out)


def _titled(view: DiffView) -> DiffView:
    from dataclasses import replace

    return replace(view, title=f"#{view.id} {view.title} ({view.versions}, detected {view.detected_at[:10]})")
