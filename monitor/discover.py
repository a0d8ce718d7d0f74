"""Find the pages a policy relies on: its linked help pages, ranked by what they say about AI.

A privacy policy says "you can opt out in your settings" and links to a help page that says
what the setting does, often weeks before the policy itself does. Discovery starts from the
target's latest stored capture (no fetch unless asked), follows its links within the site
and the service's help domains (monitor/data/service.yaml), one or two levels deep, through
the ordinary fetcher (host gate, retries, limits), and reads each page with the flag rules:
a page whose sentences make AI-training, AI-sharing or opt-out statements ranks first, with
the words that matched as evidence. Pages already watched are left out.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urldefrag, urlsplit

from .errors import InputError
from .extract import load_data, strip_tracking
from .fetch import same_site, site_of

if TYPE_CHECKING:
    from .extract import Document
    from .fetch import Fetcher
    from .flags import RuleSet
    from .store import Store
    from .targets import Config, Target

MAX_DEPTH = 2


@dataclass(frozen=True)
class Evidence:
    category: str  # a flag category, or "data-use"
    words: str

    def to_dict(self) -> dict[str, str]:
        return {"category": self.category, "words": self.words}


@dataclass
class Candidate:
    """A linked page and why it may be worth watching."""

    url: str
    link_text: str
    depth: int
    found_on: str
    title: str | None = None
    score: float = 0.0
    evidence: list[Evidence] = field(default_factory=list)
    error: str | None = None  # the failure kind, when the page could not be read

    @property
    def speaks_of_ai(self) -> bool:
        return any(e.category != "data-use" for e in self.evidence)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url, "title": self.title, "link_text": self.link_text, "depth": self.depth,
            "found_on": self.found_on, "score": round(self.score, 2), "evidence": [e.to_dict() for e in self.evidence],
            "error": self.error,
        }


@dataclass
class Discovery:
    target_id: str
    depth: int
    followed: int = 0  # pages fetched
    not_followed: int = 0  # links left when the page budget (service.yaml max_pages) ran out
    skipped_watched: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target_id, "depth": self.depth, "followed": self.followed, "not_followed": self.not_followed,
            "already_watched": self.skipped_watched, "candidates": [c.to_dict() for c in self.candidates],
        }


def settings() -> Mapping[str, Any]:
    return load_data("service.yaml")


def normalise(url: str) -> str:
    """A URL as discovery compares them: no fragment, no tracking parameters, no trailing
    slash on the path, the host in lower case."""
    url = strip_tracking(urldefrag(url)[0])
    parts = urlsplit(url)
    path = parts.path.rstrip("/") or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}{query}"


_MD_LINK = re.compile(r"\[([^\]]*)\]\((https?://[^)\s]+)\)")


def links_in(body: bytes, base_url: str, fmt: str = "html") -> list[tuple[str, str]]:
    """(absolute URL, link text) of every http(s) link of a page, in page order."""
    out: list[tuple[str, str]] = []
    if fmt == "html":
        from urllib.parse import urljoin

        from .extract import clean_text, parse_html_tree

        soup = parse_html_tree(body)
        base_tag = soup.find("base", href=True)
        base = urljoin(base_url, base_tag["href"]) if base_tag else base_url
        for tag in soup.find_all("a", href=True):
            href = str(tag["href"]).strip()
            if not href or href.startswith("#") or href.lower().startswith(("javascript:", "mailto:", "tel:", "data:")):
                continue
            try:
                url = urljoin(base, href)
            except ValueError:
                continue
            out.append((url, clean_text(tag.get_text(" "))))
    elif fmt in ("md", "markdown", "txt", "text"):
        text = body.decode("utf-8", errors="replace")
        out.extend((url, label.strip()) for label, url in _MD_LINK.findall(text))
    return [(url, label) for url, label in out if urlsplit(url).scheme in ("http", "https")]


def allowed_host(url: str, origin: str, help_domains: Iterable[str]) -> bool:
    """Within the origin's site, or on one of the service's help domains."""
    if same_site(url, origin):
        return True
    host = (urlsplit(url).hostname or "").lower()
    return any(host == d or host.endswith("." + d) or site_of(url) == d for d in help_domains)


def watched(config: Config) -> set[str]:
    return {normalise(url) for target in config.targets for url in target.urls}


def stored_pages(store: Store, target: Target) -> list[tuple[str, bytes, str]]:
    """(URL, raw bytes, format) of the target's latest stored capture."""
    version = store.latest_version(target.id)
    if version is None:
        raise InputError(f"{target.id}: nothing stored yet; run `monitor check {target.id}` first, or pass --fetch")
    pages = []
    for raw in version.raws:
        ext = str(raw.get("path", "")).removesuffix(".gz").rsplit(".", 1)[-1]
        pages.append((str(raw.get("url") or target.url), store.read_raw(raw), ext))
    return pages


