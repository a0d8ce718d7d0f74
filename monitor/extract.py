"""Page to clauses: the one document model every later stage works on.

A document is an ordered list of clauses (heading, paragraph, list item, table row), each
with the headings above it. Its stored form is a stable Markdown rendering: the same page
always gives byte-identical text, and `parse_stored` reads that text back into the same
clauses. HTML (BeautifulSoup + lxml), Markdown (markdown-it), plain text and PDF (pypdf) all
come out in this one model.

Two texts exist for each clause: `text`, what the page says (links kept as Markdown, tracking
parameters gone), and `key`, a folded form used only to decide whether two clauses are the
same (typographic quotes, dashes and odd spaces folded).
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import yaml

from .errors import FetchError, InputError
from .text import translator, visible_text

CLAUSE_KINDS = ("heading", "paragraph", "list-item", "table-row")
# Part of the key that lets a check skip extraction when a page's bytes did not change (see
# fetch.extraction_key). Bump it whenever a change here alters the text a page gives.
EXTRACTOR_VERSION = 1


# ----------------------------------------------------------------------------- data files


@functools.cache
def load_data(name: str) -> dict[str, Any]:
    """A YAML file from monitor/data (selectors, parameter lists, markers)."""
    text = resources.files("monitor").joinpath("data", name).read_text(encoding="utf-8")
    return yaml.safe_load(text)


# ----------------------------------------------------------------------------- text


_SPACES = re.compile(r"[\s\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f"), None)
# The comparison form drops quotation marks and apostrophes altogether: whether a page writes
# “Services”, "Services" or Services (a converter that lost them), don’t or dont, the clause
# says the same thing. Dashes, ellipses and bullets are folded to one form.
_QUOTES = "'\"`\u00b4\u2018\u2019\u201a\u201b\u2032\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb\u2039\u203a"
_FOLD = str.maketrans(
    {
        **dict.fromkeys(_QUOTES, None),
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
        "\u2026": "...", "\u2022": "*", "\u00b7": "*",
    }
)
_drop_invisible = translator(_INVISIBLE)
_fold = translator(_FOLD)


def clean_text(text: str) -> str:
    """What is stored: NFC, invisible characters dropped, every run of spaces one space."""
    text = _drop_invisible(unicodedata.normalize("NFC", text))
    return _SPACES.sub(" ", text).strip()


_SPACE_BEFORE = re.compile(r'\s+([,.;:!?)\]"])')
_SPACE_AFTER = re.compile(r"([(\[])\s+")


def comparison_form(text: str) -> str:
    """The form two clauses are compared in (is this edit only typography?): quotes dropped,
    dashes and ellipses folded, spaces collapsed. Accents and case stay, since they can change
    a word. Matching rules against text uses another form, flags.text.fold (accents folded)."""
    return _comparison_form_clean(clean_text(text))


def _comparison_form_clean(text: str) -> str:
    """comparison_form() for text that is already clean (stored clause text)."""
    text = _fold(text)
    text = _SPACE_BEFORE.sub(r"\1", text)  # "word ," and "word." compare equal
    return _SPACE_AFTER.sub(r"\1", text)






def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- links


def strip_tracking(url: str) -> str:
    """Drop tracking and signed-URL parameters; everything else is kept in order."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.query:
        return url
    data = load_data("tracking.yaml")
    names = {n.lower() for n in data["names"]}
    prefixes = tuple(p.lower() for p in data["prefixes"])
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    lowered = {k.lower() for k, _ in pairs}
    signed = set()
    if lowered & {s.lower() for s in data["signed"]["signatures"]}:
        signed = {s.lower() for s in data["signed"]["strip"]}
    kept = [(k, v) for k, v in pairs if k.lower() not in names and k.lower() not in signed and not k.lower().startswith(prefixes)]
    if len(kept) == len(pairs):
        return url
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept, doseq=True), parts.fragment))


