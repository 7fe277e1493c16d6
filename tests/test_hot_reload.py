"""Hot reload: `Code={"S3Bucket": "hot-reload", "S3Key": "/abs/dir"}` runs a local directory in
place, and a real edit of a file in it is picked up by the next invoke (within 1 s of the
write), in every executor: Python, Node and provided.* in subprocess mode, and Docker with
the directory bind-mounted read-only. Debounce, ignored paths, --hot-reload-patterns,
directory layers, GetFunction's shape and the errors for a missing directory.

Every edit is a real file write into a temp directory; every wait is bounded on a condition.
The latencies (write → first invoke answering with the new code) are printed (`pytest -s`
shows them), never asserted: bench/bench.py's `hotreload` section measures them."""
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import Server, expect_error, invoke, make_zip, unique, wait_for

ROLE = "arn:aws:iam::000000000000:role/lambda"
HOT = "hot-reload"
PLACEHOLDER_SHA = "hot-reloading-hash-not-available"
# How long a test waits for the new code before it fails (generous: CI is loaded). The
# issue's 1 s is a figure of the bench, not an assertion here.
WAIT = 20.0

PY_APP = """import os
VERSION = {version!r}
def handler(event, context):
    print("running", VERSION)
    return {{"version": VERSION, "pid": os.getpid()}}
"""

NODE_APP = """const VERSION = {version!r};
exports.handler = async () => {{
  console.log('running', VERSION);
  return {{ version: VERSION, pid: process.pid }};
}};
"""

# A custom runtime's bootstrap: a script speaking the Runtime API itself, like a `cargo
# lambda build` binary would. Each "build" writes a new one with another VERSION.
BOOTSTRAP = """#!{python}
import json, os, urllib.request
VERSION = {version!r}
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        r.read()
    body = json.dumps({{"version": VERSION, "pid": os.getpid()}}).encode()
    urllib.request.urlopen(urllib.request.Request(api + rid + "/response", data=body, method="POST")).read()
"""


def write(path, text, mode=None):
    """A real edit: the file written in place (what most editors and `cp` do)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)


def build_replace(path, text, mode=0o755):
    """A rebuild: the new file written beside the old one and renamed over it (what cargo
    and most build tools do)."""
    tmp = path + ".new"
    write(tmp, text, mode)
    os.replace(tmp, path)


@pytest.fixture
def code_dir():
    d = tempfile.mkdtemp(prefix="ruststack-hot-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


def create_hot(lam, d, runtime="python3.11", handler="app.handler", **kw):
    name = unique("hot")
    lam.create_function(FunctionName=name, Runtime=runtime, Role=ROLE, Handler=handler,
                        Code={"S3Bucket": HOT, "S3Key": d}, Timeout=10, **kw)
    return name


def call(lam, name, **kw):
    r, out = invoke(lam, name, LogType="Tail", decode=True, **kw)
    assert "FunctionError" not in r, out
    return out, base64.b64decode(r["LogResult"]).decode()


def await_version(lam, name, version, since, what="the new code", **kw):
    """Invokes until the function answers with `version` (a bounded wait). Returns (output,
    its log tail, the time since `since`, the write: printed, never asserted)."""

    def new_code():
        out, log = call(lam, name, **kw)
        return (out, log) if out["version"] == version else None

    out, log = wait_for(new_code, timeout=WAIT, what=f"{what} ({version}) in {name}", step=0.01)
    latency = time.monotonic() - since
    print(f"\nhot reload latency ({what}): {latency * 1000:.0f} ms")
    return out, log, latency


def change_lines(server, d):
    """The server's log lines about changes of directory `d` (one per debounced burst)."""
    return [line for line in server.logs().splitlines()
            if "hot reload: code changed" in line and f'dir="{d}"' in line]


