"""Daemon commands: run, status."""

from __future__ import annotations

import json

import click

from .base import State, cli, config_option, pass_state, table_console


@cli.command()
@config_option
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True, help="One line per event on stderr, as text or JSON.")
@click.option("--no-alerts", is_flag=True, help="Queue alerts but leave sending to `monitor alerts retry`.")
@pass_state
def run(state: State, log_format: str, no_alerts: bool) -> int:
    """Run the daemon: check every enabled target on its schedule, until stopped.

    \b
    Examples:
      monitor run                          with ./targets.yaml (what `make run` does)
      monitor --config /etc/monitor/targets.yaml run --log-format json

    \b
    - Restart-safe: each target's next run comes from its last fetch in the database.
    - Edit targets.yaml (or send SIGHUP) to reload it; an invalid file is logged and the
      daemon keeps running on the last good one.
    - SIGTERM or Ctrl-C stops it cleanly within seconds (a second one forces the exit).
    - One daemon per database: a second one exits with status 2.
    - Alerts are sent as changes are recorded (configure `alerts:` in targets.yaml).

    Watch it from another terminal with `monitor status`.
    """
    from ..schedule import run_daemon

    return run_daemon(state.config(), log_format=log_format, deliver_alerts=not no_alerts)


@cli.command()
@config_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_state
def status(state: State, fmt: str) -> int:
    """Show each target's last check, last change, next run and failures, and whether
    the daemon is alive.

    \b
    Examples:
      monitor status
      monitor status --format json | jq '.targets[] | select(.state == "failing")'
    """
    from dataclasses import asdict

    from ..schedule import daemon_status, target_statuses
    from ..store import Store

    config = state.config()
    with Store.open(config) as store:
        store.sync_targets(config.targets)
        daemon = daemon_status(store)
        rows = target_statuses(config, store)
    if fmt == "json":
        click.echo(json.dumps({"daemon": daemon, "targets": [asdict(r) for r in rows]}, indent=2))
        return 0
    if daemon["alive"]:
        click.echo(f"daemon: running (pid {daemon['pid']}, heartbeat {daemon['age_seconds']}s ago, {daemon['checks']} checks)")
    elif daemon["heartbeat"]:
        click.echo(f"daemon: not running (last heartbeat {daemon['heartbeat']})")
    else:
        click.echo("daemon: not running")
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("target", "state", "last check", "result", "last change", "next due", "fails", "versions"):
        table.add_column(column)
    for r in rows:
        result = r.last_outcome or "-"
        if r.last_error:
            result = r.last_error[:60]
        table.add_row(
            r.id, r.state, _short(r.last_check), result, _short(r.last_change), _short(r.next_due),
            str(r.consecutive_failures), str(r.versions),
        )
    table_console().print(table)
    return 0


def _short(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    return timestamp.replace("T", " ")[:19]
