"""Writers of a service timeline (`monitor timeline`): plain text and one self-contained HTML
page (Jinja2, autoescaped; a Content-Security-Policy that allows no script and no request)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .jinja import environment

if TYPE_CHECKING:
    from ..service import Timeline

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def render_timeline_text(timeline: Timeline) -> str:
    docs = timeline.documents
    total = sum(d["versions"] for d in docs)
    lines = [f"{timeline.service}: {len(docs)} document(s), {total} version(s)"]
    width = max((len(d["target"]) for d in docs), default=10)
    for d in docs:
        span = f"{(d['first'] or '')[:10]} to {(d['last'] or '')[:10]}" if d["versions"] else "nothing stored yet"
        lines.append(f"  {d['target']:<{width}}  {d['document']:<14} {d['versions']:>3} version(s)  {span}  {d['url']}")
    lines.append("")
    stated_before: dict[str, str | None] = {}
    for event in timeline.events:
        head = f"{event.observed_at[:10]}  {event.target_id:<{width}}  v{event.seq:<3}"
        moved = event.effective_date and stated_before.get(event.target_id) != event.effective_date
        stated = f" (stated date {event.effective_date})" if moved else ""  # shown when it moves
        stated_before[event.target_id] = event.effective_date
        if event.change is None:
            lines.append(f"{head} first version{stated}")
        else:
            change = event.change
            kind = "" if change["substantive"] else " (cosmetic)"
            lines.append(f"{head} change #{change['id']}{kind}: {change['summary'] or ''}{stated}")
            for flag in change["flags"]:
                lines.append(f"{'':14}⚑ {flag['category']} ({flag['severity']}, {flag['change']}): {flag['summary']}")
        for signal in event.signals:
            lines.append(f"{'':14}! {signal.kind}: {signal.message}")
    if timeline.signals:
        lines.append("")
        lines.append("signals:")
        for signal in timeline.signals:
            lines.append(f"  ! {signal.kind} ({signal.category}): {signal.message}")
    else:
        lines.append("")
        lines.append("signals: none (no statement said by one side of the service long before the other)")
    return "\n".join(lines) + "\n"


def render_timeline_html(timeline: Timeline) -> str:
    return environment().get_template("timeline.html.j2").render(t=timeline, csp=CSP)
