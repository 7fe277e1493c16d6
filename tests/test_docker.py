"""The Docker executor against the real engine and real Lambda-contract images
(ruststack/lambda-python:3.11, built by images/build.sh): containers, warm reuse, TTL,
limits, layers at /opt, timeouts, networking, auto mode, PackageType=Image, cleanup.

Opt out explicitly with RUSTSTACK_SKIP_DOCKER=1; a missing engine or image is a failure."""
import base64
import concurrent.futures as cf
import json
import re
import os
import signal
import subprocess
import tempfile
import threading
import time

import pytest
from botocore.exceptions import ClientError

if os.environ.get("RUSTSTACK_SKIP_DOCKER") == "1":
    pytest.skip("RUSTSTACK_SKIP_DOCKER=1: Docker tests opted out", allow_module_level=True)

from conftest import Server, create_py_function, invoke, make_zip, unique, wait_for  # noqa: E402

PY_IMAGE = "ruststack/lambda-python:3.11"
PROVIDED_IMAGE = "ruststack/lambda-provided:al2023"
NODE_IMAGE = "ruststack/lambda-nodejs:18"
MAP = ("--lambda-runtime-image", f"python3.11={PY_IMAGE}", "--lambda-runtime-image", f"provided.al2023={PROVIDED_IMAGE}",
       "--lambda-runtime-image", f"nodejs18.x={NODE_IMAGE}")
BAKED_IMAGE = "ruststack-test/baked:1"

# What a function reports about where it runs. TOKEN is per process: same token, same container.
PROBE = """
import json, os, socket, uuid
TOKEN = uuid.uuid4().hex
STATE = {"count": 0}

def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None

def _status(field):
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()

def _container_id():
    import re
    m = re.search(r"/docker/containers/([0-9a-f]{64})/", _read("/proc/self/mountinfo") or "")
    return m and m.group(1)

def handler(event, context):
    STATE["count"] += 1
    print("probe says hello", STATE["count"])
    return {
        "dockerenv": os.path.exists("/.dockerenv"),
        "container_id": _container_id(),
        "token": TOKEN,
        "count": STATE["count"],
        "hostname": socket.gethostname(),
        "cwd": os.getcwd(),
        "env": {k: os.environ.get(k) for k in [
            "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "AWS_LAMBDA_RUNTIME_API", "AWS_ENDPOINT_URL",
            "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "_HANDLER", "MY_VAR", "PYTHONPATH"]},
        "memory_limit": _read("/sys/fs/cgroup/memory.max") or _read("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
        "pids_limit": _read("/sys/fs/cgroup/pids.max") or _read("/sys/fs/cgroup/pids/pids.max"),
        "cap_eff": _status("CapEff"),
        "no_new_privs": _status("NoNewPrivs"),
        "task_writable": os.access("/var/task", os.W_OK),
        "event": event,
    }
"""


def docker(*args, check=True, timeout=120):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def containers(*labels, all_=True, named=None):
    """Ids of containers carrying all the given labels (k=v), running or not; `named`: whose
    name is `ruststack-<named>-<8 hex>`."""
    args = ["ps", "-q", "--no-trunc"] + (["-a"] if all_ else [])
    for label in ("ruststack=1", *labels):
        args += ["--filter", f"label={label}"]
    if named is not None:
        args += ["--filter", "name=^/?ruststack-%s-[0-9a-f]{8}$" % re.escape(named)]
    return docker(*args).stdout.split()


def fn_containers(name, all_=True):
    """A function's containers: made for it (labelled ruststack.function), or blank spares
    it took (labelled ruststack.spare=1, renamed for it when taken). By name, which both have."""
    return containers(all_=all_, named=name)


def env_containers(server):
    """The server's containers that serve (or served) a function: all but its untaken blank spares."""
    out = docker("ps", "-a", "--no-trunc", "--filter", "label=ruststack=1",
                 "--filter", f"label=ruststack.server=127.0.0.1:{server.port}", "--format", "{{.ID}} {{.Names}}").stdout
    rows = [line.split() for line in out.splitlines() if line.strip()]
    return [cid for cid, names in rows if not re.fullmatch(r"/?ruststack-spare-[0-9a-f]{8}", names)]


