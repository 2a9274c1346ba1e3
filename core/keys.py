"""CURVE keypairs, key files and connection files.

A key file (``NAME.key``, mode 0600) is JSON with the name, public and secret key (Z85).
The public half (``NAME.pub``) is what a data owner registers with ``owner.users.add``.
A connection file is JSON like Jupyter's: node name, addresses and the node's public key.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import msgpack
import zmq
from zmq.utils import z85

from .errors import AuthenticationError, InvalidArgument


@dataclass(frozen=True)
class KeyPair:
    """A named CURVE keypair (Z85 text) for transport, plus an Ed25519 keypair (hex) with which
    an owner signs approvals.
    """

    name: str
    public: str
    secret: str | None = None
    sign_public: str | None = None
    sign_secret: str | None = None

    def sign(self, message: bytes) -> str:
        """An Ed25519 signature (hex) of ``message`` with this key's signing half."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        if not self.sign_secret:
            raise AuthenticationError(
                f"the key {self.name!r} has no signing key: make a new one with `syft-kernel keygen`"
            )
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(self.sign_secret)).sign(message).hex()


def verify_signature(sign_public: str, message: bytes, signature: str) -> bool:
    """True if ``signature`` (hex) is a valid Ed25519 signature of ``message`` by ``sign_public``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(sign_public)).verify(bytes.fromhex(signature), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def generate_keypair(name: str) -> KeyPair:
    """A fresh CURVE keypair and Ed25519 signing keypair."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public, secret = zmq.curve_keypair()
    signing = Ed25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    sign_secret = signing.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    sign_public = signing.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    return KeyPair(name, public.decode("ascii"), secret.decode("ascii"), sign_public.hex(), sign_secret.hex())


def write_keypair(pair: KeyPair, folder: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``NAME.key`` (secret, 0600) and ``NAME.pub`` (public) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = folder / f"{pair.name}.key", folder / f"{pair.name}.pub"
    secret = {
        "name": pair.name,
        "public_key": pair.public,
        "secret_key": pair.secret,
        "signing_key": pair.sign_public,
        "signing_secret": pair.sign_secret,
    }
    atomic_write(key_path, json.dumps(secret, indent=1).encode(), mode=0o600)
    public = {"name": pair.name, "public_key": pair.public, "signing_key": pair.sign_public}
    atomic_write(pub_path, json.dumps(public, indent=1).encode())
    return key_path, pub_path


def read_keypair(path: str | os.PathLike[str]) -> KeyPair:
    """Read a key file written by ``syft-kernel keygen`` (or a ``.pub`` file: no secret)."""
    try:
        data = json.loads(Path(path).read_text())
        pair = KeyPair(
            str(data.get("name", "")),
            data["public_key"],
            data.get("secret_key"),
            data.get("signing_key"),
            data.get("signing_secret"),
        )
    except FileNotFoundError:
        raise AuthenticationError(f"key file {path} not found: make one with `syft-kernel keygen NAME`") from None
    except (ValueError, KeyError, TypeError) as e:
        raise AuthenticationError(f"{path} is not a syft-kernel key file ({e})") from None
    check_public_key(pair.public)
    return pair


def check_public_key(key: str) -> str:
    """Return ``key`` if it is a Z85 CURVE public key (40 chars, 32 bytes), else raise."""
    try:
        if len(key) != 40 or len(z85.decode(key.encode("ascii"))) != 32:
            raise ValueError
    except (ValueError, TypeError, AttributeError, UnicodeError):
        raise InvalidArgument(
            "a public key is 40 characters of Z85 text (the public_key in NAME.pub) or the path of NAME.pub"
        ) from None
    return key


def public_keys_of(value: str | os.PathLike[str] | KeyPair) -> tuple[str, str | None]:
    """Accept a Z85 key, a KeyPair or a path to a ``.pub``/``.key`` file; return the Z85 CURVE
    key and the signing key (hex) if known.
    """
    if isinstance(value, KeyPair):
        return value.public, value.sign_public
    text = os.fspath(value)
    if not os.path.exists(text):
        return check_public_key(text), None
    pair = read_keypair(text)
    return pair.public, pair.sign_public


def write_connection_file(path: str | os.PathLike[str], info: dict[str, Any]) -> None:
    """Write a connection file atomically (readable by everyone: it holds no secret)."""
    atomic_write(path, json.dumps(info, indent=1).encode())


def read_connection_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a connection file."""
    try:
        info = json.loads(Path(path).read_text())
        check_public_key(info["node_public_key"])
        if not info.get("addresses"):
            raise KeyError("addresses")
    except FileNotFoundError:
        raise InvalidArgument(
            f"connection file {path} not found: the owner makes it with `syft-kernel node init`"
        ) from None
    except (ValueError, KeyError, TypeError, InvalidArgument) as e:
        raise InvalidArgument(f"{path} is not a syft-kernel connection file ({e})") from None
    return cast("dict[str, Any]", info)


def decision_message(node_name: str, request_id: str, content_hash: str, decision: str, nonce: str) -> bytes:
    """The exact bytes an owner signs to approve or deny a request (shared with the client)."""
    return bytes(msgpack.packb(["syft-kernel decision v1", node_name, request_id, content_hash, decision, nonce]))


def registration_message(registration: dict[str, Any]) -> bytes:
    """The exact bytes a node signs to join a gateway: every field of its registration, in order."""
    fields = ("gateway", "name", "addresses", "public_key", "signing_key", "timestamp", "nonce")
    return bytes(msgpack.packb(["syft-kernel registration v1", *(registration[f] for f in fields)]))
