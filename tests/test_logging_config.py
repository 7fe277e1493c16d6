"""Advanced logging controls (LoggingConfig): AWS_LAMBDA_LOG_FORMAT / AWS_LAMBDA_LOG_LEVEL in the
function's environment, JSON records from the bundled Python and Node clients, level filtering,
JSON platform records (platform.start, platform.runtimeDone, platform.report) filtered by
SystemLogLevel, and delivery to the configured LogGroup. Subprocess mode on the shared server;
the Docker cases (awslambdaric in the Lambda image) on a docker server of this module."""
import base64
import json
import os
import re
import shutil

import pytest

from conftest import Server, create_py_function, make_zip, unique

ROLE = "arn:aws:iam::000000000000:role/lambda"

PY = """
import json, logging, os
log = logging.getLogger("app.worker")

def handler(event, context):
    print("plain print line")
    logging.getLogger().debug("root debug")
    log.info("worker info %s", 1)
    log.warning("worker warning")
    if event.get("boom"):
        try:
            raise KeyError("missing")
        except KeyError:
            log.exception("caught it")
        raise ValueError("it failed")
    return {k: os.environ.get(k) for k in ("AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL", "AWS_LAMBDA_LOG_GROUP_NAME")}
"""

NODE = """
exports.handler = async (event) => {
  console.log('node info', 1);
  console.debug('node debug');
  console.warn('node warn');
  console.error(new TypeError('bad type'));
  if (event.boom) { throw new RangeError('out of range'); }
  return { format: process.env.AWS_LAMBDA_LOG_FORMAT, level: process.env.AWS_LAMBDA_LOG_LEVEL };
};
"""

ISO_MS = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"


def tail(resp):
    return base64.b64decode(resp["LogResult"]).decode()


def records(text):
    """Every line of a JSON-format log, parsed (all must be JSON)."""
    return [json.loads(line) for line in text.splitlines() if line]


def invoke(lam, name, payload=None):
    r = lam.invoke(FunctionName=name, Payload=json.dumps(payload or {}), LogType="Tail")
    return r, json.loads(r["Payload"].read()), tail(r)


def platform(recs, kind):
    return [r for r in recs if r.get("type") == kind]


def app_records(recs):
    return [r for r in recs if "type" not in r]


@pytest.fixture(scope="module")
def logs(server):
    return server.client("logs")


def check_platform(recs, request_id, memory=128, system="INFO"):
    start = platform(recs, "platform.start")
    report = platform(recs, "platform.report")
    done = platform(recs, "platform.runtimeDone")
    if system == "WARN":
        assert start == [] and report == [] and done == []
        return None
    assert recs[0] == start[0], "platform.start comes first"
    assert re.fullmatch(ISO_MS, start[0]["time"]), start[0]
    assert start[0]["record"] == {"requestId": request_id, "version": "$LATEST"}
    assert recs[-1] == report[0], "platform.report comes last"
    rep = report[0]["record"]
    assert rep["requestId"] == request_id
    m = rep["metrics"]
    assert all(list(x) == ["time", "type", "record"] for x in start + report + done)
    assert list(m)[:4] == ["durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB"], m
    assert list(rep)[:3] == ["requestId", "metrics", "status"], rep
    assert m["memorySizeMB"] == memory and m["billedDurationMs"] >= 1 and m["maxMemoryUsedMB"] > 0
    assert (len(done) == 1) == (system == "DEBUG"), done
    return rep


