"""Flags are the difference between the AI statements of two versions.

Only sentences that changed are read (a sentence whose words still stand anywhere in the other
version says nothing new, whatever else changed in its clause). Their statements are paired
per category, most alike first; a pair with equal facets is a rewording (no flag), any other
pair says how the statement changed (negated, broadened, qualifier-added ...), and a statement
left without a partner was added or removed, unless the same statement still stands elsewhere
in the other version (a copy, or a sentence moved and reworded).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, Any

from .model import CHANGES, SEVERITIES, Flag
from .statements import Statement, read_statements
from .text import Text, fold, sentence_key

if TYPE_CHECKING:
    from ..extract import Document
    from .rules import RuleSet

# Pairing: how alike two sentences' words must be to be "the same statement, edited".
PAIR_SAME_CLAUSE = 0.25
PAIR_ACROSS = 0.5
PAIR_POLARITY = 0.45
PIECE_MIN_WORDS = 4  # a piece of a sentence (a list item) pairs with the whole when nearly all of it is there
PIECE_CONTAINED = 0.9
LISTED_QUALIFIERS = ("region", "plan")
"""Qualifiers written as lists of items ("the EU, Switzerland and the UK", "Business and
Enterprise plans"): one item more or fewer is a wider or narrower statement."""
EASIER = frozenset({"setting"})
"""Qualifiers that make a choice easier to use: a settings switch added beside an e-mail request
broadens the opt-out (and its removal narrows it)."""  # a flip of polarity is only believed between closely similar sentences


@dataclass(frozen=True)
class Rewording:
    """A statement said again in other words: reported, never flagged."""

    category: str
    before: str
    after: str
    clause: int = -1

    def to_dict(self) -> dict[str, Any]:
        return {"category": self.category, "before": self.before, "after": self.after}


@dataclass
class StatementDiff:
    flags: list[tuple[Flag, int]]  # (flag, index of the change it belongs to)
    reworded: list[Rewording]


def compare_clauses(rules: RuleSet, old: str | None, new: str | None, section: str | None = None) -> list[Flag]:
    """Flags for one clause edit, with no document around it."""
    olds = read_statements(rules, old, section)
    news = read_statements(rules, new, section)
    old_keys = {s.key for s in olds}
    new_keys = {s.key for s in news}
    olds = [s for s in olds if s.key not in new_keys]
    news = [s for s in news if s.key not in old_keys]
    result = diff_statements(olds, news, extents=_extents(rules))
    return sort_flags([flag for flag, _ in result.flags])


def _extents(rules: RuleSet) -> dict[str, Mapping[str, Any]]:
    """Per language, the `extent` words, plus the qualifiers that name listable items (regions,
    plans) and the exception cue, to weigh an item added to or dropped from such a list."""
    out: dict[str, Mapping[str, Any]] = {}
    for lang, kinds in rules.facets.items():
        if "extent" not in kinds:
            continue
        qualifier = kinds.get("qualifier", {})
        items = tuple(qualifier[name] for name in LISTED_QUALIFIERS if name in qualifier)
        out[lang] = {**kinds["extent"], "_items": items, "_exempt": qualifier.get("exception")}
    return out


def compare_documents(
    rules: RuleSet,
    old: Document,
    new: Document,
    changes: Sequence[tuple[str | None, str | None, str | None]],
    *,
    service: str | None = None,
    contexts: Sequence[tuple[str | None, str | None]] | None = None,
) -> StatementDiff:
    """Statement diff of two documents, given their changed clauses as (old, new, section)
    (None for a side the change does not have). Flags name the index of their change."""
    own = service or _own_name(rules, new) or _own_name(rules, old)
    olds: list[Statement] = []
    news: list[Statement] = []
    for index, (old_text, new_text, section) in enumerate(changes):
        old_context, new_context = contexts[index] if contexts else (section, section)
        olds.extend(replace(s, clause=index) for s in read_statements(rules, old_text, old_context, own=own))
        news.extend(replace(s, clause=index) for s in read_statements(rules, new_text, new_context, own=own))
    if not olds and not news:
        return StatementDiff([], [])
    if own:  # the platform naming itself is not a party it shares with
        olds = [replace(s, actors=s.actors - {own}) for s in olds]
        news = [replace(s, actors=s.actors - {own}) for s in news]
    new_keys = _sentence_keys(new, [s.key for s in olds])
    old_keys = _sentence_keys(old, [s.key for s in news])
    kept = [s for s in olds if s.key in new_keys] + [s for s in news if s.key in old_keys]
    olds = [s for s in olds if s.key not in new_keys]
    news = [s for s in news if s.key not in old_keys]
    sentences = ClauseSentences(changes)
    read_before: dict[tuple[int, int], list[Statement]] = {}

    def before(index: int, side: int) -> list[Statement]:
        """The statements of what the reader read just before a changed clause (its context):
        a new paragraph "Withdrawing consent does not affect models already trained" conditions
        the choice of the paragraph before, unchanged or not."""
        if (index, side) not in read_before:
            text, section = (contexts[index][side] if contexts else None), changes[index][2]
            if text and section and text.startswith(section):  # the heading path, then the paragraph
                text = text[len(section):].lstrip("\n")
            found = read_statements(rules, text, section, own=own) if text else []
            read_before[index, side] = [replace(s, clause=index) for s in found]
        return read_before[index, side]

    return diff_statements(
        olds, news, old_standing=lambda sts: _standing(rules, old, sts), new_standing=lambda sts: _standing(rules, new, sts),
        extents=_extents(rules), kept=kept, sentences=sentences, before=before,
    )


def diff_statements(
    olds: Sequence[Statement],
    news: Sequence[Statement],
    *,
    old_standing: Callable[[Sequence[Statement]], Sequence[Statement]] | None = None,
    new_standing: Callable[[Sequence[Statement]], Sequence[Statement]] | None = None,
    extents: Mapping[str, Mapping[str, Any]] | None = None,
    kept: Sequence[Statement] = (),
    sentences: ClauseSentences | None = None,
    before: Callable[[int, int], Sequence[Statement]] | None = None,
) -> StatementDiff:
    """Pair old and new statements and say what happened to each. `extents` (language ->
    {"wider": regex node, "narrower": regex node}) read words inserted into a statement whose
    facets did not change."""
    flags: list[tuple[Flag, int]] = []
    reworded: list[Rewording] = []
    news = _join_split_sentences(olds, news)
    pairs = _pair(olds, news)
    paired_old = {id(o) for o, _ in pairs}
    paired_new = {id(n) for _, n in pairs}
    for o, n in pairs:
        found = _what_changed(o, n) or _inserted_extent(o, n, (extents or {}).get(n.language), _neighbour_words(o, n, sentences))
        if found and o.polarity == n.polarity and _typo_variant(o.key, n.key):
            found = []  # a misspelling fixed ("photoes" -> "photos") can make a facet readable: same statement
        _judge(o, n, found, flags, reworded)
    gone = [o for o in olds if id(o) not in paired_old]
    came = [n for n in news if id(n) not in paired_new]
    for o, n in _pair_leftovers(gone, came):  # a clause removed and another written in its place
        _judge(o, n, _what_changed(o, n), flags, reworded)
        gone.remove(o)
        came.remove(n)
    kept_old = [*kept, *(o for o, _ in pairs)]
    kept = [*kept, *(n for _, n in pairs)]
    if sentences is not None:  # a typo fixed or made ("artifical" -> "artificial") is not a new statement
        gone = [o for o in gone if not any(_typo_variant(o.key, k) for k in sentences.of(o.clause)[1])]
        came = [n for n in came if not any(_typo_variant(n.key, k) for k in sentences.of(n.clause)[0])]
    if gone:
        standing = {s.signature for s in new_standing(gone)} if new_standing else set()
        for o in gone:
            if o.signature not in standing:
                changes, details = _added(o, kept_old, removed=True, before=before(o.clause, 0) if before else ())
                flags.append((_flag(o, changes, details, "old", before=o, removed=True), o.clause))
    if came:
        standing = {s.signature for s in old_standing(came)} if old_standing else set()
        for n in came:
            if n.signature not in standing:
                flags.append((_flag(n, *_added(n, kept, before=before(n.clause, 1) if before else ()), "new"), n.clause))
    return StatementDiff(flags, reworded)


SPLIT_PART = 0.8  # share of a piece's content words that stand in the old sentence
SPLIT_COVER = 0.6  # share of the old sentence's content words the pieces say again


def _content(words: Sequence[str]) -> set[str]:
    return {_stem(w) for w in words if len(w) >= _MIN_CONTENT and w not in _FUNCTION}


def _stands(word: str, words: set[str]) -> bool:
    """The word, or an inflection of it ("private" / "privaten"), is among `words`."""
    return word in words or (len(word) >= 5 and any(w.startswith(word[:5]) for w in words))


def _join_split_sentences(olds: Sequence[Statement], news: Sequence[Statement]) -> list[Statement]:
    """One sentence cut in two or more ("We use public posts to train AI, and we do not use
    private messages for it." -> "... to train AI. Private messages are not used for it.", or
    list items under a line that ends in a colon) says what it said: pieces of one category,
    each made of the old sentence's words and together most of them, are read as one statement
    (their facets joined) before pairing. One piece alone is an edit, not a split."""
    out = list(news)
    for o in olds:
        whole = _content(o.words)
        if len(whole) < 4:
            continue
        pieces = []
        for n in out:
            if n.category != o.category or abs(n.clause - o.clause) > 3 or len(n.words) >= len(o.words):
                continue
            part = _content(n.words)
            if len(part) >= 2 and sum(_stands(w, whole) for w in part) >= SPLIT_PART * len(part):
                pieces.append(n)
        pieces = [n for n in pieces if n.polarity == o.polarity or not any(m.key == n.key and m.polarity == o.polarity for m in pieces)]
        if len({n.key for n in pieces}) != len(pieces) or len(pieces) < 2:
            continue  # a sentence read twice is one piece, not a split
        if len(whole & set().union(*(_content(n.words) for n in pieces))) < SPLIT_COVER * len(whole):
            continue
        first = next((n for n in pieces if n.polarity == o.polarity), pieces[0])
        joined = replace(
            first,
            key=" ".join(n.key for n in pieces),
            sentence=" ".join(n.sentence for n in pieces),
            actors=frozenset().union(*(n.actors for n in pieces)),
            data=frozenset().union(*(n.data for n in pieces)),
            models=frozenset().union(*(n.models for n in pieces)),
            limits=frozenset().union(*(n.limits for n in pieces)),
            qualifiers=frozenset().union(*(n.qualifiers for n in pieces)),
            around=frozenset().union(*(n.around for n in pieces)),
        )
        out = [joined if n is first else n for n in out if n is first or all(n is not p for p in pieces)]
    return out


def _added(
    st: Statement, kept: Sequence[Statement], *, removed: bool = False, before: Sequence[Statement] = ()
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A statement added (or removed) beside one of its category that still stands in the same
    clause, or in the paragraph just before, conditions that one: "We train on your chats." +
    "If you are under 18, we do not." is an exception (qualifier-added, narrowed); an opt-out
    sentence beside a standing choice adds its conditions ("Opting out does not affect training
    already done")."""
    plain = ("removed",) if removed else ("added",)
    beside = [k for k in kept if k.clause == st.clause and k.category == st.category and k.key != st.key]
    beside = beside or [k for k in before if k.category == st.category and k.key != st.key]
    if not beside:
        return plain, ()
    kind = "qualifier-removed" if removed else "qualifier-added"
    sign = "-" if removed else "+"
    if all(k.polarity != st.polarity for k in beside) and st.category != "opt-out-scope":
        wider = (st.polarity == "does") != removed  # an exception that allows more, or a restriction dropped
        return (kind, "broadened" if wider else "narrowed", *plain), (f"{'drops' if removed else 'adds'} an exception: {st.sentence[:120]}",)
    extra = st.qualifiers - frozenset().union(*(k.qualifiers for k in beside))
    if not extra and st.category != "opt-out-scope":
        return plain, ()
    details = tuple(f"qualifier: {sign} {_h(q)}" for q in sorted(extra)) or (f"{'drops' if removed else 'adds'}: {st.sentence[:120]}",)
    return (kind, *plain), details


def _typo_variant(a: str, b: str) -> bool:
    """Two sentence keys that differ only by a few misspelt words ("artifical"/"artificial")."""
    if a == b:
        return False
    wa, wb = a.split(), b.split()
    if len(wa) != len(wb):
        return False
    diffs = [(x, y) for x, y in zip(wa, wb) if x != y]
    return 0 < len(diffs) <= 2 and all(_misspelt(x, y) for x, y in diffs)


def _misspelt(a: str, b: str) -> bool:
    """Two spellings of one word: at most two letters apart, not at the start ("photoes"/
    "photos"; not "aktiviert"/"deaktiviert", "ausgeschaltet"/"eingeschaltet", "sell"/"tell")."""
    if len(a) < 4 or len(b) < 4 or a[:2] != b[:2]:
        return False
    ops = SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal") <= 2


class ClauseSentences:
    """The sentence keys of each changed clause, old and new, split only when asked for (the
    typo test needs them for the few statements left unpaired)."""

    def __init__(self, changes: Sequence[tuple[str | None, str | None, str | None]]):
        self.changes = changes
        self._keys: dict[int, tuple[list[str], list[str]]] = {}

    def of(self, index: int) -> tuple[list[str], list[str]]:
        if index not in self._keys:
            old_text, new_text, _ = self.changes[index]
            self._keys[index] = (_clause_keys(old_text), _clause_keys(new_text))
        return self._keys[index]


def _clause_keys(markdown: str | None) -> list[str]:
    if not markdown:
        return []
    text = Text(markdown)
    return [sentence_key(text.folded[lo:hi]) for lo, hi in text.sentences]


def _judge(
    o: Statement, n: Statement, found: list[tuple[str, str]], flags: list[tuple[Flag, int]], reworded: list[Rewording]
) -> None:
    """A paired statement is a flag when something changed (`found`), a rewording otherwise."""
    if not found:
        reworded.append(Rewording(n.category, o.sentence, n.sentence, n.clause))
        return
    kinds = tuple(dict.fromkeys(k for k, _ in sorted(found, key=lambda f: CHANGES.index(f[0]))))
    flags.append((_flag(n, kinds, tuple(d for _, d in found if d), "both", before=o), n.clause))


# ------------------------------------------------------------------------------------ pairing


def _pair(olds: Sequence[Statement], news: Sequence[Statement]) -> list[tuple[Statement, Statement]]:
    """Best-first pairing within each category: same clause, same polarity and equal facets
    weigh in besides how alike the two sentences' words are."""
    scored = []
    for i, o in enumerate(olds):
        for j, n in enumerate(news):
            if o.category != n.category:
                continue
            same_clause = o.clause == n.clause
            same_polarity = o.polarity == n.polarity
            sim = _likeness(o.words, n.words)
            if not same_polarity:
                floor = PAIR_SAME_CLAUSE if same_clause else PAIR_POLARITY
            elif same_clause and o.category == "opt-out-scope":
                floor = 0.1  # one choice per clause, however rewritten
            else:
                floor = PAIR_SAME_CLAUSE if same_clause else PAIR_ACROSS
            if o.signature == n.signature:
                # one clause saying the same thing in new words ("We never train on your chats" ->
                # "Your chats are under no circumstances used for training"): the same statement
                floor = 0.0 if same_clause and same_polarity else min(floor, 0.3)
            if sim < floor:
                continue
            score = sim + 0.3 * same_clause + 0.2 * same_polarity + 0.5 * (o.signature == n.signature)
            scored.append((score, i, j))
    return _best_first(scored, olds, news)


def _likeness(old: Sequence[str], new: Sequence[str]) -> float:
    """How alike two sentences' words are: the share of words in common, or, when one side is
    a piece of the other (a list item under "We use your content:" against the sentence it was
    cut from), the share of the piece found in the whole."""
    matcher = SequenceMatcher(None, old, new, autojunk=False)
    ratio = matcher.ratio()
    shorter = min(len(old), len(new))
    if shorter < PIECE_MIN_WORDS or ratio >= PAIR_ACROSS:
        return ratio
    matched = sum(block.size for block in matcher.get_matching_blocks())
    return max(ratio, matched / shorter * PAIR_ACROSS) if matched >= PIECE_CONTAINED * shorter else ratio


def _pair_leftovers(gone: Sequence[Statement], came: Sequence[Statement]) -> list[tuple[Statement, Statement]]:
    """Unpaired statements of one category in neighbouring changes (a clause removed and another
    written in its place): a flip of polarity whatever the wording, the same polarity if the
    sentences share a fifth of their words or say the same (equal facets); the most alike first."""
    scored = []
    for i, o in enumerate(gone):
        for j, n in enumerate(came):
            if o.category == n.category and abs(o.clause - n.clause) <= 2:
                sim = SequenceMatcher(None, o.words, n.words, autojunk=False).ratio()
                if o.polarity != n.polarity or sim >= 0.2 or o.signature == n.signature:
                    scored.append((sim + 0.5 * (o.signature == n.signature), i, j))
    return _best_first(scored, gone, came)


def _best_first(
    scored: list[tuple[float, int, int]], olds: Sequence[Statement], news: Sequence[Statement]
) -> list[tuple[Statement, Statement]]:
    """Greedy matching: the best-scored (old index, new index) pairs first, each statement once."""
    used_o: set[int] = set()
    used_n: set[int] = set()
    pairs = []
    for _, i, j in sorted(scored, key=lambda s: (-s[0], s[1], s[2])):
        if i not in used_o and j not in used_n:
            used_o.add(i)
            used_n.add(j)
            pairs.append((olds[i], news[j]))
    return pairs


def _what_changed(o: Statement, n: Statement) -> list[tuple[str, str]]:
    """(change, detail) for each way the statement changed; [] for a rewording."""
    if o.polarity != n.polarity:
        return [("negated" if n.polarity == "does-not" else "affirmed", f"{o.polarity} -> {n.polarity}")]
    # A promise not to do something that now covers more is a narrower use, and the reverse.
    sign = -1 if n.polarity == "does-not" else 1
    found: list[tuple[str, str]] = []

    def widened(more: bool, detail: str) -> None:
        found.append(("broadened" if (1 if more else -1) * sign > 0 else "narrowed", detail))

    if o.models != n.models:  # no kind named means any AI model: "language models" -> "AI models" is wider
        if not n.models or (o.models and n.models > o.models):
            widened(True, f"model: {_human(n.models, 'any AI')} (was {_human(o.models, 'any AI')})")
        elif not o.models or n.models < o.models:
            widened(False, f"model: {_human(n.models, 'any AI')} (was {_human(o.models, 'any AI')})")
        else:
            widened(True, f"model: {_human(n.models, 'any AI')} (was {_human(o.models, 'any AI')})")
    # A facet counts as gained only if the old clause never said it, and as lost only if the new
    # clause no longer says it: a sentence split in two, or "them" for "your conversations",
    # moves words between sentences without changing the statement.
    def gained(kind: str, new: frozenset[str], old: frozenset[str]) -> list[str]:
        return sorted(x for x in new - old if f"{kind}:{x}" not in o.around)

    def lost(kind: str, new: frozenset[str], old: frozenset[str]) -> list[str]:
        return sorted(x for x in old - new if f"{kind}:{x}" not in n.around)

    for kind, label, old_set, new_set in (("actor", "actor", o.actors, n.actors), ("data", "data", o.data, n.data)):
        for name in gained(kind, new_set, old_set):
            widened(True, f"{label}: + {_h(name)}")
        for name in lost(kind, new_set, old_set):
            widened(False, f"{label}: - {_h(name)}")
    for name in gained("limit", n.limits, o.limits):
        widened(False, f"limit: + {_h(name)}")
    for name in lost("limit", n.limits, o.limits):
        widened(True, f"limit: - {_h(name)}")
    if o.modality and n.modality and o.modality != n.modality and o.passive == n.passive:
        widened(n.modality == "will", f"modality: {o.modality} -> {n.modality}")  # not across voices: "we use" -> "may be used" rewords
    for name in gained("qualifier", n.qualifiers, o.qualifiers):
        found.append(("qualifier-added", f"qualifier: + {_h(name)}"))
        if name in EASIER:
            widened(True, "")
    for name in lost("qualifier", n.qualifiers, o.qualifiers):
        found.append(("qualifier-removed", f"qualifier: - {_h(name)}"))
        if name in EASIER:
            widened(False, "")
    return found


_MIN_CONTENT = 4  # letters: shorter words ("the", "our", "and") carry no scope on their own
_FUNCTION = frozenset(
    "does will would should could have been being that this these those with from into your their them they also such "
    "which what when where there than then other only more most some very just".split()
)


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def _neighbour_words(o: Statement, n: Statement, sentences: ClauseSentences | None) -> tuple[set[str], set[str]]:
    """The word stems of the other sentences of each side's clause (old, new): words that left
    a statement for the next sentence ("... to train its models. It also uses that metadata to
    report on attacks") moved, and words that joined it from a neighbour were already said."""
    if sentences is None:
        return set(), set()
    old_keys, new_keys = sentences.of(o.clause)[0], sentences.of(n.clause)[1]
    old_other = {_stem(w) for key in old_keys if key != o.key for w in key.split()}
    new_other = {_stem(w) for key in new_keys if key != n.key for w in key.split()}
    return old_other, new_other


def _inserted_extent(
    o: Statement, n: Statement, extent: Mapping[str, Any] | None, neighbours: tuple[set[str], set[str]] = (set(), set())
) -> list[tuple[str, str]]:
    """Scope a statement gained or lost in words its facets do not name: a run of at least
    two new content words inserted after a widening cue ("including drafts you did not post")
    broadens it; after a narrowing cue ("unless you share them", "from accounts of adults") it
    adds a condition. A deleted run reads the other way. Replacements are rewordings, and so
    is a run moved to or from a neighbouring sentence of the clause (`neighbours`)."""
    if not extent:
        return []
    old_words, new_words = o.words, n.words
    found: list[tuple[str, str]] = []
    sign = -1 if n.polarity == "does-not" else 1
    found.extend(_listed_qualifiers(o, n, extent, sign))
    matcher = SequenceMatcher(None, old_words, new_words, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        grew = (j2 - j1) - (i2 - i1)
        if tag == "replace" and abs(grew) == 2:
            added, dropped = _compound_item(old_words[i1:i2], new_words[j1:j2]), _compound_item(new_words[j1:j2], old_words[i1:i2])
            if added or dropped:
                wider = bool(added) if sign > 0 else not added
                found.append(("broadened" if wider else "narrowed", f"{'adds' if added else 'drops'}: {added or dropped}"))
                continue
        if tag == "insert" or (tag == "replace" and grew >= 3):
            run, before, other, inserted = new_words[j1:j2], new_words[j1 - 1 : j1], set(old_words), True
        elif tag == "delete" or (tag == "replace" and grew <= -3):
            run, before, other, inserted = old_words[i1:i2], old_words[i1 - 1 : i1], set(new_words), False
        else:
            continue
        other_stems = {_stem(w) for w in other}
        content = [w for w in run if len(w) >= _MIN_CONTENT and w not in _FUNCTION and _stem(w) not in other_stems]
        listed = _listed_item(run, content, before, extent)
        if listed and not _in_menu_path(listed, (n if inserted else o).sentence):
            wider = inserted if sign > 0 else not inserted
            found.append(("broadened" if wider else "narrowed", f"{'adds' if inserted else 'drops'}: {listed}"))
            continue
        if len(content) < 2:
            continue
        elsewhere = neighbours[0] if inserted else neighbours[1]
        if sum(_stem(w) in elsewhere for w in content) * 2 >= len(content):
            continue  # moved between this sentence and its neighbour: the clause says the same
        lead = " ".join([*before, *run[:2]])
        phrase = " ".join(run)
        if _search(extent.get("narrower"), lead):
            found.append(("qualifier-added" if inserted else "qualifier-removed", f"{'adds' if inserted else 'drops'}: {phrase}"))
            found.append(("narrowed" if inserted * sign > 0 or (not inserted and sign < 0) else "broadened", ""))
        elif _search(extent.get("wider"), " ".join([*before, *run[:3]])):
            wider = inserted if sign > 0 else not inserted
            found.append(("broadened" if wider else "narrowed", f"{'adds' if inserted else 'drops'}: {phrase}"))
    return found


def _qualifier_items(sentence: str, extent: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """The regions and plans a sentence names: (those the statement covers, those named after
    an exception cue: "This does not apply to users in the EEA, Brazil or China")."""
    text = fold(sentence)
    exempt = getattr(extent.get("_exempt"), "regex", None)
    first_exempt = min((m.start() for m in exempt.finditer(text)), default=len(text) + 1) if exempt else len(text) + 1
    covered: set[str] = set()
    excepted: set[str] = set()
    for node in extent.get("_items", ()):
        regex = getattr(node, "regex", None)
        if regex is None:
            continue
        for m in regex.finditer(text):
            (excepted if m.start() > first_exempt else covered).add(" ".join(m.group().lower().split()))
    return covered, excepted


def _listed_qualifiers(o: Statement, n: Statement, extent: Mapping[str, Any], sign: int) -> list[tuple[str, str]]:
    """A list of regions or plans that grew or shrank while the statement still names one
    ("members of the EEA" -> "of the EEA, Switzerland or the UK"): more items covered is wider,
    more items excepted is narrower (and the reverse under a promise not to). Only a change in
    the number of items counts: "the EU" -> "the European Union" rewords."""
    if not extent.get("_items"):
        return []
    found: list[tuple[str, str]] = []
    (o_cov, o_exc), (n_cov, n_exc) = _qualifier_items(o.sentence, extent), _qualifier_items(n.sentence, extent)
    for before, after, excepted in ((o_cov, n_cov, False), (o_exc, n_exc, True)):
        if not before or not after or len(before) == len(after):
            continue
        grew = len(after) > len(before)
        wider = grew == (sign > 0) if not excepted else grew == (sign < 0)
        items = sorted(after - before) if grew else sorted(before - after)
        detail = f"{'adds' if grew else 'drops'}{' an exception for' if excepted else ''}: {', '.join(items)}"
        found.append(("broadened" if wider else "narrowed", detail))
    return found


def _listed_item(run: Sequence[str], content: Sequence[str], before: Sequence[str], extent: Mapping[str, Any]) -> str | None:
    """One item added to or dropped from a list ("designs, uploads and comments" -> "designs and
    uploads"): a single content word joined by a coordinator ("and", "oder", "y") that is no verb
    ("to train and improve" is how, not what) nor a document ("this policy and our Terms"). The
    word, or None."""
    if len(content) != 1 or len(run) > 4:
        return None
    join, verb = getattr(extent.get("join"), "regex", None), getattr(extent.get("verb"), "regex", None)
    reference = getattr(extent.get("reference"), "regex", None)
    if join is None or verb is None or verb.fullmatch(content[0]) or (reference and reference.fullmatch(content[0])):
        return None
    if not any(join.fullmatch(w) for w in [*before, *run] if w != content[0]):
        return None
    return content[0]


_MENU_PATH = re.compile(r"[^>›\n.;:]{1,40}(?:\s[>›]\s[^>›\n.;:]{1,40})+")


def _in_menu_path(word: str, sentence: str) -> bool:
    """Whether the word is part of a menu path ("Settings > Privacy and safety > Data for AI"):
    a renamed menu item is a label, not what the statement covers."""
    return any(word in sentence_key(m.group()).split() for m in _MENU_PATH.finditer(sentence))


def _compound_item(o_run: Sequence[str], n_run: Sequence[str]) -> str | None:
    """A German compound split into a list ("Textunterhaltungen" -> "Text- und
    Sprachunterhaltungen"): the new head word shares the old word's tail. The added part, or None."""
    if len(o_run) != 1 or len(n_run) != 3 or n_run[1] not in ("und", "oder", "sowie"):
        return None
    old_word, first, last = o_run[0], n_run[0], n_run[2]
    if not old_word.startswith(first):
        return None
    tail = old_word[len(first):]
    if len(tail) >= 5 and last.endswith(tail) and len(last) > len(tail):
        return last[: -len(tail)]
    return None


def _search(node: Any, text: str) -> bool:
    regex = getattr(node, "regex", None)
    return bool(regex is not None and regex.search(text))


# ------------------------------------------------------------------------------------ flags


def _flag(
    st: Statement, changes: tuple[str, ...], details: tuple[str, ...], side: str, *, before: Statement | None = None,
    removed: bool = False,
) -> Flag:
    return Flag(
        category=st.category,
        severity=st.severity,
        rule=st.rule.id,
        evidence=st.evidence,
        side=side,
        change=changes[0],
        changes=changes,
        details=details,
        summary=summary(st, changes[0], details),
        before=before.sentence if before is not None else None,
        after=None if removed else st.sentence,
    )


def sort_flags(flags: list[Flag]) -> list[Flag]:
    """Most severe first, then by category and rule (the order reports show)."""
    return sorted(flags, key=lambda f: (-SEVERITIES.index(f.severity), f.category, f.rule))


def _human(names: frozenset[str], default: str) -> str:
    items = sorted(n.replace("-", " ") for n in names)
    if not items:
        return default
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def claim(st: Statement) -> str:
    """What the statement says, as a verb phrase after "it" ("may use public posts to train AI")."""
    data = _human(st.data, "your data")
    if "public" in st.limits:
        data = "public " + (data if st.data else "content")
    rest = st.limits - {"public"}
    limits = f" ({_human(rest, '')})" if rest else ""
    hedge = "may " if st.modality == "may" else ""
    negative = st.polarity == "does-not"
    if st.category == "ai-training":
        return f"does not use {data}{limits} to train AI" if negative else f"{hedge}use{'' if hedge else 's'} {data}{limits} to train AI"
    if st.category == "ai-third-party":
        actors = _human(st.actors, "third parties")
        verb = "does not share" if negative else f"{hedge}share{'' if hedge else 's'}"
        return f"{verb} {data}{limits} with {actors} for their AI"
    if st.category == "opt-out-scope":
        conditions = f" ({_human(st.qualifiers, '')})" if st.qualifiers else ""
        return "gives no way to opt out of AI use" + conditions if negative else "offers a choice over AI use" + conditions
    if st.category == "sensitive-data":
        return f"{'does not use' if negative else 'uses'} sensitive data ({data}) with AI or ads"
    return "keeps data used for AI for a stated time"


SUMMARIES = {
    "added": "Now says it {said}",
    "removed": "No longer says it {said}",
    "negated": "Now says the opposite: it {said}",
    "affirmed": "Drops a promise not to: now says it {said}",
    "broadened": "Widens what it says: it {said}{extra}",
    "narrowed": "Narrows what it says: it {said}{extra}",
    "qualifier-added": "Adds a condition: it {said}{extra}",
    "qualifier-removed": "Drops a condition: it {said}{extra}",
}
"""One line per kind of change; {said} is the statement as a verb phrase, {extra} the details."""


def summary(st: Statement, change: str, details: tuple[str, ...]) -> str:
    """One plain-language line: "Now says it may use public posts to train AI (qualifier: + region)"."""
    extra = f" ({'; '.join(details)})" if details else ""
    return SUMMARIES[change].format(said=claim(st), extra=extra)


# ------------------------------------------------------------------------------ whole documents


def _sentence_keys(doc: Document, wanted: Sequence[str]) -> set[str]:
    """The sentence keys of `doc` among `wanted`: only clauses whose text holds the longest
    words of a wanted sentence are split into sentences (a cheap substring test on the clause's
    comparison form, already computed by the alignment)."""
    probes = [sorted(set(key.split()), key=len, reverse=True)[:2] for key in dict.fromkeys(wanted) if key]
    if not probes:
        return set()
    keys: set[str] = set()
    for clause in doc.clauses:
        lower = fold(clause.key).lower()
        if any(all(w in lower for w in words) for words in probes):
            text = Text(clause.text)
            keys.update(sentence_key(text.folded[lo:hi]) for lo, hi in text.sentences)
    return keys


def _own_name(rules: RuleSet, doc: Document) -> str | None:
    """The company or product a document names far more often than any other: itself
    (LinkedIn in LinkedIn's policy, where Microsoft is a party it shares with)."""
    from collections import Counter

    node = rules.facets.get("*", {}).get("actor", {}).get("named")
    regex = getattr(node, "regex", None)
    if regex is None:
        return None
    counts = Counter(" ".join(m.group(0).split()) for clause in doc.clauses for m in regex.finditer(clause.text))
    ranked = counts.most_common(2)
    if not ranked or ranked[0][1] < 5 or (len(ranked) > 1 and ranked[0][1] < 3 * ranked[1][1]):
        return None
    return ranked[0][0]


def _standing(rules: RuleSet, doc: Document, wanted: Sequence[Statement]) -> list[Statement]:
    """Statements of `doc` that may stand for `wanted` ones: only clauses holding most of the
    words of a wanted statement's evidence are read (reading every clause of a long policy is
    most of the cost of a diff, and a statement said elsewhere uses the same key words)."""
    needles = [[w for w in re.findall(r"\w+", fold(s.evidence).lower()) if len(w) >= 4] for s in wanted]
    out: list[Statement] = []
    for clause in doc.clauses:
        lower = fold(clause.text).lower()
        if any(words and sum(w in lower for w in words) * 4 >= len(words) * 3 for words in needles):
            out.extend(read_statements(rules, clause.text, clause.section_path or None))
    return out


def _h(name: str) -> str:
    """A facet name as a reader says it ("private-messages" -> "private messages")."""
    return name.replace("-", " ")
