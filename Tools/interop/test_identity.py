"""Identity through a real `eduhub serve --data` node with a seeded city, from Python grpcio."""
import json
import os
import subprocess
import tempfile

import grpc
import pytest

from conftest import Node, _binary

STUDENT = "S5117020001-0001"
SCHOOL = "5117020001"
PASSWORD = "interop horse battery staple"


def eduhub(*args, env=None):
    result = subprocess.run([str(_binary()), *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


@pytest.fixture(scope="module")
def seeded_node(stubs):
    data = tempfile.mkdtemp(prefix="eduhub-interop-data-") + "/node"
    eduhub("init", "--data", data, "--node-id", "interop")
    eduhub("seed", "--data", data, "--scale", "small")
    env = {"EDUHUB_TEST_PASSWORD": PASSWORD}
    eduhub("user", "--data", data, "--username", "teacher1", "--password-env", "EDUHUB_TEST_PASSWORD",
           "--role", "teacher", "--org", SCHOOL, "--person", "T5117020001-001", env=env)
    eduhub("user", "--data", data, "--username", "county1", "--password-env", "EDUHUB_TEST_PASSWORD",
           "--role", "county-admin", "--org", "511702", env=env)
    eduhub("user", "--data", data, "--username", "steward1", "--password-env", "EDUHUB_TEST_PASSWORD",
           "--role", "data-steward", "--org", "511702", env=env)
    node = Node("--data", data)
    yield node
    assert node.stop() == 0, node.output()
    verify = subprocess.run([str(_binary()), "audit", "verify", "--data", data], capture_output=True, text=True)
    assert verify.returncode == 0 and "intact" in verify.stdout, verify.stdout + verify.stderr


@pytest.fixture
def identity(stubs, seeded_node):
    from eduhub.identity.v1 import identity_pb2_grpc
    with grpc.insecure_channel(seeded_node.address) as channel:
        yield identity_pb2_grpc.IdentityServiceStub(channel)


def login(identity, username):
    from eduhub.identity.v1 import identity_pb2
    pair = identity.Login(identity_pb2.LoginRequest(login=username, password=PASSWORD), timeout=30)
    assert pair.access_token.startswith("v4.public.")
    return [("authorization", "Bearer " + pair.access_token)]


def test_login_then_get_person_clear_for_own_school_teacher(identity):
    from eduhub.identity.v1 import identity_pb2
    person = identity.GetPerson(identity_pb2.GetPersonRequest(id=STUDENT), metadata=login(identity, "teacher1"))
    assert person.id == STUDENT
    assert not person.masked
    assert len(person.national_id) == 18 and person.national_id[6:10] == person.birth_date[:4]
    assert len(person.name) >= 2 and "*" not in person.name
    assert person.org_path.endswith("/" + SCHOOL)


def test_the_same_minor_masked_for_a_county_official(identity):
    from eduhub.identity.v1 import identity_pb2
    clear = identity.GetPerson(identity_pb2.GetPersonRequest(id=STUDENT), metadata=login(identity, "teacher1"))
    masked = identity.GetPerson(identity_pb2.GetPersonRequest(id=STUDENT), metadata=login(identity, "county1"))
    assert masked.masked
    assert masked.name == clear.name[0] + "*" * (len(clear.name) - 1)
    assert masked.birth_date == clear.birth_date[:4]
    assert masked.national_id.startswith("ID-") and clear.national_id[6:] not in masked.national_id
    # A first-grader is under 14: contact details are removed, not just shortened.
    assert clear.address and masked.address == ""
    assert clear.ethnicity and masked.ethnicity == ""


def test_no_token_is_unauthenticated(identity):
    from eduhub.identity.v1 import identity_pb2
    with pytest.raises(grpc.RpcError) as error:
        identity.GetPerson(identity_pb2.GetPersonRequest(id=STUDENT))
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_wrong_password_and_unknown_user_look_the_same(identity):
    from eduhub.identity.v1 import identity_pb2
    errors = []
    for login_name in ["teacher1", "nobody-here"]:
        with pytest.raises(grpc.RpcError) as error:
            identity.Login(identity_pb2.LoginRequest(login=login_name, password="not the password"), timeout=30)
        errors.append((error.value.code(), error.value.details()))
    assert errors[0] == errors[1]
    assert errors[0][0] == grpc.StatusCode.UNAUTHENTICATED


def test_other_school_is_denied(identity):
    from eduhub.identity.v1 import identity_pb2
    with pytest.raises(grpc.RpcError) as error:
        identity.GetPerson(identity_pb2.GetPersonRequest(id="S5117030001-0001"), metadata=login(identity, "teacher1"))
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_catalog_publish_search_detail(stubs, seeded_node):
    from eduhub.catalog.v1 import catalog_pb2, catalog_pb2_grpc
    from eduhub.common.v1 import options_pb2
    from eduhub.identity.v1 import identity_pb2_grpc
    with grpc.insecure_channel(seeded_node.address) as channel:
        identity = identity_pb2_grpc.IdentityServiceStub(channel)
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        steward = login(identity, "steward1")
        # An ingested table of the district: published, then rows streamed (one of them bad).
        resource = catalog_pb2.Resource(
            code="interop-students", name="学生基础数据", summary="通川区学生学籍", theme="student",
            type=catalog_pb2.RESOURCE_TYPE_TABLE, publishing_system="学籍系统", responsible_org_code="511702",
            exchange_forms=["接口"], sharing_class=catalog_pb2.SHARING_CLASS_CONDITIONAL,
            opening_class=catalog_pb2.OPENING_CLASS_NOT_OPEN, update_cycle="每日",
            fields=[catalog_pb2.SchemaField(name="name", type=catalog_pb2.FIELD_TYPE_STRING, description="姓名",
                                            sensitivity=options_pb2.SENSITIVITY_SENSITIVE,
                                            masking=options_pb2.MASKING_KIND_NAME),
                    catalog_pb2.SchemaField(name="student_id", type=catalog_pb2.FIELD_TYPE_STRING, description="学号"),
                    catalog_pb2.SchemaField(name="grade", type=catalog_pb2.FIELD_TYPE_INTEGER, description="年级")],
            dataset=catalog_pb2.Dataset(ingested=catalog_pb2.IngestedSource(key_fields=["student_id"])))
        published = catalog.PublishResource(catalog_pb2.PublishResourceRequest(resource=resource), metadata=steward)
        assert published.responsible_org_path == "511700/511702"

        def rows():
            yield catalog_pb2.IngestRowsRequest(resource_code="interop-students", columns=["student_id", "name", "grade"])
            yield catalog_pb2.IngestRowsRequest(rows=[
                catalog_pb2.IngestRow(values=[catalog_pb2.Value(text="A1"), catalog_pb2.Value(text="王芳"), catalog_pb2.Value(integer=3)]),
                catalog_pb2.IngestRow(values=[catalog_pb2.Value(text="A2"), catalog_pb2.Value(text="李雷"), catalog_pb2.Value(text="三")]),
                catalog_pb2.IngestRow(values=[catalog_pb2.Value(text="A3"), catalog_pb2.Value(text="韩梅"), catalog_pb2.Value(text="5")]),
            ])
        ingested = catalog.IngestRows(rows(), metadata=steward)
        assert (ingested.received, ingested.upserted, ingested.rejected, ingested.row_count) == (3, 2, 1, 2)
        assert ingested.errors[0].row == 2 and "grade" in ingested.errors[0].message
        teacher = login(identity, "teacher1")
        found = catalog.SearchResources(catalog_pb2.SearchResourcesRequest(query="学生"), metadata=teacher)
        # The seed published the bureau's resources too; ours is among the matches.
        assert "interop-students" in [r.code for r in found.resources]
        assert found.total == len(found.resources) >= 2
        assert {f.filter for f in found.facets} >= {"theme", "publishing_system"}
        detail = catalog.GetResource(catalog_pb2.GetResourceRequest(code="interop-students"), metadata=teacher)
        assert detail.fields[0].masking == options_pb2.MASKING_KIND_NAME and detail.views == 1
        # A teacher of a school does not read the district's people: the sample is de-identified
        # (no keys, no names, not even a surname); the manual is there.
        assert [row.key for row in detail.sample] == ["", ""]
        assert "王" not in detail.sample[0].values[0].text and detail.sample[0].masked
        assert detail.sample[0].values[2].integer == 3
        assert detail.manual.method == "/eduhub.catalog.v1.CatalogService/ReadRows"
        assert json.loads(detail.manual.request_example)["code"] == "interop-students"
        page = catalog.ReadRows(catalog_pb2.ReadRowsRequest(code="interop-students"), metadata=steward)
        assert list(page.columns) == ["name", "student_id", "grade"] and len(page.rows) == 2


def test_work_order_submit_watch_act(stubs, seeded_node):
    import threading
    from eduhub.identity.v1 import identity_pb2_grpc
    from eduhub.workorder.v1 import workorder_pb2 as wo, workorder_pb2_grpc
    with grpc.insecure_channel(seeded_node.address) as channel:
        identity = identity_pb2_grpc.IdentityServiceStub(channel)
        orders = workorder_pb2_grpc.WorkOrderServiceStub(channel)
        teacher = login(identity, "teacher1")
        county = login(identity, "county1")
        submitted = orders.Submit(wo.SubmitRequest(order=wo.WorkOrder(
            kind=wo.ORDER_KIND_DATA_QUALITY, title="学籍数据缺失", description="三名学生缺少身份证号",
            priority=wo.PRIORITY_P2)), metadata=teacher)
        assert submitted.state == wo.ORDER_STATE_SUBMITTED and submitted.service_org_code == "511702"
        # The teacher tracks it: a Watch stream sees the county accept it.
        stream = orders.Watch(wo.WatchRequest(), metadata=teacher, timeout=20)
        accept = threading.Timer(0.3, lambda: orders.Act(
            wo.ActRequest(order_id=submitted.id, action=wo.ACTION_ACCEPT, expected_version=0), metadata=county))
        accept.start()
        change = next(stream)
        stream.cancel()
        accept.join()
        assert change.order.id == submitted.id and change.order.state == wo.ORDER_STATE_ACCEPTED
        assert [e.action for e in change.events] == [wo.ACTION_ACCEPT] and change.cursor
        # An illegal step names the state; a stale version is ABORTED.
        with pytest.raises(grpc.RpcError) as error:
            orders.Act(wo.ActRequest(order_id=submitted.id, action=wo.ACTION_VERIFY_CLOSE), metadata=teacher)
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "ACCEPTED" in error.value.details()
        with pytest.raises(grpc.RpcError) as error:
            orders.Act(wo.ActRequest(order_id=submitted.id, action=wo.ACTION_START, expected_version=5), metadata=county)
        assert error.value.code() == grpc.StatusCode.ABORTED
        detail = orders.GetOrder(wo.GetOrderRequest(id=submitted.id), metadata=teacher)
        assert [e.action for e in detail.timeline] == [wo.ACTION_ACCEPT]
        mine = orders.ListOrders(wo.ListOrdersRequest(queue=wo.QUEUE_SUBMITTED_BY_ME), metadata=teacher)
        assert [o.id for o in mine.orders] == [submitted.id]
        stats = orders.GetStats(wo.StatsRequest(org_code="511702"), metadata=county)
        assert stats.total >= 1 and stats.by_state["ACCEPTED"] >= 1


def test_sharing_subscribe_and_call_api(stubs, seeded_node):
    """A district bureau asks for a table, the steward approves, Python subscribes (rows, then a
    change as it happens, then a resume from the cursor) and calls a shared API over gRPC and over
    HTTP/JSON with the standard library."""
    import urllib.request
    from eduhub.catalog.v1 import catalog_pb2, catalog_pb2_grpc
    from eduhub.identity.v1 import identity_pb2_grpc
    from eduhub.sharing.v1 import sharing_pb2 as sh, sharing_pb2_grpc
    with grpc.insecure_channel(seeded_node.address) as channel:
        identity = identity_pb2_grpc.IdentityServiceStub(channel)
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        sharing = sharing_pb2_grpc.SharingServiceStub(channel)
        steward, bureau = login(identity, "steward1"), login(identity, "county1")
        fields = [catalog_pb2.SchemaField(name="student_id", type=catalog_pb2.FIELD_TYPE_STRING),
                  catalog_pb2.SchemaField(name="grade", type=catalog_pb2.FIELD_TYPE_INTEGER)]
        table = catalog_pb2.Resource(
            code="interop-grades", name="年级名单", type=catalog_pb2.RESOURCE_TYPE_TABLE, responsible_org_code="511702",
            sharing_class=catalog_pb2.SHARING_CLASS_CONDITIONAL, opening_class=catalog_pb2.OPENING_CLASS_NOT_OPEN,
            fields=fields, dataset=catalog_pb2.Dataset(ingested=catalog_pb2.IngestedSource(key_fields=["student_id"])))
        catalog.PublishResource(catalog_pb2.PublishResourceRequest(resource=table), metadata=steward)

        def rows(*pairs):
            yield catalog_pb2.IngestRowsRequest(resource_code="interop-grades", columns=["student_id", "grade"])
            yield catalog_pb2.IngestRowsRequest(rows=[
                catalog_pb2.IngestRow(values=[catalog_pb2.Value(text=k), catalog_pb2.Value(integer=g)]) for k, g in pairs])
        catalog.IngestRows(rows(("G1", 3), ("G2", 4), ("G3", 4)), metadata=steward)
        api = catalog_pb2.Resource(
            code="interop-grade-api", name="按年级查询", type=catalog_pb2.RESOURCE_TYPE_API, responsible_org_code="511702",
            sharing_class=catalog_pb2.SHARING_CLASS_UNCONDITIONAL, opening_class=catalog_pb2.OPENING_CLASS_NOT_OPEN,
            api=catalog_pb2.ApiDefinition(dataset_code="interop-grades", parameters=[
                catalog_pb2.ApiParameter(name="grade", field="grade", required=True)]))
        catalog.PublishResource(catalog_pb2.PublishResourceRequest(resource=api), metadata=steward)

        consumer = sh.Consumer(kind=sh.CONSUMER_KIND_ORG, id="511702")
        asked = sharing.RequestAccess(sh.RequestAccessRequest(terms=sh.AccessTerms(
            resource_code="interop-grades", consumer=consumer, purpose="学位测算")), metadata=bureau)
        assert asked.state == sh.REQUEST_STATE_PENDING_STEWARD and not asked.needs_security_officer
        with pytest.raises(grpc.RpcError) as error:
            next(iter(sharing.Subscribe(sh.SubscribeRequest(resource_code="interop-grades"), metadata=bureau)))
        assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
        decided = sharing.Decide(sh.DecideRequest(request_id=asked.id, decision=sh.DECISION_APPROVE), metadata=steward)
        assert decided.state == sh.REQUEST_STATE_APPROVED

        stream = sharing.Subscribe(sh.SubscribeRequest(resource_code="interop-grades", batch_size=2), metadata=bureau)
        seen, cursor = [], ""
        for message in stream:
            seen += [(c.key, c.row.values[1].integer) for c in message.changes]
            cursor = message.cursor
            if message.snapshot_done:
                catalog.IngestRows(rows(("G4", 5)), metadata=steward)
            if ("G4", 5) in seen:
                break
        stream.cancel()
        assert seen == [("G1", 3), ("G2", 4), ("G3", 4), ("G4", 5)]
        # Resumed from the cursor: only what came after.
        catalog.IngestRows(rows(("G2", 6)), metadata=steward)
        resumed = sharing.Subscribe(sh.SubscribeRequest(resource_code="interop-grades", cursor=cursor), metadata=bureau)
        first = next(iter(resumed))
        resumed.cancel()
        assert [(c.key, c.row.values[1].integer) for c in first.changes] == [("G2", 6)]

        granted = sharing.RequestAccess(sh.RequestAccessRequest(terms=sh.AccessTerms(
            resource_code="interop-grade-api", consumer=consumer, purpose="学位测算")), metadata=bureau)
        assert granted.state == sh.REQUEST_STATE_APPROVED
        answer = sharing.CallApi(sh.CallApiRequest(api_code="interop-grade-api", parameters={"grade": "4"}), metadata=bureau)
        assert list(answer.columns) == ["student_id", "grade"] and [r.key for r in answer.rows] == ["G3"]
        with pytest.raises(grpc.RpcError) as error:
            sharing.CallApi(sh.CallApiRequest(api_code="interop-grade-api", parameters={"grade": "four"}), metadata=bureau)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        request = urllib.request.Request(
            f"http://{seeded_node.address}/v1/apis/interop-grade-api", data=b'{"grade": 4}', method="POST",
            headers={"authorization": bureau[0][1], "content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.load(response)
        assert response.status == 200 and body["rows"] == [{"student_id": "G3", "grade": 4}]
