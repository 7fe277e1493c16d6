"""One-command debugging with real debuggers: `ruststack attach FN --debug` and the server's
`--lambda-debug FN[=PORT]` start the function's runtime under debugpy (spoken to over the Debug
Adapter Protocol) or Node's inspector (over the Chrome DevTools Protocol); a breakpoint in the
handler stops a real invocation, a local variable is evaluated, and the invocation completes
with its answer after `continue`, with the function's timeout suspended meanwhile."""
import base64
import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from conftest import BIN, Server, create_py_function, expect_error, free_port, make_zip, unique, wait_for
from debug_clients import Cdp, Dap, Invoke
from test_attach import attached_count, wait_attached

PY_APP = (
    "import os\n"
    "def handler(event, context):\n"
    "    doubled = event.get('n', 0) * 2\n"
    "    answer = {'doubled': doubled, 'file': __file__, 'pid': os.getpid()}\n"  # line 4: the breakpoint
    "    answer['remaining'] = context.get_remaining_time_in_millis()\n"
    "    return answer\n"
)
PY_LINE = 4

NODE_APP = (
    "exports.handler = async (event, context) => {\n"
    "  const doubled = (event.n || 0) * 2;\n"
    "  return { doubled, file: __filename, remaining: context.getRemainingTimeInMillis() };\n"  # line 3
    "};\n"
)
NODE_LINE0 = 2  # the same line, 0-based as CDP counts

HOUR_MS = 3600 * 1000


def create_node_function(lam, name, **kw):
    lam.create_function(FunctionName=name, Runtime="nodejs18.x", Role="arn:aws:iam::000000000000:role/lambda",
                        Handler="app.handler", Code={"ZipFile": make_zip({"app.js": NODE_APP})}, **kw)
    return name


def dap_round(dap, lam, name, n, path_suffix="app.py", inv=None):
    """One invocation that stops at the breakpoint: checks the frame, evaluates `doubled`,
    continues, and returns the invocation's answer. `inv`: one already under way with {"n": n}."""
    inv = inv or Invoke(lam, name, {"n": n})
    try:
        tid, reason, frame = dap.stopped_frame()
        assert reason == "breakpoint", reason
        assert frame["line"] == PY_LINE and frame["source"]["path"].endswith(path_suffix), frame
        assert dap.evaluate(frame["id"], "doubled") == str(n * 2)
        assert dap.evaluate(frame["id"], "event['n']") == str(n)
        dap.request("continue", {"threadId": tid})
    except BaseException:
        inv.join(check=False)
        raise
    answer = inv.join()
    assert answer["doubled"] == n * 2, answer
    assert answer["remaining"] > HOUR_MS, answer  # the 3 s timeout is suspended
    return answer


def cdp_start(cdp):
    """Debugger.enable, the breakpoint by URL, then let the runtime (waiting in --inspect-brk) run."""
    cdp.call("Debugger.enable")
    bp = cdp.call("Debugger.setBreakpointByUrl", {"lineNumber": NODE_LINE0, "urlRegex": r"app\.js$"})
    assert bp["breakpointId"], bp
    cdp.call("Runtime.runIfWaitingForDebugger")
    # --inspect-brk stops on the runtime client's first line: go on from there.
    first = cdp.event("Debugger.paused")
    assert not first.get("hitBreakpoints"), first
    cdp.call("Debugger.resume")
    return bp["breakpointId"]


def cdp_round(cdp, lam, name, n, bp_id, inv=None):
    """Like dap_round, over CDP; `inv`: an invocation already under way with {"n": n}."""
    inv = inv or Invoke(lam, name, {"n": n})
    try:
        paused = cdp.event("Debugger.paused", timeout=60)
        assert bp_id in paused.get("hitBreakpoints", []), paused
        frame = paused["callFrames"][0]
        assert frame["location"]["lineNumber"] == NODE_LINE0, frame
        r = cdp.call("Debugger.evaluateOnCallFrame", {"callFrameId": frame["callFrameId"], "expression": "doubled"})
        assert r["result"]["value"] == n * 2, r
        cdp.call("Debugger.resume")
    except BaseException:
        inv.join(check=False)
        raise
    answer = inv.join()
    assert answer["doubled"] == n * 2, answer
    assert answer["remaining"] > HOUR_MS, answer
    return answer


# ------------------------------------------------------------------ ruststack attach --debug