def _link_target(href: str, base: str | None) -> str | None:
    href = href.strip()
    if not href or href.lower().startswith(("javascript:", "data:")):
        return None
    if base and not href.startswith("#"):
        try:
            href = urljoin(base, href)
        except ValueError:
            pass
    href = strip_tracking(href)
    return href.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def _escape_link_text(text: str) -> str:
    return text.replace("[", "\\[").replace("]", "\\]")


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Clause:
    """One unit of a document: a heading, a paragraph, a list item or a table row."""

    kind: str
    text: str
    level: int = 0  # heading level (1-6) or list depth (1..); 0 otherwise
    section: tuple[str, ...] = ()  # visible text of the headings above, outermost first

    @cached_property
    def key(self) -> str:
        """Folded text: two clauses with equal keys say the same thing."""
        return _comparison_form_clean(self.text)

    @cached_property
    def words(self) -> list[str]:
        """Lower-cased visible words, for measuring how alike two clauses are."""
        return _comparison_form_clean(visible_text(self.text)).lower().split()

    @cached_property
    def plain(self) -> str:
        """The visible text (read by length checks, dates, rules and diffs: computed once)."""
        return visible_text(self.text)

    @property
    def section_path(self) -> str:
        return " > ".join(self.section)

    def markdown(self) -> str:
        text = self.text
        if self.kind == "heading":
            return f"{'#' * max(1, min(self.level, 6))} {text}"
        if self.kind == "list-item":
            return f"{'  ' * max(0, self.level - 1)}- {text}"
        if self.kind == "table-row":
            return f"| {text} |"
        if re.match(r"^(#{1,6} |[-*+] |\| |\d+[.)] |> |\\)", text):
            return "\\" + text  # a paragraph that would read back as another kind
        return text


@dataclass
class Document:
    """An extracted document: its clauses and what it says about itself."""

    clauses: list[Clause]
    source: str = ""
    title: str | None = None
    effective_date: str | None = None
    effective_text: str | None = None  # the words the date was read from
    fmt: str = "html"
    _markdown: str | None = field(default=None, init=False, repr=False, compare=False)

    def to_markdown(self) -> str:
        """The stored text: stable, so the same content always gives the same bytes.
        Rendered once (it is hashed, measured and stored); clauses are not edited after."""
        if self._markdown is None:
            self._markdown = "\n\n".join(c.markdown() for c in self.clauses) + "\n" if self.clauses else ""
        return self._markdown

    @property
    def text_length(self) -> int:
        return sum(len(c.plain) for c in self.clauses)


