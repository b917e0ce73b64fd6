"""Real registries for the registry tests, and what goes around them.

- ``make_pki``: a test CA, a TLS server certificate for 127.0.0.1, and an
  ES256 token-signing certificate issued by the CA (``cryptography``).
- ``RegistryServer``: Debian's ``docker-registry`` (CNCF distribution 2.8) on a
  free loopback port with its own storage directory, in one of three set-ups:
  anonymous plain HTTP, htpasswd (bcrypt) basic auth, or bearer tokens.
- ``TokenServer``: the token service of the bearer set-up, written here:
  ``http.server`` over TLS issuing ES256-signed JWTs that distribution's
  ``auth: token:`` verifies (``x5c`` chain to ``rootcertbundle``, ``kid`` in
  libtrust form, claims ``iss sub aud exp nbf iat jti access``).
- ``FaultProxy``: a plain-HTTP reverse proxy in front of a registry that counts
  and records every request and injects faults on request (status codes,
  dropped connections, corrupted bytes, redirects to ``OtherHost``, headers).
- ``push``: ``skopeo copy`` from an OCI layout into a registry.

Everything listens on loopback only and stops when the test module ends.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import hashlib
import http.client
import json
import re
import secrets
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK = "127.0.0.1"
OTHER_LOOPBACK = "127.0.0.2"
"""A second loopback address: "another host" for redirect tests."""


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def require_tool(name: str) -> str:
    """Path of a tool the Makefile installs; its absence is a failure, not a skip."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: run `make setup` first")
    return path


# ---------------------------------------------------------------- PKI


@dataclass(frozen=True)
class Pki:
    """Files and keys of the test PKI."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    signing_key: ec.EllipticCurvePrivateKey
    signing_cert_der: bytes

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_pki(directory: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a token-signing certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("layerhound test CA"))
        .issuer_name(_name("layerhound test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common_name: str, key: ec.EllipticCurvePrivateKey, server: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        )
        if server:
            import ipaddress

            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    server_key = ec.generate_private_key(ec.SECP256R1())
    signing_key = ec.generate_private_key(ec.SECP256R1())
    server = leaf("127.0.0.1", server_key, server=True)
    signing = leaf("layerhound test token signer", signing_key, server=False)

    ca_path = directory / "ca.pem"
    ca_path.write_bytes(_pem(ca))
    cert_path = directory / "server.pem"
    cert_path.write_bytes(_pem(server))
    key_path = directory / "server-key.pem"
    key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Pki(ca_path, cert_path, key_path, signing_key, signing.public_bytes(serialization.Encoding.DER))


# ---------------------------------------------------------------- JWT


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(key: ec.EllipticCurvePublicKey) -> str:
    """The ``kid`` form distribution (libtrust) derives from a public key."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(text[i : i + 4] for i in range(0, len(text), 4))


