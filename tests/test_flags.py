"""Flag rules: the labelled cases, the rule-file validator, and checks on the real corpus.

The labelled cases live in tests/flag_cases/<language>.yaml (one pytest param per case, id from
its note). Wording comes from real policy changes; see each case's note.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor import flags as engine
from monitor.flags import (
    CATEGORIES,
    SEVERITIES,
    Flag,
    RuleError,
    RuleSet,
    load_rules,
    trim_evidence,
    visible_text,
)

CASES_DIR = Path(__file__).resolve().parent / "flag_cases"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "ota"
CASE_KEYS = {"note", "old", "new", "section", "expect", "forbid", "sides"}


def _load_cases() -> list[Any]:
    params = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        for index, case in enumerate(yaml.safe_load(path.read_text(encoding="utf-8"))):
            slug = re.sub(r"[^a-z0-9]+", "-", case.get("note", "").lower()).strip("-")[:70]
            params.append(pytest.param(case, id=f"{path.stem}-{index:02d}-{slug}"))
    return params


CASES = _load_cases()


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules()


# ------------------------------------------------------------------------------ labelled cases


@pytest.mark.parametrize("case", CASES)
def test_labelled_case(rules: RuleSet, case: dict[str, Any]) -> None:
    assert set(case) <= CASE_KEYS, f"unknown case keys: {set(case) - CASE_KEYS}"
    assert case.get("note") and (case.get("old") or case.get("new"))
    flags = rules.flag_change(case.get("old"), case.get("new"), case.get("section"))
    found = {f.category for f in flags}
    shown = "; ".join(f"{f.category}/{f.side} {f.rule}: {f.evidence!r}" for f in flags) or "no flags"
    for category in case.get("expect") or []:
        assert category in CATEGORIES, f"unknown category in case: {category}"
        assert category in found, f"expected {category}, got {shown}"
    for category in case.get("forbid") or []:
        assert category in CATEGORIES, f"unknown category in case: {category}"
        assert category not in found, f"forbidden {category}, got {shown}"
    for category, side in (case.get("sides") or {}).items():
        assert side in {f.side for f in flags if f.category == category}, f"expected {category} on {side}: {shown}"


def test_case_files_are_big_enough() -> None:
    counts: dict[str, int] = {}
    for param in CASES:
        lang = param.id.split("-", 1)[0]
        counts[lang] = counts.get(lang, 0) + 1
    assert counts.get("en", 0) >= 60 and counts.get("fr", 0) >= 40, counts
    assert counts.get("de", 0) >= 10 and counts.get("es", 0) >= 10, counts


def test_every_rule_has_a_positive_case(rules: RuleSet) -> None:
    """Each rule is the one reporting at least one labelled case: no dead or shadowed rule."""
    hit: set[str] = set()
    for param in CASES:
        case = param.values[0]
        for text in (case.get("old"), case.get("new")):
            hit.update(rule.id for rule, _ in rules.flag_text(text, case.get("section"), prefilter=False))
    missing = sorted(r.id for r in rules.rules if r.id not in hit)
    assert not missing, f"rules with no labelled positive case: {missing}"


def test_every_category_has_negative_cases() -> None:
    forbidden: dict[str, int] = {}
    for param in CASES:
        for category in param.values[0].get("forbid") or []:
            forbidden[category] = forbidden.get(category, 0) + 1
    for category in ("ai-training", "ai-third-party", "opt-out-scope", "sensitive-data", "retention"):
        assert forbidden.get(category, 0) >= 1, f"no negative case for {category}"


def test_prefilter_changes_nothing_on_cases(rules: RuleSet) -> None:
    """Literal pre-checks are a speed-up only."""
    for param in CASES:
        case = param.values[0]
        for text in (case.get("old"), case.get("new")):
            fast = rules.flag_text(text, case.get("section"))
            slow = rules.flag_text(text, case.get("section"), prefilter=False)
            assert [(r.id, e) for r, e in fast] == [(r.id, e) for r, e in slow], param.id


# ------------------------------------------------------------------------------ flag_change API


def test_flag_shape_and_order(rules: RuleSet) -> None:
    flags = rules.flag_change(
        None,
        "We may use your Inputs and Outputs to train our models, unless you opt out. We may also share public "
        "posts with AI companies that license them.",
    )
    assert flags, "expected flags"
    assert all(isinstance(f, Flag) and f.side == "new" for f in flags)
    assert list(flags[0].to_dict())[:5] == ["category", "severity", "rule", "evidence", "side"]
    assert {"change", "changes", "summary", "before", "after", "details"} <= set(flags[0].to_dict())
    assert all(f.change == "added" and f.summary.startswith("Now says it") for f in flags)
    keys = [(-SEVERITIES.index(f.severity), f.category, f.rule) for f in flags]
    assert keys == sorted(keys)
    assert len({(f.category, f.rule) for f in flags}) == len(flags)


def test_sides(rules: RuleSet) -> None:
    clause = "We may use your content to train our AI models."
    assert {f.side for f in rules.flag_change(clause, None)} == {"old"}
    assert {f.side for f in rules.flag_change(None, clause)} == {"new"}
    # the AI sentence itself is unchanged: another sentence beside it raises nothing about training
    assert not [f for f in rules.flag_change(clause, clause + " You can opt out.") if f.category == "ai-training"]
    wider = "We will use your content and private messages to train our AI models."
    [both] = [f for f in rules.flag_change(clause, wider) if f.category == "ai-training"]
    assert (both.side, both.change) == ("both", "broadened")
    assert both.before == "We may use your content to train our AI models" and both.after.startswith("We will use")
    assert "data: + private messages" in both.details and "modality: may -> will" in both.details
    assert rules.flag_change(None, None) == [] and rules.flag_change("", "  ") == []


def test_promise_and_its_removal(rules: RuleSet) -> None:
    promise = "Zoom does not use any of your audio, video or chat content to train artificial intelligence models."
    flags = rules.flag_change(promise, "Zoom may use your content to improve the Services.")
    assert [(f.rule, f.side) for f in flags if f.category == "ai-training"] == [
        ("en.ai-training.no-training-promise", "old")
    ]


def test_heading_alone_never_flags(rules: RuleSet) -> None:
    for section in ("Generative AI", "How we train our AI models", "Machine learning > Opt out"):
        assert rules.flag_change(None, "Last updated: 3 November 2025.", section) == []


def test_heading_allows_weaker_evidence(rules: RuleSet) -> None:
    text = "We may use this content for training."
    assert not [f for f in rules.flag_change(None, text, "Support") if f.category == "ai-training"]
    flags = rules.flag_change(None, text, "Generative AI > Your data")
    assert [f.rule for f in flags if f.category == "ai-training"] == ["en.ai-training.ai-section"]


def test_evidence_is_the_matched_span(rules: RuleSet) -> None:
    text = (
        "We may use your personal data to improve, develop, and provide products and Services, develop and train "
        "artificial intelligence (AI) models, develop, provide, and personalize our Services."
    )
    [flag] = [f for f in rules.flag_change(None, text) if f.category == "ai-training"]
    assert flag.severity == "high"
    assert flag.evidence == "develop and train artificial intelligence (AI) models"


def test_markdown_is_matched_and_reported_as_visible_text(rules: RuleSet) -> None:
    text = (
        "We may use your data to **train our [machine learning](https://example.com/ml-models?x=1) models** and "
        "_artificial intelligence_ systems."
    )
    [flag] = [f for f in rules.flag_change(None, text) if f.category == "ai-training"]
    assert flag.evidence == "train our machine learning models"
    assert "https" not in flag.evidence and "*" not in flag.evidence


def test_link_targets_never_match(rules: RuleSet) -> None:
    text = "Read more [here](https://help.example.com/how-we-train-ai-models-and-opt-out)."
    assert rules.flag_change(None, text) == []


def test_typography_and_accents_are_folded(rules: RuleSet) -> None:
    en = rules.flag_change(None, "Your content isn’t used to train AI\u00a0models — ever.")
    assert [f.rule for f in en if f.category == "ai-training"] == ["en.ai-training.no-training-promise"]
    for text in (
        "Nous pouvons entraîner nos modèles d’intelligence artificielle avec vos publications.",
        "Nous pouvons entrainer nos modeles d'intelligence artificielle avec vos publications.",
        "NOUS POUVONS ENTRAÎNER NOS MODÈLES D’INTELLIGENCE ARTIFICIELLE AVEC VOS PUBLICATIONS.",
    ):
        flags = rules.flag_change(None, text)
        assert [f.category for f in flags if f.severity == "high"] == ["ai-training"], text


def test_evidence_with_expanding_fold_maps_back(rules: RuleSet) -> None:
    # "œ" folds to two characters: the evidence must still come from the visible text.
    text = "Pour chaque œuvre publiée, nous pouvons entraîner nos modèles d’IA générative."
    [flag] = [f for f in rules.flag_change(None, text) if f.category == "ai-training"]
    assert flag.evidence.startswith("entraîner nos modèles")


def test_visible_text() -> None:
    md = (
        "## Heading\n* **Bold** and _em_ with a [link](https://a.example/x_(y)) and ![img](i.png)"
        " <br>next\\-line \\[1\\] snake_case_name `code`\u200b"
    )
    assert visible_text(md) == "Heading\nBold and em with a link and img\nnext-line [1] snake_case_name code"


def test_trim_evidence() -> None:
    assert trim_evidence("  short  text ,") == "short text"
    long = " ".join(["word"] * 100)
    trimmed = trim_evidence(long)
    assert len(trimmed) <= 201 and trimmed.endswith("word…")


def test_long_evidence_is_trimmed_at_a_word(rules: RuleSet) -> None:
    filler = " ".join(f"item{i}," for i in range(60))
    text = f"We may share your data with our partners, {filler} who may use it to train their own AI models."
    for flag in rules.flag_change(None, text):
        assert len(flag.evidence) <= 201
        assert not flag.evidence.endswith(" …")


@pytest.mark.parametrize(
    "text",
    [
        "-" * 4000 + "x",
        "train " * 3000,
        "we may use your data to " * 400 + "train AI",
        "opt out of training, " * 300,
        "(" * 3000 + "AI" + ")" * 3000,
        "d’" * 2000 + "IA",
    ],
    ids=["dashes", "train-repeated", "long-filler", "opt-out-repeated", "parentheses", "elisions"],
)
def test_pathological_input_completes(rules: RuleSet, text: str) -> None:
    """No catastrophic backtracking in the Markdown clean-up or the rules (pytest-timeout guards),
    and the answer stays sane: short evidence, and both sides (nearly the same text) agree."""
    flags = rules.flag_change(text, text + " x")
    assert all(len(f.evidence) <= 201 for f in flags)
    assert all(f.side == "both" for f in flags), flags


def test_many_clauses_complete(rules: RuleSet) -> None:
    """A self-check that flagging stays cheap; no timing is asserted (machines differ)."""
    texts = [param.values[0].get("new") or param.values[0].get("old") for param in CASES]
    plain = "We use the information we collect to provide, maintain and improve our services and to protect users."
    clauses = [(texts[i % len(texts)] if i % 4 == 0 else f"{plain} ({i})") for i in range(2000)]
    start = time.process_time()
    flagged = sum(bool(rules.flag_change(None, c)) for c in clauses)
    elapsed = time.process_time() - start
    assert flagged >= 250  # the labelled positives among them
    print(f"2000 clauses in {elapsed:.2f}s CPU")


# ------------------------------------------------------------------------------ loader / validator

GOOD_RULE = """
terms:
  ai: 'AI|machine learning'