def test_python_edit_is_picked_up_within_a_second(lam, server, code_dir):
    write(os.path.join(code_dir, "app.py"), PY_APP.format(version="v1"))
    name = create_hot(lam, code_dir)
    first, _ = call(lam, name)
    assert first["version"] == "v1"
    # Warm: the same environment answers until the code changes.
    assert call(lam, name)[0]["pid"] == first["pid"]
    t0 = time.monotonic()
    write(os.path.join(code_dir, "app.py"), PY_APP.format(version="v2"))
    out, log, _ = await_version(lam, name, "v2", t0)
    assert out["pid"] != first["pid"]
    # The function's own log says that a change restarted it, and which file.
    assert re.search(r"\[hot-reload\] app\.py changed in " + re.escape(code_dir), log), log
    assert "running v2" in log
    # Nothing was written into the user's directory (no __pycache__).
    assert sorted(os.listdir(code_dir)) == ["app.py"]
    # The note is in CloudWatch Logs too, in the function's group.
    logs = server.client("logs")
    events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
    assert any("[hot-reload] app.py changed" in e["message"] for e in events), events
    # The next invoke is warm again on the new environment, with no note.
    again, log = call(lam, name)
    assert again == out and "[hot-reload]" not in log


def test_500_files_restart_the_environment_once(lam, server, code_dir):
    write(os.path.join(code_dir, "app.py"), PY_APP.format(version="v1"))
    name = create_hot(lam, code_dir)
    before, _ = call(lam, name)
    t0 = time.monotonic()
    # A build: 500 files, then the handler.
    for i in range(500):
        write(os.path.join(code_dir, "build", f"f{i:03}.txt"), f"{i}\n")
    write(os.path.join(code_dir, "app.py"), PY_APP.format(version="v2"))
    out, log, _ = await_version(lam, name, "v2", t0, what="the code after a 500-file build")
    assert out["pid"] != before["pid"]
    assert "[hot-reload] build/f000.txt changed" in log and "(and 500 more files)" in log, log
    # One burst, one restart: one change reported, and the new environment stays.
    lines = change_lines(server, code_dir)
    assert len(lines) == 1, lines
    assert "changes=501 " in lines[0], lines[0]
    for _ in range(5):
        again, log = call(lam, name)
        assert again["pid"] == out["pid"] and "[hot-reload]" not in log


def test_ignored_paths_do_not_count(lam, server, code_dir):
    write(os.path.join(code_dir, "app.py"), PY_APP.format(version="v1"))
    name = create_hot(lam, code_dir)
    before, _ = call(lam, name)
    for rel in ["__pycache__/app.cpython-311.pyc", ".git/HEAD", ".git/objects/ab/cdef",
                "node_modules/.cache/babel/x.json", ".app.py.swp", "app.py~", ".#app.py", "4913"]:
        write(os.path.join(code_dir, rel), "ignored\n")
    # A file that counts, written last: its burst is the first one reported, and it holds
    # nothing but this file.
    write(os.path.join(code_dir, "marker.txt"), "counts\n")
    lines = wait_for(lambda: change_lines(server, code_dir), timeout=10, what="the marker's change")
    assert len(lines) == 1 and 'file="marker.txt"' in lines[0] and "changes=1 " in lines[0], lines
    after, log = call(lam, name)
    assert after["pid"] != before["pid"] and "[hot-reload] marker.txt changed" in log


def test_unrelated_function_is_untouched(lam, code_dir):
    other_dir = tempfile.mkdtemp(prefix="ruststack-hot-other-")
    try:
        write(os.path.join(code_dir, "app.py"), PY_APP.format(version="a1"))
        write(os.path.join(other_dir, "app.py"), PY_APP.format(version="b1"))
        a = create_hot(lam, code_dir)
        b = create_hot(lam, other_dir)
        zipped = unique("zip")
        lam.create_function(FunctionName=zipped, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                            Code={"ZipFile": make_zip({"app.py": PY_APP.format(version="z1")})})
        pa, pb, pz = (call(lam, n)[0]["pid"] for n in (a, b, zipped))
        t0 = time.monotonic()
        write(os.path.join(code_dir, "app.py"), PY_APP.format(version="a2"))
        await_version(lam, a, "a2", t0)
        assert call(lam, b)[0] == {"version": "b1", "pid": pb}
        assert call(lam, zipped)[0] == {"version": "z1", "pid": pz}
        assert call(lam, a)[0]["pid"] != pa
    finally:
        shutil.rmtree(other_dir, ignore_errors=True)