def sign_jwt(pki: Pki, claims: Mapping[str, Any]) -> str:
    """An ES256 JWS over ``claims`` with the signing certificate in ``x5c``."""
    header = {
        "typ": "JWT",
        "alg": "ES256",
        "kid": libtrust_key_id(pki.signing_key.public_key()),
        "x5c": [base64.b64encode(pki.signing_cert_der).decode()],
    }
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(dict(claims)).encode())}"
    r, s = decode_dss_signature(pki.signing_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


# ---------------------------------------------------------------- token server


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server saw (never the password itself)."""

    method: str
    service: str | None
    scopes: tuple[str, ...]
    user: str | None
    authorization: bool
    granted: bool


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # dropped connections are part of the tests


class BackgroundServer:
    """An HTTP server of the tests, serving on a daemon thread until ``stop``."""

    _server: ThreadingHTTPServer

    def _serve(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class TokenServer(BackgroundServer):
    """A bearer-token service for distribution's ``auth: token:``.

    ``users`` may pull and push; anonymous callers get pull on ``public``
    repositories and nothing else. ``refresh_tokens`` (token → user) serve
    the OAuth2 ``grant_type=refresh_token`` POST used for identity tokens.
    """

    def __init__(
        self,
        pki: Pki,
        users: Mapping[str, str],
        *,
        service: str = "layerhound-test-registry",
        issuer: str = "layerhound-test-issuer",
        expires_in: int = 300,
        public: Sequence[str] = (),
        refresh_tokens: Mapping[str, str] | None = None,
    ) -> None:
        self.pki = pki
        self.users = dict(users)
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.public = set(public)
        self.refresh_tokens = dict(refresh_tokens or {})
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self.url = f"https://{LOOPBACK}:{self.port}/token"
        server = _QuietServer((LOOPBACK, self.port), self._handler())
        server.socket = pki.server_context().wrap_socket(server.socket, server_side=True)
        self._serve(server)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    def _grant(self, user: str | None, scopes: Sequence[str]) -> list[dict[str, Any]]:
        access: list[dict[str, Any]] = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            wanted = [a for a in actions.split(",") if a]
            if user is None:
                wanted = [a for a in wanted if a == "pull"] if name in self.public else []
            if wanted:
                access.append({"type": "repository", "name": name, "actions": wanted})
        return access

    def issue(self, user: str | None, scopes: Sequence[str]) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(12),
            "access": self._grant(user, scopes),
        }
        token = sign_jwt(self.pki, claims)
        issued = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"token": token, "access_token": token, "expires_in": self.expires_in, "issued_at": issued}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Mapping[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, service: str | None, scopes: Sequence[str], user: str | None, granted: bool) -> None:
                with owner._lock:
                    owner.requests.append(
                        TokenRequest(
                            self.command, service, tuple(scopes), user,
                            "Authorization" in self.headers, granted,
                        )
                    )

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                service = (query.get("service") or [None])[0]
                scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
                user: str | None = None
                auth = self.headers.get("Authorization")
                if auth:
                    kind, _, value = auth.partition(" ")
                    try:
                        name, _, password = base64.b64decode(value).decode().partition(":")
                    except (ValueError, UnicodeDecodeError):
                        name, password = "", ""
                    if kind.lower() != "basic" or owner.users.get(name) != password or not name:
                        self._record(service, scopes, None, False)
                        self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                        return
                    user = name
                self._record(service, scopes, user, True)
                self._reply(200, owner.issue(user, scopes))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                service = (form.get("service") or [None])[0]
                scopes = [s for value in form.get("scope", []) for s in value.split(" ") if s]
                refresh = (form.get("refresh_token") or [""])[0]
                user = owner.refresh_tokens.get(refresh)
                if (form.get("grant_type") or [""])[0] != "refresh_token" or user is None:
                    self._record(service, scopes, None, False)
                    self._reply(401, {"error": "invalid_grant"})
                    return
                self._record(service, scopes, user, True)
                reply = owner.issue(user, scopes)
                self._reply(200, {"access_token": reply["token"], "expires_in": reply["expires_in"],
                                  "issued_at": reply["issued_at"]})

        return Handler


# ---------------------------------------------------------------- registry


Mode = Literal["anonymous", "basic", "token"]


class RegistryServer:
    """Debian's ``docker-registry`` on a free loopback port.

    ``anonymous``: plain HTTP, no auth. ``basic``: TLS + htpasswd (bcrypt).
    ``token``: TLS + bearer tokens from ``token_server``.
    """

    def __init__(
        self,
        workdir: Path,
        mode: Mode,
        *,
        pki: Pki | None = None,
        users: Mapping[str, str] | None = None,
        token_server: TokenServer | None = None,
    ) -> None:
        self.workdir = workdir
        self.mode = mode
        self.pki = pki
        self.users = dict(users or {})
        self.token_server = token_server
        self.port = free_port()
        self.host = f"{LOOPBACK}:{self.port}"
        self.tls = mode != "anonymous"
        self.url = f"{'https' if self.tls else 'http'}://{self.host}"
        self._process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "registry.log"

    def _config(self) -> str:
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: {self.host}",
            "  secret: layerhound-test-secret",
        ]
        if self.tls:
            assert self.pki is not None
            lines += ["  tls:", f"    certificate: {self.pki.server_cert}", f"    key: {self.pki.server_key}"]
        if self.mode == "basic":
            htpasswd = self.workdir / "htpasswd"
            htpasswd.unlink(missing_ok=True)
            for user, password in self.users.items():
                flags = "-Bic" if not htpasswd.exists() else "-Bi"
                subprocess.run(
                    [require_tool("htpasswd"), flags, str(htpasswd), user],
                    input=password.encode(), check=True, capture_output=True,
                )
            lines += ["auth:", "  htpasswd:", "    realm: layerhound-test", f"    path: {htpasswd}"]
        elif self.mode == "token":
            assert self.pki is not None and self.token_server is not None
            lines += [
                "auth:",
                "  token:",
                f"    realm: {self.token_server.url}",
                f"    service: {self.token_server.service}",
                f"    issuer: {self.token_server.issuer}",
                f"    rootcertbundle: {self.pki.ca_cert}",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> RegistryServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.yml"
        config.write_text(self._config())
        with open(self.log, "wb") as log:
            self._process = subprocess.Popen(
                [require_tool("docker-registry"), "serve", str(config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        atexit.register(self.stop)  # even when a test run dies without its teardown
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"docker-registry exited:\n{self.log.read_text()}")
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def push(
    source: str,
    registry: RegistryServer,
    repository: str,
    tag: str,
    *,
    creds: str | None = None,
    fmt: str | None = None,
    all_images: bool = False,
) -> None:
    """``skopeo copy`` an image (``oci:DIR:TAG``) into ``registry``."""
    cmd = [
        require_tool("skopeo"), "--insecure-policy", "copy", "--quiet",
        "--dest-tls-verify=false", "--dest-no-creds" if creds is None else f"--dest-creds={creds}",
    ]
    if fmt:
        cmd.append(f"--format={fmt}")
    if all_images:
        cmd.append("--all")
    cmd += [source, f"docker://{registry.host}/{repository}:{tag}"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo copy {source} failed:\n{result.stderr}")


# ---------------------------------------------------------------- fault proxy


FaultKind = Literal["status", "drop", "corrupt", "redirect", "headers", "delay", "reset", "slow"]
"""``reset``: the connection is closed with a TCP RST before any answer; ``slow``: the body
dribbles out in 4 KiB pieces, ``seconds`` apart; ``delay``: the answer stalls ``seconds``."""


@dataclass
class Fault:
    """What to do to requests matching ``method`` and ``path`` (a regex), ``times`` times (-1: always),
    after letting the first ``after`` matching requests through untouched."""

    kind: FaultKind
    path: str
    method: str | None = "GET"
    times: int = 1
    after: int = 0
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    seconds: float = 0.0


@dataclass(frozen=True)
class Seen:
    """One request as the proxy (or the other host) received it."""

    method: str
    path: str
    headers: dict[str, str]
    status: int
    at: float


class OtherHost(BackgroundServer):
    """A plain HTTP server on another loopback address, serving bytes it is given."""

    def __init__(self) -> None:
        self.port = free_port(OTHER_LOOPBACK)
        self.host = f"{OTHER_LOOPBACK}:{self.port}"
        self.blobs: dict[str, bytes] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                name = urllib.parse.urlsplit(self.path).path.rsplit("/", 1)[-1]
                data = owner.blobs.get(name)
                status = 200 if data is not None else 404
                with owner._lock:
                    owner.seen.append(Seen("GET", self.path, dict(self.headers.items()), status, time.monotonic()))
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

        self._serve(_QuietServer((OTHER_LOOPBACK, self.port), Handler))

    def put(self, data: bytes) -> str:
        """Store bytes; return the URL they are served at (with a signature-like query)."""
        name = secrets.token_hex(8)
        self.blobs[name] = data
        return f"http://{self.host}/storage/{name}?X-Signature={secrets.token_hex(8)}"


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "te", "upgrade"}


class FaultProxy(BackgroundServer):
    """A counting, faulting reverse proxy (plain HTTP) in front of ``upstream``.

    Every request is recorded in ``seen``; ``add`` arms a ``Fault``. The
    registry's own ``WWW-Authenticate`` and ``Location`` headers pass through
    unchanged (relative ``Location``s stay on the proxy).
    """

    def __init__(self, upstream: RegistryServer, other: OtherHost | None = None) -> None:
        self.upstream = upstream
        self.other = other
        self.port = free_port()
        self.host = f"{LOOPBACK}:{self.port}"
        self.seen: list[Seen] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._context = upstream.pki.client_context() if upstream.tls and upstream.pki else None
        self._serve(_QuietServer((LOOPBACK, self.port), self._handler()))

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def reset(self) -> None:
        with self._lock:
            self.faults.clear()
            self.seen.clear()

    def count(self, method: str | None = None, path: str = "") -> int:
        """How many requests matched ``method`` and the regex ``path``."""
        pattern = re.compile(path)
        with self._lock:
            return sum(
                1 for s in self.seen if (method is None or s.method == method) and pattern.search(s.path)
            )

    def matching(self, method: str | None = None, path: str = "") -> list[Seen]:
        pattern = re.compile(path)
        with self._lock:
            return [s for s in self.seen if (method is None or s.method == method) and pattern.search(s.path)]

    def _take(self, method: str, path: str) -> list[Fault]:
        taken: list[Fault] = []
        with self._lock:
            for fault in self.faults:
                if fault.times == 0 or (fault.method and fault.method != method):
                    continue
                if not re.search(fault.path, path):
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    continue
                if fault.times > 0:
                    fault.times -= 1
                taken.append(fault)
        return taken

    def _record(self, method: str, path: str, headers: Mapping[str, str], status: int) -> None:
        with self._lock:
            self.seen.append(Seen(method, path, dict(headers), status, time.monotonic()))

    def _fetch(self, method: str, path: str, headers: Mapping[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        conn: http.client.HTTPConnection
        if self._context is not None:
            conn = http.client.HTTPSConnection(LOOPBACK, self.upstream.port, context=self._context, timeout=30)
        else:
            conn = http.client.HTTPConnection(LOOPBACK, self.upstream.port, timeout=30)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
            conn.request(method, path, headers=forwarded)
            response = conn.getresponse()
            body = response.read()
            return response.status, response.getheaders(), body
        finally:
            conn.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send_head(self, status: int, headers: Sequence[tuple[str, str]], length: int) -> None:
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(length))
                self.end_headers()

            def _send(self, status: int, headers: Sequence[tuple[str, str]], body: bytes, length: int) -> None:
                self._send_head(status, headers, length)
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _serve(self) -> None:
                faults = owner._take(self.command, self.path)
                headers = dict(self.headers.items())
                for fault in faults:
                    if fault.kind == "delay":
                        time.sleep(fault.seconds)
                for fault in faults:
                    if fault.kind == "reset":
                        owner._record(self.command, self.path, headers, 0)
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        self.close_connection = True
                        self.connection.close()
                        return
                    if fault.kind == "status":
                        owner._record(self.command, self.path, headers, fault.status)
                        extra = list(fault.headers.items())
                        if fault.body and not any(k.lower() == "content-type" for k, _ in extra):
                            extra.append(("Content-Type", "application/json"))
                        self._send(fault.status, extra, fault.body, len(fault.body))
                        return
                status, response_headers, body = owner._fetch(self.command, self.path, headers)
                owner._record(self.command, self.path, headers, status)
                length = len(body)
                if self.command == "HEAD":
                    length = int(dict((k.lower(), v) for k, v in response_headers).get("content-length", "0"))
                for fault in faults:
                    if fault.kind == "headers":
                        response_headers = [*response_headers, *fault.headers.items()]
                    elif fault.kind == "corrupt" and body:
                        middle = len(body) // 2
                        body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
                    elif fault.kind == "redirect" and status == 200 and owner.other is not None:
                        location = owner.other.put(body)
                        self._send(307, [("Location", location)], b"", 0)
                        return
                    elif fault.kind == "drop" and status in (200, 206):
                        self._send_partial(status, response_headers, body)
                        return
                    elif fault.kind == "slow" and status in (200, 206) and self.command != "HEAD":
                        self._send_slowly(status, response_headers, body, fault.seconds)
                        return
                self._send(status, response_headers, body, length)

            def _send_slowly(self, status: int, headers: Sequence[tuple[str, str]], body: bytes, pause: float) -> None:
                self._send_head(status, headers, len(body))
                for start in range(0, len(body), 4096):
                    self.wfile.write(body[start : start + 4096])
                    self.wfile.flush()
                    time.sleep(pause)

            def _send_partial(self, status: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
                """Promise the whole body, send half, then drop the connection."""
                self._send_head(status, headers, len(body))
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def do_GET(self) -> None:
                self._serve()

            def do_HEAD(self) -> None:
                self._serve()

        return Handler
