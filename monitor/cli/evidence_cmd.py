"""Evidence commands: export, anchor (verify FILE lives with verify in capture.py)."""

from __future__ import annotations

from pathlib import Path

import click

from .base import State, cli, config_option, echo_err, pass_state


def parse_until(text: str) -> str:
    """Like --since, but a bare date means the end of that day."""
    import re

    from ..report import parse_since

    stamp = parse_since(text)
    if re.fullmatch(r"\s*\d{4}-\d\d-\d\d\s*", text):
        stamp = stamp[:10] + "T23:59:59.999Z"
    return stamp


@cli.command()
@config_option
@click.argument("what", required=False, metavar="CHANGE_ID|TARGET_ID|TARGET_ID@N")
@click.option("--all", "everything", is_flag=True, help="Every target.")
@click.option("--since", metavar="WHEN", help="Versions observed since: 7d, 12h or a date like 2024-09-01.")
@click.option("--until", metavar="WHEN", help="Versions observed until (a date includes that day).")
@click.option("--format", "-f", "fmt", type=click.Choice(["wacz", "warc", "zip"]), default="wacz", show_default=True,
              help="wacz: replayable package; warc: plain .warc.gz; zip: folder-like bundle with README.txt.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File to write [default: change-ID.wacz, TARGET.wacz, ...].")
@pass_state
def export(state: State, what: str | None, everything: bool, since: str | None, until: str | None, fmt: str, output: str | None) -> int:
    """Export evidence: the captures, texts, screenshots, diffs, flags and hash-chain links of
    a change, a version, a target or everything, in one file that `monitor verify FILE`
    checks without the database.

    \b
    Examples:
      monitor export 14 -o change-14.wacz          a change and its two versions
      monitor export linkedin-privacy@15           one version (and the change into it)
      monitor export linkedin-privacy --since 2024-09-01 --until 2024-09-30
      monitor export --all --format warc -o archive.warc.gz
      monitor export 14 --format zip               README.txt, manifest.json, files

    WACZ (default) opens in ReplayWeb.page and replays in pywb: our network captures are
    WARC response/request records at their original URLs, dated when this monitor fetched
    them; versions imported from the Wayback Machine or Open Terms Archive are resource
    records with their provenance and claimed date. Nothing is exported if a file or row
    no longer matches the hash chain (run `monitor verify`). Exit 0 done, 1 the store
    does not verify, 2 bad input.
    """
    from ..evidence.export import export as run_export
    from ..report import parse_since

    with state.store() as store:
        done = run_export(store, what, fmt=fmt, output=Path(output) if output else None, everything=everything,
                          since=parse_since(since) if since else None, until=parse_until(until) if until else None)
    click.echo(f"wrote {done.path}: {done.counts}")
    return 0


@cli.command()
@config_option
@click.option("--to", "to", type=click.Path(dir_okay=False), help="Also append the line to this file (a log to publish or mail).")
@pass_state
def anchor(state: State, to: str | None) -> int:
    """Print the hash chain's head with the time: publish it, mail it, timestamp it.

    \b
    Examples:
      monitor anchor
      monitor anchor --to anchors.log
      monitor verify --anchor anchors.log        the archive still extends every head in it

    Whoever holds the database could rewrite it and its chain together; a head kept
    elsewhere (this line, an alert's X-Monitor-Chain header) makes that show.
    """
    from ..evidence.anchor import anchor_line, append_anchor
    from ..records import utcnow

    config = state.config()
    if not config.db_path.exists():
        echo_err(f"{config.db_path}: no database yet; nothing to anchor")
        return 2
    with state.store() as store:
        line = anchor_line(store.chain_head(), utcnow(), store.get_meta("store_id"))
    click.echo(line)
    if to:
        append_anchor(Path(to), line)
        echo_err(f"appended to {to}")
    return 0