def blank_spares(server):
    """The server's blank spares not taken yet (running, still named ruststack-spare-*)."""
    return containers("ruststack.spare=1", f"ruststack.server=127.0.0.1:{server.port}", all_=False, named="spare")


def server_containers(server):
    return containers(f"ruststack.server=127.0.0.1:{server.port}")


def in_container(out):
    """The probe ran in a Docker container (the test host itself may have /.dockerenv)."""
    return out["dockerenv"] is True and bool(out["container_id"])


@pytest.fixture(scope="module", autouse=True)
def engine_and_image():
    try:
        docker("info", timeout=30)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.fail(f"the Docker engine is not usable ({e}); set RUSTSTACK_SKIP_DOCKER=1 to opt out")
    for image in (PY_IMAGE, PROVIDED_IMAGE, NODE_IMAGE):
        if docker("image", "inspect", image, check=False).returncode != 0:
            pytest.fail(f"image {image} is missing: run `bash images/build.sh` (tests/run.sh does)")


@pytest.fixture(scope="module")
def dserver():
    """A docker-executor server shared by the tests that do not restart it."""
    s = Server("--lambda-executor", "docker", *MAP)
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def dlam(dserver):
    return dserver.client("lambda")


def test_invoke_runs_in_a_container(dlam, dserver):
    name = create_py_function(dlam, PROBE, MemorySize=256, Environment={"Variables": {"MY_VAR": "v"}})
    r, out = invoke(dlam, name, {"k": 1}, LogType="Tail", decode=True)
    assert "FunctionError" not in r, out
    assert in_container(out)
    assert out["event"] == {"k": 1}
    env = out["env"]
    assert env["LAMBDA_TASK_ROOT"] == "/var/task" and out["cwd"] == "/var/task"
    assert env["LAMBDA_RUNTIME_DIR"] == "/var/runtime"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["_HANDLER"] == "app.handler"
    assert env["MY_VAR"] == "v"
    assert env["PYTHONPATH"] in (None, "/var/runtime")  # the image's bootstrap may set it, we never do
    host, port = env["AWS_LAMBDA_RUNTIME_API"].split(":")
    assert host == "127.0.0.1" and int(port) > 0
    assert env["AWS_ENDPOINT_URL"] == dserver.endpoint
    # Limits and privileges.
    assert int(out["memory_limit"]) == 256 * 1024 * 1024
    assert out["pids_limit"] == "512"
    assert int(out["cap_eff"], 16) == 0
    assert out["no_new_privs"] == "1"
    assert out["task_writable"] is False
    # Output reaches LogType=Tail.
    log = base64.b64decode(r["LogResult"]).decode()
    assert "probe says hello 1" in log and log.startswith("START RequestId: ")
    # One labelled container.
    ids = fn_containers(name)
    assert ids == [out["container_id"]]
    labels = json.loads(docker("inspect", "--format", "{{json .Config.Labels}}", ids[0]).stdout)
    assert labels["ruststack.server"] == f"127.0.0.1:{dserver.port}"
    # Spares are on by default: the cold start takes a blank spare (labels cannot change; its
    # name did) when one is ready, else a container is made for the function. Either way the
    # labels say which, and nothing else. test_docker_spare.py proves the take itself.
    if labels.get("ruststack.spare") == "1":
        assert "ruststack.function" not in labels and "ruststack.version" not in labels, labels
    else:
        assert "ruststack.spare" not in labels and labels["ruststack.function"] == name, labels


def test_warm_reuse_keeps_the_container(dlam):
    name = create_py_function(dlam, PROBE)
    _, a = invoke(dlam, name, decode=True)
    _, b = invoke(dlam, name, decode=True)
    _, c = invoke(dlam, name, decode=True)
    assert a["token"] == b["token"] == c["token"]
    assert a["hostname"] == c["hostname"]
    assert [a["count"], b["count"], c["count"]] == [1, 2, 3]
    assert len(fn_containers(name)) == 1


