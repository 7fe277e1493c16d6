"""What an invocation's log says, as on AWS, in both executors: stdout and stderr in the order
written (one stream), a last line without a newline kept with the invocation that wrote it,
`Max Memory Used` measured, and AWS's timeout and Runtime.ExitError lines where AWS puts them.
Checked in LogType=Tail and in CloudWatch Logs. Subprocess cases on the shared server; Docker
cases (the Lambda image, awslambdaric) on a docker server of this module, and the order also
on an image with no shell at all (the static stdio helper, no /bin/sh wrapper), held spares
of it included."""
import base64
import json
import os
import re
import subprocess

import pytest

from conftest import Server, create_py_function, wait_for

PY_IMAGE = "ruststack/lambda-python:3.11"
# PY_IMAGE without any shell, awslambdaric as its entrypoint (made by the nosh_image fixture).
NOSH_IMAGE = "ruststack-test/nosh-fidelity:1"
NOSH_ENV = {"Variables": {"PYTHONPATH": "/var/runtime"}}
needs_docker = pytest.mark.skipif(os.environ.get("RUSTSTACK_SKIP_DOCKER") == "1",
                                  reason="RUSTSTACK_SKIP_DOCKER=1: Docker tests opted out")

TS = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"

FIDELITY = """
import os, time

def handler(event, context):
    what = event.get("what")
    if what == "interleave":
        for i in range(event["n"]):
            os.write(1 if i % 2 == 0 else 2, ("%s %d\\n" % ("out" if i % 2 == 0 else "err", i)).encode())
    elif what == "partial":
        os.write(1, b"whole line\\n")
        os.write(2, ("no newline from " + event["tag"]).encode())
    elif what == "line":
        os.write(1, ("line from " + event["tag"] + "\\n").encode())
    elif what == "alloc":
        blob = b"x" * (event["mb"] * 1024 * 1024)
        return len(blob)
    elif what == "sleep":
        print("going to sleep")
        time.sleep(event["s"])
    elif what == "container":
        import re
        with open("/proc/self/mountinfo") as f:
            return re.search(r"/docker/containers/([0-9a-f]{64})/", f.read()).group(1)
    elif what == "exit":
        print("exiting now")
        os._exit(1)
    return "ok"
"""


@pytest.fixture(scope="module")
def docker_server():
    s = Server("--lambda-executor", "docker", "--lambda-runtime-image", f"python3.11={PY_IMAGE}")
    yield s
    s.cleanup()


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=120)


@pytest.fixture(scope="module")
def nosh_image():
    """PY_IMAGE with every shell removed; its entrypoint runs awslambdaric directly."""
    docker("rmi", "-f", NOSH_IMAGE, check=False)  # the previous run's, so they do not pile up
    shells = ["/bin/sh", "/usr/bin/sh", "/bin/dash", "/usr/bin/dash", "/bin/bash", "/usr/bin/bash"]
    cid = docker("create", "--entrypoint", "/bin/rm", PY_IMAGE, "-f", *shells).stdout.strip()
    try:
        docker("start", "-a", cid)
        docker("commit", "--change", 'ENTRYPOINT ["/var/lang/bin/python3.11", "-m", "awslambdaric"]',
               "--change", 'CMD ["app.handler"]', cid, NOSH_IMAGE)
    finally:
        docker("rm", "-f", cid, check=False)
    ran = docker("run", "--rm", "--entrypoint", "/bin/sh", NOSH_IMAGE, "-c", "true", check=False)
    assert ran.returncode != 0, "the image still has /bin/sh"
    return NOSH_IMAGE


def executors(server):
    """(lambda client, logs client) of the shared subprocess server."""
    return server.client("lambda"), server.client("logs")


def invoke(lam, name, payload):
    r = lam.invoke(FunctionName=name, Payload=json.dumps(payload), LogType="Tail")
    return r, r["Payload"].read(), base64.b64decode(r["LogResult"]).decode()


def cloudwatch_lines(logs, name, request_id):
    """The CloudWatch events of one invocation, START to REPORT."""
    group = f"/aws/lambda/{name}"
    events = []
    for s in logs.describe_log_streams(logGroupName=group)["logStreams"]:
        events += logs.get_log_events(logGroupName=group, logStreamName=s["logStreamName"], startFromHead=True)["events"]
    msgs = [e["message"] for e in events]
    start = msgs.index(f"START RequestId: {request_id} Version: $LATEST")
    end = next(i for i in range(start, len(msgs)) if msgs[i].startswith(f"REPORT RequestId: {request_id}\t"))
    return msgs[start:end + 1]


