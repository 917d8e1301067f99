"""Files holding secrets (PEM certificates and keys, ingest tokens), read with problems
phrased for people.

OpenSSL's own errors ("PEM lib") do not say which file is wrong or why, so the files are looked
at first: present, readable, holding the right kind of PEM block, the key not encrypted; only
then is OpenSSL asked whether the key belongs to the certificate. Both `config check` and the
node itself (at start-up and on every reload) use these, so they report a file the same way.
"""

from __future__ import annotations

import ssl
from pathlib import Path

_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
_PRIVATE_KEY = "PRIVATE KEY-----"
_ENCRYPTED = ("ENCRYPTED PRIVATE KEY", "Proc-Type: 4,ENCRYPTED")


class PemProblem(ValueError):
    """A certificate, key or CA file that cannot be used; the message says which and why."""


def read_pem(path: Path, what: str) -> bytes:
    """The file's bytes; PemProblem when it is missing, unreadable or not PEM text."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PemProblem(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise PemProblem(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise PemProblem(f"{what} {path} holds no PEM block (-----BEGIN ...)")
    return data


def check_certificate_pem(data: bytes, path: Path, what: str) -> None:
    if _CERTIFICATE.encode() not in data:
        raise PemProblem(f"{what} {path} holds no certificate ({_CERTIFICATE})")


def check_key_pem(data: bytes, path: Path, what: str) -> None:
    text = data.decode("ascii", "replace")
    if _PRIVATE_KEY not in text:
        raise PemProblem(f"{what} {path} holds no private key (-----BEGIN ... {_PRIVATE_KEY})")
    if any(marker in text for marker in _ENCRYPTED):
        raise PemProblem(f"{what} {path} is encrypted; give the key unencrypted (file mode 0600)")


def _no_password() -> str:
    raise PemProblem("the key asks for a password; give the key unencrypted")


def load_key_pair(context: ssl.SSLContext, cert: Path, key: Path, what: str) -> tuple[bytes, bytes]:
    """Load `cert` and `key` into `context`; their bytes (for gRPC, which reads PEM itself).

    `what` names the pair's keys in messages (`tls.cert_file and key_file`).
    """
    try:
        cert_pem = read_pem(cert, "the certificate file")
        check_certificate_pem(cert_pem, cert, "the certificate file")
        key_pem = read_pem(key, "the key file")
        check_key_pem(key_pem, key, "the key file")
    except PemProblem as exc:
        raise PemProblem(f"{what}: {exc}") from None
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise PemProblem(
                f"{what}: the key {key} does not belong to the certificate {cert}"
            ) from None
        raise PemProblem(f"{what} ({cert}, {key}) cannot be loaded: {exc}") from None
    except OSError as exc:  # the file went away between the reads
        raise PemProblem(f"{what} cannot be read: {exc.strerror or exc}") from None
    return cert_pem, key_pem


def load_ca(context: ssl.SSLContext, path: Path, what: str) -> bytes:
    """Trust the CA certificates in `path` in `context`; the file's bytes. `what` names the
    file's key in messages (`tls.client_ca_file`)."""
    try:
        data = read_pem(path, "the CA file")
        check_certificate_pem(data, path, "the CA file")
        context.load_verify_locations(cafile=str(path))
    except PemProblem as exc:
        raise PemProblem(f"{what}: {exc}") from None
    except ssl.SSLError as exc:
        raise PemProblem(f"{what}: the CA file {path} cannot be loaded: {exc}") from None
    except OSError as exc:
        reason = exc.strerror or exc
        raise PemProblem(f"{what}: the CA file {path} cannot be read: {reason}") from None
    return data


def check_key_pair_files(cert: Path, key: Path, what: str) -> None:
    """PemProblem unless the pair would load as a server's certificate."""
    load_key_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), cert, key, what)


def check_ca_file(path: Path, what: str) -> None:
    """PemProblem unless `path` holds CA certificates OpenSSL can load."""
    load_ca(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), path, what)


def read_token_file(path: Path) -> str:
    """The token a token file holds (surrounding whitespace dropped); ValueError when the file
    is missing, unreadable, empty or holds more than one word."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"the token file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"the token file {path} cannot be read: {reason or exc}") from None
    token = text.strip()
    if not token:
        raise ValueError(f"the token file {path} is empty")
    if any(character.isspace() for character in token) or not token.isascii():
        raise ValueError(f"the token file {path} must hold one token: ASCII, without spaces")
    if not token.isprintable():
        raise ValueError(f"the token file {path} holds control characters")
    return token
