"""Response streaming for real: a Node.js handler's writes reach the caller as it makes them,
through InvokeWithResponseStream (boto3's EventStream) and a RESPONSE_STREAM function URL (a raw
HTTP client), with mid-stream errors and timeouts in InvokeComplete.

The handlers below write a first chunk, then wait until the test creates a release file, and
only then write the rest and return. The test creates that file only after it has received the
first chunk: had the server buffered the response, the first chunk would never come before the
handler's own bounded wait ran out (and the body would then say "unreleased")."""
import base64
import http.client
import json
import os
import socket
import subprocess

import pytest

from conftest import ROOT, Server, make_zip, unique, wait_for
from test_node import create_node

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "rust-runtime")
FIXTURE_TARGET = os.path.join(ROOT, "target", "fixtures")
PROVIDED_IMAGE = "ruststack/lambda-provided:al2023"
NODE_IMAGE = "ruststack/lambda-nodejs:18"

# Waits (bounded: 15 s) for the file named by event.release, between two writes.
GATED = """
import fs from 'node:fs';

const released = async (path) => {
  const until = Date.now() + 15000;
  while (!fs.existsSync(path)) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
};

export const handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  if (event.rawPath) {
    responseStream = awslambda.HttpResponseStream.from(responseStream, {
      statusCode: 201, headers: {'content-type': 'text/plain', 'x-streamed': 'yes'}, cookies: ['k=v']});
  }
  const release = event.rawPath ? event.queryStringParameters.release : event.release;
  responseStream.write('first;');
  const ok = await released(release);
  responseStream.write(ok ? 'second;' : 'unreleased;');
  if (event.fail || (event.queryStringParameters && event.queryStringParameters.fail)) {
    throw new Error('boom mid-stream');
  }
  responseStream.end('last');
});
"""

NOTHING_WRITTEN = """
export const handler = awslambda.streamifyResponse(async () => {
  throw new TypeError('failed before writing');
});
"""

HANGS = """
export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('started;');
  await new Promise(() => {});
});
"""


@pytest.fixture(scope="module")
def lam(srv):
    return srv.client("lambda")


@pytest.fixture(scope="module")
def gated(lam):
    return create_node(lam, {"index.mjs": GATED}, Timeout=30)


def events_of(stream):
    """(kind, value) for each event: the PayloadChunk bytes, or the InvokeComplete dict."""
    for ev in stream:
        if "PayloadChunk" in ev:
            yield "chunk", ev["PayloadChunk"]["Payload"]
        elif "InvokeComplete" in ev:
            yield "complete", ev["InvokeComplete"]
        else:
            yield "other", ev


def test_first_chunk_reaches_the_sdk_before_the_handler_returns(lam, gated, tmp_path):
    release = tmp_path / "release"
    resp = lam.invoke_with_response_stream(FunctionName=gated, Payload=json.dumps({"release": str(release)}),
                                           LogType="Tail")
    assert resp["StatusCode"] == 200
    events = events_of(resp["EventStream"])
    kind, first = next(events)
    assert (kind, first) == ("chunk", b"first;")
    # Only now may the handler go on.
    release.write_text("go")
    rest = list(events)
    body = first + b"".join(v for k, v in rest if k == "chunk")
    assert body == b"first;second;last", body
    completes = [v for k, v in rest if k == "complete"]
    assert len(completes) == 1 and rest[-1][0] == "complete", rest
    assert "ErrorCode" not in completes[0], completes[0]
    log = base64.b64decode(completes[0]["LogResult"]).decode()
    assert "START RequestId:" in log and "REPORT RequestId:" in log, log


def test_mid_stream_error_is_in_invoke_complete(lam, gated, tmp_path):
    release = tmp_path / "release"
    release.write_text("go")
    resp = lam.invoke_with_response_stream(FunctionName=gated, LogType="Tail",
                                           Payload=json.dumps({"release": str(release), "fail": True}))
    events = list(events_of(resp["EventStream"]))
    body = b"".join(v for k, v in events if k == "chunk")
    assert body == b"first;second;", events
    kind, complete = events[-1]
    assert kind == "complete", events
    assert complete["ErrorCode"] == "Error", complete
    assert "boom mid-stream" in complete["ErrorDetails"], complete
    log = base64.b64decode(complete["LogResult"]).decode()
    assert "Invoke Error" in log and "boom mid-stream" in log, log
    # The environment stays healthy: the next invocation streams as before.
    again = lam.invoke_with_response_stream(FunctionName=gated, Payload=json.dumps({"release": str(release)}))
    assert b"".join(v for k, v in events_of(again["EventStream"]) if k == "chunk") == b"first;second;last"