def body_lines(lines):
    """The function's own lines: between START and END."""
    return lines[1:lines.index(next(l for l in lines if l.startswith("END RequestId: ")))]


def report_field(report, field):
    m = re.search(field + r": (\d+(?:\.\d+)?)", report)
    assert m, report
    return float(m.group(1))


# ---------------------------------------------------------------- shared checks


def check_order(lam, logs, timeout=30, **kw):
    name = create_py_function(lam, FIDELITY, Timeout=timeout, **kw)
    n = 300
    r, _, tail = invoke(lam, name, {"what": "interleave", "n": n})
    rid = r["ResponseMetadata"]["RequestId"]
    want = ["%s %d" % ("out" if i % 2 == 0 else "err", i) for i in range(n)]
    got_tail = body_lines(tail.splitlines())
    # Tail is the last 4 KB: a suffix of the invocation's log.
    assert got_tail == want[len(want) - len(got_tail):] and len(got_tail) > 100, got_tail[:5]
    assert body_lines(cloudwatch_lines(logs, name, rid)) == want


def check_partial(lam, logs):
    name = create_py_function(lam, FIDELITY)
    r1, _, tail1 = invoke(lam, name, {"what": "partial", "tag": "first"})
    r2, _, tail2 = invoke(lam, name, {"what": "line", "tag": "second"})
    rid1, rid2 = (r["ResponseMetadata"]["RequestId"] for r in (r1, r2))
    assert body_lines(tail1.splitlines()) == ["whole line", "no newline from first"]
    assert body_lines(tail2.splitlines()) == ["line from second"]
    assert body_lines(cloudwatch_lines(logs, name, rid1)) == ["whole line", "no newline from first"]
    assert body_lines(cloudwatch_lines(logs, name, rid2)) == ["line from second"]


def check_memory(lam, memory=256):
    name = create_py_function(lam, FIDELITY, MemorySize=memory)
    r, out, tail = invoke(lam, name, {"what": "alloc", "mb": 60})
    assert json.loads(out) == 60 * 1024 * 1024, out
    report = tail.splitlines()[-1]
    used = report_field(report, "Max Memory Used")
    assert 60 <= used <= memory, report
    assert report_field(report, "Memory Size") == memory


# ---------------------------------------------------------------- subprocess


def test_stdout_and_stderr_keep_their_order(server):
    check_order(*executors(server))


def test_partial_line_stays_with_its_invocation(server):
    check_partial(*executors(server))


def test_max_memory_used_is_measured(server):
    lam, _ = executors(server)
    check_memory(lam)


def test_max_memory_used_in_json_report(server):
    lam, _ = executors(server)
    name = create_py_function(lam, FIDELITY, MemorySize=256, LoggingConfig={"LogFormat": "JSON"})
    r, _, tail = invoke(lam, name, {"what": "alloc", "mb": 60})
    report = json.loads(tail.splitlines()[-1])
    assert report["type"] == "platform.report"
    assert report["record"]["metrics"]["maxMemoryUsedMB"] >= 60, report


def test_timeout_lines_as_aws_writes_them(server):
    lam, logs = executors(server)
    name = create_py_function(lam, FIDELITY, Timeout=1)
    r, out, tail = invoke(lam, name, {"what": "sleep", "s": 5})
    rid = r["ResponseMetadata"]["RequestId"]
    assert r["FunctionError"] == "Unhandled"
    assert json.loads(out) == {"errorMessage": f"RequestId: {rid} Error: Task timed out after 1.00 seconds",
                               "errorType": "Sandbox.Timedout"}
    for lines in (tail.splitlines(), cloudwatch_lines(logs, name, rid)):
        assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
        assert lines[1] == "going to sleep"
        assert re.fullmatch(TS + f" {rid} Task timed out after 1.00 seconds", lines[2]), lines
        assert lines[3] == f"END RequestId: {rid}"
        assert lines[4].startswith(f"REPORT RequestId: {rid}\tDuration: ") and lines[4].endswith("\tStatus: timeout\t"), lines[4]
        assert len(lines) == 5


