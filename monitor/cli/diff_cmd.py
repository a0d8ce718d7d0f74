"""`monitor diff`: compare two files or stored versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .base import State, cli, config_option, output_option, pass_state, use_color, write_output

if TYPE_CHECKING:
    from ..extract import Document


def load_side(state: State, spec: str, stores: dict[str, Any]) -> Document:
    """A local file, or a stored version (TARGET_ID@N, @latest, @latest~K)."""
    from ..errors import InputError
    from ..extract import extract_file

    path = Path(spec)
    if path.exists() or "@" not in spec:
        if not path.exists():
            raise InputError(f"{spec}: no such file (stored versions are written TARGET_ID@N, TARGET_ID@latest or TARGET_ID@latest~1)")
        return extract_file(path)
    if "store" not in stores:
        from ..store import Store

        config = state.config()
        if not config.db_path.exists():
            raise InputError(f"{spec}: no database at {config.db_path} yet; run `monitor check` first")
        stores["store"] = Store.open(config)
    store = stores["store"]
    version = store.resolve(spec)
    return store.document(version)


@cli.command()
@config_option
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "json", "html", "markdown"]), default="text", show_default=True, help="Output format; json is a stable contract (see the README).")
@click.option("--cosmetic", is_flag=True, help="Also show cosmetic changes (typography, moves, date line).")
@click.option("--side-by-side", is_flag=True, help="HTML: old and new next to each other.")
@output_option
@pass_state
def diff(state: State, old: str, new: str, fmt: str, cosmetic: bool, side_by_side: bool, output: str | None) -> int:
    """Compare OLD and NEW clause by clause, and flag AI-training and opt-out changes.

    OLD and NEW are local files (HTML, Markdown, text or PDF, recognised by extension or
    content) or stored versions: TARGET_ID@N, TARGET_ID@latest, TARGET_ID@latest~1.

    \b
    Examples:
      monitor diff old.html new.html
      monitor diff linkedin-privacy@latest~1 linkedin-privacy@latest
      monitor diff a.md b.md --format json | jq '.changes[] | select(.flags != [])'
      monitor diff a.md b.md --format html -o diff.html

    Text output shows flagged clauses first, insertions in green and deletions in red
    ({+inserted+} and [-deleted-] when not on a terminal). Exit 0 whether or not anything
    changed; 2 for a missing, unreadable or binary file or an unknown version.
    """
    from ..diff import compare

    stores: dict[str, Any] = {}
    try:
        old_doc = load_side(state, old, stores)
        new_doc = load_side(state, new, stores)
    finally:
        if "store" in stores:
            stores["store"].close()
    result = compare(old_doc, new_doc).to_dict()
    if fmt == "json":
        text = json.dumps(result, ensure_ascii=False, indent=2) + "\n"
        write_output(text, output)
        return 0
    from ..report import render_diff_html, render_diff_markdown, render_diff_text  # not needed for JSON

    if fmt == "html":
        text = render_diff_html(result, title=f"{old} → {new}", side_by_side=side_by_side)
    elif fmt == "markdown":
        text = render_diff_markdown(result, title=f"{old} → {new}")
    else:
        text = render_diff_text(result, color=output is None and use_color(), title=f"{old} → {new}", show_cosmetic=cosmetic)
    write_output(text, output)
    return 0
