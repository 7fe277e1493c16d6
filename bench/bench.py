#!/usr/bin/env python3
"""RustStack Lambda benchmark: warm and cold invoke latency, throughput, memory and scale,
side by side with the peer `cargo lambda watch --only-lambda-apis`. Prints one table.

Run it with bench/run.sh (builds the release binary and the bench client first).
Every figure comes from the real release binary driven by real clients:
  - examples/bench_client.rs: a std-only Rust keep-alive client (pre-built request bytes)
    for the raw-HTTP floor, throughput and queueing Events; its `serve` mode is the
    trivial local endpoint that answers a canned Invoke response;
  - boto3, as users call it.
Nothing here asserts: the table says which targets were met on this run.
"""
import argparse
import base64
import http.client
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

import boto3
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.environ.get("RUSTSTACK_BIN", os.path.join(TARGET, "release", "ruststack"))
CLIENT = os.environ.get("BENCH_CLIENT", os.path.join(TARGET, "release", "examples", "bench_client"))
CARGO_LAMBDA = os.environ.get("CARGO_LAMBDA", shutil.which("cargo-lambda") or os.path.join(os.path.dirname(sys.executable), "cargo-lambda"))
DOCKER_IMAGE = os.environ.get("BENCH_DOCKER_IMAGE", "ruststack/lambda-python:3.11")
CREDS = dict(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
ROLE = "arn:aws:iam::000000000000:role/lambda"

TRIVIAL = "def handler(event, context):\n    return {'ok': True}\n"
TRIVIAL_NODE = "export const handler = async () => ({ok: true});\n"
INVOKE = "/2015-03-31/functions/%s/invocations"

rows = []  # (section, metric, value, target, verdict)


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def loadavg():
    return "%.2f %.2f %.2f" % os.getloadavg()


def row(section, metric, value, target="", verdict=""):
    rows.append((section, metric, value, target, verdict))
    log("%s | %s | %s | %s %s" % (section, metric, value, target, verdict))


def ok(cond):
    return "met" if cond else "MISSED"


def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def ms(x):
    return "%.3f ms" % (x * 1000.0)


def lat_summary(samples):
    return "p50 %s · p99 %s · min %s (n=%d)" % (ms(pct(samples, 50)), ms(pct(samples, 99)), ms(min(samples)), len(samples))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zip_of(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


def zip_bootstrap(files, bootstrap):
    """A custom-runtime zip: `files` and an executable `bootstrap`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o100755 << 16
        z.writestr(info, bootstrap)
    return buf.getvalue()


def real_python():
    out = subprocess.run(["python3", "-c", "import sys; print(sys.executable)"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid):
    """User + system CPU seconds of a process so far."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def children(pid):
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out.extend(int(p) for p in f.read().split())
    except OSError:
        pass
    return out


def pss_rss_kb(pid):
    """(PSS, RSS) of a process in KB, from /proc/PID/smaps_rollup ((0, 0) once it is gone)."""
    pss = rss = 0
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def is_spare(pid):
    try:
        with open("/proc/%d/cgroup" % pid) as f:
            return "/spare-" in f.read()
    except OSError:
        return False


def runtimes(pid):
    """(environment pids, fork-server pids) of server `pid`: its children, and in place of
    its Python fork servers (runtime/zygote.py) their children (a waiting spare counted with
    the fork servers)."""
    envs, zygotes = [], []
    for c in children(pid):
        try:
            with open("/proc/%d/cmdline" % c, "rb") as f:
                zygote = b"/runtime/zygote.py" in f.read()
        except OSError:
            continue
        if zygote:
            zygotes.append(c)
            # A fork server's waiting spare (its cgroup `spare-N`) is no environment: it
            # counts with its fork server.
            for k in children(c):
                (zygotes if is_spare(k) else envs).append(k)
        else:
            envs.append(c)
    return envs, zygotes


# How python3.x environments start: forked from a pre-initialized interpreter (the default)
# or exec'd, each from scratch (`--python-fork false`).
PY_MODES = (("fork", ()), ("exec", ("--python-fork", "false")))


class Server:
    """One release `ruststack` process on its own port and data dir."""

    def __init__(self, *args, env=None, bin=None):
        self.dir = tempfile.mkdtemp(prefix="ruststack-bench-")
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.endpoint = "http://" + self.addr
        e = dict(os.environ)
        e.setdefault("RUST_LOG", "info")
        e.update(env or {})
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen([bin or BIN, "--port", str(self.port), "--data-dir", self.dir, *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=e, start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ruststack exited early: " + self.logs()[-2000:])
            try:
                self.health()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("ruststack did not start")

    def logs(self):
        with open(os.path.join(self.dir, "server.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def health(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        c.request("GET", "/_ruststack/health")
        r = c.getresponse()
        body = json.loads(r.read())
        c.close()
        return body

    def client(self):
        cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=120, max_pool_connections=50)
        return boto3.client("lambda", endpoint_url=self.endpoint, config=cfg, **CREDS)

    def rss_kb(self):
        return rss_kb(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def http_call(port, method, path, body=b"", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def create_raw(port, name, code_zip, runtime="python3.11", handler="handler.handler", extra=None):
    spec = {"FunctionName": name, "Runtime": runtime, "Handler": handler, "Role": ROLE,
            "Code": {"ZipFile": base64.b64encode(code_zip).decode()}}
    spec.update(extra or {})
    status, data = http_call(port, "POST", "/2015-03-31/functions", json.dumps(spec).encode(),
                             {"Content-Type": "application/json"})
    if status != 201:
        raise RuntimeError("CreateFunction %s: %s %s" % (name, status, data[:300]))


def invoke_raw(port, name, payload=b"{}"):
    status, data = http_call(port, "POST", INVOKE % name, payload, {"Content-Type": "application/json"})
    if status != 200:
        raise RuntimeError("Invoke %s: %s %s" % (name, status, data[:300]))
    return data


def client_latency(addr, path, n, body="{}", headers=""):
    env = dict(os.environ, BENCH_HEADERS=headers)
    out = subprocess.run([CLIENT, "latency", addr, path, body, str(n)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError("bench_client: " + out.stderr.strip())
    return [int(x) / 1e9 for x in out.stdout.split()]


def client_throughput(addr, path, clients, secs):
    out = subprocess.run([CLIENT, "throughput", addr, path, "{}", str(clients), str(secs)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("bench_client: " + out.stderr.strip())
    n, t = out.stdout.split()
    return int(n) / float(t)


class Canned:
    """bench_client serve: the trivial local endpoint answering a canned Invoke response."""

    def __init__(self):
        self.proc = subprocess.Popen([CLIENT, "serve", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
        self.addr = self.proc.stdout.readline().strip()
        self.endpoint = "http://" + self.addr

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def boto3_latency(targets, n):
    """Sequential boto3 invokes, alternating between (endpoint, function) targets, so every
    target sees the same machine load (this machine is shared: interleaving is fairer)."""
    cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=120)
    clients = [(boto3.client("lambda", endpoint_url=e, config=cfg, **CREDS), f) for e, f in targets]
    out = [[] for _ in clients]
    for i in range(n + 50):  # 50 to warm: connections, botocore's lazily built models
        for (lam, fn), samples in zip(clients, out):
            t = time.perf_counter()
            lam.invoke(FunctionName=fn, Payload=b"{}")["Payload"].read()
            if i >= 50:
                samples.append(time.perf_counter() - t)
    return out


def python_raw_latency(addr, path, n):
    """A Python keep-alive client with pre-built request bytes: how much Python itself costs."""
    host, port = addr.split(":")
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = ("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}" % (path, addr)).encode()
    out = []
    buf = b""
    for _ in range(n + 50):
        t = time.perf_counter()
        s.sendall(req)
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end].lower()
                i = head.find(b"content-length:")
                length = int(head[i + 15:].split(b"\r\n", 1)[0]) if i >= 0 else 0
                if len(buf) >= end + 4 + length:
                    buf = buf[end + 4 + length:]
                    break
            buf += s.recv(65536)
        out.append(time.perf_counter() - t)
    s.close()
    return out[50:]


# ---------------------------------------------------------------- sections


def bench_warm(n):
    canned = Canned()
    srv = Server()
    try:
        name = "warm"
        create_raw(srv.port, name, zip_of({"handler.py": TRIVIAL}))
        invoke_raw(srv.port, name)
        path = INVOKE % name
        client_latency(srv.addr, path, 200)  # warm-up
        floor = client_latency(canned.addr, path, n)
        row("warm (subprocess)", "bench_client vs canned endpoint (client's own cost)", lat_summary(floor))
        kids = children(srv.proc.pid)
        c0 = cpu_s(srv.proc.pid), sum(cpu_s(k) for k in kids)
        raw = client_latency(srv.addr, path, n)
        c1 = cpu_s(srv.proc.pid), sum(cpu_s(k) for k in kids)
        row("warm (subprocess)", "raw keep-alive HTTP (bench_client)", lat_summary(raw), "p50 ≤ 0.5 ms", ok(pct(raw, 50) <= 0.0005))
        row("warm (subprocess)", "CPU per warm invoke: server / Python runtime",
            "%.0f µs / %.0f µs" % ((c1[0] - c0[0]) * 1e6 / n, (c1[1] - c0[1]) * 1e6 / n))
        py_floor = python_raw_latency(canned.addr, path, n)
        py_raw = python_raw_latency(srv.addr, path, n)
        row("warm (subprocess)", "Python raw socket client vs canned / vs RustStack",
            "p50 %s / %s" % (ms(pct(py_floor, 50)), ms(pct(py_raw, 50))))
        b_floor, b = boto3_latency([(canned.endpoint, name), (srv.endpoint, name)], n)
        row("warm (subprocess)", "boto3 vs canned endpoint (boto3's own overhead)", lat_summary(b_floor))
        delta = pct(b, 50) - pct(b_floor, 50)
        row("warm (subprocess)", "boto3 invoke (interleaved with the line above)", lat_summary(b) + " · p50 − overhead %s" % ms(delta),
            "p50 − overhead ≤ 0.5 ms", ok(delta <= 0.0005))
        if shutil.which("node"):
            major = subprocess.run(["node", "-p", "process.versions.node.split('.')[0]"], capture_output=True, text=True).stdout.strip()
            create_raw(srv.port, "warm-node", zip_of({"index.mjs": TRIVIAL_NODE}), runtime="nodejs%s.x" % major, handler="index.handler")
            t = time.perf_counter()
            invoke_raw(srv.port, "warm-node")
            cold_node = time.perf_counter() - t
            node_path = INVOKE % "warm-node"
            client_latency(srv.addr, node_path, 200)
            lat = client_latency(srv.addr, node_path, n)
            row("warm (subprocess)", "nodejs%s.x: raw keep-alive HTTP (first invoke %s)" % (major, ms(cold_node)), lat_summary(lat))
        return pct(raw, 50), pct(b, 50)
    finally:
        srv.stop()
        canned.stop()


def bench_warm_vs(n, other, rounds=10):
    """Warm raw keep-alive latency of this binary and of `other` (another build, say an older
    commit's) side by side: a server of each with the same trivial function, measured in
    `rounds` alternating runs of n/rounds invokes, so both see the same load."""
    bins = [("this", BIN), ("vs", other)]
    servers = []
    try:
        for label, b in bins:
            srv = Server(bin=b)
            servers.append((label, b, srv))
            create_raw(srv.port, "warm", zip_of({"handler.py": TRIVIAL}))
            invoke_raw(srv.port, "warm")
            client_latency(srv.addr, INVOKE % "warm", 200)  # warm-up
        samples = {label: [] for label, _ in bins}
        per = max(1, n // rounds)
        for _ in range(rounds):
            for label, _, srv in servers:
                samples[label] += client_latency(srv.addr, INVOKE % "warm", per)
        for label, b, _ in servers:
            row("warm side by side", "%s: %s" % (label, b), lat_summary(samples[label]) + " · load %s" % loadavg())
    finally:
        for _, _, srv in servers:
            srv.stop()


def bench_updates(n):
    """Invoke p99 with and without another client running UpdateFunctionConfiguration in a
    loop (on another function of the same region: every update writes the region's store)."""
    import threading
    srv = Server()
    try:
        create_raw(srv.port, "upd", zip_of({"handler.py": TRIVIAL}))
        create_raw(srv.port, "upd-other", zip_of({"handler.py": TRIVIAL}))
        invoke_raw(srv.port, "upd")
        path = INVOKE % "upd"
        client_latency(srv.addr, path, 200)  # warm-up
        plain = client_latency(srv.addr, path, n)
        stop = threading.Event()
        updates = [0]

        def updater():
            i = 0
            while not stop.is_set():
                i += 1
                body = json.dumps({"Description": "update %d" % i}).encode()
                status, data = http_call(srv.port, "PUT", "/2015-03-31/functions/upd-other/configuration", body,
                                         {"Content-Type": "application/json"})
                if status != 200:
                    raise RuntimeError("UpdateFunctionConfiguration: %s %s" % (status, data[:300]))
                updates[0] += 1

        t = threading.Thread(target=updater, daemon=True)
        t0 = time.perf_counter()
        t.start()
        try:
            busy = client_latency(srv.addr, path, n)
        finally:
            stop.set()
            t.join(30)
        rate = updates[0] / (time.perf_counter() - t0)
        row("updates", "raw keep-alive Invoke, alone", lat_summary(plain))
        row("updates", "the same while another client runs UpdateFunctionConfiguration in a loop (%.0f updates/s)" % rate,
            lat_summary(busy) + " · p99 %s beside %s alone" % (ms(pct(busy, 99)), ms(pct(plain, 99))))
    finally:
        srv.stop()


def cold_starts(srv, code, prefix, reps, before_each=None):
    """`reps` rounds of: CreateFunction → first response of a new function `<prefix><i>`; then,
    once the TTL has removed every environment, the first invoke of `<prefix>0` again.
    Returns the two lists of seconds. The server must run with a short TTL."""
    create_first, after_ttl = [], []
    for i in range(reps):
        if before_each:
            before_each()
        t = time.perf_counter()
        create_raw(srv.port, "%s%d" % (prefix, i), code)
        invoke_raw(srv.port, "%s%d" % (prefix, i))
        create_first.append(time.perf_counter() - t)
        deadline = time.time() + 10
        while srv.health()["environments"]["live"] > 0 and time.time() < deadline:
            time.sleep(0.05)
        t = time.perf_counter()
        invoke_raw(srv.port, prefix + "0")
        after_ttl.append(time.perf_counter() - t)
    return create_first, after_ttl


def bench_cold(reps):
    """Cold starts, interleaved with the bare interpreter so each pair sees the same load;
    forked environments (the default), then exec'd ones."""
    py = real_python()
    d = tempfile.mkdtemp(prefix="bench-import-")
    with open(os.path.join(d, "handler.py"), "w") as f:
        f.write(TRIVIAL)

    def bare_once():
        t = time.perf_counter()
        subprocess.run([py, "-c", "import handler"], cwd=d, check=True)
        return time.perf_counter() - t

    for _ in range(3):
        bare_once()  # page cache, __pycache__
    try:
        for mode, extra in PY_MODES:
            srv = Server("--lambda-container-ttl", "1", *extra)
            try:
                code = zip_of({"handler.py": TRIVIAL})
                create_raw(srv.port, "cold", code)
                invoke_raw(srv.port, "cold")
                bare = []
                create_first, after_ttl = cold_starts(srv, code, "cold", reps, lambda: bare.append(bare_once()))
            finally:
                srv.stop()
            section = "cold (subprocess, %s)" % mode
            b = statistics.median(bare)
            row(section, "bare `%s -c 'import handler'`" % py, "median %s · min %s (n=%d)" % (ms(b), ms(min(bare)), len(bare)))
            goal = (("≤ 0.5× bare", 0.5) if mode == "fork" else ("", None))
            m = statistics.median(create_first)
            row(section, "CreateFunction → first response",
                "median %s · min %s (%.2f× bare)" % (ms(m), ms(min(create_first)), m / b),
                goal[0], ok(m <= goal[1] * b) if goal[1] else "")
            m = statistics.median(after_ttl)
            row(section, "first invoke after TTL expiry",
                "median %s · min %s (%.2f× bare; min/min %.2f×)" % (ms(m), ms(min(after_ttl)), m / b, min(after_ttl) / min(bare)),
                goal[0], ok(m <= goal[1] * b) if goal[1] else "")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def bench_throughput(secs):
    srv = Server("--lambda-max-containers", "10")
    try:
        name = "tput"
        create_raw(srv.port, name, zip_of({"handler.py": TRIVIAL}))
        path = INVOKE % name
        client_throughput(srv.addr, path, 16, 1)  # start all 10 environments
        for c in (1, 4, 16):
            r = client_throughput(srv.addr, path, c, secs)
            if c == 4:
                row("throughput", "%d concurrent clients (max containers 10)" % c, "%.0f invokes/s" % r, "≥ 3,000/s", ok(r >= 3000))
            else:
                row("throughput", "%d concurrent clients (max containers 10)" % c, "%.0f invokes/s" % r)
    finally:
        srv.stop()


def bench_memory(n_envs):
    """The server's RSS, then the PSS (and RSS) of `n_envs` warm Python environments, forked
    and exec'd: PSS charges each shared page to its sharers in part, so the sum is the memory
    the environments really take."""
    code = zip_of({"handler.py": TRIVIAL})
    pss = {}
    for mode, extra in PY_MODES:
        srv = Server("--lambda-max-containers", str(n_envs), *extra)
        try:
            if mode == "fork":
                time.sleep(1.0)
                idle = srv.rss_kb()
                row("memory", "server RSS idle", "%.1f MB" % (idle / 1024), "≤ 30 MB", ok(idle <= 30 * 1024))
            for i in range(n_envs):
                create_raw(srv.port, "mem%03d" % i, code)
                invoke_raw(srv.port, "mem%03d" % i)
            live = srv.health()["environments"]["live"]
            envs, zygotes = runtimes(srv.proc.pid)
            if mode == "fork":
                warm = srv.rss_kb()
                kids = sum(rss_kb(p) for p in envs + zygotes)
                row("memory", "server RSS with %d warm environments" % live, "%.1f MB (runtimes, not counted: %.0f MB)" % (warm / 1024, kids / 1024))
            sizes = [pss_rss_kb(p) for p in envs]
            p, r = sum(x[0] for x in sizes), sum(x[1] for x in sizes)
            zp = sum(pss_rss_kb(z)[0] for z in zygotes)
            pss[mode] = p + zp
            what = "PSS of %d warm Python environments (%s)" % (len(envs), mode)
            value = "%.0f MB (%.1f MB each) · RSS %.0f MB" % (p / 1024, p / 1024 / max(1, len(envs)), r / 1024)
            if mode == "fork":
                value += " · fork server PSS %.1f MB" % (zp / 1024)
                row("memory", what, value)
            else:
                ratio = pss["fork"] / max(1, pss["exec"])
                row("memory", what, value)
                row("memory", "fork PSS (environments + fork server) / exec PSS", "%.2f×" % ratio, "≤ 0.5×", ok(ratio <= 0.5))
        finally:
            srv.stop()


def bench_scale(n_functions, n_events):
    srv = Server()
    try:
        lam = srv.client()
        code = zip_of({"handler.py": TRIVIAL})
        t = time.perf_counter()
        for i in range(n_functions):
            lam.create_function(FunctionName="scale%04d" % i, Runtime="python3.11", Handler="handler.handler", Role=ROLE, Code={"ZipFile": code})
        dt = time.perf_counter() - t
        row("scale", "create %d functions (boto3, sequential)" % n_functions, "%.2f s (%.2f ms each)" % (dt, dt * 1000 / n_functions))
        t = time.perf_counter()
        pages = 0
        names = []
        for page in lam.get_paginator("list_functions").paginate():
            pages += 1
            names.extend(f["FunctionName"] for f in page["Functions"])
        dt = time.perf_counter() - t
        row("scale", "ListFunctions, all pages", "%.3f s, %d pages, %d functions" % (dt, pages, len(names)), "all %d" % n_functions, ok(len(set(names)) == n_functions))

        out = os.path.join(srv.dir, "events.log")
        events_code = zip_of({"handler.py": (
            "import os\n"
            "_fd = os.open(%r, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)\n"
            "def handler(event, context):\n"
            "    os.write(_fd, (event['id'] + '\\n').encode())\n" % out)})
        lam.create_function(FunctionName="events", Runtime="python3.11", Handler="handler.handler", Role=ROLE, Code={"ZipFile": events_code})
        t = time.perf_counter()
        q = client_latency(srv.addr, INVOKE % "events", n_events, body='{"id":"ev-@"}', headers="X-Amz-Invocation-Type: Event\r\n")
        dt_queue = time.perf_counter() - t
        deadline = time.time() + 600
        while time.time() < deadline:
            pending = srv.health()["pending_events"]
            if pending == 0:
                break
            time.sleep(0.2)
        dt_all = time.perf_counter() - t
        time.sleep(0.5)
        ids = open(out).read().split() if os.path.exists(out) else []
        expected = {"ev-%d" % i for i in range(n_events)}
        uniq = set(ids)
        lost = len(expected - uniq)
        dup = len(ids) - len(uniq)
        row("scale", "queue %d Event invokes" % n_events,
            "202 p50 %s · p99 %s; queued in %.2f s, all ran in %.2f s (%.0f/s)" % (ms(pct(q, 50)), ms(pct(q, 99)), dt_queue, dt_all, n_events / dt_all))
        row("scale", "Events lost / run twice", "%d lost / %d twice (%d lines)" % (lost, dup, len(ids)), "0 / 0", ok(lost == 0 and dup == 0 and len(ids) == n_events))
    finally:
        srv.stop()


def docker_available():
    try:
        out = subprocess.run(["docker", "image", "inspect", DOCKER_IMAGE], capture_output=True, timeout=20)
        return out.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def bench_docker(n, reps, spare=False):
    """Docker executor: cold starts (a new function each time, and the first invoke after the
    container's TTL expired) and warm latency, next to the seed's figures. `spare`: with
    --lambda-docker-spare (the default: blank spares, containers of the image started ahead
    for no function, which a cold start takes); else with `--lambda-docker-spare false`."""
    na = "n/a (docker executor not available)"
    section = "docker, --lambda-docker-spare" if spare else "docker"
    if not docker_available():
        row(section, "warm / cold", na + ": no image %s (bash images/build.sh)" % DOCKER_IMAGE)
        return
    args = ["--lambda-executor", "docker", "--lambda-runtime-image", "python3.11=" + DOCKER_IMAGE, "--lambda-container-ttl", "1"]
    args += ["--lambda-docker-spare", "true" if spare else "false"]
    srv = Server(*args, env={"RUST_LOG": "info,ruststack::engine::sandbox::docker=debug"})
    try:
        code = zip_of({"handler.py": TRIVIAL})
        try:
            create_first, after_ttl = cold_starts(srv, code, "dock", reps)
        except Exception as e:  # noqa: BLE001 - reported, not raised
            row(section, "warm / cold", "%s: %s" % (na, str(e)[:200]))
            return
        steps = [line for line in srv.logs().splitlines() if "container started" in line]
        create_ms = [int(x.split("create_ms=")[1].split()[0]) for x in steps if "create_ms=" in x]
        start_ms = [int(x.split("start_ms=")[1].split()[0]) for x in steps if "start_ms=" in x]
        m = statistics.median(create_first)
        row(section, "CreateFunction → first response (seed: 1.2 s on an M1)",
            "median %s · min %s · max %s (n=%d)" % (ms(m), ms(min(create_first)), ms(max(create_first)), reps),
            "≤ 100 ms (issue #16)", ok(m <= 0.1))
        m = statistics.median(after_ttl)
        row(section, "first invoke after TTL expiry (container removed)",
            "median %s · min %s · max %s (n=%d)" % (ms(m), ms(min(after_ttl)), ms(max(after_ttl)), reps),
            "≤ 100 ms (issue #16)", ok(m <= 0.1))
        if create_ms and start_ms:
            row(section, "of which: container create / start (engine calls, median)",
                "%d ms / %d ms" % (statistics.median(create_ms), statistics.median(start_ms)))
        takes = [line for line in srv.logs().splitlines() if "blank spare taken" in line]
        take_ms = [int(x.split("take_ms=")[1].split()[0]) for x in takes if "take_ms=" in x]
        if take_ms:
            made = [line for line in srv.logs().splitlines() if "blank spare started" in line]
            row(section, "of which: taking a blank spare (link code, orders; median) / cold starts that took one",
                "%d ms / %d of %d" % (statistics.median(take_ms), len(take_ms), 2 * reps))
            bc = [int(x.split("create_ms=")[1].split()[0]) for x in made if "create_ms=" in x]
            bs = [int(x.split("start_ms=")[1].split()[0]) for x in made if "start_ms=" in x]
            if bc and bs:
                row(section, "blank spares made ahead: create / start (off the cold path, median)",
                    "%d ms / %d ms" % (statistics.median(bc), statistics.median(bs)))
        path = INVOKE % "dock0"
        client_latency(srv.addr, path, 50)
        lat = client_latency(srv.addr, path, n)
        row(section, "warm raw keep-alive HTTP (seed: 45 ms on an M1)", lat_summary(lat), "p50 ≤ 1 ms", ok(pct(lat, 50) <= 0.001))
        [b] = boto3_latency([(srv.endpoint, "dock0")], min(n, 500))
        row(section, "warm boto3", lat_summary(b))
    finally:
        srv.stop()


HOT_APP = "VERSION = %r\ndef handler(event, context):\n    return {'version': VERSION}\n"


def log_time(line):
    """The UTC timestamp a server log line starts with, as epoch seconds."""
    import datetime
    stamp = line.split()[0].rstrip("Z")
    return datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc).timestamp()


def bench_hotreload(reps):
    """Hot reload: a real write into the function's code directory → the first invoke that
    answers with the new code, in a tight invoke loop (the issue's bound: 1 s), for the
    subprocess and docker executors. Also: where the time goes (write → the watcher's report
    after its 100 ms quiet period → the replacement started ahead is ready), and what an
    invoke made 1.5 s after the write costs (the replacement is ready by then)."""
    kinds = [("subprocess", ())]
    if docker_available():
        kinds.append(("docker", ("--lambda-executor", "docker", "--lambda-runtime-image", "python3.11=" + DOCKER_IMAGE)))
    else:
        row("hotreload", "docker", "n/a (docker executor not available): no image %s" % DOCKER_IMAGE)
    for kind, args in kinds:
        srv = Server(*args, env={"RUST_LOG": "info,ruststack::engine::pool=debug"})
        d = tempfile.mkdtemp(prefix="ruststack-bench-hot-")
        try:
            app = os.path.join(d, "app.py")
            with open(app, "w") as f:
                f.write(HOT_APP % "v0")
            name = "hot-" + kind
            status, data = http_call(srv.port, "POST", "/2015-03-31/functions", json.dumps({
                "FunctionName": name, "Runtime": "python3.11", "Handler": "app.handler", "Role": ROLE,
                "Code": {"S3Bucket": "hot-reload", "S3Key": d}}).encode(), {"Content-Type": "application/json"})
            if status != 201:
                row("hotreload", kind, "n/a: CreateFunction %s %s" % (status, data[:200]))
                continue
            invoke_raw(srv.port, name)
            loop, fired, ready, later = [], [], [], []
            version = 0
            for i in range(reps):
                for mode in ("loop", "later"):
                    version += 1
                    want = "v%d" % version
                    time.sleep(0.5)  # past the quiet period: each write is a burst of its own
                    t0, w0 = time.monotonic(), time.time()
                    with open(app, "w") as f:
                        f.write(HOT_APP % want)
                    if mode == "later":
                        time.sleep(1.5)
                        t1 = time.monotonic()
                        out = json.loads(invoke_raw(srv.port, name))
                        later.append(time.monotonic() - t1)
                        if out.get("version") != want:
                            later[-1] = float("nan")
                        continue
                    deadline = t0 + 20
                    while time.monotonic() < deadline:
                        if json.loads(invoke_raw(srv.port, name)).get("version") == want:
                            loop.append(time.monotonic() - t0)
                            break
                    # Where the time went, from the server's log (the last report and replacement).
                    lines = srv.logs().splitlines()
                    fire = [log_time(x) for x in lines if "hot reload: code changed" in x]
                    up = [log_time(x) for x in lines if "replacement ready" in x]
                    if fire and fire[-1] >= w0:
                        fired.append(fire[-1] - w0)
                        if up and up[-1] >= fire[-1]:
                            ready.append(up[-1] - fire[-1])
            if loop:
                m = statistics.median(loop)
                row("hotreload", "%s: write → first invoke with the new code (tight invoke loop)" % kind,
                    "median %s · max %s (n=%d)" % (ms(m), ms(max(loop)), len(loop)), "< 1 s", ok(max(loop) < 1.0))
            if fired:
                row("hotreload", "%s: of which write → change reported (100 ms quiet period)" % kind,
                    "median %s" % ms(statistics.median(fired)))
            if ready:
                row("hotreload", "%s: of which report → replacement ready (started ahead)" % kind,
                    "median %s" % ms(statistics.median(ready)))
            spared = srv.logs().count("replacement from a spare container")
            if kind == "docker":
                row("hotreload", "%s: replacements let go from a held spare (no create + start)" % kind,
                    "%d of %d edits" % (spared, version))
            if later:
                row("hotreload", "%s: an invoke 1.5 s after the write (replacement ready by then)" % kind,
                    "median %s · max %s (n=%d)" % (ms(statistics.median(later)), ms(max(later)), len(later)))
        finally:
            srv.stop()
            shutil.rmtree(d, ignore_errors=True)


def ready_once(args=()):
    """exec → first 200 from /_ruststack/health (a tight poll: connect, GET, read), in seconds."""
    d = tempfile.mkdtemp(prefix="ruststack-ready-")
    port = free_port()
    req = b"GET /_ruststack/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    logf = open(os.path.join(d, "server.log"), "wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen([BIN, "--port", str(port), "--data-dir", d, *args], stdout=logf, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        while time.perf_counter() - t0 < 30:
            if proc.poll() is not None:
                raise RuntimeError("ruststack exited early")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(req)
                    data = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                if data.startswith(b"HTTP/1.1 200"):
                    return time.perf_counter() - t0
            except OSError:
                time.sleep(0.0005)
        raise RuntimeError("no health answer in 30 s")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        logf.close()
        shutil.rmtree(d, ignore_errors=True)


def bench_ready(reps):
    """Server start: exec → first successful health answer, fresh data dir each time."""
    for label, args in (("subprocess executor", ("--lambda-executor", "subprocess")), ("default executor (auto)", ())):
        samples = sorted(ready_once(args) for _ in range(reps))
        med = statistics.median(samples)
        row("ready", "exec → first health 200, %s (median of %d, min %s, max %s)" % (label, reps, ms(samples[0]), ms(samples[-1])),
            ms(med), "≤ 30 ms", ok(med <= 0.030))


def bench_peer(n, ours):
    if not os.path.exists(CARGO_LAMBDA):
        row("peer", "cargo lambda watch", "n/a (cargo-lambda not installed: pip install cargo-lambda)")
        return
    proj = tempfile.mkdtemp(prefix="bench-peer-")
    port = free_port()
    procs = []
    try:
        # cargo lambda watch needs a Cargo project to read metadata from, even with --only-lambda-apis.
        os.makedirs(os.path.join(proj, "src"))
        with open(os.path.join(proj, "Cargo.toml"), "w") as f:
            f.write('[package]\nname = "peer"\nversion = "0.1.0"\nedition = "2021"\n')
        with open(os.path.join(proj, "src", "main.rs"), "w") as f:
            f.write("fn main() {}\n")
        with open(os.path.join(proj, "handler.py"), "w") as f:
            f.write(TRIVIAL)
        plog = open(os.path.join(proj, "watch.log"), "wb")
        procs.append(subprocess.Popen([CARGO_LAMBDA, "lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", str(port)],
                                      cwd=proj, stdout=plog, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        env = dict(os.environ, AWS_LAMBDA_RUNTIME_API="127.0.0.1:%d/.rt" % port, AWS_LAMBDA_FUNCTION_NAME="_")
        procs.append(subprocess.Popen([real_python(), os.path.join(ROOT, "bench", "peer_runtime.py"), "handler.handler"],
                                      cwd=proj, env=env, stdout=plog, stderr=subprocess.STDOUT, start_new_session=True))
        addr = "127.0.0.1:%d" % port
        path = INVOKE % "_"
        client_latency(addr, path, 5)
        lat = client_latency(addr, path, n)
        p50 = pct(lat, 50)
        row("peer", "cargo lambda watch --only-lambda-apis, raw keep-alive HTTP", lat_summary(lat))
        [b] = boto3_latency([("http://" + addr, "_")], n)
        row("peer", "cargo lambda watch --only-lambda-apis, boto3", lat_summary(b))
        if ours:
            row("peer", "warm p50 raw: cargo-lambda / RustStack", "%s / %s = %.1f×" % (ms(p50), ms(ours[0]), p50 / ours[0]))
            row("peer", "warm p50 boto3: cargo-lambda / RustStack", "%s / %s = %.1f×" % (ms(pct(b, 50)), ms(ours[1]), pct(b, 50) / ours[1]))
    except Exception as e:  # noqa: BLE001 - reported, not raised
        row("peer", "cargo lambda watch", "failed: %s" % str(e)[:300])
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()
        shutil.rmtree(proj, ignore_errors=True)


RIE_VERSION = "1.170.0"  # aws-sam-cli wheel the emulator comes from (bench/run.sh installs it)
RIE = os.environ.get("BENCH_RIE", os.path.join(ROOT, "target", "rie", RIE_VERSION, "aws-lambda-rie-x86_64"))


def awslambdaric_python():
    """An interpreter that can `import awslambdaric` (the bench venv's), or None."""
    ok_ = subprocess.run([sys.executable, "-c", "import awslambdaric"], capture_output=True).returncode == 0
    return sys.executable if ok_ else None


class Rie:
    """AWS's Runtime Interface Emulator on the host, running `python -m awslambdaric` in
    image mode, one function at POST /2015-03-31/functions/function/invocations."""

    def __init__(self, code_dir, python):
        self.port, api = free_port(), free_port()
        self.addr = "127.0.0.1:%d" % self.port
        ver = "%d.%d" % sys.version_info[:2]
        env = dict(os.environ, AWS_EXECUTION_ENV="AWS_Lambda_python" + ver, AWS_LAMBDA_FUNCTION_NAME="function",
                   AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128", LAMBDA_TASK_ROOT=code_dir, AWS_REGION="us-east-1",
                   AWS_DEFAULT_REGION="us-east-1", PYTHONPATH=code_dir)
        self.log = open(os.path.join(code_dir, "rie.log"), "wb")
        self.proc = subprocess.Popen([RIE, "--log-level", "error", "--runtime-interface-emulator-address", self.addr,
                                      "--runtime-api-address", "127.0.0.1:%d" % api,
                                      python, "-m", "awslambdaric", "handler.handler"],
                                     cwd=code_dir, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("RIE exited early (see its log)")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.005)
        raise RuntimeError("RIE did not listen")

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait()
        self.log.close()


RIE_PATH = "/2015-03-31/functions/function/invocations"


def bench_rie(n, reps):
    """RIE + awslambdaric against RustStack (python on the bundled bootstrap, and
    provided.al2023 running the same awslambdaric), same raw keep-alive client, same handler,
    all driven sequentially (RIE serves one invocation at a time), their warm latency in
    alternating rounds."""
    if not os.path.exists(RIE):
        row("RIE", "AWS Lambda RIE", "n/a (not installed: bench/run.sh fetches it from aws-sam-cli==%s)" % RIE_VERSION)
        return
    py = awslambdaric_python()
    if not py:
        row("RIE", "AWS Lambda RIE", "n/a (awslambdaric is not importable: pip install -r bench/requirements.txt)")
        return
    code = tempfile.mkdtemp(prefix="bench-rie-")
    with open(os.path.join(code, "handler.py"), "w") as f:
        f.write(TRIVIAL)
    ver = "%d.%d" % sys.version_info[:2]
    srv = Server()
    try:
        # RIE: cold = the first invoke after it listens (it starts the runtime on that invoke).
        colds = []
        for _ in range(reps):
            rie = Rie(code, py)
            try:
                t = time.perf_counter()
                st, _ = http_call(rie.port, "POST", RIE_PATH, b"{}")
                colds.append(time.perf_counter() - t)
                if st != 200:
                    raise RuntimeError("RIE invoke: %s" % st)
            finally:
                rie.stop()
        rie_cold = statistics.median(colds)
        # RustStack, the same handler: python on the bundled bootstrap, and provided.al2023
        # running awslambdaric (the same client code on both sides).
        boot = "#!/bin/sh\nexec %s -m awslambdaric handler.handler\n" % py
        zips = {"python": (zip_of({"handler.py": TRIVIAL}), "python" + ver),
                "provided": (zip_bootstrap({"handler.py": TRIVIAL}, boot), "provided.al2023")}
        firsts = {}
        for label, (z, runtime) in zips.items():
            firsts[label] = []
            for i in range(reps):
                name = "rie-%s-%d" % (label, i)
                create_raw(srv.port, name, z, runtime=runtime)
                t = time.perf_counter()
                invoke_raw(srv.port, name)
                firsts[label].append(time.perf_counter() - t)
        # Warm latency side by side: RIE and each RustStack function in alternating rounds,
        # so all of them see the same machine load.
        rie = Rie(code, py)
        try:
            http_call(rie.port, "POST", RIE_PATH, b"{}")
            targets = [("rie", rie.addr, RIE_PATH)] + [(label, srv.addr, INVOKE % ("rie-%s-0" % label)) for label in zips]
            for _, addr, path in targets:
                client_latency(addr, path, 200)  # warm-up
            lats = {label: [] for label, _, _ in targets}
            rounds = 10
            for _ in range(rounds):
                for label, addr, path in targets:
                    lats[label] += client_latency(addr, path, max(1, n // rounds))
        finally:
            rie.stop()
        rie_lat = lats["rie"]
        row("RIE", "RIE %s (aws-sam-cli) + awslambdaric, python%s image mode: raw keep-alive HTTP" % (RIE_VERSION, ver),
            lat_summary(rie_lat) + " · load %s" % loadavg())
        row("RIE", "RIE: first invoke after start (median of %d)" % reps, ms(rie_cold))
        ours = {label: (lats[label], statistics.median(firsts[label])) for label in zips}
        for label, what in (("python", "python%s, bundled bootstrap" % ver), ("provided", "provided.al2023 + awslambdaric")):
            lat, first = ours[label]
            row("RIE", "RustStack %s: raw keep-alive HTTP" % what, lat_summary(lat))
            row("RIE", "RustStack %s: first invoke after CreateFunction (median of %d)" % (what, reps), ms(first))
            target = "≥ 3×" if label == "python" else ""
            ratio = pct(rie_lat, 50) / pct(lat, 50)
            row("RIE", "warm p50: RIE / RustStack %s" % what, "%s / %s = %.1f×" % (ms(pct(rie_lat, 50)), ms(pct(lat, 50)), ratio),
                target, ok(ratio >= 3) if target else "")
            row("RIE", "warm p99: RIE / RustStack %s" % what,
                "%s / %s = %.1f×" % (ms(pct(rie_lat, 99)), ms(pct(lat, 99)), pct(rie_lat, 99) / pct(lat, 99)))
            row("RIE", "cold first invoke: RIE / RustStack %s" % what, "%s / %s = %.1f×" % (ms(rie_cold), ms(first), rie_cold / first))
    except Exception as e:  # noqa: BLE001 - reported, not raised
        row("RIE", "AWS Lambda RIE", "failed: %s" % str(e)[:300])
    finally:
        srv.stop()
        shutil.rmtree(code, ignore_errors=True)


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    py = subprocess.run([real_python(), "-V"], capture_output=True, text=True).stdout.strip()
    return "%d CPUs (%s), %d MB RAM, %s, %s" % (os.cpu_count(), cpu, mem, os.uname().release, py)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="sequential warm invokes per latency figure")
    ap.add_argument("--cold-reps", type=int, default=15)
    ap.add_argument("--secs", type=float, default=3.0, help="seconds per throughput figure")
    ap.add_argument("--envs", type=int, default=100)
    ap.add_argument("--functions", type=int, default=1000)
    ap.add_argument("--events", type=int, default=10000)
    ap.add_argument("--docker-reps", type=int, default=7, help="docker cold starts of each kind")
    ap.add_argument("--ready-reps", type=int, default=15, help="server starts timed (exec → health)")
    ap.add_argument("--rie-n", type=int, default=2000, help="sequential warm invokes through RIE and its RustStack rows")
    ap.add_argument("--rie-reps", type=int, default=5, help="cold first invokes of each RIE-section kind")
    ap.add_argument("--hot-reps", type=int, default=5, help="hot-reload edits timed per executor and kind")
    ap.add_argument("--peer-n", type=int, default=200, help="invokes through the peer (it is slow)")
    ap.add_argument("--bin", help="the ruststack binary measured (default: $RUSTSTACK_BIN or the release build)")
    ap.add_argument("--vs", metavar="BIN", help="another ruststack binary: the 'vs' section measures warm latency of both, alternating")
    ap.add_argument("--only", default="", help="comma-separated sections: ready,warm,vs,updates,cold,throughput,memory,scale,docker,hotreload,peer,rie")
    args = ap.parse_args()
    global BIN
    BIN = args.bin or BIN
    only = set(filter(None, args.only.split(",")))
    want = lambda s: not only or s in only  # noqa: E731

    start_load = loadavg()
    log("machine: " + machine())
    log("load average at start: " + start_load)
    ours = None
    if want("ready"):
        bench_ready(args.ready_reps)
    if want("warm") or want("peer"):
        ours = bench_warm(args.n)
    if args.vs and want("vs"):
        bench_warm_vs(args.n, args.vs)
    if want("updates"):
        bench_updates(args.n)
    if want("cold"):
        bench_cold(args.cold_reps)
    if want("throughput"):
        bench_throughput(args.secs)
    if want("memory"):
        bench_memory(args.envs)
    if want("scale"):
        bench_scale(args.functions, args.events)
    if want("docker"):
        bench_docker(min(args.n, 1000), args.docker_reps)
        bench_docker(min(args.n, 1000), args.docker_reps, spare=True)
    if want("hotreload"):
        bench_hotreload(args.hot_reps)
    if want("peer"):
        bench_peer(args.peer_n, ours)
    if want("rie"):
        bench_rie(args.rie_n, args.rie_reps)

    print()
    print("RustStack Lambda benchmark · %s" % time.strftime("%Y-%m-%d %H:%M"))
    print("machine: " + machine())
    print("load average (1/5/15 min): start %s · end %s" % (start_load, loadavg()))
    print()
    print("| section | measurement | result | target | |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| %s |" % " | ".join(r))


if __name__ == "__main__":
    main()