def test_node_edit(lam, code_dir):
    node = shutil.which("node")
    assert node, "this test needs node on PATH (the machine image has it)"
    major = subprocess.run([node, "-p", "process.versions.node.split('.')[0]"],
                           capture_output=True, text=True).stdout.strip()
    write(os.path.join(code_dir, "index.js"), NODE_APP.format(version="n1"))
    name = create_hot(lam, code_dir, runtime=f"nodejs{major}.x", handler="index.handler")
    first, _ = call(lam, name)
    assert first["version"] == "n1"
    t0 = time.monotonic()
    write(os.path.join(code_dir, "index.js"), NODE_APP.format(version="n2"))
    out, log, _ = await_version(lam, name, "n2", t0, what="the edited Node handler")
    assert out["pid"] != first["pid"] and "[hot-reload] index.js changed" in log


def test_provided_picks_up_a_rebuilt_bootstrap(lam, code_dir):
    path = os.path.join(code_dir, "bootstrap")
    build_replace(path, BOOTSTRAP.format(python=sys.executable, version="b1"))
    name = create_hot(lam, code_dir, runtime="provided.al2023", handler="bootstrap")
    first, _ = call(lam, name)
    assert first["version"] == "b1"
    t0 = time.monotonic()
    build_replace(path, BOOTSTRAP.format(python=sys.executable, version="b2"))
    out, log, _ = await_version(lam, name, "b2", t0, what="the rebuilt bootstrap")
    assert out["pid"] != first["pid"] and "[hot-reload] bootstrap" in log, log


def test_layer_directory(lam, code_dir):
    layer_dir = tempfile.mkdtemp(prefix="ruststack-hot-layer-")
    try:
        write(os.path.join(layer_dir, "python", "shared.py"), "VALUE = 'l1'\n")
        lv = lam.publish_layer_version(LayerName=unique("hotlayer"), Content={"S3Bucket": HOT, "S3Key": layer_dir},
                                       CompatibleRuntimes=["python3.11"])
        assert lv["Content"]["Location"] == f"file://{layer_dir}"
        assert lv["Content"]["CodeSha256"] == PLACEHOLDER_SHA and lv["Content"]["CodeSize"] == 0
        got = lam.get_layer_version_by_arn(Arn=lv["LayerVersionArn"])
        assert got["Content"] == lv["Content"]
        app = ("import os, shared\n"
               "def handler(event, context):\n"
               "    return {'version': shared.VALUE, 'pid': os.getpid()}\n")
        write(os.path.join(code_dir, "app.py"), app)
        name = create_hot(lam, code_dir, Layers=[lv["LayerVersionArn"]])
        cfg = lam.get_function_configuration(FunctionName=name)
        assert cfg["Layers"] == [{"Arn": lv["LayerVersionArn"], "CodeSize": 0}]
        first, _ = call(lam, name)
        assert first["version"] == "l1"
        t0 = time.monotonic()
        write(os.path.join(layer_dir, "python", "shared.py"), "VALUE = 'l2'\n")
        out, log, _ = await_version(lam, name, "l2", t0, what="the edited layer")
        assert out["pid"] != first["pid"] and "[hot-reload] python/shared.py changed" in log, log
        assert sorted(os.listdir(os.path.join(layer_dir, "python"))) == ["shared.py"]
    finally:
        shutil.rmtree(layer_dir, ignore_errors=True)


