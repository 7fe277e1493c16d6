"""Docker spares (`--lambda-docker-spare`, on by default): blank spares, containers of an
image created and started ahead for no function yet, two per image (and layers or not),
which any zip function's cold start takes (its code linked in, its memory limit, variables
and command given when taken). Real engine, real images.

Blank spares are labelled ruststack.spare=1 and named ruststack-spare-*; a taken one is
renamed for its function. They are made when a function turns Active and after each cold
start, at most --lambda-max-containers of them, and removed at shutdown (or at the next
start after a crash). Hot-reload functions keep a spare of their own (test_hot_reload.py).

Opt out explicitly with RUSTSTACK_SKIP_DOCKER=1; a missing engine or image is a failure."""
import base64
import json
import os
import signal

import pytest

if os.environ.get("RUSTSTACK_SKIP_DOCKER") == "1":
    pytest.skip("RUSTSTACK_SKIP_DOCKER=1: Docker tests opted out", allow_module_level=True)

from conftest import create_py_function, invoke, make_zip, unique, wait_for  # noqa: E402
from test_docker import (MAP, PROBE, blank_spares, containers, docker, engine_and_image,  # noqa: E402,F401
                         fn_containers, server_containers)

DOCKER = ("--lambda-executor", "docker", *MAP)


def two_blanks(s, without=()):
    """The server's two untaken blank spares, once both run (none of `without`)."""
    return wait_for(lambda: (lambda b: b if len(b) == 2 and not set(b) & set(without) else None)(blank_spares(s)),
                    30, "two blank spares")


def test_blank_spares_are_made_ahead_and_taken_by_cold_starts(fresh_server):
    s = fresh_server(*DOCKER)
    lam = s.client("lambda")
    name = create_py_function(lam, PROBE)
    blanks = two_blanks(s)
    # Held: nothing of the image runs yet, no environment is live, no container is the function's.
    assert s.health()["environments"]["live"] == 0
    assert fn_containers(name) == []
    r, out = invoke(lam, name, decode=True, LogType="Tail")
    assert out["container_id"] in blanks and out["count"] == 1
    assert "Init Duration" in base64.b64decode(r["LogResult"]).decode()
    # Taken: renamed for the function; two blank spares again, the taken one not among them.
    assert fn_containers(name) == [out["container_id"]]
    two_blanks(s, without=[out["container_id"]])
    # The warm path keeps the same container and process.
    _, again = invoke(lam, name, decode=True)
    assert again["container_id"] == out["container_id"] and again["token"] == out["token"] and again["count"] == 2
    # Another function of the image takes the other one.
    other = create_py_function(lam, PROBE)
    before = blank_spares(s)
    _, o = invoke(lam, other, decode=True)
    assert o["container_id"] in before and fn_containers(other) == [o["container_id"]]


def test_first_invoke_after_the_ttl_takes_a_blank_spare(fresh_server):
    s = fresh_server(*DOCKER, "--lambda-container-ttl", "1")
    lam = s.client("lambda")
    name = create_py_function(lam, PROBE)
    _, first = invoke(lam, name, decode=True)
    wait_for(lambda: not fn_containers(name), 15, "the idle container to go after its TTL")
    blanks = two_blanks(s)
    _, second = invoke(lam, name, decode=True)
    # A fresh environment (new process, init again) in a blank spare's container.
    assert second["container_id"] in blanks and second["container_id"] != first["container_id"]
    assert second["token"] != first["token"] and second["count"] == 1


def test_a_blank_spare_runs_the_function_as_a_container_made_for_it(fresh_server):
    """Variables, working directory, read-only /var/task, the memory limit (set when taken:
    the blank was made for a function of another size) and the layers at /opt."""
    s = fresh_server(*DOCKER)
    lam = s.client("lambda")
    small = create_py_function(lam, PROBE, MemorySize=128)
    two_blanks(s)
    name = create_py_function(lam, PROBE, MemorySize=512, Environment={"Variables": {"MY_VAR": "v"}})
    blanks = blank_spares(s)
    _, out = invoke(lam, name, decode=True)
    assert out["container_id"] in blanks
    assert out["cwd"] == "/var/task" and out["task_writable"] is False
    env = out["env"]
    assert env["MY_VAR"] == "v" and env["AWS_LAMBDA_FUNCTION_NAME"] == name and env["_HANDLER"] == "app.handler"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512" and env["LAMBDA_TASK_ROOT"] == "/var/task"
    assert int(out["memory_limit"]) == 512 * 1024 * 1024
    inspected = json.loads(docker("inspect", "--format", "{{json .HostConfig}}", out["container_id"]).stdout)
    assert inspected["Memory"] == 512 * 1024 * 1024 and inspected["MemorySwap"] == 512 * 1024 * 1024
    # The 128 MB function's own cold start: the limit of the blank it takes is its own.
    _, o = invoke(lam, small, decode=True)
    assert int(o["memory_limit"]) == 128 * 1024 * 1024
    # Layers: blank spares with an /opt mount of their own.
    layer = lam.publish_layer_version(LayerName=unique("lib"), Content={"ZipFile": make_zip({
        "python/mylib.py": "WHO = 'the layer'\n"})})["LayerVersionArn"]
    src = ("import mylib, os\n"
           "def handler(e, c):\n"
           "    return {'who': mylib.WHO, 'file': mylib.__file__, 'opt_writable': os.access('/opt/python', os.W_OK),\n"
           "            'task': sorted(os.listdir('/var/task'))}\n")
    layered = create_py_function(lam, src, Layers=[layer])
    r, lo = invoke(lam, layered, decode=True)
    assert "FunctionError" not in r, lo
    assert lo == {"who": "the layer", "file": "/opt/python/mylib.py", "opt_writable": False, "task": ["app.py"]}
    [cid] = fn_containers(layered)
    labels = json.loads(docker("inspect", "--format", "{{json .Config.Labels}}", cid).stdout)
    assert labels.get("ruststack.spare") == "1", "the layered function's cold start took a blank spare (with /opt)"


