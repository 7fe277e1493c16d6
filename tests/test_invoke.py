"""Invoke end to end: boto3 → RustStack → Runtime API → the bundled Python bootstrap and back."""
import base64
import concurrent.futures as cf
import json
import os
import signal
import subprocess
import tempfile

import pytest
from botocore.exceptions import ClientError

from conftest import create_py_function, invoke, make_zip, unique, wait_for

HANDLER = """
import os, time, json
STATE = {"count": 0}
def handler(event, context):
    STATE["count"] += 1
    print("log line from handler", event.get("n") if isinstance(event, dict) else None)
    return {
        "event": event,
        "count": STATE["count"],
        "pid": os.getpid(),
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "client_context": (context.client_context.custom if context.client_context else None),
        "env": {k: os.environ.get(k) for k in [
            "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
            "AWS_REGION", "_HANDLER", "LAMBDA_TASK_ROOT", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_RUNTIME_API",
            "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "MY_VAR", "_X_AMZN_TRACE_ID", "AWS_EXECUTION_ENV"]},
        "cwd": os.getcwd(),
    }
"""


def test_round_trip_context_and_env(lam, server):
    name = create_py_function(lam, HANDLER, MemorySize=256, Timeout=7,
                              Environment={"Variables": {"MY_VAR": "hello"}})
    r, body = invoke(lam, name, {"n": 1})
    assert r["StatusCode"] == 200
    assert "FunctionError" not in r
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-amz-executed-version"] == "$LATEST"
    out = json.loads(body)
    assert out["event"] == {"n": 1}
    assert out["function_name"] == name
    assert out["function_version"] == "$LATEST"
    assert out["invoked_function_arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert out["memory_limit_in_mb"] == "256"  # a str, as awslambdaric gives it
    assert len(out["aws_request_id"]) == 36
    # As on AWS, the response's request id is the invocation's.
    assert out["aws_request_id"] == r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert out["log_group_name"] == f"/aws/lambda/{name}"
    assert "[$LATEST]" in out["log_stream_name"]
    assert 5000 < out["remaining"] <= 7000
    env = out["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["_HANDLER"] == "app.handler"
    assert env["MY_VAR"] == "hello"
    assert env["AWS_ENDPOINT_URL"] == server.endpoint
    assert env["AWS_ACCESS_KEY_ID"]
    assert env["_X_AMZN_TRACE_ID"].startswith("Root=1-")
    host, port = env["AWS_LAMBDA_RUNTIME_API"].split(":")
    assert host == "127.0.0.1" and int(port) > 0
    assert env["LAMBDA_TASK_ROOT"] == out["cwd"]


def test_invoke_by_arn_and_client_context(lam):
    name = create_py_function(lam, HANDLER)
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    cc = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    r, body = invoke(lam, arn, {"n": 2}, ClientContext=cc)
    out = json.loads(body)
    assert out["client_context"] == {"k": "v"}
    assert out["invoked_function_arn"] == arn


def test_warm_reuse_keeps_process_and_state(lam):
    name = create_py_function(lam, HANDLER)
    outs = [json.loads(invoke(lam, name, {"n": i})[1]) for i in range(5)]
    assert len({o["pid"] for o in outs}) == 1
    assert [o["count"] for o in outs] == [1, 2, 3, 4, 5]


def test_handler_exception(lam):
    name = create_py_function(lam, "def handler(e, c):\n    raise ValueError('bad thing ' + str(e['x']))\n")
    r, body = invoke(lam, name, {"x": 42})
    assert r["StatusCode"] == 200
    assert r["FunctionError"] == "Unhandled"
    err = json.loads(body)
    assert err["errorType"] == "ValueError"
    assert err["errorMessage"] == "bad thing 42"
    assert isinstance(err["stackTrace"], list) and err["stackTrace"]
    # The environment survives a handled exception.
    r2, body2 = invoke(lam, name, {"x": 1})
    assert json.loads(body2)["errorMessage"] == "bad thing 1"


def test_timeout_then_recovery(server, lam):
    src = "import time, os\ndef handler(e, c):\n    if e.get('sleep'):\n        time.sleep(e['sleep'])\n    return os.getpid()\n"
    name = create_py_function(lam, src, Timeout=1)
    pid_before = json.loads(invoke(lam, name, {})[1])
    # The handler would run for 10 minutes: only the 1 s deadline, enforced on RustStack's side,
    # answers this call before the client's 60 s read timeout (a bound, not a timed assertion).
    bounded = server.client("lambda", read_timeout=60)
    r, body = invoke(bounded, name, {"sleep": 600})
    assert r["FunctionError"] == "Unhandled"
    err = json.loads(body)
    assert err["errorType"] == "Sandbox.Timedout"
    assert err["errorMessage"].startswith("RequestId: ")
    assert err["errorMessage"].endswith("Error: Task timed out after 1.00 seconds")
    r2, body2 = invoke(lam, name, {})
    assert "FunctionError" not in r2
    assert json.loads(body2) != pid_before  # a fresh environment


def test_runtime_exit_then_recovery(lam):
    src = "import os\ndef handler(e, c):\n    if e.get('die'):\n        os._exit(3)\n    return os.getpid()\n"
    name = create_py_function(lam, src)
    invoke(lam, name, {})
    r, body = invoke(lam, name, {"die": True})
    assert r["FunctionError"] == "Unhandled"
    err = json.loads(body)
    assert err["errorType"] == "Runtime.ExitError"
    assert "Runtime exited with error: exit status 3" in err["errorMessage"]
    r2, body2 = invoke(lam, name, {})
    assert "FunctionError" not in r2 and isinstance(json.loads(body2), int)


@pytest.mark.parametrize("files,handler,etype,msg", [
    ({"app.py": "def handler(e, c): return 1\n"}, "app.nothere", "Runtime.HandlerNotFound",
     "Handler 'nothere' missing on module 'app'"),
    ({"app.py": "import not_a_module_xyz\n"}, "app.handler", "Runtime.ImportModuleError",
     "Unable to import module 'app': No module named 'not_a_module_xyz'"),
    ({"other.py": "x = 1\n"}, "app.handler", "Runtime.ImportModuleError",
     "Unable to import module 'app': No module named 'app'"),
    ({"app.py": "def handler(e, c)\n    return 1\n"}, "app.handler", "Runtime.UserCodeSyntaxError",
     "Syntax error in module 'app'"),
    ({"app.py": "def handler(e, c): return 1\n"}, "nodot", "Runtime.MalformedHandlerName", "Bad handler 'nodot'"),
])
def test_init_errors(lam, files, handler, etype, msg):
    name = create_py_function(lam, files, handler=handler)
    r, body = invoke(lam, name, {})
    assert r["FunctionError"] == "Unhandled"
    err = json.loads(body)
    assert err["errorType"] == etype, err
    assert err["errorMessage"].startswith(msg), err
    # Still broken on the next call, and the server still serves.
    r2, body2 = invoke(lam, name, {})
    assert json.loads(body2)["errorType"] == etype


def test_event_and_dry_run(lam, tmp_path):
    marker = tmp_path / "ran.txt"
    src = f"def handler(e, c):\n    open({str(marker)!r}, 'a').write(e['v'] + ' ' + c.aws_request_id + '\\n')\n    return 'ok'\n"
    name = create_py_function(lam, src)
    r = lam.invoke(FunctionName=name, InvocationType="DryRun", Payload=b"{}")
    assert r["StatusCode"] == 204
    assert not marker.exists()
    r = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"v": "side-effect"}))
    assert r["StatusCode"] == 202
    # The 202's request id is the one the function runs with.
    want = "side-effect %s\n" % r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    wait_for(lambda: marker.exists() and marker.read_text() == want, 5, "the Event invocation's side effect")