def test_get_function_shape_and_updates(lam, code_dir):
    write(os.path.join(code_dir, "app.py"), PY_APP.format(version="v1"))
    name = create_hot(lam, code_dir + "/")
    got = lam.get_function(FunctionName=name)
    # The trailing slash is one directory: reported without it.
    assert got["Code"] == {"RepositoryType": "S3", "Location": f"file://{code_dir}"}
    assert got["Configuration"]["CodeSha256"] == PLACEHOLDER_SHA
    assert got["Configuration"]["CodeSize"] == 0
    assert got["Configuration"]["PackageType"] == "Zip"
    # PublishVersion's CodeSha256 check cannot hold for a directory (LocalStack skips it too).
    v = lam.publish_version(FunctionName=name, CodeSha256="anything")
    assert v["CodeSha256"] == PLACEHOLDER_SHA
    assert lam.get_function(FunctionName=name, Qualifier=v["Version"])["Code"]["Location"] == f"file://{code_dir}"
    # Back to a zip: a normal package again.
    zipped = make_zip({"app.py": PY_APP.format(version="zip")})
    up = lam.update_function_code(FunctionName=name, ZipFile=zipped)
    assert up["CodeSha256"] != PLACEHOLDER_SHA and up["CodeSize"] == len(zipped)
    assert call(lam, name)[0]["version"] == "zip"
    loc = lam.get_function(FunctionName=name)["Code"]["Location"]
    assert loc.startswith("http://") and "/_ruststack/code/" in loc
    # And to a directory with UpdateFunctionCode.
    up = lam.update_function_code(FunctionName=name, S3Bucket=HOT, S3Key=code_dir)
    assert up["CodeSha256"] == PLACEHOLDER_SHA and up["CodeSize"] == 0
    assert call(lam, name)[0]["version"] == "v1"
    t0 = time.monotonic()
    write(os.path.join(code_dir, "app.py"), PY_APP.format(version="v2"))
    await_version(lam, name, "v2", t0, what="an edit after UpdateFunctionCode")


def test_missing_or_relative_directory_is_refused(lam, code_dir):
    for key, text in [(os.path.join(code_dir, "nope"), "existing directory"),
                      ("relative/dir", "has to be an absolute path"),
                      ("/", "not the root directory")]:
        err = expect_error("InvalidParameterValueException", 400, lam.create_function,
                           FunctionName=unique("hot"), Runtime="python3.11", Role=ROLE, Handler="app.handler",
                           Code={"S3Bucket": HOT, "S3Key": key})
        assert text in err["Error"]["Message"], err
    write(os.path.join(code_dir, "file.txt"), "x")
    err = expect_error("InvalidParameterValueException", 400, lam.create_function,
                       FunctionName=unique("hot"), Runtime="python3.11", Role=ROLE, Handler="app.handler",
                       Code={"S3Bucket": HOT, "S3Key": os.path.join(code_dir, "file.txt")})
    assert "not a directory" in err["Error"]["Message"]
    err = expect_error("InvalidParameterValueException", 400, lam.publish_layer_version,
                       LayerName=unique("hotlayer"), Content={"S3Bucket": HOT, "S3Key": os.path.join(code_dir, "x")})
    assert "existing directory" in err["Error"]["Message"]
    # The server keeps serving.
    assert lam.list_functions()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_directory_that_disappears_gives_a_clear_init_error(lam, server, code_dir):
    d = os.path.join(code_dir, "fn")
    write(os.path.join(d, "app.py"), PY_APP.format(version="v1"))
    name = create_hot(lam, d)
    assert call(lam, name)[0]["version"] == "v1"
    shutil.rmtree(d)

    def init_error():
        r, out = invoke(lam, name, LogType="Tail", decode=True)
        return (r, out) if r.get("FunctionError") else None

    r, out = wait_for(init_error, timeout=10, what="the init error of a function whose directory is gone")
    assert r["StatusCode"] == 200 and r["FunctionError"] == "Unhandled"
    assert out["errorType"] == "Runtime.InitError", out
    assert d in out["errorMessage"] and "no longer exists" in out["errorMessage"], out
    assert d in base64.b64decode(r["LogResult"]).decode()
    # Back again: the function runs the new directory's code.
    t0 = time.monotonic()
    write(os.path.join(d, "app.py"), PY_APP.format(version="v2"))
    await_version(lam, name, "v2", t0, what="the re-created directory")


