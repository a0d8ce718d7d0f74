"""Flags on changed clauses: AI training, third-party AI use, the reach of opt-outs.

This module is the engine only. The wording it looks for lives in YAML rule files under
monitor/rules/ (one per language), documented in monitor/rules/README.md. Keeping the
wording out of Python means a reviewer can read, test and extend the rules without reading code,
and a new phrasing is a data change with a labelled case next to it.

How a clause is matched:

1. Its Markdown is reduced to the *visible* text (link targets, emphasis markers, escapes and
   tags dropped, whitespace collapsed). Evidence is always cut from this text.
2. The visible text is *folded* for matching (accents, typographic quotes and dashes, odd spaces),
   with an index back to the visible text. Rule patterns are folded the same way when compiled,
   so "entraîner" in a rule matches "entrainer" in a policy and the reverse.
3. Every rule of every loaded language runs on the clause (documents mix languages). A rule is a
   tree of matchers; matcher kinds plug in with the `@matcher` decorator.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeVar

import yaml

from .errors import MonitorError

__all__ = [
    "CATEGORIES",
    "SEVERITIES",
    "Flag",
    "Matcher",
    "Pattern",
    "Rule",
    "RuleError",
    "RuleSet",
    "load_rules",
    "matcher",
    "trim_evidence",
    "visible_text",
]

SEVERITIES = ("low", "medium", "high")
"""Ordered from least to most severe."""

CATEGORIES = ("ai-training", "ai-third-party", "opt-out-scope", "sensitive-data", "retention")
"""The categories a rule may raise. Checked at load so a typo in a rule file is an error, not a
category nobody filters on."""

RULES_DIR = Path(__file__).resolve().with_name("rules")
EVIDENCE_MAX = 200
"""Evidence longer than this many characters is cut at a word boundary and ends with '…'."""


class RuleError(MonitorError, ValueError):
    """A rule file is invalid. The message is one line: file, rule id (or section), field, problem."""


@dataclass(frozen=True)
class Flag:
    """One reason a changed clause deserves a human look."""

    category: str
    severity: str
    rule: str
    evidence: str
    side: str

    def to_dict(self) -> dict[str, str]:
        return {
            "category": self.category,
            "severity": self.severity,
            "rule": self.rule,
            "evidence": self.evidence,
            "side": self.side,
        }


# ---------------------------------------------------------------------------------------- text


# (trigger, pattern, replacement): a clean-up runs only if one of the trigger characters occurs
# (None: always). Most clauses have no link, tag or emphasis, and this is run on every one.
_MARKDOWN_TO_VISIBLE: tuple[tuple[str | None, re.Pattern[str], str], ...] = (
    ("\u200b\u200c\u200d\u2060\ufeff\u00ad", re.compile("[\u200b-\u200d\u2060\ufeff\u00ad]"), ""),  # invisibles
    ("<", re.compile(r"<br\s*/?>", re.I), "\n"),
    ("<", re.compile(r"<((?:https?://|mailto:)[^>\s]+)>"), r"\1"),  # autolinks show their address
    ("<", re.compile(r"</?[a-zA-Z][^<>\n]*>"), ""),  # other inline HTML
    # [text](url "title") and ![alt](url): keep the text. URLs may hold one level of parentheses.
    ("[", re.compile(r"!?\[((?:\\.|[^\]\\])*)\]\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"]*\")?\s*\)"), r"\1"),
    ("[", re.compile(r"\[((?:\\.|[^\]\\])*)\]\[[^\]\n]*\]"), r"\1"),  # reference links
    ("#", re.compile(r"^[ \t]*#{1,6}[ \t]+", re.M), ""),  # heading marks
    ("-=*_", re.compile(r"^[ \t]*[-=*_]{3,}[ \t]*$", re.M), ""),  # horizontal rules, setext underlines
    ("|", re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)+\|?[ \t]*$", re.M), ""),  # table dividers
    ("*+-.)", re.compile(r"^[ \t]*(?:[*+-]|\d{1,3}\\?[.)])[ \t]+", re.M), ""),  # list bullets
    ("*_~", re.compile(r"\*\*|__|~~"), ""),
    ("*_", re.compile(r"(?<![\w\\])[*_]+(?=\S)|(?<=[^\s\\])[*_]+(?!\w)"), ""),  # emphasis markers
    ("`", re.compile(r"`+"), ""),
    ("\\", re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~\"'])"), r"\1"),  # backslash escapes
    (None, re.compile("[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]{2,}|[\t\u00a0\u2000-\u200a\u202f\u205f\u3000]"), " "),
    ("\n", re.compile(r" ?\n\s*"), "\n"),
)


def visible_text(markdown: str) -> str:
    """The text a reader sees: what rules match on and what evidence is cut from."""
    text = markdown
    for trigger, pattern, replacement in _MARKDOWN_TO_VISIBLE:
        if trigger is None or any(c in text for c in trigger):
            text = pattern.sub(replacement, text)
    return text.strip()


def _fold_table() -> dict[int, str]:
    """Character folding used for matching, one source character to one or more characters."""
    table: dict[int, str] = {}
    for cp in range(0xC0, 0x250):  # Latin-1 Supplement and Latin Extended-A/B: drop accents
        base = "".join(c for c in unicodedata.normalize("NFD", chr(cp)) if not unicodedata.combining(c))
        if base and base != chr(cp):
            table[cp] = base
    table.update({ord(c): "'" for c in "\u2018\u2019\u201a\u201b\u2032\u00b4`"})
    table.update({ord(c): '"' for c in "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb"})
    table.update({ord(c): "-" for c in "\u2010\u2011\u2012\u2013\u2212"})
    table.update({ord(c): " - " for c in "\u2014\u2015"})  # an em dash separates, like " - "
    table.update({ord(c): " " for c in "\u00a0\u2007\u202f"})
    table.update({ord("œ"): "oe", ord("Œ"): "OE", ord("æ"): "ae", ord("Æ"): "AE", ord("ß"): "ss"})
    table.update({0xFB01: "fi", 0xFB02: "fl", ord("ſ"): "s"})
    return table


_FOLD = _fold_table()


def fold(text: str) -> str:
    """Fold text for matching. Case is kept: patterns are case-insensitive unless they say not."""
    return text.translate(_FOLD)


class Span(NamedTuple):
    """A match in the folded text of a clause: [start, end)."""

    start: int
    end: int


HEADING_ONLY = Span(-1, -1)
"""What a `section` test returns when the heading matches: a condition, never evidence."""


def _overlap(a: Span, b: Span) -> bool:
    return a.start < b.end and b.start < a.end


_WORD = re.compile(r"\w[\w'-]*")
# Sentence-like breaks: end punctuation before a space (not in "e.g." and friends), ';', table
# cell separators and line breaks (which is what <br> and list items become).
_BREAK = re.compile(
    r"(?<!\be\.g)(?<!\bi\.e)(?<!\bincl)(?<!\bvs)(?<!\bca)(?<!\bcf)(?<!\bz\.B)(?<!\bbzw)(?<!\bp\.ex)"
    r"[.!?](?=\s|$)|[;|\n]",
    re.I,
)


class Text:
    """A clause prepared for matching: visible text, folded text and lazy word/sentence indexes."""

    def __init__(self, markdown: str):
        self.visible = visible_text(markdown)
        self.folded = fold(self.visible)
        self._offsets: list[int] | None = None
        if len(self.folded) != len(self.visible):  # some character folded to two (œ -> oe)
            self._offsets = [i for i, ch in enumerate(self.visible) for _ in _FOLD.get(ord(ch), ch)]

    @functools.cached_property
    def lower(self) -> str:
        """Lower-cased folded text, for the literal pre-checks of regexes."""
        return self.folded.lower()

    @functools.cached_property
    def word_starts(self) -> list[int]:
        return [m.start() for m in _WORD.finditer(self.folded)]

    @functools.cached_property
    def breaks(self) -> list[int]:
        return [m.start() for m in _BREAK.finditer(self.folded)]

    def words_between(self, a: Span, b: Span) -> int:
        """Words strictly between two spans (0 when they touch or overlap)."""
        lo, hi = (a.end, b.start) if a.end <= b.start else (b.end, a.start)
        if hi <= lo:
            return 0
        return bisect.bisect_left(self.word_starts, hi) - bisect.bisect_left(self.word_starts, lo)

    def same_sentence(self, start: int, end: int) -> bool:
        return bisect.bisect_left(self.breaks, end) == bisect.bisect_left(self.breaks, start)

    def sentence_bounds(self, span: Span) -> tuple[int, int]:
        """Start of the sentence holding span.start and end of the one holding span.end."""
        i = bisect.bisect_left(self.breaks, span.start)
        j = bisect.bisect_left(self.breaks, max(span.start, span.end - 1))
        lo = self.breaks[i - 1] + 1 if i > 0 else 0
        hi = self.breaks[j] if j < len(self.breaks) else len(self.folded)
        return lo, hi

    def words_back(self, pos: int, n: int) -> int:
        """Position of the n-th word before pos (0 if there are fewer)."""
        i = bisect.bisect_left(self.word_starts, pos)
        return self.word_starts[i - n] if i - n >= 0 and i > 0 else 0

    def evidence(self, span: Span) -> str:
        """The visible text behind a span, on one line and at most EVIDENCE_MAX characters."""
        start, end = span
        if self._offsets is not None:
            start, end = self._offsets[start], self._offsets[end - 1] + 1
        return trim_evidence(self.visible[start:end])


def trim_evidence(text: str, limit: int = EVIDENCE_MAX) -> str:
    """One line, no dangling punctuation, cut at a word boundary if longer than `limit`."""
    text = " ".join(text.split()).strip(" ,;:")
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    if cut < limit // 2:
        cut = limit - 1
    return text[:cut].rstrip(" ,;:-(") + "…"


class Context:
    """One clause (and its section heading) being matched; memoises each matcher's spans so
    patterns shared between rules (through YAML aliases or equal regexes) run once per clause.

    `prefilter=False` turns off the literal pre-checks, a speed-up that must never change a
    result; tests compare both ways."""

    def __init__(self, text: str, section: str | None = None, *, prefilter: bool = True):
        self.text = Text(text)
        self.section = Text(section) if section else None
        self.prefilter = prefilter
        self._memo: dict[Matcher, list[Span]] = {}
        self._possible: dict[Matcher, bool] = {}
        self._needles: dict[Needle, bool] = {}

    def spans(self, node: Matcher) -> list[Span]:
        found = self._memo.get(node)
        if found is None:
            if self.prefilter and not self.possible(node):
                found = self._memo[node] = []
            else:
                found = self._memo[node] = node.find(self)
        return found

    def possible(self, node: Matcher) -> bool:
        """Memoised node.possible(): whether the node may match at all (cheap, conservative)."""
        answer = self._possible.get(node)
        if answer is None:
            answer = self._possible[node] = node.possible(self)
        return answer

    def has(self, needle: Needle) -> bool:
        """Whether the clause contains a literal (shared by every regex that needs it)."""
        answer = self._needles.get(needle)
        if answer is None:
            haystack = self.text.folded if needle.exact else self.text.lower
            answer = self._needles[needle] = needle.text in haystack
        return answer

    def known(self, node: Matcher) -> bool:
        return node in self._memo


# ----------------------------------------------------------------------------- literal pre-check

_MAX_NEEDLES = 48


class Needle(NamedTuple):
    """A string every match of some regex may contain; `exact` ones come from a case-sensitive
    part of the pattern (such as (?-i:AI)) and are looked for in the folded text as written."""

    text: str
    exact: bool


Needles = frozenset[Needle]


def required_literals(regex: re.Pattern[str], tree: Any = None) -> tuple[Needle, ...]:
    """Needles of which every match contains at least one; () when unknown.

    A substring test is far cheaper than running a long alternation over a clause, and most
    clauses contain none of a rule's key words. Only a speed-up: when the regex cannot be
    analysed (this reads the private `re._parser`), the regex simply always runs. `tree` is
    the regex already parsed, when the caller has it."""
    try:
        from re import _parser as sre_parse  # type: ignore[attr-defined]

        if tree is None:
            tree = sre_parse.parse(regex.pattern, regex.flags)
        found = _Literals(sre_parse).sequence(list(tree), exact=False)
    except Exception:  # any surprise from a private module: no pre-check, never a wrong answer
        return ()
    if not found or len(found) > _MAX_NEEDLES or not all(map(_selective, found)):
        return ()
    return tuple(sorted(found))


def _compile_with_tree(pattern: str, flags: int) -> tuple[re.Pattern[str], Any]:
    """Compile a regex and keep its parse tree, parsing once (the parse is most of the cost of
    compiling these long alternations, and the literal pre-check needs the tree too). Falls
    back to re.compile, and no tree, if the private compiler is not as expected. `flags` must
    be a plain int (re.compile converts RegexFlag itself; the compiler's inner loops are
    many times slower on the enum)."""
    try:
        from re import _compiler as sre_compile  # type: ignore[attr-defined]
        from re import _parser as sre_parse  # type: ignore[attr-defined]

        tree = sre_parse.parse(pattern, flags)
        return sre_compile.compile(tree, flags), tree
    except re.error:
        raise
    except Exception:  # a Python whose private modules differ: the public road
        return re.compile(pattern, flags), None


def _selective(needle: Needle) -> bool:
    """Worth testing: 3+ characters, 2+ case-sensitive ones ("AI"), or a rare one ("@")."""
    text = needle.text
    return len(text) >= (2 if needle.exact else 3) or any(not (c.isalnum() or c.isspace()) for c in text)


class _Literals:
    """Walks a parsed regex for a set of literals one of which any match must contain."""

    def __init__(self, sre: Any):
        self.sre = sre
        self.zero_width = {sre.AT, sre.ASSERT, sre.ASSERT_NOT}
        self.repeats = {sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", None)}

    def sequence(self, items: list[tuple[Any, Any]], exact: bool) -> Needles | None:
        """Best necessary set of a sequence: all selective, then fewest choices, then longest."""
        candidates = self.candidates(items, exact)
        if not candidates:
            return None
        return max(candidates, key=lambda c: (all(map(_selective, c)), -len(c), min(len(n.text) for n in c)))

    def candidates(self, items: list[tuple[Any, Any]], exact: bool) -> list[Needles]:
        """The necessary sets of a sequence's parts: literal runs and sub-patterns."""
        candidates: list[Needles] = []
        run: list[str] = []
        for op, av in items:
            if op is self.sre.LITERAL:
                run.append(chr(av) if exact else chr(av).lower())
                continue
            if op in self.zero_width:
                continue  # takes no characters: the literals on both sides stay adjacent
            sub = self.node(op, av, exact)
            if run:
                literal = "".join(run)
                candidates.append(frozenset({Needle(literal, exact)}))
                if op is self.sre.BRANCH and sub and not exact:
                    # "ad(?:s|vertising)" is parsed as "ad" + branch: keep "ads", "advertising".
                    candidates.append(frozenset(Needle(literal + self.lead(b), False) for b in av[1]))
                run = []
            if sub:
                candidates.append(sub)
        if run:
            candidates.append(frozenset({Needle("".join(run), exact)}))
        return candidates

    def lead(self, branch: list[tuple[Any, Any]]) -> str:
        """The literal characters a case-insensitive branch starts with ("" if none)."""
        chars = []
        for op, av in branch:
            if op is not self.sre.LITERAL:
                break
            chars.append(chr(av).lower())
        return "".join(chars)

    def node(self, op: Any, av: Any, exact: bool) -> Needles | None:
        sre = self.sre
        if op is sre.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if del_flags & re.IGNORECASE:
                exact = True
            elif add_flags & re.IGNORECASE:
                exact = False
            return self.sequence(list(sub), exact)
        if op is getattr(sre, "ATOMIC_GROUP", None):
            return self.sequence(list(av), exact)
        if op in self.repeats:
            return self.sequence(list(av[2]), exact) if av[0] >= 1 else None
        if op is sre.BRANCH:
            union: set[Needle] = set()
            for branch in av[1]:
                sub = self.sequence(list(branch), exact)
                if not sub:
                    return None
                union |= sub
            return frozenset(union)
        return None


