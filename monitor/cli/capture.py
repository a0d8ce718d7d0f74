"""Capture commands: check, validate, doctor, verify (the database, or an exported bundle), browser."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConfigError, Problem
from .base import State, cli, config_option, echo_err, pass_state
from .worker_cmd import broker_option

if TYPE_CHECKING:
    from ..alerts import DeliveryReport
    from ..check import PassSummary, TargetResult
    from ..targets import Config, Target


def select_targets(config: Config, ids: tuple[str, ...]) -> list[Target]:
    """The named targets (disabled ones too, when named), else every enabled target."""
    if not ids:
        return list(config.enabled_targets)
    problems: list[Problem] = []
    chosen = []
    for target_id in ids:
        try:
            chosen.append(config.target(target_id))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return chosen


@cli.command()
@config_option
@click.argument("target_ids", nargs=-1, metavar="[TARGET_ID]...")
@click.option("--no-alerts", is_flag=True, help="Queue alerts but do not send them now.")
@click.option("--no-confirm", is_flag=True, help="Record changes without the confirming second fetch.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="json: one JSON object per target, then a summary.")
@broker_option
@pass_state
def check(state: State, target_ids: tuple[str, ...], no_alerts: bool, no_confirm: bool, fmt: str, broker: str | None) -> int:
    """Check targets once: fetch, store new versions, diff and flag them.

    \b
    Examples:
      monitor check                          every enabled target
      monitor check linkedin-privacy         just one (disabled targets too, when named)
      monitor check --format json | jq .     machine-readable results
      monitor check --broker redis://queue:6379/0   fetch on `monitor worker` processes

    An unchanged page adds one fetch row and nothing else. A substantive change is
    confirmed by a second fetch after confirm_delay before it is recorded.
    Exit 0 when the pass completed (failures are recorded and listed), 1 when every
    target failed, 2 for an invalid config or an unknown target id.
    """
    config = state.config()
    if broker:
        from dataclasses import replace

        from ..distributed import with_broker

        config = replace(config, distributed=with_broker(config.distributed, broker))
    targets = select_targets(config, target_ids)
    if not targets:
        echo_err(f"{config.path}: no enabled targets; enable one or name it: monitor check TARGET_ID")
        return 0
    import asyncio

    from ..store import utcnow

    started = utcnow()
    summary = asyncio.run(_check(config, targets, confirm=not no_confirm, fmt=fmt))
    changed = [r.target_id for r in summary.results if r.change_id is not None]
    if config.feeds is not None and changed:  # as the daemon does after each change
        from ..feeds import write_feeds
        from ..store import Store

        try:
            with Store.open(config) as store:
                write_feeds(store, config, changed)
        except OSError as exc:  # the change is stored; only its feed is late
            echo_err(f"feeds: cannot write {config.feeds.dir} ({exc.strerror or exc}); check feeds.dir in {config.path}")
    delivery = None
    if not no_alerts and config.alerts.enabled:
        delivery = _deliver(config, started)
    if fmt == "json":
        alerts = {"sent": delivery.sent, "failed": delivery.failed, "pending": delivery.pending} if delivery else None
        click.echo(json.dumps({"summary": dict(summary.counts), "alerts": alerts}))
    else:
        click.echo(summary.text())
        if delivery and delivery.sent:
            click.echo(f"alerts: {delivery.sent} sent")
        if delivery and delivery.failed:
            echo_err(f"alerts: {delivery.failed} not delivered yet (they stay queued); see `monitor alerts list`")
    return 1 if summary.all_failed else 0


def _deliver(config: Config, since: str) -> DeliveryReport:
    from ..alerts import deliver_pending, release_held
    from ..store import Store

    with Store.open(config) as store:
        release_held(store, since=since)  # the pass is over: what no outage absorbed goes out now
        return deliver_pending(store, config)


async def _check(config: Config, targets: list[Target], *, confirm: bool, fmt: str) -> PassSummary:
    from ..check import CheckContext, run_pass
    from ..fetch import Fetcher
    from ..store import Store

    store = Store.open(config)
    store.sync_targets(config.targets)
    progress = _Progress(len(targets), fmt)
    try:
        if config.distributed is not None:  # fetching on the workers; this process writes
            from ..distributed import fleet_pass

            with progress:
                return await fleet_pass(config, store, targets, confirm=confirm, on_start=progress.start, on_done=progress.done)
        async with Fetcher(config.defaults) as fetcher:
            ctx = CheckContext(config, store, fetcher, confirm=confirm)  # rules loaded on the first change
            with progress:
                return await run_pass(ctx, targets, on_start=progress.start, on_done=progress.done)
    finally:
        store.close()


class _Progress:
    """A progress bar on a terminal; one line per target otherwise (logs, CI, pipes)."""

    def __init__(self, total: int, fmt: str):
        self.total = total
        self.fmt = fmt
        self.tty = fmt == "text" and sys.stderr.isatty()
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]checking"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.description}"), console=Console(stderr=True), transient=True,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def start(self, target: Target) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=target.id)

    def done(self, result: TargetResult) -> None:
        if self.fmt == "json":
            click.echo(json.dumps(_result_json(result)))
            return
        if self._progress is not None:
            self._progress.advance(self._task)
            if result.outcome != "unchanged":
                self._progress.console.print(result.line(), markup=False, highlight=False)
        else:
            click.echo(result.line())


def _result_json(result: TargetResult) -> dict[str, Any]:
    return {
        "target": result.target_id, "outcome": result.outcome,
        "version": result.version.seq if result.version else None, "change_id": result.change_id,
        "summary": result.summary or None, "flags": result.n_flags, "error_kind": result.error_kind,
        "error": result.error, "state_change": result.state_change, "engine": result.engine,
    }


@cli.command()
@config_option
@click.option("--fields", is_flag=True, help="Print every field targets.yaml accepts, with defaults.")
@pass_state
def validate(state: State, fields: bool) -> int:
    """Check targets.yaml and report every problem at once.

    \b
    Examples:
      monitor validate
      monitor --config other.yaml validate
      monitor validate --fields          the field reference

    Each problem is one line: file:line: field: what is wrong and how to fix it.
    Exit 0 when valid, 2 otherwise.
    """
    if fields:
        from ..targets import field_reference

        click.echo(field_reference(), nl=False)
        return 0
    config = state.config()
    enabled = len(config.enabled_targets)
    click.echo(f"{config.path}: valid ({len(config.targets)} targets, {enabled} enabled)")
    return 0


@cli.command()
@config_option
@pass_state
def doctor(state: State) -> int:
    """Show the set-up: versions, browser, config, database.

    \b
    Example:
      monitor doctor

    Exit 0 when everything needed for `monitor check` is in place, 1 otherwise.
    """
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from ..browser import browser_version, find_browser
    from ..errors import MonitorError
    from ..targets import resolve_config_path

    ok = True

    def line(label: str, value: str) -> None:
        click.echo(f"{label:<14} {value}")

    def pkg(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    line("monitor", pkg("privacy-monitor"))
    line("python", f"{platform.python_version()} ({sys.executable})")
    line("playwright", pkg("playwright"))
    line("apscheduler", pkg("apscheduler"))
    line("sqlite-utils", pkg("sqlite-utils"))
    try:
        info = find_browser()
    except MonitorError as exc:
        info = None
        line("browser", f"problem: {exc}")
        ok = False
    if info:
        found_version = browser_version(info.path) or "version unknown"
        line("browser", f"{info.describe()}: {found_version}")
    elif ok:
        line("browser", "none found; run `monitor browser --install` (make setup does it)")
        ok = False
    path = resolve_config_path(state.config_path)
    try:
        config = state.config()
    except ConfigError as exc:
        line("config", f"{path}: INVALID ({len(exc.problems)} problem(s))")
        for problem in exc.problems:
            click.echo(f"  {problem}")
        return 1
    line("config", f"{config.path}: valid, {len(config.targets)} targets ({len(config.enabled_targets)} enabled)")
    line("database", str(config.db_path) + ("" if config.db_path.exists() else " (not created yet)"))
    line("snapshots", str(config.snapshots_dir))
    if config.db_path.exists():
        from ..store import Store

        with Store.open(config) as store:
            counts = store.counts()
            heartbeat = store.get_meta("heartbeat")
        line("stored", ", ".join(f"{n} {name}" for name, n in counts.items()))
        line("daemon", f"last heartbeat {heartbeat}" if heartbeat else "never run on this database")
    alerts = config.alerts
    line("alerts", "email " + (f"via {alerts.smtp.host}:{alerts.smtp.port} to {len(alerts.to)}" if alerts.smtp else "off") + (", webhook on" if alerts.webhook else ""))
    return 0 if ok else 1


@cli.command()
@config_option
@click.argument("bundle", required=False, metavar="[FILE]", type=click.Path(dir_okay=False))
@click.option("--quiet", "-q", is_flag=True, help="Print only problems.")
@click.option("--head", "heads", multiple=True, metavar="N:SHA256",
              help="A chain head kept elsewhere (an alert's X-Monitor-Chain header, a log line) to check too.")
@click.option("--anchor", "anchor_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="A file of anchored heads (`monitor anchor --to FILE`): the archive must still extend each.")
@click.option("--key", "pin_key", type=click.Path(dir_okay=False), metavar="PUBKEY",
              help="With FILE: the bundle must be signed by this public key (KEY.pub of `monitor keygen`).")
@pass_state
def verify(state: State, bundle: str | None, quiet: bool, heads: tuple[str, ...], anchor_file: str | None, pin_key: str | None) -> int:
    """Check every stored file and every recorded fact against the hash chain; or, given
    FILE, an exported bundle (WACZ, WARC or zip) on its own, with no database.

    \b
    Examples:
      monitor verify
      monitor verify --anchor anchors.log
      monitor verify change-14.wacz
      monitor verify change-14.wacz --key keys/monitor.key.pub

    Recomputes the sha256 of every raw capture, response headers file, screenshot and
    extracted text, every entry of the hash chain (versions with their dates, titles,
    provenance and URLs; changes with their flags and diff), and every copy of the chain
    head (meta, daemon heartbeat, alert rows, each --head and each head in --anchor FILE),
    and names exactly what does not match. A head naming an entry the chain no longer has
    means its tail was deleted. Files left by an interrupted write are listed as notes
    (harmless).

    With FILE: the container's digests (datapackage.json or manifest.json), every WARC
    record's digests, the chain entries it carries and their links to its head, and every
    capture, text, screenshot and diff against the digest its chain entry records.
    A signed bundle (`monitor export --sign`) has its signature checked and its key's
    fingerprint printed; --key also requires that it was signed by that key.
    Exit 0 when intact, 1 otherwise, 2 for a file that is not a bundle.
    """
    from ..errors import InputError
    from ..store import Store

    heads = tuple(h.strip() for h in heads)  # a folded email header keeps its leading space
    for head in heads:
        number, _, digest = head.partition(":")
        if not number.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise InputError(f"--head {head[:80]}: expected N:SHA256 (64 hex digits), as in an alert's X-Monitor-Chain header")
    extra = [("--head", h) for h in heads]
    if anchor_file:
        from pathlib import Path

        from ..evidence.anchor import read_anchors

        extra += read_anchors(Path(anchor_file))
    if bundle:
        return _verify_bundle(bundle, extra, quiet, pin_key)
    if pin_key:
        raise InputError("--key PUBKEY checks the signature of an exported bundle: monitor verify FILE --key KEY.pub")
    config = state.config()
    if not config.db_path.exists():
        click.echo(f"{config.db_path}: no database yet; nothing to verify")
        return 0
    with Store.open(config) as store:
        problems = store.verify(heads=extra)
        counts = store.counts()
        head_now = store.chain_head()
    errors = [p for p in problems if p.severity == "error"]
    for problem in problems:
        if problem.severity == "error" or not quiet:
            click.echo(str(problem))
    if errors:
        click.echo(f"verify: {len(errors)} problem(s) in {counts['versions']} versions")
        return 1
    if not quiet:
        anchored = f"; {len(extra)} head(s) given, all extended" if extra else ""
        click.echo(f"verify: ok ({counts['versions']} versions, {counts['changes']} changes, {counts['fetches']} fetches; chain head {head_now}{anchored})")
    return 0


def _verify_bundle(bundle: str, anchors: list[tuple[str, str]], quiet: bool, pin_key: str | None = None) -> int:
    from pathlib import Path

    from ..evidence.check import verify_file
    from ..evidence.sign import load_public

    report = verify_file(Path(bundle), anchors=anchors, key=load_public(Path(pin_key)) if pin_key else None)
    for problem in report.problems:
        if problem.severity == "error" or not quiet:
            click.echo(str(problem))
    errors = [p for p in report.problems if p.severity == "error"]
    if errors:
        click.echo(f"verify: {bundle}: {len(errors)} problem(s)")
        return 1
    if not quiet:
        click.echo(f"verify: ok: {bundle}: {report.summary()}; {report.records} WARC records, every digest matches")
    return 0


@cli.command()
@click.option("--install", is_flag=True, help="Install a browser if none is found.")
def browser(install: bool) -> int:
    """Find (or install) the Chromium that fetches use.

    \b
    Search order: $MONITOR_BROWSER; a browser Playwright already has; a system
    Chromium/Chrome on PATH; then, with --install, `playwright install chromium`, and on
    Debian/Ubuntu as root `apt-get install chromium`. Says what it did at each step.

    \b
    Examples:
      monitor browser              where is it?
      monitor browser --install    find or install (what `make setup` runs)
    """
    from ..browser import browser_version, find_browser, install_browser

    if install:
        info = install_browser(click.echo)
    else:
        info = find_browser()
        if info is None:
            echo_err("error: no browser found; run `monitor browser --install`")
            return 1
    click.echo(f"browser: {info.describe()}: {browser_version(info.path) or 'version unknown'}")
    return 0