def test_log_tail_is_complete_every_time(dlam):
    src = "def handler(e, c):\n    print('first', e['i'])\n    print('second', e['i'], end='')\n    return e['i']\n"
    name = create_py_function(dlam, src)
    for i in range(30):
        r, out = invoke(dlam, name, {"i": i}, LogType="Tail", decode=True)
        assert out == i
        log = base64.b64decode(r["LogResult"]).decode()
        body = log.split("\n", 1)[1].rsplit("END RequestId", 1)[0]
        assert body == f"first {i}\nsecond {i}\n", log


def test_timeout_kills_and_recovers(dlam):
    src = PROBE + "\nimport time\n_probe = handler\ndef handler(e, c):\n    time.sleep(e.get('sleep', 0))\n    return _probe(e, c)\n"
    name = create_py_function(dlam, src, Timeout=1)
    _, before = invoke(dlam, name, decode=True)
    old = fn_containers(name)
    r, err = invoke(dlam, name, {"sleep": 5}, decode=True)
    assert r["FunctionError"] == "Unhandled"
    assert err["errorType"] == "Sandbox.Timedout"
    wait_for(lambda: not set(old) & set(fn_containers(name)), 10, "the timed-out container to be removed")
    r2, after = invoke(dlam, name, decode=True)
    assert "FunctionError" not in r2
    assert after["token"] != before["token"] and after["count"] == 1


def test_runtime_exit_then_recovery(dlam):
    src = PROBE + "\n_probe = handler\ndef handler(e, c):\n    if e.get('die'):\n        os._exit(3)\n    return _probe(e, c)\n"
    name = create_py_function(dlam, src)
    _, before = invoke(dlam, name, decode=True)
    r, err = invoke(dlam, name, {"die": True}, decode=True)
    assert r["FunctionError"] == "Unhandled"
    assert err["errorType"] == "Runtime.ExitError"
    assert "Runtime exited with error: exit status 3" in err["errorMessage"]
    _, after = invoke(dlam, name, decode=True)
    assert after["token"] != before["token"]


def test_layers_are_merged_at_opt(dlam):
    l1 = dlam.publish_layer_version(LayerName=unique("lib"), Content={"ZipFile": make_zip({
        "python/mylib.py": "WHO = 'layer one'\n",
        "python/onlyone.py": "X = 1\n",
        "bin/tool*": "#!/bin/sh\necho tool-one\n",
    })})["LayerVersionArn"]
    l2 = dlam.publish_layer_version(LayerName=unique("lib"), Content={"ZipFile": make_zip({
        "python/mylib.py": "WHO = 'layer two'\n",
        "python/lib/python3.11/site-packages/sitepkg.py": "Y = 2\n",
    })})["LayerVersionArn"]
    src = ("import mylib, onlyone, sitepkg, os, subprocess\n"
           "def handler(e, c):\n"
           "    return {'who': mylib.WHO, 'file': mylib.__file__, 'x': onlyone.X, 'y': sitepkg.Y,\n"
           "            'tool': subprocess.run(['tool'], capture_output=True, text=True).stdout.strip(),\n"
           "            'opt_writable': os.access('/opt/python', os.W_OK)}\n")
    name = create_py_function(dlam, src, Layers=[l1, l2])
    r, out = invoke(dlam, name, decode=True)
    assert "FunctionError" not in r, out
    assert out["who"] == "layer two"  # later layers overwrite earlier ones
    assert out["file"] == "/opt/python/mylib.py"
    assert out["x"] == 1 and out["y"] == 2
    assert out["tool"] == "tool-one"  # /opt/bin is on PATH
    assert out["opt_writable"] is False