def attach_debug(server, name, cwd, port, *extra):
    return subprocess.Popen(
        [BIN, "attach", name, "--endpoint", server.endpoint, "--debug", "--debug-port", str(port),
         "--python", sys.executable, *extra],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(p):
    p.kill()
    p.wait(timeout=10)
    return p.stderr.read()


def test_attach_debug_python(server, lam, tmp_path):
    (tmp_path / "app.py").write_text(PY_APP)
    name = create_py_function(lam, "def handler(e, c):\n    return {'deployed': True}\n", Timeout=3)
    port = free_port()
    p = attach_debug(server, name, tmp_path, port)
    dap = None
    try:
        wait_attached(server, name)
        dap = Dap(port)
        path = os.path.realpath(tmp_path / "app.py")
        verified = dap.attach({path: [PY_LINE]})
        assert verified[path][0]["verified"], verified
        answer = dap_round(dap, lam, name, 21)
        assert answer["file"] == path  # the local source, not the deployed code
        dap_round(dap, lam, name, 5)  # the breakpoint holds across invocations
    finally:
        if dap:
            dap.close()
        err = stop(p)
    assert "debugpy listens on 127.0.0.1:%d" % port in err, err
    wait_for(lambda: not attached_count(server, name), 10, f"{name} to be detached")
    assert lam.invoke(FunctionName=name)["Payload"].read() == b'{"deployed": true}'


def test_attach_debug_without_debugpy_says_how_to_install(server, lam, tmp_path):
    name = create_py_function(lam, "def handler(e, c): return 1\n")
    bare = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else None
    probe = subprocess.run([bare or "false", "-c", "import debugpy"], capture_output=True)
    if bare is None or probe.returncode == 0:
        # An interpreter that certainly lacks it: a stand-in that fails every import.
        bare = str(tmp_path / "python-without-debugpy")
        with open(bare, "w") as f:
            f.write("#!/bin/sh\necho 'ModuleNotFoundError: No module named debugpy' >&2\nexit 1\n")
        os.chmod(bare, 0o755)
    r = subprocess.run([BIN, "attach", name, "--endpoint", server.endpoint, "--debug", "--python", bare],
                       cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "pip install debugpy" in r.stderr, r.stderr
    # The refused start does not leave the function attached.
    assert attached_count(server, name) == 0


def test_attach_debug_node(server, lam, tmp_path):
    (tmp_path / "app.js").write_text(NODE_APP)
    name = create_node_function(lam, unique("dbg-node"), Timeout=3)
    port = free_port()
    p = attach_debug(server, name, tmp_path, port)
    cdp = None
    try:
        wait_attached(server, name)
        cdp = Cdp(port)
        bp = cdp_start(cdp)
        answer = cdp_round(cdp, lam, name, 21, bp)
        assert answer["file"] == os.path.realpath(tmp_path / "app.js")
        cdp_round(cdp, lam, name, 4, bp)
    finally:
        if cdp:
            cdp.close()
        err = stop(p)
    assert "inspector listens on 127.0.0.1:%d" % port in err, err


def test_attach_debug_provided_prints_env_and_runs_bootstrap(server, lam, tmp_path):
    name = unique("dbg-prov")
    lam.create_function(FunctionName=name, Runtime="provided.al2023", Role="arn:aws:iam::000000000000:role/lambda",
                        Handler="h", Code={"ZipFile": make_zip({"bootstrap*": "#!/bin/sh\nexit 3\n"})})
    # Without a ./bootstrap here it says what to do, and detaches.
    r = subprocess.run([BIN, "attach", name, "--endpoint", server.endpoint, "--debug"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "no ./bootstrap" in r.stderr, r.stderr
    assert attached_count(server, name) == 0
    # A local bootstrap (here one that shows what it was given, then exits).
    (tmp_path / "bootstrap").write_text(
        "#!/bin/sh\n"
        "echo \"pid $$ api $AWS_LAMBDA_RUNTIME_API\" >&2\n"
        "exit 7\n")
    os.chmod(tmp_path / "bootstrap", 0o755)
    r = subprocess.run([BIN, "attach", name, "--endpoint", server.endpoint, "--debug"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=30)
    env = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name and env["_HANDLER"] == "h", r.stdout
    assert "api " + env["AWS_LAMBDA_RUNTIME_API"] in r.stderr, r.stderr
    assert "runs as pid" in r.stderr, r.stderr
    assert r.returncode == 7, r.stderr
    wait_for(lambda: not attached_count(server, name), 10, f"{name} to be detached")


LAYER_APP = (
    "import layermod\n"
    "def handler(event, context):\n"
    "    doubled = event.get('n', 0) * 2\n"
    "    answer = {'doubled': doubled, 'layer': layermod.WHO, 'file': __file__}\n"  # line 4, as PY_LINE
    "    answer['remaining'] = context.get_remaining_time_in_millis()\n"
    "    return answer\n"
)


def publish_layer(lam, files):
    name = unique("dbg-layer")
    return lam.publish_layer_version(LayerName=name, Content={"ZipFile": make_zip(files)})["LayerVersionArn"]


def test_attach_debug_python_loads_the_functions_layers(server, lam, tmp_path):
    """A handler that imports a module of its layer runs under debugpy as in a normal invoke."""
    layer = publish_layer(lam, {"python/layermod.py": "WHO = 'from-layer'\n"})
    name = create_py_function(lam, LAYER_APP, Layers=[layer], Timeout=3)
    assert json.load(lam.invoke(FunctionName=name, Payload=b'{"n": 1}')["Payload"])["layer"] == "from-layer"
    (tmp_path / "app.py").write_text(LAYER_APP)
    port = free_port()
    p = attach_debug(server, name, tmp_path, port)
    dap = None
    try:
        wait_attached(server, name)
        dap = Dap(port)
        path = os.path.realpath(tmp_path / "app.py")
        assert dap.attach({path: [PY_LINE]})[path][0]["verified"]
        answer = dap_round(dap, lam, name, 9)
        assert answer["layer"] == "from-layer" and answer["file"] == path, answer
    finally:
        if dap:
            dap.close()
        err = stop(p)
    assert "debugpy listens on 127.0.0.1:%d" % port in err, err


NODE_LAYER_APP = (
    "const layermod = require('layermod'); exports.handler = async (event, context) => {\n"
    "  const doubled = (event.n || 0) * 2;\n"
    "  return { doubled, layer: layermod.who, remaining: context.getRemainingTimeInMillis() };\n"  # NODE_LINE0
    "};\n"
)


def test_attach_debug_node_loads_the_functions_layers(server, lam, tmp_path):
    layer = publish_layer(lam, {"nodejs/node_modules/layermod/index.js": "exports.who = 'from-layer';\n"})
    name = unique("dbg-nlayer")
    lam.create_function(FunctionName=name, Runtime="nodejs18.x", Role="arn:aws:iam::000000000000:role/lambda",
                        Handler="app.handler", Layers=[layer], Timeout=3,
                        Code={"ZipFile": make_zip({"app.js": NODE_LAYER_APP})})
    (tmp_path / "app.js").write_text(NODE_LAYER_APP)
    port = free_port()
    p = attach_debug(server, name, tmp_path, port)
    cdp = None
    try:
        wait_attached(server, name)
        cdp = Cdp(port)
        bp = cdp_start(cdp)
        assert cdp_round(cdp, lam, name, 6, bp)["layer"] == "from-layer"
    finally:
        if cdp:
            cdp.close()
        stop(p)


class Lines:
    """A pipe read on a thread of its own, so that a wait on its text is bounded."""

    def __init__(self, pipe):
        self.text = ""
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe):
        for line in pipe:
            with self.lock:
                self.text += line

    def get(self):
        with self.lock:
            return self.text


def test_attach_debug_print_env_prints_the_environment_once(server, lam, tmp_path):
    """`--debug --print-env` on a provided.* function: the environment (with the layers'
    paths) once, the command to start, then it holds until Ctrl-C. Here the bootstrap comes
    from a layer, as a custom runtime layer's does."""
    layer = publish_layer(lam, {"bootstrap*": "#!/bin/sh\nexit 0\n", "bin/tool*": "#!/bin/sh\n"})
    name = unique("dbg-penv")
    lam.create_function(FunctionName=name, Runtime="provided.al2023", Role="arn:aws:iam::000000000000:role/lambda",
                        Handler="h", Layers=[layer], Code={"ZipFile": make_zip({"README": "no bootstrap here"})})
    p = subprocess.Popen([BIN, "attach", name, "--endpoint", server.endpoint, "--debug", "--print-env"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = Lines(p.stderr)
    try:
        wait_for(lambda: "holding the attachment" in err.get(), 30, "attach to print and hold")
        assert attached_count(server, name) == 1
    finally:
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=30)
    err.thread.join(10)
    lines = out.splitlines()
    assert sum(line.startswith("AWS_LAMBDA_RUNTIME_API=") for line in lines) == 1, out
    assert len(lines) == len({line.split("=", 1)[0] for line in lines}), out  # no variable twice
    env = dict(line.split("=", 1) for line in lines)
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name and env["LAMBDA_TASK_ROOT"] == str(tmp_path), out
    bin_dir = env["PATH"].split(":")[0]
    assert os.path.isfile(os.path.join(bin_dir, "tool")), env["PATH"]  # the layer's bin, first
    bootstrap = os.path.join(os.path.dirname(bin_dir), "bootstrap")
    assert f"start the runtime with the environment above: {bootstrap}" in err.get(), err.get()
    wait_for(lambda: not attached_count(server, name), 10, f"{name} to be detached")


# ------------------------------------------------------------------ --lambda-debug (subprocess)

PY_FN = "dbg-py"
NODE_FN = "dbg-node"
PROV_FN = "dbg-prov"


@pytest.fixture(scope="module")
def debug_server():
    ports = {"py": free_port(), "node": free_port()}
    s = Server("--lambda-debug", f"{PY_FN}={ports['py']}", "--lambda-debug", f"{NODE_FN}={ports['node']}",
               "--lambda-debug", PROV_FN, "--python", sys.executable, "--lambda-container-ttl", "1")
    s.ports = ports
    yield s
    s.cleanup()


def test_lambda_debug_python_subprocess(debug_server, tmp_path):
    lam = debug_server.client("lambda")
    create_py_function(lam, PY_APP, name=PY_FN, Timeout=3)
    # The first invocation starts the environment, which waits for the debugger.
    first = Invoke(lam, PY_FN, {"n": 1})
    dap = Dap(debug_server.ports["py"])
    try:
        dap.attach()
        path = first.join()["file"]
        assert dap.set_breakpoints(path, [PY_LINE])[0]["verified"]
        pid = dap_round(dap, lam, PY_FN, 21)["pid"]
        # The server's TTL is 1 s: an ordinary function's environment expires, the debugged
        # one is kept (the same runtime, its breakpoint still set).
        other = create_py_function(lam, "def handler(e, c): return 1\n")
        assert lam.invoke(FunctionName=other)["Payload"].read() == b"1"
        assert debug_server.health()["environments"]["live"] == 2
        wait_for(lambda: debug_server.health()["environments"]["live"] == 1, 10, "the idle environment to expire")
        assert dap_round(dap, lam, PY_FN, 7)["pid"] == pid
    finally:
        dap.close()
    assert "debug mode: the debugger listens on 127.0.0.1:%d" % debug_server.ports["py"] in debug_server.logs()


def test_lambda_debug_node_subprocess(debug_server):
    lam = debug_server.client("lambda")
    create_node_function(lam, NODE_FN, Timeout=3)
    first = Invoke(lam, NODE_FN, {"n": 1})
    cdp = Cdp(debug_server.ports["node"])
    try:
        bp = cdp_start(cdp)
        # The breakpoint was set before the runtime loaded the handler: the first one stops too.
        assert cdp_round(cdp, lam, NODE_FN, 1, bp, inv=first)["file"].endswith("app.js")
        cdp_round(cdp, lam, NODE_FN, 21, bp)
        cdp_round(cdp, lam, NODE_FN, 3, bp)
    finally:
        cdp.close()


def test_lambda_debug_flag_is_checked(tmp_path):
    r = subprocess.run([BIN, "--port", str(free_port()), "--data-dir", str(tmp_path), "--lambda-debug", "fn=notaport"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "--lambda-debug expects FN[=PORT]" in r.stderr, r.stderr


def test_lambda_debug_arn_debugs_one_region_only(fresh_server):
    """`--lambda-debug ARN=PORT` debugs the function of the ARN's region; the same name in
    another region runs normally (no debugger, its timeout kept)."""
    import boto3
    from botocore.config import Config
    port, name = free_port(), unique("dbg-arn")
    s = fresh_server("--lambda-debug", f"arn:aws:lambda:eu-west-1:000000000000:function:{name}={port}",
                     "--python", sys.executable)
    cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=30)
    us = s.client("lambda", read_timeout=30)
    eu = boto3.client("lambda", endpoint_url=s.endpoint, region_name="eu-west-1", config=cfg,
                      aws_access_key_id="test", aws_secret_access_key="test")
    create_py_function(us, PY_APP, name=name, Timeout=3)
    create_py_function(eu, PY_APP, name=name, Timeout=3)
    r = us.invoke(FunctionName=name, Payload=b'{"n": 2}')
    plain = json.load(r["Payload"])
    assert "FunctionError" not in r and plain["doubled"] == 4, plain
    assert plain["remaining"] <= 3000, plain
    # The eu-west-1 one waits for the debugger on the port, then runs with its timeout suspended.
    first = Invoke(eu, name, {"n": 5})
    dap = Dap(port)
    try:
        dap.attach()
        debugged = first.join()
    finally:
        dap.close()
    assert debugged["doubled"] == 10 and debugged["remaining"] > HOUR_MS, debugged
    assert debugged["pid"] != plain["pid"]
    assert json.load(us.invoke(FunctionName=name)["Payload"])["remaining"] <= 3000


def test_lambda_debug_flag_takes_no_qualifier(tmp_path):
    r = subprocess.run([BIN, "--port", str(free_port()), "--data-dir", str(tmp_path), "--lambda-debug", "fn:live"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "not a version or alias" in r.stderr, r.stderr


def test_lambda_debug_without_debugpy_says_how_to_install(fresh_server, tmp_path):
    stub = tmp_path / "python-without-debugpy"
    stub.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named debugpy' >&2\nexit 1\n")
    stub.chmod(0o755)
    s = fresh_server("--lambda-debug", "nodbg", "--python", str(stub))
    lam = s.client("lambda")
    create_py_function(lam, PY_APP, name="nodbg")
    err = expect_error("InvalidRuntimeException", 502, lam.invoke, FunctionName="nodbg")
    assert "pip install debugpy" in err["Error"]["Message"], err
    assert s.health()["status"] == "running"


# A custom runtime's bootstrap (a small Runtime API client) that answers with its pid, the event
# and the time left before the deadline it was given.
PROV_BOOTSTRAP = f"""#!{sys.executable}
import json, os, time, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        deadline = int(r.headers["Lambda-Runtime-Deadline-Ms"])
        event = json.load(r)
    body = {{"pid": os.getpid(), "n": event.get("n"), "remaining": deadline - int(time.time() * 1000)}}
    req = urllib.request.Request(api + rid + "/response", data=json.dumps(body).encode(), method="POST")
    urllib.request.urlopen(req).read()
"""


def test_lambda_debug_provided_says_how_to_attach_and_keeps_the_environment(debug_server):
    """RustStack starts no debugger for provided.*: the function's log and the server's say
    where the runtime is (pid, Runtime API) and how to attach; the timeout is suspended and
    the one environment is kept past the TTL."""
    lam = debug_server.client("lambda")
    lam.create_function(FunctionName=PROV_FN, Runtime="provided.al2023", Role="arn:aws:iam::000000000000:role/lambda",
                        Handler="h", Timeout=3, Code={"ZipFile": make_zip({"bootstrap*": PROV_BOOTSTRAP})})
    r = lam.invoke(FunctionName=PROV_FN, Payload=b'{"n": 1}', LogType="Tail")
    answer = json.load(r["Payload"])
    assert "FunctionError" not in r and answer["n"] == 1, answer
    assert answer["remaining"] > HOUR_MS, answer
    pid = answer["pid"]
    tail = base64.b64decode(r["LogResult"]).decode()
    assert "RustStack --lambda-debug: this environment is kept and its timeout suspended" in tail, tail
    assert f"gdb -p {pid}" in tail and "provided.al2023" in tail, tail
    logs = debug_server.logs()
    assert f"gdb -p {pid}" in logs and "debug mode:" in logs, logs[-3000:]
    # An ordinary function's environment expires with the 1 s TTL; the debugged one stays.
    live = debug_server.health()["environments"]["live"]
    other = create_py_function(lam, "def handler(e, c): return 1\n")
    assert lam.invoke(FunctionName=other)["Payload"].read() == b"1"
    wait_for(lambda: debug_server.health()["environments"]["live"] == live, 20, "the idle environment to expire")
    again = json.load(lam.invoke(FunctionName=PROV_FN, Payload=b'{"n": 2}')["Payload"])
    assert again["pid"] == pid and again["n"] == 2, again
