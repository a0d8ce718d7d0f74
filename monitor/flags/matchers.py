"""Matchers: the nodes a rule's pattern compiles to, and the per-clause context they run in.

Matcher kinds plug in with the `@matcher` decorator; the loader checks their options from the
same declaration, so a new kind needs no change anywhere else.
"""

from __future__ import annotations

import functools

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .literals import Needle, _compile_with_tree, compiled_program, from_program, required_literals
from .model import RuleError
from .text import HEADING_ONLY, Span, Text, _overlap

if TYPE_CHECKING:
    from .loader import Compiler

class Context:
    """One clause (and its section heading) being matched; memoises each matcher's spans so
    patterns shared between rules (through YAML aliases or equal regexes) run once per clause.

    `prefilter=False` turns off the literal pre-checks, a speed-up that must never change a
    result; tests compare both ways."""

    def __init__(self, text: str, section: str | None = None, *, prefilter: bool = True):
        self.text = Text(text)
        self.section_markdown = section  # the heading path and the paragraph before, as given
        self.prefilter = prefilter
        self._memo: dict[Matcher, list[Span]] = {}
        self._possible: dict[Matcher, bool] = {}
        self._needles: dict[Needle, bool] = {}

    @functools.cached_property
    def section(self) -> Text | None:
        """The heading path and the paragraph before, prepared only when a `section` test runs
        (most clauses stop at a gate before any does)."""
        return Text(self.section_markdown) if self.section_markdown else None

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
        self._program: tuple[Any, ...] | None = None  # the compiled form, kept by the rules cache

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

    def _prepare(self, *, for_cache: bool = False) -> None:
        if self._program is not None and self._needles is not None:
            self._regex = from_program(self.pattern, self._program)
            if self._regex is not None:
                return
        try:
            self._regex, tree = _compile_with_tree(self.pattern, int(re.IGNORECASE))
        except re.error as exc:
            raise RuleError(f"{self.error}: {exc}") from None
        self._needles = required_literals(self._regex, tree)
        if for_cache and tree is not None:
            self._program = compiled_program(self._regex, tree)

    def prepare_for_cache(self) -> None:
        """Compile now and keep the compiled form, which the rules' disk cache stores (a run
        from the cache then skips parsing and compiling). Raises RuleError on a bad regex."""
        if self._program is None:
            self._prepare(for_cache=True)

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
    not separated from it by a barrier ("but", "however": "we don't sell it, but we train on it").
    With a `target` (default: the file's `negation_target` term, if any), a cue before the span
    must also bear on it: the span, or a target word (use, train, share ...), follows the cue
    within a few words; "content you create but do not post, to train" negates posting, not
    training."""

    keep_negated: ClassVar[bool]
    TARGET_WORDS = 3  # how far after a cue its verb may be ("do not currently use")

    def __init__(self, item: Matcher, cue: Matcher, barrier: Matcher | None, within: int, target: Matcher | None = None):
        self.item, self.cue, self.barrier, self.within, self.target = item, cue, barrier, within, target

    @classmethod
    def build(cls, value: Any, opts: dict[str, Any], compiler: Compiler, field: str) -> Matcher:
        cue = opts.get("cue") or compiler.term_pattern("negation", f"{field}.cue")
        barrier = opts.get("barrier")
        if barrier is None and "negation_barrier" in compiler.terms:
            barrier = compiler.term_pattern("negation_barrier", f"{field}.barrier")
        target = opts.get("target")
        if target is None and "negation_target" in compiler.terms:
            target = compiler.term_pattern("negation_target", f"{field}.target")
        return cls(compiler.pattern(value, field), cue, barrier, opts.get("within", 12), target)

    def _bears_on(self, ctx: Context, cue: Span, span: Span, targets: list[Span]) -> bool:
        if self.target is None or cue.start >= span.start:
            return True
        text = ctx.text
        if text.words_between(cue, span) <= self.TARGET_WORDS:
            return True
        return any(t.start >= cue.end and text.words_between(cue, t) <= self.TARGET_WORDS for t in targets)

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
            targets = ctx.spans(self.target) if self.target is not None and cues else []
            negated = any(
                lo <= c.start < span.end and c.end <= span.end and self._bears_on(ctx, c, span, targets) for c in cues
            )
            if negated == self.keep_negated:
                out.append(span)
        return out


@matcher("negated", within=int, cue=Pattern, barrier=Pattern, target=Pattern)
class Negated(_Negation):
    """Spans of the pattern with a negation cue (default: the file's `negation` term) up to
    `within` words before them (default 12) in the same sentence, or inside them, and no
    barrier in between (default: the file's `negation_barrier` term, if any)."""

    keep_negated = True


@matcher("affirmed", within=int, cue=Pattern, barrier=Pattern, target=Pattern)
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


