"""Clause-level comparison of two documents, with flags and document-level signals.

Align first, then look closely: clauses are matched by their folded text (a hash per clause),
so unchanged clauses cost nothing; only the clauses that differ are paired by similarity and
given a word-level diff (diff-match-patch on word tokens, semantic clean-up). A character diff
over a whole document is never run.

Every change says whether it is cosmetic (typography, a date line, a move, a duplicate, a
paragraph split), and the diff is `substantive` when at least one change is not.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, Any

from .extract import Clause, Document, comparison_form, is_date_line, load_data, mask_dates, parse_date
from .text import visible_text

if TYPE_CHECKING:
    from .flags import Flag, RuleSet

CHANGE_KINDS = ("added", "removed", "modified", "moved")
PAIR_THRESHOLD = 0.45  # word-sequence similarity above which a removed and an added clause are one modified clause


@dataclass(frozen=True)
class WordRun:
    """A run of words inside a modified clause: kept, inserted or deleted. Stored as one of the
    clause's "spans" in the diff JSON; renderers read it as view.Segment runs (links resolved).
    Not to be confused with flags.text.Span, which is a match range in a clause's folded text."""

    op: str  # equal | insert | delete
    text: str

    def to_dict(self) -> dict[str, str]:
        return {"op": self.op, "text": self.text}


@dataclass
class Change:
    """One changed clause."""

    kind: str
    section: str
    old: str | None
    new: str | None
    old_index: int | None = None
    new_index: int | None = None
    cosmetic: bool = False
    reason: str | None = None  # why a change is cosmetic
    spans: list[WordRun] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)
    reworded: list[dict[str, str]] = field(default_factory=list)  # AI statements said again in other words

    @property
    def position(self) -> int:
        return self.new_index if self.new_index is not None else (self.old_index or 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cosmetic": self.cosmetic,
            "reason": self.reason,
            "section": self.section,
            "old": self.old,
            "new": self.new,
            "position": {"old": self.old_index, "new": self.new_index},
            "spans": [s.to_dict() for s in self.spans],
            "flags": [f.to_dict() for f in self.flags],
            "reworded": list(self.reworded),
        }


@dataclass(frozen=True)
class Signal:
    """Something about the document as a whole (silent-update, reverted)."""

    kind: str
    message: str
    version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.version is not None:
            out["version"] = self.version
        return out


@dataclass
class DiffResult:
    old_source: str
    new_source: str
    old_effective_date: str | None
    new_effective_date: str | None
    changes: list[Change]
    signals: list[Signal] = field(default_factory=list)

    @property
    def substantive(self) -> bool:
        return any(not c.cosmetic for c in self.changes)

    @property
    def flags(self) -> list[Flag]:
        return [f for c in self.changes for f in c.flags]

    def flagged_changes(self) -> list[Change]:
        return [c for c in self.changes if c.flags]

    def counts(self) -> Counter[str]:
        return Counter(c.kind for c in self.changes if not c.cosmetic)

    def mark_reverted(self, version: int) -> None:
        """The new text is an earlier version's (A/B flapping, an undone edit): say so instead
        of calling it a silent update."""
        self.signals = [s for s in self.signals if s.kind != "silent-update"]
        self.signals.append(Signal("reverted", f"reverted to version {version}", version=version))

    def to_dict(self) -> dict[str, Any]:
        return {
            "substantive": self.substantive,
            "old": {"source": self.old_source, "effective_date": self.old_effective_date},
            "new": {"source": self.new_source, "effective_date": self.new_effective_date},
            "signals": [s.to_dict() for s in self.signals],
            "changes": [c.to_dict() for c in self.changes],
        }


# ----------------------------------------------------------------------------- word diff

_TOKEN = re.compile(r"\]\([^)\s]*\)|\w+|\s+|[^\w\s]", re.UNICODE)


