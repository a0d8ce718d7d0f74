"""The AI statements a clause makes, one sentence at a time.

A statement is what a flag is about: "we may use public posts to train our AI models, outside
the EU" is an `ai-training` statement, polarity `does`, data {public}, modality `may`, qualifier
{region}. The rules (monitor/rules/<lang>.yaml, `rules:`) find that a sentence makes a
statement of a category; the facet vocabularies of the same files (`facets:`) read who acts
(actor), on what (data, and the limits on it such as "de-identified"), how surely (modality)
and under which conditions (qualifiers). `compare` then diffs the statements of two versions.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .matchers import Context, Matcher, Regex
from .model import SEVERITIES
from .rules import Rule, RuleSet
from .text import HEADING_ONLY, Span, fold, sentence_key, trim_evidence

FACET_KINDS = ("actor", "data", "model", "limit", "modality", "qualifier", "owner", "choice", "extent", "answer")
"""The facet vocabularies a rule file may declare (see monitor/rules/README.md)."""

SHARED_FACETS = "*"
"""The pseudo-language of facets that apply whatever the text's language (named companies)."""


@dataclass(frozen=True)
class Statement:
    """One AI statement read from one sentence."""

    category: str
    polarity: str  # does | does-not
    rule: Rule  # the most severe rule that read it (its id and severity go on the flag)
    evidence: str
    sentence: str  # the visible sentence, for a reader
    key: str  # sentence_key of that sentence: equal keys are "the same sentence"
    actors: frozenset[str] = frozenset()
    data: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()  # what kind of model is trained (language, image, any AI ...)
    limits: frozenset[str] = frozenset()
    modality: str | None = None  # may | will (None: a promise not to, or an opt-out)
    passive: bool = False  # "your data may be used": a modality is weighed only in the same voice
    qualifiers: frozenset[str] = frozenset()
    clause: int = -1  # which changed clause it came from (set by compare)
    around: frozenset[str] = field(default=frozenset(), compare=False)  # "kind:name" facets anywhere in the clause
    language: str = "en"
    rules: tuple[str, ...] = field(default=(), compare=False)

    @property
    def severity(self) -> str:
        return self.rule.severity

    @property
    def signature(self) -> tuple[object, ...]:
        """Two statements with equal signatures say the same thing, whatever their wording."""
        return (self.category, self.polarity, self.actors, self.data, self.models, self.limits, self.modality, self.passive, self.qualifiers)

    @functools.cached_property
    def words(self) -> list[str]:
        return self.key.split()


def read_statements(
    rules: RuleSet, markdown: str | None, section: str | None = None, *, own: str | None = None
) -> list[Statement]:
    """The statements of one clause, in sentence order. `own` is the service's name, if known:
    naming itself, a platform names no third party."""
    if not markdown or not markdown.strip():
        return []
    ctx = Context(markdown, section)
    return statements_in(rules, ctx, own=own)


