"""Flags on policy changes: AI training, third-party AI use, the reach of opt-outs.

The engine is split by job:

- `text`: a clause as the rules see it (visible text, folded text, sentences, evidence);
- `literals`, `matchers`: the pattern nodes rules compile to (kinds plug in with `@matcher`);
- `rules`, `loader`: rule files (monitor/rules/<language>.yaml) compiled into a `RuleSet`;
- `statements`: the AI statements each sentence makes (category, polarity, actor, data,
  qualifiers), read with the rules and the facet vocabularies of the rule files;
- `compare`: the difference between the statements of two versions, which is what a flag is.

The wording lives in YAML (documented in monitor/rules/README.md), so a reviewer can read, test
and extend the rules without reading code, and a new phrasing is a data change with a labelled
case next to it.
"""

from __future__ import annotations

from .loader import RULES_DIR, load_file, load_rules
from .matchers import _MATCHERS, Matcher, Pattern, matcher, matcher_kinds
from .model import CATEGORIES, CHANGES, SEVERITIES, Flag, RuleError
from .rules import Rule, RuleSet
from .text import fold, trim_evidence, visible_text

__all__ = [
    "CATEGORIES",
    "CHANGES",
    "RULES_DIR",
    "SEVERITIES",
    "Flag",
    "Matcher",
    "Pattern",
    "Rule",
    "RuleError",
    "RuleSet",
    "_MATCHERS",
    "fold",
    "load_file",
    "load_rules",
    "matcher",
    "matcher_kinds",
    "trim_evidence",
    "visible_text",
]
