"""Where registry credentials come from: flags/environment, then Docker's config.

Docker's ``config.json`` (``$DOCKER_CONFIG/config.json`` or
``~/.docker/config.json``, or ``--registry-config``) is read the way the
Docker CLI reads it: ``credHelpers[host]`` first, then ``credsStore``, then
``auths[host].auth`` (base64 ``user:password``) or ``identitytoken``. A
helper is the program ``docker-credential-<name>``, run as ``get`` with the
server URL on stdin; it answers ``{"ServerURL", "Username", "Secret"}``
(``Username == "<token>"`` means the secret is an identity token).

Credentials are looked up only when a registry asks for them, so scanning a
public image never runs a helper. Secrets never reach a message: ``repr``
hides them and errors name the source of a credential, not its content.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import shutil
import subprocess
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layerhound.errors import RegistryError

log = logging.getLogger(__name__)

DOCKER_HUB = "docker.io"
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
"""The key Docker stores Hub credentials under."""
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})
HELPER_TIMEOUT = 30.0
IDENTITY_TOKEN_USER = "<token>"


@dataclass(frozen=True)
class Credentials:
    """A username and password, or an identity (refresh) token; ``source`` says where from."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    source: str = ""

    def secrets(self) -> list[str]:
        """Every secret string, to scrub from any text shown to a person."""
        return [s for s in (self.password, self.identity_token) if s]

    def __bool__(self) -> bool:
        return bool(self.identity_token or (self.username and self.password))


def normalize_host(key: str) -> str:
    """``https://index.docker.io/v1/`` → ``docker.io``; ``https://r.example:5000/v2/`` → ``r.example:5000``."""
    text = key.strip()
    if "://" in text:
        text = urllib.parse.urlsplit(text).netloc
    text = text.split("/", 1)[0].lower()
    return DOCKER_HUB if text in _HUB_ALIASES else text


def server_url(host: str) -> str:
    """What a credential helper is asked for: the Hub's legacy URL, else the host."""
    return DOCKER_HUB_SERVER if normalize_host(host) == DOCKER_HUB else host


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    env = os.environ if environ is None else environ
    directory = env.get("DOCKER_CONFIG")
    if directory:
        return Path(directory).expanduser() / "config.json"
    return Path.home() / ".docker" / "config.json"


def load_docker_config(path: Path) -> dict[str, Any]:
    """The parsed config, ``{}`` when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise RegistryError(f"cannot read registry config {path}: {exc.strerror}") from exc
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise RegistryError(f"registry config {path} is not valid JSON (line {exc.lineno})") from None
    if not isinstance(value, dict):
        raise RegistryError(f"registry config {path} is not a JSON object")
    return value


class CredentialStore:
    """Answers "which credentials for this registry?" (explicit ones win)."""

    def __init__(
        self,
        explicit: Credentials | None = None,
        config_path: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.explicit = explicit if explicit else None
        self.config_path = config_path if config_path is not None else default_config_path(environ)
        self._config: dict[str, Any] | None = None

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            self._config = load_docker_config(self.config_path)
        return self._config

    def lookup(self, registry: str) -> Credentials | None:
        """Credentials for ``registry`` (a host, or ``docker.io``), None for anonymous."""
        if self.explicit is not None:
            return self.explicit
        host = normalize_host(registry)
        config = self.config
        helpers = config.get("credHelpers")
        if isinstance(helpers, dict):
            for key, helper in helpers.items():
                if isinstance(helper, str) and helper and normalize_host(key) == host:
                    return run_helper(helper, host, required=True)
        store = config.get("credsStore")
        if isinstance(store, str) and store:
            found = run_helper(store, host, required=False)
            if found is not None:
                return found
        return self._from_auths(host)

    def _from_auths(self, host: str) -> Credentials | None:
        auths = self.config.get("auths")
        if not isinstance(auths, dict):
            return None
        for key, entry in auths.items():
            if not isinstance(entry, dict) or normalize_host(key) != host:
                continue
            source = f"{self.config_path} (auths)"
            token = entry.get("identitytoken")
            if isinstance(token, str) and token:
                return Credentials(identity_token=token, source=source)
            encoded = entry.get("auth")
            if isinstance(encoded, str) and encoded:
                try:
                    user, sep, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    raise RegistryError(f"registry config {self.config_path}: the auth entry for {host} "
                                        "is not base64 of user:password") from None
                if not sep:
                    raise RegistryError(f"registry config {self.config_path}: the auth entry for {host} "
                                        "has no user:password")
                return Credentials(user, password, source=source)
            name, secret = entry.get("username"), entry.get("password")
            if isinstance(name, str) and isinstance(secret, str) and name and secret:
                return Credentials(name, secret, source=source)
        return None


def run_helper(name: str, host: str, *, required: bool) -> Credentials | None:
    """Ask ``docker-credential-<name>`` for ``host``'s credentials.

    "Not found" answers None. A missing helper is an error when the config
    names it for this host (``credHelpers``), and falls back to ``auths``
    when it is only the default store. Nothing the helper prints is repeated
    in an error message: it may contain the secret.
    """
    program = f"docker-credential-{name}"
    path = shutil.which(program)
    if path is None:
        if required:
            raise RegistryError(f"credential helper {program} (configured for {host}) is not installed")
        log.warning("credential helper %s is not installed; using the config's auths", program)
        return None
    try:
        result = subprocess.run(
            [path, "get"],
            input=server_url(host).encode(),
            capture_output=True,
            timeout=HELPER_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RegistryError(f"credential helper {program} did not answer within {HELPER_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise RegistryError(f"cannot run credential helper {program}: {exc.strerror}") from None
    if result.returncode != 0:
        answer = (result.stdout + result.stderr).decode("utf-8", "replace").lower()
        if "credentials not found" in answer or "not found in" in answer:
            return None
        raise RegistryError(f"credential helper {program} failed for {host} (exit status {result.returncode})")
    try:
        value = json.loads(result.stdout)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RegistryError(f"credential helper {program} gave an answer that is not JSON") from None
    if not isinstance(value, dict):
        raise RegistryError(f"credential helper {program} gave an answer that is not a JSON object")
    user, secret = value.get("Username"), value.get("Secret")
    if not isinstance(secret, str) or not secret:
        return None
    source = f"credential helper {program}"
    if user == IDENTITY_TOKEN_USER:
        return Credentials(identity_token=secret, source=source)
    return Credentials(user if isinstance(user, str) else "", secret, source=source)
