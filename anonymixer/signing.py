"""Ed25519 signatures of model folders, bundles and detector files, and the trusted key that checks them.

Digests (``manifest.json``'s ``digest`` and ``files`` table, a bundle's ``digest``) catch damage and
hand edits, but they sit in the file they protect: whoever can rewrite a model folder can rewrite
them too. A signature is made with a private key that never goes near the deployment, so an
attacker who rewrites both the files and their digests still cannot make a signature that checks.

    anonymixer sign --new-key signer.key        # signer.key (0600, keep it off the deployment) + signer.key.pub
    anonymixer sign export/ffhq --signing-key signer.key      # writes export/ffhq/manifest.json.sig
    anonymixer sign ffhq.bundle --signing-key signer.key      # writes ffhq.bundle.sig
    anonymixer protect ... --onnx export/ffhq --trusted-key signer.key.pub   # or ANONYMIXER_TRUSTED_KEY

What is signed: for a model or engine folder, its ``manifest.json`` (which lists the sha256 of
every file a runtime reads from the folder, each hashed before use, an unlisted file refused); for
a single file (a bundle, a detector ``.onnx``), the file. The statement signed is
``b"anonymixer/signature/v1\\0" + KIND + b"\\0" + sha256 hex`` (KIND ``folder`` or ``file``), so a
signature of one kind never passes for the other. ``FILE.sig`` is JSON::

    {"format": "anonymixer-signature", "version": 1, "algorithm": "ed25519", "kind": "folder"|"file",
     "sha256": "<hex of the signed bytes>", "bytes": N, "signer": "<fingerprint of the public key>",
     "signature": "<base64, 64 bytes>"}

With a trusted key set (``--trusted-key PUB`` on any command that loads a model, or the
``ANONYMIXER_TRUSTED_KEY`` environment variable), every model folder, engine folder, bundle file
and detector file is refused, in one line, unless its signature checks with that key. Without one,
signatures are not read. Built-in models (``faces64``: its files are pinned by sha256 in this
package; ``random:``) are part of the installed software and need none.

Key files are PEM (PKCS#8 private, SubjectPublicKeyInfo public), readable by OpenSSL. The private key
is written 0600 and is never printed or logged: only its fingerprint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import write_bytes, write_json
from .digest import sha256_file
from .errors import KeyFileError, SignatureError
from .export.layout import MANIFEST, SIGNATURE_SUFFIX

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

TRUSTED_KEY_ENV = "ANONYMIXER_TRUSTED_KEY"
SIGNATURE_FORMAT = "anonymixer-signature"
SIGNATURE_VERSION = 1
STATEMENT_PREFIX = b"anonymixer/signature/v1\0"
FINGERPRINT_PREFIX = b"anonymixer/signing-key/v1\0"
MAX_KEY_FILE_BYTES = 4096
INSTALL = "pip install 'anonymixer[sign]' (the cryptography package)"


def _crypto() -> Any:
    """The ``cryptography`` package's Ed25519 and serialization modules, or a one-line error."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise SignatureError(f"signatures need the cryptography package: {INSTALL}") from None
    return ed25519, serialization


def fingerprint(public: "Ed25519PublicKey") -> str:
    """Public id of a signing key, e.g. ``'9c1e-...-...-...'`` (SHA-256 of the raw key, 16 hex digits)."""
    _, serialization = _crypto()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    digest = hashlib.sha256(FINGERPRINT_PREFIX + raw).hexdigest()[:16]
    return "-".join(digest[i:i + 4] for i in range(0, 16, 4))


@dataclass(frozen=True)
class TrustedKey:
    """A public key read from ``path``, the only signer whose folders and files are accepted."""

    public: "Ed25519PublicKey"
    path: Path

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        if path.stat().st_size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"{path}: too large for a {what} ({path.stat().st_size} bytes)")
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise KeyFileError(f"{path}: is a folder, not a {what}") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the {what} ({exc.strerror or type(exc).__name__})") from None


