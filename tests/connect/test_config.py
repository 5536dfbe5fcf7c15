"""The connect target's settings: the keys, the API key and secrets, and TLS to a server whose
certificate is self-signed (the fake Connect, served over HTTPS)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.connect.fake_connect import FakeConnect
from tfdeploy_connect import ConnectConfig, ConnectTarget

from tfdeploy.deployment.config import build_target_config
from tfdeploy.deployment.registry import get_plugins
from tfdeploy.plugin import Bundle, ConfigError, TargetError, redact

KEY = "connect-key-" + "7" * 24


def config(**settings: Any) -> ConnectConfig:
    """Settings validated as deploy.yaml's are (secrets registered, errors as ConfigError)."""
    built = build_target_config(
        ConnectConfig, {"server": "https://connect.example.com", **settings}
    )
    assert isinstance(built, ConnectConfig)
    return built


def test_the_settings_are_the_ones_the_issue_names() -> None:
    fields = {f["name"]: f for f in ConnectConfig.describe_fields()}

    assert {
        "server", "api_key", "mode", "name", "title", "python", "environment", "ca_bundle",
        "insecure", "access_type",
    } <= set(fields)  # fmt: skip
    assert fields["api_key"]["secret"] and fields["environment"]["secret"]
    assert fields["mode"]["default"] == "app"
    assert all(f["help"] for f in fields.values())
    plugins = get_plugins()
    assert plugins.target_type("connect").target_class is ConnectTarget


def test_the_api_key_comes_from_connect_api_key_by_default_and_is_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONNECT_API_KEY", KEY)

    settings = config()

    assert settings.api_key.get_secret_value() == KEY
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    assert redact(f"key {KEY}") == "key ***"


def test_no_api_key_at_all_says_where_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONNECT_API_KEY", raising=False)

    with pytest.raises(ConfigError) as missing:
        config()

    assert "no API key" in missing.value.message
    assert "API Keys > New API Key" in missing.value.message


def test_environment_values_are_secret_and_those_with_secret_names_are_masked_everywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = "tok-" + "5" * 30
    settings = config(
        api_key=KEY,
        environment={"DB_PASSWORD": token, "GREETING": "hello", "WORKERS": 2, "DEBUG": True},
    )

    values = {k: v.get_secret_value() for k, v in settings.environment.items()}
    assert values == {"DB_PASSWORD": token, "GREETING": "hello", "WORKERS": "2", "DEBUG": "true"}
    assert token not in repr(settings)
    assert redact(token) == "***"
    assert redact("hello") == "hello"  # a plain value stays readable in messages


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"server": "connect.example.com"}, "must be an http:// or https:// URL"),
        ({"mode": "shiny"}, "mode"),
        ({"name": "a/b"}, "is not a Connect content name"),
        ({"python": "three"}, "is not a version specifier"),
        ({"ca_bundle": "ca.pem", "insecure": True}, "give ca_bundle or insecure, not both"),
        ({"mode": "tensorflow", "python": ">=3.10"}, "python and environment apply to mode app"),
        ({"environment": {"1BAD": "x"}}, "is not an environment variable name"),
        ({"access_type": "everyone"}, "access_type"),
        ({"wait_timeout": 0}, "wait_timeout"),
    ],
)
def test_wrong_settings_are_refused_with_a_reason(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(api_key=KEY, **settings)


def test_the_server_url_may_end_with_a_slash_or_the_api_path() -> None:
    assert config(api_key=KEY, server="https://c.example.com/rsc/__api__").server == (
        "https://c.example.com/rsc"
    )
    assert config(api_key=KEY, server="http://c.example.com/").server == "http://c.example.com"


# --- TLS to a server with a self-signed certificate --------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-connect")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture(scope="module")
def https_connect(
    certificate: tuple[Path, Path], connect_api_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FakeConnect]:
    """A fake Connect answering over HTTPS with the self-signed certificate."""
    fake = FakeConnect(connect_api_key, workdir=tmp_path_factory.mktemp("https-connect"))
    with fake:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*certificate)
        httpd = fake._server._httpd  # type: ignore[union-attr]
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        fake.url = fake.url.replace("http://", "https://")
        yield fake


def https_target(fake: FakeConnect, key: str, model_name: str, **settings: Any) -> ConnectTarget:
    settings = {"server": fake.url, "api_key": key, "mode": "tensorflow", **settings}
    return ConnectTarget(ConnectConfig(**settings), name="tls", model_name=model_name)


def test_a_self_signed_server_is_refused_unless_told_how_to_trust_it(
    https_connect: FakeConnect, connect_api_key: str, model_name: str
) -> None:
    with pytest.raises(TargetError) as refused:
        https_target(https_connect, connect_api_key, model_name).status()

    assert "its TLS certificate was not accepted" in refused.value.message
    assert "ca_bundle" in (refused.value.hint or "") and not refused.value.retryable


@pytest.mark.parametrize("trust", ["ca_bundle", "insecure"])
def test_ca_bundle_or_insecure_reach_a_self_signed_server_for_the_api_and_predictions(
    https_connect: FakeConnect,
    certificate: tuple[Path, Path],
    connect_api_key: str,
    digits_bundle: Bundle,
    digits_instances: list[Any],
    trust: str,
) -> None:
    settings: dict[str, Any] = (
        {"ca_bundle": str(certificate[0])} if trust == "ca_bundle" else {"insecure": True}
    )
    target = https_target(https_connect, connect_api_key, f"tls-{trust}", **settings)

    result = target.deploy(digits_bundle)
    answer = target.predict({"instances": digits_instances})

    assert result.status.url is not None and result.status.url.startswith("https://127.0.0.1:")
    assert len(answer["predictions"]) == len(digits_instances)
    target.undeploy()


def test_a_missing_ca_bundle_file_is_a_config_error(connect_api_key: str, tmp_path: Path) -> None:
    target = ConnectTarget(
        ConnectConfig(
            server="https://127.0.0.1:1", api_key=connect_api_key, ca_bundle=str(tmp_path / "x.pem")
        ),
        name="tls",
        model_name="digits",
    )
    with pytest.raises(ConfigError, match="ca_bundle: The certificate file .* could not be read"):
        target.status()
