"""Compiled rules and the rule set that runs them on a clause."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from .matchers import Context, Matcher
from .model import SEVERITIES, Flag
from .text import HEADING_ONLY, Span, _overlap, detect_language

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
    polarity: str = "does"  # "does-not" for rules that read a promise not to (or the loss of a choice)
    qualifier: str | None = None  # the condition this rule reads on an opt-out (not-retroactive, ...)

    def first_span(self, ctx: Context) -> Span | None:
        spans = self.spans(ctx)
        return spans[0] if spans else None

    def spans(self, ctx: Context) -> list[Span]:
        """Every span of `match` that no `unless` pattern blocks, in the matcher's order."""
        if self.gate is not None and not ctx.spans(self.gate):
            return []
        spans = [s for s in ctx.spans(self.match) if s.start >= 0]
        if not spans or not self.unless:
            return spans
        blockers: list[Span] = []
        for node in self.unless:
            found = ctx.spans(node)
            if HEADING_ONLY in found:
                return []
            blockers.extend(found)
        kept = []
        for span in spans:
            lo, hi = ctx.text.sentence_bounds(span)
            if not any(lo <= b.start and b.end <= hi for b in blockers):
                kept.append(span)
        return kept


@dataclass(frozen=True)
class RuleSet:
    """Compiled rules, run together on each clause."""

    rules: tuple[Rule, ...]
    facets: Mapping[str, Mapping[str, Mapping[str, Matcher]]] = field(default_factory=dict)
    """language -> facet kind (actor, data, limit, modality, qualifier, owner) -> name -> pattern."""

    @functools.cached_property
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

    def hits(self, ctx: Context) -> list[tuple[Rule, Span]]:
        """Every (rule, span) on a clause, for reading its statements sentence by sentence.

        Only the rules of the clause's language run (detected by its function words; all of
        them when it cannot be told). Per category only the language with the most hits in the clause is kept (words shared
        between languages, such as "opt-out" or "LLM", must not read a French statement into an
        English clause)."""
        language = detect_language(ctx.text.folded, self.languages)
        hits = [
            (rule, span)
            for gate, rules in self._by_gate
            if language is None or any(rule.language == language for rule in rules)  # before the gate: it costs
            if gate is None or ctx.spans(gate)
            for rule in rules
            if language is None or rule.language == language
            for span in rule.spans(ctx)
        ]
        if not hits:
            return []
        votes = Counter(rule.language for rule, _ in hits)
        best: dict[str, str] = {}
        for rule, _ in sorted(hits, key=lambda h: -votes[h[0].language]):
            best.setdefault(rule.category, rule.language)
        return [(rule, span) for rule, span in hits if best[rule.category] == rule.language]

    def flag_change(self, old: str | None, new: str | None, section: str | None = None) -> list[Flag]:
        """Flags for one changed clause (old None: added; new None: removed; both: modified):
        the AI statements it added, removed or altered (see `compare`)."""
        from .compare import compare_clauses

        return compare_clauses(self, old, new, section)