# ------------------------------------------------------------------------------------ matchers


class Pattern:
    """Option type for @matcher: the option's value is itself a pattern (compiled for you)."""


class Matcher:
    """A compiled pattern node. Subclasses are registered with @matcher and built from YAML."""

    kind: ClassVar[str]
    options: ClassVar[Mapping[str, type]] = {}

    @classmethod
    def build(cls, value: Any, opts: dict[str, Any], compiler: Compiler, field: str) -> Matcher:
        """Compile `value` (what follows the kind key) with `opts` (the checked other keys)."""
        raise NotImplementedError

    def find(self, ctx: Context) -> list[Span]:
        raise NotImplementedError

    def possible(self, ctx: Context) -> bool:
        """A cheap necessary condition for a match (True when unknown)."""
        return True

    # Identity hashing: a node is memoised per clause by identity, and shared on purpose.
    __hash__ = object.__hash__
    __eq__ = object.__eq__


M = TypeVar("M", bound=type[Matcher])
_MATCHERS: dict[str, type[Matcher]] = {}


def matcher(kind: str, **options: type) -> Callable[[M], M]:
    """Register a matcher class under `kind`, with the options its YAML mapping may carry and
    their types (`Pattern` for a sub-pattern). The loader checks options against this table, so
    a new kind needs no change anywhere else."""

    def register(cls: M) -> M:
        cls.kind = kind
        cls.options = dict(options)
        _MATCHERS[kind] = cls
        return cls

    return register