def new_signing_key(path: str | os.PathLike[str]) -> str:
    """Write a fresh Ed25519 key pair: ``path`` (private, PKCS#8 PEM, 0600) and ``path.pub``.

    Never overwrites: ``KeyFileError`` if either file exists. Returns the fingerprint.
    """
    ed25519, serialization = _crypto()
    private_path = Path(path)
    public_path = private_path.with_name(private_path.name + ".pub")
    for existing in (private_path, public_path):
        if existing.exists():
            raise KeyFileError(f"{existing}: already exists; a signing key is never overwritten: choose another path")
    if not private_path.parent.is_dir():
        raise KeyFileError(f"{private_path}: folder {private_path.parent} does not exist; create it first")
    private = ed25519.Ed25519PrivateKey.generate()
    write_bytes(private_path, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()), mode=0o600)
    write_bytes(public_path, private.public_key().public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo))
    return fingerprint(private.public_key())


def load_signing_key(path: str | os.PathLike[str]) -> "Ed25519PrivateKey":
    """The private key of ``path`` (written by ``new_signing_key``); one-line ``KeyFileError`` otherwise."""
    ed25519, serialization = _crypto()
    path = Path(path)
    data = _read_key_file(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"{path}: not an unencrypted PEM private key; make one with "
                           "`anonymixer sign --new-key FILE`") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key ({type(key).__name__}); make one with "
                           "`anonymixer sign --new-key FILE`")
    return key


def load_trusted_key(path: str | os.PathLike[str]) -> TrustedKey:
    """The public key of ``path`` (``FILE.pub`` of ``new_signing_key``); one-line ``KeyFileError`` otherwise.

    A private key given by mistake is refused: the deployment never needs it.
    """
    ed25519, serialization = _crypto()
    path = Path(path)
    data = _read_key_file(path, "trusted public key")
    if b"PRIVATE KEY" in data:
        raise KeyFileError(f"{path}: is a private signing key; give --trusted-key the public one ({path.name}.pub) "
                           "and keep the private key off this machine")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise KeyFileError(f"{path}: not a PEM public key; use the .pub file written by "
                           "`anonymixer sign --new-key FILE`") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 public key ({type(key).__name__})")
    return TrustedKey(key, path)


# --- what is signed --------------------------------------------------------------------------------------

def signed_file(target: Path) -> tuple[Path, str]:
    """The file whose bytes a signature of ``target`` covers, and its kind: a folder's manifest, or the file."""
    return (target / MANIFEST, "folder") if target.is_dir() else (target, "file")


def signature_path(target: Path) -> Path:
    """``DIR/manifest.json.sig`` for a folder, ``FILE.sig`` for a file."""
    signed, _ = signed_file(target)
    return signed.with_name(signed.name + SIGNATURE_SUFFIX)


def _statement(kind: str, sha256: str) -> bytes:
    return STATEMENT_PREFIX + kind.encode("ascii") + b"\0" + sha256.encode("ascii")


def sign(target: str | os.PathLike[str], key: "Ed25519PrivateKey") -> Path:
    """Sign a model folder, engine folder or file with ``key``; write and return its signature file.

    A folder is checked first (its manifest digest and every listed file's sha256), so that what
    gets signed is what the runtime would accept.
    """
    target = Path(target)
    if not target.exists():
        raise SignatureError(f"{target}: no such folder or file to sign")
    signed, kind = signed_file(target)
    if kind == "folder":
        from .runtime.manifest import ExportManifest

        manifest = ExportManifest(target, check_signature=False)
        for name in manifest.data.get("files") or {}:
            manifest.verify_file(name)
    digest = sha256_file(signed)
    record = {"format": SIGNATURE_FORMAT, "version": SIGNATURE_VERSION, "algorithm": "ed25519", "kind": kind,
              "sha256": digest, "bytes": signed.stat().st_size, "signer": fingerprint(key.public_key()),
              "signature": base64.b64encode(key.sign(_statement(kind, digest))).decode("ascii")}
    path = signature_path(target)
    write_json(path, record)
    return path