def score_page(rules: RuleSet, doc: Document, own: str | None) -> tuple[float, list[Evidence]]:
    """Points and evidence: the page's statements per flag category (the flag rules read
    them), then data-use words."""
    from .flags.statements import read_statements

    conf = settings()["discover"]
    weights: Mapping[str, float] = conf["weights"]
    seen: dict[str, list[str]] = {}
    for clause in doc.clauses:
        for st in read_statements(rules, clause.text, clause.section_path or None, own=own):
            words = " ".join(st.evidence.split())
            if words not in seen.setdefault(st.category, []):
                seen[st.category].append(words)
    score = 0.0
    evidence: list[Evidence] = []
    for category in sorted(seen, key=lambda c: -float(weights.get(c, 0))):
        found = seen[category]
        score += float(weights.get(category, 0)) + conf["repeat"] * min(len(found) - 1, conf["repeat_cap"])
        evidence.extend(Evidence(category, words) for words in found[:3])
    lower = " ".join(clause.text for clause in doc.clauses).lower()
    data_words = [w for w in conf["data_use"] if w.lower() in lower]
    score += min(len(data_words), conf["data_use_cap"])
    evidence.extend(Evidence("data-use", w) for w in data_words[: conf["data_use_cap"]])
    return score, evidence


def _is_page(url: str, skip: Sequence[str]) -> bool:
    path = urlsplit(url).path.lower()
    return not path.endswith(tuple(skip))


async def discover(
    config: Config,
    target: Target,
    pages: Sequence[tuple[str, bytes, str]],
    rules: RuleSet,
    fetcher: Fetcher,
    *,
    depth: int = 1,
) -> Discovery:
    """Follow the links of `pages` (the target's capture) `depth` levels deep and rank what
    they lead to. Fetches go through `fetcher` (its host gate keeps them polite)."""
    from .fetch import capture_target

    if not 1 <= depth <= MAX_DEPTH:
        raise InputError(f"--depth {depth}: discovery follows links 1 or {MAX_DEPTH} levels deep")
    conf = settings()
    help_domains = conf["help_domains"].get(target.service, [])
    skip = conf["discover"]["skip_extensions"]
    budget = int(conf["discover"]["max_pages"])
    known = watched(config)
    result = Discovery(target.id, depth)
    origin = target.url
    seen: set[str] = {normalise(u) for u in target.urls}
    frontier: list[tuple[str, str, str]] = []  # (url, link text, found on)

    def gather(found_on: str, body: bytes, fmt: str) -> None:
        for url, label in links_in(body, found_on, fmt):
            key = normalise(url)
            if key in seen or not allowed_host(url, origin, help_domains) or not _is_page(url, skip):
                continue
            seen.add(key)
            if key in known:
                result.skipped_watched.append(key)
                continue
            frontier.append((key, label, found_on))

    for url, body, fmt in pages:
        gather(url, body, fmt)
    probe = replace(target, id=f"{target.id}.discover", select=(), remove=(), wait_for=None, document="faq")
    for level in range(1, depth + 1):
        batch, rest, frontier = frontier[:budget], frontier[budget:], []
        budget -= len(batch)
        result.not_followed += len(rest)

        async def visit(url: str, label: str, found_on: str, level: int = level) -> tuple[Candidate, Any]:
            capture = await capture_target(fetcher, replace(probe, urls=(url,)))
            candidate = Candidate(url=url, link_text=label, depth=level, found_on=found_on)
            if capture.error is not None or capture.document is None:
                candidate.error = capture.error.kind if capture.error is not None else "empty"
                return candidate, capture
            candidate.title = capture.document.title
            candidate.score, candidate.evidence = score_page(rules, capture.document, target.service)
            return candidate, capture

        visited = await asyncio.gather(*(visit(*item) for item in batch))
        result.followed += len(visited)
        for candidate, capture in visited:
            result.candidates.append(candidate)
            if level < depth and capture.error is None:
                for raw in capture.raws:
                    gather(raw.url, raw.data, raw.ext)
        if budget <= 0:
            result.not_followed += len(frontier)
            break
    result.candidates.sort(key=lambda c: (c.error is not None, -c.score, c.depth, c.url))
    return result