def test_storage_never_touches_the_directory(lam, server, code_dir):
    write(os.path.join(code_dir, "app.py"), PY_APP.format(version="v1"))
    write(os.path.join(code_dir, "lib", "data.json"), "{}")
    name = create_hot(lam, code_dir)
    assert call(lam, name)[0]["version"] == "v1"
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": PY_APP.format(version="z")}))
    lam.update_function_code(FunctionName=name, S3Bucket=HOT, S3Key=code_dir)
    lam.delete_function(FunctionName=name)
    # Deleting collects unreferenced code; the user's directory is no stored code.
    with urllib_request(server, "/_ruststack/storage") as body:
        assert json.loads(body)
    assert sorted(os.listdir(code_dir)) == ["app.py", "lib"]
    assert open(os.path.join(code_dir, "lib", "data.json")).read() == "{}"


class urllib_request:
    """GET a server path; the body as the context value."""

    def __init__(self, server, path):
        import urllib.request
        self.r = urllib.request.urlopen(server.endpoint + path, timeout=10)

    def __enter__(self):
        return self.r.read()

    def __exit__(self, *exc):
        self.r.close()


PROV_APP = """import os
VERSION = {version!r}
def handler(event, context):
    return {{"version": VERSION, "pid": os.getpid(), "init": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")}}
"""


def test_provisioned_environments_are_replaced_on_change(lam, code_dir):
    write(os.path.join(code_dir, "app.py"), PROV_APP.format(version="p1"))
    name = create_hot(lam, code_dir)
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier=version,
                                           ProvisionedConcurrentExecutions=1)
    wait_for(lambda: lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)["Status"]
             == "READY", timeout=30, what="provisioned concurrency READY")
    first, _ = call(lam, name, Qualifier=version)
    assert first == {"version": "p1", "pid": first["pid"], "init": "provisioned-concurrency"}, first
    assert call(lam, name, Qualifier=version)[0]["pid"] == first["pid"], "the provisioned environment is kept"
    write(os.path.join(code_dir, "app.py"), PROV_APP.format(version="p2"))

    # A fresh provisioned environment (not an on-demand one beside it) runs the new code.
    def fresh_provisioned():
        out, _ = call(lam, name, Qualifier=version)
        return out if out["version"] == "p2" and out["init"] == "provisioned-concurrency" else None

    out = wait_for(fresh_provisioned, timeout=WAIT, what="a provisioned environment with the new code", step=0.02)
    assert out["pid"] != first["pid"]
    # It stays: the next invokes are served by it, still provisioned, still the new code.
    for _ in range(3):
        assert call(lam, name, Qualifier=version)[0] == out
    assert lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)["Status"] == "READY"


