"""Signing exported bundles with Ed25519 (the `cryptography` package), in the shape of the
WACZ signing spec's `signedData` block: the digest signed, the signature, the public key
(base64 DER SubjectPublicKeyInfo), the time and the software.

The message signed is `hash + "\\n" + created` (UTF-8), so the stated signing time cannot be
changed without breaking the signature; the spec's anonymous form signs the hash alone.
Whoever can verify an Ed25519 signature can check it without this program:
`Ed25519PublicKey.verify(b64decode(signature), f"{hash}\\n{created}".encode())`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

ALGORITHM = "ed25519"


def keygen(path: Path) -> tuple[Path, Path, str]:
    """A new key pair: the private key (PKCS#8 PEM, mode 0600) at `path`, the public key at
    `path`.pub. Never overwrites a key. Returns both paths and the public key's fingerprint."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public_path = path.with_name(path.name + ".pub")
    for existing in (path, public_path):
        if existing.exists():
            raise InputError(f"{existing}: already exists; keep the key you have, or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not even for a moment
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    os.chmod(path, 0o600)  # whatever the umask
    public_path.write_bytes(public)
    return path, public_path, fingerprint(_spki(key.public_key()))


def load_private(path: Path, *, where: str = "") -> Any:
    """The Ed25519 private key in a PEM file; InputError (one line, with the fix) otherwise."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    prefix = f"{where}: " if where else ""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{prefix}{path}: no such key file; create one with `monitor keygen {path}`") from None
    except OSError as exc:
        raise InputError(f"{prefix}{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{prefix}{path}: not an unencrypted PEM private key ({str(exc).splitlines()[0][:120]}); create one with `monitor keygen`") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{prefix}{path}: not an Ed25519 key; create one with `monitor keygen`")
    return key


def load_public(path: Path) -> bytes:
    """The DER SubjectPublicKeyInfo of an Ed25519 public key file (PEM, as `monitor keygen`
    writes it to KEY.pub; a private key file gives its public half)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"--key {path}: cannot be read ({exc.strerror or exc})") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        key = load_private(path, where="--key").public_key() if b"PRIVATE KEY" in data else None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"--key {path}: not an Ed25519 public key in PEM; pass the KEY.pub file `monitor keygen` wrote")
    return _spki(key)


def _spki(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def fingerprint(spki: bytes) -> str:
    """What a person compares: sha256 of the DER public key, as `ed25519:SHA256:hex`."""
    return f"{ALGORITHM}:SHA256:{hashlib.sha256(spki).hexdigest()}"


def message(hash_: str, created: str) -> bytes:
    return f"{hash_}\n{created}".encode("utf-8")


def signed_data(key: Any, hash_: str, created: str, software: str) -> dict[str, Any]:
    """The `signedData` block for a digest like 'sha256:...'."""
    signature = key.sign(message(hash_, created))
    return {
        "hash": hash_, "created": created, "software": software, "algorithm": ALGORITHM,
        "signature": base64.b64encode(signature).decode("ascii"),
        "publicKey": base64.b64encode(_spki(key.public_key())).decode("ascii"),
    }


@dataclass
class SignatureCheck:
    ok: bool
    fingerprint: str | None
    problem: str | None = None


def check_signed_data(block: Any, expected_hash: str, *, pinned: bytes | None = None) -> SignatureCheck:
    """A `signedData` block against the digest the bundle has now, and the pinned key if given."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(block, dict):
        return SignatureCheck(False, None, "signedData is not a mapping")
    try:
        spki = base64.b64decode(block["publicKey"], validate=True)
        signature = base64.b64decode(block["signature"], validate=True)
        public = serialization.load_der_public_key(spki)
        hash_, created = str(block["hash"]), str(block["created"])
    except (KeyError, TypeError, ValueError) as exc:
        return SignatureCheck(False, None, f"signedData is malformed ({exc.__class__.__name__}: {str(exc)[:80]})")
    finger = fingerprint(spki)
    if not isinstance(public, Ed25519PublicKey) or block.get("algorithm", ALGORITHM) != ALGORITHM:
        return SignatureCheck(False, finger, "the public key is not Ed25519 (this monitor checks Ed25519 signatures)")
    if hash_ != expected_hash:
        return SignatureCheck(False, finger, f"signs {hash_[:20]}…, but the signed file now hashes to {expected_hash[:20]}… (it was changed after signing)")
    try:
        public.verify(signature, message(hash_, created))
    except InvalidSignature:
        return SignatureCheck(False, finger, "the signature does not match (the digest, the time or the key was changed)")
    if pinned is not None and spki != pinned:
        return SignatureCheck(False, finger, f"signed by {finger}, not by the expected key {fingerprint(pinned)}")
    return SignatureCheck(True, finger)


__all__ = ["check_signed_data", "fingerprint", "keygen", "load_private", "load_public", "signed_data"]