def test_max_containers_bounds_concurrency(fresh_server):
    s = fresh_server("--lambda-executor", "docker", *MAP, "--lambda-max-containers", "3")
    lam = s.client("lambda", max_pool_connections=10)
    name = create_py_function(lam, "import time\ndef handler(e, c):\n    time.sleep(1)\n    return 'ok'\n", Timeout=30)
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], len(fn_containers(name, all_=False)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with cf.ThreadPoolExecutor(6) as ex:
            results = list(ex.map(lambda _: invoke(lam, name, decode=True), range(6)))
    finally:
        stop.set()
        sampler.join()
    assert all(out == "ok" and "FunctionError" not in r for r, out in results)
    assert 1 <= peak[0] <= 3, peak[0]
    assert len(fn_containers(name)) <= 3


def test_ttl_removes_idle_containers(fresh_server):
    s = fresh_server("--lambda-executor", "docker", *MAP, "--lambda-container-ttl", "1")
    lam = s.client("lambda")
    name = create_py_function(lam, PROBE)
    _, first = invoke(lam, name, decode=True)
    assert len(fn_containers(name)) == 1
    wait_for(lambda: not fn_containers(name), 10, "the idle container to go after its TTL")
    _, second = invoke(lam, name, decode=True)
    assert second["token"] != first["token"] and second["count"] == 1


def test_auto_mode_picks_each_executor(fresh_server):
    s = fresh_server("--lambda-executor", "auto", *MAP, "--node", "/nonexistent/node")
    lam = s.client("lambda")
    plain = create_py_function(lam, PROBE)
    layer = lam.publish_layer_version(LayerName=unique("l"), Content={"ZipFile": make_zip({"python/x.py": "X = 1\n"})})
    layered = create_py_function(lam, PROBE, Layers=[layer["LayerVersionArn"]])
    tagged = create_py_function(lam, PROBE, Tags={"force-docker": "true"})
    not_tagged = create_py_function(lam, PROBE, Tags={"force-docker": "false"})
    assert not in_container(invoke(lam, plain, decode=True)[1])
    assert in_container(invoke(lam, layered, decode=True)[1])
    assert in_container(invoke(lam, tagged, decode=True)[1])
    assert not in_container(invoke(lam, not_tagged, decode=True)[1])
    assert not fn_containers(plain) and not fn_containers(not_tagged)
    assert len(fn_containers(layered)) == 1 and len(fn_containers(tagged)) == 1
    # A runtime this host cannot run (no node here, by --node) goes to its image.
    node = unique("auto-node")
    lam.create_function(FunctionName=node, Runtime="nodejs18.x", Role="arn:aws:iam::000000000000:role/lambda",
                        Handler="index.handler", Code={"ZipFile": make_zip({"index.js": NODE_PROBE})})
    out = invoke(lam, node, decode=True)[1]
    assert out["dockerenv"] is True and out["node"].startswith("v18."), out
    assert "auto: this host has no interpreter for the runtime" in s.logs()


def test_bridge_network(fresh_server):
    s = fresh_server("--lambda-executor", "docker", *MAP, "--lambda-network", "bridge")
    lam = s.client("lambda")
    src = PROBE + (
        "\nimport urllib.request\n_probe = handler\n"
        "def handler(e, c):\n"
        "    out = _probe(e, c)\n"
        "    with urllib.request.urlopen(os.environ['AWS_ENDPOINT_URL'] + '/_ruststack/health', timeout=5) as r:\n"
        "        out['health'] = json.loads(r.read())['status']\n"
        "    return out\n")
    name = create_py_function(lam, src)
    r, out = invoke(lam, name, decode=True)
    assert "FunctionError" not in r, out
    assert in_container(out)
    assert out["env"]["AWS_ENDPOINT_URL"] == f"http://host.docker.internal:{s.port}"
    host, _ = out["env"]["AWS_LAMBDA_RUNTIME_API"].split(":")
    assert host != "127.0.0.1" and not host.startswith("0.")
    assert out["health"] == "running"
    # The container has its own network namespace here.
    assert out["hostname"] != os.uname().nodename
    assert invoke(lam, name, decode=True)[1]["token"] == out["token"]


@pytest.fixture(scope="module")
def baked_image():
    """A tiny image derived from the Python image, with the handler baked into /var/task."""
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "app.py"), "w") as f:
            f.write(PROBE + "\ndef other(e, c):\n    return {'other': True, 'cwd': os.getcwd()}\n")
        with open(os.path.join(d, "Dockerfile"), "w") as f:
            f.write(f'FROM {PY_IMAGE}\nCOPY app.py /var/task/\nCMD ["app.handler"]\n')
        docker("build", "-q", "-t", BAKED_IMAGE, d, timeout=600)
    return BAKED_IMAGE