def test_code_update_runs_the_new_code_in_a_blank_spare(fresh_server):
    s = fresh_server(*DOCKER)
    lam = s.client("lambda")
    name = create_py_function(lam, "def handler(e, c):\n    return 'v1'\n")
    _, out = invoke(lam, name, decode=True)
    assert out == "v1"
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": "def handler(e, c):\n    return 'v2'\n"}))
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    blanks = two_blanks(s)
    _, out = invoke(lam, name, decode=True)
    assert out == "v2"
    assert [c for c in fn_containers(name, all_=False) if c in blanks]


def test_spares_are_bounded_by_max_containers(fresh_server):
    s = fresh_server(*DOCKER, "--lambda-max-containers", "1")
    lam = s.client("lambda")
    names = [create_py_function(lam, PROBE) for _ in range(2)]
    wait_for(lambda: len(blank_spares(s)) == 1, 30, "one blank spare")
    _, out = invoke(lam, names[0], decode=True)
    assert out["count"] == 1
    # The one blank spare is made again once the run ended; never two.
    wait_for(lambda: len(blank_spares(s)) == 1, 30, "the blank spare made again")
    assert len(containers("ruststack.spare=1", f"ruststack.server=127.0.0.1:{s.port}", named="spare")) == 1


def test_shutdown_removes_spares(fresh_server):
    s = fresh_server(*DOCKER)
    lam = s.client("lambda")
    name = create_py_function(lam, PROBE)
    invoke(lam, name, decode=True)
    wait_for(lambda: len(server_containers(s)) == 3 and len(blank_spares(s)) == 2, 30,
             "a live container and two blank spares")
    assert s.stop(signal.SIGTERM) == 0
    assert server_containers(s) == []


def test_spares_of_a_crashed_server_are_removed_at_start(fresh_server):
    s = fresh_server(*DOCKER)
    lam = s.client("lambda")
    create_py_function(lam, PROBE)
    blanks = two_blanks(s)
    s.kill()
    assert sorted(server_containers(s)) == sorted(blanks)
    s2 = fresh_server("--lambda-executor", "subprocess", data_dir=s.data_dir, port=s.port)
    wait_for(lambda: not server_containers(s2), 15, "the stale spares to be removed")


def test_uploaded_code_gets_no_spare(fresh_server):
    """The go FIFO is a bind mount: where code is uploaded (a remote engine), no spare is
    made and cold starts run as without them."""
    s = fresh_server(*DOCKER, "--lambda-code-transfer", "upload", env={"RUST_LOG": "info,ruststack::engine=debug"})
    lam = s.client("lambda")
    name = create_py_function(lam, PROBE)
    _, out = invoke(lam, name, decode=True)
    assert out["count"] == 1 and out["container_id"]
    wait_for(lambda: s.logs().count("no spare container") >= 2, 15, "the spare to be refused twice (Active, cold start)")
    assert fn_containers(name) == [out["container_id"]]
    assert blank_spares(s) == []


def test_spares_off(fresh_server):
    """`--lambda-docker-spare false`: no spare; each cold start makes a container for its function."""
    s = fresh_server(*DOCKER, "--lambda-docker-spare", "false")
    lam = s.client("lambda")
    name = create_py_function(lam, PROBE)
    _, out = invoke(lam, name, decode=True)
    assert fn_containers(name) == [out["container_id"]]
    assert containers(f"ruststack.function={name}") == [out["container_id"]]
    assert server_containers(s) == [out["container_id"]]
