"""`monitor verify FILE`: a bundle checked on its own, with no database.

1. The container: for a WACZ, datapackage-digest.json against datapackage.json, and every
   file datapackage.json lists against its sha256 (and no file unlisted); for a zip bundle,
   every file against manifest.json.
2. Each WARC record parses, and its WARC-Block-Digest and WARC-Payload-Digest match.
3. The chain: each carried entry's hash is sha256(prev + "\\n" + record); the links run
   unbroken from the first entry to the head the bundle names, and each entry sits at its
   position among them (so each is an ancestor of that head, and of any head anchored since
   that the links reach: `--anchor`).
4. The signature, where there is one (sign.py): the `signedData` block of
   datapackage-digest.json (WACZ), signature.json (zip, over manifest.json) or the WARC's last
   record urn:monitor:signature (over every byte before it), checked against the digest the
   file has now, and against the key `--key` pins.
5. The facts: every file a version's or change's chain entry names (capture, headers file,
   body, screenshots, text, diff JSON, clause HTML) is in the bundle with that sha256; the
   flags evidence.json lists are the flags of the verified diff JSON.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..chain import VerifyProblem, entry_hash
from ..errors import InputError
from . import EVIDENCE_FORMAT, EVIDENCE_URI
from .write import SIGNATURE_FILE, SIGNATURE_URI
from .items import flags_of


@dataclass
class Piece:
    payload: bytes
    rec_type: str
    uri: str
    http_status: str | None = None
    offset: int | None = None  # where a WARC record starts in its file
    number: int = 0  # its place among the records


@dataclass
class Signed:
    where: str
    block: Any  # the signedData block
    expected: str  # 'sha256:...' of what it signs, as the bundle is now


@dataclass
class Report:
    kind: str  # wacz, warc, zip
    problems: list[VerifyProblem] = field(default_factory=list)
    evidence: dict[str, Any] | None = None
    records: int = 0
    signed: Signed | None = None  # what the bundle carries, found by the container's reader
    signer: str | None = None  # the public key fingerprint of a signature that verified
    signed_at: str | None = None
    stamped_at: str | None = None  # genTime of an RFC 3161 token over the signed digest
    stamped_by: str | None = None  # the subject of the certificate that signed it

    def error(self, where: str, message: str) -> None:
        self.problems.append(VerifyProblem("error", where, message))

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def summary(self) -> str:
        ev = self.evidence or {}
        signed = "unsigned"
        if self.signer:
            signed = f"signed by {self.signer} at {self.signed_at}"
            if self.stamped_at:
                signed += f", time-stamped (RFC 3161) at {self.stamped_at} by {self.stamped_by} (its CA not checked)"
        return (f"{self.kind}: {len(ev.get('versions') or [])} versions, {len(ev.get('changes') or [])} changes, "
                f"{len(ev.get('chain', {}).get('entries') or [])} chain entries, chain head {ev.get('chain', {}).get('head')}; {signed}")


def verify_file(path: Path, *, anchors: list[tuple[str, str]] | None = None, key: bytes | None = None) -> Report:
    """Every check of the module doc; all faults reported, none raised (but an unreadable
    file, which is InputError). `key`: the DER public key the bundle must be signed with."""
    try:
        head = path.read_bytes()[:4]
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if head[:2] == b"\x1f\x8b" or head == b"WARC":
        report = Report("warc")
        with open(path, "rb") as handle:
            pieces = _read_warc(handle, report, "")
        _warc_signature(path, pieces, report)
    elif head == b"PK\x03\x04":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise InputError(f"{path}: not a readable zip ({exc})") from None
        with archive:
            names = set(archive.namelist())
            if "datapackage.json" in names:
                report = Report("wacz")
                pieces = _read_wacz(archive, report)
            elif "manifest.json" in names:
                report = Report("zip")
                pieces = _read_zip(archive, report)
            else:
                raise InputError(f"{path}: a zip with neither datapackage.json (WACZ) nor manifest.json (bundle)")
    else:
        raise InputError(f"{path}: not a WACZ, WARC or zip bundle")
    _check_signature(report, key)
    evidence_piece = pieces.get("evidence")
    if evidence_piece is None:
        report.error("evidence.json", "missing: this is not a privacy-monitor bundle, or its metadata record was removed")
        return report
    try:
        evidence = json.loads(evidence_piece.payload)
    except ValueError as exc:
        report.error("evidence.json", f"not JSON ({exc})")
        return report
    report.evidence = evidence
    if evidence.get("format") != EVIDENCE_FORMAT:
        report.error("evidence.json", f"format {evidence.get('format')!r} is unknown (this monitor reads {EVIDENCE_FORMAT})")
        return report
    entries = _check_chain(evidence.get("chain") or {}, report, anchors or [])
    _check_facts(evidence, entries, pieces, report, by="path" if report.kind == "zip" else "id")
    return report


# ----------------------------------------------------------------------------- containers


def _read_wacz(archive: zipfile.ZipFile, report: Report) -> dict[str, Piece]:
    names = set(archive.namelist())
    try:
        package_bytes = archive.read("datapackage.json")
    except (zipfile.BadZipFile, OSError, zlib.error) as exc:
        report.error("datapackage.json", f"cannot be read from the zip ({exc}): the file was changed")
        return {}
    if "datapackage-digest.json" not in names:
        report.error("datapackage-digest.json", "missing")
    else:
        try:
            digest = json.loads(archive.read("datapackage-digest.json"))
            if digest.get("hash") != "sha256:" + hashlib.sha256(package_bytes).hexdigest():
                report.error("datapackage.json", "does not match the sha256 in datapackage-digest.json")
            if "signedData" in digest:
                report.signed = Signed("datapackage-digest.json signedData", digest["signedData"], "sha256:" + hashlib.sha256(package_bytes).hexdigest())
        except ValueError:
            report.error("datapackage-digest.json", "not JSON")
    try:
        package = json.loads(package_bytes)
    except ValueError:
        report.error("datapackage.json", "not JSON")
        return {}
    listed = set()
    pieces: dict[str, Piece] = {}
    for resource in package.get("resources") or []:
        name = resource.get("path")
        listed.add(name)
        if name not in names:
            report.error(name, "listed in datapackage.json but missing")
            continue
        digest_ = hashlib.sha256()
        try:
            with archive.open(name) as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest_.update(chunk)
        except (zipfile.BadZipFile, OSError, zlib.error) as exc:
            report.error(name, f"cannot be read from the zip ({exc}): the file was changed")
            continue
        if resource.get("hash") != "sha256:" + digest_.hexdigest():
            report.error(name, "sha256 does not match datapackage.json (the file was changed)")
        if name.startswith("archive/"):
            with archive.open(name) as handle:
                pieces.update(_read_warc(handle, report, name + ": "))
    for name in sorted(names - listed - {"datapackage.json", "datapackage-digest.json"}):
        if not name.endswith("/"):
            report.error(name, "not listed in datapackage.json (a file was added)")
    return pieces


def _read_zip(archive: zipfile.ZipFile, report: Report) -> dict[str, Piece]:
    try:
        manifest = json.loads(archive.read("manifest.json"))
    except (ValueError, zipfile.BadZipFile, OSError, zlib.error):
        report.error("manifest.json", "not JSON")
        return {}
    names = set(archive.namelist())
    pieces: dict[str, Piece] = {}
    listed = {"manifest.json"}
    if SIGNATURE_FILE in names:  # detached: not in the manifest it signs
        listed.add(SIGNATURE_FILE)
        try:
            block = json.loads(archive.read(SIGNATURE_FILE))
            report.signed = Signed(SIGNATURE_FILE, block.get("signedData"), "sha256:" + hashlib.sha256(archive.read("manifest.json")).hexdigest())
        except (ValueError, AttributeError, zipfile.BadZipFile, OSError, zlib.error):
            report.error(SIGNATURE_FILE, "cannot be read as JSON")
    for entry in manifest.get("files") or []:
        name = entry.get("path")
        listed.add(name)
        if name not in names:
            report.error(name, "listed in manifest.json but missing")
            continue
        try:
            data = archive.read(name)
        except (zipfile.BadZipFile, OSError, zlib.error) as exc:
            report.error(name, f"cannot be read from the zip ({exc}): the file was changed")
            continue
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            report.error(name, "sha256 does not match manifest.json (the file was changed)")
        pieces[name] = Piece(data, "file", name)
    for name in sorted(names - listed):
        if not name.endswith("/"):
            report.error(name, "not listed in manifest.json (a file was added)")
    if "evidence.json" in pieces:
        pieces["evidence"] = pieces["evidence.json"]
    return pieces


def _read_warc(handle: Any, report: Report, where: str) -> dict[str, Piece]:
    """Every record by WARC-Record-ID (and the evidence metadata record as 'evidence'),
    its digests checked by warcio as it is read."""
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    pieces: dict[str, Piece] = {}
    number = 0
    try:
        iterator = ArchiveIterator(handle, check_digests=True)
        for record in iterator:
            number += 1
            offset = iterator.offset  # where this record starts (get_record_offset() would read it to its end)
            record_id = record.rec_headers.get_header("WARC-Record-ID") or f"record {number}"
            payload = record.raw_stream.read()
            checker = record.digest_checker
            if checker.passed is False or checker.problems:
                report.error(f"{where}WARC record {number} {record_id}", "digest does not match: " + "; ".join(checker.problems))
            elif record.rec_type != "warcinfo" and checker.passed is None:
                report.error(f"{where}WARC record {number} {record_id}", "carries no digest to check")
            uri = record.rec_headers.get_header("WARC-Target-URI") or ""
            status = record.http_headers.get_statuscode() if record.http_headers and record.rec_type == "response" else None
            piece = Piece(payload, record.rec_type, uri, status, offset, number)
            pieces[record_id] = piece
            if record.rec_type == "metadata" and uri == EVIDENCE_URI:
                pieces["evidence"] = piece
            if record.rec_type == "metadata" and uri == SIGNATURE_URI:
                pieces["signature"] = piece
    except (ArchiveLoadFailed, OSError, EOFError, ValueError, zlib.error) as exc:
        report.error(f"{where}WARC record {number + 1}", f"cannot be read ({exc.__class__.__name__}: {str(exc)[:200]})")
    report.records += number
    return pieces


# ----------------------------------------------------------------------------- signature


def _warc_signature(path: Path, pieces: dict[str, Piece], report: Report) -> None:
    """A plain WARC's signature record signs the sha256 of every byte before it, and is last."""
    piece = pieces.get("signature")
    if piece is None or piece.offset is None:
        return
    if piece.number != report.records:
        report.error("WARC signature record", "is not the last record (records were added after signing)")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        left = piece.offset
        while left > 0:
            chunk = handle.read(min(1 << 20, left))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    try:
        block = json.loads(piece.payload).get("signedData")
    except (ValueError, AttributeError):
        report.error("WARC signature record", "not JSON")
        return
    report.signed = Signed("WARC signature record", block, "sha256:" + digest.hexdigest())


