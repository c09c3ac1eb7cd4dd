"""Ed25519 deploy keys and bundle signatures: who may put a model on a device.

The manifest already holds every file's sha256, so one signature over the exact bytes of
``manifest.json`` covers the whole bundle (probes included, through ``probes/probes.json``).
``manifest.sig`` is a small JSON object::

    {"algorithm": "ed25519", "key": "<fingerprint of the signing key>", "signature": "<base64>"}

``signature`` is the standard base64 of the 64-byte Ed25519 signature over manifest.json's bytes.
``key`` only chooses which error a device reports (bad signature vs untrusted key); acceptance
always needs a signature that verifies under one of the device's trusted keys.

Key files with loose permissions are refused: a private key others can read is no longer
private, and a public key others can write lets them choose what the device trusts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .bundle import MANIFEST, SIGNATURE, read_manifest, sha256_file
from .bundle import verify_bundle as verify_hashes
from .errors import BundleError, EdgesightError, UsageError

PRIVATE_KEY = "deploy.key"
PUBLIC_KEY = "deploy.pub"
ALGORITHM = "ed25519"
PROBES_JSON = "probes/probes.json"  # kept here too so signing need not import the self-test (cv2)


class KeyFileError(UsageError):
    """A key file that is missing, malformed or has permissions that make it untrustworthy (exit 2)."""


def _crypto() -> Any:
    """The ``cryptography`` Ed25519 module, imported when first needed (the [device] extra has it)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519


def _serialization() -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization


def generate_keys(directory: str | Path) -> tuple[Path, Path]:
    """Write ``DIR/deploy.key`` (PEM PKCS8, mode 0600) and ``DIR/deploy.pub`` (PEM); never overwrite.

    The private key file is created with ``O_EXCL`` and mode 0600 so it is never readable by
    others, not even between creation and a later chmod.
    """
    directory = Path(directory)
    key_path, pub_path = directory / PRIVATE_KEY, directory / PUBLIC_KEY
    for path in (key_path, pub_path):
        if path.exists():
            raise EdgesightError(f"{path}: already exists; refusing to overwrite a deploy key (move it away first)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgesightError(f"{directory}: cannot create ({exc.strerror or exc})") from None
    ed25519, serialization = _crypto(), _serialization()
    private = ed25519.Ed25519PrivateKey.generate()
    key_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(key_path, key_pem, 0o600)
    try:
        _write_new(pub_path, pub_pem, 0o644)
    except BaseException:
        key_path.unlink(missing_ok=True)  # no half pair left behind
        raise
    return key_path, pub_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise EdgesightError(f"{path}: already exists; refusing to overwrite a deploy key") from None
    except OSError as exc:
        raise EdgesightError(f"{path}: cannot create ({exc.strerror or exc})") from None
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away; never adds any beyond ``mode``
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _stat_key(path: Path, kind: str) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such {kind} key file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read {kind} key ({exc.strerror or exc})") from None


def load_private_key(path: str | Path) -> Any:
    """Load an Ed25519 private key (PEM PKCS8), refusing a file group or others can access."""
    path = Path(path)
    info = _stat_key(path, "private")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"{path}: private key is accessible by group or others (mode {mode:04o}); fix it with: chmod 600 {path}"
        )
    serialization = _serialization()
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, _crypto().Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key (make one with: edgesight keys generate DIR)")
    return key


def load_public_key(path: str | Path) -> Any:
    """One trusted public key (PEM), refusing a file others can write or that another user owns."""
    path = Path(path)
    info = _stat_key(path, "public")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        raise KeyFileError(
            f"{path}: public key is writable by group or others (mode {mode:04o}); fix it with: chmod 644 {path}"
        )
    if info.st_uid not in (0, os.getuid()):
        raise KeyFileError(
            f"{path}: public key is owned by uid {info.st_uid}, neither root nor this user; "
            f"fix it with: chown root {path}"
        )
    serialization = _serialization()
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, _crypto().Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 public key (make one with: edgesight keys generate DIR)")
    return key


def load_public_keys(paths: Sequence[str | Path]) -> list[Any]:
    """Every trusted public key, in order; any bad file refuses the whole list (no silent skips)."""
    if not paths:
        raise KeyFileError("no trusted public keys given")
    return [load_public_key(path) for path in paths]