def test_package_type_image(dlam, baked_image):
    name = unique("img")
    dlam.create_function(FunctionName=name, Role="arn:aws:iam::000000000000:role/lambda",
                         PackageType="Image", Code={"ImageUri": baked_image})
    r, out = invoke(dlam, name, {"a": 1}, LogType="Tail", decode=True)
    assert "FunctionError" not in r, out
    assert in_container(out) and out["event"] == {"a": 1}
    assert out["env"]["_HANDLER"] == "app.handler"
    assert "probe says hello 1" in base64.b64decode(r["LogResult"]).decode()
    # ImageConfig overrides CMD and the working directory.
    name2 = unique("img")
    dlam.create_function(FunctionName=name2, Role="arn:aws:iam::000000000000:role/lambda",
                         PackageType="Image", Code={"ImageUri": baked_image},
                         ImageConfig={"Command": ["app.other"], "WorkingDirectory": "/tmp"})
    r2, out2 = invoke(dlam, name2, decode=True)
    assert out2 == {"other": True, "cwd": "/tmp"}, out2


def test_image_without_a_shell(dlam, baked_image):
    """An image with no /bin/sh still runs (behind the static stdio helper, else docker attach)."""
    tag = "ruststack-test/nosh:1"
    docker("rmi", "-f", tag, check=False)  # the previous run's, so they do not pile up
    cid = docker("create", "--entrypoint", "/bin/rm", baked_image, "-f", "/bin/sh", "/usr/bin/sh",
                 "/bin/dash", "/usr/bin/dash").stdout.strip()
    try:
        docker("start", "-a", cid)
        docker("commit", "--change", 'ENTRYPOINT ["/var/lang/bin/python3.11", "-m", "awslambdaric"]',
               "--change", 'CMD ["app.handler"]', cid, tag)
    finally:
        docker("rm", "-f", cid, check=False)
    name = unique("nosh")
    dlam.create_function(FunctionName=name, Role="arn:aws:iam::000000000000:role/lambda",
                         PackageType="Image", Code={"ImageUri": tag},
                         Environment={"Variables": {"PYTHONPATH": "/var/runtime"}})
    r, out = invoke(dlam, name, decode=True)
    assert "FunctionError" not in r, out
    assert in_container(out) and out["count"] == 1
    assert invoke(dlam, name, decode=True)[1]["count"] == 2


def test_boto3_in_the_container_reaches_ruststack_s3(dlam, dserver):
    s3 = dserver.client("s3")
    bucket = unique("bkt").lower()
    s3.create_bucket(Bucket=bucket)
    src = ("import boto3\n"
           "def handler(e, c):\n"
           "    s3 = boto3.client('s3')\n"
           "    s3.put_object(Bucket=e['bucket'], Key='from-lambda.txt', Body=b'hi from docker')\n"
           "    return [o['Key'] for o in s3.list_objects_v2(Bucket=e['bucket']).get('Contents', [])]\n")
    name = create_py_function(dlam, src, Timeout=30)
    r, out = invoke(dlam, name, {"bucket": bucket}, decode=True)
    assert "FunctionError" not in r, out
    assert out == ["from-lambda.txt"]
    assert s3.get_object(Bucket=bucket, Key="from-lambda.txt")["Body"].read() == b"hi from docker"


def test_unknown_image_fails_fast_and_clearly(fresh_server):
    s = fresh_server("--lambda-executor", "docker", "--lambda-runtime-image", "python3.11=does-not-exist/nope:1")
    lam = s.client("lambda")
    name = create_py_function(lam, PROBE)
    t = time.time()
    with pytest.raises(ClientError) as e:
        invoke(lam, name, decode=True)
    assert time.time() - t < 15
    msg = str(e.value)
    assert "does-not-exist/nope:1" in msg, msg
    assert e.value.response["Error"]["Code"] in ("InvalidRuntimeException", "ResourceNotReadyException"), msg
    # The image is prepared at CreateFunction: the function ends up Failed, with the reason.
    cfg = lam.get_function(FunctionName=name)["Configuration"]
    assert cfg["State"] == "Failed"
    assert "does-not-exist/nope:1" in cfg["StateReason"]
    assert cfg["LastUpdateStatus"] == "Failed"


