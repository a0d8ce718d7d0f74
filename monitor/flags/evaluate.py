"""Measuring the flagger against labels: the labelled suite (tests/flag_suite) and the hand
labels of the real corpus pairs (tests/corpus_labels.yaml).

Both run the whole pipeline a stored change goes through (Markdown -> clauses -> clause diff ->
statements -> flags), and are scored the same way (tests/flag_suite/README.md): per case and
scored category, a flag with one of the expected changes is a true positive, a missing one a
false negative, and any flag of a category neither expected nor allowed a false positive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .model import CHANGES, Flag
from .rules import RuleSet

SCORED = ("ai-training", "ai-third-party", "opt-out-scope")


@dataclass
class Outcome:
    """One labelled case (or corpus pair) and what the flagger raised on it."""

    id: str
    flags: list[Flag]
    expect: dict[str, list[str]]
    allow: list[str]
    tp: int = 0
    fp: int = 0
    fn: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class Score:
    outcomes: list[Outcome]

    @property
    def tp(self) -> int:
        return sum(o.tp for o in self.outcomes)

    @property
    def fp(self) -> int:
        return sum(o.fp for o in self.outcomes)

    @property
    def fn(self) -> int:
        return sum(o.fn for o in self.outcomes)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.problems]


def score(outcome: Outcome) -> Outcome:
    raised: dict[str, set[str]] = {}
    for flag in outcome.flags:
        raised.setdefault(flag.category, set()).update(flag.changes or (flag.change,))
    for category in dict.fromkeys([*SCORED, *outcome.expect]):
        wanted = outcome.expect.get(category)
        got = raised.get(category)
        if wanted is not None:
            if got and (set(wanted) & got):
                outcome.tp += 1
            else:
                outcome.fn += 1
                outcome.problems.append(f"missed {category} {wanted} (raised: {sorted(got) if got else 'nothing'})")
        elif got and category not in outcome.allow:
            outcome.fp += 1
            outcome.problems.append(f"false {category} {sorted(got)}")
    return outcome


def check_labels(labels: Mapping[str, Any], where: str) -> None:
    """Labels use the shared vocabulary: a typo must fail loudly, not score as a miss."""
    from .model import CATEGORIES

    for category, changes in (labels.get("expect") or {}).items():
        if category not in CATEGORIES:
            raise ValueError(f"{where}: expect: unknown category {category!r}")
        for change in changes:
            if change not in CHANGES:
                raise ValueError(f"{where}: expect.{category}: unknown change {change!r}")
    for category in labels.get("allow") or []:
        if category not in CATEGORIES:
            raise ValueError(f"{where}: allow: unknown category {category!r}")


# ----------------------------------------------------------------------------------- the suite


def load_suite(directory: Path) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            case["_file"] = path.name
            check_labels(case, f"{path.name}: {case.get('id')}")
            cases.append(case)
    return cases


def _document(text: str | None, section: str | None) -> Any:
    from ..extract import extract_markdown

    heading = "".join(f"{'#' * (i + 1)} {part.strip()}\n\n" for i, part in enumerate((section or "").split(">")) if part.strip())
    return extract_markdown(heading + (text or ""))


def run_case(rules: RuleSet, case: Mapping[str, Any]) -> Outcome:
    """Flags the pipeline raises on one case's old -> new edit, scored."""
    from ..diff import compare

    result = compare(_document(case.get("old"), case.get("section")), _document(case.get("new"), case.get("section")), rules=rules)
    return score(Outcome(str(case.get("id")), result.flags, dict(case.get("expect") or {}), list(case.get("allow") or [])))


def score_suite(rules: RuleSet, cases: Iterable[Mapping[str, Any]]) -> Score:
    return Score([run_case(rules, case) for case in cases])


# ----------------------------------------------------------------------------------- the corpus


