"""The Python fork server: python3.x environments forked from one pre-initialized
interpreter per host Python keep every semantic of an exec'd one (pid, environment,
module state, exit codes, cleanup), and the server falls back to exec where it cannot fork."""
import concurrent.futures
import json
import os
import re
import signal
import stat
import sys
import tempfile

import pytest

from conftest import create_py_function, invoke, wait_for

PROBE = """
import os, sys, time, json
STATE = {"n": 0}
def handler(event, context):
    STATE["n"] += 1
    if event.get("mark"):
        json._ruststack_test_mark = event["mark"]
        os.environ["LEAKED"] = event["mark"]
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {
        "pid": os.getpid(), "ppid": os.getppid(), "n": STATE["n"],
        "mark": getattr(json, "_ruststack_test_mark", None),
        "env": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv,
        "tz": time.strftime("%Z"), "main": sys.modules["__main__"].__name__,
        "path0": sys.path[0], "pgid": os.getpgid(0), "ctypes": "ctypes" in sys.modules,
    }
"""


def proc_stat(pid):
    """(state, ppid) of pid, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except OSError:
        return None


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def zygotes_of(srv):
    """The server's fork servers: its children running runtime/zygote.py."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st and st[0] != "Z" and st[1] == srv.proc.pid and "/runtime/zygote.py" in cmdline(int(d)):
                out.append(int(d))
    return out


def call(lam, name, event=None):
    r, body = invoke(lam, name, event or {}, decode=True)
    assert "FunctionError" not in r, body
    return body


def gone(pid):
    st = proc_stat(pid)
    return st is None or st[0] == "Z"


def test_environments_are_forked_children_with_distinct_pids(fresh_server):
    srv = fresh_server()
    lam = srv.client("lambda")
    name = create_py_function(lam, PROBE)
    # Two at once: two environments.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda _: call(lam, name, {"sleep": 1.0}), range(2)))
    pids = {o["pid"] for o in outs}
    assert len(pids) == 2, outs
    zygotes = zygotes_of(srv)
    assert len(zygotes) == 1, zygotes
    for o in outs:
        assert o["ppid"] == zygotes[0], (o["ppid"], zygotes)
        # Its own process group, as an exec'd runtime (the server kills the group).
        assert o["pgid"] == o["pid"]
        assert o["main"] == "__main__"
        # The fork server's own modules are not the function's.
        assert o["ctypes"] is False
    assert "python environments are forked from a pre-initialized interpreter" in srv.logs()
    # A second function gets its own environment from the same fork server.
    other = call(lam, create_py_function(lam, PROBE))
    assert other["pid"] not in pids and other["ppid"] == zygotes[0]


def test_module_state_is_fresh_per_environment(fresh_server):
    srv = fresh_server()
    lam = srv.client("lambda")
    a, b = create_py_function(lam, PROBE), create_py_function(lam, PROBE)
    first = call(lam, a, {"mark": "from-a"})
    assert first["n"] == 1 and first["mark"] == "from-a"
    again = call(lam, a)
    assert again["n"] == 2 and again["pid"] == first["pid"]
    # `json` was imported by the fork server before it forked: A's change stays in A.
    fresh = call(lam, b)
    assert fresh["n"] == 1 and fresh["mark"] is None, fresh
    assert "LEAKED" not in fresh["env"]


def test_environment_variables_cwd_argv_and_tz(fresh_server):
    srv = fresh_server()
    lam = srv.client("lambda")
    ny = create_py_function(lam, PROBE, Environment={"Variables": {"FOO": "ny", "TZ": "America/New_York"}})
    utc = create_py_function(lam, PROBE, Environment={"Variables": {"FOO": "utc"}})
    a, b = call(lam, ny), call(lam, utc)
    assert a["env"]["FOO"] == "ny" and b["env"]["FOO"] == "utc"
    assert a["tz"] in ("EST", "EDT"), a["tz"]
    assert b["tz"] == "UTC", b["tz"]
    for o, n in ((a, ny), (b, utc)):
        assert not [k for k in o["env"] if k.startswith("_RUSTSTACK_")], o["env"].keys()
        assert o["env"]["AWS_LAMBDA_FUNCTION_NAME"] == n
        assert o["cwd"] == o["env"]["LAMBDA_TASK_ROOT"]
        assert o["path0"] == o["env"]["LAMBDA_TASK_ROOT"]
        assert len(o["argv"]) == 1 and os.path.basename(o["argv"][0]).startswith("bootstrap")


