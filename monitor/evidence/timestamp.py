"""RFC 3161 time-stamps for a signed bundle: the digest it signs goes to a time-stamping
authority (TSA) configured as `evidence.tsa_url`, whose token (a CMS SignedData over a
TSTInfo naming that digest and the time) is kept in the `signedData` block as
`timeStampToken` (base64 DER). asn1crypto builds the request and reads the answer.

What is checked here: the TSA granted the request, the token's TSTInfo stamps this very
digest (with our nonce, when asked), its genTime, and the token's CMS signature against the
certificate it carries (message digest of the TSTInfo, signature over the signed
attributes; RSA, ECDSA or Ed25519). Whether that certificate belongs to a TSA you trust (its
chain to a CA) is not checked here: `openssl ts -verify -CAfile` does that.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

CONTENT_TYPE = "application/timestamp-query"


def request_der(digest_hex: str, nonce: int) -> bytes:
    """A TimeStampReq (v1, sha256 imprint, nonce, the TSA's certificate asked for)."""
    from asn1crypto import tsp

    return bytes(tsp.TimeStampReq({
        "version": 1,
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": bytes.fromhex(digest_hex)},
        "nonce": nonce, "cert_req": True,
    }).dump())


@dataclass
class Stamp:
    token: bytes  # the TimeStampToken, DER
    gen_time: str  # ISO 8601, UTC
    tsa: str

    def block(self) -> dict[str, Any]:
        return {"timeStampToken": base64.b64encode(self.token).decode("ascii"), "genTime": self.gen_time, "tsa": self.tsa}


def timestamp(url: str, digest: str, *, timeout: float = 30.0) -> Stamp:
    """Ask the TSA at `url` to stamp `digest` ('sha256:hex'). InputError, one line, when it
    cannot be reached or does not grant it."""
    import httpx

    hex_ = digest.split(":", 1)[1]
    nonce = secrets.randbits(63)
    try:
        response = httpx.post(url, content=request_der(hex_, nonce), headers={"Content-Type": CONTENT_TYPE}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise InputError(f"evidence.tsa_url {url}: cannot be reached ({exc.__class__.__name__}: {str(exc)[:120] or 'no answer'}); "
                         "check the URL and the network, or export without --timestamp") from None
    if response.status_code != 200:
        raise InputError(f"evidence.tsa_url {url}: answered HTTP {response.status_code}, not a time-stamp response; check the URL")
    return read_response(response.content, hex_, nonce, url)


def read_response(data: bytes, digest_hex: str, nonce: int | None, url: str) -> Stamp:
    token, info = _token_info(data, url)
    imprint = info["message_imprint"]
    if imprint["hash_algorithm"]["algorithm"].native != "sha256" or imprint["hashed_message"].native != bytes.fromhex(digest_hex):
        raise InputError(f"evidence.tsa_url {url}: the time-stamp token stamps another digest than the one sent")
    if nonce is not None and info["nonce"].native not in (None, nonce):
        raise InputError(f"evidence.tsa_url {url}: the time-stamp token answers another request (nonce differs)")
    from asn1crypto import cms

    try:
        _check_cms_signature(cms.ContentInfo.load(token))
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(f"evidence.tsa_url {url}: {str(exc)[:160]}") from None
    return Stamp(token, _iso(info["gen_time"].native), url)


def check_token(token_b64: str, digest: str) -> tuple[str, str]:
    """(genTime, the signing certificate's subject) of a kept token, once its TSTInfo is seen
    to stamp `digest` and its CMS signature to verify; ValueError otherwise."""
    from asn1crypto import cms

    token = cms.ContentInfo.load(base64.b64decode(token_b64, validate=True))
    info = _tst_info(token)
    if info["message_imprint"]["hashed_message"].native != bytes.fromhex(digest.split(":", 1)[1]):
        raise ValueError("the time-stamp token stamps another digest (the bundle was changed after it was stamped)")
    return _iso(info["gen_time"].native), _check_cms_signature(token)


def _check_cms_signature(token: Any) -> str:
    """The token's SignerInfo: its message-digest attribute is the sha-2 of the TSTInfo, and
    its signature over the signed attributes verifies with the certificate the token holds."""
    import hashlib

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.x509 import load_der_x509_certificate

    signed = token["content"]
    signers = signed["signer_infos"]
    if len(signers) != 1:
        raise ValueError(f"the token has {len(signers)} signers, not one (it is not signed by the TSA)")
    signer = signers[0]
    algorithm = signer["digest_algorithm"]["algorithm"].native
    if algorithm not in ("sha256", "sha384", "sha512"):
        raise ValueError(f"the token's digest algorithm {algorithm} is not one this monitor checks")
    attrs = signer["signed_attrs"]
    found = [a["values"][0].native for a in attrs if a["type"].native == "message_digest"]
    content = signed["encap_content_info"]["content"].contents
    if found != [hashlib.new(algorithm, content).digest()]:
        raise ValueError("the token's TSTInfo does not match the digest its TSA signed (the token was edited)")
    sid = signer["sid"]
    certs = [c.chosen for c in signed["certificates"] or [] if c.name == "certificate"]
    if sid.name == "issuer_and_serial_number":
        certs = [c for c in certs if c.issuer == sid.chosen["issuer"] and c.serial_number == sid.chosen["serial_number"].native]
    else:
        certs = [c for c in certs if c.key_identifier == sid.chosen.native]
    if not certs:
        raise ValueError("the token does not carry its TSA's certificate (ask the TSA with certReq, as this monitor does)")
    cert = load_der_x509_certificate(certs[0].dump())
    key, data, sig = cert.public_key(), b"\x31" + attrs.dump()[1:], signer["signature"].native  # signed as a SET OF
    hash_ = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[algorithm]
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if signer["signature_algorithm"].signature_algo == "rsassa_pss":
                key.verify(sig, data, padding.PSS(padding.MGF1(hash_), padding.PSS.AUTO), hash_)
            else:
                key.verify(sig, data, padding.PKCS1v15(), hash_)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sig, data, ec.ECDSA(hash_))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, data)
        else:
            raise ValueError("the TSA's key type is not one this monitor checks")
    except InvalidSignature:
        raise ValueError("the TSA's signature on the token does not verify (the token was edited)") from None
    return cert.subject.rfc4514_string()


def _token_info(data: bytes, url: str) -> tuple[bytes, Any]:
    from asn1crypto import tsp

    try:
        response = tsp.TimeStampResp.load(data)
        status = response["status"]["status"].native
        if status not in ("granted", "granted_with_mods"):
            text = response["status"]["status_string"].native
            raise InputError(f"evidence.tsa_url {url}: the TSA did not grant the time-stamp ({status}{': ' + ' '.join(text) if text else ''})")
        token = response["time_stamp_token"]
        return bytes(token.dump()), _tst_info(token)
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(f"evidence.tsa_url {url}: the answer is not an RFC 3161 time-stamp response ({str(exc)[:100]})") from None


def _tst_info(token: Any) -> Any:
    from asn1crypto import tsp

    content = token["content"]["encap_content_info"]
    if content["content_type"].native != "tst_info":
        raise ValueError("the token does not hold a TSTInfo")
    parsed = content["content"].parsed
    return parsed if isinstance(parsed, tsp.TSTInfo) else tsp.TSTInfo.load(content["content"].native)


def _iso(when: Any) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["Stamp", "check_token", "request_der", "timestamp"]