def _check_signature(report: Report, key: bytes | None) -> None:
    from .sign import check_signed_data, fingerprint

    if report.signed is None:
        if key is not None:
            report.error("signature", f"the bundle is not signed, but --key expects a signature by {fingerprint(key)}")
        return
    result = check_signed_data(report.signed.block, report.signed.expected, pinned=key)
    if result.ok:
        report.signer = result.fingerprint
        report.signed_at = str(report.signed.block.get("created"))
        token = report.signed.block.get("timeStampToken")
        if token is not None:
            from .timestamp import check_token

            try:
                report.stamped_at, report.stamped_by = check_token(str(token), report.signed.expected)
            except (ValueError, TypeError, KeyError) as exc:
                report.error(f"{report.signed.where} timeStampToken", f"does not verify ({str(exc)[:120]})")
    else:
        report.error(report.signed.where, result.problem or "does not verify")


# ----------------------------------------------------------------------------- chain


def _check_chain(part: dict[str, Any], report: Report, anchors: list[tuple[str, str]]) -> dict[int, dict[str, Any]]:
    """The carried entries, by position, once each is shown to be hashed right and linked
    to the head; a broken one is reported and left out (so its facts are not vouched for)."""
    links = part.get("links") or []
    by_position: dict[int, tuple[str, str]] = {}
    previous: tuple[int, str] | None = None
    for link in links:
        try:
            position, prev, digest = int(link[0]), str(link[1]), str(link[2])
        except (TypeError, ValueError, IndexError):
            report.error("chain links", f"malformed link {str(link)[:80]}")
            continue
        if previous is not None and (position != previous[0] + 1 or prev != previous[1]):
            report.error(f"chain link {position}", "does not follow the link before it (the chain was cut or rewritten)")
        by_position[position] = (prev, digest)
        previous = (position, digest)
    head = str(part.get("head") or "")
    if previous is None:
        report.error("chain", "no links: nothing ties the entries to a chain head")
    elif head != f"{previous[0]}:{previous[1]}":
        report.error("chain head", f"{head[:80]!r} is not the last link ({previous[0]}:{previous[1][:12]}…)")
    good: dict[int, dict[str, Any]] = {}
    for entry in part.get("entries") or []:
        where = f"chain entry {entry.get('position')}"
        record = entry.get("record") or ""
        if entry_hash(entry.get("prev", ""), record) != entry.get("hash"):
            report.error(where, f"hash does not match its record ({entry.get('kind')} {entry.get('ref')} was edited)")
            continue
        link = by_position.get(entry.get("position"))
        if link is None or link != (entry.get("prev"), entry.get("hash")):
            report.error(where, "not among the links to the head at its position (the entry was replaced)")
            continue
        try:
            good[int(entry["position"])] = {**entry, "record": json.loads(record)}
        except ValueError:
            report.error(where, "its record is not JSON")
    for where, value in anchors:
        number, _, digest = value.partition(":")
        n = int(number) if number.isdigit() else -1
        if n in by_position:
            if by_position[n][1] != digest:
                report.error(where, f"anchored head {n}:{digest[:12]} does not match the bundle's chain at {n}: the chain was rewritten since")
        elif previous is not None and n > previous[0]:
            report.problems.append(VerifyProblem("note", where, f"anchored head {n} is after this bundle's head {previous[0]} (anchored later: not checkable here)"))
        else:
            report.problems.append(VerifyProblem("note", where, f"anchored head {n} is before the first link this bundle carries (not checkable here)"))
    return good