def test_exit_at_init_is_reported_with_its_status(fresh_server):
    srv = fresh_server()
    lam = srv.client("lambda")
    name = create_py_function(lam, "import sys\nprint('before exit')\nsys.exit(3)\n")
    r, body = invoke(lam, name, LogType="Tail")
    assert r.get("FunctionError") == "Unhandled", body
    err = json.loads(body)
    assert err["errorType"] == "Runtime.ExitError", err
    assert "exit status 3" in err["errorMessage"], err
    import base64
    assert "before exit" in base64.b64decode(r["LogResult"]).decode()


def test_a_killed_fork_server_is_replaced(fresh_server):
    srv = fresh_server()
    lam = srv.client("lambda")
    name = create_py_function(lam, PROBE)
    before = call(lam, name)
    zygote = before["ppid"]
    assert zygote in zygotes_of(srv)
    os.kill(zygote, signal.SIGKILL)
    # Its environment dies with it (PR_SET_PDEATHSIG), and the server notices.
    wait_for(lambda: gone(before["pid"]), 15, "the environment to die with its fork server")
    after = wait_for(lambda: call(lam, name), 30, "an invoke after the fork server was killed")
    assert after["pid"] != before["pid"] and after["n"] == 1
    assert zygote not in zygotes_of(srv)
    # Re-spawned: the new environment is a new fork server's child.
    assert after["ppid"] in zygotes_of(srv), (after["ppid"], zygotes_of(srv))


def test_no_fork_server_means_exec(fresh_server):
    srv = fresh_server("--python-fork", "false")
    lam = srv.client("lambda")
    o = call(lam, create_py_function(lam, PROBE))
    assert o["ppid"] == srv.proc.pid
    assert zygotes_of(srv) == []


def test_fallback_to_exec_when_the_fork_server_cannot_start(fresh_server):
    # An interpreter that runs functions but refuses to be a fork server. The probe reports
    # the wrapper as the interpreter's path, so every start goes through it.
    d = tempfile.mkdtemp(prefix="ruststack-nofork-")
    wrapper = os.path.join(d, "python3")
    with open(wrapper, "w") as f:
        f.write(f"""#!/bin/sh
if [ "$1" = "-c" ]; then "{sys.executable}" "$@" | sed "2s|.*|$0|"; exit 0; fi
case "$4" in *zygote.py) echo "refusing to fork" >&2; exit 3;; esac
exec "{sys.executable}" "$@"
""")
    os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IEXEC)
    srv = fresh_server("--python", wrapper)
    lam = srv.client("lambda")
    names = [create_py_function(lam, PROBE) for _ in range(2)]
    outs = [call(lam, n) for n in names]
    for o in outs:
        assert o["ppid"] == srv.proc.pid, o["ppid"]
    logs = srv.logs()
    assert "refusing to fork" in logs
    assert logs.count("no python fork server") == 1, logs


def test_no_orphans_after_delete_function(fresh_server):
    srv = fresh_server()
    lam = srv.client("lambda")
    name = create_py_function(lam, PROBE)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        pids = {o["pid"] for o in pool.map(lambda _: call(lam, name, {"sleep": 1.0}), range(2))}
    assert len(pids) == 2
    lam.delete_function(FunctionName=name)
    # Killed and reaped by the fork server: no zombie left.
    wait_for(lambda: all(proc_stat(p) is None for p in pids), 15, "the environments to be killed and reaped")
    assert len(zygotes_of(srv)) == 1


