"""`monitor demo`."""

from __future__ import annotations

from pathlib import Path

import click

from .base import cli


@cli.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), help="Where to put the demo's database, report and emails [default: a new temporary directory].")
@click.option("--versions", "limit", type=int, metavar="N", help="Replay only the first N versions (the AI-training change, recorded 2024-09-19, is the 17th).")
def demo(directory: Path | None, limit: int | None) -> int:
    """Replay LinkedIn's real privacy-policy history offline, through the real pipeline.

    A local web server serves each recorded version of https://www.linkedin.com/legal/privacy-policy
    (Open Terms Archive data, shipped with this package) in turn; a real headless Chromium
    fetches it, the monitor stores, diffs and flags it, and alerts go to a local SMTP
    server that keeps them as .eml files. It ends with an HTML report. No internet needed.

    \b
    Examples:
      monitor demo                       in a temporary directory
      monitor demo --dir /tmp/demo       keep it somewhere known
      monitor --config /tmp/demo/targets.yaml report --flagged    then explore it
    """
    from ..demo import key_change_lines, run_demo

    result = run_demo(directory, say=click.echo, limit=limit)
    click.echo("")
    for line in key_change_lines(result):
        click.echo(line)
    click.echo("")
    click.echo(f"report:    {result.report}")
    click.echo(f"emails:    {result.mail_dir} ({result.emails} .eml files)")
    click.echo(f"database:  {result.directory / 'monitor.db'}")
    click.echo(f"explore:   monitor --config {result.directory / 'targets.yaml'} report --all --flagged")
    return 0 if result.key_change is not None or (limit is not None and limit < 17) else 1
