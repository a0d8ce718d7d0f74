"""Commands that look at a service as a whole: `monitor discover` (the pages a policy links
to) and `monitor timeline` (every document of a service on one time axis)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from .base import State, cli, config_option, echo_err, output_option, pass_state, write_output

if TYPE_CHECKING:
    from ..discover import Discovery
    from ..targets_edit import Edit


def confirm_edit(edit: Edit, yes: bool, what: str) -> bool:
    """Show the edit and ask, unless --yes. Without a terminal to ask on, refuse (a script
    must say --yes explicitly rather than have a file changed behind its back)."""
    from ..errors import InputError

    echo_err(edit.diff().rstrip("\n"))
    if yes:
        return True
    if not sys.stdin.isatty():
        raise InputError(f"{what} would change {edit.path}; standard input is not a terminal to ask on, so pass --yes to write it")
    return click.confirm(f"write {edit.path}?", default=False, err=True)


@cli.command()
@config_option
@click.argument("target_id")
@click.option("--depth", type=click.IntRange(1, 2), default=1, show_default=True, help="Levels of links to follow (2 at most).")
@click.option("--fetch", "fetch_first", is_flag=True, help="Fetch the target now instead of reading its latest stored capture.")
@click.option("--add", "add", is_flag=True, help="Append the top candidates that speak of AI to targets.yaml (document faq).")
@click.option("--top", type=click.IntRange(1, 100), default=5, show_default=True, help="With --add: how many candidates at most.")
@click.option("--pick", metavar="N,N", help="With --add: these ranks of the list instead (1,3), whatever they speak of.")
@click.option("--yes", "-y", is_flag=True, help="With --add: write without asking.")
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Output format.")
@pass_state
def discover(state: State, target_id: str, depth: int, fetch_first: bool, add: bool, top: int, pick: str | None, yes: bool, fmt: str) -> int:
    """Find the help pages a policy links to, ranked by what they say about AI and opt-outs.

    Reads TARGET_ID's latest stored capture (no fetch unless --fetch), follows its links
    within the site and the service's help domains (monitor/data/service.yaml), politely
    (the same host gate, retries and limits as checks), and reads each page with the flag
    rules. Pages that speak of AI training, sharing data for AI, opt-outs and data use come
    first, with the words that matched. Pages already in targets.yaml are left out.

    \b
    Examples:
      monitor discover linkedin-privacy
      monitor discover linkedin-privacy --depth 2 --format json
      monitor discover linkedin-privacy --add --top 3 --yes
      monitor discover linkedin-privacy --add --pick 1,4

    --add appends the top candidates that speak of AI, or the ranks given with --pick
    (document faq, the target's service and tags) to targets.yaml, keeping its comments and layout; it shows the change and asks
    first unless --yes. Exit 0; 2 for an unknown target or nothing stored yet.
    """
    import asyncio

    from ..discover import discover as run_discover, entries_for, stored_pages
    from ..fetch import Fetcher, capture_target
    from ..flags import load_rules
    from ..store import Store

    config = state.config()
    target = config.target(target_id)
    rules = load_rules(strict=False)

    async def go() -> Discovery:
        async with Fetcher(config.defaults) as fetcher:
            if fetch_first:
                capture = await capture_target(fetcher, target)
                if capture.error is not None:
                    raise capture.error
                pages = [(raw.url, raw.data, raw.ext) for raw in capture.raws]
            else:
                with Store.open(config) as store:
                    pages = stored_pages(store, target)
            return await run_discover(config, target, pages, rules, fetcher, depth=depth)

    result = asyncio.run(go())
    if fmt == "json":
        write_output(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n", None)
    else:
        write_output(render_discovery(result), None)
    if not add:
        return 0
    readable = [c for c in result.candidates if c.error is None]
    if pick:
        from ..errors import InputError

        try:
            ranks = [int(n) for n in pick.split(",") if n.strip()]
        except ValueError:
            raise InputError(f"--pick {pick!r}: give ranks from the list, like 1,3") from None
        if not ranks or any(not 1 <= n <= len(readable) for n in ranks):
            raise InputError(f"--pick {pick!r}: ranks go from 1 to {len(readable)}")
        chosen = [readable[n - 1] for n in dict.fromkeys(ranks)]
    else:
        chosen = [c for c in readable if c.speaks_of_ai][:top]
    if not chosen:
        echo_err("discover: no candidate speaks of AI; targets.yaml unchanged")
        return 0
    from datetime import datetime, timezone

    from ..targets_edit import add_targets

    today = datetime.now(timezone.utc).date().isoformat()
    edit = add_targets(config.path, entries_for(config, target, chosen), note=f"found by `monitor discover {target.id}` on {today}")
    if not confirm_edit(edit, yes, "discover --add"):
        echo_err("discover: targets.yaml unchanged")
        return 0
    edit.write()
    echo_err(f"discover: added {len(chosen)} target(s) to {config.path}")
    return 0


def render_discovery(result: Discovery) -> str:
    ok = [c for c in result.candidates if c.error is None]
    failed = [c for c in result.candidates if c.error is not None]
    lines = [
        f"discover {result.target_id}: {result.followed} page(s) followed (depth {result.depth}), "
        f"{len(ok)} candidate(s), {len(set(result.skipped_watched))} already watched, {len(failed)} unreadable"
        + (f"; {result.not_followed} more link(s) not followed (max_pages in monitor/data/service.yaml)" if result.not_followed else "")
    ]
    for rank, c in enumerate(ok, start=1):
        title = c.title or c.link_text or ""
        lines.append(f"{rank:>3}. {c.score:5.1f}  {c.url}" + (f"  “{title}”" if title else ""))
        by_cat: dict[str, list[str]] = {}
        for e in c.evidence:
            by_cat.setdefault(e.category, []).append(e.words)
        if by_cat:
            lines.append("            " + "; ".join(f"{cat}: " + ", ".join(f"“{_short(w)}”" for w in words) for cat, words in by_cat.items()))
    for c in failed:
        lines.append(f"  -  ({c.error})  {c.url}")
    return "\n".join(lines) + "\n"


def _short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"



@cli.command()
@config_option
@click.argument("service")
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True, help="Output format.")
@click.option("--lag-threshold", metavar="DURATION", help="How much earlier one side must say a statement for policy-lag [default: lag_threshold in monitor/data/service.yaml, 1d].")
@output_option
@pass_state
def timeline(state: State, service: str, fmt: str, lag_threshold: str | None, output: str | None) -> int:
    """Every document of SERVICE on one time axis, with the signals only the whole service shows.

    Lists each version of each document of the service (policy, terms, help and FAQ pages),
    oldest first, with its change's flags and one-line summaries, and two cross-document
    signals, by the statements the flag engine reads (category, polarity, who acts):

    \b
      policy-lag     a help page said it at least --lag-threshold before the privacy
                     policy or terms did (or the other way round); shown on the later change
      policy-silent  a help page says it now, and no policy document of the service does yet

    \b
    Examples:
      monitor timeline LinkedIn
      monitor timeline LinkedIn --format json | jq '.signals[]'
      monitor timeline LinkedIn --format html -o linkedin-timeline.html
      monitor timeline LinkedIn --lag-threshold 7d

    Exit 0; 2 for an unknown service (the message lists the known ones).
    """
    from ..errors import InputError
    from ..flags import load_rules
    from ..service import build_timeline
    from ..store import Store
    from ..targets import parse_duration

    threshold = None
    if lag_threshold is not None:
        try:
            threshold = parse_duration(lag_threshold)
        except ValueError as exc:
            raise InputError(f"--lag-threshold: {exc}") from None
    config = state.config()
    with Store.open(config) as store:
        result = build_timeline(store, config, service, load_rules(strict=False), lag_threshold=threshold)
    if fmt == "json":
        write_output(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n", output)
    elif fmt == "html":
        from ..render.timeline import render_timeline_html

        write_output(render_timeline_html(result), output)
    else:
        from ..render.timeline import render_timeline_text

        write_output(render_timeline_text(result), output)
    return 0
