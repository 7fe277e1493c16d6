"""`--lambda-docker-spare`: each Docker function keeps one container created and started
ahead with its runtime held; its next cold start takes it. Real engine, real images.

A spare is made when the function turns Active and after each cold start; it goes on
DeleteFunction, on a code update (a new one replaces it) and at shutdown, and there are at
most --lambda-max-containers of them.

Opt out explicitly with RUSTSTACK_SKIP_DOCKER=1; a missing engine or image is a failure."""
import base64
import os
import signal

import pytest

if os.environ.get("RUSTSTACK_SKIP_DOCKER") == "1":
    pytest.skip("RUSTSTACK_SKIP_DOCKER=1: Docker tests opted out", allow_module_level=True)

from conftest import create_py_function, invoke, make_zip, wait_for  # noqa: E402
from test_docker import MAP, PROBE, engine_and_image, fn_containers, containers, server_containers  # noqa: E402,F401

SPARE = ("--lambda-executor", "docker", *MAP, "--lambda-docker-spare")


def running(name):
    return containers(f"ruststack.function={name}", all_=False)


def one_spare(name):
    """The id of the function's one container, once it runs (the spare, before any invoke)."""
    ids = wait_for(lambda: running(name), 30, f"the spare container of {name}")
    assert len(fn_containers(name)) == 1, fn_containers(name)
    return ids[0]


def test_spare_is_made_ahead_and_taken_by_the_cold_start(fresh_server):
    s = fresh_server(*SPARE)
    lam = s.client("lambda")
    name = create_py_function(lam, PROBE)
    spare = one_spare(name)
    # Held: the runtime has not started, so nothing is initialized yet.
    assert s.health()["environments"]["live"] == 0
    r, out = invoke(lam, name, decode=True, LogType="Tail")
    assert out["container_id"] == spare and out["count"] == 1
    assert "Init Duration" in base64.b64decode(r["LogResult"]).decode()
    # The next cold start gets a spare of its own; the warm path keeps the same container.
    nxt = wait_for(lambda: [c for c in running(name) if c != spare], 30, "the next spare")
    assert len(nxt) == 1
    _, again = invoke(lam, name, decode=True)
    assert again["container_id"] == spare and again["count"] == 2


def test_first_invoke_after_the_ttl_takes_the_spare(fresh_server):
    s = fresh_server(*SPARE, "--lambda-container-ttl", "1")
    lam = s.client("lambda")
    name = create_py_function(lam, PROBE)
    first_spare = one_spare(name)
    _, first = invoke(lam, name, decode=True)
    assert first["container_id"] == first_spare
    nxt = wait_for(lambda: [c for c in running(name) if c != first_spare], 30, "the next spare")
    wait_for(lambda: first_spare not in fn_containers(name), 15, "the idle container to go after its TTL")
    assert fn_containers(name) == nxt
    _, second = invoke(lam, name, decode=True)
    # A fresh environment (new process, init again) in the spare's container.
    assert second["container_id"] == nxt[0]
    assert second["token"] != first["token"] and second["count"] == 1


def test_delete_function_removes_its_spare(fresh_server):
    s = fresh_server(*SPARE)
    lam = s.client("lambda")
    name = create_py_function(lam, PROBE)
    one_spare(name)
    lam.delete_function(FunctionName=name)
    wait_for(lambda: not fn_containers(name), 15, "the spare to be removed with its function")


def test_code_update_replaces_the_spare(fresh_server):
    s = fresh_server(*SPARE)
    lam = s.client("lambda")
    name = create_py_function(lam, "def handler(e, c):\n    return 'v1'\n")
    old = one_spare(name)
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": "def handler(e, c):\n    return 'v2'\n"}))
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    new = wait_for(lambda: [c for c in running(name) if c != old], 30, "a spare for the new code")
    wait_for(lambda: old not in fn_containers(name), 15, "the old code's spare to be removed")
    assert fn_containers(name) == new
    _, out = invoke(lam, name, decode=True)
    assert out == "v2"


def test_spares_are_bounded_by_max_containers(fresh_server):
    s = fresh_server(*SPARE, "--lambda-max-containers", "2")
    lam = s.client("lambda")
    names = []
    for _ in range(3):
        names.append(create_py_function(lam, PROBE))
        one_spare(names[-1])
    # The newest function's spare made room by removing the oldest one.
    wait_for(lambda: not fn_containers(names[0]), 15, "the oldest spare to make room")
    assert len(server_containers(s)) == 2
    # A function without a spare still starts (and gets a spare after).
    _, out = invoke(lam, names[0], decode=True)
    assert out["count"] == 1


def test_shutdown_removes_spares(fresh_server):
    s = fresh_server(*SPARE)
    lam = s.client("lambda")
    names = [create_py_function(lam, PROBE) for _ in range(2)]
    for n in names:
        one_spare(n)
    invoke(lam, names[0], decode=True)
    wait_for(lambda: len(server_containers(s)) == 3, 30, "a live container and two spares")
    assert s.stop(signal.SIGTERM) == 0
    assert server_containers(s) == []


def test_spares_of_a_crashed_server_are_removed_at_start(fresh_server):
    s = fresh_server(*SPARE)
    lam = s.client("lambda")
    spare = one_spare(create_py_function(lam, PROBE))
    s.kill()
    assert server_containers(s) == [spare]
    s2 = fresh_server("--lambda-executor", "subprocess", data_dir=s.data_dir, port=s.port)
    wait_for(lambda: not server_containers(s2), 15, "the stale spare to be removed")


def test_uploaded_code_gets_no_spare(fresh_server):
    """The go FIFO is a bind mount: where code is uploaded (a remote engine), no spare is
    made and cold starts run as without the option."""
    s = fresh_server(*SPARE, "--lambda-code-transfer", "upload", env={"RUST_LOG": "info,ruststack::engine=debug"})
    lam = s.client("lambda")
    name = create_py_function(lam, PROBE)
    _, out = invoke(lam, name, decode=True)
    assert out["count"] == 1 and out["container_id"]
    wait_for(lambda: s.logs().count("no spare container") >= 2, 15, "the spare to be refused twice (Active, cold start)")
    assert fn_containers(name) == [out["container_id"]]