def matcher_kinds() -> dict[str, str]:
    """Kind -> the first paragraph of its docstring (what the rules README documents)."""
    return {k: " ".join((c.__doc__ or "").split("\n\n")[0].split()) for k, c in sorted(_MATCHERS.items())}


@matcher("re")
class Regex(Matcher):
    """A regular expression (terms expanded, folded, whole words, case-insensitive)."""

    def __init__(self, pattern: str, error: str):
        self.pattern = pattern
        self.error = error  # "file: rule: field: bad regex 'source'", should compiling fail
        self._regex: re.Pattern[str] | None = None
        self._needles: tuple[Needle, ...] | None = None

    @property
    def regex(self) -> re.Pattern[str]:
        """Compiled on first use: a run compiles only the rules its text reaches (most
        clauses stop at a language's gate), which keeps `monitor diff` quick to start."""
        if self._regex is None:
            self._prepare()
        assert self._regex is not None
        return self._regex

    @property
    def needles(self) -> tuple[Needle, ...]:
        if self._needles is None:
            self._prepare()
        assert self._needles is not None
        return self._needles

    def _prepare(self) -> None:
        try:
            self._regex, tree = _compile_with_tree(self.pattern, int(re.IGNORECASE))
        except re.error as exc:
            raise RuleError(f"{self.error}: {exc}") from None
        self._needles = required_literals(self._regex, tree)

    @classmethod
    def build(cls, value: Any, opts: dict[str, Any], compiler: Compiler, field: str) -> Matcher:
        return compiler.regex(value, field)

    def possible(self, ctx: Context) -> bool:
        return not self.needles or any(map(ctx.has, self.needles))

    def find(self, ctx: Context) -> list[Span]:
        return [Span(*m.span()) for m in self.regex.finditer(ctx.text.folded) if m.end() > m.start()]