class _SectionTracker:
    """Keeps the heading path while clauses are emitted in order."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, str]] = []

    def path(self) -> tuple[str, ...]:
        return tuple(text for _, text in self.stack)

    def heading(self, level: int, plain: str) -> tuple[str, ...]:
        """The path above a heading whose visible text is `plain`, which then joins it."""
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        above = self.path()
        self.stack.append((level, plain))
        return above


def _finish(clauses: list[Clause], source: str, fmt: str, title: str | None) -> Document:
    doc = Document(clauses=clauses, source=source, fmt=fmt, title=title)
    found = find_effective_date(c.plain for c in clauses)
    if found:
        doc.effective_date, doc.effective_text = found
    if doc.title is None:
        doc.title = next((c.plain for c in clauses if c.kind == "heading"), None)
    return doc


class _Builder:
    """Turns (kind, text, level) events into clauses with section paths; drops empties."""

    def __init__(self) -> None:
        self.clauses: list[Clause] = []
        self.sections = _SectionTracker()

    def add(self, kind: str, text: str, level: int = 0) -> None:
        text = clean_text(text)
        plain = visible_text(text)
        if not plain:
            return
        if kind == "heading":
            clause = Clause("heading", text, level, self.sections.heading(level, plain))
        else:
            clause = Clause(kind, text, level, self.sections.path())
        clause.__dict__["plain"] = plain  # Clause.plain's cache, filled with what was just computed
        self.clauses.append(clause)


# ----------------------------------------------------------------------------- HTML

_BLOCK = frozenset(
    "address article aside blockquote body center dd details dialog dir div dl dt fieldset figcaption figure "
    "h1 h2 h3 h4 h5 h6 header hgroup hr html li main menu ol p pre section summary table tbody thead tfoot "
    "tr td th caption ul legend".split()
)
_DROP = frozenset(
    "script style noscript template svg canvas iframe object embed nav footer form head meta link "
    "input select textarea img picture video audio source track map area math".split()
)
_HEADINGS = {f"h{i}": i for i in range(1, 7)}


def _has_block(tag: Any) -> bool:
    return any(getattr(d, "name", None) in _BLOCK for d in tag.descendants)


class _HtmlWalker:
    """Walks the DOM in order, gathering inline text and emitting a clause at each block edge."""

    def __init__(self, base_url: str | None):
        self.base = base_url
        self.out = _Builder()
        self.buffer: list[str] = []
        self.kind_stack: list[tuple[str, int]] = [("paragraph", 0)]
        self.list_depth = 0
        self.li_emitted: list[bool] = []

    def flush(self) -> None:
        text = "".join(self.buffer)
        self.buffer = []
        if not text.strip():
            return
        kind, level = self.kind_stack[-1]
        if kind == "list-item":
            if self.li_emitted and self.li_emitted[-1]:
                kind, level = "paragraph", 0
            elif self.li_emitted:
                self.li_emitted[-1] = True
        self.out.add(kind, text, level)

    def inline(self, node: Any) -> str:
        """Text of an inline subtree, links rendered as Markdown."""
        from bs4 import NavigableString, Tag
        from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

        parts: list[str] = []
        for child in node.children:
            if isinstance(child, (Comment, Declaration, Doctype, ProcessingInstruction)):
                continue
            if isinstance(child, NavigableString):
                parts.append(str(child))
            elif isinstance(child, Tag):
                if child.name in _DROP:
                    continue
                if child.name == "br":
                    parts.append(" ")
                elif child.name == "a":
                    parts.append(self.link(child))
                else:
                    parts.append(self.inline(child))
        return "".join(parts)

    def link(self, tag: Any) -> str:
        text = clean_text(self.inline(tag))
        if not text:
            return ""
        target = _link_target(tag.get("href") or "", self.base)
        if not target:
            return text
        return f"[{_escape_link_text(text)}]({target})"

    def walk(self, node: Any) -> None:
        from bs4 import NavigableString, Tag
        from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

        for child in node.children:
            if isinstance(child, (Comment, Declaration, Doctype, ProcessingInstruction)):
                continue
            if isinstance(child, NavigableString):
                self.buffer.append(str(child))
                continue
            if not isinstance(child, Tag) or child.name in _DROP:
                continue
            name = child.name
            if name == "br":
                self.buffer.append(" ")
            elif name == "a" and not _has_block(child):
                self.buffer.append(self.link(child))
            elif name == "table" and not _is_layout_table(child):
                self.flush()
                self.table(child)
            elif name in _BLOCK or name == "a":
                self.flush()
                self.block(child)
                self.flush()
            elif _has_block(child):
                self.walk(child)
            else:
                self.buffer.append(self.inline(child))

    def block(self, tag: Any) -> None:
        name = tag.name
        if name in _HEADINGS:
            self.kind_stack.append(("heading", _HEADINGS[name]))
            self.walk(tag)
            self.flush()
            self.kind_stack.pop()
        elif name in ("ul", "ol", "dl", "menu", "dir"):
            self.list_depth += 1
            self.walk(tag)
            self.list_depth -= 1
        elif name in ("li", "dt", "dd"):
            self.kind_stack.append(("list-item", max(1, self.list_depth)))
            self.li_emitted.append(False)
            self.walk(tag)
            self.flush()
            self.li_emitted.pop()
            self.kind_stack.pop()
        else:
            # p, div, section...: a block edge on each side; the enclosing kind (a list item's
            # first paragraph, a heading's inner div) still decides what the text is.
            self.walk(tag)
            self.flush()

    def table(self, table: Any) -> None:
        for row in table.find_all("tr"):
            if row.find_parent("table") is not table:
                continue
            cells = [clean_text(self.inline_block(cell)) for cell in row.find_all(["td", "th"], recursive=False)]
            cells = [c.replace("|", "\\|") for c in cells]
            if any(cells):
                self.out.add("table-row", " | ".join(cells))

    def inline_block(self, node: Any) -> str:
        """A table cell flattened to one line, its blocks separated by spaces."""
        from bs4 import NavigableString, Tag

        parts: list[str] = []
        for child in node.children:
            if isinstance(child, NavigableString) and not isinstance(child, _skip_strings()):
                parts.append(str(child))
            elif isinstance(child, Tag) and child.name not in _DROP:
                if child.name == "a":
                    parts.append(self.link(child))
                elif child.name in _BLOCK or child.name == "br":
                    parts.append(" " + self.inline_block(child) + " ")
                else:
                    parts.append(self.inline_block(child))
        return "".join(parts)


@functools.cache
def _skip_strings() -> tuple[type, ...]:
    from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

    return (Comment, Declaration, Doctype, ProcessingInstruction)


def _is_layout_table(table: Any) -> bool:
    """Tables used for page layout are walked as containers, not rows."""
    if (table.get("role") or "").lower() in ("presentation", "none"):
        return True
    if table.find("table") is not None:
        return True
    return any(cell.find(["h1", "h2", "h3", "h4", "h5", "h6"]) for cell in table.find_all(["td", "th"]))


def parse_html_tree(html: str | bytes) -> Any:
    from bs4 import BeautifulSoup

    return BeautifulSoup(html, "lxml")


def consent_selectors() -> list[str]:
    return list(load_data("consent.yaml")["selectors"])


@functools.cache
def _consent_matcher() -> tuple[Any, bool]:
    """The consent selectors compiled once, and whether every one of them needs an attribute
    on the element it matches (`#id`, `.class`, `[attr]`): then only elements with attributes
    are tried, a small part of a policy page's elements. Simple selectors (all of those
    shipped) are matched directly (monitor/selectors.py); soupsieve only if one is not."""
    from .selectors import parse_all

    selectors = consent_selectors()
    simple = parse_all(selectors)
    if simple is not None:
        return simple, all(s.needs_attrs for s in simple)
    import soupsieve

    needs_attrs = all(any(c in sel.split()[-1] for c in "#.[") for sel in selectors)
    return soupsieve.compile(", ".join(selectors)), needs_attrs


def _drop_overlays(soup: Any, remove: Iterable[str]) -> None:
    """Drop the consent overlays and the target's `remove` parts before reading the page."""
    consent, needs_attrs = _consent_matcher()
    if isinstance(consent, list):
        for tag in soup.find_all(_has_attrs if needs_attrs else True):
            if not tag.decomposed and any(s.matches(tag) for s in consent):
                tag.decompose()
    elif needs_attrs:
        for tag in soup.find_all(_has_attrs):
            if not tag.decomposed and consent.match(tag):
                tag.decompose()
    else:
        for tag in consent.select(soup):
            if not tag.decomposed:
                tag.decompose()
    remove = list(remove)
    if remove:
        for tag in soup.select(", ".join(remove)):  # one walk for all of them
            if not tag.decomposed:  # inside a part already dropped
                tag.decompose()


