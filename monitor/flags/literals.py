"""Literal pre-checks: strings one of which every match of a regex must contain.

A substring test is far cheaper than running a long alternation over a clause, and most
clauses contain none of a rule's key words. Only a speed-up, never a different answer.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

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


def compiled_program(regex: re.Pattern[str], tree: Any) -> tuple[Any, ...] | None:
    """What the regex engine needs to rebuild `regex` without parsing or compiling it again
    (the arguments of the private `_sre.compile`), for the rules' disk cache: compiling the
    long alternations of the rules is most of a short `monitor diff`. None when the private
    compiler is not as expected (the cache then stores the pattern only)."""
    try:
        import array
        import zlib

        import _sre  # type: ignore[import-not-found]
        from re import _compiler as sre_compile  # type: ignore[attr-defined]

        flags = regex.flags
        code = array.array("I", sre_compile._code(tree, flags))
        if code.itemsize != _sre.CODESIZE:
            return None
        state = tree.state
        indexgroup = [None] * state.groups
        for name, index in state.groupdict.items():
            indexgroup[index] = name
        # compressed: a tenth of the size (the programs repeat the same alternations)
        program = (_sre.MAGIC, flags, zlib.compress(code.tobytes()), state.groups - 1, dict(state.groupdict), tuple(indexgroup))
        if from_program(regex.pattern, program) is None:
            return None
        return program
    except Exception:
        return None


def from_program(pattern: str | None, program: tuple[Any, ...]) -> re.Pattern[str] | None:
    """The regex `compiled_program` described, or None if this Python cannot rebuild it."""
    try:
        import array
        import zlib

        import _sre  # type: ignore[import-not-found]

        magic, flags, code, groups, groupindex, indexgroup = program
        if magic != _sre.MAGIC:
            return None
        words = array.array("I")
        words.frombytes(zlib.decompress(code))
        return _sre.compile(pattern, flags, words.tolist(), groups, groupindex, indexgroup)
    except Exception:
        return None


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


