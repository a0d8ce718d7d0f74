"""Shared pieces of the benchmarks: figures with budgets, a table, a local web server,
pages made from the real policy corpus, and process-tree CPU and memory readings.

Figures are ratios where the machine's speed would otherwise decide the verdict (this
machine is shared and noisy): a budget compares two things measured in the same run.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "ota"
sys.path.insert(0, str(ROOT))

# The local web server of the demo (backlog large enough for bursts of concurrent fetches).
from monitor.demo import LocalServer as PageServer  # noqa: E402, F401 - re-exported for the benchmarks


@dataclass
class Figure:
    benchmark: str
    name: str
    value: float
    unit: str
    budget: str = ""  # e.g. ">= 5", "<= 1024"; empty = informational
    met: bool | None = None

    @classmethod
    def check(cls, benchmark: str, name: str, value: float, unit: str, op: str, limit: float) -> Figure:
        met = value >= limit if op == ">=" else value <= limit
        return cls(benchmark, name, value, unit, f"{op} {limit:g}", met)


def print_table(figures: Iterable[Figure], stream: Any = None) -> None:
    stream = stream or sys.stdout
    rows = [("benchmark", "figure", "value", "unit", "budget", "met")]
    for f in figures:
        value = f"{f.value:.3g}" if abs(f.value) < 1000 else f"{f.value:,.0f}"
        met = "" if f.met is None else ("yes" if f.met else "NO")
        rows.append((f.benchmark, f.name, value, f.unit, f.budget, met))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        stream.write("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")
        if index == 0:
            stream.write("  ".join("-" * w for w in widths) + "\n")
    stream.flush()


def save_results(figures: list[Figure], path: Path | None = None) -> Path:
    path = path or ROOT / "benchmarks" / "results.json"
    path.write_text(json.dumps([asdict(f) for f in figures], indent=2) + "\n")
    return path


def best_of(runs: int, func: Any) -> float:
    """The fastest of several runs, in seconds: the least disturbed by other load."""
    import time

    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def corpus_markdown_files() -> list[Path]:
    if not CORPUS.exists():
        raise SystemExit(f"the shared corpus is missing at {CORPUS}; copy ../shared next to the repository")
    return sorted(p for p in CORPUS.rglob("*.md") if p.name != "README.md")


def markdown_page(text: str, title: str) -> bytes:
    """A policy page (static HTML, no JavaScript needed) rendered from corpus Markdown."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(text)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><nav><a href='/'>Home</a></nav><main>{body}</main><footer>© example</footer></body></html>"
    ).encode("utf-8")


def tree_cpu_seconds() -> float:
    """CPU seconds used so far by this process and every descendant (Chromium included)."""
    import psutil

    total = 0.0
    procs = [psutil.Process()]
    procs += procs[0].children(recursive=True)
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
    return total


def tree_rss_bytes(pid: int | None = None) -> int:
    """Memory of a process and its descendants: the sum of their proportional set sizes
    (PSS: shared pages split between the processes sharing them), so Chromium's many
    processes are not counted several times over; RSS where PSS cannot be read."""
    import psutil

    root = psutil.Process(pid or os.getpid())
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except psutil.AccessDenied:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        except psutil.Error:
            continue
    return total