def suggested_id(target: Target, url: str, taken: set[str]) -> str:
    """An id for a discovered page: the service, then the last words of its path
    (linkedin-help-data-for-generative-ai), unique in the file."""
    words = re.findall(r"[a-z0-9]+", urlsplit(url).path.lower())
    stem = re.sub(r"[^a-z0-9]+", "-", target.service.lower()).strip("-") or "page"
    tail = "-".join(words[-4:]) or "home"
    base = f"{stem}-{tail}"[:60].strip("-")
    ident, n = base, 2
    while ident in taken:
        ident, n = f"{base}-{n}", n + 1
    taken.add(ident)
    return ident


def entries_for(config: Config, target: Target, candidates: Sequence[Candidate]) -> list[dict[str, Any]]:
    """targets.yaml entries for chosen candidates: document faq, the same service and tags."""
    taken = {t.id for t in config.targets}
    return [
        {
            "id": suggested_id(target, c.url, taken),
            "service": target.service,
            "document": "faq",
            "url": c.url,
            "tags": list(target.tags),
        }
        for c in candidates
    ]


# ----------------------------------------------------------------------------- the daemon


def _create_table(store: Store) -> None:
    """Pages already reported for a target, so a page is announced once (idempotent DDL:
    the schema version is unchanged)."""
    store.db.execute(
        "create table if not exists discovered (target_id text not null, url text not null, first_seen text not null, "
        "score real, evidence text, primary key (target_id, url))"
    )


def _meta_key(target_id: str) -> str:
    return f"discover.last_run.{target_id}"


def discovery_due(store: Store, target: Target, now: float) -> bool:
    """A target with `discover:` whose last discovery is older than that interval."""
    if not target.discover:
        return False
    from .store import to_timestamp

    last = store.get_meta(_meta_key(target.id))
    if last is None:
        return True
    from datetime import datetime, timezone

    return bool(last <= to_timestamp(datetime.fromtimestamp(now - target.discover, timezone.utc)))


async def scheduled_discovery(config: Config, store: Store, fetcher: Fetcher, rules: RuleSet, target: Target, *, now: float) -> list[Candidate]:
    """The daemon's discovery for one target: the candidates that speak of AI and were never
    reported before, recorded and queued as one alert of kind `discovered` (never added to
    targets.yaml: a person decides, with `monitor discover --add`)."""
    import json

    from .records import utcnow

    if store.latest_version(target.id) is None:
        return []
    result = await discover(config, target, stored_pages(store, target), rules, fetcher, depth=1)
    found = [c for c in result.candidates if c.error is None and c.speaks_of_ai]
    with store.write():
        _create_table(store)
        known = {r["url"] for r in store.db.query("select url from discovered where target_id = ?", [target.id])}
        new = [c for c in found if c.url not in known]
        stamp = utcnow()
        for c in new:
            store.db.execute(
                "insert into discovered (target_id, url, first_seen, score, evidence) values (?, ?, ?, ?, ?)",
                [target.id, c.url, stamp, c.score, json.dumps([e.to_dict() for e in c.evidence], ensure_ascii=False)],
            )
        store.set_meta(_meta_key(target.id), stamp)
        if new:
            store.add_alerts(discovered_alerts(config, target, new))
    return new


def discovered_alerts(config: Config, target: Target, new: Sequence[Candidate]) -> list[dict[str, Any]]:
    """Outbox rows (one per channel) naming the new pages and their evidence."""
    from .alerts import _rows_for_channels, target_info  # the channels' fan-out, as for failing/recovered

    lines = [f"{len(new)} linked page(s) of {target.title} speak of AI and are not watched:"]
    for c in new:
        words = "; ".join(f"{e.category}: {e.words}" for e in c.evidence if e.category != "data-use")[:300]
        lines.append(f"{c.url} ({c.title or c.link_text or 'untitled'}): {words}")
    lines.append(f"To watch them: monitor discover {target.id} --add")
    payload = {"target": target_info(target), "detail": "\n".join(lines), "pages": [c.to_dict() for c in new]}
    return _rows_for_channels(config.alerts, target, "discovered", payload)
