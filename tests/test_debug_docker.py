"""`--lambda-debug` in docker mode with the real debuggers: the container's runtime starts
under debugpy (the host's, mounted read-only) or Node's inspector through the image's
AWS_LAMBDA_EXEC_WRAPPER hook. With the host network the debugger listens on 127.0.0.1:PORT;
with the bridge network it listens on 0.0.0.0 inside and the port is published on the host's
127.0.0.1:PORT. VS Code's `pathMappings` (localRoot → /var/task) is what the DAP client sends.
Image functions (from RustStack's Python and Node.js images) get their debugger by the
interpreter their runtime command starts; `provided.*` gets a log line saying how to attach.

Opt out with RUSTSTACK_SKIP_DOCKER=1; a missing engine or image is a failure."""
import base64
import json
import os
import subprocess
import sys
import tempfile

import pytest

if os.environ.get("RUSTSTACK_SKIP_DOCKER") == "1":
    pytest.skip("RUSTSTACK_SKIP_DOCKER=1: Docker tests opted out", allow_module_level=True)

from conftest import Server, create_py_function, free_port, make_zip, unique, wait_for  # noqa: E402
from debug_clients import Cdp, Dap, Invoke  # noqa: E402
from test_debug import NODE_APP, PY_APP, PY_LINE, cdp_round, cdp_start, create_node_function, dap_round  # noqa: E402

PY_IMAGE = "ruststack/lambda-python:3.11"
NODE_IMAGE = "ruststack/lambda-nodejs:18"
PROVIDED_IMAGE = "ruststack/lambda-provided:al2023"


def image_present(image):
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def need(image):
    if not image_present(image):
        pytest.fail(f"image {image} is missing: run `bash images/build.sh` (tests/run.sh does)")


def docker_debug_server(network, fns):
    ports = {fn: free_port() for fn in fns}
    args = ["--lambda-executor", "docker", "--lambda-network", network, "--python", sys.executable,
            "--lambda-runtime-image", f"python3.11={PY_IMAGE}", "--lambda-runtime-image", f"nodejs18.x={NODE_IMAGE}",
            "--lambda-runtime-image", f"provided.al2023={PROVIDED_IMAGE}"]
    for fn, port in ports.items():
        args += ["--lambda-debug", f"{fn}={port}"]
    s = Server(*args)
    s.ports = ports
    return s


@pytest.fixture(scope="module")
def host_server():
    s = docker_debug_server("host", ["ddbg-py", "ddbg-node", "dimg-py", "dimg-node", "dprov"])
    yield s
    s.cleanup()


def py_round_trip(server, name, tmp_path):
    lam = server.client("lambda")
    (tmp_path / "app.py").write_text(PY_APP)
    create_py_function(lam, PY_APP, name=name, Timeout=3)
    local = os.path.realpath(tmp_path / "app.py")
    first = Invoke(lam, name, {"n": 2})  # starts the container, which waits for the debugger
    dap = Dap(server.ports[name], timeout=60)
    try:
        verified = dap.attach({local: [PY_LINE]},
                              path_mappings=[{"localRoot": str(tmp_path), "remoteRoot": "/var/task"}])
        assert verified[local][0]["verified"], verified
        answer = dap_round(dap, lam, name, 2, inv=first)
        assert answer["file"] == "/var/task/app.py", answer
        again = dap_round(dap, lam, name, 30)
        assert again["pid"] == answer["pid"]  # the one kept environment
    finally:
        dap.close()


def test_lambda_debug_python_docker(host_server, tmp_path):
    need(PY_IMAGE)
    py_round_trip(host_server, "ddbg-py", tmp_path)


def test_lambda_debug_node_docker(host_server):
    need(NODE_IMAGE)
    lam = host_server.client("lambda")
    create_node_function(lam, "ddbg-node", Timeout=3)
    first = Invoke(lam, "ddbg-node", {"n": 4})
    cdp = Cdp(host_server.ports["ddbg-node"], timeout=60)
    try:
        bp = cdp_start(cdp)
        answer = cdp_round(cdp, lam, "ddbg-node", 4, bp, inv=first)
        assert answer["file"] == "/var/task/app.js", answer
        cdp_round(cdp, lam, "ddbg-node", 8, bp)
    finally:
        cdp.close()


def test_lambda_debug_python_docker_bridge_publishes_the_port(tmp_path):
    need(PY_IMAGE)
    s = docker_debug_server("bridge", ["bdbg-py"])
    try:
        py_round_trip(s, "bdbg-py", tmp_path)
        ps = subprocess.run(["docker", "ps", "--filter", "label=ruststack.function=bdbg-py", "--format", "{{.Ports}}"],
                            capture_output=True, text=True, timeout=30).stdout
        assert f"127.0.0.1:{s.ports['bdbg-py']}->{s.ports['bdbg-py']}/tcp" in ps, ps
    finally:
        s.cleanup()