def test_kill_9_of_the_server_takes_fork_server_and_environments_down(fresh_server):
    srv = fresh_server()
    lam = srv.client("lambda")
    outs = [call(lam, create_py_function(lam, PROBE)) for _ in range(2)]
    zygotes = zygotes_of(srv)
    assert len(zygotes) == 1
    pids = [o["pid"] for o in outs] + zygotes
    srv.kill()
    wait_for(lambda: all(gone(p) for p in pids), 15, "the fork server and its environments to die with the server")


def test_a_task_root_module_named_like_a_fork_server_module_is_the_functions(fresh_server):
    # The fork server imported the standard ctypes; an exec'd bootstrap would not have, and
    # the function's own ctypes.py wins there: it does here too.
    srv = fresh_server()
    lam = srv.client("lambda")
    name = create_py_function(lam, {"app.py": "import ctypes\ndef handler(e, c):\n    return ctypes.MINE\n",
                                    "ctypes.py": "MINE = 'task-root'\n"})
    assert call(lam, name) == "task-root"


def test_a_forked_environment_is_in_its_memory_cgroup(fresh_server):
    srv = fresh_server()
    lam = srv.client("lambda")
    name = create_py_function(lam, "def handler(e, c):\n    return open('/proc/self/cgroup').read()\n")
    groups = call(lam, name)
    if "are limited to their MemorySize" not in srv.logs():
        assert "no memory cgroups" in srv.logs()
        return
    assert "/ruststack-%d/env-" % srv.proc.pid in groups, groups


def test_a_stuck_fork_server_is_bypassed_and_replaced(fresh_server):
    srv = fresh_server("--lambda-init-timeout", "60")
    lam = srv.client("lambda")
    warm_name = create_py_function(lam, PROBE)
    warm = call(lam, warm_name)
    stuck = warm["ppid"]
    os.kill(stuck, signal.SIGSTOP)
    try:
        # Unanswered: this environment is exec'd (after the fork server's 10 s).
        o = call(lam, create_py_function(lam, PROBE))
        assert o["ppid"] == srv.proc.pid, (o["ppid"], srv.proc.pid)
        # The next one comes from a new fork server; the stuck one is left alone, and with
        # it its environment, which still serves.
        n = call(lam, create_py_function(lam, PROBE))
        assert n["ppid"] not in (stuck, srv.proc.pid) and n["ppid"] in zygotes_of(srv)
    finally:
        os.kill(stuck, signal.SIGCONT)
    again = call(lam, warm_name)
    assert again["pid"] == warm["pid"] and again["n"] == 2
    assert "the fork server did not answer" in srv.logs()


def test_what_only_an_interpreter_start_reads_makes_an_exec(fresh_server):
    srv = fresh_server()
    lam = srv.client("lambda")
    forked = call(lam, create_py_function(lam, PROBE))
    assert forked["ppid"] != srv.proc.pid
    # Native libraries in lib/ (the loader reads LD_LIBRARY_PATH at its start), and a
    # PYTHON* variable (read by the interpreter's start): exec'd, the variable in effect.
    libs = call(lam, create_py_function(lam, {"app.py": PROBE, "lib/libnothing.so.txt": "x"}))
    assert libs["ppid"] == srv.proc.pid
    src = PROBE + "\ndef flags(e, c):\n    return sys.flags.dont_write_bytecode\n"
    name = create_py_function(lam, src, handler="app.flags",
                              Environment={"Variables": {"PYTHONDONTWRITEBYTECODE": "1"}})
    assert call(lam, name) == 1


