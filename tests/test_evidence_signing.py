"""Signed evidence: `monitor keygen`, `monitor export --sign` (a WACZ's signedData block, a
zip's signature.json, a WARC's last record), `monitor verify FILE [--key PUBKEY]`, and RFC
3161 time-stamps from a TSA (a local HTTP server answering with a response built here)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import shutil
import socket
import stat
import subprocess
import threading
import zipfile
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from .conftest import archive_tool, in_process
from .test_evidence import archive, export  # noqa: F401 - the fixture: two versions, one flagged change


def configure(config: Path, evidence: dict[str, Any]) -> None:
    data = yaml.safe_load(config.read_text())
    data["evidence"] = evidence
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def keygen(path: Path) -> str:
    code, out, err = in_process("keygen", str(path))
    assert code == 0, err
    return out.split("public key ")[1].strip()


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "monitor.key"
    finger = keygen(key)
    assert finger.startswith("ed25519:SHA256:") and len(finger.split(":")[-1]) == 64
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in key.read_bytes() and b"BEGIN PUBLIC KEY" in (tmp_path / "keys" / "monitor.key.pub").read_bytes()
    before = key.read_bytes()
    code, _, err = in_process("keygen", str(key))
    assert code == 2 and "already exists" in err and key.read_bytes() == before


@pytest.mark.parametrize("fmt", ["wacz", "warc", "zip"])
def test_signed_bundle_verifies_names_its_key_and_fails_with_another(archive: dict[str, object], tmp_path: Path, fmt: str) -> None:  # noqa: F811
    config = archive["config"]
    (config.parent / "keys").mkdir()
    finger = keygen(config.parent / "keys" / "monitor.key")
    other = tmp_path / "other.key"
    keygen(other)
    configure(config, {"signing_key": "keys/monitor.key"})  # relative to targets.yaml
    out = tmp_path / f"signed.{fmt}"
    code, stdout, err = export(config, "1", "--format", fmt, "--sign", "-o", str(out))
    assert code == 0, err
    assert f"signed by {finger}" in stdout
    code, stdout, _ = in_process("verify", str(out))
    assert code == 0, stdout
    assert f"signed by {finger} at " in stdout
    pub = config.parent / "keys" / "monitor.key.pub"
    assert in_process("verify", str(out), "--key", str(pub))[0] == 0
    code, stdout, _ = in_process("verify", str(out), "--key", str(other) + ".pub")
    assert code == 1 and f"signed by {finger}, not by the expected key" in stdout
    if fmt == "wacz":
        with zipfile.ZipFile(out) as wacz:
            block = json.loads(wacz.read("datapackage-digest.json"))
        signed = block["signedData"]
        assert signed["hash"] == block["hash"] and signed["created"].endswith("Z") and signed["software"].startswith("privacy-monitor")
        # anyone can check it with the public key alone
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        load_der_public_key(base64.b64decode(signed["publicKey"])).verify(
            base64.b64decode(signed["signature"]), f"{signed['hash']}\n{signed['created']}".encode())
        # and the wacz package's validator takes it (its own signature check is authsign's ECDSA, not run)
        validated = subprocess.run([str(archive_tool("wacz")), "validate", "-f", str(out)], capture_output=True, text=True, timeout=300)
        assert validated.returncode == 0, validated.stdout + validated.stderr
        assert "Has signature" in validated.stdout
    # an unsigned bundle is not what --key asks for
    plain = tmp_path / f"plain.{fmt}"
    assert export(config, "1", "--format", fmt, "-o", str(plain))[0] == 0
    code, stdout, _ = in_process("verify", str(plain))
    assert code == 0 and "unsigned" in stdout
    code, stdout, _ = in_process("verify", str(plain), "--key", str(pub))
    assert code == 1 and "the bundle is not signed" in stdout


def _rezip(path: Path, edit: Any) -> None:
    with zipfile.ZipFile(path) as bundle:
        files = {name: bundle.read(name) for name in bundle.namelist()}
    edit(files)
    with zipfile.ZipFile(path, "w") as bundle:
        for name, body in files.items():
            bundle.writestr(name, body)


def test_a_changed_byte_or_a_resigned_time_fails_the_signature(archive: dict[str, object], tmp_path: Path) -> None:  # noqa: F811
    config = archive["config"]
    key = tmp_path / "k.key"
    keygen(key)
    # WACZ: datapackage.json edited and its digest recomputed: only the signature catches it
    wacz = tmp_path / "s.wacz"
    assert export(config, "1", "--signing-key", str(key), "-o", str(wacz))[0] == 0

    def repackage(files: dict[str, bytes]) -> None:
        package = json.loads(files["datapackage.json"])
        package["title"] = "something else"
        files["datapackage.json"] = json.dumps(package).encode()
        digest = json.loads(files["datapackage-digest.json"])
        digest["hash"] = "sha256:" + hashlib.sha256(files["datapackage.json"]).hexdigest()
        files["datapackage-digest.json"] = json.dumps(digest).encode()

    _rezip(wacz, repackage)
    code, stdout, _ = in_process("verify", str(wacz))
    assert code == 1 and "datapackage-digest.json signedData: signs sha256:" in stdout and "it was changed after signing" in stdout

    # the signing time moved: the signature covers it
    again = tmp_path / "t.wacz"
    assert export(config, "1", "--signing-key", str(key), "-o", str(again))[0] == 0

    def backdate(files: dict[str, bytes]) -> None:
        digest = json.loads(files["datapackage-digest.json"])
        digest["signedData"]["created"] = "2020-01-01T00:00:00Z"
        files["datapackage-digest.json"] = json.dumps(digest).encode()

    _rezip(again, backdate)
    code, stdout, _ = in_process("verify", str(again))
    assert code == 1 and "the signature does not match" in stdout

    # zip: manifest.json changed (with the file it lists) after signing
    bundle = tmp_path / "s.zip"
    assert export(config, "1", "--format", "zip", "--signing-key", str(key), "-o", str(bundle))[0] == 0

    def edit_readme(files: dict[str, bytes]) -> None:
        files["README.txt"] += b"one more line\n"
        manifest = json.loads(files["manifest.json"])
        for entry in manifest["files"]:
            entry["sha256"] = hashlib.sha256(files[entry["path"]]).hexdigest()
        files["manifest.json"] = json.dumps(manifest).encode()

    _rezip(bundle, edit_readme)
    code, stdout, _ = in_process("verify", str(bundle))
    assert code == 1 and "signature.json: signs sha256:" in stdout

    # WARC: the first record re-compressed: other bytes, the same record, every record digest
    # still matches; only the signature over the file's bytes sees it
    warc = tmp_path / "s.warc.gz"
    assert export(config, "1", "--format", "warc", "--signing-key", str(key), "-o", str(warc))[0] == 0
    from warcio.archiveiterator import ArchiveIterator

    data = warc.read_bytes()
    with open(warc, "rb") as handle:
        iterator = ArchiveIterator(handle)
        next(iterator)
        next(iterator)
        second = iterator.offset
    first = gzip.compress(gzip.decompress(data[:second]), compresslevel=1, mtime=0)
    assert first != data[:second]
    warc.write_bytes(first + data[second:])
    code, stdout, _ = in_process("verify", str(warc))
    assert code == 1 and "WARC signature record: signs sha256:" in stdout and stdout.count("error:") == 1, stdout
    # a record appended after the signature
    assert export(config, "1", "--format", "warc", "--signing-key", str(key), "-o", str(warc))[0] == 0
    warc.write_bytes(warc.read_bytes() + data[:second])
    code, stdout, _ = in_process("verify", str(warc))
    assert code == 1 and "WARC signature record: is not the last record" in stdout


def test_signing_settings_are_checked_with_one_line_errors(archive: dict[str, object], tmp_path: Path) -> None:  # noqa: F811
    config = archive["config"]
    configure(config, {"signing_keys": "keys/monitor.key"})
    code, _, err = in_process("--config", str(config), "validate")
    assert code == 2 and "evidence.signing_keys" in err and "did you mean 'signing_key'?" in err and str(config.name) in err
    configure(config, {"tsa_url": "freetsa.org/tsr"})
    code, _, err = in_process("--config", str(config), "validate")
    assert code == 2 and "evidence.tsa_url" in err and "not an http(s) URL" in err
    # no key configured; a key file missing; --timestamp with no TSA
    configure(config, {})
    code, _, err = export(config, "1", "--sign", "-o", str(tmp_path / "x.wacz"))
    assert code == 2 and "evidence.signing_key: not set" in err and "monitor keygen" in err and len(err.strip().splitlines()) == 1
    configure(config, {"signing_key": "keys/missing.key"})
    code, _, err = export(config, "1", "--sign", "-o", str(tmp_path / "x.wacz"))
    assert code == 2 and "evidence.signing_key" in err and "no such key file" in err and "monitor keygen" in err
    assert "Traceback" not in err and not (tmp_path / "x.wacz").exists()
    keygen(config.parent / "keys" / "missing.key")
    code, _, err = export(config, "1", "--sign", "--timestamp", "-o", str(tmp_path / "x.wacz"))
    assert code == 2 and "evidence.tsa_url: not set" in err


# ----------------------------------------------------------------------------- RFC 3161


class TSA:
    """A time-stamping authority on 127.0.0.1: it reads each TimeStampReq and answers with a
    granted TimeStampResp whose token's TSTInfo stamps the digest asked for, at `when`,
    signed (CMS, RSA with sha256 over the signed attributes) by a self-signed certificate."""

    def __init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.requests: list[bytes] = []
        self.when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test TSA")])
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                     .serial_number(7).not_valid_before(datetime(2025, 1, 1, tzinfo=timezone.utc))
                     .not_valid_after(datetime(2030, 1, 1, tzinfo=timezone.utc))
                     .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
                     .sign(self.key, hashes.SHA256())).public_bytes(serialization.Encoding.DER)
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                tsa.requests.append(body)
                answer = tsa.answer(body, self.headers["Content-Type"])
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tsr"

    def answer(self, body: bytes, content_type: str) -> bytes:
        from asn1crypto import cms, tsp, x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        request = tsp.TimeStampReq.load(body)
        assert content_type == "application/timestamp-query"
        info = tsp.TSTInfo({
            "version": "v1", "policy": "1.2.3.4.1", "message_imprint": request["message_imprint"],
            "serial_number": len(self.requests), "gen_time": self.when, "nonce": request["nonce"].native,
        })
        cert = x509.Certificate.load(self.cert)
        attrs = cms.CMSAttributes([
            {"type": "content_type", "values": ["tst_info"]},
            {"type": "message_digest", "values": [hashlib.sha256(info.dump()).digest()]},
            {"type": "signing_certificate_v2", "values": [{"certs": [{"cert_hash": hashlib.sha256(self.cert).digest()}]}]},
        ])
        signature = self.key.sign(b"\x31" + attrs.dump()[1:], padding.PKCS1v15(), hashes.SHA256())
        signer = {
            "version": "v1", "sid": {"issuer_and_serial_number": {"issuer": cert.issuer, "serial_number": cert.serial_number}},
            "digest_algorithm": {"algorithm": "sha256"}, "signed_attrs": attrs,
            "signature_algorithm": {"algorithm": "sha256_rsa"}, "signature": signature,
        }
        signed = cms.SignedData({
            "version": "v3", "digest_algorithms": [{"algorithm": "sha256"}], "certificates": [cert],
            "encap_content_info": {"content_type": "tst_info", "content": info}, "signer_infos": [signer],
        })
        token = cms.ContentInfo({"content_type": "signed_data", "content": signed})
        return bytes(tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump())


@pytest.fixture
def tsa() -> Iterator[TSA]:
    server = TSA()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_timestamp_from_a_tsa_is_kept_and_verified(archive: dict[str, object], tmp_path: Path, tsa: TSA) -> None:  # noqa: F811
    from asn1crypto import tsp

    config = archive["config"]
    keygen(config.parent / "monitor.key")
    configure(config, {"signing_key": "monitor.key", "tsa_url": tsa.url})
    out = tmp_path / "stamped.wacz"
    code, stdout, err = export(config, "1", "--sign", "--timestamp", "-o", str(out))
    assert code == 0, err
    assert f"time-stamped by {tsa.url} at 2026-01-02T03:04:05Z" in stdout
    with zipfile.ZipFile(out) as wacz:
        digest = json.loads(wacz.read("datapackage-digest.json"))
    [request] = tsa.requests
    sent = tsp.TimeStampReq.load(request)
    assert sent["message_imprint"]["hashed_message"].native.hex() == digest["hash"].split(":")[1]
    assert sent["cert_req"].native is True and sent["nonce"].native
    assert digest["signedData"]["genTime"] == "2026-01-02T03:04:05Z" and digest["signedData"]["tsa"] == tsa.url
    code, stdout, _ = in_process("verify", str(out))
    assert code == 0 and "time-stamped (RFC 3161) at 2026-01-02T03:04:05Z by CN=Test TSA" in stdout
    # openssl reads the token and checks its signature with the TSA's certificate as the CA
    token_file, ca_file = tmp_path / "token.der", tmp_path / "tsa.pem"
    token_file.write_bytes(base64.b64decode(digest["signedData"]["timeStampToken"]))
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    ca_file.write_bytes(x509.load_der_x509_certificate(tsa.cert).public_bytes(Encoding.PEM))
    if shutil.which("openssl"):
        checked = subprocess.run(["openssl", "ts", "-verify", "-token_in", "-in", str(token_file), "-digest",
                                  digest["hash"].split(":")[1], "-CAfile", str(ca_file), "-partial_chain"],
                                 capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0 and "Verification: OK" in checked.stdout, checked.stdout + checked.stderr
    # a token that stamps another digest (taken from another export) fails
    other = tmp_path / "other.zip"
    assert export(config, "1", "--format", "zip", "--sign", "--timestamp", "-o", str(other))[0] == 0
    with zipfile.ZipFile(other) as bundle:
        foreign = json.loads(bundle.read("signature.json"))["signedData"]["timeStampToken"]

    def swap(files: dict[str, bytes]) -> None:
        block = json.loads(files["datapackage-digest.json"])
        block["signedData"]["timeStampToken"] = foreign
        files["datapackage-digest.json"] = json.dumps(block).encode()

    original = out.read_bytes()
    _rezip(out, swap)
    code, stdout, _ = in_process("verify", str(out))
    assert code == 1 and "timeStampToken: does not verify (the time-stamp token stamps another digest" in stdout
    # the token's time moved back a year: the TSA's signature no longer covers it
    out.write_bytes(original)

    def backdate(files: dict[str, bytes]) -> None:
        from asn1crypto import cms, tsp

        block = json.loads(files["datapackage-digest.json"])
        token = cms.ContentInfo.load(base64.b64decode(block["signedData"]["timeStampToken"]))
        info = tsp.TSTInfo.load(token["content"]["encap_content_info"]["content"].contents)
        info["gen_time"] = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        token["content"]["encap_content_info"]["content"] = info
        block["signedData"]["timeStampToken"] = base64.b64encode(token.dump(force=True)).decode()
        files["datapackage-digest.json"] = json.dumps(block).encode()

    _rezip(out, backdate)
    code, stdout, _ = in_process("verify", str(out))
    assert code == 1 and "does not match the digest its TSA signed (the token was edited)" in stdout, stdout


def test_timestamp_with_the_tsa_unreachable_is_one_clear_line(archive: dict[str, object], tmp_path: Path) -> None:  # noqa: F811
    config = archive["config"]
    with socket.socket() as sock:  # a port nothing listens on (offline, as far as the export can tell)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    keygen(config.parent / "monitor.key")
    configure(config, {"signing_key": "monitor.key", "tsa_url": f"http://127.0.0.1:{port}/tsr"})
    out = tmp_path / "x.wacz"
    code, stdout, err = export(config, "1", "--sign", "--timestamp", "-o", str(out))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"evidence.tsa_url http://127.0.0.1:{port}/tsr: cannot be reached" in err and "without --timestamp" in err
    assert "Traceback" not in err and not out.exists() and not list(tmp_path.glob(".x.wacz*"))