@matcher("any")
class AnyOf(Matcher):
    """Matches where any item matches (the union of their spans, in item order)."""

    def __init__(self, items: Sequence[Matcher]):
        self.items = tuple(items)

    @classmethod
    def build(cls, value: Any, opts: dict[str, Any], compiler: Compiler, field: str) -> Matcher:
        return cls(compiler.pattern_list(value, field, minimum=1))

    def possible(self, ctx: Context) -> bool:
        return any(map(ctx.possible, self.items))

    def find(self, ctx: Context) -> list[Span]:
        # Item order, not text order: a rule's evidence is the first span, so listing the most
        # specific alternative first gives the most telling evidence.
        found: dict[Span, None] = {}
        for item in self.items:
            found.update(dict.fromkeys(ctx.spans(item)))
        return list(found)


@matcher("all")
class AllOf(Matcher):
    """Matches when every item matches somewhere in the clause; the spans are the first item's."""

    def __init__(self, items: Sequence[Matcher]):
        self.items = tuple(items)

    @classmethod
    def build(cls, value: Any, opts: dict[str, Any], compiler: Compiler, field: str) -> Matcher:
        return cls(compiler.pattern_list(value, field, minimum=2))

    def possible(self, ctx: Context) -> bool:
        return all(map(ctx.possible, self.items))

    def find(self, ctx: Context) -> list[Span]:
        # Items already computed for this clause are free: test them first to stop early.
        for item in sorted(self.items[1:], key=lambda i: not ctx.known(i)):
            if not ctx.spans(item):
                return []
        return ctx.spans(self.items[0])


