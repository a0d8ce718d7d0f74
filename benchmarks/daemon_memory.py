"""Daemon memory benchmark: resident memory of `monitor run` plus its browser over many
check cycles against local pages.

Runs the real daemon as a subprocess on 6 local targets (3 fetched with the browser, 3 with
plain HTTP) scheduled every second; some pages change every few checks so new versions,
diffs and flags happen too. Prints the memory of the daemon, its Playwright driver and every
Chromium process (the sum of their proportional set sizes, so shared pages count once)
every 50 checks. Budget: growth after warm-up (the reading at 100 checks) at most 10%.

    python benchmarks/daemon_memory.py [--checks 500]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, Figure, PageServer, corpus_markdown_files, markdown_page, print_table, tree_rss_bytes

NAME = "daemon-memory"


def run(checks: int = 500, every: int = 50, warmup: int = 100, say=print) -> list[Figure]:
    files = corpus_markdown_files()
    pages = {f"/p{i}": markdown_page(files[i].read_text(encoding="utf-8"), f"P{i}") for i in range(6)}
    server = PageServer(pages)
    samples: list[tuple[int, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "targets.yaml"
        lines = ["defaults:", "  schedule: 1s", "  confirm_delay: 0s", "  host_delay: 0s", "  host_concurrency: 6", "  jitter: 0", "targets:"]
        for i in range(6):
            lines += [f"  - id: p{i}", "    service: Bench", "    document: terms", f"    url: {server.url(f'/p{i}')}",
                      f"    engine: {'browser' if i < 3 else 'http'}"]
        config.write_text("\n".join(lines) + "\n")
        log = Path(tmp) / "daemon.log"
        with log.open("w") as handle:
            proc = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), "run", "--log-format", "json"],
                                    cwd=ROOT, stdout=subprocess.DEVNULL, stderr=handle)
            try:
                next_sample, edits = every, 0
                deadline = time.time() + checks * 3 + 120
                while time.time() < deadline:
                    done = sum(1 for line in log.read_text().splitlines() if '"fetch-end"' in line)
                    if done // 25 > edits:  # a new version now and then: store, diff and flags run too
                        edits = done // 25
                        path = f"/p{edits % 6}"
                        server.pages[path] = markdown_page(files[(edits * 7) % len(files)].read_text(encoding="utf-8"), path)
                    if done >= next_sample:
                        rss = tree_rss_bytes(proc.pid)
                        samples.append((done, rss))
                        say(f"  {done:4d} checks: {rss / 2**20:7.1f} MiB")
                        next_sample += every
                        if done >= checks:
                            break
                    if proc.poll() is not None:
                        raise SystemExit(f"the daemon exited early:\n{log.read_text()[-2000:]}")
                    time.sleep(0.2)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    server.close()
    failures = sum(1 for e in events if e.get("event") == "fetch-end" and e.get("outcome") == "failed")
    after = [rss for done, rss in samples if done >= warmup]
    base = after[0]
    final = sorted(after[-3:])[len(after[-3:]) // 2]  # median of the last readings: one sample is noisy
    return [
        Figure(NAME, "checks run", samples[-1][0], "checks"),
        Figure(NAME, "failed checks", failures, "checks"),
        Figure(NAME, f"memory (PSS) at {warmup} checks, after warm-up", base / 2**20, "MiB"),
        Figure(NAME, "memory (PSS) at the end (median of last 3)", final / 2**20, "MiB"),
        Figure(NAME, "peak memory (PSS) after warm-up", max(after) / 2**20, "MiB"),
        Figure.check(NAME, "memory growth after warm-up", 100.0 * (final - base) / base, "%", "<=", 10),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=500)
    args = parser.parse_args()
    figures = run(args.checks)
    print_table(figures)
    raise SystemExit(0 if all(f.met is not False for f in figures) else 1)


if __name__ == "__main__":
    main()