def verify(target: Path, sha256: str, trusted: TrustedKey) -> None:
    """Refuse ``target`` (one line) unless its signature file signs ``sha256`` with ``trusted``'s key.

    ``sha256``: of the bytes the caller has read and is about to use (a folder's manifest, a file).
    """
    _, kind = signed_file(target)
    path = signature_path(target)
    under = f"refusing it under trusted key {trusted.fingerprint} ({trusted.path})"
    how = f"sign it with `anonymixer sign {target} --signing-key FILE`"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SignatureError(f"{target}: not signed (no {path.name}); {under}: {how}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureError(f"{path}: unreadable signature ({type(exc).__name__}); {under}: {how}") from None
    if (not isinstance(record, dict) or record.get("format") != SIGNATURE_FORMAT
            or record.get("version") != SIGNATURE_VERSION or record.get("algorithm") != "ed25519"):
        raise SignatureError(f"{path}: not an anonymixer signature (version {SIGNATURE_VERSION}); {under}: {how}")
    if record.get("signer") != trusted.fingerprint:
        raise SignatureError(f"{target}: signed by key {record.get('signer')}, not by the trusted key; {under}")
    if record.get("kind") != kind or record.get("sha256") != sha256:
        raise SignatureError(f"{target}: altered since it was signed ({signed_file(target)[0].name} differs from "
                             f"the signed one); {under}")
    try:
        signature = base64.b64decode(str(record.get("signature")), validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    from cryptography.exceptions import InvalidSignature

    try:
        trusted.public.verify(signature, _statement(kind, sha256))
    except (InvalidSignature, ValueError):
        raise SignatureError(f"{path}: the signature does not check with the trusted key (forged or damaged); "
                             f"{under}") from None


# --- the trusted key of this process ---------------------------------------------------------------------

_UNSET = object()
_configured: Any = _UNSET
_written_here: set[Path] = set()   # folders this command wrote itself (written_by_this_process)


def trust(path: str | os.PathLike[str] | None) -> TrustedKey | None:
    """Set this process's trusted key: ``path``, else ``$ANONYMIXER_TRUSTED_KEY``, else none.

    Called once per command by the CLI (``--trusted-key``); loads the key now, so that a bad key
    file is refused before any work, and forgets the folders an earlier command wrote. Returns it.
    """
    global _configured
    _written_here.clear()
    chosen = os.fspath(path) if path is not None else os.environ.get(TRUSTED_KEY_ENV) or None
    if chosen is not None and not str(chosen).strip():
        raise KeyFileError("--trusted-key is empty; give the .pub file written by `anonymixer sign --new-key FILE`")
    _configured = load_trusted_key(chosen) if chosen is not None else None
    return _configured


def forget() -> None:
    """Back to the state before any ``trust``: the key ``$ANONYMIXER_TRUSTED_KEY`` names is read on use."""
    global _configured
    _configured = _UNSET
    _written_here.clear()


def trusted_key() -> TrustedKey | None:
    """The trusted key set by ``trust``; before any call, the one ``$ANONYMIXER_TRUSTED_KEY`` names (or none)."""
    if _configured is _UNSET:
        return trust(None)
    return _configured


def written_by_this_process(folder: str | os.PathLike[str]) -> None:
    """Mark a folder this process has just written from checked inputs (``anonymixer bench``'s own
    export and engines, made from a model that passed ``check_signed``): it needs no signature."""
    _written_here.add(Path(folder).resolve())


def check_signed(target: str | os.PathLike[str], sha256: str | None = None) -> None:
    """Under a trusted key, refuse ``target`` (model folder, engine folder or file) unless signed by it.

    ``sha256``: of the signed bytes as the caller read them (a folder's manifest); hashed here when
    not given. Nothing to do without a trusted key.
    """
    trusted = trusted_key()
    target = Path(target)
    if trusted is None or target.resolve() in _written_here:
        return
    if sha256 is None:
        signed, _ = signed_file(target)
        sha256 = sha256_file(signed)
    verify(target, sha256, trusted)
