"""Public SSH keys: read them and compute the fingerprints clouds report for them."""
from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path

from elasticcluster import paths
from elasticcluster.exceptions import ConfigurationError


def read_public_key(path: str | Path) -> str:
    """The ``type base64 [comment]`` line of an OpenSSH public key file."""
    path = Path(path).expanduser()
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise ConfigurationError(
            f"SSH public key {path} does not exist; make a key pair with "
            f"`ssh-keygen -t ed25519 -f {str(path)[:-4] if str(path).endswith('.pub') else path}` "
            "or point user_key_public/user_key_private at an existing one") from None
    except OSError as err:
        raise ConfigurationError(f"cannot read SSH public key {path}: {err.strerror}") from None
    parts = text.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
        raise ConfigurationError(f"{path} is not an OpenSSH public key (expected 'ssh-ed25519 AAAA...' "
                                 "or 'ssh-rsa AAAA...')")
    return " ".join(parts[:3])


def _normal(fingerprint: str) -> str:
    text = fingerprint.strip()
    text = re.sub(r"^(MD5|SHA256|SHA1):", "", text, flags=re.I)
    return text.replace(":", "").rstrip("=").lower() if ":" in text or re.fullmatch(
        r"[0-9a-fA-F]+", text) else text.rstrip("=")


def fingerprints(public_key: str) -> set[str]:
    """Every fingerprint a cloud may report for ``public_key``, normalised.

    OpenSSH's MD5 and SHA256 of the key blob, and the MD5/SHA1/SHA256 of the
    DER-encoded key that EC2 computes for imported and created keys.
    """
    blob = base64.b64decode(public_key.split()[1])
    found = {
        hashlib.md5(blob).hexdigest(),
        base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("="),
    }
    try:
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_ssh_public_key(public_key.encode())
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        found |= {hashlib.new(name, der).hexdigest() for name in ("md5", "sha1", "sha256")}
    except (ImportError, ValueError, TypeError):
        pass
    return {_normal(f) for f in found}


def matches(public_key: str, fingerprint: str | None) -> bool | None:
    """True/False when ``fingerprint`` is (not) the key's; None when unknown."""
    if not fingerprint:
        return None
    return _normal(fingerprint) in fingerprints(public_key)


#: keys under this folder are elasticcluster's own: made on first use
MANAGED_KEYS = Path(paths.MANAGED_KEYS)


def ensure_key_pair(private: str | Path, public: str | Path) -> bool:
    """Make an ed25519 key pair at ``private``/``public`` if both are missing and the
    private key lives in ``~/.elasticcluster/keys``; True when it made one."""
    private, public = Path(private).expanduser(), Path(public).expanduser()
    managed = MANAGED_KEYS.expanduser().resolve()
    if private.exists() or public.exists() or managed not in private.resolve().parents:
        return False
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as stream:
        stream.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    public.write_bytes(line + b" elasticcluster\n")
    return True
