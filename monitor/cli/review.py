"""Review commands: report, history, show."""

from __future__ import annotations

import json
from collections.abc import Iterable

import click

from .base import State, cli, config_option, output_option, pass_state, table_console, use_color, write_output


@cli.command()
@config_option
@click.option("--since", metavar="WHEN", help="7d, 12h, 2w, or a date (2024-09-01). Default: the changes not yet marked reviewed.")
@click.option("--all", "everything", is_flag=True, help="Every change ever recorded.")
@click.option("--target", "targets", multiple=True, metavar="TARGET_ID", help="Only this target (repeatable).")
@click.option("--flagged", is_flag=True, help="Only changes with at least one flag.")
@click.option("--category", "categories", multiple=True, metavar="NAME", help="Only changes flagged with this category (ai-training, ai-third-party, opt-out-scope...).")
@click.option("--cosmetic", is_flag=True, help="Include changes that are cosmetic only.")
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "json", "markdown", "html", "atom"]), default="text", show_default=True)
@click.option("--side-by-side", is_flag=True, help="HTML: old and new text next to each other.")
@click.option("--mark-reviewed", is_flag=True, help="Mark the changes this report shows as reviewed (only those the filters selected); the next report leaves them out.")
@output_option
@pass_state
def report(state: State, since: str | None, everything: bool, targets: tuple[str, ...], flagged: bool, categories: tuple[str, ...],
           cosmetic: bool, fmt: str, side_by_side: bool, mark_reviewed: bool, output: str | None) -> int:
    """Review the changes since the last review: newest first, flagged first within a day.

    \b
    Examples:
      monitor report                                  what changed since the last review
      monitor report --since 7d --flagged             flagged changes of the last week
      monitor report --category ai-training --all     every AI-training change ever seen
      monitor report --format html -o report.html     one self-contained page to share
      monitor report --format json | jq '.changes[].id'
      monitor report --all --format atom -o changes.atom   an Atom feed
      monitor report --mark-reviewed                  read them, then start afresh

    Each change shows the document, when it was detected, the stated effective dates,
    signals (silent-update, reverted; and for a service with a help page, policy-lag on
    the later of two documents to say a statement, policy-silent on the help page's latest
    change while no policy says it: see `monitor timeline`), flags with the words that
    triggered them, then the word-level diff of the changed clauses.
    """
    from ..report import ReportQuery, change_entries, parse_since, query_changes, render_report_markdown, report_html, render_report_text, report_json
    from ..service import report_signals
    from ..report import mark_reviewed as do_mark

    from ..errors import InputError
    from ..flags import CATEGORIES

    config = state.config()
    for target_id in targets:
        config.target(target_id)  # unknown ids are a usage error, not an empty report
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise InputError(f"unknown category {unknown[0]!r}; the categories are {', '.join(CATEGORIES)}")
    with state.store() as store:
        start = parse_since(since) if since else None
        query = ReportQuery(since=start, targets=targets, flagged=flagged, categories=categories, include_cosmetic=cosmetic,
                            unreviewed=not since and not everything)
        rows = query_changes(store, query, diff=fmt != "html" or side_by_side, html=fmt == "html")
        lag = report_signals(store, config, rows)  # policy-lag, policy-silent: once per service with a help page
        if fmt == "json":
            chunks: Iterable[str] = report_json(rows, since=start, signals=lag)
        elif fmt == "html":
            chunks = report_html(rows, store, side_by_side=side_by_side, signals=lag)
        elif fmt == "atom":
            from ..feeds import report_atom

            chunks = [report_atom(store, config, change_entries(rows, lag), targets)]
        elif fmt == "markdown":
            chunks = [render_report_markdown(change_entries(rows, lag))]
        else:
            chunks = [render_report_text(change_entries(rows, lag), color=output is None and use_color())]
        write_output(chunks, output, note=f" ({len(rows)} changes)")
        if mark_reviewed:
            marked = do_mark(store, rows)  # the rows read when the report started: nothing detected since
            click.echo(f"marked {marked} change{'s' if marked != 1 else ''} reviewed", err=True)
    return 0


