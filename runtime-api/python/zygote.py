"""RustStack Lambda: the Python fork server (a "zygote").

RustStack starts one per host interpreter as ``python3 -u -X utf8 zygote.py
BOOTSTRAP_RUN BOOTSTRAP_SOURCE`` with fd 3 a SOCK_SEQPACKET unix socket. It imports
what the bundled bootstrap imports, loads the bootstrap's code once, and then forks one
child per new environment. The child takes the environment's variables, cwd, output
pipe and memory cgroup, and runs the bootstrap as ``__main__``, as ``python3 -u
bootstrap.pyc`` would: the bootstrap's module body (which reads the environment) and
the function's init run in the child, fresh for each environment.

Messages (one JSON object each, file descriptors as SCM_RIGHTS):
  zygote -> server  {"ready": "3.12"}                      once, when pre-initialized
  server -> zygote  {"id": N, "env": [[k, v], ...], "cwd": DIR}
                    fds: the output pipe, then the cgroup.procs to join (optional)
  zygote -> server  {"id": N, "pid": PID}  fds: a pidfd of the child
                    {"id": N, "error": "..."}
  server -> zygote  {"id": N, "prefork": true}  fds: the cgroup.procs to join
                    a spare child, forked ahead into its (fresh) cgroup, that waits
  zygote -> server  {"id": N, "pid": PID}  fds: a pidfd of the spare
  server -> zygote  {"id": N, "take": PID, "env": [[k, v], ...], "cwd": DIR}
                    fds: the output pipe. The spare PID gets the request and the pipe
                    on its own socket and becomes the environment.
  zygote -> server  {"id": N, "pid": PID}  fds: a pidfd of the child, as for a fork
  zygote -> server  {"exit": PID, "status": WAIT_STATUS, "maxrss": KB}

The zygote exits when the server's end closes; PR_SET_PDEATHSIG takes the zygote down
with the server and every child down with the zygote.
"""

import sys
import os

# What the bootstrap imports at its top, so children find it loaded.
import _signal  # noqa: F401
import _socket
import importlib  # noqa: F401
import importlib.machinery  # noqa: F401
import json
import site  # noqa: F401
import time
import atexit
import gc

# The zygote's own modules are taken out of the children's sys.modules, so that a child's
# imports find what an exec'd bootstrap's would (a task-root `ctypes.py` included).
_BASELINE = frozenset(sys.modules)

import marshal  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402

try:
    import ctypes

    _libc = ctypes.CDLL(None, use_errno=True)
    _prctl = _libc.prctl
except Exception as e:  # noqa: BLE001
    sys.stderr.write("zygote: no ctypes prctl (%s)\n" % e)
    sys.exit(3)

_OWN_MODULES = frozenset(sys.modules) - _BASELINE

if not hasattr(os, "pidfd_open") or not hasattr(_socket.socket, "sendmsg"):
    sys.stderr.write("zygote: this interpreter has no os.pidfd_open or socket.sendmsg\n")
    sys.exit(3)

try:
    os.close(os.pidfd_open(os.getpid()))
except OSError as e:
    sys.stderr.write("zygote: no pidfds on this kernel (%s)\n" % e)
    sys.exit(3)

_PR_SET_PDEATHSIG = 1
_SIGKILL = 9
_CTL_FD = 3
_MAX_MSG = 1 << 20
_FDS_SPACE = _socket.CMSG_SPACE(4 * 4)


def _load_code(run, source):
    """The bootstrap's code: from its .pyc (16-byte header), else compiled from source."""
    if run.endswith(".pyc"):
        with open(run, "rb") as f:
            data = f.read()
        return marshal.loads(data[16:])
    with open(source, "rb") as f:
        return compile(f.read(), source, "exec", dont_inherit=True)


def _fds_of(ancdata):
    fds = []
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            fds.extend(memoryview(data[:usable]).cast("i"))
    return fds


def _send(ctl, obj, fds=()):
    anc = []
    if fds:
        anc = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))]
    ctl.sendmsg([json.dumps(obj).encode("utf-8")], anc)


