"""The HTML report writer: one self-contained page (summary, version timelines, filters, one
article per change), and the clause fragment stored with each change so a report over
thousands of changes assembles fragments instead of re-rendering every diff.

Jinja2 templates with autoescaping: everything captured from a page is data, never markup.
The page carries a Content-Security-Policy that allows only its own inline script (by hash),
so even a bug in escaping could not run a captured script or load anything from the network.
It never scrolls sideways (long words and addresses wrap anywhere) and prints cleanly."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from markupsafe import Markup, escape

from .jinja import bdi, environment
from .view import DiffView, Signal, dates_line, entry_title, plural, safe_href

if TYPE_CHECKING:
    from ..store import Store

RENDER_VERSION = 3  # bump when the clause fragment changes, so cached fragments are re-rendered

SCRIPT = """
(function(){
  var only=document.getElementById('only-flagged'), cat=document.getElementById('category'), tgt=document.getElementById('target');
  function apply(){
    var shown=0;
    document.querySelectorAll('article.change').forEach(function(a){
      var ok=(!only.checked||a.dataset.flagged==='1')&&(!cat.value||(' '+a.dataset.categories+' ').indexOf(' '+cat.value+' ')>=0)&&(!tgt.value||a.dataset.target===tgt.value);
      a.classList.toggle('hidden',!ok); if(ok){shown++;}
    });
    document.getElementById('shown').textContent=shown;
  }
  [only,cat,tgt].forEach(function(e){e.addEventListener('change',apply);});
  apply();
})();
"""


def csp() -> str:
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode()
    return f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"


def clauses_html(diff: dict[str, Any], *, side_by_side: bool = False) -> str:
    """The changed clauses of one diff, flagged first, cosmetic ones counted."""
    view = DiffView.of(diff)
    return environment().get_template("clauses.html.j2").render(view=view, side_by_side=side_by_side)


@dataclass(frozen=True)
class Article:
    """What an article's header shows; built from a change row (no diff parsed) or a diff.
    Every field is already escaped (Markup): the template only places them."""

    anchor: Markup
    heading: Markup  # '#14 v14→v15 LinkedIn · Privacy Policy 2 flags'
    target: Markup
    flagged: Markup  # '1' or '0'
    categories: Markup
    meta: Markup
    signals: Markup


def _heading(number: str, title: str, n_flags: int) -> Markup:
    flags = f' <span class="count flag-count">{n_flags}</span> flag{"s" if n_flags != 1 else ""}' if n_flags else ""
    return Markup(f"{escape(number)} {bdi(title)}{flags}" if number else f"{bdi(title)}{flags}")  # noqa: S704 - parts escaped


def _link(url: str) -> Markup:
    if not url:
        return Markup("")
    shown = escape(url)
    return Markup(f' · <a href="{shown}" rel="noreferrer noopener">{shown}</a>' if safe_href(url) else f" · {shown}")  # noqa: S704 - escaped


def _signals(signals: Sequence[Signal]) -> Markup:
    """The signal marks of a change, by signals.html.j2 (autoescaped); nothing rendered when none."""
    if not signals:
        return Markup("")
    return Markup(environment().get_template("signals.html.j2").render(signals=signals))  # noqa: S704 - autoescaped template


def row_article(row: dict[str, Any], known: dict[tuple[str, str, str, str], tuple[str, Markup, Markup]] | None = None,
                extra: Sequence[dict[str, Any]] = ()) -> Article:
    """The header of a change row. What every change of a target shares (title, address) is
    escaped once per target (`known`): a report of 10,000 changes spends its time on the
    changes, not on escaping the same title 10,000 times. `extra`: signals found beside the
    change's own (policy-lag, policy-silent: monitor.service.report_signals)."""
    key = (row["target_id"], row["service"], row["document"], row.get("url") or "")
    shared = known.get(key) if known is not None else None
    if shared is None:
        shared = (entry_title({"service": row["service"], "document": row["document"]}), escape(row["target_id"]), _link(row.get("url") or ""))
        if known is not None:
            known[key] = shared
    meta = [f"detected {row['detected_at'][:16].replace('T', ' ')} UTC"]
    if row.get("provenance") and row["provenance"] != "live":
        meta.append(f"imported from {row['provenance']}, observed {row['observed_at'][:10]}")
    meta.append(dates_line(row.get("old_effective"), row.get("new_effective")))
    if row.get("summary"):
        meta.append(row["summary"])
    n_flags = int(row["n_flags"] or 0)
    stored = row.get("signals")
    signals = [Signal.of(s) for s in [*(json.loads(stored) if stored not in (None, "", "[]") else []), *extra]]
    return Article(
        anchor=Markup(f"change-{int(row['id'])}"),  # noqa: S704 - a number
        heading=_heading(f"#{int(row['id'])} v{int(row['old_seq'])}→v{int(row['new_seq'])}", shared[0], n_flags),
        target=shared[1], flagged=Markup("1" if n_flags else "0"),  # noqa: S704 - a constant
        categories=escape((row.get("categories") or "").replace(",", " ")), meta=bdi(" · ".join(meta)) + shared[2],
        signals=_signals(signals),
    )