def baked(base, tag, name, source):
    """An image FROM `base` with `source` as /var/task/`name` and CMD app.handler."""
    need(base)
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, name), "w") as f:
            f.write(source)
        with open(os.path.join(d, "Dockerfile"), "w") as f:
            f.write(f'FROM {base}\nCOPY {name} /var/task/\nCMD ["app.handler"]\n')
        subprocess.run(["docker", "build", "-q", "-t", tag, d], check=True, capture_output=True, timeout=600)
    return tag


def test_lambda_debug_image_function_starts_debugpy_by_its_interpreter(host_server, tmp_path):
    """An Image function declares no runtime: the exec wrapper sees the image's runtime
    command start Python and runs it under debugpy (the host's, mounted)."""
    tag = baked(PY_IMAGE, "ruststack-test/debug-image:latest", "app.py", PY_APP)
    lam = host_server.client("lambda")
    lam.create_function(FunctionName="dimg-py", Role="arn:aws:iam::000000000000:role/lambda", PackageType="Image",
                        Code={"ImageUri": tag}, Timeout=3)
    (tmp_path / "app.py").write_text(PY_APP)
    local = os.path.realpath(tmp_path / "app.py")
    first = Invoke(lam, "dimg-py", {"n": 3})
    dap = Dap(host_server.ports["dimg-py"], timeout=60)
    try:
        verified = dap.attach({local: [PY_LINE]},
                              path_mappings=[{"localRoot": str(tmp_path), "remoteRoot": "/var/task"}])
        assert verified[local][0]["verified"], verified
        answer = dap_round(dap, lam, "dimg-py", 3, inv=first)
        assert answer["file"] == "/var/task/app.py", answer
        assert dap_round(dap, lam, "dimg-py", 11)["pid"] == answer["pid"]  # the one kept environment
    finally:
        dap.close()
    logs = host_server.logs()
    assert "Image function: if its runtime starts through AWS_LAMBDA_EXEC_WRAPPER" in logs, logs[-3000:]
    assert "debugpy (port %d)" % host_server.ports["dimg-py"] in logs, logs[-3000:]


def test_lambda_debug_image_function_starts_the_inspector_by_its_interpreter(host_server):
    tag = baked(NODE_IMAGE, "ruststack-test/debug-image-node:latest", "app.js", NODE_APP)
    lam = host_server.client("lambda")
    lam.create_function(FunctionName="dimg-node", Role="arn:aws:iam::000000000000:role/lambda", PackageType="Image",
                        Code={"ImageUri": tag}, Timeout=3)
    first = Invoke(lam, "dimg-node", {"n": 5})
    cdp = Cdp(host_server.ports["dimg-node"], timeout=60)
    try:
        bp = cdp_start(cdp)
        answer = cdp_round(cdp, lam, "dimg-node", 5, bp, inv=first)
        assert answer["file"] == "/var/task/app.js", answer
        cdp_round(cdp, lam, "dimg-node", 7, bp)
    finally:
        cdp.close()


# A custom runtime's bootstrap for the provided image (it has curl, no Python).
SH_BOOTSTRAP = """#!/bin/sh
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/invocation"
while true; do
  rid=$(curl -sS -D - -o /dev/null "$api/next" | tr -d '\\r' | sed -n 's/^[Ll]ambda-[Rr]untime-[Aa]ws-[Rr]equest-[Ii]d: //p')
  curl -sS -X POST -d '{"ok": true}' "$api/$rid/response" >/dev/null
done
"""


def test_lambda_debug_provided_docker_says_how_to_attach(host_server):
    need(PROVIDED_IMAGE)
    lam = host_server.client("lambda")
    lam.create_function(FunctionName="dprov", Runtime="provided.al2023", Role="arn:aws:iam::000000000000:role/lambda",
                        Handler="h", Timeout=3, Code={"ZipFile": make_zip({"bootstrap*": SH_BOOTSTRAP})})
    r = lam.invoke(FunctionName="dprov", LogType="Tail")
    assert json.load(r["Payload"]) == {"ok": True}
    tail = base64.b64decode(r["LogResult"]).decode()
    assert "RustStack --lambda-debug: this environment is kept and its timeout suspended" in tail, tail
    assert "docker inspect -f '{{.State.Pid}}'" in tail, tail