def test_logging_module_in_lambda_format(lam):
    # The bootstrap sets up `logging` only when the function imports it; records from the
    # handler's import and from the invoke both use Lambda's format, and a logging.py or
    # traceback.py in the task root does not shadow the standard library's.
    src = ("import logging\n"
           "import traceback as tb_mod\n"
           "logger = logging.getLogger()\n"
           "logger.setLevel(logging.INFO)\n"
           "logger.info('at import')\n"
           "def handler(e, c):\n"
           "    logging.getLogger('app').warning('in handler %s', e.get('n'))\n"
           "    return {'std': hasattr(logging, 'basicConfig') and hasattr(tb_mod, 'format_exc')}\n")
    files = {"app.py": src, "logging.py": "raise SystemExit('shadowed')\n", "traceback.py": "raise SystemExit('shadowed')\n"}
    name = create_py_function(lam, files)
    r = lam.invoke(FunctionName=name, Payload=b'{"n": 7}', LogType="Tail")
    assert "FunctionError" not in r
    assert json.loads(r["Payload"].read()) == {"std": True}
    log = base64.b64decode(r["LogResult"]).decode()
    assert "[INFO]\t" in log and "at import" in log
    warn = [line for line in log.split("\n") if "in handler 7" in line]
    assert warn and warn[0].startswith("[WARNING]\t")
    assert len(warn[0].split("\t")[2]) == 36  # the invocation's request id


