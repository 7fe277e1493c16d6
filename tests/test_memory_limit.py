"""MemorySize is a limit, in both executors. A handler that allocates past its 128 MB gets AWS's
answer for it: 200 with X-Amz-Function-Error: Unhandled and
`{"errorType": "Runtime.OutOfMemory", "errorMessage": "RequestId: <id> Error: Runtime exited with
error: signal: killed"}`; the log has the ExitError message, `Runtime.OutOfMemory`, END, and a
REPORT with `Max Memory Used` = `Memory Size` and `Status: error  Error Type: Runtime.OutOfMemory`.
The next invoke runs on a fresh environment. The same holds when only a child of the handler's
is OOM-killed and the handler fails because of it (the cgroup's oom_kill count tells).

Subprocess mode enforces the limit with a memory cgroup per environment (v1 or v2) where the host
has one; without one the server says so once in its log and the OOM cases are skipped."""
import base64
import json
import os

import pytest

from conftest import Server, create_py_function, wait_for

PY_IMAGE = "ruststack/lambda-python:3.11"
needs_docker = pytest.mark.skipif(os.environ.get("RUSTSTACK_SKIP_DOCKER") == "1",
                                  reason="RUSTSTACK_SKIP_DOCKER=1: Docker tests opted out")

HOG = """
import os

def handler(event, context):
    if event.get("mb"):
        print("allocating", event["mb"], "MB", flush=True)
        chunks = []
        for _ in range(event["mb"] // 8):
            chunks.append(b"x" * (8 * 1024 * 1024))
        return len(chunks)
    return {"env": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]}
"""


# The handler's child allocates past the limit; the runtime itself stays small. The kernel kills
# the child (the largest process of the environment), and the handler fails because of it.
CHILD_HOG = """
import os, subprocess, sys

def handler(event, context):
    if event.get("mb"):
        code = "chunks = [b'x' * (8 << 20) for _ in range(%d)]" % (event["mb"] // 8)
        rc = subprocess.run([sys.executable, "-c", code]).returncode
        raise RuntimeError("the child ended with %d" % rc)
    return {"env": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"], "pid": os.getpid()}
"""


def check_child_out_of_memory(lam):
    """Only the handler's child is OOM-killed (on cgroup v1, and in a container, the runtime
    survives it): the failed invocation is still Runtime.OutOfMemory, with AWS's ExitError
    message, and the environment is retired."""
    name = create_py_function(lam, CHILD_HOG, MemorySize=128, Timeout=30)
    r, out, _ = invoke(lam, name, {})
    assert "FunctionError" not in r, out
    first = json.loads(out)
    r, out, tail = invoke(lam, name, {"mb": 400})
    rid = r["ResponseMetadata"]["RequestId"]
    assert r["FunctionError"] == "Unhandled", out
    msg = f"RequestId: {rid} Error: Runtime exited with error: signal: killed"
    assert json.loads(out) == {"errorType": "Runtime.OutOfMemory", "errorMessage": msg}, (out, tail)
    lines = tail.splitlines()
    assert lines[-4:-1] == [msg, "Runtime.OutOfMemory", f"END RequestId: {rid}"], lines
    assert lines[-1].endswith("\tStatus: error\tError Type: Runtime.OutOfMemory\t"), lines[-1]
    # A fresh environment serves the next invoke, and an ordinary error stays what it is.
    r, out, _ = invoke(lam, name, {})
    assert "FunctionError" not in r, out
    assert json.loads(out)["env"] != first["env"], "a fresh environment (its own log stream)"
    r, out, _ = invoke(lam, name, {"mb": 16})
    assert r["FunctionError"] == "Unhandled", out
    assert json.loads(out)["errorType"] == "RuntimeError" and "ended with 0" in json.loads(out)["errorMessage"], out


def invoke(lam, name, payload):
    r = lam.invoke(FunctionName=name, Payload=json.dumps(payload), LogType="Tail")
    return r, r["Payload"].read(), base64.b64decode(r["LogResult"]).decode()


def report_field(line, field):
    part = next(p for p in line.split("\t") if p.startswith(field + ": "))
    return int(part.split(": ")[1].split()[0])


