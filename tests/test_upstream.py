"""Services RustStack does not implement: forwarded unchanged to --upstream (a real moto server
from PyPI) and streamed back; without --upstream, a InternalFailure (501) in the service's protocol."""
import http.client as httpclient
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.config import Config

from conftest import BIN, CREDS, Server, create_py_function, expect_error, free_port, http, make_zip, wait_for

NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"})
DDB_MESSAGE = ("RustStack does not implement the dynamodb operation {op}; "
               "start RustStack with --upstream URL to forward it there")


@pytest.fixture(scope="module")
def moto():
    """One moto server for the module, on an ephemeral port."""
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def answers():
        assert proc.poll() is None, "moto_server exited early"
        try:
            with urllib.request.urlopen(url + "/moto-api/", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    wait_for(answers, 60, "moto_server to answer")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def forwarding(moto):
    s = Server("--upstream", moto, "--python", sys.executable)
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def alone():
    s = Server()
    yield s
    s.cleanup()


def moto_client(url, service):
    return boto3.client(service, endpoint_url=url, config=NO_RETRY, **CREDS)


def test_function_uses_dynamodb_through_the_upstream(forwarding, moto):
    lam = forwarding.client("lambda")
    src = (
        "import boto3\n"
        "def handler(event, context):\n"
        "    ddb = boto3.client('dynamodb')\n"
        "    t = event['table']\n"
        "    ddb.create_table(TableName=t, BillingMode='PAY_PER_REQUEST',\n"
        "        AttributeDefinitions=[{'AttributeName': 'pk', 'AttributeType': 'S'}],\n"
        "        KeySchema=[{'AttributeName': 'pk', 'KeyType': 'HASH'}])\n"
        "    ddb.put_item(TableName=t, Item={'pk': {'S': 'k1'}, 'v': {'S': 'hello'}})\n"
        "    got = ddb.get_item(TableName=t, Key={'pk': {'S': 'k1'}})['Item']\n"
        "    return {'item': got, 'endpoint': ddb.meta.endpoint_url}\n")
    name = create_py_function(lam, src, Timeout=60)
    r = lam.invoke(FunctionName=name, Payload=json.dumps({"table": "fwd-table"}))
    body = json.loads(r["Payload"].read())
    assert "FunctionError" not in r, body
    assert body == {"item": {"pk": {"S": "k1"}, "v": {"S": "hello"}}, "endpoint": forwarding.endpoint}
    # The data lives in moto: read it there directly.
    ddb = moto_client(moto, "dynamodb")
    assert ddb.describe_table(TableName="fwd-table")["Table"]["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert ddb.get_item(TableName="fwd-table", Key={"pk": {"S": "k1"}})["Item"] == {"pk": {"S": "k1"}, "v": {"S": "hello"}}
    # And nothing of it reached RustStack's S3.
    assert forwarding.client("s3").list_buckets()["Buckets"] == []


def test_moto_errors_come_back_unchanged(forwarding):
    ddb = forwarding.client("dynamodb")
    err = expect_error("ResourceNotFoundException", 400, ddb.describe_table, TableName="no-such-table")
    assert err["Error"]["Message"] == "Requested resource not found: Table: no-such-table not found"


def test_sts_other_than_get_caller_identity_is_forwarded(forwarding):
    sts = forwarding.client("sts")
    creds = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/r", RoleSessionName="s1")
    assert creds["AssumedRoleUser"]["Arn"] == "arn:aws:sts::123456789012:assumed-role/r/s1"
    # GetCallerIdentity stays RustStack's own.
    assert sts.get_caller_identity()["Arn"] == "arn:aws:iam::000000000000:root"


class Gate(BaseHTTPRequestHandler):
    """An upstream that sends one chunk, then waits for the test to release the second."""
    protocol_version = "HTTP/1.1"
    release = threading.Event()
    seen = {}

    def do_POST(self):
        n = int(self.headers.get("content-length", 0))
        Gate.seen = {"path": self.path, "body": self.rfile.read(n), "target": self.headers.get("x-amz-target"),
                     "host": self.headers.get("host"), "x-custom": self.headers.get("x-custom")}
        self.send_response(200)
        self.send_header("content-type", "application/x-amz-json-1.0")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for part in (b'{"first":', b'"second"}'):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.flush()
            if not Gate.release.wait(20):
                return
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args):
        pass


def test_answer_is_streamed_and_request_unchanged():
    gate = ThreadingHTTPServer(("127.0.0.1", 0), Gate)
    threading.Thread(target=gate.serve_forever, daemon=True).start()
    srv = Server("--upstream", f"http://127.0.0.1:{gate.server_address[1]}")
    try:
        Gate.release.clear()
        conn = httpclient.HTTPConnection("127.0.0.1", srv.port, timeout=20)
        auth = ("AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, "
                "SignedHeaders=host, Signature=0")
        conn.request("POST", "/some/path?a=1&b=%2F", body=b'{"TableName": "t"}',
                     headers={"authorization": auth, "x-amz-target": "DynamoDB_20120810.DescribeTable",
                              "content-type": "application/x-amz-json-1.0", "x-custom": "kept"})
        resp = conn.getresponse()
        assert resp.status == 200
        # The first chunk arrives while the upstream still holds the second.
        assert resp.read1(64) == b'{"first":'
        assert not Gate.release.is_set()
        Gate.release.set()
        assert resp.read() == b'"second"}'
        assert Gate.seen == {"path": "/some/path?a=1&b=%2F", "body": b'{"TableName": "t"}',
                             "target": "DynamoDB_20120810.DescribeTable", "host": f"127.0.0.1:{srv.port}",
                             "x-custom": "kept"}
    finally:
        Gate.release.set()
        srv.cleanup()
        gate.shutdown()


def test_unreachable_upstream_is_503_in_the_service_protocol():
    port = free_port()
    srv = Server("--upstream", f"http://127.0.0.1:{port}")
    try:
        ddb = srv.client("dynamodb")
        err = expect_error("ServiceUnavailable", 503, ddb.list_tables)
        assert err["Error"]["Message"].startswith(
            f"RustStack could not forward the dynamodb request to the upstream http://127.0.0.1:{port}: ")
    finally:
        srv.cleanup()


def s3_files(srv):
    root = os.path.join(srv.data_dir, "s3")
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)