@matcher("near", within=int, ordered=bool, sentence=bool)
class Near(Matcher):
    """Every item matches within `within` words of the first (default 8), in the same sentence
    unless `sentence: false`, in the listed order if `ordered: true`. Span: first to last item."""

    def __init__(self, items: Sequence[Matcher], within: int, ordered: bool, sentence: bool):
        self.items, self.within, self.ordered, self.sentence = tuple(items), within, ordered, sentence

    @classmethod
    def build(cls, value: Any, opts: dict[str, Any], compiler: Compiler, field: str) -> Matcher:
        items = compiler.pattern_list(value, field, minimum=2)
        return cls(items, opts.get("within", 8), opts.get("ordered", False), opts.get("sentence", True))

    def possible(self, ctx: Context) -> bool:
        return all(map(ctx.possible, self.items))

    def find(self, ctx: Context) -> list[Span]:
        lists = []
        for item in sorted(self.items, key=lambda i: not ctx.known(i)):
            if not ctx.spans(item):
                return []
        for item in self.items:
            lists.append([s for s in ctx.spans(item) if s.start >= 0])
        text, out = ctx.text, []
        for anchor in lists[0]:
            chosen = [anchor]
            for candidates in lists[1:]:
                prev = chosen[-1] if self.ordered else anchor
                best: tuple[int, Span] | None = None
                for cand in candidates:
                    if self.ordered and cand.start < prev.end:
                        continue
                    if any(_overlap(cand, c) for c in chosen):
                        continue  # one piece of text cannot be two items
                    gap = text.words_between(prev, cand)
                    if gap > self.within or (best is not None and gap >= best[0]):
                        continue
                    lo, hi = min(cand.start, anchor.start), max(cand.end, anchor.end)
                    if self.sentence and not text.same_sentence(lo, hi):
                        continue
                    best = (gap, cand)
                if best is None:
                    break
                chosen.append(best[1])
            else:
                out.append(Span(min(s.start for s in chosen), max(s.end for s in chosen)))
        return out


