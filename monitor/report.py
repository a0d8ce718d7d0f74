"""Reviewing changes: selecting them from the store (filters, review state, history) and
handing them to the writers of monitor.render as text (coloured on a terminal), JSON,
Markdown, or one self-contained HTML page. JSON is spliced here from the stored diffs, so
its contract is exactly the `monitor diff` JSON plus the change's metadata."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .render import markdown as markdown_writer
from .render import text as text_writer
from .render.html import RENDER_VERSION, clauses_html, render_diff_html, render_report_html, report_html, row_fragment
from .render.view import DiffView, entry_title

if TYPE_CHECKING:
    from .store import Store

# ----------------------------------------------------------------------------- selection


@dataclass
class ReportQuery:
    since: str | None = None  # ISO timestamp; None = everything
    targets: tuple[str, ...] = ()
    flagged: bool = False
    categories: tuple[str, ...] = ()
    include_cosmetic: bool = False
    limit: int | None = None
    unreviewed: bool = False  # only changes not yet marked reviewed (the default report)


def parse_since(text: str, *, now: datetime | None = None) -> str:
    """'7d', '12h', '2w' (ago) or a date/time ('2024-09-01', '2024-09-01T12:00') to a timestamp.
    Durations are read by the one duration parser (targets.parse_duration); a unit is required
    here, so '2024' is never 2024 seconds."""
    from .store import to_timestamp
    from .targets import parse_duration

    now = now or datetime.now(timezone.utc)
    if re.fullmatch(r"\s*\d+(?:\.\d+)?\s*(?:s|m|h|d|w)\s*", text):
        return to_timestamp(now - timedelta(seconds=parse_duration(text)))
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
    if query.unreviewed:
        where.append("c.reviewed_at is null")
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


def change_entry(row: dict[str, Any], signals: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """One change in the report JSON contract (every field of the `monitor diff` JSON too).
    `signals`: those found beside the change's own diff (policy-lag, policy-silent:
    monitor.service.report_signals), appended to its `signals`."""
    entry = _entry_meta(row)
    entry.update(json.loads(row["diff"]))
    if signals:
        entry["signals"] = [*(entry.get("signals") or []), *signals]
    return entry


def change_entries(rows: Sequence[dict[str, Any]], signals: dict[int, list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """Report entries of change rows, each with its cross-document signals (if any)."""
    signals = signals or {}
    return [change_entry(row, signals.get(row["id"], ())) for row in rows]


def report_json(rows: Sequence[dict[str, Any]], *, since: str | None, signals: dict[int, list[dict[str, Any]]] | None = None) -> Iterator[str]:
    """The JSON report in pieces, each stored diff JSON spliced after its metadata: the
    document `json.dumps` would give for change_entry(), without parsing or re-encoding
    every diff, and written as it is produced rather than built whole in memory. Only a
    change with cross-document `signals` (change id -> entries) has its diff re-encoded."""
    signals = signals or {}
    yield '{"since": ' + json.dumps(since) + ', "changes": ['
    for index, row in enumerate(rows):
        meta = json.dumps(_entry_meta(row), ensure_ascii=False)
        diff = row["diff"]
        if row["id"] in signals:
            parsed = json.loads(diff)
            parsed["signals"] = [*(parsed.get("signals") or []), *signals[row["id"]]]
            diff = json.dumps(parsed, ensure_ascii=False)
        yield ("" if index == 0 else ",\n") + meta[:-1] + (", " if len(diff) > 2 else "")
        yield diff[1:]
    yield "]}\n"


def mark_reviewed(store: Store, entries: Sequence[dict[str, Any]]) -> int:
    """Mark exactly these changes reviewed (those a report showed); returns how many were
    not marked before. Changes the filters left out, or detected since, stay to review."""
    from .store import utcnow

    now = utcnow()
    marked = 0
    with store.write():
        for entry in entries:
            marked += store.db.execute("update changes set reviewed_at = ? where id = ? and reviewed_at is null", [now, entry["id"]]).rowcount
        store.db["meta"].upsert({"key": "last_review_at", "value": now}, pk="key")
    return marked


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


__all__ = [
    "RENDER_VERSION", "ReportQuery", "change_entries", "change_entry", "clauses_html", "entry_title", "history_rows", "mark_reviewed",
    "parse_since", "query_changes", "render_diff_html", "render_diff_markdown", "render_diff_text", "render_report_html",
    "render_report_markdown", "render_report_text", "report_html", "report_json", "row_fragment", "select_changes",
]


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