def _has_attrs(tag: Any) -> bool:
    return bool(tag.attrs)


def extract_html(
    html: str | bytes,
    *,
    base_url: str | None = None,
    select: Iterable[str] = (),
    remove: Iterable[str] = (),
    source: str = "",
) -> Document:
    """HTML to a Document. `select` keeps only the matched parts (in document order);
    `remove` and the consent-overlay selectors are dropped first. A `select` that matches
    nothing raises FetchError('selector-missing')."""
    soup = parse_html_tree(html)
    title_tag = soup.find("title")
    title = clean_text(title_tag.get_text()) if title_tag else None
    _drop_overlays(soup, remove)
    roots: list[Any]
    select = list(select)
    if select:
        matched = [tag for selector in select for tag in soup.select(selector)]
        if not matched:
            raise FetchError("selector-missing", f"select {', '.join(select)!s} matched nothing on the page", url=source or None)
        ids = {id(tag) for tag in matched}
        roots = [tag for tag in matched if not any(id(parent) in ids for parent in tag.parents)]
        order = {id(tag): i for i, tag in enumerate(soup.find_all(True))}
        roots.sort(key=lambda tag: order.get(id(tag), 0))
    else:
        roots = [soup.body or soup]
    walker = _HtmlWalker(base_url)
    for root in roots:
        if root.name in _BLOCK or root.name == "a":
            walker.block(root)
        else:
            walker.walk(root)
        walker.flush()
    return _finish(walker.out.clauses, source, "html", title or None)