class _Negation(Matcher):
    """Shared by `negated` and `affirmed`: is a span preceded (or contained) by a negation cue?

    The cue counts if it is within `within` words before the span, in the same sentence, and
    not separated from it by a barrier ("but", "however": "we don't sell it, but we train on it")."""

    keep_negated: ClassVar[bool]

    def __init__(self, item: Matcher, cue: Matcher, barrier: Matcher | None, within: int):
        self.item, self.cue, self.barrier, self.within = item, cue, barrier, within

    @classmethod
    def build(cls, value: Any, opts: dict[str, Any], compiler: Compiler, field: str) -> Matcher:
        cue = opts.get("cue") or compiler.term_pattern("negation", f"{field}.cue")
        barrier = opts.get("barrier")
        if barrier is None and "negation_barrier" in compiler.terms:
            barrier = compiler.term_pattern("negation_barrier", f"{field}.barrier")
        return cls(compiler.pattern(value, field), cue, barrier, opts.get("within", 12))

    def possible(self, ctx: Context) -> bool:
        return ctx.possible(self.item)

    def find(self, ctx: Context) -> list[Span]:
        spans = ctx.spans(self.item)
        if not spans:
            return []
        cues = ctx.spans(self.cue)
        barriers = ctx.spans(self.barrier) if cues and self.barrier is not None else []
        text, out = ctx.text, []
        for span in spans:
            if span.start < 0:
                continue
            lo = max(text.sentence_bounds(span)[0], text.words_back(span.start, self.within))
            lo = max([lo, *(b.end for b in barriers if lo <= b.start and b.end <= span.start)])
            negated = any(lo <= c.start < span.end and c.end <= span.end for c in cues)
            if negated == self.keep_negated:
                out.append(span)
        return out


