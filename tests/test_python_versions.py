"""Which host Python a `python3.X` function runs on in subprocess mode: the interpreter mapped with
`--python-runtime python3.X=PATH` (or RUSTSTACK_PYTHON_RUNTIME), else a `python3.X` on PATH that
is that version, else `--python`; then the mismatch warning is in the function's own log, right
after START (LogType=Tail and CloudWatch), and in the server's log."""
import base64
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import BIN, Server, create_py_function, free_port, unique

PY = """
import sys

def handler(event, context):
    print("handler ran")
    return {"executable": sys.executable, "version": "%d.%d" % sys.version_info[:2]}
"""

HOST = "%d.%d" % sys.version_info[:2]
# Runtimes this host does not have as its --python: the first is mapped, the second is not.
OTHER = [v for v in ("3.12", "3.13", "3.10", "3.9") if v != HOST]
MAPPED, UNMAPPED = OTHER[0], OTHER[1]


def invoke(lam, name):
    r = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    assert "FunctionError" not in r
    return json.loads(r["Payload"].read()), base64.b64decode(r["LogResult"]).decode()


@pytest.fixture(scope="module")
def bindir():
    d = tempfile.mkdtemp(prefix="ruststack-pythons-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def server(bindir):
    # A stand-in for a python3.X: a symlink to this interpreter, under a name of its own.
    link = os.path.join(bindir, f"mapped-python{MAPPED}")
    os.symlink(sys.executable, link)
    s = Server("--lambda-executor", "subprocess", "--python", sys.executable,
               "--python-runtime", f"python{MAPPED}={link}")
    s.link = link
    yield s
    s.cleanup()


def test_mapped_runtime_runs_on_its_interpreter(server):
    lam = server.client("lambda")
    name = create_py_function(lam, PY, runtime=f"python{MAPPED}")
    out, tail = invoke(lam, name)
    assert out["executable"] == server.link, out
    lines = tail.splitlines()
    assert lines[1] == "handler ran", "no mismatch warning for a mapped runtime"
    assert not any("RustStack warning" in l for l in lines)


def test_mismatch_warning_is_in_the_function_log(server):
    lam, logs = server.client("lambda"), server.client("logs")
    name = create_py_function(lam, PY, runtime=f"python{UNMAPPED}")
    r = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    rid = r["ResponseMetadata"]["RequestId"]
    out = json.loads(r["Payload"].read())
    assert out["version"] == HOST
    lines = base64.b64decode(r["LogResult"]).decode().splitlines()
    assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
    assert lines[1].startswith(f"RustStack warning: this function's runtime is python{UNMAPPED}"), lines
    assert f"it runs on Python {HOST}" in lines[1] and lines[2] == "handler ran", lines
    group = f"/aws/lambda/{name}"
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    msgs = [e["message"] for e in logs.get_log_events(
        logGroupName=group, logStreamName=streams[0]["logStreamName"], startFromHead=True)["events"]]
    assert msgs[1] == lines[1], msgs
    assert f"python{UNMAPPED}" in server.logs() and "RustStack warning" in server.logs()
    # Once per environment: a warm invoke does not repeat it.
    _, tail = invoke(lam, name)
    assert not any("RustStack warning" in l for l in tail.splitlines())


def test_python_on_path_is_used_when_it_is_that_version(bindir, fresh_server):
    # A real python3.X other than this one: on PATH, or one of pyenv's installs.
    real = shutil.which(f"python{MAPPED}", path="/usr/local/bin:/usr/bin")
    real = real or next(iter(sorted(glob.glob(f"/root/.pyenv/versions/{MAPPED}.*/bin/python{MAPPED}"))), None)
    if not real:
        pytest.skip(f"no real python{MAPPED} on this host")
    pathdir = os.path.join(bindir, "onpath")
    os.makedirs(pathdir, exist_ok=True)
    os.symlink(real, os.path.join(pathdir, f"python{MAPPED}"))
    s = fresh_server("--lambda-executor", "subprocess", "--python", sys.executable,
                     env={"PATH": pathdir + os.pathsep + os.environ["PATH"]})
    lam = s.client("lambda")
    name = create_py_function(lam, PY, runtime=f"python{MAPPED}")
    out, tail = invoke(lam, name)
    assert out["version"] == MAPPED and out["executable"] == os.path.join(pathdir, f"python{MAPPED}"), out
    assert not any("RustStack warning" in l for l in tail.splitlines())


def test_bad_python_runtime_flag_is_refused(tmp_path):
    proc = subprocess.run([BIN, "--port", str(free_port()), "--data-dir", str(tmp_path),
                           "--python-runtime", "ruby3.3=/usr/bin/ruby"], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "--python-runtime expects python3.X=PATH" in proc.stderr, proc.stderr


def test_python_runtime_from_the_environment(bindir, fresh_server):
    link = os.path.join(bindir, "env-mapped-python")
    os.symlink(sys.executable, link)
    s = fresh_server("--lambda-executor", "subprocess", "--python", sys.executable,
                     env={"RUSTSTACK_PYTHON_RUNTIME": f"python{UNMAPPED}={link}"})
    lam = s.client("lambda")
    name = create_py_function(lam, PY, name=unique("envmap"), runtime=f"python{UNMAPPED}")
    out, _ = invoke(lam, name)
    assert out["executable"] == link, out
