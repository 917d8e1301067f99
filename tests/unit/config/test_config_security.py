"""`tls:`, `auth:`, the cluster's and the export's TLS keys: read, checked across sections, and
the files they name looked at by `config check`, every problem at the line of its key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from refinery_py.config.security_settings import TLS_DOORS
from refinery_py.config.settings import check_config_file, parse_settings, read_settings
from tests.tls_support import Authority


def problems(text: str) -> list[tuple[int, str]]:
    _, found = read_settings(textwrap.dedent(text), "c.yaml")
    return [(problem.line, problem.message) for problem in found]


def test_defaults_are_no_tls_and_open_doors() -> None:
    settings = parse_settings("", "c.yaml")
    assert not settings.tls.enabled
    assert not any(settings.tls.serves(door) for door in TLS_DOORS)
    assert not settings.auth.enabled
    assert settings.auth.header == "authorization"
    assert settings.cluster.tls_ca_file is None
    assert settings.cluster.tls_server_name is None


def test_every_security_key() -> None:
    settings = parse_settings(
        textwrap.dedent(
            """\
            tls:
              cert_file: tls/node.crt
              key_file: tls/node.key
              client_ca_file: tls/clients.crt
              doors: [otlp_grpc, otlp_http, api, peer]
              client_cert_doors: [otlp_grpc, peer]
            auth:
              header: X-API-Key
              tokens:
                - token: t0k3n
                  customer: acme
                - token_file: /run/secrets/globex
            cluster:
              peers: [10.0.0.5:4319]
              tls_ca_file: tls/peers.crt
              tls_server_name: refinery-peer
            export:
              otlp:
                endpoint: https://collector:4318
                protocol: http
                ca_file: backend-ca.crt
                cert_file: export.crt
                key_file: export.key
            """
        ),
        "/etc/refinery/c.yaml",
    )
    tls = settings.tls
    assert settings.file_path(tls.cert_file or "") == Path("/etc/refinery/tls/node.crt")
    assert [tls.wants_client_cert(door) for door in TLS_DOORS] == [True, False, False, True]
    assert all(tls.serves(door) for door in TLS_DOORS)
    assert settings.auth.header == "x-api-key"  # header names are compared in lower case
    first, second = settings.auth.tokens
    assert (first.token, first.customer, first.line) == ("t0k3n", "acme", 10)
    assert (second.token_file, second.customer) == ("/run/secrets/globex", None)
    assert settings.cluster.tls_server_name == "refinery-peer"
    otlp = settings.export.otlp
    assert otlp is not None
    assert (otlp.ca_file, otlp.cert_file, otlp.key_file) == (
        "backend-ca.crt",
        "export.crt",
        "export.key",
    )


def test_doors_left_out_stay_plain_and_client_certs_default_to_every_tls_door() -> None:
    settings = parse_settings(
        "tls: {cert_file: a.crt, key_file: a.key, client_ca_file: ca.crt, doors: [otlp_grpc]}\n",
        "c.yaml",
    )
    assert [settings.tls.serves(door) for door in TLS_DOORS] == [True, False, False, False]
    assert [settings.tls.wants_client_cert(door) for door in TLS_DOORS] == [
        True,
        False,
        False,
        False,
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("tls:\n  cert_file: a.crt\n", 2, "tls.cert_file needs key_file too"),
        ("tls:\n  key_file: a.key\n", 2, "tls.key_file needs cert_file too"),
        (
            "tls:\n  client_ca_file: ca.crt\n",
            2,
            "tls.client_ca_file needs tls.cert_file",
        ),
        (
            "tls:\n  cert_file: a.crt\n  key_file: a.key\n  doors: [otlp_grpc, grpc]\n",
            4,
            "tls.doors: 'grpc' is not one of otlp_grpc, otlp_http, api, peer",
        ),
        (
            "tls:\n  cert_file: a.crt\n  key_file: a.key\n  doors: [api, api]\n",
            4,
            "tls.doors lists a door twice",
        ),
        (
            "tls:\n  cert_file: a.crt\n  key_file: a.key\n  doors: []\n",
            4,
            "tls.doors is empty: leave cert_file out instead to turn TLS off",
        ),
        (
            "tls:\n  cert_file: a.crt\n  key_file: a.key\n  client_cert_doors: [api]\n",
            4,
            "tls.client_cert_doors needs client_ca_file, the CA that signs the client certificates",
        ),
        (
            "tls:\n  cert_file: a.crt\n  key_file: a.key\n  client_ca_file: ca.crt\n"
            "  doors: [otlp_http]\n  client_cert_doors: [api]\n",
            6,
            "tls.client_cert_doors: 'api' is not one of otlp_http",
        ),
        ("auth:\n  tokens:\n    - customer: acme\n", 3, "give exactly one of token and token_file"),
        (
            "auth:\n  tokens:\n    - token: abc\n      token_file: t\n",
            3,
            "auth.tokens[0]: give exactly one of token and token_file",
        ),
        (
            "auth:\n  tokens:\n    - token: a b\n",
            3,
            "auth.tokens[0].token must be visible ASCII characters without spaces",
        ),
        ("auth:\n  tokens:\n    - {token: abc, customer: ''}\n", 3, "auth.tokens[0].customer is "),
        (
            "auth:\n  tokens:\n    - token: abc\n    - token: abc\n",
            4,
            "auth.tokens lists a token twice",
        ),
        ("auth:\n  header: 'x api key'\n", 2, "auth.header: 'x api key' is not a header name"),
        (
            "customer_fields: []\nauth:\n  tokens:\n    - token: abc\n      customer: acme\n",
            5,
            "auth.tokens[0].customer needs customer_fields",
        ),
        (
            "cluster:\n  peers: [a:1]\n  tls_ca_file: ca.crt\n",
            3,
            "cluster.tls_ca_file is set but the peer door does not use TLS",
        ),
        (
            "tls: {cert_file: a.crt, key_file: a.key, doors: [api]}\n"
            "cluster:\n  tls_server_name: peers\n",
            3,
            "cluster.tls_server_name is set but the peer door does not use TLS",
        ),
        (
            "export:\n  otlp:\n    endpoint: backend:4317\n    ca_file: ca.crt\n",
            4,
            "export.otlp.ca_file needs TLS, but this export sends in plain text",
        ),
        (
            "export:\n  otlp:\n    endpoint: http://backend:4318\n    protocol: http\n"
            "    cert_file: c.crt\n    key_file: c.key\n",
            5,
            "export.otlp.cert_file needs TLS",
        ),
        (
            "export:\n  otlp:\n    endpoint: https://backend\n    cert_file: c.crt\n",
            4,
            "export.otlp.cert_file needs key_file too",
        ),
        (
            "export:\n  otlp:\n    endpoint: backend:4318\n    protocol: http\n"
            "    insecure: false\n",
            5,
            "export.otlp.insecure: OTLP/HTTP takes TLS from the URL; write the endpoint as "
            "https://host:port instead",
        ),
    ],
)
def test_each_kind_of_mistake(text: str, line: int, message: str) -> None:
    found = problems(text)
    assert any(at == line and message in said for at, said in found), found


def test_tls_files_for_grpc_over_tls_to_host_port_are_fine() -> None:
    text = """\
    export:
      otlp:
        endpoint: backend:4317
        insecure: false
        ca_file: ca.crt
        cert_file: c.crt
        key_file: c.key
    """
    assert problems(text) == []


# ---- config check reads the files -----------------------------------------------------------


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


def write_config(directory: Path, text: str) -> Path:
    path = directory / "refinery.yaml"
    path.write_text("rules_file: null\n" + textwrap.dedent(text))
    return path


def checked(path: Path) -> list[str]:
    return [str(problem) for problem in check_config_file(path)]


def test_good_files_pass(tmp_path: Path, authority: Authority) -> None:
    authority.issue("node")
    authority.issue("client")
    (tmp_path / "token").write_text("  s3cret-token\n")
    path = write_config(
        tmp_path,
        """\
        tls:
          cert_file: node.crt
          key_file: node.key
          client_ca_file: ca.crt
        auth:
          tokens:
            - token_file: token
              customer: acme
        export:
          otlp:
            endpoint: https://backend:4318
            protocol: http
            ca_file: ca.crt
            cert_file: client.crt
            key_file: client.key
        """,
    )
    assert checked(path) == []


def test_each_bad_file_is_reported_at_its_key(tmp_path: Path, authority: Authority) -> None:
    node = authority.issue("node")
    other = authority.issue("other")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    (tmp_path / "empty-token").write_text("\n\n")
    (tmp_path / "two-tokens").write_text("one two\n")
    (tmp_path / "a-directory").mkdir()
    key = serialization.load_pem_private_key(node.key.read_bytes(), password=None)
    (tmp_path / "encrypted.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    path = write_config(
        tmp_path,
        f"""\
        tls:
          cert_file: node.crt
          key_file: {other.key.name}
          client_ca_file: junk.pem
        cluster:
          peers: [127.0.0.1:4319]
          tls_ca_file: missing-ca.crt
        auth:
          tokens:
            - token_file: empty-token
            - token_file: two-tokens
            - token_file: no-such-token
            - token_file: a-directory
        export:
          otlp:
            endpoint: https://backend
            ca_file: {node.key.name}
            cert_file: node.crt
            key_file: encrypted.key
        """,
    )
    where = str(path)
    assert checked(path) == [
        f"{where}:3: tls.cert_file and key_file: the key {tmp_path / 'other.key'} does not "
        f"belong to the certificate {tmp_path / 'node.crt'}",
        f"{where}:5: tls.client_ca_file: the CA file {tmp_path / 'junk.pem'} holds no PEM block "
        "(-----BEGIN ...)",
        f"{where}:8: cluster.tls_ca_file: the CA file {tmp_path / 'missing-ca.crt'} does not exist",
        f"{where}:11: auth.tokens[0].token_file: the token file {tmp_path / 'empty-token'} is "
        "empty",
        f"{where}:12: auth.tokens[1].token_file: the token file {tmp_path / 'two-tokens'} must "
        "hold one token: ASCII, without spaces",
        f"{where}:13: auth.tokens[2].token_file: the token file {tmp_path / 'no-such-token'} "
        "does not exist",
        f"{where}:14: auth.tokens[3].token_file: the token file {tmp_path / 'a-directory'} "
        "cannot be read: Is a directory",
        f"{where}:18: export.otlp.ca_file: the CA file {tmp_path / 'node.key'} holds no "
        f"certificate (-----BEGIN CERTIFICATE-----)",
        f"{where}:19: export.otlp.cert_file and key_file: the key file "
        f"{tmp_path / 'encrypted.key'} is encrypted; give the key unencrypted (file mode 0600)",
    ]


def test_a_serve_does_not_read_the_files_but_check_does(tmp_path: Path) -> None:
    # `serve` loads the files itself at start-up (and fails there with the same words);
    # reading settings never touches them.
    path = write_config(tmp_path, "tls: {cert_file: gone.crt, key_file: gone.key}\n")
    settings = parse_settings(path.read_text(), str(path))
    assert settings.tls.enabled
    assert any("gone.crt does not exist" in problem for problem in checked(path))