# ----------------------------------------------------------------------------- facts


def _check_facts(evidence: dict[str, Any], entries: dict[int, dict[str, Any]], pieces: dict[str, Piece], report: Report, *, by: str) -> None:
    def payload(ref: dict[str, Any], where: str) -> bytes | None:
        key = ref.get(by)
        piece = pieces.get(key) if key else None
        if piece is None:
            report.error(where, f"{ref.get('role')} {key or ref.get('uri')}: missing from the bundle")
            return None
        if hashlib.sha256(piece.payload).hexdigest() != ref.get("sha256"):
            report.error(where, f"{ref.get('role')} {key}: sha256 differs from evidence.json")
        return piece.payload

    def covered(kind: str, position: Any, ref_id: Any, where: str) -> dict[str, Any] | None:
        entry = entries.get(position) if isinstance(position, int) else None
        if entry is None:
            report.error(where, f"no verified chain entry vouches for it (position {position})")
            return None
        if entry["kind"] != kind or entry["ref"] != ref_id:
            report.error(where, f"chain entry {position} covers {entry['kind']} {entry['ref']}, not this {kind}")
            return None
        return entry["record"]

    def expect(where: str, what: str, found: bytes | None, sha: str | None) -> None:
        if found is not None and hashlib.sha256(found).hexdigest() != sha:
            report.error(where, f"{what} does not match the sha256 its chain entry records")

    for version in evidence.get("versions") or []:
        where = version.get("ref") or f"version {version.get('id')}"
        record = covered("version", version.get("chain"), version.get("id"), where)
        if record is None:
            continue
        for key in ("target", "seq", "observed_at", "effective_date", "provenance", "provenance_ref"):
            stored = record.get("target_id" if key == "target" else key)
            if version.get(key) != stored:
                report.error(where, f"evidence.json says {key} {version.get(key)!r}, its chain entry {stored!r}")
        files = version.get("files") or []
        loaded = [(ref, payload(ref, where)) for ref in files]
        texts = [data for ref, data in loaded if ref.get("role") == "text"]
        if not texts:
            report.error(where, "its extracted text is missing from the bundle")
        for data in texts:
            expect(where, "the extracted text", data, record.get("text_sha256"))
        for i, raw in enumerate(record.get("raws") or [], start=1):
            mine = {ref.get("role") + (f"-{ref.get('tile')}" if ref.get("tile") else ""): data for ref, data in loaded if ref.get("part") == i}
            expect(where, f"capture {i}", mine.get("capture"), raw.get("sha256"))
            if "capture" not in mine:
                report.error(where, f"capture {i} is missing from the bundle")
            response = raw.get("response")
            if response:
                expect(where, f"the headers file of capture {i}", mine.get("http"), response.get("sha256"))
                expect(where, f"the response body of capture {i}", mine.get("response"), response.get("body_sha256"))
                if "http" not in mine or "response" not in mine:
                    report.error(where, f"the network response of capture {i} is missing from the bundle")
            for k, shot in enumerate(raw.get("screenshots") or [], start=1):
                expect(where, f"screenshot {i}.{k}", mine.get(f"screenshot-{k}"), shot.get("sha256"))
                if f"screenshot-{k}" not in mine:
                    report.error(where, f"screenshot {i}.{k} is missing from the bundle")
    for change in evidence.get("changes") or []:
        where = f"change {change.get('id')}"
        record = covered("change", change.get("chain"), change.get("id"), where)
        if record is None:
            continue
        loaded = {ref.get("role"): payload(ref, where) for ref in change.get("files") or []}
        diff_bytes = loaded.get("diff-json")
        if "diff-json" not in loaded:
            report.error(where, "its diff JSON is missing from the bundle")
        expect(where, "the diff JSON", diff_bytes, record.get("diff_sha256"))
        if record.get("html_sha256") is not None:
            if "clauses-html" not in loaded:
                report.error(where, "its clause HTML is missing from the bundle")
            expect(where, "the clause HTML", loaded.get("clauses-html"), record.get("html_sha256"))
        shown = diff_bytes
        for evaluation in change.get("evaluations") or []:
            ewhere = f"{where} evaluation {evaluation.get('id')}"
            erecord = covered("evaluation", evaluation.get("chain"), evaluation.get("id"), ewhere)
            if erecord is None:
                continue
            for ref in evaluation.get("files") or []:
                data = payload(ref, ewhere)
                expect(ewhere, "the re-evaluated diff JSON", data, erecord.get("diff_sha256"))
                shown = data
        if shown is not None:
            try:
                if flags_of(json.loads(shown)) != change.get("flags"):
                    report.error(where, "the flags evidence.json lists are not the flags of the diff JSON")
            except ValueError:
                report.error(where, "the diff JSON is not JSON")


def read_evidence(path: Path) -> dict[str, Any] | None:
    """evidence.json of a bundle, unchecked (for tools that only read it)."""
    report = verify_file(path)
    return report.evidence


__all__ = ["Report", "read_evidence", "verify_file"]