def _child(req, out_fd, go_r, ctl, kids, run, code):
    """In the forked child: becomes the environment, then runs the bootstrap. Never returns."""
    try:
        _prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
        # Wait for the zygote to have put us in our process group and memory cgroup.
        if os.read(go_r, 1) != b"1":
            os._exit(127)
        os.close(go_r)
        ctl.close()
        for fd in kids:
            os.close(fd)
    except BaseException:  # noqa: BLE001
        os._exit(127)
    _become(req, out_fd, run, code)


def _spare(orders, ctl, kids, run, code):
    """In a pre-forked spare: waits on `orders` (its socket to the zygote) for the request
    and output pipe of the environment it becomes. Never returns."""
    try:
        _prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
        ctl.close()
        for fd in kids:
            os.close(fd)
        while True:
            try:
                msg, anc, _flags, _addr = orders.recvmsg(_MAX_MSG, _FDS_SPACE)
                break
            except InterruptedError:
                continue
        fds = _fds_of(anc)
        orders.close()
        if not msg or not fds:
            os._exit(0)
        for fd in fds[1:]:
            os.close(fd)
        req = json.loads(msg)
    except BaseException:  # noqa: BLE001
        os._exit(127)
    _become(req, fds[0], run, code)


def _become(req, out_fd, run, code):
    """Becomes the environment `req` with `out_fd` as its output, then runs the bootstrap."""
    status = 1
    try:
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        environ = os.environ
        environ.clear()
        for key, value in req["env"]:
            environ[key] = value
        time.tzset()
        os.chdir(req["cwd"])
        sys.argv[:] = [run]
        for name in _OWN_MODULES:
            sys.modules.pop(name, None)
        main = type(sys)("__main__")
        main.__file__ = run
        main.__builtins__ = __builtins__
        main.__cached__ = None
        # The bootstrap reports the runtime's peak RSS with each result it posts (its
        # ru_maxrss: the VmHWM the server would otherwise read from /proc/<pid>/status, ~7 us
        # of its CPU per invoke). A forked child has no pre-exec peak in it; the module stays
        # out of the child's sys.modules, as an exec'd bootstrap never imports it.
        main._RUSTSTACK_MAXRSS = resource.getrusage
        sys.modules["__main__"] = main
        try:
            exec(code, main.__dict__)
            status = 0
        except SystemExit as e:
            # As the interpreter does at exit: the code, or the message and 1.
            if e.code is None:
                status = 0
            elif isinstance(e.code, int):
                status = e.code & 0xFF
            else:
                try:
                    sys.stderr.write("%s\n" % (e.code,))
                except Exception:  # noqa: BLE001
                    pass
                status = 1
        except BaseException:  # noqa: BLE001
            sys.excepthook(*sys.exc_info())
            status = 1
        try:
            threading = sys.modules.get("threading")
            if threading is not None:
                threading._shutdown()
            atexit._run_exitfuncs()
        except BaseException:  # noqa: BLE001
            pass
    except BaseException as e:  # noqa: BLE001
        try:
            os.write(2, ("ruststack zygote: cannot start the environment: %r\n" % (e,)).encode())
        except Exception:  # noqa: BLE001
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001
                pass
        os._exit(status)


def _spawn(ctl, req, fds, kids, spares, poller, run, code):
    out_fd = fds[0]
    cgroup_fd = fds[1] if len(fds) > 1 else -1
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        if cgroup_fd >= 0:
            os.close(cgroup_fd)
        inherited = list(kids) + [s.fileno() for s in spares.values()]
        _child(req, out_fd, go_r, ctl, inherited, run, code)
    os.close(go_r)
    ok = False
    try:
        os.setpgid(pid, pid)
        if cgroup_fd >= 0:
            os.write(cgroup_fd, str(pid).encode())
        pidfd = os.pidfd_open(pid)
        ok = True
    except OSError as e:
        error = "cannot set up pid %d: %s" % (pid, e)
    try:
        os.write(go_w, b"1" if ok else b"0")
    except OSError:
        pass
    os.close(go_w)
    if not ok:
        os.waitpid(pid, 0)
        _send(ctl, {"id": req["id"], "error": error})
        return
    kids[pidfd] = pid
    poller.register(pidfd, select.POLLIN)
    _send(ctl, {"id": req["id"], "pid": pid}, [pidfd])


