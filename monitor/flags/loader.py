"""Reading and compiling rule files (monitor/rules/<language>.yaml) into a RuleSet.

Problems are RuleError with one line: file, rule id (or section), field, problem.
"""

from __future__ import annotations

import difflib
import functools
import pickle
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .matchers import _MATCHERS, AnyOf, Matcher, Pattern, Regex, SectionTest
from .model import CATEGORIES, SEVERITIES, RuleError
from .rules import Rule, RuleSet
from .statements import SHARED_FACETS, named_actor_pattern
from .text import fold

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"

# -------------------------------------------------------------------------------------- loading

_FILE_KEYS = ("language", "terms", "gate", "facets", "rules")
_RULE_KEYS = ("id", "category", "severity", "match", "unless", "description", "polarity", "qualifier")
POLARITIES = ("does", "does-not")
_REQUIRED_RULE_KEYS = ("id", "category", "severity", "match")
_TERM_REF = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_ID = re.compile(r"^[a-z]{2,3}\.[a-z][a-z0-9-]*\.[a-z0-9][a-z0-9-]*$")
# Whole words: a match never starts right after a letter or digit, and never ends right before
# one unless it ends on punctuation ("n'" in "n'utilisons"). The start test is the cheap form
# (a lookbehind lets the regex engine skip ahead), which is why it has no punctuation exception.
_START, _END = r"(?<!\w)", r"(?:(?<!\w)|(?!\w))"


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Compiler:
    """Turns the YAML of one rule file into matchers, reporting problems as RuleError.

    Equal regexes and YAML aliases compile to one shared matcher, so a clause runs them once."""

    def __init__(self, file: str, terms: Mapping[str, str], *, strict: bool = True):
        self.file = file
        self.terms = terms
        self.strict = strict
        self.where = "file"
        self._regexes: dict[str, Regex] = {}
        self._nodes: dict[int, tuple[Any, Matcher]] = {}

    def error(self, field: str, message: str) -> RuleError:
        return RuleError(f"{self.file}: {self.where}: {field}: {message}")

    def expand(self, source: str, field: str, seen: tuple[str, ...] = ()) -> str:
        def term(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in self.terms:
                raise self.error(field, f"unknown term {{{name}}}{_did_you_mean(name, self.terms)}")
            if name in seen:
                raise self.error(field, f"term {{{name}}} refers to itself ({' -> '.join((*seen, name))})")
            return "(?:" + self.expand(self.terms[name], field, (*seen, name)) + ")"

        return _TERM_REF.sub(term, source)

    def regex(self, source: Any, field: str) -> Regex:
        if not isinstance(source, str) or not source.strip():
            raise self.error(field, f"expected a non-empty regex string, got {source!r}")
        cached = self._regexes.get(source)
        if cached is not None:
            return cached
        expanded = fold(self.expand(source, field))
        node = self._regexes[source] = Regex(f"{_START}(?:{expanded}){_END}", str(self.error(field, f"bad regex {source!r}")))
        if self.strict:
            node.regex  # noqa: B018 - compile now, so a bad regex is reported at load time
        return node

    def term_pattern(self, name: str, field: str) -> Matcher:
        if name not in self.terms:
            raise self.error(field, f"no cue given and the file defines no {{{name}}} term")
        return self.regex(f"{{{name}}}", field)

    def pattern(self, node: Any, field: str) -> Matcher:
        """A pattern: a regex string, a list (any of), or a mapping {kind: value, option: ...}."""
        if isinstance(node, str):
            return self.regex(node, field)
        shared = self._nodes.get(id(node))
        if shared is not None and shared[0] is node:
            return shared[1]
        if isinstance(node, list):
            built: Matcher = AnyOf(self.pattern_list(node, field, minimum=1))
        elif isinstance(node, dict):
            built = self._mapping(node, field)
        else:
            raise self.error(field, f"expected a regex, a list or a mapping, got {type(node).__name__}")
        self._nodes[id(node)] = (node, built)  # keep node alive so its id stays unique
        return built

    def pattern_list(self, node: Any, field: str, *, minimum: int) -> list[Matcher]:
        if not isinstance(node, list) or len(node) < minimum:
            raise self.error(field, f"expected a list of at least {minimum} pattern(s)")
        return [self.pattern(item, f"{field}[{i}]") for i, item in enumerate(node)]

    def _mapping(self, node: dict[Any, Any], field: str) -> Matcher:
        all_options = {o for cls in _MATCHERS.values() for o in cls.options}
        kinds = [k for k in node if k in _MATCHERS]
        if len(kinds) != 1:
            if kinds:
                raise self.error(field, f"one matcher kind per mapping, got {', '.join(map(str, kinds))}")
            unknown = [str(k) for k in node if k not in all_options] or [str(k) for k in node]
            raise self.error(
                field,
                f"unknown matcher kind {unknown[0]!r}{_did_you_mean(unknown[0], _MATCHERS)}"
                f" (kinds: {', '.join(sorted(_MATCHERS))})",
            )
        kind = kinds[0]
        cls = _MATCHERS[kind]
        sub = f"{field}.{kind}"
        opts: dict[str, Any] = {}
        for key, value in node.items():
            if key == kind:
                continue
            expected = cls.options.get(key)
            if expected is None:
                allowed = ", ".join(cls.options) or "none"
                raise self.error(
                    f"{field}.{key}",
                    f"unknown option for {kind!r}{_did_you_mean(str(key), cls.options)} (allowed: {allowed})",
                )
            if expected is Pattern:
                opts[key] = self.pattern(value, f"{field}.{key}")
            elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise self.error(f"{field}.{key}", f"expected {expected.__name__}, got {value!r}")
            elif isinstance(value, int) and value < 0:
                raise self.error(f"{field}.{key}", f"expected a number >= 0, got {value}")
            else:
                opts[key] = value
        return cls.build(node[kind], opts, self, sub)


def _read_yaml(path: Path) -> Any:
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: several times faster
        return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader
    except OSError as exc:
        raise RuleError(f"{path}: file: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RuleError(f"{path}: file: invalid YAML{where}: {problem}") from None


def _check_keys(compiler: Compiler, data: Mapping[Any, Any], allowed: Sequence[str], field: str) -> None:
    for key in data:
        if key not in allowed:
            raise compiler.error(
                f"{field}{key}", f"unknown key{_did_you_mean(str(key), allowed)} (allowed: {', '.join(allowed)})"
            )


def load_file(path: Path, *, strict: bool = True) -> list[Rule]:
    """Compile one rule file (its language is the file name's stem). `strict=False` defers
    compiling regexes to their first use (a bad one then raises RuleError there)."""
    return _load_file(path, strict=strict)[0]


Facets = dict[str, dict[str, Matcher]]


def _load_file(path: Path, *, strict: bool = True) -> tuple[list[Rule], Facets]:
    """The rules and the facet vocabularies of one file."""
    language = path.stem
    data = _read_yaml(path)
    compiler = Compiler(str(path), {}, strict=strict)
    if not isinstance(data, dict):
        raise compiler.error("file", "expected a mapping with 'terms' and 'rules'")
    _check_keys(compiler, data, _FILE_KEYS, "")
    if data.get("language", language) != language:
        raise compiler.error("language", f"{data['language']!r} does not match the file name ({language!r})")
    compiler.terms = _compile_terms(compiler, data.get("terms") or {})
    compiler.where = "file"
    gate: Matcher | None = None
    if data.get("gate") is not None:
        # One regex on the clause or its heading that must match for any rule of the file to run:
        # it keeps a language's rules to text in that language (shared words such as "opt-out"
        # or "Training" would otherwise let a German rule flag English), and most clauses, which
        # say nothing about AI or choices, cost one scan per language.
        gate_regex = compiler.regex(data["gate"], "gate")
        gate = AnyOf([gate_regex, SectionTest(gate_regex)])
    rules_data = data.get("rules")
    if not isinstance(rules_data, list) or not rules_data:
        raise compiler.error("rules", "expected a non-empty list of rules")
    facets = _compile_facets(compiler, data.get("facets") or {})
    rules = [_compile_rule(compiler, raw, index, language, gate) for index, raw in enumerate(rules_data)]
    return rules, facets


def _compile_facets(compiler: Compiler, data: Any) -> Facets:
    """facets: {kind: {name: pattern}}: what a statement's sentence says about who, what, how
    surely and on which conditions (see statements.FACET_KINDS)."""
    from .statements import FACET_KINDS

    compiler.where = "facets"
    if not isinstance(data, dict):
        raise compiler.error("facets", "expected a mapping of kind: {name: pattern}")
    out: Facets = {}
    for kind, names in data.items():
        if kind not in FACET_KINDS:
            raise compiler.error(str(kind), f"unknown facet kind{_did_you_mean(str(kind), FACET_KINDS)} (kinds: {', '.join(FACET_KINDS)})")
        if not isinstance(names, dict) or not names:
            raise compiler.error(str(kind), "expected a mapping of name: pattern")
        out[kind] = {}
        for name, pattern in names.items():
            if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9-]*", name):
                raise compiler.error(f"{kind}.{name}", "facet names are lower-case-with-dashes")
            out[kind][name] = compiler.pattern(pattern, f"{kind}.{name}")
    return out


def _compile_terms(compiler: Compiler, terms_data: Any) -> dict[str, str]:
    """Term name -> regex source (alternatives joined). Each term must compile on its own."""
    compiler.where = "terms"
    if not isinstance(terms_data, dict):
        raise compiler.error("terms", "expected a mapping of name: regex or list of regexes")
    terms: dict[str, str] = {}
    for name, value in terms_data.items():
        if not isinstance(name, str) or not _TERM_REF.fullmatch("{" + name + "}"):
            raise compiler.error(str(name), "term names are lower_case_with_underscores")
        alternatives = [value] if isinstance(value, str) else value
        valid = isinstance(alternatives, list) and alternatives and all(isinstance(a, str) and a for a in alternatives)
        if not valid:
            raise compiler.error(name, "expected a regex or a non-empty list of regexes")
        terms[name] = "|".join(f"(?:{a})" for a in alternatives)
    compiler.terms = terms
    if compiler.strict:
        for name, value in terms_data.items():  # each alternative must compile, terms expanded
            for i, alternative in enumerate([value] if isinstance(value, str) else value):
                compiler.regex(alternative, name if isinstance(value, str) else f"{name}[{i}]")
    return terms


def _compile_rule(compiler: Compiler, raw: Any, index: int, language: str, gate: Matcher | None) -> Rule:
    compiler.where = f"rules[{index}]"
    if not isinstance(raw, dict):
        raise compiler.error("rule", "expected a mapping")
    if isinstance(raw.get("id"), str):
        compiler.where = f"rule {raw['id']}"
    _check_keys(compiler, raw, _RULE_KEYS, "")
    for key in _REQUIRED_RULE_KEYS:
        if raw.get(key) in (None, ""):
            raise compiler.error(key, "missing")
    rule_id, category, severity = raw["id"], raw["category"], raw["severity"]
    if severity not in SEVERITIES:
        raise compiler.error("severity", f"unknown severity {severity!r}; use one of {', '.join(SEVERITIES)}")
    if category not in CATEGORIES:
        raise compiler.error("category", f"unknown category {category!r}{_did_you_mean(str(category), CATEGORIES)}")
    if not isinstance(rule_id, str) or not _ID.match(rule_id) or not rule_id.startswith(f"{language}.{category}."):
        raise compiler.error("id", f"expected '{language}.{category}.<name>' (lower-case, dashes), got {rule_id!r}")
    description = raw.get("description") or ""
    if not isinstance(description, str):
        raise compiler.error("description", "expected a string")
    unless = raw.get("unless") or []
    polarity = raw.get("polarity", "does")
    if polarity not in POLARITIES:
        raise compiler.error("polarity", f"unknown polarity {polarity!r}; use one of {', '.join(POLARITIES)}")
    qualifier = raw.get("qualifier")
    if qualifier is not None and (not isinstance(qualifier, str) or not re.fullmatch(r"[a-z][a-z0-9-]*", qualifier)):
        raise compiler.error("qualifier", f"expected a lower-case-with-dashes name, got {qualifier!r}")
    return Rule(
        id=rule_id,
        category=category,
        severity=severity,
        language=language,
        match=compiler.pattern(raw["match"], "match"),
        unless=tuple(
            compiler.pattern(u, f"unless[{i}]") for i, u in enumerate(unless if isinstance(unless, list) else [unless])
        ),
        description=" ".join(description.split()),
        gate=gate,
        polarity=polarity,
        qualifier=qualifier,
    )


def load_rules(languages: Iterable[str] | None = None, rules_dir: Path | str | None = None, *, strict: bool = True) -> RuleSet:
    """Load and compile rule files: all `*.yaml` in `rules_dir` by default, else `<lang>.yaml` for
    each language given. Cached per (languages, directory, strict); invalid files raise RuleError.

    `strict=False` checks the files' structure now but compiles each regex on first use: the
    commands use it to start fast; the test suite loads the shipped rules strictly."""
    langs = None if languages is None else tuple(sorted(set(languages)))
    return _load_rules(langs, Path(rules_dir or RULES_DIR).resolve(), strict)


def _rule_paths(languages: tuple[str, ...] | None, rules_dir: Path) -> list[Path]:
    if languages is None:
        paths = sorted(rules_dir.glob("*.yaml"))
        if not paths:
            raise RuleError(f"{rules_dir}: file: no rule files (*.yaml)")
        return paths
    paths = [rules_dir / f"{lang}.yaml" for lang in languages]
    for path in paths:
        if not path.is_file():
            raise RuleError(f"{path}: file: no rule file for language {path.stem!r}")
    return paths


@functools.cache
def _load_rules(languages: tuple[str, ...] | None, rules_dir: Path, strict: bool = True) -> RuleSet:
    """Compiled once per process, and cached on disk (_DiskCache). A cache file is written only
    once every regex of the rules has compiled, so a hit is as good as a strict load."""
    paths = _rule_paths(languages, rules_dir)
    cache = _DiskCache(paths)
    ruleset = cache.load()
    if ruleset is None:
        ruleset = _compile_rules(paths, strict)
        cache.save(ruleset)
    return ruleset


class _DiskCache:
    """The compiled RuleSet of some rule files, pickled, keyed by the digests of those files,
    of monitor/data/ai_actors.yaml and of the flags engine's own source (so an edit of either
    is never answered from a stale cache), and by the Python version. Regexes are stored
    with the literal pre-checks (needles) worked out and in their compiled form (the regex
    engine's program: rebuilding a regex from it skips parsing and compiling, which is most of
    a short `monitor diff`). Every regex is compiled before saving, so the file's content does
    not depend on what a run happened to reach. Any problem reading or writing the cache only
    costs compiling the rules again.

    Where: $MONITOR_CACHE_DIR, else $XDG_CACHE_HOME/privacy-monitor, else ~/.cache/privacy-monitor."""

    VERSION = 2

    def __init__(self, paths: Sequence[Path]):
        import hashlib
        import os
        import sys

        digest = hashlib.sha256(f"{self.VERSION}|{sys.version}|".encode())
        engine = Path(__file__).resolve().parent
        data = engine.parent / "data" / "ai_actors.yaml"
        for path in [*paths, data, *sorted(engine.glob("*.py"))]:
            digest.update(f"{path.name}|".encode())
            try:
                digest.update(hashlib.sha256(path.read_bytes()).digest())
            except OSError:
                digest.update(b"missing")
        self.key = digest.hexdigest()
        base = os.environ.get("MONITOR_CACHE_DIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "privacy-monitor"
        )
        self.path = Path(base) / f"rules-{self.key[:32]}.pickle"

    def load(self) -> RuleSet | None:
        try:
            data = self.path.read_bytes()
        except OSError:
            return None
        try:
            ruleset = pickle.loads(data)  # noqa: S301 - our own file, named by the rules' digest
        except Exception:
            return None
        return ruleset if isinstance(ruleset, RuleSet) else None

    def save(self, ruleset: RuleSet) -> None:
        import io
        import os
        import tempfile

        nodes = _regex_nodes(ruleset)
        try:
            for node in nodes:
                node.prepare_for_cache()  # needles and compiled program, stored with the rules
        except RuleError:
            return  # a bad regex (strict=False defers it): reported where it is used, not cached
        buffer = io.BytesIO()
        try:
            _UncompiledPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(ruleset)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".rules.", dir=self.path.parent)
            with os.fdopen(fd, "wb") as handle:
                handle.write(buffer.getvalue())
            os.replace(tmp, self.path)
        except Exception:  # a read-only home, an unpicklable matcher: no cache, same rules
            try:
                os.unlink(tmp)
            except Exception:
                pass


