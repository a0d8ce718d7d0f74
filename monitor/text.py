"""The text a reader sees in a clause's Markdown: one function, used by every stage.

Link targets, emphasis markers, escapes, tags and bullets go; what is left is what matching,
evidence, similarity and rendering work on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["translator", "visible_text"]

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
    ("*+-", re.compile(r"^[ \t]*[*+-][ \t]+", re.M), ""),  # list bullets (numbers stay: "1. Data We Collect")
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


def translator(table: dict[int, Any]) -> Callable[[str], str]:
    """str.translate(table) as a function, one regex scan instead: translate with a dict
    looks every character up in Python (~10 times slower on a policy's clauses), while most
    clauses hold none or a few of the table's characters."""
    if not table:
        return lambda text: text
    found = re.compile("[" + "".join(re.escape(chr(k)) for k in sorted(table)) + "]")
    replace = {chr(k): "" if v is None else chr(v) if isinstance(v, int) else v for k, v in table.items()}
    return lambda text: found.sub(lambda m: replace[m.group()], text)
