"""RFC 3161 time-stamps for a signed bundle: the digest it signs goes to a time-stamping
authority (TSA) configured as `evidence.tsa_url`, whose token (a CMS SignedData over a
TSTInfo naming that digest and the time) is kept in the `signedData` block as
`timeStampToken` (base64 DER). asn1crypto builds the request and reads the answer.

What is checked here: the TSA granted the request, the token's TSTInfo stamps this very
digest with our nonce, and its genTime. The TSA's certificate chain and CMS signature are
not checked by this monitor: `openssl ts -verify` does that with the TSA's CA certificate.
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
    return Stamp(token, _iso(info["gen_time"].native), url)


def check_token(token_b64: str, digest: str) -> str:
    """The genTime of a kept token, once its TSTInfo is seen to stamp `digest`; ValueError otherwise."""
    from asn1crypto import cms

    token = cms.ContentInfo.load(base64.b64decode(token_b64, validate=True))
    info = _tst_info(token)
    if info["message_imprint"]["hashed_message"].native != bytes.fromhex(digest.split(":", 1)[1]):
        raise ValueError("the time-stamp token stamps another digest (the bundle was changed after it was stamped)")
    return _iso(info["gen_time"].native)


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
