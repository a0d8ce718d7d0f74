"""The Jinja2 environment of the HTML writers: autoescaping always on, templates shipped in
monitor/render/templates, and the few helpers the templates need."""

from __future__ import annotations

from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from .view import SEVERITY_COLOURS, has_bidi, safe_href


@lru_cache(maxsize=1)
def environment() -> Environment:
    """Built once per process (compiling templates is the slow part); it holds no state."""
    env = Environment(
        loader=PackageLoader("monitor", "render/templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(safe_href=safe_href, has_bidi=has_bidi, colours=SEVERITY_COLOURS)
    env.filters["bdi"] = bdi
    return env


def bdi(value: object) -> Markup:
    """Escaped text, in <bdi> when it holds direction controls (so "\u202efdp.exe" cannot
    reorder what follows it)."""
    text = str(value)
    escaped = escape(text)
    return Markup(f"<bdi>{escaped}</bdi>") if has_bidi(text) else escaped  # noqa: S704 - escaped above