def test_same_name_in_another_region_keeps_running(server, code_dir):
    """Retiring on a change is keyed by region and name: the same-named function of another
    region (from its own directory) keeps its environment."""
    import boto3
    from botocore.config import Config
    other_dir = tempfile.mkdtemp(prefix="ruststack-hot-other-")
    try:
        east = server.client("lambda")
        west = boto3.client("lambda", endpoint_url=server.endpoint, region_name="eu-west-1",
                            aws_access_key_id="test", aws_secret_access_key="test",
                            config=Config(retries={"max_attempts": 1, "mode": "standard"}))
        name = unique("hot")
        write(os.path.join(code_dir, "app.py"), PY_APP.format(version="e1"))
        write(os.path.join(other_dir, "app.py"), PY_APP.format(version="w1"))
        for lam, d in ((east, code_dir), (west, other_dir)):
            lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                                Code={"S3Bucket": HOT, "S3Key": d}, Timeout=10)
        e1, _ = call(east, name)
        w1, _ = call(west, name)
        assert (e1["version"], w1["version"]) == ("e1", "w1") and e1["pid"] != w1["pid"]
        t0 = time.monotonic()
        write(os.path.join(code_dir, "app.py"), PY_APP.format(version="e2"))
        out, _, _ = await_version(east, name, "e2", t0, what="the edit in us-east-1")
        assert out["pid"] != e1["pid"]
        # The change was handled (the east function answers with it); the west one still
        # runs in the same process.
        assert change_lines(server, code_dir), "the change was reported"
        for _ in range(3):
            assert call(west, name)[0] == w1
    finally:
        shutil.rmtree(other_dir, ignore_errors=True)


# ---- --hot-reload-patterns ----

@pytest.fixture(scope="module")
def pserver():
    s = Server("--hot-reload-patterns", "**/dist/**/*.js,*.py")
    yield s
    s.cleanup()


def test_patterns_limit_which_changes_count(pserver, code_dir):
    lam = pserver.client("lambda")
    write(os.path.join(code_dir, "app.py"), PY_APP.format(version="v1"))
    name = create_hot(lam, code_dir)
    before, _ = call(lam, name)
    # Sources that do not match, then the build output that does.
    write(os.path.join(code_dir, "src", "app.ts"), "export {}\n")
    write(os.path.join(code_dir, "src", "deep", "x.py"), "x = 1\n")
    write(os.path.join(code_dir, "dist", "js", "app.js"), "// built\n")
    lines = wait_for(lambda: change_lines(pserver, code_dir), timeout=10, what="the dist change")
    assert len(lines) == 1 and 'file="dist/js/app.js"' in lines[0] and "changes=1 " in lines[0], lines
    after, log = call(lam, name)
    assert after["pid"] != before["pid"] and "[hot-reload] dist/js/app.js changed" in log
    t0 = time.monotonic()
    write(os.path.join(code_dir, "app.py"), PY_APP.format(version="v2"))
    await_version(lam, name, "v2", t0, what="a matching *.py edit")


def test_bad_pattern_stops_the_server_with_a_clear_message():
    d = tempfile.mkdtemp(prefix="ruststack-test-")
    try:
        with pytest.raises(RuntimeError) as ei:
            Server("--hot-reload-patterns", "dist/[", data_dir=d)
        assert "--hot-reload-patterns" in str(ei.value) and "not a valid glob" in str(ei.value)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---- docker ----

PY_IMAGE = "ruststack/lambda-python:3.11"

DOCKER_APP = """import os
import shared  # the layer's, from /opt/python: read once per environment
VERSION = {version!r}
def _mount(point):
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        if f[4] == point:
            return f[5].split(",")[0]
def handler(event, context):
    try:
        open("/var/task/written-by-function", "w").close()
        wrote = True
    except OSError:
        wrote = False
    return {{"version": VERSION, "pid": os.getpid(), "task": _mount("/var/task"), "opt": _mount("/opt"),
             "wrote": wrote, "cwd": os.getcwd(), "layer": shared.VALUE, "files": sorted(os.listdir("/var/task"))}}
"""


@pytest.fixture(scope="module")
def dserver():
    if os.environ.get("RUSTSTACK_SKIP_DOCKER") == "1":
        pytest.skip("RUSTSTACK_SKIP_DOCKER=1: Docker tests opted out")
    if subprocess.run(["docker", "image", "inspect", PY_IMAGE], capture_output=True).returncode != 0:
        pytest.fail(f"image {PY_IMAGE} is missing: run `bash images/build.sh` (tests/run.sh does)")
    s = Server("--lambda-executor", "docker", "--lambda-runtime-image", f"python3.11={PY_IMAGE}")
    yield s
    s.cleanup()