# ----------------------------------------------------------------------------- Markdown


@functools.cache
def _markdown_parser() -> Any:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table")


def _md_inline(token: Any, base: str | None) -> str:
    """Inline tokens back to text, keeping links as Markdown and dropping emphasis."""
    parts: list[str] = []
    link_stack: list[tuple[str | None, int]] = []
    for child in token.children or ():
        kind = child.type
        if kind in ("text", "html_inline"):
            parts.append(child.content if kind == "text" else "")
        elif kind == "code_inline":
            parts.append(child.content)
        elif kind in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif kind == "link_open":
            link_stack.append((child.attrGet("href"), len(parts)))
        elif kind == "link_close" and link_stack:
            href, start = link_stack.pop()
            text = clean_text("".join(parts[start:]))
            del parts[start:]
            target = _link_target(str(href or ""), base)
            parts.append(f"[{_escape_link_text(text)}]({target})" if text and target else text)
        elif kind == "image":
            continue
    return "".join(parts)


def extract_markdown(text: str, *, source: str = "", base_url: str | None = None) -> Document:
    """Markdown (the Open Terms Archive format among others) to a Document."""
    tokens = _markdown_parser().parse(text)
    out = _Builder()
    kind_stack: list[tuple[str, int]] = []
    li_emitted: list[bool] = []
    list_depth = 0
    row: list[str] | None = None
    for tok in tokens:
        t = tok.type
        if t in ("bullet_list_open", "ordered_list_open"):
            list_depth += 1
        elif t in ("bullet_list_close", "ordered_list_close"):
            list_depth -= 1
        elif t == "list_item_open":
            li_emitted.append(False)
        elif t == "list_item_close":
            li_emitted.pop()
        elif t == "heading_open":
            kind_stack.append(("heading", int(tok.tag[1])))
        elif t == "heading_close":
            kind_stack.pop()
        elif t == "tr_open":
            row = []
        elif t == "tr_close" and row is not None:
            if any(cell.strip() for cell in row):
                out.add("table-row", " | ".join(clean_text(c).replace("|", "\\|") for c in row))
            row = None
        elif t == "inline":
            content = _md_inline(tok, base_url)
            if row is not None:
                row.append(content)
            elif kind_stack and kind_stack[-1][0] == "heading":
                out.add("heading", content, kind_stack[-1][1])
            elif li_emitted and not li_emitted[-1]:
                li_emitted[-1] = True
                out.add("list-item", content, max(1, list_depth))
            else:
                out.add("paragraph", content)
        elif t in ("fence", "code_block"):
            for para in re.split(r"\n\s*\n", tok.content):
                out.add("paragraph", para)
    return _finish(out.clauses, source, "markdown", None)


# ----------------------------------------------------------------------------- stored text


_STORED_HEADING = re.compile(r"^(#{1,6}) (.*)$", re.S)
_STORED_ITEM = re.compile(r"^((?:  )*)- (.*)$", re.S)


