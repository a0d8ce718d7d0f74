"""Flag quality on labelled data: the labelled suite (tests/flag_suite), held-out sets written
apart from the rules (tests/flag_holdout .. flag_holdout6), and hand labels of
every consecutive pair of the real corpus (tests/corpus_labels.yaml), each run through the whole pipeline (Markdown -> clauses ->
clause diff -> AI statements -> flags).

The floors below are what the rules reach today, kept as a ratchet: a change that lowers them
fails. The target of the flag issue is 0.97 precision and recall on each set; benchmarks/
flags_corpus.py prints the figures against it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.diff import compare
from monitor.extract import extract_file
from monitor.flags import RuleSet, load_rules
from monitor.flags.evaluate import (
    corpus_pairs,
    load_corpus_labels,
    load_suite,
    score_corpus,
    score_suite,
    unchanged_sentence_flags,
)

from .conftest import CORPUS

TESTS = Path(__file__).resolve().parent
SUITE_FLOOR = {"precision": 0.99, "recall": 0.975}
HOLDOUT_FLOOR = {"precision": 0.955, "recall": 0.915}  # the six held-out sets together
CORPUS_FLOOR = {"precision": 0.97, "recall": 0.97}
# Sets written later, each scored alone, each written without reading the rules and scored once
# before any rule changed because of it (its first run, the honest measure of generalisation),
# then used to tune the rules. First runs: holdout7 0.871/0.871, holdout8 0.892/0.776,
# holdout9 0.808/0.750, holdout10 0.887/0.826, holdout11 0.925/0.860, holdout12 0.924/0.890,
# holdout13 0.875/0.805; holdout14 (0.886/0.876) is not read yet: its floor is its first run.
LATER_FLOORS = {
    "flag_holdout7": {"precision": 0.97, "recall": 0.98},
    "flag_holdout8": {"precision": 0.98, "recall": 0.95},
    "flag_holdout9": {"precision": 0.99, "recall": 0.92},
    "flag_holdout10": {"precision": 0.99, "recall": 0.96},
    "flag_holdout11": {"precision": 0.98, "recall": 0.94},
    "flag_holdout12": {"precision": 0.95, "recall": 0.93},
    "flag_holdout13": {"precision": 0.94, "recall": 0.94},
    "flag_holdout14": {"precision": 0.88, "recall": 0.87},
}


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules()


def _corpus() -> Path:
    if not CORPUS.exists():
        pytest.skip(f"shared corpus not found at {CORPUS} (copy ../shared next to the repository)")
    return CORPUS


@pytest.fixture(scope="module")
def corpus_results(rules: RuleSet) -> list[tuple[Path, Path, object]]:
    corpus = _corpus()
    return [(old, new, compare(extract_file(old), extract_file(new), rules=rules)) for old, new in corpus_pairs(corpus)]


# ------------------------------------------------------------------------------- labelled sets


def test_suite_is_big_and_varied() -> None:
    cases = load_suite(TESTS / "flag_suite")
    assert len(cases) >= 500
    assert {c["id"].split("-", 1)[0] for c in cases} >= {"en", "fr", "de", "es"}
    assert len({c.get("platform", "").split(" (")[0].strip() for c in cases}) >= 40
    negatives = [c for c in cases if not c.get("expect")]
    assert 0.4 <= len(negatives) / len(cases) <= 0.6, len(negatives)
    assert len({c["id"] for c in cases}) == len(cases), "case ids are unique"


def test_suite_precision_and_recall(rules: RuleSet) -> None:
    score = score_suite(rules, load_suite(TESTS / "flag_suite"))
    print(f"suite: precision {score.precision:.3f}, recall {score.recall:.3f} (tp {score.tp}, fp {score.fp}, fn {score.fn})")
    assert score.precision >= SUITE_FLOOR["precision"], [o.id for o in score.failures() if o.fp]
    assert score.recall >= SUITE_FLOOR["recall"], [o.id for o in score.failures() if o.fn]


def test_holdout_precision_and_recall(rules: RuleSet) -> None:
    cases = [c for folder in ("flag_holdout", "flag_holdout2", "flag_holdout3", "flag_holdout4", "flag_holdout5", "flag_holdout6") for c in load_suite(TESTS / folder)]
    if not cases:
        pytest.skip("no held-out cases")
    score = score_suite(rules, cases)
    print(f"held-out: precision {score.precision:.3f}, recall {score.recall:.3f} (tp {score.tp}, fp {score.fp}, fn {score.fn})")
    assert score.precision >= HOLDOUT_FLOOR["precision"]
    assert score.recall >= HOLDOUT_FLOOR["recall"]


@pytest.mark.parametrize("folder", sorted(LATER_FLOORS))
def test_later_held_out_sets(rules: RuleSet, folder: str) -> None:
    score = score_suite(rules, load_suite(TESTS / folder))
    print(f"{folder}: precision {score.precision:.3f}, recall {score.recall:.3f} (tp {score.tp}, fp {score.fp}, fn {score.fn})")
    assert score.precision >= LATER_FLOORS[folder]["precision"]
    assert score.recall >= LATER_FLOORS[folder]["recall"]


def test_corpus_labels_cover_every_pair_and_score(rules: RuleSet) -> None:
    corpus = _corpus()
    labels = load_corpus_labels(TESTS / "corpus_labels.yaml")
    assert len(labels) == len(corpus_pairs(corpus))
    score = score_corpus(rules, corpus, labels)
    print(f"corpus: precision {score.precision:.3f}, recall {score.recall:.3f} (tp {score.tp}, fp {score.fp}, fn {score.fn})")
    assert score.precision >= CORPUS_FLOOR["precision"]
    assert score.recall >= CORPUS_FLOOR["recall"]
    wrong = [o.id for o in score.outcomes if any(p.startswith("substantive") for p in o.problems)]
    assert not wrong, f"substantive or not, against the labels: {wrong}"


# ------------------------------------------------------------------------------- the real corpus


def test_no_flag_on_a_sentence_that_did_not_change(corpus_results: list[tuple[Path, Path, object]]) -> None:
    assert list(unchanged_sentence_flags(corpus_results)) == []


# The corpus README's table of key AI changes, and WeTransfer's July 2025 clause.
KEY_CHANGES = [
    ("LinkedIn/Privacy Policy", "2024-08-01", "2024-09-19", "ai-training"),
    ("LinkedIn/Privacy Policy", "2024-08-01", "2024-09-19", "ai-third-party"),
    ("LinkedIn/Privacy Policy", "2025-09-23", "2025-11-03", "ai-third-party"),
    ("LinkedIn/European Regional Privacy Notice", "2025-10-03", "2025-11-04", "ai-training"),
    ("LinkedIn/European Regional Privacy Notice", "2025-10-03", "2025-11-04", "ai-third-party"),
    ("LinkedIn/European Regional Privacy Notice", "2025-10-03", "2025-11-04", "opt-out-scope"),
    ("X (Twitter)/Privacy Policy", "2023-05-18", "2023-08-23", "ai-training"),
    ("X (Twitter)/Privacy Policy", "2024-07-24", "2024-10-21", "ai-third-party"),
    ("X (Twitter)/Terms of Service", "2023-10-11", "2024-10-21", "ai-training"),
    ("Google/Privacy Policy", "2023-01-19", "2023-06-29", "ai-training"),
    ("Zoom/Terms of Service", "2023-02-01", "2023-04-01", "ai-training"),
    ("Zoom/Terms of Service", "2023-07-28", "2023-08-07", "ai-training"),
    ("Zoom/Terms of Service", "2023-08-07", "2023-08-11", "ai-training"),
    ("ChatGPT/Privacy Policy", "2026-01-21", "2026-05-18", "ai-training"),
    ("WeTransfer/Terms of Service", "2025-07-17", "2025-07-23", "ai-training"),
]


@pytest.mark.parametrize(("doc", "old", "new", "category"), KEY_CHANGES, ids=lambda v: str(v)[:24])
def test_key_ai_changes_are_flagged(corpus_results: list[tuple[Path, Path, object]], doc: str, old: str, new: str, category: str) -> None:
    [result] = [r for o, n, r in corpus_results if str(o.parent).endswith(doc) and o.name.startswith(old) and n.name.startswith(new)]
    assert category in {f.category for f in result.flags}, [(f.category, f.change, f.evidence) for f in result.flags]  # type: ignore[attr-defined]


# Pairs the flag issue names: nothing about AI changed, so no AI flag (and, for the cosmetic
# ones, nothing substantive either).
QUIET = [
    ("ChatGPT/Privacy Policy", "2026-05-18", "2026-06-29", True),  # help.openai.com/en/articles -> /articles, and other edits
    ("LinkedIn/Privacy Policy", "2022-09-20", "2022-11-04", True),  # ?lang=en in a link
    ("LinkedIn/Privacy Policy", "2023-01-04", "2023-01-19", True),  # link markup around the DPO contact
    ("LinkedIn/European Regional Privacy Notice", "2025-11-04", "2026-08-22", True),  # an age-verification sentence
    ("X (Twitter)/Privacy Policy", "2024-10-21", "2024-11-15", True),  # a second copy of an AI sentence removed
    ("LinkedIn/Privacy Policy", "2024-05-09", "2024-07-16", False),  # link targets only
    ("LinkedIn/Privacy Policy", "2024-07-16", "2024-07-19", False),
    ("LinkedIn/Privacy Policy", "2025-04-22", "2025-07-12", False),
    ("LinkedIn/Privacy Policy", "2025-12-06", "2026-02-20", False),
    ("Claude.ai/Privacy Policy", "2026-07-08", "2026-08-17", False),  # "8 July 2026" -> "July 8, 2026"
]


@pytest.mark.parametrize(("doc", "old", "new", "substantive"), QUIET, ids=lambda v: str(v)[:24])
def test_pairs_where_nothing_about_ai_changed(
    corpus_results: list[tuple[Path, Path, object]], doc: str, old: str, new: str, substantive: bool
) -> None:
    [result] = [r for o, n, r in corpus_results if str(o.parent).endswith(doc) and o.name.startswith(old) and n.name.startswith(new)]
    core = [(f.category, f.change, f.evidence) for f in result.flags if f.category in ("ai-training", "ai-third-party", "opt-out-scope")]  # type: ignore[attr-defined]
    assert core == []
    if not substantive:
        assert not result.substantive, [(c.kind, c.reason, (c.new or c.old or "")[:80]) for c in result.changes if not c.cosmetic]  # type: ignore[attr-defined]