rules:
  - id: xx.ai-training.sample
    category: ai-training
    severity: high
    match: {near: ['train\\w*', '{ai}'], within: 3}
"""


def _write(tmp_path: Path, text: str, name: str = "xx.yaml") -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_load_custom_dir(tmp_path: Path) -> None:
    rules = load_rules(rules_dir=_write(tmp_path, GOOD_RULE))
    assert [r.id for r in rules.rules] == ["xx.ai-training.sample"]
    assert rules.flag_change(None, "we train AI")[0].evidence == "train AI"
    assert load_rules(["xx"], tmp_path) is load_rules(("xx",), tmp_path)  # cached


def test_load_by_language() -> None:
    fr = load_rules(["fr"])
    assert {r.language for r in fr.rules} == {"fr"}
    assert set(load_rules().languages) >= {"en", "fr", "de", "es"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("severity: high", "severity: hihg"), "rule xx.ai-training.sample: severity: unknown severity 'hihg'"),
        (("    severity: high\n", ""), "rule xx.ai-training.sample: severity: missing"),
        (("  - id: xx.ai-training.sample\n", "  - \n"), "rules[0]: id: missing"),
        (("category: ai-training", "category: ai-trainig"), "did you mean 'ai-training'?"),
        (("    match:", "    mach:"), "rule xx.ai-training.sample: mach: unknown key (did you mean 'match'?)"),
        (("{near:", "{neer:"), "match: unknown matcher kind 'neer' (did you mean 'near'?)"),
        (("within: 3", "witin: 3"), "match.witin: unknown option for 'near' (did you mean 'within'?)"),
        (("within: 3", "within: three"), "match.within: expected int, got 'three'"),
        (("'train\\w*'", "'train(\\w*'"), "match.near[0]: bad regex 'train(\\\\w*'"),
        (("'{ai}'", "'{aii}'"), "match.near[1]: unknown term {aii} (did you mean 'ai'?)"),
        (("id: xx.ai-training.sample", "id: en.ai-training.sample"), "id: expected 'xx.ai-training.<name>'"),
        (("terms:", "termz:"), "termz: unknown key (did you mean 'terms'?)"),
        (("  ai: 'AI|machine learning'", "  ai: 'AI|(machine'"), "terms: ai: bad regex"),
    ],
)
def test_validator_messages(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    assert change[0] in GOOD_RULE
    _write(tmp_path, GOOD_RULE.replace(change[0], change[1], 1))
    with pytest.raises(RuleError) as info:
        load_rules(rules_dir=tmp_path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(str(tmp_path / "xx.yaml") + ": "), text
    assert message in text, text


def test_validator_bad_yaml_and_missing_language(tmp_path: Path) -> None:
    _write(tmp_path, "rules: [\n  - id: x\n", name="yy.yaml")
    with pytest.raises(RuleError, match=r"yy\.yaml: file: invalid YAML at line \d+"):
        load_rules(rules_dir=tmp_path)
    with pytest.raises(RuleError, match="no rule file for language 'zz'"):
        load_rules(["zz"], tmp_path)


def test_duplicate_rule_id(tmp_path: Path) -> None:
    _write(tmp_path, GOOD_RULE + GOOD_RULE.split("rules:\n", 1)[1])
    with pytest.raises(RuleError, match="id: already defined"):
        load_rules(rules_dir=tmp_path)


def test_rule_error_is_value_error() -> None:
    assert issubclass(RuleError, ValueError)


def test_shipped_rule_files_are_valid(rules: RuleSet) -> None:
    ids = [r.id for r in rules.rules]
    assert len(ids) == len(set(ids))
    for rule in rules.rules:
        assert rule.category in CATEGORIES and rule.severity in SEVERITIES and rule.description
    for core in ("ai-training", "ai-third-party", "opt-out-scope"):
        for lang in ("en", "fr"):
            assert any(r.category == core and r.language == lang for r in rules.rules), (core, lang)


def test_readme_documents_every_matcher_kind_and_rule() -> None:
    """The rules README is the format's reference: it must keep up with the code and the files."""
    readme = (engine.RULES_DIR / "README.md").read_text(encoding="utf-8")
    for kind, cls in engine._MATCHERS.items():
        assert f"| `{kind}` |" in readme, kind
        for option in cls.options:
            assert f"`{option}`" in readme, (kind, option)
    for rule in load_rules().rules:
        assert f"`{rule.id.split('.', 2)[2]}`" in readme, rule.id