def test_docker_bind_mounts_the_directory_read_only(dserver, code_dir):
    lam = dserver.client("lambda")
    layer_dir = tempfile.mkdtemp(prefix="ruststack-hot-layer-")
    try:
        write(os.path.join(layer_dir, "python", "shared.py"), "VALUE = 'l1'\n")
        lv = lam.publish_layer_version(LayerName=unique("hotlayer"), Content={"S3Bucket": HOT, "S3Key": layer_dir})
        write(os.path.join(code_dir, "app.py"), DOCKER_APP.format(version="d1"))
        name = create_hot(lam, code_dir, Layers=[lv["LayerVersionArn"]])
        first, _ = call(lam, name)
        assert first["version"] == "d1" and first["layer"] == "l1", first
        # The directory itself, read-only, at /var/task; the layer's at /opt.
        assert first["task"] == "ro" and first["opt"] == "ro" and first["wrote"] is False, first
        assert first["cwd"] == "/var/task" and first["files"] == ["app.py"]
        assert sorted(os.listdir(code_dir)) == ["app.py"]
        t0 = time.monotonic()
        write(os.path.join(code_dir, "app.py"), DOCKER_APP.format(version="d2"))
        out, log, _ = await_version(lam, name, "d2", t0, what="an edit in docker mode")
        assert "[hot-reload] app.py changed" in log
        # A layer edit restarts the environment too: the module is read at init only.
        t0 = time.monotonic()
        write(os.path.join(layer_dir, "python", "shared.py"), "VALUE = 'l2'\n")
        after = wait_for(lambda: (lambda o: o if o["layer"] == "l2" else None)(call(lam, name)[0]),
                         timeout=WAIT, what="the layer edit at /opt", step=0.01)
        print(f"\nhot reload latency (layer edit, docker): {(time.monotonic() - t0) * 1000:.0f} ms")
        assert after["version"] == "d2" and after["opt"] == "ro"
    finally:
        shutil.rmtree(layer_dir, ignore_errors=True)


def test_docker_several_layers_one_a_directory(dserver, code_dir):
    """With two layers (a zip and a hot-reload directory) /opt is a merge of both: a change
    in the directory layer (a file renamed over, and a new file) shows in the next
    container's /opt, with the zip layer's files still there."""
    lam = dserver.client("lambda")
    layer_dir = tempfile.mkdtemp(prefix="ruststack-hot-layer-")
    try:
        zipped = lam.publish_layer_version(LayerName=unique("ziplayer"),
                                           Content={"ZipFile": make_zip({"python/base.py": "BASE = 'zip'\n"})})
        write(os.path.join(layer_dir, "python", "shared.py"), "VALUE = 'l1'\n")
        hot = lam.publish_layer_version(LayerName=unique("hotlayer"), Content={"S3Bucket": HOT, "S3Key": layer_dir})
        app = ("import os, base, shared\n"
               "def handler(event, context):\n"
               "    p = '/opt/python/extra.txt'\n"
               "    extra = open(p).read() if os.path.exists(p) else None\n"
               "    return {'version': shared.VALUE, 'base': base.BASE, 'extra': extra,\n"
               "            'files': sorted(os.listdir('/opt/python'))}\n")
        write(os.path.join(code_dir, "app.py"), app)
        name = create_hot(lam, code_dir, Layers=[zipped["LayerVersionArn"], hot["LayerVersionArn"]])
        first, _ = call(lam, name)
        assert first == {"version": "l1", "base": "zip", "extra": None, "files": ["base.py", "shared.py"]}, first
        t0 = time.monotonic()
        # A build: a new file, and the module renamed over the old one (a new inode).
        write(os.path.join(layer_dir, "python", "extra.txt"), "new")
        build_replace(os.path.join(layer_dir, "python", "shared.py"), "VALUE = 'l2'\n", mode=0o644)
        out, log, _ = await_version(lam, name, "l2", t0, what="a directory layer among several, docker")
        assert out == {"version": "l2", "base": "zip", "extra": "new",
                       "files": ["base.py", "extra.txt", "shared.py"]}, out
        assert "[hot-reload] python/" in log, log
        # The user's directory is untouched.
        assert sorted(os.listdir(os.path.join(layer_dir, "python"))) == ["extra.txt", "shared.py"]
        # Each merge is the container's own: the retired container's goes with it, and so
        # does the held spare's (merged before the change), which a new spare replaces.
        import glob
        merges = lambda: glob.glob(os.path.join(dserver.data_dir, "run", "*", "opt-*"))  # noqa: E731
        wait_for(lambda: len(merges()) == 2 and len(running_containers(name)) == 2, timeout=WAIT,
                 what="two merged /opt (the live container's and the new spare's)")
        for m in merges():
            assert sorted(os.listdir(os.path.join(m, "python"))) == ["base.py", "extra.txt", "shared.py"]
        lam.delete_function(FunctionName=name)
    finally:
        shutil.rmtree(layer_dir, ignore_errors=True)