def row_fragment(row: dict[str, Any], store: Store | None = None, *, side_by_side: bool = False) -> str:
    """The cached clause HTML of a change row, rendered afresh when missing or stale."""
    if not side_by_side and row.get("html") and row.get("html_version") == RENDER_VERSION:
        return str(row["html"])
    diff = row.get("diff")
    if diff is None and store is not None:
        diff = store.db.execute("select diff from changes where id = ?", [row["id"]]).fetchone()[0]
    return clauses_html(json.loads(diff), side_by_side=side_by_side)


def _stamp(observed_at: str) -> float:
    return datetime.fromisoformat(observed_at.replace("Z", "+00:00")).timestamp()


def timeline(
    target_id: str, versions: Sequence[dict[str, Any]], flagged_versions: set[int], *, axis: tuple[float, float] | None = None, service: str = ""
) -> dict[str, Any] | None:
    """Versions of one target on a time axis: a dot per version, red when its change was flagged.
    `axis` (first, last timestamps) puts the documents of one service on the same axis."""
    if not versions:
        return None
    width, pad = 1000, 30
    times = [_stamp(v["observed_at"]) for v in versions]
    lo, hi = axis or (min(times), max(times))
    span = (hi - lo) or 1.0
    dots = []
    for version, t in zip(versions, times):
        label = f"v{version['seq']} {version['observed_at'][:10]}" + (f" (effective {version['effective_date']})" if version.get("effective_date") else "")
        dots.append({"x": f"{pad + (width - 2 * pad) * (t - lo) / span:.1f}", "flagged": version["seq"] in flagged_versions, "label": label})
    return {
        "target": target_id, "count": plural(len(versions), "version"), "dots": dots, "width": width, "pad": pad,
        "first": datetime.fromtimestamp(lo, timezone.utc).date().isoformat() if axis else versions[0]["observed_at"][:10],
        "last": datetime.fromtimestamp(hi, timezone.utc).date().isoformat() if axis else versions[-1]["observed_at"][:10],
        "service": service,
    }


def _article_chunks(articles: Iterable[tuple[Article, str]], size: int = 500) -> Iterator[str]:
    """Articles rendered a few hundred at a time: one template call per batch, not per change.
    Each fragment was rendered (and escaped) by clauses.html.j2 and each Article field is
    escaped Markup, so the batches are page HTML as they are."""
    template = environment().get_template("articles.html.j2")
    batch: list[tuple[Article, str]] = []
    for article in articles:
        batch.append(article)
        if len(batch) == size:
            yield template.render(articles=batch)
            batch = []
    if batch:
        yield template.render(articles=batch)


_ARTICLES_SLOT = "<!--articles-->"


def _page(articles: Iterable[str], **context: Any) -> Iterator[str]:
    """The page around its articles. The articles are streamed into the page's slot as they
    are: passing megabytes of rendered HTML through the page template as Markup would copy
    them again at each step (a third of the time of a 10,000-change report)."""
    stream = environment().get_template("report.html.j2").generate(
        script=Markup(SCRIPT), csp=csp(), articles=[Markup(_ARTICLES_SLOT)], **context  # noqa: S704 - our own constants
    )
    for piece in stream:
        if _ARTICLES_SLOT in piece:
            head, tail = piece.split(_ARTICLES_SLOT, 1)
            yield head
            yield from articles
            yield tail
        else:
            yield piece