# ------------------------------------------------------------------------------ real corpus


def _corpus(*parts: str) -> Path:
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared corpus not found at {CORPUS} (copy ../shared next to the repository)")
    return path


def _paragraphs(path: Path) -> Iterator[str]:
    """Blank-line paragraphs, with table rows taken one by one (as the extractor does)."""
    for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
        lines = block.split("\n")
        if any(line.lstrip().startswith("|") for line in lines):
            yield from (line for line in lines if line.strip())
        elif block.strip():
            yield block


def test_corpus_linkedin_2024_training_clause(rules: RuleSet) -> None:
    path = _corpus("LinkedIn", "Privacy Policy", "2024-09-19T06-10-13Z.md")
    [paragraph] = [p for p in _paragraphs(path) if "develop and train artificial intelligence (AI) models" in p]
    flags = [f for f in rules.flag_change(None, paragraph) if f.category == "ai-training"]
    assert flags and flags[0].severity == "high"
    assert flags[0].evidence == "develop and train artificial intelligence (AI) models"


def test_corpus_linkedin_2024_08_has_no_ai_training(rules: RuleSet) -> None:
    """The version before the AI-training change mentions "training" only as professional training."""
    path = _corpus("LinkedIn", "Privacy Policy", "2024-08-01T18-10-11Z.md")
    assert any("get training" in p for p in _paragraphs(path))
    for paragraph in _paragraphs(path):
        flagged = [f for f in rules.flag_change(None, paragraph) if f.category in ("ai-training", "ai-third-party")]
        assert not flagged, (paragraph[:200], flagged)