def test_log_tail(lam):
    src = "def handler(e, c):\n    print('first line')\n    print('x' * 10000)\n    print('last line from handler')\n    return 1\n"
    name = create_py_function(lam, src)
    r = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    log = base64.b64decode(r["LogResult"]).decode()
    assert len(base64.b64decode(r["LogResult"])) <= 4096
    assert "last line from handler" in log
    assert "END RequestId: " in log
    assert "REPORT RequestId: " in log and "\tDuration: " in log and "\tBilled Duration: " in log
    assert "\tMemory Size: 128 MB" in log
    r = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    short = "def handler(e, c):\n    print('only line')\n    return 1\n"
    name2 = create_py_function(lam, short)
    r = lam.invoke(FunctionName=name2, Payload=b"{}", LogType="Tail")
    log = base64.b64decode(r["LogResult"]).decode()
    lines = log.strip().split("\n")
    assert lines[0].startswith("START RequestId: ") and lines[0].endswith("Version: $LATEST")
    assert lines[1] == "only line"
    assert lines[2].startswith("END RequestId: ")
    assert lines[3].startswith("REPORT RequestId: ") and "Init Duration: " in lines[3]
    r = lam.invoke(FunctionName=name2, Payload=b"{}", LogType="Tail")
    assert "Init Duration" not in base64.b64decode(r["LogResult"]).decode()


def test_payload_too_large(lam):
    name = create_py_function(lam, "def handler(e, c): return 1\n")
    with pytest.raises(ClientError) as ei:
        lam.invoke(FunctionName=name, Payload=b"x" * (6 * 1024 * 1024 + 1))
    assert ei.value.response["Error"]["Code"] == "RequestTooLargeException"
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def test_response_too_large(lam):
    name = create_py_function(lam, "def handler(e, c): return 'x' * (7 * 1024 * 1024)\n", MemorySize=512)
    r, body = invoke(lam, name, {})
    assert r["FunctionError"] == "Unhandled"
    err = json.loads(body)
    assert err["errorType"] == "Function.ResponseSizeTooLarge"


def test_update_drains_old_code(lam):
    name = create_py_function(lam, "def handler(e, c): return 'v1'\n")
    assert json.loads(invoke(lam, name)[1]) == "v1"
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": "def handler(e, c): return 'v2'\n"}))
    assert json.loads(invoke(lam, name)[1]) == "v2"
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"VV": "3"}})
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": "import os\ndef handler(e, c): return os.environ['VV']\n"}))
    assert json.loads(invoke(lam, name)[1]) == "3"


def test_versions_aliases_and_executed_version(lam):
    name = create_py_function(lam, "def handler(e, c): return ['v1', c.invoked_function_arn]\n")
    v1 = lam.publish_version(FunctionName=name)["Version"]
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": "def handler(e, c): return ['v2', c.invoked_function_arn]\n"}))
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=v1)
    r, body = invoke(lam, name, Qualifier="live")
    assert json.loads(body)[0] == "v1"
    assert json.loads(body)[1].endswith(f":function:{name}:live")
    assert r["ExecutedVersion"] == v1
    r, body = invoke(lam, f"{name}:{v1}")
    assert json.loads(body)[0] == "v1" and r["ExecutedVersion"] == v1
    r, body = invoke(lam, name)
    assert json.loads(body)[0] == "v2" and r["ExecutedVersion"] == "$LATEST"
    with pytest.raises(ClientError) as ei:
        invoke(lam, name, Qualifier="nope")
    assert ei.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_unknown_function_is_404(lam):
    with pytest.raises(ClientError) as ei:
        invoke(lam, "no-such-function-xyz")
    assert ei.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_parallel_invokes_get_separate_environments(lam):
    # Each handler checks in, then waits until all 8 have checked in: they can only all
    # succeed if the 8 invocations run at the same time, in 8 environments.
    src = """import os, time
def handler(e, c):
    d = e['dir']
    open(os.path.join(d, str(os.getpid())), 'w').close()
    deadline = time.time() + 20
    while len(os.listdir(d)) < 8:
        if time.time() > deadline:
            return 'alone'
        time.sleep(0.01)
    return os.getpid()
"""
    name = create_py_function(lam, src, Timeout=30)
    d = tempfile.mkdtemp(prefix="ruststack-parallel-")
    with cf.ThreadPoolExecutor(8) as ex:
        pids = list(ex.map(lambda i: json.loads(invoke(lam, name, {"i": i, "dir": d})[1]), range(8)))
    assert "alone" not in pids, pids
    assert len(set(pids)) == 8