def test_exit_error_lines_as_aws_writes_them(server):
    lam, logs = executors(server)
    name = create_py_function(lam, FIDELITY)
    r, out, tail = invoke(lam, name, {"what": "exit"})
    rid = r["ResponseMetadata"]["RequestId"]
    msg = f"RequestId: {rid} Error: Runtime exited with error: exit status 1"
    assert json.loads(out) == {"errorMessage": msg, "errorType": "Runtime.ExitError"}
    for lines in (tail.splitlines(), cloudwatch_lines(logs, name, rid)):
        assert lines[:5] == [f"START RequestId: {rid} Version: $LATEST", "exiting now", msg, "Runtime.ExitError",
                             f"END RequestId: {rid}"], lines
        assert lines[5].endswith("\tStatus: error\tError Type: Runtime.ExitError\t"), lines[5]
        assert report_field(lines[5], "Max Memory Used") > 0, "measured at the runtime's exit"
        assert len(lines) == 6
    # The next invoke runs on a fresh environment, with its own clean log.
    r, out, tail = invoke(lam, name, {"what": "line", "tag": "after"})
    assert body_lines(tail.splitlines()) == ["line from after"]


# ---------------------------------------------------------------- docker


@needs_docker
def test_docker_stdout_and_stderr_keep_their_order(docker_server):
    check_order(*executors(docker_server))


@needs_docker
def test_docker_partial_line_stays_with_its_invocation(docker_server):
    check_partial(*executors(docker_server))


@needs_docker
def test_docker_max_memory_used_is_measured(docker_server):
    lam, _ = executors(docker_server)
    check_memory(lam)


@needs_docker
def test_docker_exit_error_lines(docker_server):
    lam, _ = executors(docker_server)
    name = create_py_function(lam, FIDELITY)
    r, out, tail = invoke(lam, name, {"what": "exit"})
    rid = r["ResponseMetadata"]["RequestId"]
    lines = tail.splitlines()
    msg = f"RequestId: {rid} Error: Runtime exited with error: exit status 1"
    assert json.loads(out) == {"errorMessage": msg, "errorType": "Runtime.ExitError"}
    assert lines[-4:-1] == [msg, "Runtime.ExitError", f"END RequestId: {rid}"], lines
    assert "exiting now" in lines and lines[-1].endswith("\tStatus: error\tError Type: Runtime.ExitError\t")


@needs_docker
def test_docker_order_in_an_image_without_a_shell(nosh_image):
    s = Server("--lambda-executor", "docker", "--lambda-runtime-image", f"python3.11={nosh_image}")
    try:
        check_order(*executors(s), Environment=NOSH_ENV)
        # The helper, not docker attach: the FIFO, so the flush is exact here too.
        assert "reading its output through docker attach" not in s.logs()
        assert "no stdio helper" not in s.logs()
    finally:
        s.cleanup()


@needs_docker
def test_docker_spare_of_an_image_without_a_shell(nosh_image):
    """A blank spare needs no shell either: the helper waits for its orders on the go FIFO."""
    s = Server("--lambda-executor", "docker", "--lambda-runtime-image", f"python3.11={nosh_image}",
               "--lambda-docker-spare")
    try:
        lam, logs = executors(s)
        name = create_py_function(lam, FIDELITY, Timeout=30, Environment=NOSH_ENV)
        ids = lambda: docker("ps", "-q", "--no-trunc", "--filter", "label=ruststack.spare=1",
                             "--filter", f"label=ruststack.server=127.0.0.1:{s.port}").stdout.split()
        spares = wait_for(ids, 30, "a blank spare")
        assert s.health()["environments"]["live"] == 0, "held: the runtime has not started"
        r, _, tail = invoke(lam, name, {"what": "interleave", "n": 40})
        assert "Init Duration" in tail.splitlines()[-1]
        assert body_lines(tail.splitlines()) == ["%s %d" % ("out" if i % 2 == 0 else "err", i) for i in range(40)]
        _, where, _ = invoke(lam, name, {"what": "container"})
        assert json.loads(where) in spares, "a blank spare's container ran the invocation"
        assert "blank spare not taken" not in s.logs()
    finally:
        s.cleanup()