@pytest.mark.parametrize(
    ("parts", "needle", "category"),
    [
        (
            ("X (Twitter)", "Privacy Policy", "2023-09-29T23-12-59Z.md"),
            "help train our machine learning",
            "ai-training",
        ),
        (
            ("X (Twitter)", "Terms of Service", "2024-11-15T18-15-10Z.md"),
            "training of our machine learning",
            "ai-training",
        ),
        (("Google", "Privacy Policy", "2023-06-29T18-34-22Z.md"), "train Google’s AI models", "ai-training"),
        (("Zoom", "Terms of Service", "2023-08-11T19-15-38Z.md"), "to train Zoom or third-party", "ai-training"),
        (("X (Twitter)", "Privacy Policy", "2024-11-15T18-15-12Z.md"), "Third-party collaborators", "ai-third-party"),
        (
            ("LinkedIn", "Privacy Policy", "2024-09-19T06-10-13Z.md"),
            "to provide or develop their services",
            "ai-third-party",
        ),
        (
            ("LinkedIn", "European Regional Privacy Notice", "2025-11-04T00-35-00Z.md"),
            "Microsoft for its AI training",
            "ai-third-party",
        ),
        (
            ("LinkedIn", "European Regional Privacy Notice", "2025-11-04T00-35-00Z.md"),
            "You can opt out any time",
            "opt-out-scope",
        ),
        (("Claude.ai", "Privacy Policy", "2025-11-11T15-22-48Z.md"), "Even if you opt-out", "opt-out-scope"),
        (("Facebook", "Privacy Policy", "2024-06-26T06-05-23Z.md"), "droit d’opposition", "opt-out-scope"),
        (("Facebook", "Privacy Policy", "2024-06-26T06-05-23Z.md"), "Pour développer et améliorer la", "ai-training"),
    ],
)
def test_corpus_known_changes(rules: RuleSet, parts: tuple[str, ...], needle: str, category: str) -> None:
    paragraphs = [p for p in _paragraphs(_corpus(*parts)) if needle in p]
    assert paragraphs, f"{needle!r} not found"
    assert all(category in {f.category for f in rules.flag_change(None, p)} for p in paragraphs)


