"""Daemon commands: run, status."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from .base import State, cli, config_option, pass_state, table_console
from .worker_cmd import broker_option


@cli.command()
@config_option
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True, help="One line per event on stderr, as text or JSON.")
@click.option("--no-alerts", is_flag=True, help="Queue alerts but leave sending to `monitor alerts retry`.")
@broker_option
@pass_state
def run(state: State, log_format: str, no_alerts: bool, broker: str | None) -> int:
    """Run the daemon: check every enabled target on its schedule, until stopped.

    \b
    Examples:
      monitor run                          with ./targets.yaml (what `make run` does)
      monitor --config /etc/monitor/targets.yaml run --log-format json
      monitor run --broker redis://queue:6379/0    fetch on `monitor worker` processes

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

    config = state.config()
    if broker:
        from dataclasses import replace

        from ..distributed import with_broker

        config = replace(config, distributed=with_broker(config.distributed, broker))
    return run_daemon(config, log_format=log_format, deliver_alerts=not no_alerts)


@cli.command()
@config_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--wide", is_flag=True, help="Every column, whole error messages (wider than 80 columns).")
@pass_state
def status(state: State, fmt: str, wide: bool) -> int:
    """Show each target's last check, last change, next run and failures, and whether
    the daemon is alive. Fits 80 columns (ids are never cut); --wide and JSON have the rest.

    \b
    Examples:
      monitor status
      monitor status --wide                  (with distributed: also the workers and queue depth)
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
    fleet = None
    if config.distributed is not None:
        from ..distributed import fleet_status

        fleet = fleet_status(config.distributed, config.enabled_targets)
    if fmt == "json":
        click.echo(json.dumps({"daemon": daemon, "targets": [asdict(r) for r in rows], **({"distributed": fleet} if fleet else {})}, indent=2))
        return 0
    if daemon["alive"]:
        click.echo(f"daemon: running (pid {daemon['pid']}, heartbeat {daemon['age_seconds']}s ago, {daemon['checks']} checks)")
    elif daemon["heartbeat"]:
        click.echo(f"daemon: not running (last heartbeat {daemon['heartbeat']})")
    else:
        click.echo("daemon: not running")
    if fleet is not None:
        from ..distributed import status_lines

        for line in status_lines(fleet):
            click.echo(line)
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    if wide:
        for column in ("target", "state", "last check", "result", "last change", "next due", "fails", "versions"):
            table.add_column(column, no_wrap=column == "target")
        for r in rows:
            table.add_row(
                r.id, r.state, _short(r.last_check), r.last_error or r.last_outcome or "-", _short(r.last_change), _short(r.next_due),
                str(r.consecutive_failures), str(r.versions),
            )
    else:
        now = datetime.now(timezone.utc)
        for column in ("target", "state", "checked", "result", "next", "v"):
            table.add_column(column, no_wrap=True)
        for r in rows:
            table.add_row(r.id, r.state, _brief(r.last_check, now), _result(r.last_outcome, r.last_error, r.consecutive_failures), _brief(r.next_due, now), str(r.versions))
    table_console().print(table)
    if not wide and any(r.last_error for r in rows):
        click.echo("(--wide shows whole error messages)")
    return 0


def _brief(timestamp: str | None, now: datetime) -> str:
    """'12m ago' or 'in 3h': how long ago or until, in a few characters (times in --wide, JSON)."""
    if not timestamp:
        return "-"
    try:
        when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    seconds = (when - now).total_seconds()
    amount = abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if amount >= size or unit == "s":
            text = f"{int(amount // size)}{unit}"
            break
    return "now" if amount < 1 else (f"in {text}" if seconds > 0 else f"{text} ago")


def _result(outcome: str | None, error: str | None, failures: int) -> str:
    """The outcome, or the failure's kind ('http-404 ×3'), never a message cut mid-word."""
    if not error:
        return outcome or "-"
    kind = error.split(":", 1)[0].split()[0] if error.strip() else "failed"
    kind = kind if len(kind) <= 18 else kind[:17] + "…"
    return f"{kind} ×{failures}" if failures > 1 else kind


def _short(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    return timestamp.replace("T", " ")[:19]