def word_spans(old: str, new: str) -> list[WordRun]:
    """Word-level diff: each word (or a whole link target) becomes one symbol for
    diff-match-patch, then semantic clean-up merges fragments into readable runs.

    Uses the C++ build of diff-match-patch (fast_diff_match_patch) when it is installed and
    the reference Python one otherwise; both implement the same algorithm."""
    symbol_of: dict[str, str] = {}
    token_of: dict[str, str] = {}

    def encode(text: str) -> str:
        tokens = _TOKEN.findall(text)
        for token in tokens:
            if token not in symbol_of:
                n = len(symbol_of)
                symbol = chr(0xE000 + n) if n < 6400 else chr(0x10000 + n)
                symbol_of[token] = symbol
                token_of[symbol] = token
        return "".join(map(symbol_of.__getitem__, tokens))

    ops = {"=": "equal", "+": "insert", "-": "delete", 0: "equal", 1: "insert", -1: "delete"}
    spans: list[WordRun] = []
    for op, symbols in _dmp_diff(encode(old), encode(new)):
        text = "".join(map(token_of.__getitem__, symbols))
        if spans and spans[-1].op == ops[op]:
            spans[-1] = WordRun(ops[op], spans[-1].text + text)
        elif text:
            spans.append(WordRun(ops[op], text))
    return spans


def _dmp_diff(a: str, b: str) -> list[tuple[Any, str]]:
    try:
        import fast_diff_match_patch
    except ImportError:
        from diff_match_patch import diff_match_patch

        dmp = diff_match_patch()
        dmp.Diff_Timeout = 2.0
        diffs = dmp.diff_main(a, b, False)
        dmp.diff_cleanupSemantic(diffs)
        return diffs
    return fast_diff_match_patch.diff(a, b, timelimit=2.0, checklines=False, cleanup="Semantic", counts_only=False)


# ----------------------------------------------------------------------------- alignment


def similarity(a: Clause, b: Clause) -> float:
    """How alike two clauses are: difflib's ratio over their words (0 to 1)."""
    if not a.words or not b.words:
        return 0.0
    return SequenceMatcher(None, a.words, b.words, autojunk=False).ratio()


def _pair(removed: list[int], added: list[int], old: Sequence[Clause], new: Sequence[Clause]) -> list[tuple[int, int]]:
    """Greedy best-first pairing of removed and added clauses of one block, keeping order.

    Cheap bounds first (shared vocabulary, then difflib's quick ratios) so that only
    plausible pairs pay for a full ratio: a block of 200 x 200 clauses stays fast."""
    if len(removed) == 1 and len(added) == 1:
        # one clause out, one in (the usual edit): no competition, so the cheap upper bound
        # of the ratio decides, and the word diff shows the detail
        i, j = removed[0], added[0]
        matcher = SequenceMatcher(None, old[i].words, new[j].words, autojunk=False)
        return [(i, j)] if old[i].words and new[j].words and matcher.quick_ratio() >= PAIR_THRESHOLD else []
    scored = []
    vocab = {i: set(old[i].words) for i in removed}
    for j in added:
        words_j = new[j].words
        if not words_j:
            continue
        set_j = set(words_j)
        matcher = SequenceMatcher(None, autojunk=False)
        matcher.set_seq2(words_j)
        for i in removed:
            set_i = vocab[i]
            if not set_i or len(set_i & set_j) / len(set_i | set_j) < 0.2:
                continue
            matcher.set_seq1(old[i].words)
            if matcher.real_quick_ratio() < PAIR_THRESHOLD or matcher.quick_ratio() < PAIR_THRESHOLD:
                continue
            score = matcher.ratio()
            if score >= PAIR_THRESHOLD:
                scored.append((score, i, j))
    scored.sort(key=lambda t: (-t[0], t[1], t[2]))
    pairs: list[tuple[int, int]] = []
    used_i: set[int] = set()
    used_j: set[int] = set()
    for _, i, j in scored:
        if i in used_i or j in used_j:
            continue
        # keep pairs monotonic: a pair may not cross one already chosen
        if any((i < pi) != (j < pj) for pi, pj in pairs):
            continue
        pairs.append((i, j))
        used_i.add(i)
        used_j.add(j)
    return sorted(pairs)


