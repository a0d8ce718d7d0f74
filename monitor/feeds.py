"""Atom feeds of changes: one for all targets, one per service, one per target.

Built with feedgen from the one view of a change (monitor.render.view.DiffView), so a feed
says what the email and the report say: the same headline, the same flags with their
one-line summaries. Each entry has an id that never changes (`change_urn`), so feed readers
show a change once however often the file is rewritten; the daemon rewrites the files it
concerns after each change, atomically (a temporary file, then os.replace), so a reader
never sees half a feed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import write_atomic
from .render.email import ChangeSummary, change_link
from .render.jinja import environment
from .render.view import DiffView, one_line
from .store import parse_timestamp

if TYPE_CHECKING:
    from .store import Store
    from .targets import Config

log = logging.getLogger("monitor.feeds")

AUTHOR = "privacy monitor"
MAX_SUMMARY_CHARS = 300
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")  # characters XML 1.0 cannot hold


def change_urn(store_id: str, change_id: int) -> str:
    """The stable id of a change: the same in the feed, the chat message and every rewrite."""
    return f"urn:privacy-monitor:{store_id}:change:{change_id}"


def slug(text: str) -> str:
    """'LinkedIn' -> 'linkedin': a service name as a file name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "service"


@dataclass(frozen=True)
class Feed:
    """One feed: its file (relative to feeds.dir), its title, and the targets it covers."""

    key: str  # all | service/<slug> | target/<id>
    title: str
    targets: tuple[str, ...]  # empty: every target

    @property
    def file(self) -> str:
        return f"{self.key}.atom"


def all_feeds(config: Config) -> list[Feed]:
    """The feeds the configuration asks for: all, one per service, one per target."""
    feeds = [Feed("all", "Privacy monitor: all changes", ())]
    services: dict[str, list[str]] = {}
    for target in config.targets:
        services.setdefault(target.service, []).append(target.id)
    feeds += [Feed(f"service/{slug(name)}", f"Privacy monitor: {name}", tuple(ids)) for name, ids in sorted(services.items())]
    feeds += [Feed(f"target/{t.id}", f"Privacy monitor: {t.title}", (t.id,)) for t in config.targets]
    return feeds


def feeds_touching(config: Config, target_ids: Iterable[str]) -> list[Feed]:
    """The feeds a change to these targets appears in."""
    wanted = set(target_ids)
    return [f for f in all_feeds(config) if not f.targets or wanted & set(f.targets)]


def report_feed(config: Config, targets: Sequence[str]) -> Feed:
    """The feed `monitor report --format atom` writes: a target's when one is named."""
    if len(targets) == 1:
        return next(f for f in all_feeds(config) if f.key == f"target/{targets[0]}")
    return all_feeds(config)[0]


# ----------------------------------------------------------------------------- building


def _xml(text: str) -> str:
    return _NOT_XML.sub("", text)


def _when(stamp: str | None) -> datetime:
    try:
        return parse_timestamp(stamp or "")
    except (ValueError, TypeError):
        return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Entry:
    """One change as a feed entry, all read from its view: the headline, the link, the
    summary lines (flags with their one-line summaries), the HTML content, the categories."""

    change_id: int
    title: str
    link: str
    summary: str
    html: str
    updated: datetime
    categories: tuple[tuple[str, str], ...]  # (category, plain-words label)

    @classmethod
    def of(cls, config: Config, view: DiffView) -> Entry:
        assert view.id is not None
        summary = ChangeSummary.of_view(view, config.alerts.min_severity)
        link = change_link(config, view.id) or view.url
        lines = [summary.title_line]
        lines += [one_line(f"{f.label} ({f.severity}): {f.summary or f.evidence}", MAX_SUMMARY_CHARS) for f in view.flags]
        lines += [one_line(f"{s.kind}: {s.message}", MAX_SUMMARY_CHARS) for s in view.signals]
        lines.append(f"{view.counts_line}; {view.dates_line}")
        html = environment().get_template("feed_entry.html.j2").render(
            headline=summary.title_line, flags=view.flags, signals=view.signals, counts=view.counts_line,
            dates=view.dates_line, versions=view.versions, link=link,
        )
        categories = tuple((f.category, f.label) for f in {f.category: f for f in view.flags}.values())
        return cls(view.id, summary.title_line, link, "\n".join(lines), html, _when(view.detected_at), categories)


def atom_feed(config: Config, store_id: str, feed: Feed, entries: Sequence[Entry]) -> bytes:
    """The feed as Atom XML bytes. `updated` is the newest entry's time, so rewriting a feed
    that gained nothing gives the same bytes."""
    from feedgen.feed import FeedGenerator

    gen = FeedGenerator()
    gen.id(f"urn:privacy-monitor:{store_id}:feed:{feed.key}")
    gen.title(feed.title)
    gen.author({"name": AUTHOR})
    gen.subtitle("Changes to privacy policies, terms and help pages, with their AI-training and opt-out flags.")
    if config.feeds is not None and config.feeds.url:
        gen.link(href=f"{config.feeds.url.rstrip('/')}/{feed.file}", rel="self")
    if config.alerts.report_url:
        gen.link(href=config.alerts.report_url.split("#", 1)[0], rel="alternate")
    gen.updated(max((e.updated for e in entries), default=datetime(1970, 1, 1, tzinfo=timezone.utc)))
    for item in entries:
        entry = gen.add_entry(order="append")
        entry.id(change_urn(store_id, item.change_id))
        entry.title(_xml(item.title))
        entry.updated(item.updated)
        entry.published(item.updated)
        entry.link(href=item.link, rel="alternate")
        entry.summary(_xml(item.summary))
        entry.content(_xml(item.html), type="html")
        for term, label in item.categories:
            entry.category(term=term, label=label)
    return gen.atom_str(pretty=True)