@pytest.mark.parametrize(
    "parts",
    [
        ("LinkedIn", "Privacy Policy", "2021-10-07T17-30-12Z.md"),
        ("LinkedIn", "User Agreement", "2024-11-21T00-32-34Z.md"),
        ("Google", "Privacy Policy", "2023-01-19T06-43-23Z.md"),
        ("WeTransfer", "Terms of Service", "2025-07-23T18-20-21Z.md"),
        ("Zoom", "Terms of Service", "2025-07-24T06-23-29Z.md"),
    ],
)
def test_corpus_false_positive_budget(rules: RuleSet, parts: tuple[str, ...]) -> None:
    """Documents with little or no AI-training wording stay (nearly) quiet, and the prefilter
    changes nothing on real text."""
    high = []
    for paragraph in _paragraphs(_corpus(*parts)):
        fast = rules.flag_text(paragraph)
        assert [(r.id, e) for r, e in fast] == [(r.id, e) for r, e in rules.flag_text(paragraph, prefilter=False)]
        high.extend((r.id, e) for r, e in fast if r.category == "ai-training" and r.severity == "high")
    expected_high = {"Google": 1}.get(parts[0], 0)  # Google 2023-01: "help train Google's language models"
    assert len(high) == expected_high, high


# ----------------------------------------------------------------- readings, through the whole diff

