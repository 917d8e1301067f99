"""Checks of the security settings that look across sections, and at the files they name.

`check_security` runs on every load (a serve refuses what it reports); `check_security_files`
only in `config check`, which reads every certificate, key, CA and token file the config names
and reports each problem at the line of its key. A node loads the same files at start-up and
fails with the same words.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from refinery_py.config.loader import Reader
from refinery_py.config.secret_files import (
    PemProblem,
    check_ca_file,
    check_key_pair_files,
    read_token_file,
)
from refinery_py.config.security_settings import key_line

if TYPE_CHECKING:
    from refinery_py.config.settings import Settings


def check_security(reader: Reader, settings: Settings, root: yaml.Node | None) -> None:
    """Token customers need a customer field; cluster TLS keys need a TLS peer door."""
    if not settings.customer_fields:
        for index, token in enumerate(settings.auth.tokens):
            if token.customer is not None:
                reader.error(
                    key_line(root, "auth", "tokens", index, "customer"),
                    f"auth.tokens[{index}].customer needs customer_fields: its first field is the "
                    "resource attribute the customer is written to",
                )
    cluster = settings.cluster
    if not settings.tls.serves("peer"):
        for key, value in (
            ("tls_ca_file", cluster.tls_ca_file),
            ("tls_server_name", cluster.tls_server_name),
        ):
            if value is not None:
                reader.error(
                    key_line(root, "cluster", key),
                    f"cluster.{key} is set but the peer door does not use TLS (set tls.cert_file "
                    "and keep peer in tls.doors)",
                )


def check_security_files(reader: Reader, settings: Settings, root: yaml.Node | None) -> None:
    """Every certificate, key, CA and token file the config names exists and can be used."""
    tls = settings.tls
    if tls.cert_file is not None and tls.key_file is not None:
        _pair(reader, settings, root, ("tls",), cert=tls.cert_file, key=tls.key_file)
    if tls.client_ca_file is not None:
        _ca(reader, settings, root, ("tls", "client_ca_file"), tls.client_ca_file)
    if settings.cluster.tls_ca_file is not None:
        _ca(reader, settings, root, ("cluster", "tls_ca_file"), settings.cluster.tls_ca_file)
    otlp = settings.export.otlp
    if otlp is not None:
        if otlp.ca_file is not None:
            _ca(reader, settings, root, ("export", "otlp", "ca_file"), otlp.ca_file)
        if otlp.cert_file is not None and otlp.key_file is not None:
            section = ("export", "otlp")
            _pair(reader, settings, root, section, cert=otlp.cert_file, key=otlp.key_file)
    for index, token in enumerate(settings.auth.tokens):
        if token.token_file is None:
            continue
        try:
            read_token_file(settings.file_path(token.token_file))
        except ValueError as exc:
            where = key_line(root, "auth", "tokens", index, "token_file")
            reader.error(where, f"auth.tokens[{index}].token_file: {exc}")


def _pair(
    reader: Reader,
    settings: Settings,
    root: yaml.Node | None,
    section: tuple[str, ...],
    *,
    cert: str,
    key: str,
) -> None:
    name = ".".join(section)
    try:
        check_key_pair_files(
            settings.file_path(cert), settings.file_path(key), f"{name}.cert_file and key_file"
        )
    except PemProblem as exc:
        reader.error(key_line(root, *section, "cert_file"), str(exc))


def _ca(
    reader: Reader, settings: Settings, root: yaml.Node | None, path: tuple[str, ...], file: str
) -> None:
    try:
        check_ca_file(settings.file_path(file), ".".join(path))
    except PemProblem as exc:
        reader.error(key_line(root, *path), str(exc))


def resolve(source: str, file: str) -> Path:
    """`file` as written in the config at `source`: a relative path is relative to its folder."""
    path = Path(file)
    if not path.is_absolute() and source:
        path = Path(source).parent / path
    return path
