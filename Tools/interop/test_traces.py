"""Traces across nodes: a school's sync, pushed on by its county to central, is one trace that a
fake OTLP collector (grpcio and the OpenTelemetry protos from PyPI) receives from all three."""
import os
import subprocess
import tempfile
import threading
import time
from concurrent import futures

import grpc
import pytest

from conftest import Node, _binary, free_port

PASSWORD = "traces horse battery staple"
PUPIL = "S5117030001-0003"


def eduhub(*args):
    env = {**os.environ, "EDUHUB_TRACES_PW": PASSWORD}
    for _ in range(100):  # a node just started may not answer yet
        result = subprocess.run([str(_binary()), *args], capture_output=True, text=True, env=env, timeout=120)
        if result.returncode == 0 or "UNAVAILABLE" not in result.stderr:
            break
        time.sleep(0.2)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


class Collector:
    """An OTLP/gRPC trace collector that keeps every span it is sent, with its service's name."""

    def __init__(self):
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        self.spans = []  # (service name, trace id hex, span name)
        self.lock = threading.Lock()
        collector = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                with collector.lock:
                    for resource_spans in request.resource_spans:
                        service = next((a.value.string_value for a in resource_spans.resource.attributes
                                        if a.key == "service.name"), "")
                        for scope in resource_spans.scope_spans:
                            for span in scope.spans:
                                collector.spans.append((service, span.trace_id.hex(), span.name))
                return trace_service_pb2.ExportTraceServiceResponse()

        self.port = free_port()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        self.server.start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def traces(self):
        with self.lock:
            by_trace = {}
            for service, trace, name in self.spans:
                by_trace.setdefault(trace, []).append((service, name))
            return by_trace


def test_a_school_sync_is_one_trace_through_county_and_central(stubs):
    from eduhub.identity.v1 import identity_pb2, identity_pb2_grpc

    collector = Collector()
    root = tempfile.mkdtemp(prefix="eduhub-traces-")
    central, county, school = f"{root}/central", f"{root}/county", f"{root}/school"
    eduhub("init", "--data", central)
    eduhub("seed", "--data", central)
    eduhub("user", "--data", central, "--username", "principal", "--password-env", "EDUHUB_TRACES_PW",
           "--role", "school-admin", "--org", "5117030001")
    county_token = eduhub("node", "create", "--data", central, "--node-id", "county-511703", "--org", "511703").split()[-1]
    nodes = [Node("--data", central, "--otlp-endpoint", collector.endpoint)]
    try:
        eduhub("init", "--data", county, "--role", "county", "--upstream", nodes[0].address, "--enroll", county_token)
        eduhub("sync", "--data", county)
        school_token = eduhub("node", "create", "--data", county, "--node-id", "school-5117030001",
                              "--org", "5117030001").split()[-1]
        # The county syncs on its own only every ten minutes: what reaches central within the test
        # is what it sends on when the school pushes.
        nodes.append(Node("--data", county, "--sync-every", "10m", "--otlp-endpoint", collector.endpoint))
        eduhub("init", "--data", school, "--role", "school", "--upstream", nodes[1].address, "--enroll", school_token)
        eduhub("sync", "--data", school)
        nodes.append(Node("--data", school))
        with grpc.insecure_channel(nodes[2].address) as channel:
            identity = identity_pb2_grpc.IdentityServiceStub(channel)
            pair = identity.Login(identity_pb2.LoginRequest(login="principal", password=PASSWORD), timeout=30)
            update = identity_pb2.UpdatePersonRequest(
                person=identity_pb2.Person(id=PUPIL, class_name="traced"), update_mask=["class_name"])
            identity.UpdatePerson(update, metadata=[("authorization", "Bearer " + pair.access_token)], timeout=30)
        eduhub("sync", "--data", school, "--otlp-endpoint", collector.endpoint)

        wanted = {"school-5117030001", "county-511703", "central"}
        deadline = time.time() + 30
        found = None
        while time.time() < deadline and not found:
            found = next((spans for spans in collector.traces().values()
                          if wanted <= {service for service, _ in spans}), None)
            time.sleep(0.2)
        assert found, f"no trace spans all three nodes: {collector.traces()}"
        names = {(service, name) for service, name in found}
        assert ("county-511703", "eduhub.sync.v1.SyncService/Push") in names, names
        assert any(service == "central" and name.startswith("eduhub.sync.v1.SyncService/") for service, name in names), names
        # And the school's write reached central through the county at once, not at its next sync.
        with grpc.insecure_channel(nodes[0].address) as channel:
            identity = identity_pb2_grpc.IdentityServiceStub(channel)
            pair = identity.Login(identity_pb2.LoginRequest(login="principal", password=PASSWORD), timeout=30)
            person = identity.GetPerson(identity_pb2.GetPersonRequest(id=PUPIL),
                                        metadata=[("authorization", "Bearer " + pair.access_token)], timeout=30)
            assert person.class_name == "traced"
    finally:
        for node in nodes:
            node.stop()
        collector.server.stop(0)
