"""Starts real release servers for the tests: `contextstore serve` on loopback, with keys."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
try:
    import contextstore  # noqa: F401 - installed (scripts/test-python installs it)
except ImportError:
    sys.path.insert(0, str(HERE.parent))  # else the package as checked out

BINARY = Path(os.environ.get("CONTEXTSTORE_BIN", REPO / ".build" / "release" / "contextstore"))
MODEL = REPO / "data" / "models" / "all-MiniLM-L6-v2"

ADMIN = "admin-secret-0123456789"
APP = "app-secret-0123456789ab"
READER = "read-secret-0123456789a"
SLOW = "slow-secret-0123456789a"
KEYS = {
    "keys": [
        {"name": "ops", "secret": ADMIN, "role": "admin"},
        {"name": "app", "secret": APP, "role": "app", "users": ["alice", "bob", "team/*"]},
        {"name": "reader", "secret": READER, "role": "read", "users": ["alice"]},
        {"name": "slow", "secret": SLOW, "role": "app", "users": ["slow/*"],
         "rate": {"per_second": 20, "burst": 2}},
    ]
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A `contextstore serve` process; `restart()` stops it and starts it again on the same port and file."""

    def __init__(self, folder: Path, model: bool, tls: bool = False):
        self.tls = tls
        if not BINARY.exists():
            pytest.fail(f"no server binary at {BINARY}: run `swift build -c release --product contextstore` "
                        "(or set CONTEXTSTORE_BIN)")
        self.folder = folder
        self.keys = folder / "keys.json"
        self.keys.write_text(json.dumps(KEYS))
        self.model = str(MODEL) if model else "none"
        self.port = free_port()
        self.process = None
        self.start()

    def start(self) -> None:
        command = [str(BINARY), "serve", "--db", str(self.folder / "space.db"), "--port", str(self.port), "--http-port", "0",
                   "--model", self.model, "--keys", str(self.keys), "--log-level", "warning",
                   "--backup-dir", str(self.folder)]
        if self.model == "none":
            command += ["--dim", "8"]
        if self.tls:
            self.certificate = self.folder / "cert.pem"
            if not self.certificate.exists():
                subprocess.run(
                    ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout", str(self.folder / "key.pem"), "-out", str(self.certificate), "-days", "2",
                     "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                    check=True, capture_output=True)
            command += ["--tls-cert", str(self.certificate), "--tls-key", str(self.folder / "key.pem")]
        log = open(self.folder / "server.log", "ab")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, cwd=self.folder)
        log.close()
        line = self.process.stdout.readline().decode()
        if not line.startswith("listening on"):
            self.process.kill()
            log_text = (self.folder / "server.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"the server did not start: {line!r} {log_text}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A server with the embedding model (when fetched: scripts/fetch-model)."""
    instance = Server(tmp_path_factory.mktemp("server"), model=MODEL.exists())
    yield instance
    instance.stop()


@pytest.fixture()
def small_server(tmp_path):
    """A server of its own (8 dimensions, no model), for tests that restart it."""
    instance = Server(tmp_path, model=False)
    yield instance
    instance.stop()


@pytest.fixture()
def tls_server(tmp_path):
    """A server of its own speaking TLS, with a self-signed certificate made for the test."""
    instance = Server(tmp_path, model=False, tls=True)
    yield instance
    instance.stop()