def report_html(rows: Sequence[dict[str, Any]], store: Store | None = None, *, side_by_side: bool = False, generated: str | None = None,
                signals: dict[int, list[dict[str, Any]]] | None = None) -> Iterator[str]:
    """The report page in pieces: summary, timelines, filters, then one article per change.
    Takes change rows (query_changes) and needs no diff parsing when their clause HTML is cached.
    `signals`: change id -> the cross-document signals shown on it (monitor.service.report_signals)."""
    signals = signals or {}
    from ..store import utcnow

    by_target: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_target[row["target_id"]].append(row)
    flagged_total = sum(1 for row in rows if row["n_flags"])
    summary = []
    for target_id, items in sorted(by_target.items()):
        summary.append({
            "target": target_id, "title": entry_title(items[0]), "changes": len(items),
            "flags": sum(r["n_flags"] or 0 for r in items),
            "categories": ", ".join(sorted({c for r in items for c in (r.get("categories") or "").split(",") if c})),
            "latest": items[0]["detected_at"][:10],
        })
    timelines = []
    if store is not None:
        # Per service, every document on one axis (`monitor timeline SERVICE` has the signals).
        services: dict[str, list[tuple[str, list[dict[str, Any]]]]] = defaultdict(list)
        for target_id, items in sorted(by_target.items()):
            versions = list(store.db.query(
                "select seq, observed_at, effective_date from versions where target_id = ? order by observed_at, seq", [target_id]
            ))
            services[str(items[0].get("service") or "")].append((target_id, versions))
        for service, documents in sorted(services.items()):
            stamps = [_stamp(v["observed_at"]) for _, versions in documents for v in versions]
            axis = (min(stamps), max(stamps)) if stamps else None
            for target_id, versions in documents:
                flagged = {r["new_seq"] for r in by_target[target_id] if r["n_flags"]}
                line = timeline(target_id, versions, flagged, axis=axis, service=service)
                if line:
                    timelines.append(line)
    known: dict[tuple[str, str, str, str], tuple[str, Markup, Markup]] = {}
    articles = _article_chunks((row_article(row, known, signals.get(row["id"], ())), row_fragment(row, store, side_by_side=side_by_side)) for row in rows)
    yield from _page(
        title="Privacy monitor report",
        subtitle=f"{plural(len(rows), 'change')}, {flagged_total} flagged · generated {generated or utcnow()[:16].replace('T', ' ')} UTC",
        summary=summary, timelines=timelines, articles=articles, total=len(rows), with_script=True,
        categories=sorted({c for row in rows for c in (row.get("categories") or "").split(",") if c}), targets=sorted(by_target),
    )


def render_report_html(rows: Sequence[dict[str, Any]], store: Store | None = None, *, side_by_side: bool = False, generated: str | None = None,
                       signals: dict[int, list[dict[str, Any]]] | None = None) -> str:
    """The whole report as one self-contained page (see report_html)."""
    return "".join(report_html(rows, store, side_by_side=side_by_side, generated=generated, signals=signals))


def render_diff_html(diff: dict[str, Any], *, title: str | None = None, side_by_side: bool = False) -> str:
    """One diff (`monitor diff`, `monitor show`) as a page of its own."""
    view = DiffView.of(diff, title=title)
    article = Article(
        anchor=Markup("diff"), heading=_heading("", view.title, len(view.flags)), target=Markup(""),
        flagged=Markup("1" if view.flags else "0"), categories=escape(" ".join(view.categories)),  # noqa: S704 - constants
        meta=bdi(f"{view.dates_line} · {view.counts_line}"), signals=_signals(view.signals),
    )
    fragment = clauses_html(diff, side_by_side=side_by_side)
    return "".join(_page(
        title=view.title, subtitle="monitor diff", summary=[], timelines=[], articles=_article_chunks([(article, fragment)]), total=1,
        with_script=False, categories=[], targets=[],
    ))