@matcher("negated", within=int, cue=Pattern, barrier=Pattern)
class Negated(_Negation):
    """Spans of the pattern with a negation cue (default: the file's `negation` term) up to
    `within` words before them (default 12) in the same sentence, or inside them, and no
    barrier in between (default: the file's `negation_barrier` term, if any)."""

    keep_negated = True


@matcher("affirmed", within=int, cue=Pattern, barrier=Pattern)
class Affirmed(_Negation):
    """Spans of the pattern with no negation cue before them (see `negated`)."""

    keep_negated = False


@matcher("section")
class SectionTest(Matcher):
    """The clause's section heading path matches the regex. A condition only: it never supplies
    evidence, so a heading alone can never raise a flag."""

    def __init__(self, node: Regex):
        self.node = node

    @classmethod
    def build(cls, value: Any, opts: dict[str, Any], compiler: Compiler, field: str) -> Matcher:
        return cls(compiler.regex(value, field))

    def find(self, ctx: Context) -> list[Span]:
        if ctx.section is not None and self.node.regex.search(ctx.section.folded):
            return [HEADING_ONLY]
        return []


# --------------------------------------------------------------------------------------- rules


@dataclass(frozen=True, eq=False)
class Rule:
    """One compiled rule. `match` finds candidate spans; a span is dropped when an `unless`
    pattern matches in the same sentence (or, for a section test, anywhere)."""

    id: str
    category: str
    severity: str
    language: str
    match: Matcher
    unless: tuple[Matcher, ...] = ()
    description: str = ""
    gate: Matcher | None = None

    def first_span(self, ctx: Context) -> Span | None:
        if self.gate is not None and not ctx.spans(self.gate):
            return None
        spans = [s for s in ctx.spans(self.match) if s.start >= 0]
        if not spans or not self.unless:
            return spans[0] if spans else None
        blockers: list[Span] = []
        for node in self.unless:
            found = ctx.spans(node)
            if HEADING_ONLY in found:
                return None
            blockers.extend(found)
        for span in spans:
            lo, hi = ctx.text.sentence_bounds(span)
            if not any(lo <= b.start and b.end <= hi for b in blockers):
                return span
        return None


