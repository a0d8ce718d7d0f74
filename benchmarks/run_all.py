"""Every benchmark of the project, one table: each figure, its budget, and whether it is met.

    python benchmarks/run_all.py            (what `make bench` runs)
    python benchmarks/run_all.py --quick    smaller sizes, for a quick look

Writes the same figures to benchmarks/results.json. Exit status 1 when a budget is not met.
Budgets compare things measured side by side in the same run wherever the machine's speed
would otherwise decide (this machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import sys
import time

import capture
import daemon_memory
import distributed
import flags_corpus
import peers
import report_speed
from common import Figure, print_table, save_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes: 40 pages (one repetition of the peers), 150 daemon checks, 2,000 changes")
    args = parser.parse_args()
    steps = [
        ("capture", lambda: capture.run(40 if args.quick else 200)),
        ("diff and flags", lambda: flags_corpus.run(say=lambda _: None)),
        ("report", lambda: report_speed.run(2000 if args.quick else 10000)),
        ("peers (urlwatch, bare Playwright)", lambda: peers.run(40 if args.quick else 200, 1 if args.quick else 3)),
        ("daemon memory", lambda: daemon_memory.run(150 if args.quick else 500, say=lambda line: print(line, file=sys.stderr))),
        ("distributed (real redis-server and workers)", lambda: distributed.run(40 if args.quick else 200, ("http", "browser"), 4)),
    ]
    figures: list[Figure] = []
    for name, step in steps:
        started = time.monotonic()
        print(f"running {name}...", file=sys.stderr, flush=True)
        figures.extend(step())
        print(f"  {name}: {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    print_table(figures)
    path = save_results(figures)
    print(f"\nwritten to {path}")
    raise SystemExit(0 if all(f.met is not False for f in figures) else 1)


if __name__ == "__main__":
    main()
