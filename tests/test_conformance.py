"""Runtime API conformance, driven by hand over HTTP (PROTOCOL.md §3): headers on /next,
status codes, request-id checks, size limits and long polling. The endpoint comes from
`ruststack attach --print-env --keep-timeout`, so the test process itself is the runtime."""
import base64
import concurrent.futures as cf
import http.client
import json
import signal
import socket
import subprocess
import time

import pytest

from conftest import BIN, create_py_function, wait_for
from test_attach import client_env


class Runtime:
    def __init__(self, server, name):
        self.p = subprocess.Popen([BIN, "attach", name, "--endpoint", server.endpoint, "--print-env", "--keep-timeout"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=client_env())
        self.env = {}
        for line in self.p.stdout:
            k, _, v = line.rstrip("\n").partition("=")
            self.env[k] = v
            if "AWS_LAMBDA_RUNTIME_API" in self.env and "_HANDLER" in self.env and "AWS_REGION" in self.env:
                break
        host, port = self.env["AWS_LAMBDA_RUNTIME_API"].split(":")
        self.host, self.port = host, int(port)

    def request(self, method, path, body=None, headers=None, timeout=30):
        c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        c.request(method, "/2018-06-01/runtime" + path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def close(self):
        self.p.send_signal(signal.SIGINT)
        self.p.wait(timeout=10)


@pytest.fixture
def runtime(server, lam):
    name = create_py_function(lam, "def handler(e, c): return 'deployed'\n", Timeout=30)
    rt = Runtime(server, name)
    rt.name = name
    yield rt
    rt.close()


def test_next_headers_and_response(runtime, lam):
    cc = base64.b64encode(json.dumps({"custom": {"a": 1}}).encode()).decode()
    with cf.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(lambda: lam.invoke(FunctionName=runtime.name, Payload=b'{"hello": "runtime"}', ClientContext=cc))
        before = int(time.time() * 1000)
        status, h, body = runtime.request("GET", "/invocation/next")
        assert status == 200
        assert body == b'{"hello": "runtime"}'
        assert h["content-type"] == "application/json"
        rid = h["lambda-runtime-aws-request-id"]
        assert len(rid) == 36
        deadline = int(h["lambda-runtime-deadline-ms"])
        assert before + 29000 <= deadline <= before + 31000
        assert h["lambda-runtime-invoked-function-arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{runtime.name}"
        assert h["lambda-runtime-trace-id"].startswith("Root=1-")
        assert json.loads(h["lambda-runtime-client-context"]) == {"custom": {"a": 1}}
        # Unknown and foreign ids are refused.
        status, _, b = runtime.request("POST", "/invocation/not-a-real-id/response", body=b"1")
        assert status == 400 and json.loads(b)["errorType"] == "InvalidRequestID"
        status, _, b = runtime.request("POST", f"/invocation/{rid}/response", body=b'{"ok": true}',
                                       headers={"Content-Type": "application/json"})
        assert status == 202 and json.loads(b) == {"status": "OK"}
        # A second answer for the same id is rejected.
        status, _, b = runtime.request("POST", f"/invocation/{rid}/response", body=b'"again"')
        assert status == 400 and json.loads(b)["errorType"] == "InvalidRequestID"
        r = fut.result()
    assert json.load(r["Payload"]) == {"ok": True}
    assert "FunctionError" not in r


def test_error_body_passes_through(runtime, lam):
    custom = b'{"errorType": "My.Custom", "errorMessage": "exact bytes", "extra": [1, 2]}'
    with cf.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(lambda: lam.invoke(FunctionName=runtime.name, Payload=b"{}"))
        _, h, _ = runtime.request("GET", "/invocation/next")
        rid = h["lambda-runtime-aws-request-id"]
        status, _, _ = runtime.request("POST", f"/invocation/{rid}/error", body=custom,
                                       headers={"Lambda-Runtime-Function-Error-Type": "My.Custom"})
        assert status == 202
        r = fut.result()
    assert r["FunctionError"] == "Unhandled"
    assert r["Payload"].read() == custom


def test_response_over_6mb(runtime, lam):
    with cf.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(lambda: lam.invoke(FunctionName=runtime.name, Payload=b"{}"))
        _, h, _ = runtime.request("GET", "/invocation/next")
        rid = h["lambda-runtime-aws-request-id"]
        status, _, b = runtime.request("POST", f"/invocation/{rid}/response", body=b"x" * (6 * 1024 * 1024 + 101))
        assert status == 413 and json.loads(b)["errorType"] == "RequestEntityTooLarge"
        r = fut.result()
    assert r["FunctionError"] == "Unhandled"
    assert json.load(r["Payload"])["errorType"] == "Function.ResponseSizeTooLarge"


def test_next_long_polls(runtime, lam):
    # With nothing to do, /next neither returns 204 nor an error: it waits.
    t = time.time()
    with pytest.raises(socket.timeout):
        runtime.request("GET", "/invocation/next", timeout=1.5)
    assert time.time() - t >= 1.4
    # The abandoned poll does not block the next one.
    with cf.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(lambda: lam.invoke(FunctionName=runtime.name, Payload=b'"after"'))
        status, h, body = runtime.request("GET", "/invocation/next")
        assert status == 200 and body == b'"after"'
        runtime.request("POST", f"/invocation/{h['lambda-runtime-aws-request-id']}/response", body=b'"done"')
        assert json.load(fut.result()["Payload"]) == "done"


def test_concurrent_next_is_rejected(runtime, lam):
    # Two /next at once, whichever arrives first: one is refused at once, the other waits
    # for the invocation.
    with cf.ThreadPoolExecutor(3) as ex:
        pair = [ex.submit(runtime.request, "GET", "/invocation/next") for _ in range(2)]
        done, waiting = cf.wait(pair, timeout=10, return_when=cf.FIRST_COMPLETED)
        assert len(done) == 1 and len(waiting) == 1, "expected one /next refused and one waiting"
        status, _, b = done.pop().result()
        assert status == 403 and json.loads(b)["errorType"] == "InvalidStateTransition"
        fut = ex.submit(lambda: lam.invoke(FunctionName=runtime.name, Payload=b"{}"))
        status, h, _ = waiting.pop().result()
        runtime.request("POST", f"/invocation/{h['lambda-runtime-aws-request-id']}/response", body=b"1")
        assert json.load(fut.result()["Payload"]) == 1


def test_init_error_becomes_invoke_body(server, runtime, lam):
    body = b'{"errorMessage": "init went wrong", "errorType": "Runtime.Custom", "requestId": "", "stackTrace": []}'
    with cf.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(lambda: lam.invoke(FunctionName=runtime.name, Payload=b"{}"))
        # The init error must meet the invocation in flight (posted before it, the attachment
        # ends and the invoke runs the deployed code): wait for the server's log of its hand-over.
        wait_for(lambda: any("invocation → attached runtime" in line and f"function={runtime.name} " in line
                             for line in server.logs().splitlines()), 10, "the invocation to reach the runtime")
        status, _, _ = runtime.request("POST", "/init/error", body=body,
                                       headers={"Lambda-Runtime-Function-Error-Type": "Runtime.Custom"})
        assert status == 202
        r = fut.result()
    assert r["FunctionError"] == "Unhandled"
    assert r["Payload"].read() == body


def test_unknown_path_is_404(runtime):
    status, _, _ = runtime.request("GET", "/nope")
    assert status == 404