def _squash(clauses: Iterable[Clause]) -> str:
    return re.sub(r"\s+", "", "".join(c.key for c in clauses))


def compare(
    old: Document, new: Document, *, rules: RuleSet | None = None, flag: bool = True, service: str | None = None
) -> DiffResult:
    """Diff two documents clause by clause and flag the changed clauses. `service` is whose
    document it is ("LinkedIn"): a statement naming it is the platform speaking of itself, not
    of a third party."""
    a = [c.key for c in old.clauses]
    b = [c.key for c in new.clauses]
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    changes: list[Change] = []
    blocks: list[tuple[list[int], list[int]]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2)):
                if old.clauses[i].text != new.clauses[j].text:  # same folded text, other typography
                    changes.append(_modified(old.clauses[i], new.clauses[j], i, j, cosmetic=True, reason="typography"))
            continue
        blocks.append((list(range(i1, i2)), list(range(j1, j2))))

    # Moves: the same text leaves one place and appears at another.
    removed_by_hash: dict[str, list[int]] = defaultdict(list)
    for removed, _ in blocks:
        for i in removed:
            removed_by_hash[a[i]].append(i)
    moved_old: set[int] = set()
    moved_new: set[int] = set()
    for _, added in blocks:
        for j in added:
            candidates = removed_by_hash.get(b[j])
            if candidates:
                i = candidates.pop(0)
                moved_old.add(i)
                moved_new.add(j)
                changes.append(
                    Change("moved", _section(new.clauses[j]), old.clauses[i].text, new.clauses[j].text, i, j, True, "moved")
                )

    old_hashes, new_hashes = set(a), set(b)
    for removed, added in blocks:
        removed = [i for i in removed if i not in moved_old]
        added = [j for j in added if j not in moved_new]
        if removed and added and _squash(old.clauses[i] for i in removed) == _squash(new.clauses[j] for j in added):
            reason = "markup"  # the same words, split or joined differently
            changes.extend(Change("removed", _section(old.clauses[i]), old.clauses[i].text, None, i, None, True, reason) for i in removed)
            changes.extend(Change("added", _section(new.clauses[j]), None, new.clauses[j].text, None, j, True, reason) for j in added)
            continue
        pairs = _pair(removed, added, old.clauses, new.clauses)
        pairs = sorted(pairs + _pair_date_lines(removed, added, pairs, old.clauses, new.clauses))
        paired_i = {i for i, _ in pairs}
        paired_j = {j for _, j in pairs}
        for i, j in pairs:
            o, n = old.clauses[i], new.clauses[j]
            reason = cosmetic_reason(o, n)
            changes.append(_modified(o, n, i, j, cosmetic=reason is not None, reason=reason))
        for i in removed:
            if i not in paired_i:
                reason = _alone_reason(old.clauses[i], a[i] in new_hashes)  # duplicate: the words are still in the new version
                changes.append(Change("removed", _section(old.clauses[i]), old.clauses[i].text, None, i, None, reason is not None, reason))
        for j in added:
            if j not in paired_j:
                reason = _alone_reason(new.clauses[j], b[j] in old_hashes)
                changes.append(Change("added", _section(new.clauses[j]), None, new.clauses[j].text, None, j, reason is not None, reason))

    changes.sort(key=lambda c: (c.position, c.old_index if c.old_index is not None else -1))
    if flag:
        if rules is None:
            from .flags import load_rules

            rules = load_rules(strict=False)
        flag_changes(rules, old, new, changes, service=service)
    result = DiffResult(old.source, new.source, old.effective_date, new.effective_date, changes)
    result.signals = date_signals(result)
    return result


