"""Simple CSS selectors (`tag#id.class[attr^='v']`), matched on BeautifulSoup tags directly.

The consent-overlay selectors (monitor/data/consent.yaml) run on every page extracted. Through
soupsieve they cost a process about 0.15-0.3 s before the first page, compiling soupsieve's own
patterns and then ours; a one-target `monitor check` is mostly that. These selectors are all
compound selectors without combinators, which take a few lines to match exactly; anything
else (a descendant combinator, a pseudo-class) is left to soupsieve by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

_ATTR_TESTS: dict[str, Callable[[str, str], bool]] = {
    "": lambda value, want: True,
    "=": lambda value, want: value == want,
    "^=": lambda value, want: bool(want) and value.startswith(want),
    "$=": lambda value, want: bool(want) and value.endswith(want),
    "*=": lambda value, want: bool(want) and want in value,
    "~=": lambda value, want: want in value.split(),
    "|=": lambda value, want: value == want or value.startswith(want + "-"),
}
_NAME = r"-?[_a-zA-Z][-_a-zA-Z0-9]*"
_PART = re.compile(
    rf"""\#(?P<id>{_NAME})|\.(?P<cls>{_NAME})
    |\[\s*(?P<attr>{_NAME})\s*(?:(?P<op>[=^$*~|]?=|=)\s*(?:'(?P<sq>[^']*)'|"(?P<dq>[^"]*)"|(?P<bare>{_NAME})))?\s*\]""",
    re.X,
)
_TAG = re.compile(rf"(?P<tag>{_NAME}|\*)?")


@dataclass(frozen=True)
class SimpleSelector:
    """One compound selector: an optional tag name and tests all of which must hold."""

    tag: str | None
    ids: tuple[str, ...]
    classes: tuple[str, ...]
    attrs: tuple[tuple[str, str, str], ...]  # (name, operator, value)

    @property
    def needs_attrs(self) -> bool:
        return bool(self.ids or self.classes or self.attrs)

    def matches(self, tag: Any) -> bool:
        if self.tag is not None and tag.name != self.tag:
            return False
        attrs = tag.attrs
        if self.ids and any(attrs.get("id") != i for i in self.ids):
            return False
        if self.classes:
            have = attrs.get("class") or ()
            have = have.split() if isinstance(have, str) else have
            if any(c not in have for c in self.classes):
                return False
        for name, op, want in self.attrs:
            value = attrs.get(name)
            if value is None:
                return False
            if not isinstance(value, str):  # multi-valued (class, rel): the attribute as written
                value = " ".join(value)
            if not _ATTR_TESTS[op](value, want):
                return False
        return True


def parse_simple(selector: str) -> SimpleSelector | None:
    """The compound selector, or None when it is not one this module matches."""
    text = selector.strip()
    head = _TAG.match(text)
    tag = head.group("tag") if head else None
    pos = head.end() if head else 0
    ids: list[str] = []
    classes: list[str] = []
    attrs: list[tuple[str, str, str]] = []
    while pos < len(text):
        part = _PART.match(text, pos)
        if part is None:
            return None
        if part.group("id"):
            ids.append(part.group("id"))
        elif part.group("cls"):
            classes.append(part.group("cls"))
        else:
            want = next((v for v in (part.group("sq"), part.group("dq"), part.group("bare")) if v is not None), "")
            attrs.append((part.group("attr").lower(), part.group("op") or "", want))
        pos = part.end()
    if not (tag or ids or classes or attrs):
        return None
    return SimpleSelector(None if tag in (None, "*") else tag.lower(), tuple(ids), tuple(classes), tuple(attrs))


def parse_all(selectors: Sequence[str]) -> list[SimpleSelector] | None:
    """All of them parsed, or None if any is not simple (the caller then uses soupsieve)."""
    parsed = [parse_simple(s) for s in selectors]
    return None if any(p is None for p in parsed) else parsed  # type: ignore[return-value]