def statements_in(rules: RuleSet, ctx: Context, *, own: str | None = None, questions: bool = False) -> list[Statement]:
    """The statements of a clause. A question ("Does PixelNest use my photos to train AI?")
    states nothing; the answer to it ("No.", "Only if you share them publicly") states what it
    asks, denied or affirmed (`questions=True` reads a question as the statement it asks about)."""
    answers, answered = _answers(rules, ctx, own) if not questions else ([], [])
    hits = rules.hits(ctx)
    if not hits:
        return answers
    text = ctx.text
    groups: dict[tuple[int, str, str], list[tuple[Rule, Span]]] = {}
    for rule, span in hits:
        polarity = "any" if rule.category == "opt-out-scope" else rule.polarity
        first, last = text.sentence_of(span.start), text.sentence_of(max(span.start, span.end - 1))
        # A reading that spans sentences ("You can opt out. ... model training") belongs to each
        # of them: an edit of any one of them is an edit of the statement.
        for index in range(first, last + 1):
            groups.setdefault((index, rule.category, polarity), []).append((rule, span))
    out: list[Statement] = []
    where: list[int] = []  # the sentence index of each statement of `out`
    choice_sentences = {index for index, category, _ in groups if category == "opt-out-scope"}
    limit_sentences = {  # "data already used to train our models is not removed": the limit's object
        index for index, category, _ in groups
        if category == "opt-out-scope" and any(r.qualifier == "not-retroactive" for r, _ in groups[(index, category, "any")])
    }
    arounds: dict[str, dict[str, set[str]]] = {}  # the clause's facets, once per language
    out.extend(answers)
    where.extend(answered)
    for (index, category, polarity), group in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1])):
        lo, hi = text.sentences[index]
        if not questions and text.folded[hi : hi + 1] == "?":
            continue  # a question asks; its answer states (see _answers)
        group.sort(key=lambda h: (-SEVERITIES.index(h[0].severity), h[1].start))
        rule, span = group[0]
        language = rule.language
        facets = _facets(rules, ctx, language, lo, hi)
        if language not in arounds:
            arounds[language] = _facets(rules, ctx, language, 0, len(text.folded))
            for kind, names in _list_intro_facets(rules, ctx, language).items():
                arounds[language][kind] |= names
        around = arounds[language]
        if index in limit_sentences and category == "ai-training":
            continue
        if index in choice_sentences and category in ("ai-training", "ai-third-party") and _governed(ctx, rules, language, lo, group):
            continue  # "you can object to the use of your data to train AI": the choice is the statement (opt-out-scope)
        if polarity == "any":  # one opt-out statement per sentence: its limits are qualifiers
            polarity = "does-not" if any(r.polarity == "does-not" for r, _ in group) else "does"
            facets["qualifier"] |= {r.qualifier for r, _ in group if r.qualifier}
        if category in ("ai-training", "ai-third-party") and "banned" in facets["owner"]:
            category, polarity = "ai-third-party", "does-not"  # recipients may not train on it
        elif "users" in facets["owner"]:
            continue  # a rule for users or developers: not a use of their data, nor a choice over it
        if category == "ai-training" and not facets["owner"] & {"ours", "jointly"} and (
            "others" in facets["owner"] or ("its" in facets["owner"] and facets["named"] - {own})
        ):
            category = "ai-third-party"  # only a third party trains: that is sharing for their AI
        actors = facets["actor"] | (facets["named"] - {own} if category == "ai-third-party" else set())
        if category == "opt-out-scope":
            actors = set()  # who offers the choice does not change what it covers
        statement = Statement(
            category=category,
            polarity=polarity,
            rule=rule,
            evidence=text.evidence(span),
            sentence=trim_evidence(text.visible_slice(lo, hi), 400),
            key=sentence_key(text.folded[lo:hi]),
            actors=frozenset(actors),
            data=frozenset(facets["data"]),
            models=frozenset(facets["model"]),
            limits=frozenset(facets["limit"]),
            modality=_modality(facets["modality"]) if polarity == "does" and category != "opt-out-scope" else None,
            passive=polarity == "does" and category != "opt-out-scope" and "passive" in facets["modality"],
            qualifiers=frozenset(facets["qualifier"]),
            rules=tuple(dict.fromkeys(r.id for r, _ in group)),
            language=language,
            around=frozenset(f"{kind}:{name}" for kind, names in around.items() for name in names),
        )
        out.append(statement)
        where.append(index)
        if category == "ai-training" and "jointly" in facets["owner"]:
            # "we and our partners use it to train models": the platform trains, and so do others
            out.append(replace(statement, category="ai-third-party", actors=frozenset(actors | (facets["named"] - {own}))))
            where.append(index)
    return _merge_same_sentence(_continued(rules, ctx, out, where))


_LIMITS_OF_A_CHOICE = frozenset({"not-retroactive", "deadline"})
"""Conditions that continue the opt-out before them even without a word pointing back."""


