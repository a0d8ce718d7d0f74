"""Writing a bundle: a WARC (warcio, sha256 digests), a WACZ around it (Webrecorder's WACZ
1.1.1 layout: archive/, indexes/index.cdx (CDXJ), pages/pages.jsonl, datapackage.json with
the sha256 of every file, datapackage-digest.json), or a folder-like zip with README.txt
and manifest.json."""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..records import sha256_bytes
from . import EVIDENCE_URI
from .items import Built, Item

WACZ_VERSION = "1.1.1"
WARC_NAME = "data.warc.gz"
SIGNATURE_URI = "urn:monitor:signature"
SIGNATURE_FILE = "signature.json"
# Given a digest 'sha256:...', the `signedData` block that signs it (sign.py); None: unsigned.
Signer = Callable[[str], dict[str, Any]]


def warc_date(stamp: str) -> str:
    """'2024-09-19T06:10:13.000Z' -> '2024-09-19T06:10:13Z' (WARC/1.0 dates are to the second)."""
    return stamp[:19] + "Z"


def _writer(handle: Any) -> Any:
    from warcio.utils import Digester
    from warcio.warcwriter import WARCWriter

    class Sha256Writer(WARCWriter):  # type: ignore[misc]
        """warcio with sha256 block and payload digests (its default is sha1)."""

        @staticmethod
        def _create_digester() -> Any:
            return Digester("sha256")

    return Sha256Writer(handle, gzip=True, warc_version="1.0")


def write_warc(handle: Any, built: Built, *, filename: str, software: str) -> list[dict[str, Any]]:
    """Every item as one WARC record, evidence.json last as the metadata record. Returns
    one CDXJ entry per record a replay looks up (offset and length in the file)."""
    from warcio.statusandheaders import StatusAndHeaders

    writer = _writer(handle)
    info = writer.create_warcinfo_record(filename, {"software": software, "format": "WARC File Format 1.0",
                                                    "description": f"privacy-monitor evidence: {built.evidence['selection']}"})
    writer.write_record(info)
    index = []
    evidence = Item("evidence", "metadata", EVIDENCE_URI, built.evidence["exported_at"], "application/json",
                    json.dumps(built.evidence, ensure_ascii=False, indent=1).encode("utf-8") + b"\n", "evidence.json")
    for item in [*built.items, evidence]:
        headers = {"WARC-Record-ID": item.record_id, "WARC-Date": warc_date(item.date), **item.warc_headers}
        http = None
        if item.http_headers is not None and item.status_line is not None:
            request = item.rec_type == "request"
            http = StatusAndHeaders(item.status_line, list(item.http_headers), protocol="" if request else item.protocol, is_http_request=request)
        if item.rec_type != "request" and http is None:
            headers["Content-Type"] = item.content_type
        record = writer.create_warc_record(item.uri, item.rec_type, payload=io.BytesIO(item.payload), length=len(item.payload),
                                           warc_headers_dict=headers, http_headers=http,
                                           warc_content_type=None if http is not None else item.content_type)
        offset = handle.tell()
        writer.write_record(record)
        if item.rec_type in ("response", "resource"):
            index.append({
                "url": item.uri, "date": item.date, "mime": item.content_type.split(";")[0].strip(),
                "status": item.status_line.split()[0] if item.status_line else "200",
                "digest": record.rec_headers.get_header("WARC-Payload-Digest"),
                "length": handle.tell() - offset, "offset": offset, "filename": WARC_NAME,
            })
    return index


