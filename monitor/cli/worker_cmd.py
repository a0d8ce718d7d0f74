"""Distributed commands: worker."""

from __future__ import annotations

from typing import Any

import click

from .base import cli


def _broker(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A broker URL checked like `distributed.broker` in targets.yaml (one-line error)."""
    if value is None:
        return None
    from ..targets import broker_url

    try:
        return broker_url(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _duration(_ctx: click.Context, _param: click.Parameter, value: Any) -> float | None:
    if value is None:
        return None
    from ..targets import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def broker_option(func: Any) -> Any:
    """--broker on run, check and worker: send fetching to Celery workers on this broker."""
    return click.option("--broker", metavar="URL", callback=_broker,
                        help="Celery broker (redis://host:6379/0): fetch on `monitor worker` processes; overrides distributed.broker.")(func)


@cli.command()
@click.option("--broker", metavar="URL", envvar="MONITOR_BROKER", required=True, callback=_broker, help="Celery broker, like redis://host:6379/0 [env: MONITOR_BROKER].")
@click.option("--results", metavar="URL", callback=_broker, help="Redis for results, heartbeats and the host limiter [default: the broker].")
@click.option("--queue", default="monitor", show_default=True, help="Queue name prefix (as distributed.queue).")
@click.option("--concurrency", "-n", type=click.IntRange(1, 256), default=4, show_default=True, help="Fetches at once in this worker (one shared Chromium).")
@click.option("--name", help="Worker name [default: monitor@HOST-PID].")
@click.option("--visibility-timeout", default="10m", show_default=True, callback=_duration, help="Redelivery after a worker dies; each task is bounded below it.")
@click.option("--restore-interval", default=None, callback=_duration, hidden=True, help="How often abandoned tasks are looked for (tests).")
@click.option("--loglevel", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default="WARNING", show_default=True)
def worker(broker: str, results: str | None, queue: str, concurrency: int, name: str | None, visibility_timeout: float,
           restore_interval: float | None, loglevel: str) -> int:
    """Fetch and extract for a daemon on another machine (Celery; no database, no config).

    \b
    Examples:
      monitor worker --broker redis://queue.example.org:6379/0
      monitor worker --broker redis://10.0.0.5:6379/0 --concurrency 8
      MONITOR_BROKER=redis://10.0.0.5:6379/0 monitor worker

    The daemon (`monitor run` with `distributed: {broker: ...}` in targets.yaml, or
    --broker) stays the one writer: it sends each check here and stores, diffs and alerts on
    what comes back. Start as many workers, on as many machines, as the load needs; a
    worker killed mid-fetch leaves its task to another after the visibility timeout.
    SIGTERM finishes the tasks at hand, then exits.
    """
    import os
    import socket

    from ..distributed import DistributedError
    from ..worker import run_worker

    if results is not None and not results.startswith(("redis://", "rediss://")):
        raise click.BadParameter("results must be a Redis URL (redis://host:6379/1)", param_hint="--results")
    if results is None and not broker.startswith(("redis://", "rediss://")):
        raise click.BadParameter("the broker is not Redis; add --results redis://host:6379/1", param_hint="--results")
    hostname = name or f"monitor@{socket.gethostname()}-{os.getpid()}"
    try:
        return run_worker(broker, results or broker, queue, concurrency=concurrency, hostname=hostname, visibility_timeout=visibility_timeout,
                          restore_interval=restore_interval, loglevel=loglevel)
    except OSError as exc:
        raise DistributedError(f"cannot run a worker on {broker}: {exc}") from None
