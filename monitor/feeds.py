"""Atom feeds of changes: one for all targets, one per service, one per target.

Built with feedgen from the one view of a change (monitor.render.view.DiffView), so a feed
says what the email and the report say: the same headline, the same flags with their
one-line summaries. Each entry has an id that never changes (`change_urn`), so feed readers
show a change once however often the file is rewritten; the daemon rewrites the files it
concerns after each change, atomically (a temporary file, then os.replace), so a reader
never sees half a feed.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def entry_parts(config: Config, view: DiffView) -> dict[str, Any]:
    """What one entry says, all read from the view: headline, link, summary lines, flags."""
    summary = ChangeSummary.of_view(view, config.alerts.min_severity)
    link = (change_link(config, view.id) if view.id is not None else None) or view.url
    lines = [summary.title_line]
    lines += [one_line(f"{f.label} ({f.severity}): {f.summary or f.evidence}", MAX_SUMMARY_CHARS) for f in view.flags]
    lines += [one_line(f"{s.kind}: {s.message}", MAX_SUMMARY_CHARS) for s in view.signals]
    lines.append(f"{view.counts_line}; {view.dates_line}")
    html = environment().get_template("feed_entry.html.j2").render(
        headline=summary.title_line, flags=view.flags, signals=view.signals, counts=view.counts_line,
        dates=view.dates_line, versions=view.versions, link=link,
    )
    return {"title": summary.title_line, "link": link, "summary": "\n".join(lines), "html": html}


def atom_feed(config: Config, store_id: str, feed: Feed, views: Sequence[DiffView]) -> bytes:
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
    stamps = [_when(v.detected_at) for v in views]
    gen.updated(max(stamps) if stamps else datetime(1970, 1, 1, tzinfo=timezone.utc))
    for view, stamp in zip(views, stamps):
        assert view.id is not None
        parts = entry_parts(config, view)
        entry = gen.add_entry(order="append")
        entry.id(change_urn(store_id, view.id))
        entry.title(_xml(parts["title"]))
        entry.updated(stamp)
        entry.published(stamp)
        entry.link(href=parts["link"], rel="alternate")
        entry.summary(_xml(parts["summary"]))
        entry.content(_xml(parts["html"]), type="html")
        for flag in {f.category: f for f in view.flags}.values():
            entry.category(term=flag.category, label=flag.label)
    return gen.atom_str(pretty=True)


def feed_views(store: Store, feed: Feed, limit: int | None) -> list[DiffView]:
    """The feed's substantive changes as views, newest first. The `limit` is taken in the
    report's order (by day, flagged first within a day), so on the oldest day kept a flagged
    change wins over an unflagged one; the kept entries are then put in time order."""
    from .report import ReportQuery, select_changes, views_of

    entries = select_changes(store, ReportQuery(targets=feed.targets, limit=limit))
    entries.sort(key=lambda e: (e["detected_at"], e["id"]), reverse=True)
    return views_of(entries)


def report_atom(store: Store, config: Config, entries: Sequence[dict[str, Any]], targets: Sequence[str]) -> str:
    """`monitor report --format atom`: the report's changes as one feed, newest first."""
    from .report import views_of

    ordered = sorted(entries, key=lambda e: (e["detected_at"], e["id"]), reverse=True)
    return atom_feed(config, store.get_meta("store_id") or "0", report_feed(config, targets), views_of(ordered)).decode("utf-8")


# ----------------------------------------------------------------------------- writing


def write_atomic(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never a part: a temporary file in the same
    directory, flushed, then renamed over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_feeds(store: Store, config: Config, target_ids: Iterable[str] | None = None) -> list[Path]:
    """Rewrite the feed files that concern these targets (all of them when None)."""
    if config.feeds is None:
        return []
    store_id = store.get_meta("store_id") or "0"
    feeds = all_feeds(config) if target_ids is None else feeds_touching(config, target_ids)
    written = []
    for feed in feeds:
        path = config.feeds.dir / feed.file
        write_atomic(path, atom_feed(config, store_id, feed, feed_views(store, feed, config.feeds.entries)))
        written.append(path)
    return written