def test_foreign_request_id_is_rejected(lam):
    # Two concurrent invocations run in two environments. The second posts a response for
    # the first's request id to its own Runtime API: it must be refused with 400.
    src = """
import json, os, time, urllib.request, urllib.error
def handler(e, c):
    path = e['path']
    if e['role'] == 'first':
        with open(path + '.tmp', 'w') as f:
            json.dump({'id': c.aws_request_id}, f)
        os.rename(path + '.tmp', path)
        # In flight until the second has tried to answer for it (bounded).
        deadline = time.time() + 30
        while not os.path.exists(path + '.tried'):
            if time.time() > deadline:
                return 'the second never tried'
            time.sleep(0.01)
        return 'first-done'
    other = json.load(open(path))['id']
    api = os.environ['AWS_LAMBDA_RUNTIME_API']
    req = urllib.request.Request(f'http://{api}/2018-06-01/runtime/invocation/{other}/response', data=b'"hijack"', method='POST')
    try:
        urllib.request.urlopen(req)
        answer = 'accepted'
    except urllib.error.HTTPError as err:
        answer = [err.code, json.loads(err.read())['errorType']]
    open(path + '.tried', 'w').close()
    return answer
"""
    name = create_py_function(lam, src, Timeout=60)
    path = f"/tmp/ruststack-foreign-{unique()}.json"
    with cf.ThreadPoolExecutor(2) as ex:
        f1 = ex.submit(invoke, lam, name, {"role": "first", "path": path})
        # The first is running in its environment, so the second gets another one.
        wait_for(lambda: os.path.exists(path), 10, "the first invocation to start")
        f2 = ex.submit(invoke, lam, name, {"role": "second", "path": path})
        first = json.loads(f1.result()[1])
        second = json.loads(f2.result()[1])
    assert first == "first-done"
    assert second == [400, "InvalidRequestID"]
    os.unlink(path)
    os.unlink(path + ".tried")


def children_of(pid):
    """The server's runtimes: its children, or the children of its Python fork servers
    (runtime/zygote.py), which are not runtimes themselves."""
    out = subprocess.run(["ps", "-eww", "-o", "pid,ppid,pgid,args"], capture_output=True, text=True).stdout
    rows = [l.split(None, 3) for l in out.splitlines()[1:]]
    zygotes = {r[0] for r in rows if r[1] == str(pid) and "/runtime/zygote.py" in r[3]}
    return [" ".join(r) for r in rows if (r[1] == str(pid) and r[0] not in zygotes) or r[1] in zygotes]


def test_no_orphans_after_sigterm(fresh_server):
    srv = fresh_server()
    lam = srv.client("lambda")
    names = [create_py_function(lam, "import time\ndef handler(e, c):\n    time.sleep(e.get('s', 0))\n    return 1\n") for _ in range(3)]
    for n in names:
        invoke(lam, n)
    assert len(children_of(srv.proc.pid)) >= 3
    pids = [int(l.split()[0]) for l in children_of(srv.proc.pid)]
    assert srv.stop(signal.SIGTERM) == 0

    def gone(p):
        try:
            with open(f"/proc/{p}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    wait_for(lambda: all(gone(p) for p in pids), 5, "every runtime to exit with the server")


def test_no_orphans_after_sigkill(fresh_server):
    srv = fresh_server()
    lam = srv.client("lambda")
    name = create_py_function(lam, "def handler(e, c): return 1\n")
    invoke(lam, name)
    pids = [int(l.split()[0]) for l in children_of(srv.proc.pid)]
    assert pids
    srv.kill()
    wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids), 5, "every runtime to die with the server")