def corpus_pairs(corpus: Path) -> list[tuple[Path, Path]]:
    """Consecutive versions (*.md, by name) of every document folder of the corpus."""
    by_doc: dict[Path, list[Path]] = {}
    for path in corpus.rglob("*.md"):
        if path.parent != corpus and "snapshots" not in path.parts:
            by_doc.setdefault(path.parent, []).append(path)
    pairs = []
    for files in by_doc.values():
        files.sort(key=lambda p: p.name)
        pairs.extend(zip(files, files[1:]))
    return sorted(pairs)


def load_corpus_labels(path: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    labels = {}
    for entry in yaml.safe_load(path.read_text(encoding="utf-8")):
        check_labels(entry, f"{path.name}: {entry['doc']} {entry['old']}")
        labels[(entry["doc"], entry["old"], entry["new"])] = entry
    return labels


@dataclass
class CorpusOutcome(Outcome):
    substantive: bool = False
    expected_substantive: bool = False


def score_corpus(rules: RuleSet, corpus: Path, labels: Mapping[tuple[str, str, str], Mapping[str, Any]]) -> Score:
    """Every corpus pair diffed and scored against its hand label (a pair without one is an
    error: the labels must cover the corpus)."""
    from ..diff import compare
    from ..extract import extract_file

    outcomes: list[Outcome] = []
    for old, new in corpus_pairs(corpus):
        key = (str(old.parent.relative_to(corpus)), old.stem, new.stem)
        if key not in labels:
            raise KeyError(f"no label for corpus pair {key}")
        label = labels[key]
        result = compare(extract_file(old), extract_file(new), rules=rules)
        outcome = CorpusOutcome(
            " ".join(key), result.flags, dict(label.get("expect") or {}), list(label.get("allow") or []),
            substantive=result.substantive, expected_substantive=bool(label.get("substantive")),
        )
        score(outcome)
        if outcome.substantive != outcome.expected_substantive:
            outcome.problems.append(f"substantive: {outcome.substantive}, labelled {outcome.expected_substantive}")
        outcomes.append(outcome)
    return Score(outcomes)


def describe(outcomes: Sequence[Outcome]) -> list[str]:
    """One block of lines per failing outcome: what was wrong and the flags raised."""
    lines = []
    for o in outcomes:
        lines.append(f"{o.id}: {'; '.join(o.problems)}")
        for f in o.flags:
            lines.append(f"    {f.category}/{','.join(f.changes or (f.change,))} {f.rule}: {f.details} | {(f.after or f.before or '')[:160]}")
    return lines


def unchanged_sentence_flags(results: Iterable[tuple[Path, Path, Any]]) -> list[str]:
    """Flags whose sentence reads the same on the other side (target: none): an added statement
    whose sentence the old version already had, a removed one the new version still has, an
    altered one whose words did not change. `results` are (old file, new file, DiffResult)."""
    from ..extract import extract_file
    from .text import Text, sentence_key

    def keys(path: Path) -> set[str]:
        out = set()
        for clause in extract_file(path).clauses:
            text = Text(clause.text)
            out.update(sentence_key(text.folded[lo:hi]) for lo, hi in text.sentences)
        return out

    def key(sentence: str | None) -> str:
        text = Text(sentence or "")
        return " ".join(sentence_key(text.folded[lo:hi]) for lo, hi in text.sentences)

    found = []
    for old, new, result in results:
        if not result.flags:
            continue
        old_keys, new_keys = keys(old), keys(new)
        for flag in result.flags:
            where = f"{old.parent.name} {old.stem}->{new.stem} {flag.category}/{flag.change}"
            if flag.side == "new" and key(flag.after) in old_keys:
                found.append(f"{where}: {flag.after!r}")
            elif flag.side == "old" and key(flag.before) in new_keys:
                found.append(f"{where}: {flag.before!r}")
            elif flag.side == "both" and key(flag.before) == key(flag.after):
                found.append(f"{where}: {flag.after!r}")
    return found