def test_json_python_records_levels_and_custom_group(lam, logs):
    group = "/custom/" + unique("grp")
    name = create_py_function(lam, PY, LoggingConfig={
        "LogFormat": "JSON", "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "DEBUG", "LogGroup": group})
    r, out, text = invoke(lam, name)
    assert "FunctionError" not in r, out
    assert out == {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "DEBUG", "AWS_LAMBDA_LOG_GROUP_NAME": group}
    assert "plain print line" in text
    recs = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    rid = r["ResponseMetadata"]["RequestId"]
    rep = check_platform(recs, rid, system="DEBUG")
    assert rep["status"] == "success" and "initDurationMs" in rep["metrics"]
    app = app_records(recs)
    assert [(a["level"], a["logger"], a["message"]) for a in app] == [
        ("DEBUG", "root", "root debug"), ("INFO", "app.worker", "worker info 1"), ("WARNING", "app.worker", "worker warning")]
    for a in app:
        assert list(a)[:5] == ["timestamp", "level", "message", "logger", "requestId"], a
        assert a["requestId"] == rid
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", a["timestamp"]), a

    r, out, text = invoke(lam, name, {"boom": True})
    assert r["FunctionError"] == "Unhandled" and out["errorType"] == "ValueError"
    recs = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    rid = r["ResponseMetadata"]["RequestId"]
    caught = [a for a in app_records(recs) if a.get("message") == "caught it"][0]
    assert caught["level"] == "ERROR" and caught["errorType"] == "KeyError" and caught["errorMessage"] == "'missing'"
    assert isinstance(caught["stackTrace"], list) and "location" in caught
    unhandled = [a for a in app_records(recs) if a.get("errorType") == "ValueError"][0]
    assert unhandled["level"] == "ERROR" and unhandled["errorMessage"] == "it failed"
    assert unhandled["requestId"] == rid and unhandled["stackTrace"]
    rep = check_platform(recs, rid, system="DEBUG")
    assert rep["status"] == "error" and rep["errorType"] == "ValueError"

    # The log lands in the configured group, not in /aws/lambda/<name>.
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert len(streams) == 1
    events = logs.get_log_events(logGroupName=group, logStreamName=streams[0]["logStreamName"], startFromHead=True)["events"]
    assert json.loads(events[0]["message"])["type"] == "platform.start"
    assert any('"worker warning"' in e["message"] for e in events)
    default = [g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")["logGroups"]]
    assert default == []


def test_json_application_level_filters_records_and_text(lam):
    name = create_py_function(lam, PY, LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN"})
    r, out, text = invoke(lam, name)
    assert out["AWS_LAMBDA_LOG_LEVEL"] == "WARN" and out["AWS_LAMBDA_LOG_FORMAT"] == "JSON"
    recs = records(text)  # the print line is INFO to Lambda, so filtered: every line is JSON
    assert [a["message"] for a in app_records(recs)] == ["worker warning"]
    check_platform(recs, r["ResponseMetadata"]["RequestId"])


def test_system_level_warn_drops_platform_records(lam):
    name = create_py_function(lam, PY, LoggingConfig={"LogFormat": "JSON", "SystemLogLevel": "WARN"})
    r, out, text = invoke(lam, name)
    recs = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    check_platform(recs, r["ResponseMetadata"]["RequestId"], system="WARN")
    assert [a["message"] for a in app_records(recs)] == ["worker info 1", "worker warning"]
    assert "START RequestId" not in text and "REPORT RequestId" not in text


def test_text_format_sets_format_only(lam):
    name = create_py_function(lam, PY)
    r, out, text = invoke(lam, name)
    assert out == {"AWS_LAMBDA_LOG_FORMAT": "Text", "AWS_LAMBDA_LOG_LEVEL": None,
                   "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}"}
    rid = r["ResponseMetadata"]["RequestId"]
    lines = text.splitlines()
    assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
    assert re.fullmatch(r"\[WARNING\]\t" + ISO_MS + "\t" + rid + r"\tworker warning", lines[2]), lines
    assert lines[-2] == f"END RequestId: {rid}" and lines[-1].startswith(f"REPORT RequestId: {rid}\t")


def node_major():
    import subprocess
    out = subprocess.run(["node", "-e", "process.stdout.write(process.versions.node)"], capture_output=True, text=True)
    return out.stdout.split(".")[0]


@pytest.mark.skipif(shutil.which("node") is None, reason="no node on this host")
def test_json_node_records_and_levels(lam):
    name = unique("node")
    lam.create_function(FunctionName=name, Runtime="nodejs%s.x" % node_major(), Role=ROLE, Handler="index.handler",
                        Code={"ZipFile": make_zip({"index.js": NODE})},
                        LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "INFO"})
    r, out, text = invoke(lam, name)
    assert out == {"format": "JSON", "level": "INFO"}
    rid = r["ResponseMetadata"]["RequestId"]
    recs = records(text)
    check_platform(recs, rid)
    app = app_records(recs)
    assert [(a["level"], a["message"] if isinstance(a["message"], str) else "obj") for a in app] == [
        ("INFO", "node info 1"), ("WARN", "node warn"), ("ERROR", "obj")]
    for a in app:
        assert list(a)[:3] == ["timestamp", "level", "requestId"] and a["requestId"] == rid
        assert re.fullmatch(ISO_MS, a["timestamp"])
    err = app[2]["message"]
    assert err["errorType"] == "TypeError" and err["errorMessage"] == "bad type"
    assert err["stackTrace"][0] == "TypeError: bad type"

    r, out, text = invoke(lam, name, {"boom": True})
    assert r["FunctionError"] == "Unhandled" and out["errorType"] == "RangeError"
    recs = records(text)
    invoke_error = [a for a in app_records(recs) if a.get("errorType") == "RangeError"][0]
    assert invoke_error["level"] == "ERROR" and invoke_error["errorMessage"] == "out of range"
    rep = check_platform(recs, r["ResponseMetadata"]["RequestId"])
    assert rep["status"] == "error" and rep["errorType"] == "RangeError"


# ---------------------------------------------------------------- docker (awslambdaric in the image)

PY_IMAGE = "ruststack/lambda-python:3.11"
needs_docker = pytest.mark.skipif(os.environ.get("RUSTSTACK_SKIP_DOCKER") == "1",
                                  reason="RUSTSTACK_SKIP_DOCKER=1: Docker tests opted out")


@pytest.fixture(scope="module")
def docker_lam():
    s = Server("--lambda-executor", "docker", "--lambda-runtime-image", f"python3.11={PY_IMAGE}")
    yield s.client("lambda")
    s.cleanup()


@needs_docker
def test_docker_json_records_from_awslambdaric(docker_lam):
    name = create_py_function(docker_lam, PY, LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "INFO"})
    r, out, text = invoke(docker_lam, name)
    assert "FunctionError" not in r, out
    assert out["AWS_LAMBDA_LOG_FORMAT"] == "JSON" and out["AWS_LAMBDA_LOG_LEVEL"] == "INFO"
    recs = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    rid = r["ResponseMetadata"]["RequestId"]
    check_platform(recs, rid)
    app = app_records(recs)
    assert [(a["level"], a["logger"], a["message"]) for a in app] == [
        ("INFO", "app.worker", "worker info 1"), ("WARNING", "app.worker", "worker warning")]
    assert all(a["requestId"] == rid for a in app)


def test_runtime_done_counts_the_produced_bytes(lam):
    name = create_py_function(lam, "def handler(event, context):\n    return {'blob': 'x' * event['n']}\n",
                              LoggingConfig={"LogFormat": "JSON", "SystemLogLevel": "DEBUG"})
    for n in (0, 1000):
        r, out, text = invoke(lam, name, {"n": n})
        body = json.dumps(out, separators=(", ", ": "))
        done = platform(records(text), "platform.runtimeDone")[0]["record"]
        assert done["status"] == "success"
        assert done["metrics"]["producedBytes"] == len(body.encode()) == len('{"blob": ""}') + n, (done, body)