def surt(url: str) -> str:
    """The SURT form of a URL as CDXJ indexes sort it (host labels reversed, an IP address's
    too, as the surt package does; lower case, www. dropped, default port dropped, query
    sorted); a urn stays as it is."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return url
    host = parts.hostname.lower()
    if host.startswith("www."):
        host = host[4:]
    key = ",".join(reversed(host.split(".")))
    if parts.port and parts.port not in (80, 443):
        key += f":{parts.port}"
    path = (parts.path or "/").lower()
    if parts.query:
        path += "?" + urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return f"{key}){path}"


def cdxj_lines(index: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    for entry in index:
        stamp = "".join(ch for ch in entry["date"][:19] if ch.isdigit())
        fields = {k: (str(v) if k in ("length", "offset") else v) for k, v in entry.items() if k != "date"}
        lines.append(f"{surt(entry['url'])} {stamp} {json.dumps(fields, separators=(',', ':'))}")
    return sorted(lines)


def pages_jsonl(built: Built) -> str:
    lines = [json.dumps({"format": "json-pages-1.0", "id": "pages", "title": built.evidence["selection"]})]
    for item in built.items:
        if item.page_title and item.uri.startswith(("http://", "https://")):
            lines.append(json.dumps({"id": item.record_id.strip("<>").split(":")[-1], "url": item.uri,
                                     "ts": warc_date(item.date), "title": item.page_title}, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def write_wacz(path: Path, built: Built, *, software: str, signer: Signer | None = None) -> None:
    with tempfile.TemporaryFile() as warc:
        index = write_warc(warc, built, filename=WARC_NAME, software=software)
        warc.seek(0)
        files: list[tuple[str, bytes | Any]] = [
            ("indexes/index.cdx", ("\n".join(cdxj_lines(index)) + "\n").encode("utf-8")),
            ("pages/pages.jsonl", pages_jsonl(built).encode("utf-8")),
        ]
        resources = [_resource(f"archive/{WARC_NAME}", warc)]
        resources += [{"name": Path(name).name, "path": name, "hash": "sha256:" + sha256_bytes(data), "bytes": len(data)} for name, data in files]
        pages = [i for i in built.items if i.page_title and i.uri.startswith(("http://", "https://"))]
        package = {
            "profile": "data-package", "wacz_version": WACZ_VERSION, "software": software,
            "created": warc_date(built.evidence["exported_at"]), "title": f"privacy-monitor evidence: {built.evidence['selection']}",
            "resources": resources,
        }
        if pages:
            package["mainPageUrl"], package["mainPageDate"] = pages[-1].uri, warc_date(pages[-1].date)
        package_bytes = json.dumps(package, indent=1, ensure_ascii=False).encode("utf-8")
        digest: dict[str, Any] = {"path": "datapackage.json", "hash": "sha256:" + sha256_bytes(package_bytes)}
        if signer is not None:  # the WACZ signing spec's place for it
            digest["signedData"] = signer(digest["hash"])
        with _atomic_zip(path) as archive:
            warc.seek(0)
            info = zipfile.ZipInfo(f"archive/{WARC_NAME}", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as out:  # stored: a WARC is gzipped per record already
                for chunk in iter(lambda: warc.read(1 << 20), b""):
                    out.write(chunk)
            for name, data in files:
                archive.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
            archive.writestr("datapackage.json", package_bytes, compress_type=zipfile.ZIP_DEFLATED)
            archive.writestr("datapackage-digest.json", json.dumps(digest, indent=1).encode("utf-8"), compress_type=zipfile.ZIP_DEFLATED)


def _resource(name: str, handle: Any) -> dict[str, Any]:
    import hashlib

    handle.seek(0)
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
        size += len(chunk)
    return {"name": Path(name).name, "path": name, "hash": "sha256:" + digest.hexdigest(), "bytes": size}


def write_plain_warc(path: Path, built: Built, *, software: str, signer: Signer | None = None) -> None:
    tmp = _tmp_for(path)
    try:
        with open(tmp, "w+b") as handle:
            write_warc(handle, built, filename=path.name, software=software)
            if signer is not None:
                _append_signature(handle, signer)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _append_signature(handle: Any, signer: Signer) -> None:
    """A detached signature as the WARC's last record: a `metadata` record at
    urn:monitor:signature whose JSON signs the sha256 of every byte before it."""
    import hashlib

    end = handle.tell()
    handle.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(1 << 20), b""):  # to the end: the records written so far
        digest.update(chunk)
    block = {"path": "the WARC records before this one", "bytes": end, "signedData": signer("sha256:" + digest.hexdigest())}
    data = json.dumps(block, indent=1).encode("utf-8") + b"\n"
    writer = _writer(handle)
    record = writer.create_warc_record(SIGNATURE_URI, "metadata", payload=io.BytesIO(data), length=len(data),
                                       warc_headers_dict={"WARC-Date": warc_date(block["signedData"]["created"])},
                                       warc_content_type="application/json")
    writer.write_record(record)


README = """\
Evidence exported by privacy-monitor ({software}) on {exported_at}
Selection: {selection}

