"""Targets from the command line: `monitor targets` (list), `monitor add`, `monitor remove`.

Edits go through monitor.targets_edit: round-trip YAML in the file's own layout, only the
entry's lines changed, and the new file validated before it replaces the old one, so these
commands refuse exactly what `monitor validate` would reject."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .base import State, cli, config_option, echo_err, pass_state, table_console


@cli.command("targets")
@config_option
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Output format.")
@pass_state
def targets_list(state: State, fmt: str) -> int:
    """List the targets of targets.yaml: id, service, document, URL, engine, schedule, state.

    \b
    Examples:
      monitor targets
      monitor targets --format json | jq -r '.[] | select(.service == "LinkedIn") | .id'

    The state is the store's (new, ok, failing), or disabled for `enabled: false`.
    """
    config = state.config()
    states: dict[str, dict[str, Any]] = {}
    if config.db_path.exists():
        from ..store import Store

        with Store.open(config) as store:
            for row in store.db.query("select t.id, t.state, (select count(*) from versions v where v.target_id = t.id) as versions from targets t"):
                states[row["id"]] = row
    rows = []
    for t in config.targets:
        known = states.get(t.id, {})
        rows.append({
            "id": t.id, "service": t.service, "document": t.document, "url": t.url, "urls": list(t.urls),
            "engine": t.engine, "schedule": t.schedule.text, "enabled": t.enabled,
            "state": "disabled" if not t.enabled else known.get("state") or "new", "versions": known.get("versions", 0),
            "tags": list(t.tags),
        })
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("id", "service", "document", "engine", "schedule", "state", "url"):
        table.add_column(column, no_wrap=column in ("id", "url"))
    for r in rows:
        url = r["url"] + (f" (+{len(r['urls']) - 1})" if len(r["urls"]) > 1 else "")
        table.add_row(r["id"], r["service"], r["document"], r["engine"], r["schedule"], r["state"], url)
    table_console().print(table)
    return 0


@cli.command("add")
@config_option
@click.argument("url")
@click.option("--id", "target_id", required=True, help="Unique id (lower-case letters, digits, . _ -).")
@click.option("--service", required=True, help="The platform, e.g. LinkedIn.")
@click.option("--document", required=True, help="privacy-policy, terms, faq, ai-policy, cookie-policy or other.")
@click.option("--select", "select", multiple=True, metavar="CSS", help="Keep only this part of the page (repeatable).")
@click.option("--remove", "remove", multiple=True, metavar="CSS", help="Drop this part of the page (repeatable).")
@click.option("--engine", help="auto, http or browser [default: defaults.engine].")
@click.option("--schedule", help="Interval or cron string [default: defaults.schedule].")
@click.option("--tag", "tags", multiple=True, help="A free label (repeatable).")
@pass_state
def add(state: State, url: str, target_id: str, service: str, document: str, select: tuple[str, ...], remove: tuple[str, ...],
        engine: str | None, schedule: str | None, tags: tuple[str, ...]) -> int:
    """Append a target to targets.yaml, keeping the file's comments and layout.

    \b
    Examples:
      monitor add https://www.linkedin.com/help/linkedin/answer/a5538339 --id linkedin-gai-faq --service LinkedIn --document faq
      monitor add https://example.com/privacy --id example-privacy --service Example --document privacy-policy --select main --engine http

    The entry is validated with the whole file first (`monitor validate`'s rules: a unique
    id, a known document kind, an http(s) URL, valid CSS); anything it would reject is
    refused with the reason and the file is left as it was (exit 2).
    """
    from ..targets_edit import add_targets

    config_path = state.config().path
    entry: dict[str, Any] = {"id": target_id, "service": service, "document": document, "url": url}
    if select:
        entry["select"] = list(select)
    if remove:
        entry["remove"] = list(remove)
    if engine:
        entry["engine"] = engine
    if schedule:
        entry["schedule"] = schedule
    if tags:
        entry["tags"] = list(tags)
    edit = _refusing("add", lambda: add_targets(config_path, [entry]))
    edit.write()
    echo_err(f"added {target_id} to {config_path}; `monitor check {target_id}` stores its first version")
    return 0


@cli.command("remove")
@config_option
@click.argument("target_id")
@click.option("--delete", is_flag=True, help="Delete the entry from targets.yaml (default: set enabled: false). History is kept.")
@click.option("--purge", is_flag=True, help="Also delete the target's stored history (versions, changes, files); asks first. Implies --delete.")
@click.option("--yes", "-y", is_flag=True, help="With --purge: do not ask.")
@pass_state
def remove(state: State, target_id: str, delete: bool, purge: bool, yes: bool) -> int:
    """Stop watching a target: disable it (default) or delete its entry, keeping its history.

    \b
    Examples:
      monitor remove linkedin-terms              # enabled: false, still listed
      monitor remove linkedin-terms --delete     # entry deleted; versions and changes kept
      monitor remove linkedin-terms --purge --yes

    --purge also deletes its stored versions, changes, alerts and files, after a confirmation
    (or --yes); the hash chain records the purge, so `monitor verify` still passes and shows
    what was purged. Exit 2 for an unknown id or an edit `validate` would reject.
    """
    from ..targets_edit import delete_target, disable_target

    config = state.config()
    path = config.path
    if purge:
        delete = True
    in_file = any(t.id == target_id for t in config.targets)
    edit = None
    if in_file or not purge:  # an entry deleted earlier may still be purged
        edit = _refusing("remove", lambda: (delete_target if delete else disable_target)(path, target_id))
    if purge:
        from ..errors import InputError
        from ..purge import purge_target
        from ..store import Store

        if not yes:
            if not sys.stdin.isatty():
                raise InputError(f"remove --purge deletes {target_id}'s stored history for good; standard input is not a terminal to ask on, so pass --yes")
            if not click.confirm(f"delete every stored version, change and file of {target_id}?", default=False, err=True):
                echo_err("remove: nothing changed")
                return 0
        with Store.open(config) as store:
            counts = purge_target(store, target_id)
        if edit is not None:
            edit.write()
        echo_err(f"removed {target_id} from {path}; purged {counts['versions']} version(s), {counts['changes']} change(s), {counts['files']} file(s)")
        return 0
    assert edit is not None
    edit.write()
    if delete:
        echo_err(f"removed {target_id} from {path}; its stored history is kept (`monitor history {target_id}` still works)")
    else:
        echo_err(f"disabled {target_id} in {path} (enabled: false); `monitor remove {target_id} --delete` removes the entry")
    return 0


def _refusing(command: str, make: Any) -> Any:
    """The edit, or an error saying it was refused and nothing written."""
    from ..errors import ConfigError, InputError

    try:
        return make()
    except ConfigError as exc:
        reasons = "; ".join(f"{p.field}: {p.message}" for p in exc.problems)
        raise InputError(f"{command}: refused, targets.yaml would not validate ({reasons}); nothing written") from None