def test_sync_invoke_of_a_streaming_handler_gets_the_whole_body(lam, gated, tmp_path):
    release = tmp_path / "release"
    release.write_text("go")
    r = lam.invoke(FunctionName=gated, Payload=json.dumps({"release": str(release)}))
    assert "FunctionError" not in r and r["Payload"].read() == b"first;second;last"
    r = lam.invoke(FunctionName=gated, Payload=json.dumps({"release": str(release), "fail": True}))
    assert r["FunctionError"] == "Unhandled"
    assert json.loads(r["Payload"].read())["errorMessage"] == "boom mid-stream"


def test_error_before_any_write(lam):
    name = create_node(lam, {"index.mjs": NOTHING_WRITTEN})
    events = list(events_of(lam.invoke_with_response_stream(FunctionName=name, Payload=b"{}")["EventStream"]))
    assert [k for k, _ in events] == ["complete"], events
    assert events[0][1]["ErrorCode"] == "TypeError"
    assert "failed before writing" in events[0][1]["ErrorDetails"]


def test_timeout_mid_stream(lam):
    name = create_node(lam, {"index.mjs": HANGS}, Timeout=1)
    events = list(events_of(lam.invoke_with_response_stream(FunctionName=name, Payload=b"{}")["EventStream"]))
    assert events[0] == ("chunk", b"started;"), events
    assert events[-1][0] == "complete" and events[-1][1]["ErrorCode"] == "Sandbox.Timedout", events
    # A fresh environment serves the next one.
    events = list(events_of(lam.invoke_with_response_stream(FunctionName=name, Payload=b"{}")["EventStream"]))
    assert events[0] == ("chunk", b"started;") and events[-1][1]["ErrorCode"] == "Sandbox.Timedout"


def url_host(lam, name, mode="RESPONSE_STREAM"):
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE", InvokeMode=mode)["FunctionUrl"]
    return url.split("//")[1].rstrip("/")


def read_until(resp, want, limit=1 << 20):
    """Reads what the server has sent so far (chunk by chunk) until `want` is among it."""
    got = b""
    while want not in got:
        data = resp.read1(65536)
        assert data, f"the body ended before {want!r}: {got!r}"
        got += data
        assert len(got) < limit
    return got


def test_response_stream_url_streams_the_body(srv, lam, gated, tmp_path):
    release = tmp_path / "release"
    host = url_host(lam, gated)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.request("GET", f"/page?release={release}", headers={"Host": host})
    resp = conn.getresponse()
    # The head comes from the HttpResponseStream prelude, before the handler has finished.
    assert resp.status == 201
    assert resp.getheader("content-type") == "text/plain" and resp.getheader("x-streamed") == "yes"
    assert resp.getheader("set-cookie") == "k=v"
    assert resp.getheader("transfer-encoding") == "chunked"
    first = read_until(resp, b"first;")
    assert first == b"first;"
    release.write_text("go")
    body = first + resp.read()
    assert body == b"first;second;last", body
    conn.close()


def test_response_stream_url_error_mid_stream_ends_the_body(srv, lam, tmp_path):
    name = create_node(lam, {"index.mjs": GATED}, Timeout=30)
    host = url_host(lam, name)
    release = tmp_path / "release"
    release.write_text("go")
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.request("GET", f"/page?release={release}&fail=1", headers={"Host": host})
    resp = conn.getresponse()
    assert resp.status == 201
    # What was written before the error arrives; the body then ends.
    assert resp.read() == b"first;second;"
    conn.close()


def test_buffered_url_of_a_streaming_handler_answers_whole(srv, lam, tmp_path):
    name = create_node(lam, {"index.mjs": GATED}, Timeout=30)
    host = url_host(lam, name, mode="BUFFERED")
    release = tmp_path / "release"
    release.write_text("go")
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.request("GET", f"/page?release={release}", headers={"Host": host})
    resp = conn.getresponse()
    assert resp.status == 201 and resp.getheader("content-length") == str(len(b"first;second;last"))
    assert resp.read() == b"first;second;last"
    conn.close()


def test_streamed_log_reaches_cloudwatch(srv, lam, gated, tmp_path):
    release = tmp_path / "release"
    release.write_text("go")
    resp = lam.invoke_with_response_stream(FunctionName=gated, Payload=json.dumps({"release": str(release)}))
    request_id = resp["ResponseMetadata"]["RequestId"]
    list(resp["EventStream"])
    logs = srv.client("logs")

    def report():
        evs = logs.filter_log_events(logGroupName=f"/aws/lambda/{gated}")["events"]
        return any(e["message"].startswith(f"REPORT RequestId: {request_id}") for e in evs)

    wait_for(report, timeout=10, what="the streamed invocation's REPORT line in CloudWatch Logs")


# ---------------------------------------------------------------- the Rust runtime's streaming