def _continued(rules: RuleSet, ctx: Context, out: list[Statement], where: list[int]) -> list[Statement]:
    """Conditions written as the next sentence belong to the statement before: "You can ask us
    to exclude your posts. Requests must be submitted by 31 December; after that date, posts
    already collected remain in the training data." A sentence that opens by pointing back
    (the language's `choice: follow`: "this", "requests", "after that date") and names a
    qualifier adds it, and its words, to the statements of the sentence before; after an
    opt-out, a sentence naming its limits in time (not retroactive, a deadline) does so too. A
    use it mentions ("remain in the training data") is the limit's object, not a statement."""
    text = ctx.text
    if not out or len(text.sentences) < 2:
        return out
    out = list(out)
    drop: set[int] = set()
    anchor: list[int] = []  # positions in `out` of the statements the next sentence may continue
    anchor_lo = 0  # where the anchor's sentence starts
    for index in range(min(where), len(text.sentences)):
        own_positions = [pos for pos, i in enumerate(where) if i == index]
        lo, hi = text.sentences[index]
        if anchor:
            language = out[anchor[0]].language
            follow = rules.facets.get(language, {}).get("choice", {}).get("follow")
            regex = getattr(follow, "regex", None)
            lead = text.folded[lo:hi].lstrip(" *_-–—•;:,")
            choice_before = any(out[p].category == "opt-out-scope" for p in anchor)
            own_choice = any(out[p].category == "opt-out-scope" for p in own_positions)
            follows = regex is not None and regex.match(lead)
            if (follows and (choice_before or not own_choice)) or (choice_before and not own_choice):
                qualifiers = set(_facets(rules, ctx, language, lo, hi)["qualifier"])
                for p in own_positions:
                    qualifiers |= out[p].qualifiers if out[p].category == "opt-out-scope" else set()
                targets = anchor
                if not follows:  # "Posts already shared before you turn it on are not recalled"
                    qualifiers &= _LIMITS_OF_A_CHOICE
                    targets = [p for p in anchor if out[p].category == "opt-out-scope"]
                if qualifiers:
                    sentence, key = trim_evidence(text.visible_slice(anchor_lo, hi), 400), sentence_key(text.folded[anchor_lo:hi])
                    for pos in targets:
                        out[pos] = replace(out[pos], qualifiers=out[pos].qualifiers | qualifiers, key=key, sentence=sentence)
                    drop.update(p for p in own_positions if out[p].category in ("ai-training", "opt-out-scope"))
                    continue
        anchor, anchor_lo = own_positions, lo
    return [st for pos, st in enumerate(out) if pos not in drop]


def _answers(rules: RuleSet, ctx: Context, own: str | None) -> tuple[list[Statement], list[int]]:
    """FAQ pages answer questions: "**Does PixelNest use my photos to train AI?** Short answer:
    no." A sentence that opens with an answer (the language's `answer` facets: `affirms`, `denies`) after a
    question, the last sentence before it in the clause or the paragraph (or heading) just
    before the clause, states what the question asks: affirmed by a yes ("Only if you share
    them publicly" is a yes with a condition), denied by a no. The statements and the index of
    the answering sentence each belongs to."""
    text = ctx.text
    asked_before = _question_before(ctx.section_markdown)
    if asked_before is None and "?" not in text.folded:
        return [], []  # most clauses: no question to answer (and no sentence split needed)
    out: list[Statement] = []
    where: list[int] = []
    for index, (lo, hi) in enumerate(text.sentences):
        if index == 0:
            question = asked_before
        else:
            qlo, qhi = text.sentences[index - 1]
            question = text.visible_slice(qlo, qhi) + "?" if text.folded[qhi : qhi + 1] == "?" else None
        if not question:
            continue
        answer = text.folded[lo:hi].lstrip(" *_-:|")
        for language, facets in rules.facets.items():
            kinds = facets.get("answer", {})
            polarity = next((p for name, p in (("denies", "does-not"), ("affirms", "does")) if name in kinds and kinds[name].regex.match(answer)), None)
            if polarity is None:
                continue
            asked = statements_in(rules, Context(question), own=own, questions=True)
            found = _facets(rules, ctx, language, lo, hi)
            for st in asked:
                if st.category not in ("ai-training", "ai-third-party"):
                    continue
                out.append(replace(
                    st, polarity=polarity, evidence=trim_evidence(text.visible_slice(lo, hi)),
                    sentence=trim_evidence(f"{question} {text.visible_slice(lo, hi)}", 400),
                    key=sentence_key(fold(question) + " " + text.folded[lo:hi]),
                    qualifiers=st.qualifiers | frozenset(found["qualifier"]), limits=st.limits | frozenset(found["limit"]),
                    data=st.data | frozenset(found["data"]), modality=st.modality if polarity == "does" else None,
                    passive=st.passive and polarity == "does",
                ))
                where.append(index)
            break
    return out, where


def _question_before(section: str | None) -> str | None:
    """The question a clause may answer: the paragraph before it, or else the last heading of
    its path, when it ends with a question mark."""
    if not section:
        return None
    lines = [line.strip(" *_#") for line in section.split("\n") if line.strip(" *_#")]
    if not lines:
        return None
    last = lines[-1]
    if last.endswith("?"):
        return last
    heading = lines[0].split(" > ")[-1].strip()
    return heading if len(lines) == 1 and heading.endswith("?") else None