def test_function_is_pending_until_its_image_is_ready(fresh_server):
    s = fresh_server("--lambda-executor", "docker", *MAP)
    lam = s.client("lambda")
    name = create_py_function(lam, PROBE)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    cfg = lam.get_function(FunctionName=name)["Configuration"]
    assert cfg["State"] == "Active" and cfg["LastUpdateStatus"] == "Successful"
    assert "StateReason" not in cfg


def test_sigterm_leaves_no_container(fresh_server):
    s = fresh_server("--lambda-executor", "docker", *MAP)
    lam = s.client("lambda", max_pool_connections=10)
    names = [create_py_function(lam, PROBE) for _ in range(2)]
    slow = create_py_function(lam, "import time\ndef handler(e, c):\n    time.sleep(e.get('s', 0))\n    return 1\n",
                              Timeout=30)
    for n in names:
        invoke(lam, n, decode=True)
    assert len(env_containers(s)) == 2
    # One invocation still running when the signal arrives.
    with cf.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(invoke, lam, slow, {"s": 2}, decode=True)
        wait_for(lambda: len(env_containers(s)) == 3 and s.health()["environments"]["busy"] == 1, 15,
                 "the slow invocation to be running in its own container")
        assert not fut.done()
        assert s.stop(signal.SIGTERM) == 0
        r, out = fut.result()
        assert out == 1 and "FunctionError" not in r, out
    assert server_containers(s) == []


def test_containers_of_a_crashed_server_are_removed_at_start(fresh_server):
    s = fresh_server("--lambda-executor", "docker", *MAP)
    lam = s.client("lambda")
    invoke(lam, create_py_function(lam, PROBE), decode=True)
    # Its container, and the two blank spares made again after the cold start.
    wait_for(lambda: len(blank_spares(s)) == 2 and len(server_containers(s)) == 3, 30, "two blank spares")
    left = server_containers(s)
    assert len(env_containers(s)) == 1
    s.kill()
    assert server_containers(s) == left  # kill -9: nobody removed it
    s2 = fresh_server("--lambda-executor", "subprocess", data_dir=s.data_dir, port=s.port)
    wait_for(lambda: not server_containers(s2), 15, "the stale container to be removed")


def test_bad_entrypoint_reports_the_exit_and_its_output(dlam, baked_image):
    name = unique("badep")
    dlam.create_function(FunctionName=name, Role="arn:aws:iam::000000000000:role/lambda",
                         PackageType="Image", Code={"ImageUri": baked_image},
                         ImageConfig={"EntryPoint": ["/no/such/entrypoint"]})
    t = time.time()
    r, err = invoke(dlam, name, LogType="Tail", decode=True)
    assert time.time() - t < 10
    assert r["FunctionError"] == "Unhandled"
    assert err["errorType"] == "Runtime.ExitError", err
    assert "exit status 127" in err["errorMessage"]
    assert "/no/such/entrypoint" in base64.b64decode(r["LogResult"]).decode()


# The classic shell custom runtime from the AWS docs (curl against the Runtime API).
SHELL_BOOTSTRAP = r"""#!/bin/bash
set -euo pipefail
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -LD "$HEADERS" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  echo "custom runtime got $ID"
  curl -sS -o /dev/null "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$ID/response" \
    -d "{\"echo\": $EVENT, \"handler\": \"$_HANDLER\", \"from\": \"$0\", \"root\": \"$LAMBDA_TASK_ROOT\"}"
done
"""


@pytest.mark.parametrize("where", ["code", "layer"])
def test_provided_runtime_runs_its_own_bootstrap(dlam, where):
    files = {"bootstrap*": SHELL_BOOTSTRAP}
    kw = {}
    if where == "layer":
        layer = dlam.publish_layer_version(LayerName=unique("rt"), Content={"ZipFile": make_zip(files)})
        kw["Layers"] = [layer["LayerVersionArn"]]
        files = {"README": "code without a bootstrap\n"}
    name = unique("prov")
    dlam.create_function(FunctionName=name, Runtime="provided.al2023", Handler="my.handler",
                         Role="arn:aws:iam::000000000000:role/lambda", Code={"ZipFile": make_zip(files)}, **kw)
    r, out = invoke(dlam, name, {"x": 1}, LogType="Tail", decode=True)
    assert "FunctionError" not in r, out
    assert out == {"echo": {"x": 1}, "handler": "my.handler", "root": "/var/task",
                   "from": "/var/task/bootstrap" if where == "code" else "/opt/bootstrap"}
    assert "custom runtime got" in base64.b64decode(r["LogResult"]).decode()
    assert len(fn_containers(name)) == 1