# (id, section, old, new, expect): each run as a labelled case (monitor.flags.evaluate.run_case),
# so a flag of another scored category, or a missing change, fails.
READINGS = [
    ("a ban on users is no statement", "Terms of Use",
     "You may not download photos except through the download button.",
     "You may not download photos except through the download button. You may not use any photo on the site to train, test or develop AI models.",
     {}),
    ("an item of a 'You agree not to:' list is a ban", "Terms of Use > Prohibited uses",
     "You agree not to:\n\n- copy Documents outside the Services;\n- circumvent any access controls.",
     "You agree not to:\n\n- copy Documents outside the Services;\n- use Documents to train or develop artificial-intelligence models;\n- circumvent any access controls.",
     {}),
    ("subprocessors forbidden to train: a promise about third parties' AI", "AI",
     "Notion AI uses models provided by subprocessors.",
     "Notion AI uses models provided by subprocessors. These subprocessors are contractually prohibited from using Customer Data to train their models.",
     {"ai-third-party": ["added", "negated"]}),
    ("a job advert is no statement", "Careers",
     "Join our team.",
     "Join our team. As a Machine Learning Engineer you will train and evaluate models on large datasets.",
     {}),
    ("active to passive with 'may' only rewords", "How we use data",
     "We use your prompts, in pseudonymised form, to improve our AI models.",
     "Your prompts may be used, in pseudonymised form, to improve our AI models.",
     {}),
    ("may -> will in the same voice broadens", "How we use data",
     "We may use your prompts to improve our AI models.",
     "We will use your prompts to improve our AI models.",
     {"ai-training": ["broadened"]}),
    ("a named company's own models are a third party's", "Extensions",
     "Siri can send certain requests to ChatGPT.",
     "Siri can send certain requests to ChatGPT. OpenAI will not store your requests or use them to train its models.",
     {"ai-third-party": ["added", "negated"]}),
    ("one item dropped from the data list narrows", "My AI",
     "We may use your designs, uploads and comments to train the AI models behind Magic Studio.",
     "We may use your designs and uploads to train the AI models behind Magic Studio.",
     {"ai-training": ["narrowed"]}),
    ("a menu item renamed is no change of scope", "Settings",
     "You can turn off AI training in Settings > Privacy > Data for AI.",
     "You can turn off AI training in Settings > Privacy and safety > Data for AI.",
     {}),
    ("a condition in the next sentence belongs to the statement", "Clips",
     "We may use public stream clips to train our AI models. This only applies to streamers in the EU.",
     "We may use public stream clips to train our AI models.",
     {"ai-training": ["qualifier-removed"]}),
    ("a limit in a new paragraph after a standing choice qualifies it", "Consent",
     "You can withdraw your consent to the use of your chats to train our AI models at any time.",
     "You can withdraw your consent to the use of your chats to train our AI models at any time.\n\nWithdrawing consent does not affect models already trained.",
     {"opt-out-scope": ["qualifier-added"]}),
    ("a request deadline after an opt-out, read as its condition", "Notice",
     "You can ask us to exclude your public blog posts from the data used to train HyperCLOVA X.",
     "You can ask us to exclude your public blog posts from the data used to train HyperCLOVA X. Requests must be submitted by 31 December 2024; after that date, posts already collected will remain in the training data.",
     {"opt-out-scope": ["qualifier-added"]}),
    ("es: a ban in the impersonal is no statement", "Aviso legal",
     "Queda prohibida la reproducción de los contenidos sin autorización.",
     "Queda prohibida la reproducción de los contenidos sin autorización, así como su uso para entrenar sistemas de inteligencia artificial.",
     {}),
    ("de: a compound split into a list broadens", "Copilot",
     "Wir können Ihre Textunterhaltungen mit Copilot verwenden, um unsere generativen KI-Modelle zu trainieren.",
     "Wir können Ihre Text- und Sprachunterhaltungen mit Copilot verwenden, um unsere generativen KI-Modelle zu trainieren.",
     {"ai-training": ["broadened"]}),
    ("an FAQ answer turned from no to yes affirms what the question asks", "Help > Your data",
     "**Will my drafts be used to train the AI writing assistant?**\n\nNo. Drafts stay in your account and are only used to show you suggestions.",
     "**Will my drafts be used to train the AI writing assistant?**\n\nYes, unless you turn off *Improve suggestions* in Settings. Drafts also stay in your account.",
     {"ai-training": ["affirmed"], "opt-out-scope": ["added"]}),
    ("a question alone states nothing", "Help > Your data",
     "**Can I delete my account?**\n\nYes, from Settings.",
     "**Can I delete my account?**\n\nYes, from Settings.\n\n**Does Lumen use my photos to train AI models?**",
     {}),
    ("fr: an FAQ answer in a table row, from non to oui", "Confidentialité en bref",
     "| Question | Réponse |\n|---|---|\n| Utilisez-vous mes messages pour entraîner vos modèles d'IA ? | Non |",
     "| Question | Réponse |\n|---|---|\n| Utilisez-vous mes messages pour entraîner vos modèles d'IA ? | Oui, sauf opposition de votre part |",
     {"ai-training": ["affirmed"]}),
]


@pytest.mark.parametrize(("name", "section", "old", "new", "expect"), READINGS, ids=[r[0][:48] for r in READINGS])
def test_reading_through_the_diff(rules: RuleSet, name: str, section: str, old: str, new: str, expect: dict[str, list[str]]) -> None:
    from monitor.flags.evaluate import run_case

    outcome = run_case(rules, {"id": name, "section": section, "old": old, "new": new, "expect": expect})
    assert outcome.problems == [], [(f.category, f.changes, f.details) for f in outcome.flags]
