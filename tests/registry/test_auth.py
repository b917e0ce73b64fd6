"""Authentication against real registries: htpasswd basic auth and bearer tokens, both over TLS.

The token set-up uses the token server of ``tests/support/registry.py``
(ES256 JWTs verified by distribution against the test CA). Credentials come
from flags, the environment, Docker's config.json (``auths``, identity
tokens) and credential helpers (a fake ``docker-credential-*`` script put on
PATH). Every error path is checked for leaks of the password.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from layerhound.cli import main
from layerhound.errors import RegistryError
from layerhound.registry.auth import Challenge, parse_challenges
from layerhound.registry.client import RegistryClient
from layerhound.registry.credentials import Credentials, CredentialStore, normalize_host
from layerhound.registry.settings import RegistrySettings, split_port
from layerhound.sources import open_images
from tests.registry.conftest import (
    PASSWORD,
    TOKEN_PUBLIC_REPO,
    USER,
    fast_options,
    scan_cli,
    verdicts,
)
from tests.support.registry import Pki, RegistryServer, TokenServer

DORMANT = "backdoored-dormant"
BASIC_SECRET = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@pytest.fixture
def trust_ca(pki: Pki, monkeypatch: pytest.MonkeyPatch, no_docker_config: Path) -> Path:
    """The CLI trusts the test CA the way a user would: SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_cert))
    return pki.ca_cert


@pytest.fixture
def tokens(token_server: TokenServer) -> Iterator[TokenServer]:
    token_server.reset()
    yield token_server


def write_config(directory: Path, config: dict[str, object]) -> Path:
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    return path