def _prefork(ctl, req, cgroup_fd, kids, spares, poller, run, code):
    """Forks a spare into the cgroup of `cgroup_fd` (its process group and pidfd too), to
    wait for the environment it is to become (see `_take`)."""
    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        ours.close()
        os.close(cgroup_fd)
        inherited = list(kids) + [s.fileno() for s in spares.values()]
        _spare(theirs, ctl, inherited, run, code)
    theirs.close()
    try:
        os.setpgid(pid, pid)
        os.write(cgroup_fd, str(pid).encode())
        pidfd = os.pidfd_open(pid)
    except OSError as e:
        ours.close()
        try:
            os.kill(pid, _SIGKILL)
        except OSError:
            pass
        os.waitpid(pid, 0)
        _send(ctl, {"id": req["id"], "error": "cannot set up spare %d: %s" % (pid, e)})
        return
    kids[pidfd] = pid
    spares[pid] = ours
    poller.register(pidfd, select.POLLIN)
    _send(ctl, {"id": req["id"], "pid": pid}, [pidfd])


def _take(ctl, req, out_fd, kids, spares):
    """Hands `req` and the output pipe to the waiting spare `req["take"]`."""
    pid = req["take"]
    orders = spares.pop(pid, None)
    if orders is None:
        _send(ctl, {"id": req["id"], "error": "no spare %s" % pid})
        return
    pidfd = next((fd for fd, p in kids.items() if p == pid), None)
    try:
        _send(orders, req, [out_fd])
    except OSError as e:
        _send(ctl, {"id": req["id"], "error": "the spare %s is gone: %s" % (pid, e)})
        return
    finally:
        orders.close()
    if pidfd is None:
        _send(ctl, {"id": req["id"], "error": "the spare %s has exited" % pid})
    else:
        _send(ctl, {"id": req["id"], "pid": pid}, [pidfd])


def main():
    run, source = sys.argv[1], sys.argv[2]
    _prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
    code = _load_code(run, source)
    ctl = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, _CTL_FD)
    kids = {}
    # pid -> the zygote's end of a waiting spare's socket.
    spares = {}
    poller = select.poll()
    poller.register(_CTL_FD, select.POLLIN)
    # What exists now is shared with every child: the collector leaves it alone, so that
    # the pages it is on stay shared (copy-on-write) instead of being written by each child.
    gc.collect()
    gc.freeze()
    _send(ctl, {"ready": "%d.%d" % sys.version_info[:2]})
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        for fd, _ev in events:
            if fd == _CTL_FD:
                msg, anc, _flags, _addr = ctl.recvmsg(_MAX_MSG, _FDS_SPACE)
                fds = _fds_of(anc)
                if not msg:
                    os._exit(0)
                try:
                    req = json.loads(msg)
                    if not fds:
                        _send(ctl, {"id": req.get("id"), "error": "no fd was passed"})
                    elif req.get("prefork"):
                        _prefork(ctl, req, fds[0], kids, spares, poller, run, code)
                    elif "take" in req:
                        _take(ctl, req, fds[0], kids, spares)
                    else:
                        _spawn(ctl, req, fds, kids, spares, poller, run, code)
                except Exception as e:  # noqa: BLE001
                    _send(ctl, {"id": None, "error": "bad request: %s" % e})
                for f in fds:
                    os.close(f)
            else:
                pid = kids.pop(fd, None)
                poller.unregister(fd)
                os.close(fd)
                if pid is None:
                    continue
                orders = spares.pop(pid, None)
                if orders is not None:
                    orders.close()
                _pid, status, usage = os.wait4(pid, 0)
                _send(ctl, {"exit": pid, "status": status, "maxrss": usage.ru_maxrss})


if __name__ == "__main__":
    main()