NODE_PROBE = """
const fs = require('fs');
let count = 0;
exports.handler = async (event, context) => {
  count += 1;
  console.log('node probe', count);
  let layer = null;
  try { layer = require('layered')(); } catch (e) { layer = 'missing: ' + e.message; }
  return {
    dockerenv: fs.existsSync('/.dockerenv'), node: process.version, count, pid: process.pid,
    root: process.env.LAMBDA_TASK_ROOT, exec: process.env.AWS_EXECUTION_ENV, nodePath: process.env.NODE_PATH,
    requestId: context.awsRequestId, layer,
  };
};
"""


def test_nodejs_in_a_container_with_a_layer(dlam):
    """nodejs18.x in the local Node image: RustStack's Node runtime client behind the image's
    own entrypoint, warm reuse, a layer's nodejs/node_modules on NODE_PATH under /opt."""
    layer = dlam.publish_layer_version(LayerName=f"node-layer-{time.time_ns()}", Content={"ZipFile": make_zip({
        "nodejs/node_modules/layered/index.js": "module.exports = () => 'from the layer';\n"})})
    name = f"node-docker-{time.time_ns()}"
    dlam.create_function(FunctionName=name, Runtime="nodejs18.x", Role="arn:aws:iam::000000000000:role/lambda",
                         Handler="index.handler", Code={"ZipFile": make_zip({"index.js": NODE_PROBE})},
                         Layers=[layer["LayerVersionArn"]])
    r, out = invoke(dlam, name, LogType="Tail", decode=True)
    assert "FunctionError" not in r, out
    assert out["dockerenv"] is True and out["node"].startswith("v18.")
    assert out["root"] == "/var/task" and out["exec"] == "AWS_Lambda_nodejs18.x"
    assert "/opt/nodejs/node_modules" in out["nodePath"].split(":")
    assert out["layer"] == "from the layer"
    assert out["requestId"] == r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert "node probe 1" in base64.b64decode(r["LogResult"]).decode()
    _, again = invoke(dlam, name, decode=True)
    assert again["count"] == 2 and again["pid"] == out["pid"]


def test_exec_wrapper_in_the_images(dlam):
    """AWS_LAMBDA_EXEC_WRAPPER: the images' bootstrap runs the runtime through the wrapper
    script (here from a layer), and a missing wrapper ends the runtime with exit 127."""
    layer = dlam.publish_layer_version(LayerName=unique("wrapper"), Content={"ZipFile": make_zip({
        "wrapper*": "#!/bin/bash\nexport WRAPPED=\"yes:$1\"\nexec \"$@\"\n"})})
    arn = layer["LayerVersionArn"]
    py = create_py_function(dlam, "import os\ndef handler(e, c):\n    return os.environ.get('WRAPPED')\n",
                            Layers=[arn], Environment={"Variables": {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/wrapper"}})
    assert invoke(dlam, py, decode=True)[1] == "yes:/var/lang/bin/python3.11"
    node = unique("wrapped-node")
    dlam.create_function(FunctionName=node, Runtime="nodejs18.x", Role="arn:aws:iam::000000000000:role/lambda",
                         Handler="index.handler", Layers=[arn],
                         Environment={"Variables": {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/wrapper"}},
                         Code={"ZipFile": make_zip({"index.js": "exports.handler = async () => process.env.WRAPPED;\n"})})
    assert invoke(dlam, node, decode=True)[1] == "yes:/var/lang/bin/node"
    missing = create_py_function(dlam, "def handler(e, c):\n    return 1\n",
                                 Environment={"Variables": {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/nope"}})
    r, out = invoke(dlam, missing, decode=True)
    assert r["FunctionError"] == "Unhandled" and "exit status 127" in out["errorMessage"], out