@cli.command()
@config_option
@click.argument("target_id")
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_state
def history(state: State, target_id: str, fmt: str) -> int:
    """List the stored versions of a target, oldest first.

    \b
    Examples:
      monitor history linkedin-privacy
      monitor history linkedin-privacy --format json

    Columns: version number (use it as TARGET_ID@N), when it was observed, the date the
    document states, size, sha256 of the text, where it came from (live, wayback, ota),
    and the change that led to it (changed clauses, flags, change id for `monitor show`).
    """
    from ..report import history_rows

    state.config().target(target_id)
    with state.store() as store:
        rows = history_rows(store, target_id)
    if fmt == "json":
        click.echo(json.dumps({"target": target_id, "versions": rows}, indent=2))
        return 0
    if not rows:
        click.echo(f"{target_id}: no versions yet; run `monitor check {target_id}`")
        return 0
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("v", "observed (UTC)", "effective", "bytes", "sha256", "source", "changed", "flags", "change"):
        table.add_column(column)
    for r in rows:
        changed = "-" if r["change_id"] is None else (str(r["n_changes"]) if r["substantive"] else "cosmetic")
        if r["reverted_to"]:
            changed += f" (= v{r['reverted_to']})"
        flags = "-" if not r["n_flags"] else f"{r['n_flags']} {r['categories']}"
        table.add_row(
            str(r["seq"]), r["observed_at"][:16].replace("T", " "), r["effective_date"] or "-", str(r["text_bytes"]),
            r["text_sha256"][:12], r["provenance"], changed, flags, "-" if r["change_id"] is None else f"#{r['change_id']}",
        )
    table_console().print(table)
    return 0


@cli.command()
@config_option
@click.argument("change_id", type=int)
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "json", "markdown", "html"]), default="text", show_default=True)
@click.option("--cosmetic", is_flag=True, help="Also show cosmetic changes.")
@output_option
@pass_state
def show(state: State, change_id: int, fmt: str, cosmetic: bool, output: str | None) -> int:
    """Show one change in full, with its signals (policy-lag and policy-silent too, from the
    service's other documents, as `monitor report` shows them).

    \b
    Examples:
      monitor show 12
      monitor show 12 --format json | jq '.signals[]'
      monitor show 12 --format html -o change-12.html
    """
    from ..report import change_entry, entry_title, render_diff_html, render_diff_markdown, render_diff_text
    from ..service import report_signals

    config = state.config()
    with state.store() as store:
        store.change(change_id)  # a clear error for an unknown id
        row = next(store.db.query(
            """select c.*, t.service, t.document, t.url, n.provenance from changes c join targets t on t.id = c.target_id
               join versions n on n.id = c.new_version_id where c.id = ?""",
            [change_id],
        ))
        lag = report_signals(store, config, [row])
    entry = change_entry(row, lag.get(change_id, ()))
    title = f"#{change_id} {entry_title(entry)} v{entry['old_version']}→v{entry['new_version']} detected {entry['detected_at'][:16].replace('T', ' ')}"
    if fmt == "json":
        text = json.dumps(entry, ensure_ascii=False, indent=2) + "\n"
    elif fmt == "html":
        text = render_diff_html(entry, title=title)
    elif fmt == "markdown":
        text = render_diff_markdown(entry, title=title)
    else:
        text = render_diff_text(entry, color=output is None and use_color(), title=title, show_cosmetic=cosmetic)
        if entry.get("url"):
            text += f"  {entry['url']}\n"
    write_output(text, output)
    return 0


@cli.command()
@config_option
@click.argument("target_ids", nargs=-1, metavar="[TARGET_ID]...")
@click.option("--dry-run", is_flag=True, help="Show what would change; record nothing.")
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_state
def reflag(state: State, target_ids: tuple[str, ...], dry_run: bool, fmt: str) -> int:
    """Recompute the flags of stored changes with the current rules.

    Each change is diffed again from its two stored texts. When its flags differ from the
    latest evaluation, the new one is recorded beside the change: nothing stored is
    overwritten (the change as detected and alerted stays provable), and `monitor report`
    shows the latest evaluation. Run it after upgrading the monitor or editing the rules.

    \b
    Examples:
      monitor reflag                            every target
      monitor reflag linkedin-privacy-policy    one target
      monitor reflag --dry-run                  what would change, recording nothing
      monitor reflag --format json | jq '.changes[] | select(.recorded)'

    Exit status: 0 (also when nothing changed), 2 for an unknown target id.
    """
    from ..flags import load_rules
    from ..reflag import reflag as run_reflag

    config = state.config()
    for target_id in target_ids:
        config.target(target_id)  # unknown ids are a usage error
    with state.store() as store:
        report = run_reflag(store, load_rules(strict=False), target_ids, dry_run=dry_run)
    if fmt == "json":
        click.echo(json.dumps({
            "dry_run": dry_run,
            "changes": [
                {"id": c.change_id, "target": c.target_id, "old_version": c.old_seq, "new_version": c.new_seq,
                 "before": list(c.before), "after": list(c.after), "recorded": c.recorded}
                for c in report.changes
            ],
            "recorded": report.recorded,
        }, indent=2))
        return 0
    for c in report.changes:
        if c.recorded:
            before = ", ".join(c.before) or "no flags"
            after = ", ".join(c.after) or "no flags"
            click.echo(f"#{c.change_id} {c.target_id} @{c.old_seq}->@{c.new_seq}: {before} -> {after}")
    verb = "would record" if dry_run else "recorded"
    click.echo(f"{len(report.changes)} changes re-evaluated; {verb} {report.recorded} new evaluation{'s' if report.recorded != 1 else ''}.")
    return 0