def running_containers(name):
    """Ids of the function's running containers (its live ones and its held spare)."""
    out = subprocess.run(["docker", "ps", "-q", "--no-trunc", "--filter", "label=ruststack=1",
                          "--filter", f"label=ruststack.function={name}"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return out.split()


SPARE_APP = """import re
VERSION = {version!r}
def _container_id():
    with open("/proc/self/mountinfo") as f:
        m = re.search(r"/docker/containers/([0-9a-f]{{64}})/", f.read())
    return m and m.group(1)
def handler(event, context):
    return {{"version": VERSION, "pid": 0, "container_id": _container_id()}}
"""


def test_docker_change_lets_the_held_spare_go(dserver, code_dir):
    """A hot-reload Docker function keeps a held spare after its first invoke (without
    --lambda-docker-spare): a container created and started with its runtime waiting. A
    change lets that runtime go, and as the directory is mounted in place it loads the new
    code: the next invoke is served in the spare's container. A new spare follows."""
    lam = dserver.client("lambda")
    write(os.path.join(code_dir, "app.py"), SPARE_APP.format(version="s1"))
    name = create_hot(lam, code_dir)
    first, _ = call(lam, name)
    assert first["version"] == "s1" and first["container_id"], first
    spare = wait_for(lambda: [c for c in running_containers(name) if c != first["container_id"]],
                     timeout=WAIT, what="the held spare after the first invoke")
    assert len(spare) == 1, spare
    # Held: the warm path still serves from the first container.
    again, _ = call(lam, name)
    assert again["container_id"] == first["container_id"]
    t0 = time.monotonic()
    write(os.path.join(code_dir, "app.py"), SPARE_APP.format(version="s2"))
    out, log, _ = await_version(lam, name, "s2", t0, what="an edit in docker mode, from the held spare")
    assert out["container_id"] == spare[0], (out, spare)
    assert "[hot-reload] app.py changed" in log and "Init Duration" in log, log
    # The retired container goes; a new spare is held for the next change.
    nxt = wait_for(lambda: (lambda r: r if first["container_id"] not in r and len(r) == 2 else None)(
        running_containers(name)), timeout=WAIT, what="the retired container gone and a new spare")
    assert spare[0] in nxt
    t0 = time.monotonic()
    write(os.path.join(code_dir, "app.py"), SPARE_APP.format(version="s3"))
    out3, _, _ = await_version(lam, name, "s3", t0, what="a second edit, from the next spare")
    assert out3["container_id"] == [c for c in nxt if c != spare[0]][0], (out3, nxt)
    lam.delete_function(FunctionName=name)
    wait_for(lambda: not running_containers(name), timeout=WAIT, what="the spare removed with its function")
