"""Diff and flags over the real corpus, and diff speed against `git diff --word-diff`.

For every consecutive pair of versions in ../shared/corpus/ota (per service and document),
prints the number of changed clauses, whether the change is substantive, the flags raised
and the time taken. Then times diff + flags for the LinkedIn 2024-08-01 / 2024-09-19 pair
(about 50 KB each) in-process, side by side with `git diff --no-index --word-diff` on the
same two files. Budget: at most 3 times git's time (best of several runs each).

    python benchmarks/flags_corpus.py [--quiet]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from common import CORPUS, Figure, best_of, corpus_markdown_files, print_table

NAME = "diff-flags"
PAIR = ("LinkedIn/Privacy Policy/2024-08-01T18-10-11Z.md", "LinkedIn/Privacy Policy/2024-09-19T06-10-13Z.md")


def corpus_pairs() -> list[tuple[Path, Path]]:
    by_doc: dict[Path, list[Path]] = {}
    for path in corpus_markdown_files():
        by_doc.setdefault(path.parent, []).append(path)
    pairs = []
    for files in by_doc.values():
        files.sort(key=lambda p: p.name)
        pairs.extend(zip(files, files[1:]))
    return sorted(pairs)


def corpus_table(say=print) -> list[Figure]:
    from monitor.diff import compare
    from monitor.extract import extract_file
    from monitor.flags import load_rules

    rules = load_rules()
    rows = [("document", "old -> new", "changed", "substantive", "flags", "ms")]
    total_ms, flagged = 0.0, 0
    for old, new in corpus_pairs():
        start = time.perf_counter()
        result = compare(extract_file(old), extract_file(new), rules=rules)
        ms = (time.perf_counter() - start) * 1000
        total_ms += ms
        counts = Counter(f.category for f in result.flags)
        flagged += bool(counts)
        rows.append((
            str(old.parent.relative_to(CORPUS)), f"{old.name[:10]} -> {new.name[:10]}",
            str(sum(1 for c in result.changes if not c.cosmetic)), "yes" if result.substantive else "no",
            ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-", f"{ms:.0f}",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        say("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if index == 0:
            say("  ".join("-" * w for w in widths))
    pairs = len(rows) - 1
    return [
        Figure(NAME, "corpus pairs diffed (extraction included)", pairs, "pairs"),
        Figure(NAME, "corpus pairs with flags", flagged, "pairs"),
        Figure(NAME, "mean time per corpus pair", total_ms / pairs, "ms"),
    ]


def speed(runs: int = 7) -> list[Figure]:
    from monitor.diff import compare
    from monitor.extract import extract_file
    from monitor.flags import load_rules

    old_path, new_path = CORPUS / PAIR[0], CORPUS / PAIR[1]
    rules = load_rules()
    old_doc, new_doc = extract_file(old_path), extract_file(new_path)
    ours = best_of(runs, lambda: compare(old_doc, new_doc, rules=rules))
    with_parsing = best_of(runs, lambda: compare(extract_file(old_path), extract_file(new_path), rules=rules))

    def git() -> None:
        subprocess.run(["git", "diff", "--no-index", "--word-diff", str(old_path), str(new_path)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    theirs = best_of(runs, git)

    def whole_process() -> None:  # `monitor diff` as a user runs it: start-up, imports, rules
        subprocess.run([sys.executable, "-m", "monitor", "diff", str(old_path), str(new_path), "--format", "json"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

    process = best_of(5, whole_process)
    return [
        Figure(NAME, "diff + flags, LinkedIn 2024-08-01/09-19", ours * 1000, "ms"),
        Figure(NAME, "same, parsing both files included", with_parsing * 1000, "ms"),
        Figure(NAME, "git diff --no-index --word-diff, same files", theirs * 1000, "ms"),
        Figure.check(NAME, "diff + flags / git word-diff", ours / theirs, "x", "<=", 3),
        Figure.check(NAME, "monitor diff, whole process (JSON)", process, "s", "<=", 0.5),
    ]


def run(say=print) -> list[Figure]:
    return corpus_table(say) + speed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quiet", action="store_true", help="only the summary table")
    args = parser.parse_args()
    figures = run(say=(lambda _: None) if args.quiet else print)
    print()
    print_table(figures)
    raise SystemExit(0 if all(f.met is not False for f in figures) else 1)


if __name__ == "__main__":
    main()
