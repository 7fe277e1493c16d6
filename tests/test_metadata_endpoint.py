"""The execution-environment metadata endpoint, as AWS's Runtime Interface Emulator serves it:
AWS_LAMBDA_METADATA_API (the Runtime API's host:port) and AWS_LAMBDA_METADATA_TOKEN in the
function's environment; GET /2026-01-15/metadata/execution-environment with
`Authorization: Bearer <token>` answers `{"AvailabilityZoneID": ...}` with a private 12-hour cache;
no token, a wrong one or no `Bearer ` prefix get 401; another method gets 405. Called from a
handler with urllib, in both executors."""
import json
import os

import boto3
import pytest
from botocore.config import Config

from conftest import Server, create_py_function

PY_IMAGE = "ruststack/lambda-python:3.11"
needs_docker = pytest.mark.skipif(os.environ.get("RUSTSTACK_SKIP_DOCKER") == "1",
                                  reason="RUSTSTACK_SKIP_DOCKER=1: Docker tests opted out")

PROBE = """
import os, urllib.request, urllib.error

def call(auth=None, method="GET"):
    url = "http://%s/2026-01-15/metadata/execution-environment" % os.environ["AWS_LAMBDA_METADATA_API"]
    req = urllib.request.Request(url, method=method)
    if auth is not None:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return [r.status, r.headers.get("Content-Type"), r.headers.get("Cache-Control"), r.read().decode()]
    except urllib.error.HTTPError as e:
        return [e.code, e.headers.get("Content-Type"), None, e.read().decode()]

def handler(event, context):
    token = os.environ["AWS_LAMBDA_METADATA_TOKEN"]
    return {
        "api": os.environ["AWS_LAMBDA_METADATA_API"],
        "runtime_api": os.environ["AWS_LAMBDA_RUNTIME_API"],
        "token": token,
        "good": call("Bearer " + token),
        "none": call(),
        "wrong": call("Bearer not-the-token"),
        "no_prefix": call(token),
        "post": call("Bearer " + token, method="POST"),
    }
"""


def check(lam, az="use1-az1"):
    name = create_py_function(lam, PROBE, Environment={"Variables": {"AWS_LAMBDA_METADATA_TOKEN": "mine"}})
    r = lam.invoke(FunctionName=name, Payload=b"{}")
    out = json.loads(r["Payload"].read())
    assert "FunctionError" not in r, out
    assert out["api"] == out["runtime_api"], out
    assert len(out["token"]) == 36 and out["token"] != "mine", "the token is the platform's, not the function's"
    assert out["good"] == [200, "application/json", "private, max-age=43200, immutable",
                           json.dumps({"AvailabilityZoneID": az}, separators=(",", ":"))], out["good"]
    for case in ("none", "wrong", "no_prefix"):
        assert out[case] == [401, "text/plain; charset=utf-8", None, "Unauthorized\n"], (case, out[case])
    assert out["post"][0] == 405, out["post"]
    # Another environment gets a token of its own.
    other = create_py_function(lam, PROBE)
    r = lam.invoke(FunctionName=other, Payload=b"{}")
    assert json.loads(r["Payload"].read())["token"] != out["token"]


def test_subprocess_metadata_endpoint(server):
    check(server.client("lambda"))


def test_metadata_zone_follows_the_region(server):
    lam = boto3.client("lambda", endpoint_url=server.endpoint, region_name="eu-central-1",
                       aws_access_key_id="test", aws_secret_access_key="test",
                       config=Config(retries={"max_attempts": 1}))
    check(lam, az="euc1-az1")


@pytest.fixture(scope="module")
def docker_server():
    s = Server("--lambda-executor", "docker", "--lambda-runtime-image", f"python3.11={PY_IMAGE}")
    yield s
    s.cleanup()


@needs_docker
def test_docker_metadata_endpoint(docker_server):
    check(docker_server.client("lambda"))
