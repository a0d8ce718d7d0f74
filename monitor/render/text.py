"""The plain-text and terminal writer. One `rich.text.Text` per report carries the words,
the wdiff marks ({+inserted+}, [-deleted-]) and the styles; written to a file it is the
marks only, to a terminal it is coloured too (underline and strike-through as well, so
nothing relies on colour alone). `rich` honours NO_COLOR and the terminal's abilities."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

from .view import ClauseView, DiffView, Segment, isolate, plural

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x9b]")

STYLES = {
    "insert": "green underline",
    "delete": "red strike",
    "title": "bold",
    "flag": "bold yellow",
    "dim": "dim",
}
FLAG_STYLES = {"high": "bold red", "medium": "bold yellow", "low": "bold"}  # the severity is also written out


def clean(text: str) -> str:
    """Captured text never carries terminal control sequences to the screen, and direction
    overrides stay inside it (isolated), so they cannot reorder what follows."""
    return isolate(_CONTROL.sub("", text))


def marked(op: str, text: str) -> str:
    """wdiff marks around the words; whitespace stays outside, empty marks are never written."""
    core = text.strip()
    if op == "equal" or not core:
        return text if op != "delete" else (" " if text and not core else "")
    lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()):]
    return f"{lead}{{+{core}+}}{trail}" if op == "insert" else f"{lead}[-{core}-]{trail}"


def segment_runs(segments: Sequence[Segment]) -> list[tuple[str, str]]:
    """(op, text) runs: neighbours with the same op are one run whatever their links, so an
    insertion reads `{+here and learn more+}`, not `{+here+}{+ and learn more+}`."""
    runs: list[tuple[str, str]] = []
    for seg in segments:
        if runs and runs[-1][0] == seg.op:
            runs[-1] = (seg.op, runs[-1][1] + seg.text)
        else:
            runs.append((seg.op, seg.text))
    return runs


def clause_body(clause: ClauseView, *, marks: bool = True) -> Text:
    """The clause's words with marks (and styles); `marks=False` leaves an added or removed
    clause unmarked, as the email does where the heading already says so."""
    body = Text()
    for op, text in segment_runs(clause.segments):
        text = clean(text).replace("\n", " ")
        if clause.kind not in ("added", "removed", "modified"):
            body.append(text, STYLES["dim"])
        elif not marks and clause.whole:
            body.append(text)
        else:
            body.append(marked(op, text), STYLES.get(op, ""))
    return body


def clause_text(clause: ClauseView) -> Text:
    out = Text()
    section = f" in “{clean(clause.section)}”" if clause.section else ""
    label = clause.kind + (f" (cosmetic: {clause.reason})" if clause.cosmetic else "")
    out.append(f"  ~ {label}{section}\n", STYLES["title"])
    for flag in clause.flags:
        style = FLAG_STYLES.get(flag.severity, STYLES["flag"])
        out.append(f"    ⚑ {flag.category} ({flag.severity}, {flag.what}) {flag.rule}: “{clean(flag.evidence)}”\n", style)
        if flag.summary:
            out.append(f"      {clean(flag.summary)}\n", style)
    out.append("    ")
    out.append(clause_body(clause))
    out.append("\n")
    return out


def diff_text(view: DiffView, *, show_cosmetic: bool = False) -> Text:
    """One change: its header, signals, flagged clauses first, then the others."""
    out = Text()
    out.append(clean(view.title) + "\n", STYLES["title"])
    out.append(f"  {view.dates_line}; substantive: {'yes' if view.substantive else 'no'}; {view.counts_line}\n")
    for signal in view.signals:
        out.append(f"  ! {clean(signal.label)}: {clean(signal.message)}\n", STYLES["flag"])
    for clause in view.clauses:
        out.append(clause_text(clause))
    if show_cosmetic:
        for clause in view.cosmetic:
            out.append(clause_text(clause))
    elif view.cosmetic:
        n = len(view.cosmetic)
        out.append(f"  ({plural(n, 'cosmetic change')} not shown; --cosmetic shows them)\n", STYLES["dim"])
    return out


def report_heading(view: DiffView) -> str:
    """'#14 v14→v15  LinkedIn · Privacy Policy  detected 2024-09-19 10:00': one numbering,
    the change id with its version pair."""
    head = f"#{view.id} {view.versions}  {view.title}  detected {view.detected}"
    if view.provenance != "live":
        head += f"  (imported: {view.provenance}, observed {view.observed_at[:10]})"
    return head


def report_text(views: Sequence[DiffView]) -> Text:
    if not views:
        return Text("No changes to review.\n")
    out = Text()
    for view in views:
        out.append(diff_text(_retitled(view, report_heading(view))))
        out.append("\n")
    flagged = sum(1 for v in views if v.flags)
    out.append(f"{plural(len(views), 'change')}, {flagged} flagged. Full detail: monitor show ID\n")
    return out


def _retitled(view: DiffView, title: str) -> DiffView:
    from dataclasses import replace

    return replace(view, title=title)


def render(text: Text, *, color: bool) -> str:
    """Plain marks for files and pipes; coloured by rich for a terminal."""
    if not color:
        return text.plain
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, soft_wrap=True, highlight=False).print(text, end="")
    return buffer.getvalue()
