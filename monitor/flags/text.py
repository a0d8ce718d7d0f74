"""Clause text as the rules see it: visible text, folded text, words, sentences and spans.

Evidence is always cut from the visible text; matching runs on the folded text, with an index
back to the visible one when a character folds to two.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections import Counter
from typing import NamedTuple

EVIDENCE_MAX = 200
"""Evidence longer than this many characters is cut at a word boundary and ends with '…'."""



from ..text import translator, visible_text  # noqa: E402 - the one visible-text function


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
_fold = translator(_FOLD)


def fold(text: str) -> str:
    """Fold text for matching. Case is kept: patterns are case-insensitive unless they say not."""
    return _fold(text)


class Span(NamedTuple):
    """A match in the folded text of a clause: [start, end)."""

    start: int
    end: int


HEADING_ONLY = Span(-1, -1)
"""What a `section` test returns when the heading matches: a condition, never evidence."""


def _overlap(a: Span, b: Span) -> bool:
    return a.start < b.end and b.start < a.end


_WORD = re.compile(r"\w[\w'-]*")
# Sentence-like breaks: end punctuation before a space or glued to a capitalised word (not in "e.g." and friends), ';', table
# cell separators and line breaks (which is what <br> and list items become).
_BREAK = re.compile(
    # the punctuation first, then what must not come before it (a regex engine only looks back
    # where the character matched, which keeps this one scan cheap on long clauses)
    r"[.!?](?=\s|$)"
    r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bincl\.)(?<!\bvs\.)(?<!\bca\.)(?<!\bcf\.)(?<!\bz\.B\.)(?<!\bbzw\.)(?<!\bp\.ex\.)"
    r"(?<!\bArt\.)(?<!\bAbs\.)(?<!\bNr\.)(?<!\bff\.)(?<!\bgem\.)(?<!\bu\.a\.)(?<!\bd\.h\.)(?<!\bsog\.)(?<!\bNo\.)(?<!\bSec\.)"
    r"(?<!\b\d\.)(?<!\b\d\d\.)"  # "am 26. Juni 2024": a German ordinal date, not the end of a sentence
    r"|[;|\n]"
    r"|(?-i:(?<=[a-z]{2})[.!?](?=[A-Z][a-z]))",  # "fraud.To verify": a converter lost the space
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

    @functools.cached_property
    def sentences(self) -> list[tuple[int, int]]:
        """[start, end) of each sentence in the folded text, blank ones left out."""
        out, lo = [], 0
        for cut in [*self.breaks, len(self.folded)]:
            if self.folded[lo:cut].strip():
                out.append((lo, cut))
            lo = cut + 1
        return out

    def sentence_of(self, pos: int) -> int:
        """Index (in `sentences`) of the sentence holding folded position pos."""
        starts = [s for s, _ in self.sentences]
        return max(0, bisect.bisect_right(starts, pos) - 1)

    def visible_slice(self, lo: int, hi: int) -> str:
        """The visible text behind folded [lo, hi)."""
        if self._offsets is not None and hi > lo:
            lo, hi = self._offsets[lo], self._offsets[hi - 1] + 1
        return self.visible[lo:hi]

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



_KEY_HYPHEN = re.compile(r"(?<=\w)-(?=\w)")
_KEY_NONWORD = re.compile(r"[\W_]+")


def sentence_key(folded: str) -> str:
    """What two sentences must share to be "the same sentence": their words, lower-cased, with
    punctuation, hyphens inside words ("pre-training"), quotes and spacing aside. Link targets
    and emphasis are already gone from the visible text this is built from."""
    return _KEY_NONWORD.sub(" ", _KEY_HYPHEN.sub("", folded.lower())).strip()


# Short function words that are frequent in one language and rare in the others: enough to tell
# the language of a clause, so that only that language's rules read it ("Training" or "AI" are
# shared words, and a German rule must not read an English clause).
_STOPWORDS = {
    "en": frozenset("the and of to we you your our with for is are that this or by may be not from".split()),
    "fr": frozenset("le la les des et vous nous votre vos du pour sur est sont que une dans pas avec à au aux qu ils leurs ne ces cette tes ton toi peux peut pouvez notre".split()),
    "de": frozenset("der die das und wir sie ihre ihr den dem des ist sind nicht mit für von zu auf eine dein deine deinen unsere werden wird können".split()),
    "es": frozenset("el la los las y que usted su sus nuestro nuestros para con por es son del una tu tus nuestra nuestras puedes puede".split()),
}
_WORDS = re.compile(r"[^\W\d_]+")
_LANGUAGES_OF = {  # function word -> the languages it belongs to ("la": fr and es)
    word: tuple(lang for lang, words in _STOPWORDS.items() if word in words) for words in _STOPWORDS.values() for word in words
}


def detect_language(text: str, languages: tuple[str, ...]) -> str | None:
    """The most likely of `languages` for a clause, by counting function words; None when no
    function word of any of them occurs (too short to tell: every language's rules then run)."""
    counts = {lang: 0 for lang in languages if lang in _STOPWORDS}
    if not counts:
        return None
    for word, n in Counter(_WORDS.findall(text.lower())).items():
        for lang in _LANGUAGES_OF.get(word, ()):
            if lang in counts:
                counts[lang] += n
    ranked = sorted(counts.values(), reverse=True)
    if ranked[0] == 0 or (len(ranked) > 1 and ranked[0] == ranked[1]):
        return None  # too few function words, or a tie: let every language's rules read it
    return max(counts, key=lambda lang: counts[lang])
