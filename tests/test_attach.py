"""`ruststack attach`: a runtime started by hand (here the real awslambdaric from PyPI,
running local source) serves a function's invocations while attached."""
import json
import os
import queue
import signal
import subprocess
import sys
import threading

import boto3
import pytest
from botocore.config import Config

from conftest import BIN, create_py_function, make_zip, unique, wait_for


def wait_attached(server, name, timeout=10, region=None):
    wait_for(lambda: attached_count(server, name, region), timeout, f"{name}'s attachment to appear")


def attached_count(server, name, region=None):
    import urllib.request
    with urllib.request.urlopen(f"{server.endpoint}/_ruststack/attach") as r:
        return sum(a["function"] == name and region in (None, a["region"]) for a in json.load(r)["attachments"])


def client_env(**extra):
    """The attach client's environment: no region of the test runner's, unless given."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    env.update(extra)
    return env


@pytest.fixture
def local_src(tmp_path):
    (tmp_path / "app.py").write_text(
        "import os\n"
        "def handler(event, context):\n"
        "    return {'source': 'local', 'event': event, 'cwd': os.getcwd(),\n"
        "            'remaining': context.get_remaining_time_in_millis(),\n"
        "            'fn': os.environ['AWS_LAMBDA_FUNCTION_NAME'], 'var': os.environ.get('MY_VAR')}\n")
    return tmp_path


def attach(server, name, cwd, *extra, env=None):
    return subprocess.Popen(
        [BIN, "attach", name, "--endpoint", server.endpoint, *extra, "--",
         sys.executable, "-m", "awslambdaric", "app.handler"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or client_env())


def lambda_in(server, region):
    cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=120)
    return boto3.client("lambda", endpoint_url=server.endpoint, region_name=region, config=cfg,
                        aws_access_key_id="test", aws_secret_access_key="test")


REGION_APP = (
    "import os\n"
    "def handler(event, context):\n"
    "    return {'source': SOURCE, 'region': os.environ['AWS_REGION'], 'pid': os.getpid()}\n"
)


def test_attach_is_per_region(server, lam, tmp_path):
    """The same name in two regions is two functions: `attach --region` (or AWS_REGION /
    AWS_DEFAULT_REGION) takes one; the other keeps running in its own environments."""
    eu = lambda_in(server, "eu-west-1")
    name = unique("region")
    create_py_function(lam, "SOURCE = 'deployed'\n" + REGION_APP, name=name, Timeout=3)
    create_py_function(eu, "SOURCE = 'deployed'\n" + REGION_APP, name=name, Timeout=3)
    (tmp_path / "app.py").write_text("SOURCE = 'attached'\n" + REGION_APP)
    ask = lambda c: json.load(c.invoke(FunctionName=name)["Payload"])  # noqa: E731
    p_eu = attach(server, name, tmp_path, env=client_env(AWS_DEFAULT_REGION="eu-west-1"))
    p_us = None
    try:
        wait_attached(server, name, region="eu-west-1")
        assert attached_count(server, name, "us-east-1") == 0
        for _ in range(2):
            got_eu, got_us = ask(eu), ask(lam)
            assert got_eu["source"] == "attached" and got_eu["region"] == "eu-west-1", got_eu
            assert got_us["source"] == "deployed" and got_us["region"] == "us-east-1", got_us
            assert got_us["pid"] != got_eu["pid"]
        # Now the us-east-1 one too, by --region (it wins over the environment's region):
        # both attachments coexist, each answering its own region's invocations.
        p_us = attach(server, name, tmp_path, "--region", "us-east-1",
                      env=client_env(AWS_REGION="eu-west-1"))
        wait_attached(server, name, region="us-east-1")
        got_eu, got_us = ask(eu), ask(lam)
        assert got_us["source"] == "attached" and got_us["region"] == "us-east-1", got_us
        assert got_eu["source"] == "attached" and got_eu["region"] == "eu-west-1", got_eu
        assert got_us["pid"] != got_eu["pid"]
    finally:
        for p in (p_eu, p_us):
            if p:
                p.kill()
                p.wait()
    wait_for(lambda: not attached_count(server, name), 10, f"{name} to be detached")
    assert ask(eu)["source"] == "deployed" and ask(lam)["source"] == "deployed"


LAYER_APP = (
    "import os, shutil\n"
    "import layermod\n"
    "def handler(event, context):\n"
    "    return {'source': SOURCE, 'layer': layermod.WHO, 'layer_file': layermod.__file__, 'tool': shutil.which('layer-tool')}\n"
)


def publish_layer(lam):
    return lam.publish_layer_version(
        LayerName=unique("att-layer"),
        Content={"ZipFile": make_zip({"python/layermod.py": "WHO = 'from-layer'\n",
                                      "bin/layer-tool*": "#!/bin/sh\n"})})["LayerVersionArn"]


def test_plain_attach_puts_the_layers_on_the_paths(server, lam, tmp_path):
    """`attach FN -- python -m awslambdaric ...` (no --debug): a handler importing its
    layer's module runs, and the layer's bin is on PATH."""
    name = create_py_function(lam, "SOURCE = 'deployed'\n" + LAYER_APP, Layers=[publish_layer(lam)], Timeout=3)
    deployed = json.load(lam.invoke(FunctionName=name)["Payload"])
    assert deployed["layer"] == "from-layer", deployed
    (tmp_path / "app.py").write_text("SOURCE = 'attached'\n" + LAYER_APP)
    p = attach(server, name, tmp_path)
    try:
        wait_attached(server, name)
        r = lam.invoke(FunctionName=name)
        out = json.load(r["Payload"])
        assert "FunctionError" not in r, out
    finally:
        p.kill()
        _, err = p.communicate(timeout=10)
    assert out["source"] == "attached" and out["layer"] == "from-layer", (out, err)
    assert out["layer_file"].endswith("/python/layermod.py"), out
    assert out["tool"] and out["tool"].endswith("/bin/layer-tool"), out
    assert os.path.dirname(os.path.dirname(out["tool"])) == os.path.dirname(os.path.dirname(out["layer_file"]))



def test_attach_serves_local_source_then_detaches(server, lam, local_src):
    name = create_py_function(lam, "def handler(e, c):\n    return {'source': 'deployed'}\n",
                              Environment={"Variables": {"MY_VAR": "from-config"}}, Timeout=3)
    assert json.load(lam.invoke(FunctionName=name)["Payload"]) == {"source": "deployed"}
    p = attach(server, name, local_src)
    try:
        wait_attached(server, name)
        for i in range(3):
            out = json.load(lam.invoke(FunctionName=name, Payload=json.dumps({"i": i}))["Payload"])
            assert out["source"] == "local" and out["event"] == {"i": i}
            assert out["fn"] == name and out["var"] == "from-config"
            assert out["cwd"] == str(local_src)
            assert out["remaining"] > 3600 * 1000  # timeout suspended while attached
        # A second attachment to the same function is refused clearly.
        r = subprocess.run([BIN, "attach", name, "--endpoint", server.endpoint, "--", "true"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0
        assert "already attached" in r.stderr
        assert attached_count(server, name) == 1
    finally:
        p.kill()  # kill -9 the attach client: the server notices and detaches
        p.wait()
    wait_for(lambda: not attached_count(server, name), 10, f"{name} to be detached")
    assert attached_count(server, name) == 0
    assert json.load(lam.invoke(FunctionName=name)["Payload"]) == {"source": "deployed"}


def test_attach_keep_timeout_and_runtime_exit(server, lam, local_src):
    name = create_py_function(lam, "def handler(e, c):\n    return {'source': 'deployed'}\n", Timeout=5)
    p = attach(server, name, local_src, "--keep-timeout")
    try:
        wait_attached(server, name)
        out = json.load(lam.invoke(FunctionName=name)["Payload"])
        assert out.get("source") == "local" and out["remaining"] <= 5000, out
        # When the runtime exits, the attachment ends and the client exits with its code.
        for child in subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split():
            os.kill(int(child), signal.SIGTERM)
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
    wait_for(lambda: not attached_count(server, name), 10, f"{name} to be detached")
    assert json.load(lam.invoke(FunctionName=name)["Payload"]) == {"source": "deployed"}


def test_print_env(server, lam):
    """--print-env (no --debug) prints the function's environment with its layers' paths."""
    name = create_py_function(lam, "def handler(e, c): return 1\n", MemorySize=512, Layers=[publish_layer(lam)])
    p = subprocess.Popen([BIN, "attach", name, "--endpoint", server.endpoint, "--print-env"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env())
    try:
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in p.stdout], daemon=True).start()
        env = {}
        wanted = ("AWS_LAMBDA_RUNTIME_API", "_HANDLER", "AWS_LAMBDA_METADATA_API", "AWS_LAMBDA_METADATA_TOKEN",
                  "PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "_RUSTSTACK_LAYER_DIRS")
        while not all(k in env for k in wanted):
            try:
                line = lines.get(timeout=15)
            except queue.Empty:
                pytest.fail(f"--print-env printed no {[k for k in wanted if k not in env]}: {env}")
            k, _, v = line.rstrip("\n").partition("=")
            env[k] = v
        assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
        assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
        assert env["_HANDLER"] == "app.handler"
        host, port = env["AWS_LAMBDA_RUNTIME_API"].split(":")
        assert host == "127.0.0.1"
        assert env["AWS_LAMBDA_METADATA_API"] == env["AWS_LAMBDA_RUNTIME_API"]
        assert len(env["AWS_LAMBDA_METADATA_TOKEN"]) == 36
        # The layer (unpacked on the server, which runs here) stands for /opt.
        root = env["_RUSTSTACK_LAYER_DIRS"]
        assert os.path.isfile(os.path.join(root, "python", "layermod.py")), env
        assert env["PATH"].split(":")[0] == os.path.join(root, "bin"), env["PATH"]
        assert os.path.join(root, "lib") in env["LD_LIBRARY_PATH"].split(":"), env["LD_LIBRARY_PATH"]
        assert env["PYTHONPATH"].split(":")[0] == os.path.join(root, "python"), env["PYTHONPATH"]
        wait_attached(server, name)
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=10)
    wait_for(lambda: not attached_count(server, name), 10, f"{name} to be detached")
    assert attached_count(server, name) == 0


def test_print_env_node_layers(server, lam):
    """A Node.js function's layers: their node_modules on NODE_PATH, before the task root."""
    layer = lam.publish_layer_version(
        LayerName=unique("att-nlayer"),
        Content={"ZipFile": make_zip({"nodejs/node_modules/layermod/index.js": "exports.who = 1;\n"})})
    name = unique("att-node")
    lam.create_function(FunctionName=name, Runtime="nodejs18.x", Role="arn:aws:iam::000000000000:role/lambda",
                        Handler="app.handler", Layers=[layer["LayerVersionArn"]],
                        Code={"ZipFile": make_zip({"app.js": "exports.handler = async () => 1;\n"})})
    p = subprocess.Popen([BIN, "attach", name, "--endpoint", server.endpoint, "--print-env"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env())
    try:
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in p.stdout], daemon=True).start()
        env = {}
        while "NODE_PATH" not in env:
            try:
                line = lines.get(timeout=15)
            except queue.Empty:
                pytest.fail(f"--print-env printed no NODE_PATH: {env}")
            k, _, v = line.rstrip("\n").partition("=")
            env[k] = v
        dirs = env["NODE_PATH"].split(":")
        assert any(os.path.isfile(os.path.join(d, "layermod", "index.js")) for d in dirs), dirs
        assert dirs[-1] == env["LAMBDA_TASK_ROOT"], dirs
        assert "_RUSTSTACK_LAYER_DIRS" not in env and "PYTHONPATH" not in env, env
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=10)
    wait_for(lambda: not attached_count(server, name), 10, f"{name} to be detached")