def _regex_nodes(ruleset: RuleSet) -> list[Regex]:
    """Every Regex reachable from the rule set (rules, unless, gates, facets)."""
    found: dict[int, Regex] = {}
    seen: set[int] = set()
    stack: list[Any] = [ruleset]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Regex):
            found[id(obj)] = obj
        elif isinstance(obj, Mapping):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            stack.extend(vars(obj).values())
    return list(found.values())


def _uncompiled() -> None:
    return None


class _UncompiledPickler(pickle.Pickler):
    """Stores a compiled regex as None (unpickling would compile every one of them again):
    a Regex node compiles its pattern on first use."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, re.Pattern):
            return _uncompiled, ()
        return NotImplemented


def _compile_rules(paths: Sequence[Path], strict: bool = True) -> RuleSet:
    rules: list[Rule] = []
    facets: dict[str, Facets] = {}
    seen: dict[str, Path] = {}
    for path in paths:
        file_rules, facets[path.stem] = _load_file(path, strict=strict)
        for rule in file_rules:
            if rule.id in seen:
                raise RuleError(f"{path}: rule {rule.id}: id: already defined in {seen[rule.id]}")
            seen[rule.id] = path
            rules.append(rule)
    facets[SHARED_FACETS] = {"actor": {"named": named_actor_pattern(_named_actors())}}
    return RuleSet(tuple(rules), facets)


@functools.cache
def _named_actors() -> tuple[str, ...]:
    """Company and product names (monitor/data/ai_actors.yaml): who a statement names as
    receiving or training on the data."""
    from ..extract import load_data

    data = load_data("ai_actors.yaml")
    return tuple(name for group in data.values() for name in group)