@pytest.fixture(scope="module")
def rust_stream():
    """A provided.al2023 bootstrap built with the `lambda_runtime` crate's streaming responses."""
    subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path",
                    os.path.join(FIXTURE, "Cargo.toml"), "--target-dir", FIXTURE_TARGET], check=True)
    with open(os.path.join(FIXTURE_TARGET, "release", "stream-bootstrap"), "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def docker_srv():
    if os.environ.get("RUSTSTACK_SKIP_DOCKER") == "1":
        pytest.skip("RUSTSTACK_SKIP_DOCKER=1: Docker tests opted out")
    s = Server("--lambda-executor", "docker", "--lambda-runtime-image", f"provided.al2023={PROVIDED_IMAGE}",
               "--lambda-runtime-image", f"nodejs18.x={NODE_IMAGE}")
    yield s
    s.cleanup()


@pytest.mark.parametrize("executor", ["subprocess", "docker"])
def test_rust_runtime_streams_through_a_url(request, executor, rust_stream):
    """The official Rust client's streamed response (its prelude, then chunks) reaches an HTTP
    client chunk by chunk: the handler waits on a TCP gate that the test opens only after the
    first chunk arrived. In docker mode the container (host network) reaches the same gate."""
    server = request.getfixturevalue("srv" if executor == "subprocess" else "docker_srv")
    client = server.client("lambda")
    name = unique("rstream")
    client.create_function(FunctionName=name, Runtime="provided.al2023", Handler="bootstrap.handler", Timeout=30,
                           Role="arn:aws:iam::000000000000:role/lambda",
                           Code={"ZipFile": make_zip({"bootstrap*": rust_stream})})
    host = url_host(client, name)
    gate = socket.socket()
    gate.bind(("127.0.0.1", 0))
    gate.listen(1)
    gate.settimeout(20)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("GET", f"/?gate=127.0.0.1:{gate.getsockname()[1]}", headers={"Host": host})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("content-type") == "application/octet-stream"
        first = read_until(resp, b"first;")
        assert first == b"first;"
        # Only now may the handler go on: it is waiting at the gate.
        waiter, _ = gate.accept()
        waiter.sendall(b"x")
        waiter.close()
        body = first + resp.read()
        assert body == b"first;second;last", body
    finally:
        conn.close()
        gate.close()


# The docker variant of GATED: the container (host network) cannot see the test's files, so
# the handler waits at a TCP gate the test opens (bounded: 15 s), between two writes.
TCP_GATED = """
import net from 'node:net';

const gate = (where) => new Promise((resolve) => {
  const [host, port] = where.split(':');
  const sock = net.connect(Number(port), host);
  const timer = setTimeout(() => { sock.destroy(); resolve(false); }, 15000);
  sock.once('data', () => { clearTimeout(timer); sock.destroy(); resolve(true); });
  sock.once('error', () => { clearTimeout(timer); resolve(false); });
});

export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('first;');
  const ok = await gate(event.gate);
  responseStream.write(ok ? 'second;' : 'unreleased;');
  responseStream.end('last');
});
"""


def test_node_streams_in_docker_before_the_handler_returns(docker_srv):
    """nodejs18.x in ruststack/lambda-nodejs:18: the bundled client's streamifyResponse writes
    through the container's Runtime API to InvokeWithResponseStream. The handler waits at a TCP
    gate that the test opens only after the first chunk arrived: a buffered response would
    never bring that chunk, and the body would say "unreleased"."""
    lam = docker_srv.client("lambda")
    name = unique("dnstream")
    lam.create_function(FunctionName=name, Runtime="nodejs18.x", Handler="index.handler", Timeout=30,
                        Role="arn:aws:iam::000000000000:role/lambda",
                        Code={"ZipFile": make_zip({"index.mjs": TCP_GATED})})
    gate = socket.socket()
    gate.bind(("127.0.0.1", 0))
    gate.listen(1)
    gate.settimeout(20)
    try:
        resp = lam.invoke_with_response_stream(FunctionName=name, LogType="Tail",
                                               Payload=json.dumps({"gate": f"127.0.0.1:{gate.getsockname()[1]}"}))
        assert resp["StatusCode"] == 200
        events = events_of(resp["EventStream"])
        kind, first = next(events)
        assert (kind, first) == ("chunk", b"first;")
        # Only now may the handler go on: it is waiting at the gate.
        waiter, _ = gate.accept()
        waiter.sendall(b"x")
        waiter.close()
        rest = list(events)
    finally:
        gate.close()
    body = first + b"".join(v for k, v in rest if k == "chunk")
    assert body == b"first;second;last", body
    completes = [v for k, v in rest if k == "complete"]
    assert len(completes) == 1 and rest[-1][0] == "complete", rest
    assert "ErrorCode" not in completes[0], completes[0]
    log = base64.b64decode(completes[0]["LogResult"]).decode()
    assert "START RequestId:" in log and "REPORT RequestId:" in log, log