def check_out_of_memory(lam, logs=None):
    name = create_py_function(lam, HOG, MemorySize=128, Timeout=30)
    r, out, _ = invoke(lam, name, {})
    assert "FunctionError" not in r, out
    first_env = json.loads(out)["env"]

    r, out, tail = invoke(lam, name, {"mb": 400})
    rid = r["ResponseMetadata"]["RequestId"]
    assert r["StatusCode"] == 200 and r["FunctionError"] == "Unhandled", out
    msg = f"RequestId: {rid} Error: Runtime exited with error: signal: killed"
    assert json.loads(out) == {"errorType": "Runtime.OutOfMemory", "errorMessage": msg}
    sources = [tail.splitlines()]
    if logs is not None:
        sources.append(cloudwatch_lines(logs, name, rid))
    for lines in sources:
        assert lines[0] == f"START RequestId: {rid} Version: $LATEST", lines
        assert "allocating 400 MB" in lines
        assert lines[-4:-1] == [msg, "Runtime.OutOfMemory", f"END RequestId: {rid}"], lines
        report = lines[-1]
        assert report.startswith(f"REPORT RequestId: {rid}\t"), report
        assert report.endswith("\tStatus: error\tError Type: Runtime.OutOfMemory\t"), report
        assert report_field(report, "Memory Size") == 128
        assert report_field(report, "Max Memory Used") == 128, report

    # The next invoke runs on a fresh environment, and a small allocation fits.
    r, out, _ = invoke(lam, name, {})
    assert "FunctionError" not in r, out
    assert json.loads(out)["env"] != first_env, "a fresh environment (its own log stream)"
    r, out, _ = invoke(lam, name, {"mb": 32})
    assert "FunctionError" not in r and json.loads(out) == 4, out
    return name


def cloudwatch_lines(logs, name, request_id):
    group = f"/aws/lambda/{name}"
    events = []
    for s in logs.describe_log_streams(logGroupName=group)["logStreams"]:
        events += logs.get_log_events(logGroupName=group, logStreamName=s["logStreamName"], startFromHead=True)["events"]
    msgs = [e["message"] for e in events]
    start = msgs.index(f"START RequestId: {request_id} Version: $LATEST")
    end = next(i for i in range(start, len(msgs)) if msgs[i].startswith(f"REPORT RequestId: {request_id}\t"))
    return msgs[start:end + 1]


@pytest.fixture(scope="module")
def sub_server():
    s = Server("--lambda-executor", "subprocess")
    yield s
    s.cleanup()


def cgroups_in_use(server):
    """Whether the server found memory cgroups; without them it must say so in its log."""
    text = wait_for(lambda: ("MemorySize" in server.logs()) and server.logs(), what="the memory-limit log line")
    if "are limited to their MemorySize" in text:
        return True
    assert "no memory cgroups" in text and "without a MemorySize limit" in text, text
    return False


def test_subprocess_out_of_memory(sub_server):
    if not cgroups_in_use(sub_server):
        pytest.skip("this host has no usable memory cgroups: subprocess environments are not limited")
    lam, logs = sub_server.client("lambda"), sub_server.client("logs")
    check_out_of_memory(lam, logs)
    # The environment's cgroup went with it: only live environments have one.
    base = [l for l in sub_server.logs().splitlines() if "are limited to their MemorySize" in l][0]
    root = base.split(" at ")[-1].split('"')[0].split()[0]
    wait_for(lambda: os.path.isdir(root) and len([d for d in os.listdir(root) if d.startswith("env-")]) == 1,
             what="the OOM-killed environment's cgroup to be removed")


def test_subprocess_oom_in_json_log_format(sub_server):
    if not cgroups_in_use(sub_server):
        pytest.skip("this host has no usable memory cgroups")
    lam = sub_server.client("lambda")
    name = create_py_function(lam, HOG, MemorySize=128, Timeout=30,
                              LoggingConfig={"LogFormat": "JSON", "SystemLogLevel": "DEBUG"})
    r, out, tail = invoke(lam, name, {"mb": 400})
    assert json.loads(out)["errorType"] == "Runtime.OutOfMemory"
    recs = [json.loads(l) for l in tail.splitlines() if l.startswith("{")]
    done = [x for x in recs if x.get("type") == "platform.runtimeDone"][0]["record"]
    report = [x for x in recs if x.get("type") == "platform.report"][0]["record"]
    assert done["status"] == "error" and done["errorType"] == "Runtime.OutOfMemory", done
    assert report["status"] == "error" and report["errorType"] == "Runtime.OutOfMemory", report
    assert report["metrics"]["maxMemoryUsedMB"] == 128


@pytest.fixture(scope="module")
def docker_server():
    s = Server("--lambda-executor", "docker", "--lambda-runtime-image", f"python3.11={PY_IMAGE}")
    yield s
    s.cleanup()


@needs_docker
def test_docker_out_of_memory(docker_server):
    check_out_of_memory(docker_server.client("lambda"), docker_server.client("logs"))


# After the tests above: the environments these leave would count in their cgroup checks.
def test_subprocess_child_out_of_memory(sub_server):
    if not cgroups_in_use(sub_server):
        pytest.skip("this host has no usable memory cgroups")
    check_child_out_of_memory(sub_server.client("lambda"))


@needs_docker
def test_docker_child_out_of_memory(docker_server):
    check_child_out_of_memory(docker_server.client("lambda"))
