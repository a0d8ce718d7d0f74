"""Bytes to text for fetched pages.

The HTML standard's encoding sniffing, in its order: a byte order mark; the Content-Type
charset; a <meta charset> or <meta http-equiv="Content-Type"> in the head; then detection
(valid UTF-8 is UTF-8, anything else charset-normalizer's best guess; windows-1252 last).
Labels map to what browsers decode (iso-8859-1 and us-ascii are windows-1252). One rule
of our own: a declared encoding that cannot decode the bytes is passed over for the next
source, so the stored text never holds a U+FFFD that the page did not contain.
"""

from __future__ import annotations

import codecs
import re

HTML_TYPES = ("text/html", "application/xhtml+xml")

_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_BE, "utf-16-be"), (codecs.BOM_UTF16_LE, "utf-16-le"))
# Labels Python does not know, and encodings whose superset browsers use instead.
_LABELS = {
    "x-cp1252": "cp1252", "x-user-defined": "cp1252", "unicode-1-1-utf-8": "utf-8", "unicode11utf8": "utf-8",
    "windows-31j": "cp932", "x-sjis": "cp932", "ks_c_5601-1987": "cp949", "x-gbk": "gb18030", "x-mac-roman": "mac-roman",
    "dos-874": "cp874", "windows-874": "cp874", "tis-620": "cp874",
}
_SUPERSETS = {
    "iso8859-1": "cp1252", "ascii": "cp1252", "iso8859-9": "cp1254", "iso8859-11": "cp874", "gb2312": "gb18030",
    "gbk": "gb18030", "big5": "big5hkscs", "euc_kr": "cp949", "shift_jis": "cp932", "utf-16": "utf-16-le",
}
_CHARSET = re.compile(r"""charset\s*=\s*["']?([^"';,\s]+)""", re.I)
_CHARSET_BYTES = re.compile(rb"""charset\s*=\s*["']?([^"';\s>]+)""", re.I)
_PRESCAN = re.compile(rb"<!--.*?-->|<meta[\s/][^>]*>|<body[\s>]", re.I | re.S)
_ATTR = re.compile(rb"""([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?""")
_PRESCAN_BYTES = 65536  # the whole head, as Chromium does (the standard asks for at least 1024 bytes)


def _c1_controls(exc: UnicodeError) -> tuple[str, int]:
    """windows-1252 leaves five bytes undefined; browsers decode them to the C1 controls."""
    if isinstance(exc, UnicodeDecodeError):
        return "".join(chr(b) for b in exc.object[exc.start : exc.end]), exc.end
    raise exc


codecs.register_error("monitor-c1", _c1_controls)


def _codec(label: str | bytes | None) -> str | None:
    """The Python codec for an encoding label, as browsers read it; None if unusable."""
    if not label:
        return None
    if isinstance(label, bytes):
        label = label.decode("ascii", "replace")
    name = label.strip().strip("\"'").lower()
    name = _LABELS.get(name, name)
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in ("utf-7", "rot-13"):
        return None  # base64, zlib, ... are not text encodings; UTF-7 is refused by browsers
    return _SUPERSETS.get(info.name, info.name)


def _decode(data: bytes, codec: str | None) -> str | None:
    if codec is None:
        return None
    try:
        return data.decode(codec, errors="monitor-c1" if codec == "cp1252" else "strict")
    except (UnicodeDecodeError, LookupError):
        return None


def meta_charset(data: bytes) -> str | None:
    """The encoding a page declares in a <meta> of its head (comments skipped)."""
    for match in _PRESCAN.finditer(data[:_PRESCAN_BYTES]):
        tag = match.group(0)
        if tag.startswith(b"<!--"):
            continue
        if tag[:5].lower() == b"<body":
            break
        attrs: dict[bytes, bytes] = {}
        for attr in _ATTR.finditer(tag[5:]):
            attrs.setdefault(attr.group(1).lower(), attr.group(2) or attr.group(3) or attr.group(4) or b"")
        label: bytes | None = attrs.get(b"charset")
        if not label and attrs.get(b"http-equiv", b"").strip().lower() == b"content-type":
            found = _CHARSET_BYTES.search(attrs.get(b"content", b""))
            label = found.group(1) if found else None
        codec = _codec(label)
        if codec:
            return "utf-8" if codec.startswith("utf-16") else codec  # a page that can declare is not UTF-16
    return None


def detect_encoding(data: bytes) -> str:
    """No declaration: valid UTF-8 (plain ASCII included) is UTF-8; otherwise
    charset-normalizer's best guess, windows-1252 when it has none."""
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    codec = _codec(best.encoding) if best is not None else None
    return codec if codec and _decode(data, codec) is not None else "cp1252"


def decode_body(data: bytes, content_type: str | None, *, html: bool | None = None) -> str:
    """A response's bytes as text, by the HTML standard's sniffing order (see above)."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            text = _decode(data[len(bom) :], codec)
            if text is not None:
                return text
    mime = (content_type or "").split(";")[0].strip().lower()
    if html is None:
        html = mime in HTML_TYPES or mime in ("", "application/octet-stream", "binary/octet-stream")
    declared = _CHARSET.search(content_type or "")
    sources = [_codec(declared.group(1)) if declared else None]
    if html:
        sources.append(meta_charset(data))
    for codec in sources:
        text = _decode(data, codec)
        if text is not None:
            return text
    return _decode(data, detect_encoding(data)) or data.decode("cp1252", errors="monitor-c1")


__all__ = ["decode_body", "detect_encoding", "meta_charset"]
