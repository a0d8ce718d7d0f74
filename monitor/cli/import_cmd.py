"""Import commands: `monitor import wayback|ota`, backfilling a target's history from archives.

A thin layer: options are parsed by monitor.importers (bad input is an InputError, exit 2),
the work is done there, and this module only opens the store, shows progress and exits.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .base import State, cli, config_option, pass_state

if TYPE_CHECKING:
    from ..importers import CaptureResult, ImportContext, ImportSummary
    from ..targets import Config, Target

DEFAULT_ARCHIVE = "https://web.archive.org"  # monitor.importers.DEFAULT_ARCHIVE, without importing it at start-up


@cli.group("import")
def import_group() -> None:
    """Backfill a target's history from the Wayback Machine or Open Terms Archive.

    \b
    Examples:
      monitor import wayback linkedin-privacy --from 2023 --every 1m
      monitor import ota "../shared/corpus/ota/LinkedIn/Privacy Policy" --target linkedin-privacy

    Imported versions are extracted, stored, diffed and flagged like live captures and
    interleave with them by the time they were observed. Backfilled changes raise no
    alerts unless --alert is given. Running an import again skips what is already in.
    """


@import_group.command("wayback")
@config_option
@click.argument("target_id")
@click.option("--from", "start", metavar="DATE", help="First day to import (2024-09-01, 2024-09 or 2024).")
@click.option("--to", "end", metavar="DATE", help="Last day to import (same forms; a month or year counts whole).")
@click.option("--every", metavar="1d|1w|1m", help="Keep at most one capture per day, week or month (the first).")
@click.option("--rate", type=float, default=1.0, show_default=True, help="Requests per second to the archive.")
@click.option("--archive-url", default=DEFAULT_ARCHIVE, show_default=True, metavar="URL", help="The archive's base URL.")
@click.option("--alert", is_flag=True, help="Send alerts for imported changes (off: history is not news).")
@pass_state
def wayback(state: State, target_id: str, start: str | None, end: str | None, every: str | None,
            rate: float, archive_url: str, alert: bool) -> int:
    """Import a target's past versions from the Wayback Machine.

    \b
    Examples:
      monitor import wayback linkedin-privacy
      monitor import wayback linkedin-privacy --from 2024-01 --to 2024-12 --every 1w
      monitor import wayback linkedin-privacy --archive-url http://127.0.0.1:8080 --rate 5

    Lists the page's captures (CDX API: status 200, identical captures once), fetches each
    one's original bytes (the id_ form, no toolbar) at --rate requests per second, with
    retries and backoff on 429 and 5xx, and stores them like live captures with provenance
    `wayback` and the archive URL. Exit 0 when done, 1 when every fetch failed, 2 for bad
    input (unknown target, bad date or period).
    """
    from ..importers import WaybackOptions, import_wayback

    config = state.config()
    target = config.target(target_id)
    options = WaybackOptions.parse(archive_url=archive_url, start=start, end=end, every=every, rate=rate)
    with _context(config, target, alert=alert) as ctx:
        import asyncio

        summary = asyncio.run(import_wayback(ctx, options))
    return _finish(config, summary, alert=alert)


@import_group.command("ota")
@config_option
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--target", "target_id", required=True, metavar="TARGET_ID", help="The target the versions belong to.")
@click.option("--file", "file", metavar="PATH", help='With a versions repository clone: the document, e.g. "LinkedIn/Privacy Policy.md".')
@click.option("--alert", is_flag=True, help="Send alerts for imported changes (off: history is not news).")
@pass_state
def ota(state: State, path: Path, target_id: str, file: str | None, alert: bool) -> int:
    """Import versions from Open Terms Archive data.

    \b
    Examples:
      monitor import ota "../shared/corpus/ota/LinkedIn/Privacy Policy" --target linkedin-privacy
      monitor import ota ~/contrib-versions --file "LinkedIn/Privacy Policy.md" --target linkedin-privacy

    PATH is a folder of files named by recording time (2024-09-19T06-10-13Z.md), or, with
    --file, a clone of a versions repository whose commits are the versions (the author
    date is the observed time). Provenance `ota`, with the file name or commit hash.
    Exit 0 when done, 2 for bad input (unknown target, missing path).
    """
    from ..importers import import_ota, read_ota

    config = state.config()
    target = config.target(target_id)
    source = read_ota(path, file)
    with _context(config, target, alert=alert) as ctx:
        summary = import_ota(ctx, source)
    return _finish(config, summary, alert=alert)


@contextlib.contextmanager
def _context(config: Config, target: Target, *, alert: bool) -> Iterator[ImportContext]:
    from ..flags import load_rules
    from ..importers import ImportContext
    from ..store import Store

    with Store.open(config) as store, _Progress() as progress:
        store.sync_targets(config.targets)
        yield ImportContext(config, store, target, rules=load_rules(strict=False), alert=alert, progress=progress)


def _finish(config: Config, summary: ImportSummary, *, alert: bool) -> int:
    click.echo(summary.text())
    if alert and config.alerts.enabled and summary.changes:
        from ..alerts import deliver_pending
        from ..store import Store

        with Store.open(config) as store:
            sent = deliver_pending(store, config).sent
        click.echo(f"alerts: {sent} sent")
    return 1 if summary.all_failed else 0


class _Progress:
    """A progress bar on a terminal; one line per capture otherwise (logs, CI, pipes)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start(self, total: int) -> None:
        if not self.tty or total == 0:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("[bold]importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=True,
        )
        self._bar.__enter__()
        self._task = self._bar.add_task("", total=total)

    def done(self, result: CaptureResult) -> None:
        if self._bar is None:
            click.echo(result.line())
            return
        self._bar.advance(self._task)
        if result.outcome != "unchanged":
            self._bar.console.print(result.line(), markup=False, highlight=False)
