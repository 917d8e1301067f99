"""Credential files watched for changes: token files rotate tokens, client certificates follow
their files, bad files leave what works in place, and the watcher polls and answers SIGHUP's
`check_now`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from refinery_py.config.secret_files import PemProblem
from refinery_py.receive.ingest_auth import IngestAuth, Sender
from refinery_py.security.tls import ClientCertificate, ServerCertificate
from refinery_py.security.tokens import IngestTokens, TokenSource
from refinery_py.security.watch import CredentialWatcher
from refinery_py.telemetry import Metrics
from tests.tls_support import Authority


def write(path: Path, text: str) -> None:
    """Replace a file by rename, as secret managers do."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(text)
    os.replace(temporary, path)


def accepts(auth: IngestAuth, token: str) -> Sender | None:
    found = auth.identify(f"Bearer {token}")
    return found if isinstance(found, Sender) else None


def test_token_files_rotate_tokens(tmp_path: Path) -> None:
    acme = tmp_path / "acme"
    write(acme, "first\n")
    auth = IngestAuth("authorization", {})
    outcomes: list[bool] = []
    tokens = IngestTokens(
        [
            TokenSource(None, acme, "acme", "auth.tokens[0]"),
            TokenSource("literal", None, "", "auth.tokens[1]"),
        ],
        auth.replace,
        on_reload=outcomes.append,
    )
    assert accepts(auth, "first") == Sender("acme")
    assert accepts(auth, "literal") == Sender("")
    assert tokens.refresh() is None

    write(acme, "second")
    assert tokens.refresh() is True
    assert accepts(auth, "second") == Sender("acme")
    assert accepts(auth, "first") is None
    assert accepts(auth, "literal") == Sender("")
    assert outcomes == [True]


def test_a_bad_token_file_keeps_the_tokens_in_use(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    acme = tmp_path / "acme"
    write(acme, "first")
    auth = IngestAuth("authorization", {})
    outcomes: list[bool] = []
    tokens = IngestTokens(
        [TokenSource(None, acme, "acme", "auth.tokens[0]")], auth.replace, on_reload=outcomes.append
    )
    write(acme, "   \n")
    assert tokens.refresh() is False
    assert accepts(auth, "first") == Sender("acme")
    assert "auth.tokens[0].token_file: the token file" in caplog.text
    acme.unlink()
    assert tokens.refresh() is False
    assert accepts(auth, "first") == Sender("acme")
    write(acme, "third")
    assert tokens.refresh() is True
    assert accepts(auth, "third") == Sender("acme")
    assert outcomes == [False, False, True]


def test_one_token_for_two_customers_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    write(shared, "same")
    sources = [
        TokenSource("same", None, "acme", "auth.tokens[0]"),
        TokenSource(None, shared, "globex", "auth.tokens[1]"),
    ]
    with pytest.raises(ValueError, match=r"auth.tokens\[1\] holds the same token as"):
        IngestTokens(sources, IngestAuth("authorization", {}).replace)


def test_missing_files_stop_a_start(tmp_path: Path, authority: Authority) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        IngestTokens(
            [TokenSource(None, tmp_path / "nope", "", "auth.tokens[0]")],
            IngestAuth("authorization", {}).replace,
        )
    pair = authority.issue("node")
    with pytest.raises(PemProblem, match=r"tls.client_ca_file: the CA file .* does not exist"):
        ServerCertificate(pair.cert, pair.key, tmp_path / "no-ca.crt")
    with pytest.raises(PemProblem, match=r"export.otlp.cert_file and key_file: the key file"):
        ClientCertificate(None, pair.cert, tmp_path / "no.key", name="export.otlp")


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


def test_client_certificates_follow_their_files(tmp_path: Path, authority: Authority) -> None:
    pair = authority.issue("client")
    metrics = Metrics()
    client = ClientCertificate(
        authority.cert,
        pair.cert,
        pair.key,
        name="export.otlp",
        on_reload=metrics.credentials.outcome("export_tls"),
    )
    context, credentials = client.context(), client.channel_credentials()
    assert client.refresh() is None
    assert client.context() is context
    assert client.channel_credentials() is credentials

    authority.issue("renewed").rotate_into(pair)
    assert client.refresh() is True
    assert client.context() is not context
    assert client.channel_credentials() is not credentials

    pair.key.write_text("garbage")
    assert client.refresh() is False
    assert client.context() is not context  # the renewed one stays in use
    registry = metrics.registry
    labels = {"kind": "export_tls"}
    assert (
        registry.get_sample_value(
            "refinery_credential_reloads_total", {**labels, "outcome": "applied"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "refinery_credential_reloads_total", {**labels, "outcome": "failed"}
        )
        == 1
    )


def test_a_ca_file_that_loses_its_certificate_is_refused(
    tmp_path: Path, authority: Authority
) -> None:
    client = ClientCertificate(authority.cert, name="export.otlp")
    authority.cert.write_text("")
    assert client.refresh() is False


async def test_the_watcher_polls_and_checks_on_demand(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    write(token_file, "one")
    auth = IngestAuth("authorization", {})
    tokens = IngestTokens([TokenSource(None, token_file, "", "auth.tokens[0]")], auth.replace)
    on_demand = CredentialWatcher(interval=3600)
    on_demand.add(tokens)
    on_demand.start()
    write(token_file, "two")
    on_demand.check_now()  # SIGHUP
    assert accepts(auth, "two") is not None
    await on_demand.stop()

    polling = CredentialWatcher(interval=0.01)
    polling.add(tokens)
    polling.start()
    write(token_file, "three")
    for _ in range(500):
        if accepts(auth, "three") is not None:
            break
        await asyncio.sleep(0.01)
    await polling.stop()
    assert accepts(auth, "three") is not None