def flag_changes(rules: RuleSet, old: Document, new: Document, changes: Sequence[Change], *, service: str | None = None) -> None:
    """Attach to each change the AI statements it added, removed or altered (flags.compare):
    cosmetic changes and moves are not read, and a statement that still stands elsewhere in
    the other version raises nothing."""
    from .flags.compare import compare_documents, sort_flags

    read = [c for c in changes if not c.cosmetic and c.kind != "moved"]
    # What the reader has just read: the heading path, then the paragraph before (its AI words
    # give "you can opt them out" or "used this way" their meaning).
    contexts = [
        (_context(c.section, old, c.old_index), _context(c.section, new, c.new_index)) for c in read
    ]
    result = compare_documents(
        rules, old, new, [(c.old, c.new, c.section or None) for c in read], service=service, contexts=contexts
    )
    for flag, index in result.flags:
        if set(flag.changes or (flag.change,)) <= {"added", "removed"} and _only_headings(read[index], old, new):
            continue  # a heading alone states no use; it may only condition one ("... (EU only)")
        read[index].flags.append(flag)
    for change in read:
        change.flags = sort_flags(change.flags)
    for rewording in result.reworded:
        read[rewording.clause].reworded.append(rewording.to_dict())


def _only_headings(change: Change, old: Document, new: Document) -> bool:
    """Whether every side of a change is a heading: a heading alone states no use (it is the
    section path of the clauses under it, which are read with it), though an edit of it may
    change a condition it names."""
    sides = [(old, change.old_index), (new, change.new_index)]
    present = [doc.clauses[i] for doc, i in sides if i is not None and 0 <= i < len(doc.clauses)]
    return bool(present) and all(c.kind == "heading" for c in present)


def cosmetic_reason(o: Clause, n: Clause) -> str | None:
    """Why an edited clause says the same to a reader, or None when its words changed.

    Link targets and markup, capitalisation, accents, the way a date is written: none of these
    changes what a reader sees said (the new link target is still shown in the word diff)."""
    if _only_the_date_changed(o, n) or (_short_date_line(o) and _short_date_line(n)):
        return "date line"
    # Cheap tests on the words already computed for pairing; the visible text only when needed.
    if o.words == n.words:  # the same words, case aside
        return "link" if _seen(o) == _seen(n) else "capitalisation"
    if len(o.words) == len(n.words) and _strip_accents(" ".join(o.words)) == _strip_accents(" ".join(n.words)):
        return "diacritics"
    if abs(len(o.words) - len(n.words)) <= 3 and _YEAR.search(o.text) and _YEAR.search(n.text):
        if _same_date_written_differently(_seen(o), _seen(n)):
            return "date format"
    return None


_YEAR = re.compile(r"(?:19|20)\d\d")


def _short_date_line(clause: Clause) -> bool:
    """A line that only states a date ("Effective 8 July 2026", "Last updated: 3 May 2027")."""
    return len(clause.words) <= 8 and is_date_line(clause.plain)


def _alone_reason(clause: Clause, duplicate: bool) -> str | None:
    """Why a clause added or removed on its own is cosmetic: a second copy, a date line (a
    "Last updated" or "we updated this policy on ..." banner), or page furniture."""
    if duplicate:
        return "duplicate"
    seen = _seen(clause)
    if _is_furniture(seen):
        return "furniture"
    if len(clause.words) <= 25 and is_date_line(clause.plain):
        return "date line"
    return None


def _seen(clause: Clause) -> str:
    """The words a reader sees, in the comparison form (quotes, dashes and spaces folded)."""
    return " ".join(comparison_form(visible_text(clause.text)).split())


def _strip_accents(text: str) -> str:
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def _same_date_written_differently(a: str, b: str) -> bool:
    """"Effective 8 July 2026" and "Effective July 8, 2026": the same words around the same date."""
    if mask_dates(a) != mask_dates(b):
        return False
    found_a, found_b = parse_date(a), parse_date(b)
    return found_a is not None and found_b is not None and found_a[0] == found_b[0]