What is here
  evidence.json        the map: every version and change, the files that hold them, and the
                       hash-chain entries (and the links to the chain head) that vouch for them
  manifest.json        every file of this bundle with its sha256
  versions/T@N/        one folder per version: text.md (the extracted text), the capture as
                       received (body-*, with its HTTP status and headers in http-*.json; for a
                       browser capture the rendered page as dom-*), screenshots, or for a version
                       imported from an archive capture-* with its provenance in evidence.json
  changes/ID/          diff.html (open it in a browser), diff.json (every flag), clauses.html

Versions
{versions}
Changes
{changes}
Chain head at export: {head}

Check it without the database:  monitor verify {name}
Compare the head with one published earlier (an alert's X-Monitor-Chain header, an anchor log):
  monitor verify {name} --anchor anchors.log
"""


def write_zip(path: Path, built: Built, *, software: str, signer: Signer | None = None) -> None:
    ev = built.evidence
    files: list[tuple[str, bytes]] = [(i.path, i.payload) for i in built.items if i.path]
    evidence_bytes = json.dumps(ev, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"
    files.append(("evidence.json", evidence_bytes))
    versions = "".join(
        f"  {v['ref']:<28} observed {v['observed_at'][:19]}  stated date {v['effective_date'] or '-'}  {v['provenance']}\n" for v in ev["versions"]
    )
    changes = ""
    for c in ev["changes"]:
        changes += f"  #{c['id']} {c['old']} -> {c['new']}  detected {c['detected_at'][:10]}: {c['summary']}\n"
        for flag in c["flags"]:
            changes += f"      flag {flag['category']} ({flag['severity']}): {flag.get('evidence') or ''}\n"
    readme = README.format(software=software, exported_at=ev["exported_at"], selection=ev["selection"], versions=versions or "  none\n",
                           changes=changes or "  none\n", head=ev["chain"]["head"], name=path.name)
    files.append(("README.txt", readme.encode("utf-8")))
    manifest = {"format": "privacy-monitor-bundle/1", "files": [{"path": name, "sha256": sha256_bytes(data), "bytes": len(data)} for name, data in files]}
    files.append(("manifest.json", json.dumps(manifest, indent=1).encode("utf-8")))
    if signer is not None:  # detached: it signs manifest.json, which lists every other file's sha256
        block = {"path": "manifest.json", "signedData": signer("sha256:" + sha256_bytes(files[-1][1]))}
        files.append((SIGNATURE_FILE, json.dumps(block, indent=1).encode("utf-8") + b"\n"))
    with _atomic_zip(path) as archive:
        for name, data in files:
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data, compress_type=zipfile.ZIP_DEFLATED)


class _atomic_zip:  # noqa: N801 - used as a context manager like open()
    """A zip file written beside its final name and renamed into place when whole."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = _tmp_for(path)

    def __enter__(self) -> zipfile.ZipFile:
        self.zip = zipfile.ZipFile(self.tmp, "w", allowZip64=True)
        return self.zip

    def __exit__(self, kind: object, *rest: object) -> None:
        self.zip.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _tmp_for(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")
