"""The command-line layer: the `monitor` group, shared options, and the one place where
library errors become one-line messages and exit codes.

Exit codes: 0 success; 1 the work ran but failed (every target failed, verify found faults);
2 bad input (invalid config, unknown version, unreadable file, usage); 130 interrupted.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import click

from ..errors import MonitorError

if TYPE_CHECKING:
    from ..store import Store
    from ..targets import Config

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class State:
    """Per-invocation state carried on the click context (no globals)."""

    def __init__(self) -> None:
        self.config_path: str | None = None
        self.verbose = 0
        self._config: Config | None = None

    def config(self) -> Config:
        from ..targets import load_config

        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def store(self) -> Store:
        from ..store import Store

        return Store.open(self.config())


def _set_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value:
        ctx.ensure_object(State).config_path = value
    return value


def config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """--config on every command (also accepted before the command name)."""
    return click.option(
        "--config",
        "-c",
        metavar="PATH",
        expose_value=False,
        is_eager=True,
        callback=_set_config,
        help="targets.yaml to use [default: $MONITOR_CONFIG or ./targets.yaml].",
    )(func)


def format_option(*choices: str, default: str = "text") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--format",
        "-f",
        "fmt",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output format.",
    )


def output_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="Write to this file instead of standard output.")(func)


def pass_state(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = click.get_current_context().ensure_object(State)
        return func(state, *args, **kwargs)

    return wrapper


def echo_err(message: str) -> None:
    click.echo(message, err=True)


def write_output(chunks: str | Iterable[str], output: str | None, *, note: str = "") -> None:
    """Command output to --output FILE or standard output, written piece by piece (a report
    can be hundreds of megabytes); `note` is added to the "wrote FILE" line on stderr."""
    if isinstance(chunks, str):
        chunks = [chunks]
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.writelines(chunks)
        echo_err(f"wrote {output}{note}")
        return
    stream = sys.stdout
    for chunk in chunks:
        stream.write(chunk)
    stream.flush()


def table_console() -> Any:
    """A rich console for tables: the terminal's width on a terminal; wide enough never to
    cut a column when piped (scripts and logs read whole values)."""
    from rich.console import Console

    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)


def use_color(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


@click.group(context_settings=CONTEXT_SETTINGS)
@click.option("--config", "-c", metavar="PATH", envvar="MONITOR_CONFIG", help="targets.yaml to use [default: ./targets.yaml].")
@click.option("--verbose", "-v", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="privacy-monitor", prog_name="monitor")
@click.pass_context
def cli(ctx: click.Context, config: str | None, verbose: int) -> None:
    """Watch privacy policies, terms and help pages; see exactly what changed.

    \b
    Quick start:
      monitor demo                      replay LinkedIn's real 2024 change, offline
      monitor validate                  check targets.yaml
      monitor check                     capture every target once
      monitor run                       keep checking on schedule (the daemon)
      monitor report --since 7d         review the changes of the last week
      monitor diff old.html new.html    compare two files (or stored versions)

    Every command takes --config PATH (default: $MONITOR_CONFIG, else ./targets.yaml).
    Exit codes: 0 ok, 1 the work failed, 2 bad input or usage.
    """
    state = ctx.ensure_object(State)
    if config and not state.config_path:
        state.config_path = config
    state.verbose = verbose
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", stream=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: errors become one line on stderr and an exit code."""
    from . import load_commands

    # httpx imports its own command-line client (rich, pygments: 30-60 ms) when it is imported,
    # unless that import fails, which httpx handles (its `httpx` command then says so). This
    # process never runs httpx's command, so it does not pay for loading it.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

    load_commands()
    try:
        result = cli.main(args=argv, prog_name="monitor", standalone_mode=False)
    except MonitorError as exc:
        for line in str(exc).splitlines() or [exc.__class__.__name__]:
            echo_err(f"error: {line}")
        return exc.exit_code
    except click.exceptions.Abort:
        echo_err("interrupted")
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2 if isinstance(exc, click.UsageError) else exc.exit_code
    except KeyboardInterrupt:
        echo_err("interrupted")
        return 130
    except BrokenPipeError:
        return 0
    if isinstance(result, int):
        return result
    return 0