def test_s3_from_inside_a_handler(fresh_server):
    # boto3 inside the handler reaches RustStack's S3 through AWS_ENDPOINT_URL, with no
    # endpoint configured in the code. The venv's interpreter guarantees boto3 is importable.
    import sys
    srv = fresh_server("--python", sys.executable)
    lam, s3 = srv.client("lambda"), srv.client("s3")
    s3.create_bucket(Bucket="from-handler")
    s3.put_object(Bucket="from-handler", Key="in.txt", Body=b"input data")
    src = ("import boto3\n"
           "def handler(e, c):\n"
           "    s3 = boto3.client('s3')\n"
           "    body = s3.get_object(Bucket='from-handler', Key='in.txt')['Body'].read().decode()\n"
           "    s3.put_object(Bucket='from-handler', Key='out.txt', Body=body.upper())\n"
           "    return body\n")
    name = create_py_function(lam, src, Timeout=30)
    r, body = invoke(lam, name)
    assert "FunctionError" not in r, body
    assert json.loads(body) == "input data"
    assert s3.get_object(Bucket="from-handler", Key="out.txt")["Body"].read() == b"INPUT DATA"


def test_code_from_s3_and_layers(fresh_server, tmp_path):
    srv = fresh_server()
    lam, s3 = srv.client("lambda"), srv.client("s3")
    s3.create_bucket(Bucket="code")
    s3.put_object(Bucket="code", Key="fn.zip",
                  Body=make_zip({"app.py": "import mylib, otherlib\ndef handler(e, c): return [mylib.X, otherlib.Y]\n"}))
    # One layer published (AWS layout python/), one given as a local zip path (site-packages layout).
    arn = lam.publish_layer_version(LayerName="mylib", Content={"ZipFile": make_zip({"python/mylib.py": "X = 'from-arn-layer'\n"})})["LayerVersionArn"]
    local = tmp_path / "otherlib.zip"
    local.write_bytes(make_zip({"python/lib/python3.11/site-packages/otherlib.py": "Y = 'from-path-layer'\n"}))
    name = unique()
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                        Role="arn:aws:iam::000000000000:role/lambda",
                        Code={"S3Bucket": "code", "S3Key": "fn.zip"}, Layers=[arn, str(local)])
    r, body = invoke(lam, name)
    assert "FunctionError" not in r, body
    assert json.loads(body) == ["from-arn-layer", "from-path-layer"]


def test_invoke_with_response_stream(lam):
    """InvokeWithResponseStream on a buffered function: the answer as a PayloadChunk, then
    InvokeComplete, decoded by botocore's own event-stream parser (CRCs checked)."""
    name = create_py_function(lam, "def handler(e, c):\n    print('streamed log')\n"
                                   "    if e.get('fail'):\n        raise ValueError('bad')\n    return {'got': e}\n")
    r = lam.invoke_with_response_stream(FunctionName=name, Payload=json.dumps({"a": 1}), LogType="Tail")
    assert r["StatusCode"] == 200 and r["ExecutedVersion"] == "$LATEST"
    assert r["ResponseStreamContentType"] == "application/vnd.amazon.eventstream"
    events = list(r["EventStream"])
    assert json.loads(events[0]["PayloadChunk"]["Payload"]) == {"got": {"a": 1}}
    done = events[-1]["InvokeComplete"]
    assert "ErrorCode" not in done and "streamed log" in base64.b64decode(done["LogResult"]).decode()
    events = list(lam.invoke_with_response_stream(FunctionName=name, Payload=json.dumps({"fail": True}))["EventStream"])
    assert len(events) == 1
    done = events[0]["InvokeComplete"]
    assert done["ErrorCode"] == "ValueError" and json.loads(done["ErrorDetails"])["errorMessage"] == "bad"
    assert lam.invoke_with_response_stream(FunctionName=name, InvocationType="DryRun")["StatusCode"] == 204


def process_gone(pid):
    """The process has exited (a zombie not yet collected counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # reaped between the open and the read
        return True


def test_idle_runtime_killed_is_replaced_on_the_next_invoke(lam):
    """A warm runtime that died while idle (OOM killer, a stray kill) is not handed the next
    invoke once its exit is visible to the kernel, even before the server has collected it
    (the pool asks with waitid; the unit test alive_sees_an_exit_before_it_is_collected
    covers that check). An invoke that races the kill itself can still meet the dying
    runtime and get Runtime.ExitError; the one after it runs on a fresh environment."""
    name = create_py_function(lam, "import os\ndef handler(e, c):\n    return os.getpid()\n")
    for _ in range(5):
        pid = json.loads(invoke(lam, name)[1])
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: process_gone(pid), 5, f"runtime {pid} to exit", step=0.001)
        r, body = invoke(lam, name)
        if "FunctionError" in r:
            assert json.loads(body)["errorType"] == "Runtime.ExitError", body
            r, body = invoke(lam, name)
        assert "FunctionError" not in r, body
        assert json.loads(body) != pid