def _is_furniture(seen: str) -> bool:
    """Repeated page furniture: short labels such as "Key Terms" or "Back to top" (data:
    monitor/data/furniture.yaml)."""
    if len(seen) > 60:
        return False
    data = load_data("furniture.yaml")
    label = seen.lower().strip(" .:*#")
    return label in {x.lower() for x in data["labels"]}


def _pair_date_lines(
    removed: list[int], added: list[int], pairs: list[tuple[int, int]], old: Sequence[Clause], new: Sequence[Clause]
) -> list[tuple[int, int]]:
    """A date line rewritten ("Effective 8 July" -> "Last updated: 3 May") is one modified
    line, never one added and one removed clause; paired in order."""
    used_i = {i for i, _ in pairs}
    used_j = {j for _, j in pairs}
    lone_old = [i for i in removed if i not in used_i and len(old[i].words) <= 25 and is_date_line(old[i].plain)]
    lone_new = [j for j in added if j not in used_j and len(new[j].words) <= 25 and is_date_line(new[j].plain)]
    return [(i, j) for i, j in zip(lone_old, lone_new) if all((i < pi) == (j < pj) for pi, pj in pairs)]


def _context(section: str, doc: Document, index: int | None) -> str | None:
    """The heading path and the clause before `index` (its last 600 characters); for a list
    item, also the paragraph that introduces the list ("You agree not to:"), which governs
    every item."""
    if index is None or index == 0:
        return section or None
    before = doc.clauses[index - 1]
    if before.kind == "heading":
        return section or None
    lead = None
    if doc.clauses[index].kind == "list-item" and before.kind == "list-item":
        first = index - 1
        while first > 0 and doc.clauses[first - 1].kind == "list-item" and index - first < 50:
            first -= 1
        if first > 0 and doc.clauses[first - 1].kind == "paragraph":
            lead = doc.clauses[first - 1].text[-300:]
    return "\n".join(filter(None, [section, lead, before.text[-600:]]))


def _only_the_date_changed(o: Clause, n: Clause) -> bool:
    """A revision or effective-date line whose only edit is the date (cheap tests first)."""
    if abs(len(o.words) - len(n.words)) > 4 or len(n.words) > 40:
        return False
    if mask_dates(comparison_form(o.plain)) != mask_dates(comparison_form(n.plain)):
        return False
    return is_date_line(o.plain) and is_date_line(n.plain)


def _section(clause: Clause) -> str:
    return clause.section_path


def _modified(o: Clause, n: Clause, i: int, j: int, *, cosmetic: bool, reason: str | None) -> Change:
    section = n.section_path or o.section_path
    return Change("modified", section, o.text, n.text, i, j, cosmetic, reason, word_spans(o.text, n.text))


def date_signals(result: DiffResult) -> list[Signal]:
    """silent-update: a substantive change while the stated date stayed (or went back)."""
    old_date, new_date = result.old_effective_date, result.new_effective_date
    if not result.substantive or not old_date or not new_date:
        return []
    if new_date == old_date:
        return [Signal("silent-update", f"substantive change but the stated date is still {new_date}")]
    if new_date < old_date:
        return [Signal("silent-update", f"substantive change and the stated date went back from {old_date} to {new_date}")]
    return []


def summary_line(result: DiffResult) -> str:
    """'3 modified, 2 added, 1 removed; 2 flags (ai-training)' for logs and subjects."""
    counts = result.counts()
    parts = [f"{counts[k]} {k}" for k in CHANGE_KINDS if counts.get(k)]
    text = ", ".join(parts) if parts else ("cosmetic changes only" if result.changes else "no changes")
    flags = result.flags
    if flags:
        categories = sorted({f.category for f in flags})
        text += f"; {len(flags)} flag{'s' if len(flags) != 1 else ''} ({', '.join(categories)})"
    return text
