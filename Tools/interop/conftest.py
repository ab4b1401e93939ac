"""Fixtures for the interop suite: stubs generated from Protocols/ and a real `eduhub serve`."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTOCOLS = ROOT / "Protocols"


def _binary() -> Path:
    path = Path(os.environ.get("EDUHUB_BIN", ROOT / ".build" / "debug" / "eduhub"))
    if not path.exists():
        pytest.exit(f"eduhub binary not found at {path}: run `swift build` first", returncode=2)
    return path


@pytest.fixture(scope="session")
def stubs():
    """Python stubs for every .proto file, generated with grpcio-tools as a user would."""
    from grpc_tools import protoc
    import grpc_tools

    out = tempfile.mkdtemp(prefix="eduhub-stubs-")
    files = sorted(str(p.relative_to(PROTOCOLS)) for p in PROTOCOLS.rglob("*.proto"))
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    code = protoc.main(["protoc", f"-I{PROTOCOLS}", f"-I{include}", f"--python_out={out}",
                        f"--grpc_python_out={out}", *files])
    assert code == 0, "protoc failed"
    sys.path.insert(0, out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """A running `eduhub serve` process."""

    def __init__(self, *extra: str):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="eduhub-node-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [str(_binary()), "serve", "--listen", f"127.0.0.1:{self.port}", "--node-id", "interop",
             "--log-level", "info", *extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"eduhub serve exited early: {Path(self.log.name).read_text()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("eduhub serve did not start listening")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def output(self) -> str:
        return Path(self.log.name).read_text()

    def stop(self, sig=signal.SIGTERM, timeout=15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise
        return self.process.returncode


@pytest.fixture
def node():
    n = Node()
    yield n
    n.stop()


@pytest.fixture
def channel(node):
    with grpc.insecure_channel(node.address) as ch:
        yield ch