def _governed(ctx: Context, rules: RuleSet, language: str, lo: int, group: list[tuple[Rule, Span]]) -> bool:
    """Whether a use (training, sharing) is only the object of a choice in its sentence: a
    choice cue ("opt out of", "you can object to", "turn off") comes before every reading of
    it. "We may use your data to train AI unless you opt out" states the use itself, and so does
    a use after a condition that holds the choice ("If you turn on X, we use your sessions to
    train our models": the language's `choice: condition` opens the sentence, and a comma ends
    the condition before the use)."""
    choice = rules.facets.get(language, {}).get("choice", {})
    cues = choice.get("cue")
    if cues is None:
        return False
    first_cue = min((s.start for s in ctx.spans(cues) if s.start >= lo), default=None)
    if first_cue is None or not all(first_cue < span.start for _, span in group):
        return False
    condition = getattr(choice.get("condition"), "regex", None)
    if condition is not None:
        text = ctx.text.folded
        first_use = min(span.start for _, span in group)
        if condition.match(text[lo:].lstrip(" *_-–—•")) and "," in text[first_cue:first_use]:
            return False
    return True


def _merge_same_sentence(statements: list[Statement]) -> list[Statement]:
    """A sentence read twice for one category (an ai-training statement that turned out to be a
    third party's, beside an ai-third-party one) keeps the more severe reading."""
    seen: dict[tuple[str, str, str], int] = {}
    out: list[Statement] = []
    for st in statements:
        slot = (st.key, st.category, st.polarity)
        if slot in seen:
            kept = out[seen[slot]]
            if SEVERITIES.index(st.severity) > SEVERITIES.index(kept.severity):
                out[seen[slot]] = st
            continue
        seen[slot] = len(out)
        out.append(st)
    return out


def _list_intro_facets(rules: RuleSet, ctx: Context, language: str) -> dict[str, set[str]]:
    """The facets of the line that introduces a list ("Your content:"), read as said around each
    of its items ("- is not used to train AI models"): an item is the end of that sentence."""
    lines = [line.strip(" *_#") for line in (ctx.section_markdown or "").split("\n")]
    intro = next((line for line in reversed(lines) if line.endswith(":")), None)
    if not intro:
        return {}
    found = _facets(rules, Context(intro), language, 0, len(intro))
    return {kind: found[kind] for kind in ("actor", "data", "limit", "qualifier")}


def _modality(found: set[str]) -> str:
    """`may` when the sentence hedges ("may", "might", "could"), else `will`: "we use" and "we
    will use" state the same certainty."""
    return "may" if "may" in found else "will"


def _facets(rules: RuleSet, ctx: Context, language: str, lo: int, hi: int) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {kind: set() for kind in (*FACET_KINDS, "named")}
    for lang in (language, SHARED_FACETS):
        for kind, names in rules.facets.get(lang, {}).items():
            if kind == "extent":
                continue  # read on the words a change inserted, not on the sentence (compare)
            if kind == "answer":
                continue  # read on the sentence after a question (_answers)
            for name, node in names.items():
                if name == "named":  # companies and products named: only a recipient's name counts
                    found["named"].update(_named(ctx, node, lo, hi))
                elif any(s is HEADING_ONLY or lo <= s.start < hi for s in ctx.spans(node)):
                    found[kind].add(name)
    return found


def _named(ctx: Context, node: Matcher, lo: int, hi: int) -> set[str]:
    """Named companies and products in the sentence, each under its canonical name."""
    folded = ctx.text.folded
    return {" ".join(folded[s.start : s.end].split()) for s in ctx.spans(node) if lo <= s.start < hi}


def named_actor_pattern(names: Iterable[str]) -> Regex:
    """One case-sensitive, whole-word regex over the company and product names of
    monitor/data/ai_actors.yaml (longest first, so "Meta AI" wins over "Meta")."""
    alternatives = "|".join(re.escape(n).replace(r"\ ", r"\s+") for n in sorted(set(names), key=len, reverse=True))
    return Regex(rf"(?<!\w)(?-i:{alternatives})(?!\w)", "monitor/data/ai_actors.yaml: names: bad name")
