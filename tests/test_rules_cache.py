"""The compiled-rules cache: rules compiled once per process, kept on disk keyed by the
digests of the rule files, and the same flags whether they come from the cache or not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from monitor.diff import compare
from monitor.extract import extract_bytes
from monitor.flags import RULES_DIR, load_rules
from monitor.flags import loader

OLD = b"<h1>Privacy</h1><p>We do not use your data to train AI models.</p><p>You can delete your account at any time.</p>"
NEW = b"<h1>Privacy</h1><p>We may use your data to train AI models, including generative AI.</p><p>You can delete your account at any time.</p>"


def flags(rules: object) -> list[tuple[str, str, str]]:
    old, new = extract_bytes(OLD, "html"), extract_bytes(NEW, "html")
    return [(f.rule, f.category, f.evidence) for f in compare(old, new, rules=rules).flags]  # type: ignore[arg-type]


def test_rules_are_cached_on_disk_by_the_digests_of_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_CACHE_DIR", str(tmp_path / "cache"))
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules_dir)
    fresh = loader._compile_rules(sorted(rules_dir.glob("*.yaml")), strict=True)
    expected = flags(fresh)
    assert expected, "the pair must raise a flag"

    first = load_rules(rules_dir=rules_dir, strict=False)
    assert load_rules(rules_dir=rules_dir, strict=False) is first  # once per process
    files = list((tmp_path / "cache").glob("rules-*.pickle"))
    assert len(files) == 1

    loader._load_rules.cache_clear()  # a new process, as far as the loader knows
    cached = loader._DiskCache(sorted(rules_dir.glob("*.yaml"))).load()
    assert cached is not None and flags(cached) == expected
    assert flags(load_rules(rules_dir=rules_dir, strict=False)) == expected

    # an edited rule file has another digest: compiled again, a second cache file
    en = rules_dir / "en.yaml"
    en.write_text(en.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    loader._load_rules.cache_clear()
    assert flags(load_rules(rules_dir=rules_dir, strict=False)) == expected
    assert len(list((tmp_path / "cache").glob("rules-*.pickle"))) == 2
    loader._load_rules.cache_clear()


def test_a_broken_cache_file_is_compiled_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_CACHE_DIR", str(tmp_path / "cache"))
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules_dir)
    cache = loader._DiskCache(sorted(rules_dir.glob("*.yaml")))
    cache.path.parent.mkdir(parents=True)
    cache.path.write_bytes(b"not a pickle")
    loader._load_rules.cache_clear()
    assert flags(load_rules(rules_dir=rules_dir, strict=False))
    loader._load_rules.cache_clear()


def test_regexes_rebuilt_from_the_cache_match_as_freshly_compiled_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache keeps each regex in its compiled form (the regex engine's program), so a short
    run skips compiling; rebuilt from it, every regex finds exactly what a fresh compile finds."""
    import re

    import yaml

    monkeypatch.setenv("MONITOR_CACHE_DIR", str(tmp_path / "cache"))
    loader._load_rules.cache_clear()
    load_rules(strict=False)  # writes the cache
    cached = loader._DiskCache(loader._rule_paths(None, RULES_DIR)).load()
    assert cached is not None
    nodes = loader._regex_nodes(cached)
    assert nodes and all(node._program is not None for node in nodes), "every regex stored compiled"
    texts = []
    for path in sorted((Path(__file__).parent / "flag_suite").glob("*.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))[:12]:
            texts += [case.get("old") or "", case.get("new") or ""]
    from monitor.flags.text import Text

    folded = [Text(t).folded for t in texts if t]
    for node in nodes:
        fresh = re.compile(node.pattern, re.IGNORECASE)
        rebuilt = node.regex
        assert rebuilt is not fresh
        for text in folded:
            assert [m.span() for m in rebuilt.finditer(text)] == [m.span() for m in fresh.finditer(text)], node.pattern[:80]
    loader._load_rules.cache_clear()
