"""RustStack's own variables (_RUSTSTACK_*) are not visible to user code in the bundled clients."""
import json
import shutil
import subprocess
import sys

import pytest

from conftest import create_py_function, make_zip, unique


PY = """
import os, subprocess, sys
def handler(event, context):
    child = subprocess.run([sys.executable, "-c",
                            "import os; print(sorted(k for k in os.environ if k.startswith('_RUSTSTACK_')))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return {"mine": sorted(k for k in os.environ if k.startswith("_RUSTSTACK_")),
            "getenv": [os.getenv(k) for k in ("_RUSTSTACK_OWNER", "_RUSTSTACK_LAYER_DIRS", "_RUSTSTACK_PYTHON_VERSION")],
            "child": child, "layers_work": __import__("sys").path[0] == os.environ["LAMBDA_TASK_ROOT"]}
"""


def test_python_function_sees_no_internal_variables(srv):
    lam = srv.client("lambda")
    name = create_py_function(lam, PY, Timeout=30)
    r = lam.invoke(FunctionName=name)
    body = json.loads(r["Payload"].read())
    assert "FunctionError" not in r, body
    assert body["mine"] == [] and body["getenv"] == [None, None, None]
    # A process the function starts still carries the owner marker (the kill -9 sweep finds it by that).
    assert body["child"] == "['_RUSTSTACK_OWNER']"
    assert body["layers_work"] is True


@pytest.mark.skipif(shutil.which("node") is None, reason="no node on PATH")
def test_node_function_sees_only_the_owner_marker(srv):
    lam = srv.client("lambda")
    name = unique("node")
    src = ("exports.handler = async () => Object.keys(process.env).filter(k => k.startsWith('_RUSTSTACK_')).sort();\n")
    lam.create_function(FunctionName=name, Runtime="nodejs20.x", Role="arn:aws:iam::000000000000:role/lambda",
                        Handler="index.handler", Code={"ZipFile": make_zip({"index.js": src})})
    r = lam.invoke(FunctionName=name)
    body = json.loads(r["Payload"].read())
    assert "FunctionError" not in r, body
    assert body == ["_RUSTSTACK_OWNER"]
