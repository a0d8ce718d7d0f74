"""Capture benchmark: throughput, CPU and storage of unchanged checks.

Serves N local pages made from the real policy corpus (static HTML, no JavaScript needed),
stores a first version of each, then times a pass in which nothing changed, for engines
http, browser and auto at concurrency 1, 2 and 4.

Budgets: auto at least 5 times the throughput of browser-only (same concurrency, same run),
and at most 1 KB of storage per unchanged check.

    python benchmarks/capture.py [--pages 200] [--concurrency 1,2,4]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from common import Figure, PageServer, corpus_markdown_files, markdown_page, print_table, tree_cpu_seconds

NAME = "capture"


def make_pages(count: int) -> dict[str, bytes]:
    files = corpus_markdown_files()
    return {f"/policy/{i}": markdown_page(files[i % len(files)].read_text(encoding="utf-8"), f"Policy {i}") for i in range(count)}


def storage_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def config_text(server: PageServer, paths: list[str], engine: str, concurrency: int) -> str:
    lines = [
        "defaults:",
        f"  engine: {engine}",
        f"  concurrency: {concurrency}",
        f"  host_concurrency: {concurrency}",
        "  host_delay: 0s",
        "  confirm_delay: 0s",
        "  timeout: 30s",
        "targets:",
    ]
    for i, path in enumerate(paths):
        lines += [f"  - id: p{i}", "    service: Bench", "    document: privacy-policy", f"    url: {server.url(path)}"]
    return "\n".join(lines) + "\n"


async def one_setting(server: PageServer, paths: list[str], engine: str, concurrency: int) -> tuple[float, float, float]:
    """(pages per second, CPU seconds per check, storage bytes per unchanged check)."""
    from monitor.check import CheckContext, run_pass
    from monitor.fetch import Fetcher
    from monitor.flags import load_rules
    from monitor.store import Store
    from monitor.targets import parse_config

    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "targets.yaml"
        config_path.write_text(config_text(server, paths, engine, concurrency))
        config = parse_config(config_path.read_text(), config_path)
        store = Store.open(config)
        store.sync_targets(config.targets)
        async with Fetcher(config.defaults) as fetcher:
            ctx = CheckContext(config, store, fetcher, rules=load_rules())
            first = await run_pass(ctx, list(config.targets))
            assert first.counts["first-version"] == len(paths), first.text()
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            before_bytes = storage_bytes(Path(tmp))
            cpu0, t0 = tree_cpu_seconds(), time.perf_counter()
            second = await run_pass(ctx, list(config.targets))
            elapsed, cpu = time.perf_counter() - t0, tree_cpu_seconds() - cpu0
            assert second.counts["unchanged"] == len(paths), second.text()
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        grown = storage_bytes(Path(tmp)) - before_bytes
        store.close()
    return len(paths) / elapsed, cpu / len(paths), grown / len(paths)


def run(pages: int = 200, concurrencies: tuple[int, ...] = (1, 2, 4)) -> list[Figure]:
    server = PageServer(make_pages(pages))
    paths = sorted(server.pages)
    figures: list[Figure] = []
    rate: dict[tuple[str, int], float] = {}
    worst_storage = 0.0
    try:
        for concurrency in concurrencies:
            for engine in ("http", "browser", "auto"):
                pps, cpu, grown = asyncio.run(one_setting(server, paths, engine, concurrency))
                rate[(engine, concurrency)] = pps
                worst_storage = max(worst_storage, grown)
                figures.append(Figure(NAME, f"{engine} c={concurrency} pages/s", pps, "pages/s"))
                figures.append(Figure(NAME, f"{engine} c={concurrency} CPU per unchanged check", cpu, "CPU s"))
                figures.append(Figure(NAME, f"{engine} c={concurrency} storage per unchanged check", grown, "bytes"))
    finally:
        server.close()
    for concurrency in concurrencies:
        ratio = rate[("auto", concurrency)] / rate[("browser", concurrency)]
        figures.append(Figure.check(NAME, f"auto/browser throughput c={concurrency}", ratio, "x", ">=", 5))
    figures.append(Figure.check(NAME, "storage per unchanged check (worst)", worst_storage, "bytes", "<=", 1024))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--concurrency", default="1,2,4", help="comma-separated levels")
    args = parser.parse_args()
    figures = run(args.pages, tuple(int(c) for c in args.concurrency.split(",")))
    print_table(figures)
    raise SystemExit(0 if all(f.met is not False for f in figures) else 1)


if __name__ == "__main__":
    main()
