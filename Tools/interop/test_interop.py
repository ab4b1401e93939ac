"""Interop: a real, independent gRPC client (Python grpcio) against a real `eduhub serve`."""
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import grpc
import pytest

from conftest import Node


def test_health_check(stubs, channel):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
    reply = health.Check(health_pb2.HealthCheckRequest(service="eduhub.node.v1.NodeService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as failure:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_services_and_resolves_them(stubs, channel):
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import \
        ProtoReflectionDescriptorDatabase
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {"eduhub.node.v1.NodeService", "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection"} <= services
    pool = DescriptorPool(database)
    node = pool.FindServiceByName("eduhub.node.v1.NodeService")
    assert set(node.methods_by_name) == {"Info", "Ping"}
    assert pool.FindMessageTypeByName("eduhub.node.v1.PingRequest").fields_by_name["payload"].number == 1


def test_reflection_v1_reports_unknown_symbols(stubs, channel):
    # The generated grpc/reflection/v1 package would shadow grpcio's own `grpc` package, so call the
    # v1 method with grpcio-reflection's messages (the v1alpha messages are identical on the wire).
    from grpc_reflection.v1alpha import reflection_pb2
    call = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.Such")]
    replies = list(call(iter(requests), timeout=10))
    assert len(replies) == 2
    assert "eduhub.node.v1.NodeService" in [s.name for s in replies[0].list_services_response.service]
    assert replies[1].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_info(stubs, channel):
    from eduhub.node.v1 import node_pb2, node_pb2_grpc
    info = node_pb2_grpc.NodeServiceStub(channel).Info(node_pb2.InfoRequest())
    assert info.node_id == "interop"
    assert info.role == "central"
    assert info.uptime_seconds >= 0


def test_ping_unary(stubs, channel):
    from eduhub.node.v1 import node_pb2, node_pb2_grpc
    reply = node_pb2_grpc.NodeServiceStub(channel).Ping(node_pb2.PingRequest(payload=b"hello"))
    assert reply.payload == b"hello"


def test_ping_one_mebibyte(stubs, channel):
    from eduhub.node.v1 import node_pb2, node_pb2_grpc
    payload = bytes(range(256)) * 4096
    reply = node_pb2_grpc.NodeServiceStub(channel).Ping(node_pb2.PingRequest(payload=payload))
    assert reply.payload == payload


def test_concurrent_pings_on_one_channel(stubs, channel):
    from eduhub.node.v1 import node_pb2, node_pb2_grpc
    stub = node_pb2_grpc.NodeServiceStub(channel)
    futures = [stub.Ping.future(node_pb2.PingRequest(payload=str(i).encode())) for i in range(200)]
    assert [f.result().payload for f in futures] == [str(i).encode() for i in range(200)]


def test_deadline_expires(stubs, channel):
    # Watch streams until the deadline: the server must honour grpc-timeout and the client see
    # DEADLINE_EXCEEDED after the first status message.
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=0.5)
    started = time.monotonic()
    first = next(stream)
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as failure:
        next(stream)
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 5


def test_unknown_method(stubs, channel):
    call = channel.unary_unary("/eduhub.node.v1.NodeService/NoSuchMethod")
    with pytest.raises(grpc.RpcError) as failure:
        call(b"", timeout=5)
    assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "NoSuchMethod" in failure.value.details()


def test_oversize_message_is_resource_exhausted(stubs, channel):
    from eduhub.node.v1 import node_pb2, node_pb2_grpc
    with pytest.raises(grpc.RpcError) as failure:
        node_pb2_grpc.NodeServiceStub(channel).Ping(node_pb2.PingRequest(payload=b"x" * (5 * 1024 * 1024)))
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _self_signed(directory: Path):
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


def test_tls_with_a_self_signed_certificate(stubs):
    from eduhub.node.v1 import node_pb2, node_pb2_grpc
    directory = Path(tempfile.mkdtemp(prefix="eduhub-tls-"))
    cert, key = _self_signed(directory)
    node = Node("--tls-cert", str(cert), "--tls-key", str(key))
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"localhost:{node.port}", credentials) as secure:
            reply = node_pb2_grpc.NodeServiceStub(secure).Ping(node_pb2.PingRequest(payload=b"tls"), timeout=10)
            assert reply.payload == b"tls"
        # A client that does not trust the certificate cannot call.
        with grpc.secure_channel(f"localhost:{node.port}", grpc.ssl_channel_credentials()) as untrusted:
            with pytest.raises(grpc.RpcError) as failure:
                node_pb2_grpc.NodeServiceStub(untrusted).Ping(node_pb2.PingRequest(), timeout=5)
            assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        assert node.stop() == 0


def test_sigterm_drains_calls_in_flight_and_exits_zero(stubs):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    node = Node("--grace-period", "5")
    statuses = []
    with grpc.insecure_channel(node.address) as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=20)
        statuses.append(next(stream).status)
        started = time.monotonic()
        node.process.send_signal(signal.SIGTERM)
        # The watch sees the node go NOT_SERVING before the connection is drained.
        statuses.append(next(stream).status)
        code = node.process.wait(timeout=15)
    assert code == 0
    assert statuses == [health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING]
    assert time.monotonic() - started < 10
    assert "graceful shutdown" in node.output()