def test_without_upstream_dynamodb_gets_not_implemented_in_json_1_0(alone):
    s3 = alone.client("s3")
    before = s3.list_buckets()["Buckets"]
    files_before = s3_files(alone)
    ddb = alone.client("dynamodb")
    err = expect_error("InternalFailure", 501, ddb.create_table, TableName="t", BillingMode="PAY_PER_REQUEST",
                       AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                       KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    assert err["Error"]["Message"] == DDB_MESSAGE.format(op="CreateTable")
    # The wire form is JSON 1.0 with __type.
    auth = ("AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, "
            "SignedHeaders=host, Signature=0")
    status, headers, body = http(alone, "POST", "/", body=b"{}", headers={
        "authorization": auth, "x-amz-target": "DynamoDB_20120810.ListTables",
        "content-type": "application/x-amz-json-1.0"})
    assert status == 501
    assert headers["content-type"] == "application/x-amz-json-1.0"
    assert json.loads(body) == {"__type": "InternalFailure", "message": DDB_MESSAGE.format(op="ListTables")}
    assert s3.list_buckets()["Buckets"] == before == []
    assert s3_files(alone) == files_before


def test_without_upstream_query_services_get_xml(alone):
    sts = alone.client("sts")
    err = expect_error("InternalFailure", 501, sts.assume_role,
                       RoleArn="arn:aws:iam::123456789012:role/r", RoleSessionName="s1")
    assert err["Error"]["Message"] == ("RustStack does not implement the sts operation AssumeRole; "
                                       "start RustStack with --upstream URL to forward it there")
    assert err["Error"]["Type"] == "Receiver"
    sns = alone.client("sns")  # query protocol (SQS is served by RustStack itself now)
    err = expect_error("InternalFailure", 501, sns.list_topics)
    assert err["Error"]["Message"] == ("RustStack does not implement the sns service; "
                                       "start RustStack with --upstream URL to forward it there")


def test_service_endpoint_reaches_dynamodb_directly(moto):
    # No --upstream: the function's DynamoDB calls go straight to moto through AWS_ENDPOINT_URL_DYNAMODB.
    srv = Server("--service-endpoint", f"dynamodb={moto}", "--service-endpoint", "iot-data=http://127.0.0.1:9",
                 "--python", sys.executable)
    try:
        lam = srv.client("lambda")
        src = (
            "import os, boto3\n"
            "def handler(event, context):\n"
            "    ddb = boto3.client('dynamodb')\n"
            "    ddb.create_table(TableName='direct-table', BillingMode='PAY_PER_REQUEST',\n"
            "        AttributeDefinitions=[{'AttributeName': 'pk', 'AttributeType': 'S'}],\n"
            "        KeySchema=[{'AttributeName': 'pk', 'KeyType': 'HASH'}])\n"
            "    return {k: v for k, v in os.environ.items() if k.startswith('AWS_ENDPOINT_URL')} | \\\n"
            "        {'used': ddb.meta.endpoint_url}\n")
        name = create_py_function(lam, src, Timeout=60)
        r = lam.invoke(FunctionName=name)
        body = json.loads(r["Payload"].read())
        assert "FunctionError" not in r, body
        assert body == {"AWS_ENDPOINT_URL": srv.endpoint, "AWS_ENDPOINT_URL_DYNAMODB": moto,
                        "AWS_ENDPOINT_URL_IOT_DATA": "http://127.0.0.1:9", "used": moto}
        assert moto_client(moto, "dynamodb").describe_table(TableName="direct-table")["Table"]["TableName"] == "direct-table"
        # The function's own variable wins over the flag.
        lam.update_function_configuration(FunctionName=name,
                                          Environment={"Variables": {"AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:7"}})
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        src2 = "import os\ndef handler(e, c):\n    return os.environ['AWS_ENDPOINT_URL_DYNAMODB']\n"
        lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": src2}))
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        r = lam.invoke(FunctionName=name)
        assert json.loads(r["Payload"].read()) == "http://127.0.0.1:7"
    finally:
        srv.cleanup()


def test_service_endpoint_must_be_service_equals_url(tmp_path):
    proc = subprocess.run([BIN, "--port", str(free_port()),
                           "--data-dir", str(tmp_path), "--service-endpoint", "dynamodb"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "--service-endpoint expects SERVICE=http(s)://..., got 'dynamodb'" in proc.stderr
