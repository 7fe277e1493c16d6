"""Custom runtimes (provided.*): the function's own `bootstrap` runs against RustStack's
Runtime API. Two real clients: the official Python RIC (awslambdaric from PyPI) and a Rust
function built with the `lambda_runtime` crate."""
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT, make_zip, unique

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "rust-runtime")
FIXTURE_TARGET = os.path.join(ROOT, "target", "fixtures")
RUST_BOOTSTRAP = os.path.join(FIXTURE_TARGET, "release", "bootstrap")


@pytest.fixture(scope="session")
def rust_bootstrap():
    # cargo is a no-op when the fixture is fresh; tests/run.sh builds it up front.
    subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path",
                    os.path.join(FIXTURE, "Cargo.toml"), "--target-dir", FIXTURE_TARGET], check=True)
    with open(RUST_BOOTSTRAP, "rb") as f:
        return f.read()


def create_custom(lam, files, runtime="provided.al2023", handler="bootstrap.handler", **kw):
    name = unique("custom")
    lam.create_function(FunctionName=name, Runtime=runtime, Handler=handler,
                        Role="arn:aws:iam::000000000000:role/lambda", Code={"ZipFile": make_zip(files)}, **kw)
    return name


def ric_bootstrap(module_src):
    return {
        "bootstrap*": f"#!/bin/sh\nexec {sys.executable} -m awslambdaric \"$_HANDLER\"\n",
        "app.py": module_src,
    }


def test_awslambdaric_custom_runtime(lam):
    src = ("import os\nSTATE = []\n"
           "def handler(event, context):\n"
           "    STATE.append(1)\n"
           "    if event.get('fail'):\n"
           "        raise RuntimeError('asked to fail')\n"
           "    return {'ric': 'awslambdaric', 'event': event, 'pid': os.getpid(), 'n': len(STATE),\n"
           "            'arn': context.invoked_function_arn, 'remaining': context.get_remaining_time_in_millis()}\n")
    name = create_custom(lam, ric_bootstrap(src), handler="app.handler", Timeout=10)
    outs = []
    for i in range(3):
        r = lam.invoke(FunctionName=name, Payload=json.dumps({"i": i}))
        assert "FunctionError" not in r
        outs.append(json.load(r["Payload"]))
    assert [o["event"] for o in outs] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert len({o["pid"] for o in outs}) == 1 and [o["n"] for o in outs] == [1, 2, 3]
    assert outs[0]["arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert 8000 < outs[0]["remaining"] <= 10000
    r = lam.invoke(FunctionName=name, Payload=json.dumps({"fail": True}))
    assert r["FunctionError"] == "Unhandled"
    err = json.load(r["Payload"])
    assert err["errorType"] == "RuntimeError" and err["errorMessage"] == "asked to fail"


def test_awslambdaric_init_error(lam):
    name = create_custom(lam, ric_bootstrap("import no_such_module_abc\n"), handler="app.handler")
    r = lam.invoke(FunctionName=name, Payload=b"{}")
    assert r["FunctionError"] == "Unhandled"
    err = json.load(r["Payload"])
    assert err["errorType"] == "Runtime.ImportModuleError"
    assert err["errorMessage"] == "Unable to import module 'app': No module named 'no_such_module_abc'"


def test_rust_lambda_runtime(lam, rust_bootstrap):
    name = create_custom(lam, {"bootstrap*": rust_bootstrap}, MemorySize=256, Timeout=5)
    outs = []
    for i in range(3):
        before = int(time.time() * 1000)
        r = lam.invoke(FunctionName=name, Payload=json.dumps({"i": i}))
        assert "FunctionError" not in r, r["Payload"].read()
        o = json.load(r["Payload"])
        outs.append(o)
        assert o["event"] == {"i": i}
        assert o["deadline_ms"] > o["now_ms"]
        assert before + 4000 <= o["deadline_ms"] <= before + 6000
    assert len({o["pid"] for o in outs}) == 1
    o = outs[0]
    assert o["runtime"] == "rust" and o["function_name"] == name
    assert o["memory"] == 256 and o["version"] == "$LATEST"
    assert o["invoked_function_arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    r = lam.invoke(FunctionName=name, Payload=json.dumps({"fail": "rust says no"}))
    assert r["FunctionError"] == "Unhandled"
    err = json.load(r["Payload"])
    assert err["errorMessage"] == "rust says no" and err["errorType"]


def test_rust_runtime_by_alias_arn(lam, rust_bootstrap):
    name = create_custom(lam, {"bootstrap*": rust_bootstrap})
    v = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="prod", FunctionVersion=v)
    r = lam.invoke(FunctionName=f"{name}:prod", Payload=b"{}")
    assert json.load(r["Payload"])["invoked_function_arn"].endswith(f":function:{name}:prod")
    assert r["ExecutedVersion"] == v


def test_missing_bootstrap_is_clear(lam):
    name = create_custom(lam, {"readme.txt": "no bootstrap here"})
    from botocore.exceptions import ClientError
    with pytest.raises(ClientError) as ei:
        lam.invoke(FunctionName=name, Payload=b"{}")
    assert "bootstrap" in str(ei.value)
