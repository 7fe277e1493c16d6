"""Function URL requests as AWS's front end hands them over: the x-forwarded-* and x-amzn-trace-id
headers, AWS's requestContext fields, and a FastAPI app behind Mangum that builds its redirect
URLs on the host-style URL."""
import http.client
import json
import re
import sys
import time

import pytest

from conftest import Server, create_py_function

ECHO = "import json\ndef handler(event, context):\n    return {'statusCode': 200, 'body': json.dumps(event)}\n"

FASTAPI_APP = """
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from mangum import Mangum

app = FastAPI()

@app.get("/start")
def start(request: Request):
    return RedirectResponse(str(request.url_for("landing")) + "?from=start", status_code=303)

@app.get("/landing", name="landing")
def landing(request: Request):
    return {"url": str(request.url), "base": str(request.base_url), "client": request.client.host}

handler = Mangum(app, lifespan="off")
"""


@pytest.fixture(scope="module")
def srv():
    # The venv's interpreter has fastapi, starlette, pydantic and mangum (tests/requirements.txt).
    s = Server("--python", sys.executable)
    yield s
    s.cleanup()


def url_for(srv, code, **kw):
    lam = srv.client("lambda")
    name = create_py_function(lam, code, Timeout=30, **kw)
    cfg = lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    m = re.fullmatch(r"http://([a-z0-9]{32})\.lambda-url\.us-east-1\.localhost:(\d+)/", cfg["FunctionUrl"])
    assert m, cfg["FunctionUrl"]
    return m.group(1)


def get(srv, host, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    conn.request("GET", path, headers={"Host": host, "User-Agent": "url-test/1.0", **(headers or {})})
    r = conn.getresponse()
    return r, r.read()


def test_forwarding_headers_and_request_context(srv):
    uid = url_for(srv, ECHO)
    host = f"{uid}.lambda-url.us-east-1.localhost:{srv.port}"
    before = int(time.time() * 1000)
    r, data = get(srv, host, "/p/q?x=1")
    assert r.status == 200, data
    ev = json.loads(data)
    h = ev["headers"]
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-port"] == str(srv.port)
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}", h["x-amzn-trace-id"]), h["x-amzn-trace-id"]
    assert h["host"] == host
    ctx = ev["requestContext"]
    assert set(ctx) == {"accountId", "apiId", "domainName", "domainPrefix", "http", "requestId", "routeKey",
                        "stage", "time", "timeEpoch"}
    assert ctx["accountId"] == "anonymous"
    assert ctx["apiId"] == uid and ctx["domainPrefix"] == uid
    assert ctx["domainName"] == host
    assert ctx["http"] == {"method": "GET", "path": "/p/q", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                           "userAgent": "url-test/1.0"}
    assert ctx["requestId"] == r.getheader("x-amzn-RequestId")
    assert ctx["routeKey"] == "$default" and ctx["stage"] == "$default"
    assert before <= ctx["timeEpoch"] <= int(time.time() * 1000)
    assert re.fullmatch(r"\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000", ctx["time"]), ctx["time"]


def test_client_trace_id_is_kept_and_forwarded_for_appended(srv):
    uid = url_for(srv, ECHO)
    host = f"{uid}.lambda-url.us-east-1.localhost:{srv.port}"
    r, data = get(srv, host, "/", headers={"X-Amzn-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793",
                                           "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
    assert r.status == 200, data
    h = json.loads(data)["headers"]
    assert h["x-amzn-trace-id"] == "Root=1-5759e988-bd862e3fe1be46a994272793"
    assert h["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert h["x-forwarded-proto"] == "http"


def test_fastapi_behind_mangum_redirects_on_the_host_style_url(srv):
    uid = url_for(srv, FASTAPI_APP, MemorySize=512)
    host = f"{uid}.lambda-url.us-east-1.localhost:{srv.port}"
    r, data = get(srv, host, "/start")
    assert r.status == 303, data
    assert r.getheader("location") == f"http://{host}/landing?from=start"
    r, data = get(srv, host, "/landing?from=start")
    assert r.status == 200, data
    assert json.loads(data) == {"url": f"http://{host}/landing?from=start", "base": f"http://{host}/",
                                "client": "127.0.0.1"}
