"""What a full-page screenshot costs per version, by format and quality, on corpus pages.

Each page is a policy from the shared corpus (Open Terms Archive Markdown), rendered as the
demo renders LinkedIn's (monitor.demo.render_page), loaded in the headless Chromium the
monitor drives, and captured whole through DevTools (Page.captureScreenshot, as the browser
engine does) in PNG, JPEG and WebP at a few qualities. Printed: the page height, the bytes of
each format, and what an unchanged check adds to the store (it keeps no screenshot).

    python benchmarks/screenshots.py            # the default pages
    python benchmarks/screenshots.py --pages 6  # more of the corpus
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import sys
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CORPUS = ROOT.parent / "shared" / "corpus" / "ota"
DEFAULT_PAGES = (
    "LinkedIn/Privacy Policy",
    "Google/Privacy Policy",
    "Zoom/Terms of Service",
    "ChatGPT/Privacy Policy",
)
FORMATS = (("png", None), ("jpeg", 60), ("jpeg", 80), ("webp", 50), ("webp", 80), ("webp", 100))  # webp100: lossless
MAX_TILE = {"png": 32000, "jpeg": 65500, "webp": 16383}


def corpus_pages(count: int) -> list[tuple[str, str]]:
    found = []
    for name in DEFAULT_PAGES:
        folder = CORPUS / name
        if folder.is_dir():
            latest = sorted(folder.glob("*.md"))[-1]
            found.append((name, latest.read_text(encoding="utf-8")))
    if len(found) < count:
        for folder in sorted(p for p in CORPUS.glob("*/*") if p.is_dir()):
            name = f"{folder.parent.name}/{folder.name}"
            if name not in DEFAULT_PAGES and len(found) < count and list(folder.glob("*.md")):
                found.append((name, sorted(folder.glob("*.md"))[-1].read_text(encoding="utf-8")))
    return found[:count]


async def measure(pages: list[tuple[str, str]]) -> list[dict[str, object]]:
    from playwright.async_api import async_playwright

    from monitor.browser import launch_args
    from monitor.demo import render_page
    from monitor.fetch.browser import _executable_for

    rows = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=_executable_for(pw), args=launch_args(), headless=True)
        context = await browser.new_context()
        page = await context.new_page()
        session = await context.new_cdp_session(page)
        with tempfile.TemporaryDirectory() as tmp:
            for name, markdown in pages:
                path = Path(tmp) / "page.html"
                path.write_bytes(render_page(markdown))
                await page.goto(path.as_uri())
                metrics = await session.send("Page.getLayoutMetrics")
                size = metrics.get("cssContentSize") or metrics["contentSize"]
                width, height = math.ceil(size["width"]), math.ceil(size["height"])
                row: dict[str, object] = {"page": name, "width": width, "height": height}
                for fmt, quality in FORMATS:
                    total = 0
                    started = time.perf_counter()
                    for top in range(0, height, MAX_TILE[fmt]):
                        params: dict[str, object] = {"format": fmt, "captureBeyondViewport": True,
                                                     "clip": {"x": 0, "y": top, "width": width, "height": min(MAX_TILE[fmt], height - top), "scale": 1}}
                        if quality is not None:
                            params["quality"] = quality
                        total += len(base64.b64decode((await session.send("Page.captureScreenshot", params))["data"]))
                    row[f"{fmt}{quality or ''}"] = total
                    row[f"{fmt}{quality or ''} ms"] = (time.perf_counter() - started) * 1000
                rows.append(row)
        await browser.close()
    return rows


def unchanged_cost(markdown: str, checks: int = 20) -> tuple[int, float]:
    """(bytes a new version's screenshot took, bytes per unchanged check) for one page served
    locally and checked with the browser engine by the real pipeline: the store's files and
    database (checkpointed) measured before and after `checks` unchanged checks."""
    import sqlite3

    from monitor.cli import main as cli
    from monitor.demo import LocalServer, render_page

    web = LocalServer({"/policy": render_page(markdown)})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "targets.yaml"
            config.write_text(
                "defaults: {engine: browser, confirm_delay: 0s, host_delay: 0s, timeout: 30s}\n"
                f"targets:\n  - {{id: page, service: Bench, document: privacy-policy, url: '{web.url('/policy')}'}}\n",
                encoding="utf-8",
            )

            def size() -> int:
                with sqlite3.connect(Path(tmp) / "monitor.db") as db:
                    db.execute("pragma wal_checkpoint(truncate)")
                return sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file() and f.suffix not in (".yaml",) and not f.name.endswith("-wal"))

            cli(["--config", str(config), "check"])
            shots = sum(f.stat().st_size for f in (Path(tmp) / "snapshots").rglob("*.webp"))
            before = size()
            for _ in range(checks):
                cli(["--config", str(config), "check"])
            return shots, (size() - before) / checks
    finally:
        web.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=len(DEFAULT_PAGES))
    args = parser.parse_args()
    pages = corpus_pages(args.pages)
    if not pages:
        print(f"screenshots: corpus not found at {CORPUS}; nothing measured")
        return 0
    rows = asyncio.run(measure(pages))
    keys = [f"{fmt}{quality or ''}" for fmt, quality in FORMATS]
    print(f"{'page':<28} {'px':>12} " + " ".join(f"{k:>9}" for k in keys))
    for row in rows:
        print(f"{row['page'][:28]:<28} {row['width']:>5}x{row['height']:<6} " + " ".join(f"{row[k] / 1e6:>8.2f}M" for k in keys))
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in keys}  # type: ignore[misc]
    print(f"{'mean per version':<41} " + " ".join(f"{mean[k] / 1e6:>8.2f}M" for k in keys))
    print(f"{'mean capture time':<41} " + " ".join(f"{statistics.mean(row[k + ' ms'] for row in rows):>7.0f}ms" for k in keys))
    from monitor.fetch import SHOT_FORMAT, SHOT_QUALITY

    chosen = f"{SHOT_FORMAT}{SHOT_QUALITY if SHOT_FORMAT != 'png' else ''}"
    print(f"chosen: {chosen} ({mean.get(chosen, 0) / 1e6:.2f} MB per new version on these pages; PNG would be {mean['png'] / 1e6:.2f} MB)")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        shot_bytes, per_check = unchanged_cost(pages[0][1])
    print(f"store, {pages[0][0]} checked by the browser engine: its first version's screenshot {shot_bytes / 1e6:.2f} MB; "
          f"each unchanged check adds {per_check:.0f} bytes (budget 1 KB: {'met' if per_check <= 1024 else 'NOT met'})")
    return 0 if per_check <= 1024 else 1


if __name__ == "__main__":
    sys.exit(main())