# Its memory cgroup (as the server's tree names it) and that cgroup's limit, read from the
# cgroup filesystem the way the kernel shows it to this process.
CGROUP_PROBE = """
import os

def memcg():
    own = open("/proc/self/cgroup").read().splitlines()
    v1 = [l.split(":", 2)[2] for l in own if "memory" in l.split(":")[1].split(",")]
    for line in open("/proc/self/mountinfo"):
        left, right = line.split(" - ", 1)
        f, r = left.split(), right.split()
        if v1 and r[0] == "cgroup" and "memory" in r[2].split(","):
            path, limit = v1[0], "memory.limit_in_bytes"
        elif not v1 and r[0] == "cgroup2":
            path, limit = [l[3:] for l in own if l.startswith("0::")][0], "memory.max"
        else:
            continue
        root = f[3]
        if root != "/" and path.startswith(root):
            path = path[len(root):]
        with open(os.path.join(f[4], path.lstrip("/"), limit)) as fl:
            return path, int(fl.read().strip())

def handler(event, context):
    if event.get("mb"):
        chunks = [b"x" * (8 << 20) for _ in range(event["mb"] // 8)]
        return len(chunks)
    path, limit = memcg()
    return {"pid": os.getpid(), "ppid": os.getppid(), "cgroup": path, "limit": limit,
            "mine": os.environ.get("MINE"), "cwd": os.getcwd(),
            "root": os.environ["LAMBDA_TASK_ROOT"]}
"""


def spares_made(srv):
    return srv.logs().count("python fork server: a spare environment waits")


def test_a_cold_start_is_served_by_a_pre_forked_spare_with_the_functions_limit(fresh_server):
    srv = fresh_server(env={"RUST_LOG": "info,ruststack::engine::sandbox=debug"})
    wait_for(lambda: "limited to their MemorySize" in srv.logs() or "no memory cgroups" in srv.logs(),
             timeout=30, what="the memory cgroups check")
    if "no memory cgroups" in srv.logs():
        pytest.skip("no memory cgroups on this host: environments are forked without spares")
    # The server makes the fork server's first spare at its start, before any function.
    wait_for(lambda: spares_made(srv) >= 1, timeout=30, what="the first spare")
    # The spare's cgroup is no environment's: `spare-N`, until it is taken.
    base = [l for l in srv.logs().splitlines() if "are limited to their MemorySize" in l][0]
    tree = base.split(" at ")[-1].split('"')[0].split()[0]
    kids = [d for d in os.listdir(tree) if os.path.isdir(os.path.join(tree, d))]
    assert len(kids) == 1 and kids[0].startswith("spare-"), kids
    lam = srv.client("lambda")
    name = create_py_function(lam, CGROUP_PROBE, MemorySize=256, Timeout=30,
                              Environment={"Variables": {"MINE": "mine"}})
    out = call(lam, name)
    taken = re.findall(r"python environment started from a pre-forked spare\s+pid=(\d+)",
                       re.sub(r"\x1b\[[0-9;]*m", "", srv.logs()))
    assert taken == [str(out["pid"])], (taken, out)
    assert out["ppid"] in zygotes_of(srv)
    # Its own cgroup, limited to its MemorySize (the spare waited under 128 MB); its own
    # variables and cwd.
    assert out["cgroup"].endswith("/ruststack-%d/env-%s" % (srv.proc.pid, kids[0].split("-")[1])), (out, kids)
    assert out["limit"] == 256 << 20, out
    assert out["mine"] == "mine" and out["cwd"] == out["root"], out
    # 184 MB fit under 256 MB; 400 MB do not: the function's limit is the one enforced.
    assert call(lam, name, {"mb": 184}) == 23
    r, body = invoke(lam, name, {"mb": 400}, decode=True)
    assert r.get("FunctionError") == "Unhandled" and body["errorType"] == "Runtime.OutOfMemory", body
    # The next cold start takes the next spare: another pid, its own cgroup and limit.
    wait_for(lambda: spares_made(srv) >= 2, timeout=30, what="the second spare")
    other = call(lam, create_py_function(lam, CGROUP_PROBE, MemorySize=512))
    assert other["pid"] != out["pid"] and other["cgroup"] != out["cgroup"], other
    assert other["limit"] == 512 << 20 and other["mine"] is None, other
    taken = re.findall(r"python environment started from a pre-forked spare\s+pid=(\d+)",
                       re.sub(r"\x1b\[[0-9;]*m", "", srv.logs()))
    assert str(other["pid"]) in taken, (taken, other)