METADATA_PROBE = """
import os, urllib.request, urllib.error

def call(auth=None):
    url = "http://%s/2026-01-15/metadata/execution-environment" % os.environ["AWS_LAMBDA_METADATA_API"]
    req = urllib.request.Request(url)
    if auth is not None:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return [r.status, r.read().decode()]
    except urllib.error.HTTPError as e:
        return [e.code, e.read().decode()]

def handler(event, context):
    token = os.environ["AWS_LAMBDA_METADATA_TOKEN"]
    return {"api": os.environ["AWS_LAMBDA_METADATA_API"], "runtime_api": os.environ["AWS_LAMBDA_RUNTIME_API"],
            "token": token, "good": call("Bearer " + token), "none": call(), "wrong": call("Bearer nope")}
"""


def test_attached_runtime_gets_the_metadata_endpoint(server, lam, tmp_path):
    """An attached runtime sees AWS_LAMBDA_METADATA_API (its own Runtime API) and a token of
    its own, which that endpoint accepts (and nothing else)."""
    (tmp_path / "app.py").write_text(METADATA_PROBE)
    name = create_py_function(lam, "def handler(e, c):\n    return {'source': 'deployed'}\n",
                              Environment={"Variables": {"AWS_LAMBDA_METADATA_TOKEN": "mine"}})
    p = attach(server, name, tmp_path)
    try:
        wait_attached(server, name)
        r = lam.invoke(FunctionName=name)
        out = json.load(r["Payload"])
        assert "FunctionError" not in r, out
    finally:
        p.kill()
        p.wait()
    assert out["api"] == out["runtime_api"] and out["api"].startswith("127.0.0.1:"), out
    assert len(out["token"]) == 36 and out["token"] != "mine", out
    assert out["good"] == [200, json.dumps({"AvailabilityZoneID": "use1-az1"}, separators=(",", ":"))], out
    assert out["none"] == [401, "Unauthorized\n"] and out["wrong"] == [401, "Unauthorized\n"], out


def test_attach_unknown_function(server):
    r = subprocess.run([BIN, "attach", "no-such-fn-xyz", "--endpoint", server.endpoint, "--", "true"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "404" in r.stderr
