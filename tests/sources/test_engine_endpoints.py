"""Where the engines' APIs are looked for: as the docker and podman clients look."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest

from layerhound.errors import SourceError
from layerhound.sources.engine import (
    DOCKER_DAEMON,
    PODMAN,
    Endpoint,
    EngineClient,
    EngineUnavailable,
    docker_endpoint,
    podman_endpoint,
)


def test_docker_host_wins_then_the_context_then_the_default(tmp_path: Path) -> None:
    config = tmp_path / ".docker"
    meta = config / "contexts" / "meta" / hashlib.sha256(b"remote-box").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps(
        {"Name": "remote-box", "Endpoints": {"docker": {"Host": "unix:///srv/docker.sock"}}}))
    (config / "config.json").write_text(json.dumps({"currentContext": "remote-box"}))
    home = {"HOME": str(tmp_path)}
    assert docker_endpoint({**home, "DOCKER_HOST": "unix:///x.sock"}) == Endpoint(
        DOCKER_DAEMON, "unix:///x.sock", "DOCKER_HOST")
    assert docker_endpoint(home) == Endpoint(
        DOCKER_DAEMON, "unix:///srv/docker.sock", "the Docker context 'remote-box'")
    assert docker_endpoint({**home, "DOCKER_CONTEXT": "default"}).url == "unix:///var/run/docker.sock"
    with pytest.raises(EngineUnavailable, match="the Docker context 'gone' has no readable endpoint"):
        docker_endpoint({**home, "DOCKER_CONTEXT": "gone"})
    assert docker_endpoint({"HOME": str(tmp_path / "nobody")}).origin == "the default socket"


def test_podman_takes_container_host_then_the_first_socket_that_exists(tmp_path: Path) -> None:
    assert podman_endpoint({"CONTAINER_HOST": "unix:///p.sock"}).url == "unix:///p.sock"
    runtime = tmp_path / "run"
    (runtime / "podman").mkdir(parents=True)
    assert podman_endpoint({"XDG_RUNTIME_DIR": str(runtime)}).url == f"unix://{runtime}/podman/podman.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(runtime / "podman" / "podman.sock"))
        assert podman_endpoint({"XDG_RUNTIME_DIR": str(runtime)}) == Endpoint(
            PODMAN, f"unix://{runtime}/podman/podman.sock", "the rootless socket")
    assert podman_endpoint({}).url == "unix:///run/podman/podman.sock"


def test_an_http_server_that_is_not_an_engine_is_named(tmp_path: Path) -> None:
    """A unix socket whose server answers something that is not HTTP: a clear error, no traceback."""
    path = tmp_path / "mute.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()
        client = EngineClient(Endpoint(DOCKER_DAEMON, f"unix://{path}", "the test"))
        import threading

        def close_at_once() -> None:
            conn, _ = listener.accept()
            conn.recv(1024)
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            conn.close()

        thread = threading.Thread(target=close_at_once)
        thread.start()
        with pytest.raises(SourceError, match=f"the Docker engine at unix://{path} does not speak HTTP"):
            client.inspect("x")
        thread.join()
