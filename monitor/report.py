"""Reviewing changes: selecting them from the store and rendering them as text (coloured on
a terminal), JSON, Markdown, or one self-contained HTML page.

Everything captured from a page is data, never markup: HTML output escapes it, and the page
carries a Content-Security-Policy that allows only its own inline script (by hash), so even a
bug in escaping could not run a captured script or load anything from the network.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .render import markdown as markdown_writer
from .render import text as text_writer
from .render.view import DiffView

if TYPE_CHECKING:
    from .store import Store

SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


# ----------------------------------------------------------------------------- selection


@dataclass
class ReportQuery:
    since: str | None = None  # ISO timestamp; None = everything
    targets: tuple[str, ...] = ()
    flagged: bool = False
    categories: tuple[str, ...] = ()
    include_cosmetic: bool = False
    limit: int | None = None


def parse_since(text: str, *, now: datetime | None = None) -> str:
    """'7d', '12h', '2w' (ago) or a date/time ('2024-09-01', '2024-09-01T12:00') to a timestamp."""
    from .store import to_timestamp

    now = now or datetime.now(timezone.utc)
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text)
    if match:
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        return to_timestamp(now - timedelta(**{unit: int(match.group(1))}))
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--since {text!r}: use a duration like 7d, 12h, 2w or a date like 2024-09-01") from None
    return to_timestamp(when)


def query_changes(store: Store, query: ReportQuery, *, diff: bool = True, html: bool = False) -> list[dict[str, Any]]:
    """Change rows (diff JSON still as text), newest first and flagged first within a day.

    Filters on the summary columns, which the indexes on detected_at and target serve;
    nothing is parsed here, and only the large columns asked for are read (`diff`, the JSON;
    `html`, the pre-rendered clauses), so a report over thousands of changes stays fast."""
    # A change re-evaluated by `monitor reflag` is reported with its latest evaluation (e); the
    # change row keeps what was detected and alerted at the time.
    columns = [
        "c.id", "c.target_id", "c.old_version_id", "c.new_version_id", "c.old_seq", "c.new_seq", "c.detected_at",
        "c.observed_at", "coalesce(e.substantive, c.substantive) as substantive",
        "coalesce(e.n_changes, c.n_changes) as n_changes", "coalesce(e.n_flags, c.n_flags) as n_flags",
        "case when e.id is null then c.categories else e.categories end as categories",
        "case when e.id is null then c.max_severity else e.max_severity end as max_severity", "c.signals",
        "coalesce(e.summary, c.summary) as summary", "c.reviewed_at",
        "case when e.id is null then c.html_version end as html_version", "e.id as evaluation_id",
        "e.evaluated_at as evaluated_at",
    ]
    where = ["c.superseded_by is null"]
    params: list[Any] = []
    if query.since:
        where.append("c.detected_at >= ?")
        params.append(query.since)
    if query.targets:
        where.append(f"c.target_id in ({', '.join('?' for _ in query.targets)})")
        params.extend(query.targets)
    if query.flagged:
        where.append("coalesce(e.n_flags, c.n_flags) > 0")
    if query.categories:
        categories = "(case when e.id is null then c.categories else e.categories end)"
        where.append("(" + " or ".join(f"(',' || {categories} || ',') like ?" for _ in query.categories) + ")")
        params.extend(f"%,{category},%" for category in query.categories)
    if not query.include_cosmetic:
        where.append("coalesce(e.substantive, c.substantive) = 1")
    sql = f"""
        select {", ".join(columns)}, t.service, t.document, t.url,
               o.effective_date as old_effective, n.effective_date as new_effective,
               n.provenance as provenance
        from changes c
        join targets t on t.id = c.target_id
        join versions o on o.id = c.old_version_id
        join versions n on n.id = c.new_version_id
        left join evaluations e on e.id = (select max(id) from evaluations where change_id = c.id)
        where {' and '.join(where)}
        order by substr(c.detected_at, 1, 10) desc, (coalesce(e.n_flags, c.n_flags) > 0) desc, c.observed_at desc, c.id desc
    """  # noqa: S608 - only placeholders are interpolated
    if query.limit:
        sql += f" limit {int(query.limit)}"
    rows = list(store.db.query(sql, params))
    # The large columns are read by primary key after the sort, so SQLite's sorter never
    # carries hundreds of megabytes of diff text around.
    wanted = [name for name, keep in (("diff", diff), ("html", html)) if keep]
    if wanted and rows:
        by_id = {row["id"]: row for row in rows}
        ids = list(by_id)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            for found in store.db.execute(f"select id, {', '.join(wanted)} from changes where id in ({marks})", chunk):  # noqa: S608
                by_id[found[0]].update(zip(wanted, found[1:]))
        evaluated = {row["evaluation_id"]: row for row in rows if row.get("evaluation_id")}
        if evaluated and "diff" in wanted:
            for start in range(0, len(evaluated), 500):
                chunk = list(evaluated)[start : start + 500]
                marks = ", ".join("?" for _ in chunk)
                for eid, text in store.db.execute(f"select id, diff from evaluations where id in ({marks})", chunk):  # noqa: S608
                    evaluated[eid]["diff"] = text
        for row in evaluated.values():
            row["html"] = None  # the cached clause HTML shows the old flags: render from the evaluation
    return rows


def select_changes(store: Store, query: ReportQuery) -> list[dict[str, Any]]:
    """Report entries (parsed), in report order."""
    return [change_entry(row) for row in query_changes(store, query)]


def _entry_meta(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "target": row["target_id"],
        "service": row["service"],
        "document": row["document"],
        "url": row["url"],
        "detected_at": row["detected_at"],
        "observed_at": row["observed_at"],
        "old_version": row["old_seq"],
        "new_version": row["new_seq"],
        "provenance": row.get("provenance") or "live",
        "reviewed_at": row.get("reviewed_at"),
        "summary": row.get("summary"),
        "evaluated_at": row.get("evaluated_at"),
    }


def change_entry(row: dict[str, Any]) -> dict[str, Any]:
    """One change in the report JSON contract (every field of the `monitor diff` JSON too)."""
    entry = _entry_meta(row)
    entry.update(json.loads(row["diff"]))
    return entry


def report_json(rows: Sequence[dict[str, Any]], *, since: str | None) -> Iterator[str]:
    """The JSON report in pieces, each stored diff JSON spliced after its metadata: the
    document `json.dumps` would give for change_entry(), without parsing or re-encoding
    every diff, and written as it is produced rather than built whole in memory."""
    yield '{"since": ' + json.dumps(since) + ', "changes": ['
    for index, row in enumerate(rows):
        meta = json.dumps(_entry_meta(row), ensure_ascii=False)
        diff = row["diff"]
        yield ("" if index == 0 else ",\n") + meta[:-1] + (", " if len(diff) > 2 else "")
        yield diff[1:]
    yield "]}\n"


def mark_reviewed(store: Store, entries: Sequence[dict[str, Any]]) -> None:
    from .store import utcnow

    now = utcnow()
    with store.write():
        for entry in entries:
            store.db["changes"].update(entry["id"], {"reviewed_at": now})
        store.db["meta"].upsert({"key": "last_review_at", "value": now}, pk="key")


# ----------------------------------------------------------------------------- helpers


def _flagged_first(changes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(change: dict[str, Any]) -> tuple[int, int]:
        flags = change.get("flags") or []
        best = min((SEVERITY_ORDER.get(f["severity"], 3) for f in flags), default=9)
        return (0 if flags else 1, best)

    return sorted(changes, key=key)


def _title(entry: dict[str, Any]) -> str:
    if entry.get("service"):
        return f"{entry['service']} · {str(entry.get('document', '')).replace('-', ' ').title()}"
    return f"{entry['old']['source']} → {entry['new']['source']}"


_MD_LINK = re.compile(r"\[((?:[^\[\]\\]|\\.)*)\]\(([^()\s]*)\)")


def readable(text: str) -> str:
    """Clause Markdown as a reader sees it: link text kept, targets dropped."""
    return _MD_LINK.sub(lambda m: m.group(1), text).replace("\\[", "[").replace("\\]", "]")


_LINK_TAIL = re.compile(r"\]\(([^()\s]*)\)")
_LINK_HEAD = re.compile(r"(?<!\\)\[")


def span_readable(text: str, op: str) -> str:
    """One word-diff span as a reader sees it. A span can hold part of a link (the diff
    works on words): a lone '[' is dropped, and a link target is dropped where it is
    unchanged but shown where it was inserted or deleted, so a changed target is visible."""
    text = _MD_LINK.sub(lambda m: m.group(1), text)
    if op == "equal":
        text = _LINK_TAIL.sub("", text)
    else:
        text = _LINK_TAIL.sub(lambda m: f" (link: {m.group(1)})", text)
    return _LINK_HEAD.sub("", text).replace("\\[", "[").replace("\\]", "]")


def _counts_line(changes: Sequence[dict[str, Any]]) -> str:
    counts = Counter(c["kind"] for c in changes if not c["cosmetic"])
    cosmetic = sum(1 for c in changes if c["cosmetic"])
    parts = [f"{n} {kind}" for kind, n in counts.most_common()]
    if cosmetic:
        parts.append(f"{cosmetic} cosmetic")
    return ", ".join(parts) or "no changes"


def _dates_line(diff: dict[str, Any]) -> str:
    old, new = diff["old"].get("effective_date"), diff["new"].get("effective_date")
    if not old and not new:
        return "stated date: none found"
    if old == new:
        return f"stated date: {new} (unchanged)"
    return f"stated date: {old or '?'} → {new or '?'}"


# ----------------------------------------------------------------------------- text and Markdown


def views_of(entries: Sequence[dict[str, Any]]) -> list[DiffView]:
    """Report entries (change_entry) as the one view every writer reads."""
    return [DiffView.of(entry, entry) for entry in entries]


def render_report_text(entries: Sequence[dict[str, Any]], *, color: bool = False) -> str:
    return text_writer.render(text_writer.report_text(views_of(entries)), color=color)


def render_diff_text(diff: dict[str, Any], *, color: bool = False, title: str | None = None, show_cosmetic: bool = False) -> str:
    """One diff for the terminal: flagged clauses first, then the other changes."""
    view = DiffView.of(diff, title=title)
    return text_writer.render(text_writer.diff_text(view, show_cosmetic=show_cosmetic), color=color)


def render_report_markdown(entries: Sequence[dict[str, Any]]) -> str:
    return markdown_writer.report_markdown(views_of(entries))


def render_diff_markdown(diff: dict[str, Any], *, title: str | None = None, level: int = 2) -> str:
    return markdown_writer.diff_markdown(DiffView.of(diff, title=title), level=level)


def _what(flag: dict[str, Any]) -> str:
    """What happened to the flagged statement ("added", "qualifier-removed"); flags stored
    before statements were compared only say on which side their words were."""
    return str(flag.get("change") or flag["side"])


# ----------------------------------------------------------------------------- HTML

_CSS = """
:root{--ins:#d7f5dd;--ins-fg:#0b5b1e;--del:#fbdcdc;--del-fg:#8a1111;--flag:#fff3c4;--line:#d8dde3;--muted:#5d6b78}
*{box-sizing:border-box}body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b2631;background:#f6f8fa}
header,main{max-width:1100px;margin:0 auto;padding:16px 24px}header h1{margin:8px 0 0;font-size:22px}
.muted{color:var(--muted)}table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:13px;color:var(--muted);font-weight:600}.controls{display:flex;gap:16px;align-items:center;margin:12px 0;flex-wrap:wrap}
.change{background:#fff;border:1px solid var(--line);border-radius:8px;margin:16px 0;padding:12px 16px}.change h2{font-size:17px;margin:0 0 4px}
.meta{font-size:13px;color:var(--muted)}.signal{display:inline-block;background:#ffe1b3;border-radius:4px;padding:1px 6px;margin:4px 6px 0 0;font-size:13px}
.clause{border-left:4px solid var(--line);margin:10px 0;padding:4px 12px}.clause.flagged{border-left-color:#e0a800;background:var(--flag)}
.clause .where{font-size:12px;color:var(--muted)}.tag{display:inline-block;font-size:12px;font-weight:600;border-radius:4px;padding:1px 6px;margin-right:6px;background:#1b2631;color:#fff}
.tag.high{background:#b00020}.tag.medium{background:#b35c00}.tag.low{background:#44546a}.evidence{font-size:14px;margin:2px 0}
ins{background:var(--ins);color:var(--ins-fg);text-decoration:none}del{background:var(--del);color:var(--del-fg)}
.side{display:grid;grid-template-columns:1fr 1fr;gap:12px}.side>div{background:#fafbfc;padding:6px;border-radius:4px}
.hidden{display:none}svg text{font:11px system-ui,sans-serif;fill:#44546a}.timeline{background:#fff;border:1px solid var(--line);border-radius:8px;padding:8px 12px}
.count{font-variant-numeric:tabular-nums}
"""

_SCRIPT = """
(function(){
  var only=document.getElementById('only-flagged'), cat=document.getElementById('category'), tgt=document.getElementById('target');
  function apply(){
    var shown=0;
    document.querySelectorAll('article.change').forEach(function(a){
      var ok=(!only.checked||a.dataset.flagged==='1')&&(!cat.value||(' '+a.dataset.categories+' ').indexOf(' '+cat.value+' ')>=0)&&(!tgt.value||a.dataset.target===tgt.value);
      a.classList.toggle('hidden',!ok); if(ok){shown++;}
    });
    document.getElementById('shown').textContent=shown;
  }
  [only,cat,tgt].forEach(function(e){e.addEventListener('change',apply);});
  apply();
})();
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode()
    return f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"


def _clause_html(change: dict[str, Any], *, side_by_side: bool = False) -> str:
    flags = change.get("flags") or []
    classes = "clause flagged" if flags else "clause"
    cats = " ".join(sorted({f["category"] for f in flags}))
    parts = [f'<div class="{classes}" data-kind="{_e(change["kind"])}" data-categories="{_e(cats)}">']
    where = change["kind"] + (f" · cosmetic ({change['reason']})" if change["cosmetic"] else "")
    if change.get("section"):
        where += f" · {change['section']}"
    parts.append(f'<div class="where">{_e(where)}</div>')
    for flag in flags:
        parts.append(
            f'<div class="evidence"><span class="tag {_e(flag["severity"])}">{_e(flag["category"])}</span>'
            f'“{_e(flag["evidence"])}” <span class="muted">({_e(_what(flag))}, {_e(flag["rule"])})</span>'
            + (f'<br>{_e(flag["summary"])}' if flag.get("summary") else "")
            + "</div>"
        )
    if change["kind"] == "modified" and side_by_side:
        old = "".join(f"<del>{_e(span_readable(s['text'], 'delete'))}</del>" if s["op"] == "delete" else _e(span_readable(s["text"], "equal")) for s in change["spans"] if s["op"] != "insert")
        new = "".join(f"<ins>{_e(span_readable(s['text'], 'insert'))}</ins>" if s["op"] == "insert" else _e(span_readable(s["text"], "equal")) for s in change["spans"] if s["op"] != "delete")
        parts.append(f'<div class="side"><div>{old}</div><div>{new}</div></div>')
    elif change["kind"] == "modified":
        body = "".join(
            f"<ins>{_e(span_readable(s['text'], 'insert'))}</ins>" if s["op"] == "insert"
            else f"<del>{_e(span_readable(s['text'], 'delete'))}</del>" if s["op"] == "delete"
            else _e(span_readable(s["text"], "equal"))
            for s in change["spans"]
        )
        parts.append(f"<p>{body}</p>")
    elif change["kind"] == "added":
        parts.append(f"<p><ins>{_e(readable(change['new'] or ''))}</ins></p>")
    elif change["kind"] == "removed":
        parts.append(f"<p><del>{_e(readable(change['old'] or ''))}</del></p>")
    else:
        parts.append(f'<p class="muted">{_e(readable(change.get("new") or ""))}</p>')
    parts.append("</div>")
    return "".join(parts)


RENDER_VERSION = 2  # bump when clauses_html changes, so cached fragments are re-rendered


def clauses_html(diff: dict[str, Any], *, side_by_side: bool = False) -> str:
    """The changed clauses of one diff as HTML, flagged first, cosmetic ones counted.

    Stored with each change when it is recorded (changes.html), so a report over thousands
    of changes assembles fragments instead of re-rendering every diff."""
    changes = [c for c in diff["changes"] if not c["cosmetic"]]
    out = [_clause_html(change, side_by_side=side_by_side) for change in _flagged_first(changes)]
    cosmetic = len(diff["changes"]) - len(changes)
    if cosmetic:
        out.append(f'<p class="muted">{cosmetic} cosmetic change{"s" if cosmetic != 1 else ""} (whitespace, typography, moves, date line) not shown.</p>')
    return "\n".join(out)


@dataclass
class _Article:
    """What an article's header shows; built from a change row or a bare diff."""

    anchor: str
    heading: str
    target: str
    n_flags: int
    categories: str
    meta: list[str]
    signals: list[dict[str, Any]]


def _article_html(article: _Article, fragment: str) -> str:
    out = [
        f'<article class="change" id="{_e(article.anchor)}" data-flagged="{1 if article.n_flags else 0}" '
        f'data-categories="{_e(article.categories)}" data-target="{_e(article.target)}">',
        f"<h2>{article.heading}</h2>",
        f'<div class="meta">{" · ".join(article.meta)}</div>',
    ]
    for signal in article.signals:
        out.append(f'<span class="signal">{_e(signal["kind"])}: {_e(signal["message"])}</span>')
    out.append(fragment)
    out.append("</article>")
    return "\n".join(out)


def _row_article(row: dict[str, Any]) -> _Article:
    title = _title({"service": row["service"], "document": row["document"]})
    meta = [f"detected {_e(row['detected_at'][:16].replace('T', ' '))} UTC"]
    if row.get("provenance") and row["provenance"] != "live":
        meta.append(f"imported from {_e(row['provenance'])}, observed {_e(row['observed_at'][:10])}")
    meta.append(_e(_dates_line({"old": {"effective_date": row.get("old_effective")}, "new": {"effective_date": row.get("new_effective")}})))
    meta.append(_e(row.get("summary") or ""))
    if row["url"]:
        meta.append(f'<a href="{_e(row["url"])}" rel="noreferrer noopener">{_e(row["url"])}</a>')
    return _Article(
        anchor=f"change-{row['id']}",
        heading=f"#{_e(row['id'])} {_e(title)} <span class=\"muted\">v{_e(row['old_seq'])} → v{_e(row['new_seq'])}</span>"
        + (f' <span class="count flag-count">{row["n_flags"]}</span> flag{"s" if row["n_flags"] != 1 else ""}' if row["n_flags"] else ""),
        target=row["target_id"],
        n_flags=row["n_flags"] or 0,
        categories=(row.get("categories") or "").replace(",", " "),
        meta=meta,
        signals=json.loads(row.get("signals") or "[]"),
    )


def _diff_article(diff: dict[str, Any], title: str) -> _Article:
    flags = [f for c in diff["changes"] if not c["cosmetic"] for f in c.get("flags") or []]
    return _Article(
        anchor="diff",
        heading=_e(title) + (f' <span class="count flag-count">{len(flags)}</span> flag{"s" if len(flags) != 1 else ""}' if flags else ""),
        target="",
        n_flags=len(flags),
        categories=" ".join(sorted({f["category"] for f in flags})),
        meta=[_e(_dates_line(diff)), _e(_counts_line(diff["changes"]))],
        signals=diff.get("signals") or [],
    )


def row_fragment(row: dict[str, Any], store: Store | None = None, *, side_by_side: bool = False) -> str:
    """The cached clause HTML of a change row, rendered afresh when missing or stale."""
    if not side_by_side and row.get("html") and row.get("html_version") == RENDER_VERSION:
        return str(row["html"])
    diff = row.get("diff")
    if diff is None and store is not None:
        diff = store.db.execute("select diff from changes where id = ?", [row["id"]]).fetchone()[0]
    return clauses_html(json.loads(diff), side_by_side=side_by_side)


def _timeline_svg(target_id: str, versions: Sequence[dict[str, Any]], flagged_versions: set[int]) -> str:
    """Versions of one target on a time axis: a dot per version, red when its change was flagged."""
    if not versions:
        return ""
    width, height, pad = 1000, 46, 30
    times = [datetime.fromisoformat(v["observed_at"].replace("Z", "+00:00")).timestamp() for v in versions]
    lo, hi = min(times), max(times)
    span = (hi - lo) or 1.0
    items = [f'<line x1="{pad}" y1="22" x2="{width - pad}" y2="22" stroke="#b8c2cc" stroke-width="2"/>']
    for version, t in zip(versions, times):
        x = pad + (width - 2 * pad) * (t - lo) / span
        color = "#b00020" if version["seq"] in flagged_versions else "#1b6ec2"
        label = f"v{version['seq']} {version['observed_at'][:10]}" + (f" (effective {version['effective_date']})" if version.get("effective_date") else "")
        items.append(f'<circle cx="{x:.1f}" cy="22" r="6" fill="{color}"><title>{_e(label)}</title></circle>')
    items.append(f'<text x="{pad}" y="42">{_e(versions[0]["observed_at"][:10])}</text>')
    items.append(f'<text x="{width - pad}" y="42" text-anchor="end">{_e(versions[-1]["observed_at"][:10])}</text>')
    return (
        f'<div class="timeline"><div class="muted">{_e(target_id)}: {len(versions)} version{"s" if len(versions) != 1 else ""}</div>'
        f'<svg viewBox="0 0 {width} {height}" width="100%" height="{height}" role="img" aria-label="{_e(target_id)} versions">{"".join(items)}</svg></div>'
    )


def _page_head(title: str, subtitle: str) -> str:
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_csp())}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><div class=\"muted\">{_e(subtitle)}</div></header><main>"
    )


def _page_tail(with_script: bool) -> str:
    script = f"<script>{_SCRIPT}</script>" if with_script else ""
    return f"</main>{script}</body></html>\n"


def render_html_page(body: str, *, title: str, subtitle: str = "", with_script: bool = True) -> str:
    return _page_head(title, subtitle) + body + _page_tail(with_script)


def render_diff_html(diff: dict[str, Any], *, title: str | None = None, side_by_side: bool = False) -> str:
    heading = title or _title(diff)
    body = _article_html(_diff_article(diff, heading), clauses_html(diff, side_by_side=side_by_side))
    return render_html_page(body, title=heading, subtitle="monitor diff", with_script=False)


def render_report_html(rows: Sequence[dict[str, Any]], store: Store | None = None, *, side_by_side: bool = False, generated: str | None = None) -> str:
    """The whole report as one self-contained page (see report_html)."""
    return "".join(report_html(rows, store, side_by_side=side_by_side, generated=generated))


def report_html(rows: Sequence[dict[str, Any]], store: Store | None = None, *, side_by_side: bool = False, generated: str | None = None) -> Iterator[str]:
    """The report page in pieces: summary, timelines, filters, then one article per change.
    Takes change rows (query_changes) and needs no diff parsing when their clause HTML is
    cached."""
    from .store import utcnow

    by_target: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_target[row["target_id"]].append(row)
    categories = sorted({c for row in rows for c in (row.get("categories") or "").split(",") if c})
    flagged_total = sum(1 for row in rows if row["n_flags"])
    subtitle = f"{len(rows)} changes, {flagged_total} flagged · generated {generated or utcnow()[:16].replace('T', ' ')} UTC"
    yield _page_head("Privacy monitor report", subtitle)
    summary_rows = []
    for target_id, items in sorted(by_target.items()):
        flags = sum(r["n_flags"] or 0 for r in items)
        cats = sorted({c for r in items for c in (r.get("categories") or "").split(",") if c})
        summary_rows.append(
            f'<tr data-target="{_e(target_id)}"><td>{_e(_title(items[0]))}<div class="muted">{_e(target_id)}</div></td>'
            f'<td class="count changes-count">{len(items)}</td><td class="count flags-count">{flags}</td><td>{_e(", ".join(cats))}</td>'
            f'<td>{_e(items[0]["detected_at"][:10])}</td></tr>'
        )
    yield (
        '<section id="summary"><table><thead><tr><th>document</th><th>changes</th><th>flags</th><th>categories</th><th>latest</th></tr></thead>'
        f"<tbody>{''.join(summary_rows)}</tbody></table></section>"
    )
    if store is not None and by_target:
        timelines = []
        for target_id, items in sorted(by_target.items()):
            versions = list(store.db.query(
                "select seq, observed_at, effective_date from versions where target_id = ? order by observed_at, seq", [target_id]
            ))
            flagged = {r["new_seq"] for r in items if r["n_flags"]}
            timelines.append(_timeline_svg(target_id, versions, flagged))
        yield '<section id="timelines"><h2>Versions</h2>' + "".join(timelines) + "</section>"
    yield (
        '<div class="controls"><label><input type="checkbox" id="only-flagged"> flagged only</label>'
        '<label>category <select id="category"><option value="">all</option>'
        + "".join(f'<option value="{_e(c)}">{_e(c)}</option>' for c in categories)
        + '</select></label><label>document <select id="target"><option value="">all</option>'
        + "".join(f'<option value="{_e(t)}">{_e(t)}</option>' for t in sorted(by_target))
        + f'</select></label><span class="muted">showing <span id="shown">{len(rows)}</span> of {len(rows)}</span></div>'
    )
    if not rows:
        yield '<p class="muted">No changes to review.</p>'
    for row in rows:
        yield _article_html(_row_article(row), row_fragment(row, store, side_by_side=side_by_side)) + "\n"
    yield _page_tail(True)


# ----------------------------------------------------------------------------- history


def history_rows(store: Store, target_id: str) -> list[dict[str, Any]]:
    """Versions of a target in time order, with the change that produced each."""
    rows = list(store.db.query(
        """select v.seq, v.observed_at, v.effective_date, v.text_bytes, v.text_sha256, v.provenance,
                  v.reverted_to, c.id as change_id, c.n_changes, c.n_flags, c.categories, c.substantive
           from versions v left join changes c on c.new_version_id = v.id and c.superseded_by is null
           where v.target_id = ? order by v.observed_at, v.seq""",
        [target_id],
    ))
    return rows