def fake_helper(directory: Path, monkeypatch: pytest.MonkeyPatch, name: str, host: str) -> Path:
    """``docker-credential-<name>`` answering for ``host`` only; it logs each host it is asked about."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = directory / f"{name}.log"
    script = bin_dir / f"docker-credential-{name}"
    answer = json.dumps({"ServerURL": host, "Username": USER, "Secret": PASSWORD})
    script.write_text(
        "#!/bin/sh\n"
        'read -r server\n'
        f'printf "%s %s\\n" "$1" "$server" >> "{log}"\n'
        f'if [ "$1" = get ] && [ "$server" = "{host}" ]; then\n'
        f"  printf '%s' '{answer}'\n"
        "else\n"
        '  echo "credentials not found in native keychain"; exit 1\n'
        "fi\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def refs(registry: RegistryServer) -> tuple[str, str]:
    return f"docker://{registry.host}/test/app:gzip", f"docker://{registry.host}/test/clean:latest"


def assert_good(report: dict[str, object]) -> None:
    images = report["images"]
    assert isinstance(images, list)
    assert [i["verdict"] for i in images] == [DORMANT, "clean"], [i["error"] for i in images]


# ---------------------------------------------------------------- basic auth


def test_basic_with_password_on_stdin(
    capsys: pytest.CaptureFixture[str], basic_registry: RegistryServer, trust_ca: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    status, report, stderr = scan_cli(capsys, "--username", USER, "--password-stdin", *refs(basic_registry))
    assert_good(report)
    assert status == 1
    assert PASSWORD not in stderr


def test_basic_with_environment(
    capsys: pytest.CaptureFixture[str], basic_registry: RegistryServer, trust_ca: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAYERHOUND_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("LAYERHOUND_REGISTRY_PASSWORD", PASSWORD)
    status, report, _ = scan_cli(capsys, *refs(basic_registry))
    assert status == 1
    assert_good(report)


def test_basic_with_config_auths(
    capsys: pytest.CaptureFixture[str], basic_registry: RegistryServer, trust_ca: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path, {"auths": {f"https://{basic_registry.host}": {"auth": BASIC_SECRET}}})
    status, report, _ = scan_cli(capsys, "--registry-config", str(config), *refs(basic_registry))
    assert status == 1
    assert_good(report)


def test_basic_with_docker_config_directory(
    capsys: pytest.CaptureFixture[str], basic_registry: RegistryServer, trust_ca: Path, no_docker_config: Path
) -> None:
    write_config(no_docker_config, {"auths": {basic_registry.host: {"auth": BASIC_SECRET}}})
    status, report, _ = scan_cli(capsys, *refs(basic_registry))
    assert status == 1
    assert_good(report)


@pytest.mark.parametrize("kind", ["credHelpers", "credsStore"])
def test_basic_with_credential_helper(
    capsys: pytest.CaptureFixture[str], basic_registry: RegistryServer, trust_ca: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, kind: str,
) -> None:
    log = fake_helper(tmp_path, monkeypatch, "fake", basic_registry.host)
    config: dict[str, object] = (
        {"credHelpers": {basic_registry.host: "fake"}} if kind == "credHelpers" else {"credsStore": "fake"}
    )
    path = write_config(tmp_path, config)
    status, report, stderr = scan_cli(capsys, "--registry-config", str(path), *refs(basic_registry))
    assert status == 1
    assert_good(report)
    # Asked once per command (credentials are looked up once per host), with the host on stdin.
    assert log.read_text().splitlines() == [f"get {basic_registry.host}"]
    assert PASSWORD not in stderr


def test_helper_is_not_run_for_public_images(
    capsys: pytest.CaptureFixture[str], anonymous_registry: RegistryServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, no_docker_config: Path,
) -> None:
    log = fake_helper(tmp_path, monkeypatch, "fake", anonymous_registry.host)
    path = write_config(tmp_path, {"credsStore": "fake"})
    ref = f"docker://{anonymous_registry.host}/test/clean:latest"
    status, report, _ = scan_cli(
        capsys, "--insecure-registry", anonymous_registry.host, "--registry-config", str(path), ref
    )
    assert verdicts(report) == [(ref, "linux/amd64", "clean")]
    assert status == 0
    assert not log.exists()


def test_missing_helper_for_the_host_is_an_error(
    capsys: pytest.CaptureFixture[str], basic_registry: RegistryServer, trust_ca: Path, tmp_path: Path
) -> None:
    path = write_config(tmp_path, {"credHelpers": {basic_registry.host: "nowhere-to-be-found"}})
    status, report, _ = scan_cli(capsys, "--registry-config", str(path), refs(basic_registry)[0])
    assert status == 2
    assert report["images"][0]["error"] == (
        f"credential helper docker-credential-nowhere-to-be-found (configured for {basic_registry.host}) "
        "is not installed"
    )


def test_basic_without_credentials(
    capsys: pytest.CaptureFixture[str], basic_registry: RegistryServer, trust_ca: Path
) -> None:
    status, report, _ = scan_cli(capsys, refs(basic_registry)[0])
    assert status == 2
    error = report["images"][0]["error"]
    assert error.startswith(f"unauthorized: {basic_registry.host} requires credentials; give --username")


def test_tls_is_verified_by_default(
    capsys: pytest.CaptureFixture[str], basic_registry: RegistryServer, no_docker_config: Path,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "none.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    monkeypatch.setenv("LAYERHOUND_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("LAYERHOUND_REGISTRY_PASSWORD", PASSWORD)
    status, report, stderr = scan_cli(capsys, refs(basic_registry)[0])
    assert status == 2
    error = report["images"][0]["error"]
    assert f"the TLS certificate of {basic_registry.host} could not be verified" in error
    assert PASSWORD not in json.dumps(report) + stderr


def test_api_ca_file_option(basic_registry: RegistryServer, pki: Pki) -> None:
    options = fast_options(ca_file=pki.ca_cert, username=USER, password=PASSWORD)
    with options:
        [image] = open_images(f"docker://{basic_registry.host}/test/clean:latest", registry=options)
        assert image.platform == "linux/amd64"
        options.client(basic_registry.host).ping()


# ---------------------------------------------------------------- bearer tokens


def test_token_flow_scan_and_reuse(
    capsys: pytest.CaptureFixture[str], token_registry: RegistryServer, tokens: TokenServer, trust_ca: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAYERHOUND_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("LAYERHOUND_REGISTRY_PASSWORD", PASSWORD)
    host = token_registry.host
    multi = f"docker://{host}/test/multi:latest"
    status, report, _ = scan_cli(capsys, *refs(token_registry), refs(token_registry)[0], multi)
    assert status == 1
    assert [i["verdict"] for i in report["images"]] == [DORMANT, "clean", DORMANT, DORMANT, "clean"]
    # One token per repository scope, reused for every manifest and blob of it.
    assert sorted(r.scopes for r in tokens.requests) == [
        ("repository:test/app:pull",), ("repository:test/clean:pull",), ("repository:test/multi:pull",),
    ]
    assert all(r.user == USER and r.service == tokens.service for r in tokens.requests)


def test_token_for_anonymous_pulls(
    capsys: pytest.CaptureFixture[str], token_registry: RegistryServer, tokens: TokenServer, trust_ca: Path
) -> None:
    public = f"docker://{token_registry.host}/{TOKEN_PUBLIC_REPO}:latest"
    private = refs(token_registry)[0]
    status, report, _ = scan_cli(capsys, public, private)
    assert status == 2
    assert [i["verdict"] for i in report["images"]] == [DORMANT, "error"]
    assert report["images"][1]["error"].startswith("unauthorized: ")
    assert "needs credentials (or does not exist)" in report["images"][1]["error"]
    assert all(r.user is None and not r.authorization for r in tokens.requests)


def test_token_expiry(token_registry: RegistryServer, tokens: TokenServer, pki: Pki) -> None:
    now = [1000.0]
    options = fast_options(ca_file=pki.ca_cert, username=USER, password=PASSWORD)
    client = RegistryClient(token_registry.host, options.settings, clock=lambda: now[0])
    with client:
        client.get_manifest("test/app", "gzip")
        client.get_manifest("test/app", "gzip")
        assert len(tokens.requests) == 1
        now[0] += tokens.expires_in * 0.85  # still inside the lifetime, less the early-renewal margin
        client.get_manifest("test/app", "gzip")
        assert len(tokens.requests) == 1
        now[0] += tokens.expires_in * 0.2
        client.get_manifest("test/app", "gzip")
        assert len(tokens.requests) == 2
        client.get_manifest("test/clean", "latest")  # another scope: another token
        assert len(tokens.requests) == 3


def test_identity_token_from_config(
    capsys: pytest.CaptureFixture[str], token_registry: RegistryServer, tokens: TokenServer, trust_ca: Path,
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path, {"auths": {token_registry.host: {"auth": "", "identitytoken": "refresh-token-of-alice"}}}
    )
    status, report, _ = scan_cli(capsys, "--registry-config", str(config), refs(token_registry)[0])
    assert status == 1
    assert [i["verdict"] for i in report["images"]] == [DORMANT]
    assert [(r.method, r.user) for r in tokens.requests] == [("POST", USER)]


def test_wrong_password_for_token_service(
    capsys: pytest.CaptureFixture[str], token_registry: RegistryServer, tokens: TokenServer, trust_ca: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong-" + PASSWORD))
    status, report, stderr = scan_cli(capsys, "--username", USER, "--password-stdin", refs(token_registry)[0])
    assert status == 2
    error = report["images"][0]["error"]
    assert error == (
        f"unauthorized: the token service of {token_registry.host} refused the credentials from "
        "the command line or environment"
    )
    assert PASSWORD not in json.dumps(report) + stderr


# ---------------------------------------------------------------- leaks


def test_credentials_never_appear_in_errors_reports_or_logs(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, basic_registry: RegistryServer,
    token_registry: RegistryServer, anonymous_registry: RegistryServer, trust_ca: Path,
    monkeypatch: pytest.MonkeyPatch, pki: Pki,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + PASSWORD
    # The CLI, every failure kind: refused basic auth, refused token, missing tag, no route to the host.
    monkeypatch.setenv("LAYERHOUND_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("LAYERHOUND_REGISTRY_PASSWORD", wrong)
    outputs: list[str] = []
    for args in (
        [refs(basic_registry)[0]],
        [refs(token_registry)[0]],
        ["--insecure-registry", anonymous_registry.host, f"docker://{anonymous_registry.host}/test/app:nope"],
    ):
        status, report, stderr = scan_cli(capsys, *args)
        assert status == 2
        assert all(i["error"] for i in report["images"])
        outputs += [json.dumps(report), stderr]
    # The API: the exceptions themselves, with the right password too.
    for password in (wrong, PASSWORD):
        options = fast_options(ca_file=pki.ca_cert, username=USER, password=password)
        with options:
            for host in (basic_registry.host, token_registry.host, "127.0.0.1:1"):
                with pytest.raises(RegistryError) as caught:
                    options.client(host).get_manifest("test/app", "nope")
                outputs += [str(caught.value), repr(caught.value), str(caught.value.url)]
        outputs.append(repr(options))
    outputs.append(caplog.text)
    text = "\n".join(outputs)
    for secret in (PASSWORD, BASIC_SECRET, base64.b64encode(f"{USER}:{wrong}".encode()).decode()):
        assert secret not in text
    assert "unauthorized" in text  # the errors were really there


def test_credential_objects_hide_secrets(tmp_path: Path) -> None:
    creds = Credentials(USER, PASSWORD, source="test")
    assert PASSWORD not in repr(creds)
    assert PASSWORD not in repr(RegistrySettings(username=USER, password=PASSWORD))
    store = CredentialStore(config_path=tmp_path / "config.json")
    (tmp_path / "config.json").write_text('{"auths": {"r.example": {"auth": "not base64!"}}}')
    with pytest.raises(RegistryError, match="is not base64"):
        store.lookup("r.example")
    assert store.lookup("other.example") is None


# ---------------------------------------------------------------- pieces, and Docker Hub's shape


def test_parse_challenges() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull",error="insufficient_scope", Basic realm="say \\"hi\\""'
    )
    bearer, basic = parse_challenges(header)
    assert bearer == Challenge(
        "bearer",
        {"realm": "https://auth.example/token", "service": "registry.example",
         "scope": "repository:a/b:pull", "error": "insufficient_scope"},
    )
    assert basic == Challenge("basic", {"realm": 'say "hi"'})
    assert parse_challenges("Basic") == [Challenge("basic", {})]
    assert parse_challenges("") == []


def test_host_names() -> None:
    assert normalize_host("https://index.docker.io/v1/") == "docker.io"
    assert normalize_host("registry-1.docker.io") == "docker.io"
    assert normalize_host("http://R.example:5000/v2/") == "r.example:5000"
    assert split_port("[::1]:5000") == ("[::1]", 5000)
    assert split_port("r.example") == ("r.example", None)
    options = RegistrySettings(insecure_registries=frozenset({"r.example", "s.example:5000"}))
    assert options.is_insecure("r.example:443") and options.is_insecure("r.example")
    assert options.is_insecure("s.example:5000") and not options.is_insecure("s.example:5001")
    assert not options.is_insecure("q.example")


class _Body(httpx.SyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data


def test_docker_hub_shape_with_an_in_process_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Docker Hub has no server here: an httpx.MockTransport reproduces its documented behaviour.

    ``docker.io`` is served by registry-1.docker.io, tokens come from another
    host (auth.docker.io), credentials are stored under
    https://index.docker.io/v1/, and every manifest answer carries
    ``ratelimit-remaining``.
    """
    manifest_body = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"digest": "sha256:" + "c" * 64, "size": 2}, "layers": [],
    }).encode()
    seen: list[tuple[str, str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("Authorization")
        seen.append((request.method, f"{request.url.host}{request.url.path}", auth))
        if request.url.host == "auth.docker.io":
            assert request.url.params["service"] == "registry.docker.io"
            assert request.url.params["scope"] == "repository:library/alpine:pull"
            assert auth == "Basic " + base64.b64encode(b"hubuser:hubsecret").decode()
            body = {"token": "hub-token", "expires_in": 300, "issued_at": "2024-03-29T00:00:00.123456789Z"}
            return httpx.Response(200, json=body)
        assert request.url.host == "registry-1.docker.io"
        if auth != "Bearer hub-token":
            return httpx.Response(401, headers={"WWW-Authenticate": (
                'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                'scope="repository:library/alpine:pull"')})
        return httpx.Response(
            200, stream=_Body(manifest_body),
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                     "ratelimit-limit": "200;w=21600", "ratelimit-remaining": "3;w=21600"},
        )

    config = tmp_path / "config.json"
    encoded = base64.b64encode(b"hubuser:hubsecret").decode()
    config.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": encoded}}}))
    options = fast_options(config_path=config, pull_reserve=3)
    client = RegistryClient("docker.io", options.settings, transport=httpx.MockTransport(handler), sleep=lambda _: None)
    fetched = client.get_manifest("library/alpine", "3.19")
    assert fetched.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert [s[:2] for s in seen] == [
        ("GET", "registry-1.docker.io/v2/library/alpine/manifests/3.19"),
        ("GET", "auth.docker.io/token"),
        ("GET", "registry-1.docker.io/v2/library/alpine/manifests/3.19"),
    ]
    # The registry said 3 pulls remain, which is the reserve: the next pull is refused before it is made.
    with pytest.raises(RegistryError, match="3 pulls left"):
        client.get_manifest("library/alpine", "3.20")
    assert len(seen) == 3


def test_credentials_are_not_sent_to_a_plain_http_token_service() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "r.example", "the plain-HTTP realm must not be contacted"
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.example/token"'})

    options = fast_options(username=USER, password=PASSWORD)
    client = RegistryClient("r.example", options.settings, transport=httpx.MockTransport(handler), sleep=lambda _: None)
    with pytest.raises(RegistryError, match="is not HTTPS; refusing to send credentials") as caught:
        client.get_manifest("a/b", "latest")
    assert PASSWORD not in str(caught.value)


def test_cli_credential_options_are_checked(
    capsys: pytest.CaptureFixture[str], no_docker_config: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ref = "docker://127.0.0.1:1/a/b:c"
    assert main(["scan", "--username", USER, ref]) == 2
    assert "a registry user name needs a password" in capsys.readouterr().err
    monkeypatch.setenv("LAYERHOUND_REGISTRY_PASSWORD", PASSWORD)
    assert main(["scan", ref]) == 2
    err = capsys.readouterr().err
    assert "a registry password needs a user name" in err and PASSWORD not in err
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["scan", "--username", USER, "--password-stdin", ref]) == 2
    assert "nothing was read from standard input" in capsys.readouterr().err
    monkeypatch.delenv("LAYERHOUND_REGISTRY_PASSWORD")
    assert main(["scan", "--registry-config", str(tmp_path / "missing.json"), ref]) == 2
    assert "is not a file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["scan", "--max-concurrency", "0", ref])
    assert "at least 1" in capsys.readouterr().err


def test_a_mirror_gets_its_own_credentials_never_the_mirrored_registrys(tmp_path: Path) -> None:
    import base64

    def auth(user: str) -> str:
        return base64.b64encode(f"{user}:secret-of-{user}".encode()).decode()

    config = write_config(tmp_path, {"auths": {
        "https://index.docker.io/v1/": {"auth": auth("hub-user")},
        "mirror.example:5000": {"auth": auth("mirror-user")},
    }})
    settings = RegistrySettings(mirrors={"Docker.io": "mirror.example:5000"}, config_path=config, environ={},
                                insecure_registries=frozenset({"mirror.example:5000"}))
    client = RegistryClient("docker.io", settings)
    try:
        assert str(client.base) == "http://mirror.example:5000"
        creds = client.auth.credentials
        assert creds is not None and creds.username == "mirror-user"
    finally:
        client.close()
    # Credentials given on the command line are for the registry, never for its mirror.
    given = RegistryClient("docker.io", settings.replace(username="cli-user", password="cli-secret"))
    try:
        creds = given.auth.credentials
        assert creds is not None and creds.username == "mirror-user"
    finally:
        given.close()
    plain = RegistryClient("docker.io", RegistrySettings(config_path=config, environ={}))
    try:
        assert str(plain.base) == "https://registry-1.docker.io"
        assert plain.auth.credentials is not None and plain.auth.credentials.username == "hub-user"
    finally:
        plain.close()