@dataclass(frozen=True)
class RuleSet:
    """Compiled rules, run together on each clause."""

    rules: tuple[Rule, ...]

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.language for r in self.rules))

    @functools.cached_property
    def _by_gate(self) -> tuple[tuple[Matcher | None, tuple[Rule, ...]], ...]:
        """Rules grouped by their file's gate, in order: a closed gate skips its whole file."""
        groups: dict[Matcher | None, list[Rule]] = {}
        for rule in self.rules:
            groups.setdefault(rule.gate, []).append(rule)
        return tuple((gate, tuple(rules)) for gate, rules in groups.items())

    def flag_text(
        self, text: str | None, section: str | None = None, *, prefilter: bool = True
    ) -> list[tuple[Rule, str]]:
        """(rule, evidence) for each rule that matches `text`, most severe first.

        Hits that add nothing are dropped. Within a category: a hit whose span overlaps a more
        severe (or, at equal severity, an earlier) hit of the same language, and any hit of a
        language with fewer hits in the clause than one already kept (words shared between
        languages, such as "opt-out" or "LLM", must not add a French flag to an English clause).
        `prefilter=False` skips the literal pre-checks (tests use it to prove they lose nothing)."""
        if not text or not text.strip():
            return []
        ctx = Context(text, section, prefilter=prefilter)
        hits = [
            (rule, span)
            for gate, rules in self._by_gate
            if gate is None or ctx.spans(gate)
            for rule in rules
            if (span := rule.first_span(ctx)) is not None
        ]
        votes = Counter(rule.language for rule, _ in hits)
        hits.sort(key=lambda h: (-votes[h[0].language], -SEVERITIES.index(h[0].severity)))  # stable
        kept: list[tuple[Rule, Span]] = []
        for rule, span in hits:
            same_category = [(k, s) for k, s in kept if k.category == rule.category]
            if not any(k.language != rule.language or _overlap(s, span) for k, s in same_category):
                kept.append((rule, span))
        kept.sort(key=lambda h: -SEVERITIES.index(h[0].severity))
        return [(rule, ctx.text.evidence(span)) for rule, span in kept]

    def flag_change(self, old: str | None, new: str | None, section: str | None = None) -> list[Flag]:
        """Flags for one changed clause (old None: added; new None: removed; both: modified).

        A rule matching on the old side only is how removals are caught (a promise not to train
        that disappears); a rule matching on both sides gives one flag with side "both"."""
        old_hits = {rule.id: (rule, ev) for rule, ev in self.flag_text(old, section)}
        new_hits = {rule.id: (rule, ev) for rule, ev in self.flag_text(new, section)}
        flags = []
        for rule_id in dict.fromkeys([*new_hits, *old_hits]):
            if rule_id in new_hits:
                rule, evidence = new_hits[rule_id]
                side = "both" if rule_id in old_hits else "new"
            else:
                rule, evidence = old_hits[rule_id]
                side = "old"
            flags.append(Flag(rule.category, rule.severity, rule.id, evidence, side))
        flags.sort(key=lambda f: (-SEVERITIES.index(f.severity), f.category, f.rule))
        return flags


# -------------------------------------------------------------------------------------- loading

_FILE_KEYS = ("language", "terms", "gate", "rules")
_RULE_KEYS = ("id", "category", "severity", "match", "unless", "description")
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
    return [_compile_rule(compiler, raw, index, language, gate) for index, raw in enumerate(rules_data)]


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
    )


def load_rules(languages: Iterable[str] | None = None, rules_dir: Path | str | None = None, *, strict: bool = True) -> RuleSet:
    """Load and compile rule files: all `*.yaml` in `rules_dir` by default, else `<lang>.yaml` for
    each language given. Cached per (languages, directory, strict); invalid files raise RuleError.

    `strict=False` checks the files' structure now but compiles each regex on first use: the
    commands use it to start fast; the test suite loads the shipped rules strictly."""
    langs = None if languages is None else tuple(sorted(set(languages)))
    return _load_rules(langs, Path(rules_dir or RULES_DIR).resolve(), strict)


@functools.cache
def _load_rules(languages: tuple[str, ...] | None, rules_dir: Path, strict: bool = True) -> RuleSet:
    if languages is None:
        paths = sorted(rules_dir.glob("*.yaml"))
        if not paths:
            raise RuleError(f"{rules_dir}: file: no rule files (*.yaml)")
    else:
        paths = [rules_dir / f"{lang}.yaml" for lang in languages]
        for path in paths:
            if not path.is_file():
                raise RuleError(f"{path}: file: no rule file for language {path.stem!r}")
    rules: list[Rule] = []
    seen: dict[str, Path] = {}
    for path in paths:
        for rule in load_file(path, strict=strict):
            if rule.id in seen:
                raise RuleError(f"{path}: rule {rule.id}: id: already defined in {seen[rule.id]}")
            seen[rule.id] = path
            rules.append(rule)
    return RuleSet(tuple(rules))
