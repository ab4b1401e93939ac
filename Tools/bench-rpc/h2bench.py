"""Shared parts of the h2load benchmarks: building eduhub and the gRPC C++ echo server, driving h2load."""
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".build-bench"
PATH = "/eduhub.node.v1.NodeService/Ping"


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build():
    sh(str(ROOT / "Tools" / "setup"), "--bench")
    sh("swift", "build", "-c", "release", "--product", "eduhub", cwd=ROOT, stdout=subprocess.DEVNULL)
    bin_dir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT,
                             check=True, capture_output=True, text=True).stdout.strip()
    gen = WORK / "gen"
    gen.mkdir(parents=True, exist_ok=True)
    plugin = subprocess.run(["which", "grpc_cpp_plugin"], check=True, capture_output=True, text=True).stdout.strip()
    protos = ["eduhub/node/v1/node.proto", "eduhub/common/v1/options.proto"]
    sh("protoc", f"-I{ROOT / 'Protocols'}", "-I/usr/include", f"--cpp_out={gen}", f"--grpc_out={gen}",
       f"--plugin=protoc-gen-grpc={plugin}", *protos)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "grpc++", "protobuf"], check=True,
                           capture_output=True, text=True).stdout.split()
    server = WORK / "echo_server"
    sources = [ROOT / "Tools" / "bench-rpc" / "echo_server.cc", gen / "eduhub/node/v1/node.pb.cc",
               gen / "eduhub/node/v1/node.grpc.pb.cc", gen / "eduhub/common/v1/options.pb.cc"]
    if not server.exists() or any(s.stat().st_mtime > server.stat().st_mtime for s in sources):
        sh("g++", "-O2", "-std=c++17", f"-I{gen}", *map(str, sources), *flags, "-o", str(server))
    return Path(bin_dir) / "eduhub", server


def wait_listening(port, process):
    for _ in range(200):
        if process.poll() is not None:
            sys.exit(f"bench: a server exited early (port {port})")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    sys.exit(f"bench: nothing listens on {port}")


def frame_file(name, message):
    """A file holding one gRPC frame of `message` (serialized protobuf bytes), for h2load -d."""
    path = WORK / name
    path.write_bytes(bytes([0]) + len(message).to_bytes(4, "big") + message)
    return path


def payload_file():
    # PingRequest{payload: 100 bytes}: field 1, length 100.
    return frame_file("ping100.bin", bytes([0x0A, 100]) + b"a" * 100)


def h2load(port, clients, streams, requests, data, path=PATH, headers=()):
    """Drives one server; returns (requests/s, mean latency in us). Any failed request aborts."""
    extra = [arg for header in headers for arg in ("-H", header)]
    out = subprocess.run(
        ["h2load", "-n", str(requests), "-c", str(clients), "-m", str(streams), "-d", str(data),
         "-H", "content-type: application/grpc", "-H", "te: trailers", *extra, f"http://127.0.0.1:{port}{path}"],
        check=True, capture_output=True, text=True).stdout
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", out)
    rps = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out).group(1)
    if int(done.group(2)) != 0:
        sys.exit(f"bench: h2load saw failures against port {port}:\n{out}")
    return rps, to_us(mean)


def to_us(text):
    value = float(re.match(r"[\d.]+", text).group(0))
    if text.endswith("ms"):
        return value * 1000
    if text.endswith("us"):
        return value
    if text.endswith("s"):
        return value * 1e6
    return value


def rss_kib(pid):
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def stubs():
    """Generates the Python gRPC stubs of Protocols/ into WORK/py (protoc from grpcio-tools) and
    puts them on sys.path."""
    out = WORK / "py"
    out.mkdir(parents=True, exist_ok=True)
    from grpc_tools import protoc
    import grpc_tools
    protocols = ROOT / "Protocols"
    files = sorted(str(p.relative_to(protocols)) for p in protocols.rglob("*.proto"))
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    assert protoc.main(["protoc", f"-I{protocols}", f"-I{include}", f"--python_out={out}",
                        f"--grpc_python_out={out}", *files]) == 0
    sys.path.insert(0, str(out))