def key_fingerprint(key: Any) -> str:
    """``ed25519:`` + the first 16 bytes (hex) of sha256 of the raw 32-byte public key.

    Takes a public key, a private key (its public half) or the path of a PEM public key.
    """
    if isinstance(key, (str, Path)):
        key = load_public_key(key)
    if isinstance(key, _crypto().Ed25519PrivateKey):
        key = key.public_key()
    serialization = _serialization()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"{ALGORITHM}:{hashlib.sha256(raw).hexdigest()[:32]}"


def sign_bundle(bundle_dir: str | Path, key_path: str | Path) -> Path:
    """Write ``manifest.sig`` over the exact bytes of manifest.json; return its path.

    The bundle's hashes are checked first, so a key never vouches for a bundle that is already
    broken. Written atomically (temporary file, then rename).
    """
    bundle_dir = Path(bundle_dir)
    private = load_private_key(key_path)
    manifest_bytes = _manifest_bytes(bundle_dir)
    verify_hashes(bundle_dir)
    _verify_probe_files(bundle_dir)
    signature = private.sign(manifest_bytes)
    body = {
        "algorithm": ALGORITHM,
        "key": key_fingerprint(private),
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    target = bundle_dir / SIGNATURE
    tmp = bundle_dir / (SIGNATURE + ".tmp")
    tmp.write_text(json.dumps(body) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def _manifest_bytes(bundle_dir: Path) -> bytes:
    path = bundle_dir / MANIFEST
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{path}: missing; {bundle_dir} is not a bundle") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _read_signature(bundle_dir: Path) -> tuple[str, bytes]:
    path = bundle_dir / SIGNATURE
    if not path.exists():
        raise BundleError(f"{path}: bundle is unsigned; this device only takes bundles signed by a trusted key")
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(body, dict) or body.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm is not {ALGORITHM}")
        return str(body.get("key", "")), base64.b64decode(body["signature"], validate=True)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, binascii.Error) as exc:
        raise BundleError(f"{path}: not a valid signature file ({exc})") from None


def verify_bundle(bundle_dir: str | Path, trusted_keys: Sequence[str | Path]) -> str:
    """Check the signature against ``trusted_keys``, then every file's hash; return the signer's fingerprint.

    Raises:
        KeyFileError: a trusted key file is missing, malformed or has loose permissions.
        BundleError: unsigned, bad signature, signed by an untrusted key, or a file (named)
            missing or changed since signing.
    """
    bundle_dir = Path(bundle_dir)
    keys = load_public_keys(trusted_keys)
    manifest_bytes = _manifest_bytes(bundle_dir)
    claimed, signature = _read_signature(bundle_dir)
    by_fingerprint = {key_fingerprint(key): key for key in keys}
    signer = None
    if claimed in by_fingerprint:
        if _verifies(by_fingerprint[claimed], signature, manifest_bytes):
            signer = claimed
        else:
            raise BundleError(
                f"{bundle_dir / SIGNATURE}: bad signature; {MANIFEST} changed after signing or the signature is corrupt"
            )
    else:
        signer = next((fp for fp, key in by_fingerprint.items() if _verifies(key, signature, manifest_bytes)), None)
        if signer is None:
            raise BundleError(
                f"{bundle_dir / SIGNATURE}: signed by an untrusted key ({claimed or 'unknown'}); "
                f"trusted: {', '.join(by_fingerprint)}"
            )
    try:
        manifest = json.loads(manifest_bytes)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{bundle_dir / MANIFEST}: not valid JSON ({exc})") from None
    if read_manifest(bundle_dir) != manifest:  # the shape checks, and the file must still be what was signed
        raise BundleError(f"{bundle_dir / MANIFEST}: changed while it was being verified")
    verify_hashes(bundle_dir, manifest)
    _verify_probe_files(bundle_dir, manifest)
    return signer


def _verifies(key: Any, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def _verify_probe_files(bundle_dir: Path, manifest: dict[str, Any] | None = None) -> None:
    """Probe images are hashed in probes.json (itself hashed in the manifest): name any that changed."""
    manifest = manifest or read_manifest(bundle_dir)
    if PROBES_JSON not in manifest["files"]:
        return
    path = bundle_dir / PROBES_JSON
    try:
        probes = json.loads(path.read_text(encoding="utf-8"))["probes"]
        entries = [(str(p["file"]), str(p["sha256"])) for p in probes]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{path}: not a valid probes file ({exc})") from None
    for name, digest in entries:
        probe = path.parent / name
        if Path(name).name != name or not probe.is_file():
            raise BundleError(f"{probe}: listed in {PROBES_JSON} but missing")
        if sha256_file(probe) != digest:
            raise BundleError(f"{probe}: sha256 does not match {PROBES_JSON} (file changed or copied incompletely)")