def parse_stored(text: str, *, source: str = "") -> Document:
    """Read text written by Document.to_markdown back into the same clauses."""
    out = _Builder()
    for block in text.split("\n\n"):
        block = block.strip("\n")
        if not block:
            continue
        if m := _STORED_HEADING.match(block):
            out.add("heading", m.group(2), len(m.group(1)))
        elif m := _STORED_ITEM.match(block):
            out.add("list-item", m.group(2), len(m.group(1)) // 2 + 1)
        elif block.startswith("| ") and block.endswith(" |"):
            out.add("table-row", block[2:-2])
        else:
            out.add("paragraph", block[1:] if block.startswith("\\") else block)
    return _finish(out.clauses, source, "stored", None)


# ----------------------------------------------------------------------------- plain text, PDF


_BULLET = re.compile(r"^\s*(?:[-*•◦▪]|\(?[0-9a-zA-Z]{1,3}[.)])\s+")


def extract_plain(text: str, *, source: str = "") -> Document:
    """Plain text: blank lines separate paragraphs; bulleted lines are list items."""
    out = _Builder()
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        if len(lines) > 1 and all(_BULLET.match(line) and line.lstrip()[:1] in "-*•◦▪" for line in lines):
            for line in lines:
                out.add("list-item", _BULLET.sub("", line, count=1), 1)
        elif len(lines) == 1 and _looks_like_heading(lines[0]):
            out.add("heading", lines[0], 2)
        else:
            out.add("paragraph", " ".join(lines))
    return _finish(out.clauses, source, "text", None)


def _looks_like_heading(line: str) -> bool:
    line = line.strip()
    return 0 < len(line) <= 80 and not line.endswith((".", ",", ";", ":")) and (line.isupper() or bool(re.match(r"^\d+(\.\d+)*\.?\s+\S", line)))


def extract_pdf(data: bytes, *, source: str = "") -> Document:
    """PDF text through pypdf: lines joined into paragraphs, hyphenation mended."""
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        # Layout mode keeps vertical gaps as blank lines: the paragraph breaks of the page.
        pages = [_page_text(page) for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise FetchError("extract-failed", f"the PDF could not be read ({exc})", url=source or None) from None
    out = _Builder()
    for page in pages:
        paragraph: list[str] = []
        for raw_line in page.splitlines() + [""]:
            line = raw_line.strip()
            if not line:
                if paragraph:
                    out.add("paragraph", _join_pdf_lines(paragraph))
                    paragraph = []
                continue
            if not paragraph and _looks_like_heading(line):
                out.add("heading", line, 2)
                continue
            paragraph.append(line)
            if re.search(r"[.!?:;]$", line) and len(line) < 60:
                out.add("paragraph", _join_pdf_lines(paragraph))
                paragraph = []
    return _finish(out.clauses, source, "pdf", None)


def _page_text(page: Any) -> str:
    try:
        return page.extract_text(extraction_mode="layout") or ""
    except Exception:  # layout mode fails on some odd fonts; plain mode still gives the words
        return page.extract_text() or ""


def _join_pdf_lines(lines: list[str]) -> str:
    text = ""
    for line in lines:
        if text.endswith("-") and line[:1].islower():
            text = text[:-1] + line
        else:
            text = f"{text} {line}" if text else line
    return text


# ----------------------------------------------------------------------------- files


def sniff_format(data: bytes, name: str = "") -> str:
    """'pdf', 'html', 'markdown' or 'text' from the name and the first bytes.
    Raises InputError for binary data."""
    head = data[:4096]
    if head.startswith(b"%PDF"):
        return "pdf"
    if b"\x00" in head:
        raise InputError(f"{name or 'input'}: looks binary (NUL bytes); give an HTML, Markdown, text or PDF file")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a cut multi-byte character at the end is fine
            raise InputError(f"{name or 'input'}: not UTF-8 text; convert it to UTF-8 or give the HTML page") from None
    suffix = Path(name).suffix.lower()
    if suffix in (".html", ".htm", ".xhtml"):
        return "html"
    if suffix in (".md", ".markdown", ".mdown"):
        return "markdown"
    if suffix == ".txt":
        return "text"
    lowered = head.lower()
    if re.search(rb"<!doctype html|<html[\s>]|<body[\s>]|<head[\s>]|<(div|p|section|article)[\s>]", lowered):
        return "html"
    if re.search(rb"(^|\n)(#{1,6} |[=-]{3,}\s*\n)|\]\(https?://", head):
        return "markdown"
    return "text"


def extract_bytes(
    data: bytes,
    fmt: str,
    *,
    source: str = "",
    base_url: str | None = None,
    select: Iterable[str] = (),
    remove: Iterable[str] = (),
) -> Document:
    """Any supported format to a Document (select/remove apply to HTML only)."""
    if fmt == "pdf":
        return extract_pdf(data, source=source)
    text = data.decode("utf-8", errors="replace")
    if fmt == "html":
        return extract_html(text, base_url=base_url, select=select, remove=remove, source=source)
    if fmt == "markdown":
        return extract_markdown(text, source=source, base_url=base_url)
    if fmt == "stored":
        return parse_stored(text, source=source)
    return extract_plain(text, source=source)


def extract_file(path: str | Path) -> Document:
    """A local file (HTML, Markdown, text or PDF) to a Document; InputError if unusable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory; give a file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    fmt = sniff_format(data, path.name)
    try:
        return extract_bytes(data, fmt, source=str(path))
    except FetchError as exc:
        raise InputError(f"{path}: {exc}") from None


# ----------------------------------------------------------------------------- dates

_MONTHS = {
    # English
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
    "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9, "oct": 10, "nov": 11, "dec": 12,
    # French
    "janvier": 1, "février": 2, "fevrier": 2, "mars": 3, "avril": 4, "mai": 5, "juin": 6, "juillet": 7, "août": 8, "aout": 8,
    "septembre": 9, "octobre": 10, "novembre": 11, "décembre": 12, "decembre": 12,
    # German
    "januar": 1, "jänner": 1, "februar": 2, "märz": 3, "maerz": 3, "juni": 6, "juli": 7,
    "oktober": 10, "dezember": 12,
    # Spanish
    "enero": 1, "febrero": 2, "marzo": 3, "abril": 4, "mayo": 5, "junio": 6, "julio": 7, "agosto": 8,
    "septiembre": 9, "setiembre": 9, "octubre": 10, "noviembre": 11, "diciembre": 12,
}
_MONTH_RE = "|".join(sorted((re.escape(m) for m in _MONTHS), key=len, reverse=True))
_DATE_PATTERNS = (
    # September 18, 2024 / Sept. 18 2024
    re.compile(rf"\b(?P<month>{_MONTH_RE})\.?\s+(?P<day>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<year>(?:19|20)\d\d)(?!\d)", re.I),
    # 18 September 2024 / 18. September 2024 / 1er janvier 2024 / 18 de septiembre de 2024
    re.compile(rf"\b(?P<day>\d{{1,2}})(?:st|nd|rd|th|er|\.|º)?\s+(?:de\s+)?(?P<month>{_MONTH_RE})\.?,?\s+(?:de\s+)?(?P<year>(?:19|20)\d\d)(?!\d)", re.I),
    # 2024-09-18
    re.compile(r"\b(?P<year>(?:19|20)\d\d)-(?P<month>\d{1,2})-(?P<day>\d{1,2})\b"),
    # 18/09/2024, 09/18/2024, 18.09.2024
    re.compile(r"\b(?P<a>\d{1,2})[./](?P<b>\d{1,2})[./](?P<year>(?:19|20)\d\d)(?!\d)"),
    # September 2024 / septembre 2024
    re.compile(rf"\b(?P<month>{_MONTH_RE})\.?\s+(?:de\s+)?(?P<year>(?:19|20)\d\d)(?!\d)", re.I),
)
_DATE_CONTEXT = re.compile(
    r"(?:last\s+(?:updated|modified|revised|changed)|effective(?:\s+date|\s+as\s+of|\s+from|\s+on)?|"
    r"(?:date\s+of\s+)?last\s+revision|updated(?:\s+on)?|revised(?:\s+on)?|revision\s+date|in\s+effect\s+(?:as\s+of|from)|"
    r"valid\s+(?:from|as\s+of)|version\s+(?:of|date|effective)|"
    r"derni[èe]re\s+mise\s+[àa]\s+jour|mis[e]?\s+[àa]\s+jour(?:\s+le)?|date\s+d['’]entr[ée]e\s+en\s+vigueur|"
    r"entr[ée]e\s+en\s+vigueur|en\s+vigueur\s+(?:[àa]\s+compter\s+du|[àa]\s+partir\s+du|depuis\s+le|le|au|du)|date\s+d['’]effet|"
    r"derni[èe]re\s+modification|applicable\s+(?:[àa]\s+compter\s+)?du|"
    r"zuletzt\s+(?:aktualisiert|ge[äa]ndert)|letzte\s+(?:aktualisierung|[äa]nderung)|stand|g[üu]ltig\s+(?:ab|seit)|"
    r"wirksam\s+ab|in\s+kraft\s+(?:seit|ab|getreten)|datum\s+des\s+inkrafttretens|aktualisiert\s+am|"
    r"[úu]ltima\s+(?:actualizaci[óo]n|modificaci[óo]n|revisi[óo]n)|actualizad[oa]\s+(?:el|por\s+[úu]ltima\s+vez)|"
    r"fecha\s+de\s+(?:entrada\s+en\s+vigor|vigencia|actualizaci[óo]n)|en\s+vigor\s+(?:desde|a\s+partir\s+del?)|"
    r"vigente\s+(?:desde|a\s+partir\s+del?)|efectiv[oa]\s+(?:desde|a\s+partir\s+del?))",
    re.I,
)


_ENGLISH_CONTEXT = re.compile(r"(?i)(last|effective|updated|revised|revision|valid|version|in\s)")


def _iso(year: int, month: int, day: int | None) -> str | None:
    import datetime as dt

    try:
        if day is None:
            dt.date(year, month, 1)
            return f"{year:04d}-{month:02d}"
        return dt.date(year, month, day).isoformat()
    except ValueError:
        return None


def parse_date(text: str, *, day_first: bool = False) -> tuple[str, int, int] | None:
    """First date in `text` as (ISO date, start, end); month-only dates give 'YYYY-MM'."""
    best: tuple[str, int, int] | None = None
    for index, pattern in enumerate(_DATE_PATTERNS):
        for m in pattern.finditer(text):
            groups = m.groupdict()
            year = int(groups["year"])
            if index == 3:
                a, b = int(groups["a"]), int(groups["b"])
                month, day = (b, a) if (day_first or a > 12) and b <= 12 else (a, b)
                iso = _iso(year, month, day)
            else:
                raw_month = groups["month"]
                month = int(raw_month) if raw_month.isdigit() else _MONTHS[raw_month.lower()]
                day = int(groups["day"]) if groups.get("day") else None
                iso = _iso(year, month, day)
            if iso and (best is None or m.start() < best[1]):
                best = (iso, m.start(), m.end())
            break
    return best


def find_effective_date(texts: Iterable[str]) -> tuple[str, str] | None:
    """The stated effective / last-updated date: (ISO date, the words it came from).

    Looks for a date within a few words after a phrase such as 'Effective', 'Last updated',
    'Dernière mise à jour', 'Stand', 'Última actualización', in the first clauses first."""
    texts = list(texts)
    for window in (texts[:40], texts[40:]):
        for text in window:
            for context in _DATE_CONTEXT.finditer(text):
                tail = text[context.end() : context.end() + 60]
                day_first = not _ENGLISH_CONTEXT.match(context.group(0))
                found = parse_date(tail, day_first=day_first)
                if found and found[1] <= 25:
                    words = text[context.start() : context.end() + found[2]]
                    return found[0], clean_text(words)
    return None


def mask_dates(text: str) -> str:
    """Dates replaced by a placeholder, to tell a date-only edit from a real one."""
    for pattern in _DATE_PATTERNS:
        text = pattern.sub("<date>", text)
    return text


def is_date_line(text: str) -> bool:
    """A revision or effective-date line ('Last updated: 3 May 2024')."""
    return bool(_DATE_CONTEXT.search(text)) and parse_date(text) is not None


__all__ = [
    "CLAUSE_KINDS",
    "Clause",
    "Document",
    "clean_text",
    "extract_bytes",
    "extract_file",
    "extract_html",
    "extract_markdown",
    "extract_pdf",
    "extract_plain",
    "find_effective_date",
    "comparison_form",
    "is_date_line",
    "mask_dates",
    "parse_stored",
    "sha256_text",
    "sniff_format",
    "strip_tracking",
    "visible_text",
]