def _newest_first(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda e: (e["detected_at"], e["id"]), reverse=True)


def report_atom(store: Store, config: Config, entries: Sequence[dict[str, Any]], targets: Sequence[str]) -> str:
    """`monitor report --format atom`: the report's changes as one feed, newest first."""
    from .report import views_of

    items = [Entry.of(config, view) for view in views_of(_newest_first(entries))]
    return atom_feed(config, store.get_meta("store_id") or "0", report_feed(config, targets), items).decode("utf-8")


# ----------------------------------------------------------------------------- writing




class FeedWriter:
    """Rewrites the feed files. It keeps each change's entry (keyed by the change and its
    latest evaluation), so the rewrite after one change reads and renders that change, not
    every entry of every feed again; the daemon keeps one for as long as its config."""

    def __init__(self, config: Config):
        self.config = config
        self._entries: dict[tuple[int, Any], Entry] = {}

    def write(self, store: Store, target_ids: Iterable[str] | None = None) -> list[Path]:
        """Rewrite the feeds that concern these targets (all of them when None)."""
        from .report import ReportQuery, query_changes

        config = self.config
        if config.feeds is None:
            return []
        store_id = store.get_meta("store_id") or "0"
        feeds = all_feeds(config) if target_ids is None else feeds_touching(config, target_ids)
        # The limit is taken in the report's order (by day, flagged first within a day): on
        # the oldest day kept, a flagged change wins over an unflagged one.
        chosen = {f.key: _newest_first(query_changes(store, ReportQuery(targets=f.targets, limit=config.feeds.entries), diff=False)) for f in feeds}
        rows = {(r["id"], r.get("evaluation_id")): r for kept in chosen.values() for r in kept}
        self._load(store, [row for key, row in rows.items() if key not in self._entries])
        if target_ids is None or len(self._entries) > config.feeds.entries * len(all_feeds(config)):
            self._entries = {key: self._entries[key] for key in rows}  # bounded: only what the feeds can show
        written = []
        for feed in feeds:
            items = [self._entries[(r["id"], r.get("evaluation_id"))] for r in chosen[feed.key]]
            path = config.feeds.dir / feed.file
            write_atomic(path, atom_feed(config, store_id, feed, items), mode=0o644)
            written.append(path)
        return written

    def write_alone(self, target_ids: Iterable[str] | None = None) -> list[Path]:
        """`write` with a connection of its own (for a worker thread)."""
        from .store import Store

        with Store.open(self.config) as store:
            return self.write(store, target_ids)

    def _load(self, store: Store, rows: list[dict[str, Any]]) -> None:
        """Read the diffs of these changes (the latest evaluation's, if re-evaluated) and
        make their entries."""
        from .report import change_entry

        for row in rows:
            if row.get("evaluation_id"):
                diff = store.db.execute("select diff from evaluations where id = ?", [row["evaluation_id"]]).fetchone()[0]
            else:
                diff = store.db.execute("select diff from changes where id = ?", [row["id"]]).fetchone()[0]
            entry = change_entry({**row, "diff": diff})
            self._entries[(row["id"], row.get("evaluation_id"))] = Entry.of(self.config, DiffView.of(entry, entry))


class FeedUpdater:
    """The daemon's feed writing: each update runs in a worker thread with its own
    connection (a large store's first write takes seconds), one at a time, and is logged;
    a failure is an event, never the daemon's end."""

    def __init__(self, log: Callable[..., None]):
        self.log = log
        self.writer: FeedWriter | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def update(self, config: Config, target_ids: list[str] | None) -> None:
        """Queue a rewrite of the feeds these targets are in (all when None); call from the loop."""
        if self.writer is None or self.writer.config is not config:  # a reload starts afresh
            self.writer = FeedWriter(config)
        task = asyncio.get_running_loop().create_task(self._run(self.writer, target_ids))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, writer: FeedWriter, target_ids: list[str] | None) -> None:
        async with self._lock:
            try:
                written = await asyncio.to_thread(writer.write_alone, target_ids)
            except Exception as exc:  # a feed must never stop the checks
                self.log("feeds-error", error=f"{exc.__class__.__name__}: {exc}")
            else:
                self.log("feeds-written", files=len(written), targets=",".join(target_ids) if target_ids else None)


def write_feeds(store: Store, config: Config, target_ids: Iterable[str] | None = None) -> list[Path]:
    """Rewrite the feed files that concern these targets (all of them when None), once."""
    return FeedWriter(config).write(store, target_ids)
