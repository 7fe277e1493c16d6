"""CloudWatch Logs for functions: each invocation's log (START, output, END, REPORT) lands in
/aws/lambda/<function>, in the environment's log stream, readable with boto3's logs client and
the AWS CLI; PutLogEvents and friends work for a program's own groups."""
import json
import os
import re
import subprocess
import sys
import time

import pytest
from botocore.exceptions import ClientError

from conftest import create_py_function, unique

LOUD = """
import os
def handler(event, context):
    print("hello from", event["who"])
    print("stream is", os.environ["AWS_LAMBDA_LOG_STREAM_NAME"])
    if event.get("fail"):
        raise ValueError("it failed")
    return context.aws_request_id
"""


@pytest.fixture(scope="module")
def logs(server):
    return server.client("logs")


def test_invocation_logs_land_in_the_function_group(lam, logs):
    name = create_py_function(lam, LOUD)
    ids = [json.loads(lam.invoke(FunctionName=name, Payload=json.dumps({"who": w}))["Payload"].read()) for w in ("a", "b")]
    lam.invoke(FunctionName=name, Payload=json.dumps({"who": "c", "fail": True}))
    group = f"/aws/lambda/{name}"
    # By its own name: the shared server holds more groups than one page (50) by now.
    assert group in [g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]]
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert len(streams) == 1, "one warm environment, one stream"
    stream = streams[0]["logStreamName"]
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", stream), stream
    events = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
    messages = [e["message"] for e in events]
    assert messages[0] == f"START RequestId: {ids[0]} Version: $LATEST"
    assert "hello from a" in messages and f"stream is {stream}" in messages
    assert f"END RequestId: {ids[0]}" in messages
    assert any(m.startswith(f"REPORT RequestId: {ids[0]}\tDuration: ") for m in messages)
    assert all(e["timestamp"] > 0 and e["ingestionTime"] >= e["timestamp"] for e in events)
    # Filter patterns: terms, phrases, exclusions.
    found = logs.filter_log_events(logGroupName=group, filterPattern='"hello from"')["events"]
    assert [e["message"] for e in found] == ["hello from a", "hello from b", "hello from c"]
    assert all(e["logStreamName"] == stream and e["eventId"] for e in found)
    errors = logs.filter_log_events(logGroupName=group, filterPattern="ValueError -START")["events"]
    assert errors and all("ValueError" in e["message"] for e in errors)
    # Paging: a limit of 2 walks every event exactly once.
    seen, token = [], None
    while True:
        kw = {"nextToken": token} if token else {}
        page = logs.filter_log_events(logGroupName=group, limit=2, **kw)
        seen += [e["eventId"] for e in page["events"]]
        token = page.get("nextToken")
        if not token:
            break
    assert len(seen) == len(set(seen)) == len(events)


def test_own_groups_and_errors(logs):
    group = "/my/app/" + unique("g")
    logs.create_log_group(logGroupName=group)
    with pytest.raises(ClientError) as ei:
        logs.create_log_group(logGroupName=group)
    assert ei.value.response["Error"]["Code"] == "ResourceAlreadyExistsException"
    logs.create_log_stream(logGroupName=group, logStreamName="s1")
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName="s1",
                        logEvents=[{"timestamp": now - 10, "message": "first"}, {"timestamp": now, "message": "second"}])
    got = logs.get_log_events(logGroupName=group, logStreamName="s1", startFromHead=True)
    assert [e["message"] for e in got["events"]] == ["first", "second"]
    again = logs.get_log_events(logGroupName=group, logStreamName="s1", nextToken=got["nextForwardToken"])
    assert again["events"] == []
    for call, kw in [(logs.get_log_events, dict(logGroupName=group + "-nope", logStreamName="s1")),
                     (logs.get_log_events, dict(logGroupName=group, logStreamName="nope")),
                     (logs.filter_log_events, dict(logGroupName=group + "-nope"))]:
        with pytest.raises(ClientError) as ei:
            call(**kw)
        assert ei.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    logs.delete_log_group(logGroupName=group)
    assert not logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]


def test_logs_errors_are_aws_json(server):
    """Logs errors, including the server's own body-size refusal, are AWS JSON 1.1 errors with
    x-amzn-ErrorType, so every SDK reads the code."""
    from conftest import http
    target = {"X-Amz-Target": "Logs_20140328.CreateLogGroup", "Content-Type": "application/x-amz-json-1.1"}
    status, headers, body = http(server, "POST", "/", b"{" + b" " * (3 * 1024 * 1024) + b"}", target)
    assert status == 413
    assert headers["x-amzn-ErrorType"] == "InvalidParameterException"
    assert headers["Content-Type"] == "application/x-amz-json-1.1"
    assert headers["x-amzn-RequestId"]
    assert json.loads(body) == {"__type": "InvalidParameterException", "message": "Request body too large"}
    status, headers, body = http(server, "POST", "/", b"{}", {**target, "X-Amz-Target": "Logs_20140328.Nope"})
    assert status == 400
    assert headers["x-amzn-ErrorType"] == "UnknownOperationException"
    assert json.loads(body) == {"__type": "UnknownOperationException",
                                "message": "Operation Nope is not supported by RustStack"}
    # The server's own endpoints answer in REST-JSON, with the header too.
    status, headers, body = http(server, "GET", "/_ruststack/nope")
    assert status == 404 and headers["x-amzn-ErrorType"] == "NotFound" and headers["x-amzn-RequestId"]
    assert json.loads(body) == {"Type": "User", "message": "unknown path /_ruststack/nope"}


def test_aws_cli_reads_function_logs(lam, server):
    name = create_py_function(lam, LOUD)
    lam.invoke(FunctionName=name, Payload=json.dumps({"who": "cli"}))
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1",
               AWS_PAGER="", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    out = subprocess.run([aws, "--endpoint-url", server.endpoint, "--output", "json", "logs", "filter-log-events",
                          "--log-group-name", f"/aws/lambda/{name}", "--filter-pattern", "hello"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [e["message"] for e in json.loads(out.stdout)["events"]] == ["hello from cli"]
