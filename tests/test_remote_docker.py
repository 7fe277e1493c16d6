"""The Docker executor against an engine it cannot share files with: the local engine reached
over TCP (a TCP→unix proxy this module starts, written in asyncio here so no socat is needed),
with `--lambda-code-transfer upload`, the bridge network and `--lambda-advertise-host` set to
the bridge gateway. The docker suite's core cases run unchanged, plus: no host path is
mounted, and each protection of the Runtime API the README claims. Two more servers reach the
same engine through a TLS proxy that demands a client certificate (DOCKER_TLS_VERIFY) and
through an sshd of the test's own (DOCKER_HOST=ssh://).

Opt out explicitly with RUSTSTACK_SKIP_DOCKER=1; a missing engine or image is a failure."""
import asyncio
import getpass
import ipaddress
import json
import os
import re
import socket
import ssl
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
import uuid

import pytest

if os.environ.get("RUSTSTACK_SKIP_DOCKER") == "1":
    pytest.skip("RUSTSTACK_SKIP_DOCKER=1: Docker tests opted out", allow_module_level=True)

from conftest import Server, create_py_function, free_port, invoke, make_zip, unique, wait_for  # noqa: E402
from test_log_fidelity import check_order  # noqa: E402
from test_docker import (MAP, PROBE, SHELL_BOOTSTRAP, baked_image, docker, engine_and_image,  # noqa: E402,F401
                         fn_containers, in_container)

DOCKER_SOCK = "/var/run/docker.sock"


class SocketProxy:
    """Exposes a unix socket on 127.0.0.1:<port>, byte for byte, both directions, with
    half-closes passed on (docker attach relies on them). Counts the connections it took."""

    def __init__(self, path, ssl_context=None):
        self.path = path
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl_context))
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10), "the socket proxy did not start"

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            up_r, up_w = await asyncio.open_unix_connection(self.path)
        except OSError:
            writer.close()
            return

        async def pipe(r, w):
            try:
                while True:
                    data = await r.read(1 << 16)
                    if not data:
                        break
                    w.write(data)
                    await w.drain()
                if w.can_write_eof():
                    w.write_eof()
                else:  # TLS has no half-close
                    w.close()
            except (ConnectionError, OSError):
                w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        writer.close()
        up_w.close()

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def bridge_gateway():
    """The default bridge's gateway: IPAM's Gateway, else this machine's address inside the
    bridge's subnet (engines that record only the subnet)."""
    cfg = json.loads(docker("network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}").stdout) or []
    for c in cfg:
        if c.get("Gateway") and ":" not in c["Gateway"]:
            return c["Gateway"]
    nets = [ipaddress.ip_network(c["Subnet"]) for c in cfg if c.get("Subnet") and ":" not in c["Subnet"]]
    addrs = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout
    for m in re.finditer(r"inet (\d+\.\d+\.\d+\.\d+)/", addrs):
        ip = ipaddress.ip_address(m.group(1))
        if any(ip in n for n in nets):
            return str(ip)
    pytest.fail(f"no local address on the bridge network: {cfg}")


def listening_addresses(pid):
    """The (ip, port) pairs process `pid` listens on over TCP, from its socket fds and
    /proc/net/tcp{,6}."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = set()
    for table, v6 in (("tcp", False), ("tcp6", True)):
        with open(f"/proc/{pid}/net/{table}") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                    continue
                hexip, hexport = cols[1].split(":")
                raw = bytes.fromhex(hexip)
                # The kernel prints each 32-bit word of the address in host (little-endian) order.
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                out.add((str(ipaddress.ip_address(raw)), int(hexport, 16)))
    return out


@pytest.fixture(scope="module")
def proxy():
    p = SocketProxy(DOCKER_SOCK)
    yield p
    p.close()


@pytest.fixture(scope="module")
def gateway():
    return bridge_gateway()


@pytest.fixture(scope="module")
def rserver(proxy, gateway):
    env = {"DOCKER_HOST": f"tcp://127.0.0.1:{proxy.port}", "RUSTSTACK_LAMBDA_CODE_TRANSFER": "upload"}
    s = Server("--lambda-executor", "docker", *MAP, "--lambda-network", "bridge",
               "--lambda-advertise-host", gateway, env=env)
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def rlam(rserver):
    return rserver.client("lambda")


def post(url, body=b"{}", timeout=10):
    """POST from this test process (the host): (status, decoded JSON body or None)."""
    req = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def get(url, timeout=10):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


PROBE_HEALTH = PROBE + (
    "\nimport urllib.request\n_probe = handler\n"
    "def handler(e, c):\n"
    "    out = _probe(e, c)\n"
    "    with urllib.request.urlopen(os.environ['AWS_ENDPOINT_URL'] + '/_ruststack/health', timeout=5) as r:\n"
    "        out['health'] = json.loads(r.read())['status']\n"
    "    out['request_id'] = c.aws_request_id\n"
    "    return out\n")


def test_engine_is_reached_over_tcp_and_the_log_says_so(rlam, rserver, proxy):
    name = create_py_function(rlam, PROBE)
    r, out = invoke(rlam, name, decode=True)
    assert "FunctionError" not in r, out
    assert proxy.connections > 0
    log = rserver.logs()
    assert f"docker=tcp://127.0.0.1:{proxy.port}" in log, log
    assert "code_transfer=Upload" in log and "local=true" in log, log


def test_invoke_runs_in_a_container_with_uploaded_code(rlam, rserver, gateway):
    name = create_py_function(rlam, PROBE_HEALTH, MemorySize=256, Environment={"Variables": {"MY_VAR": "v"}})
    r, out = invoke(rlam, name, {"k": 1}, LogType="Tail", decode=True)
    assert "FunctionError" not in r, out
    assert in_container(out) and out["event"] == {"k": 1}
    env = out["env"]
    assert env["LAMBDA_TASK_ROOT"] == "/var/task" and out["cwd"] == "/var/task"
    assert env["_HANDLER"] == "app.handler" and env["MY_VAR"] == "v"
    # Containers reach RustStack at the advertised host, for the Runtime API and the service.
    host, port = env["AWS_LAMBDA_RUNTIME_API"].split(":")
    assert host == gateway and int(port) > 0
    assert env["AWS_ENDPOINT_URL"] == f"http://{gateway}:{rserver.port}"
    assert out["health"] == "running"
    # The uploaded copy is as read-only as the mount it replaces.
    assert out["task_writable"] is False
    assert out["cap_eff"] == "0000000000000000"


def test_no_host_path_is_mounted(rlam):
    name = create_py_function(rlam, PROBE)
    layer = rlam.publish_layer_version(LayerName=unique("lib"), Content={"ZipFile": make_zip({
        "python/mylib.py": "WHO = 'layer'\n"})})["LayerVersionArn"]
    rlam.update_function_configuration(FunctionName=name, Layers=[layer])
    wait_for(lambda: rlam.get_function(FunctionName=name)["Configuration"]["LastUpdateStatus"] == "Successful",
             30, "the update to finish")
    r, out = invoke(rlam, name, decode=True)
    assert "FunctionError" not in r, out
    ids = fn_containers(name)
    assert len(ids) == 1
    info = json.loads(docker("inspect", ids[0]).stdout)[0]
    assert info["Mounts"] == [], info["Mounts"]
    assert not info["HostConfig"].get("Binds"), info["HostConfig"]
    assert not info["HostConfig"].get("Mounts"), info["HostConfig"]


def test_stdout_and_stderr_keep_their_order_through_attach(rlam, rserver):
    """No FIFO here: the uploaded stdio helper puts stderr onto stdout, so docker attach
    brings one stream, in the order written."""
    check_order(rlam, rserver.client("logs"))
    ids = [i for i in docker("ps", "-q", "--no-trunc", "--filter", "label=ruststack=1").stdout.split()
           if json.loads(docker("inspect", i).stdout)[0]["Config"]["Labels"].get("ruststack.server")
           == f"127.0.0.1:{rserver.port}"]
    assert ids
    info = json.loads(docker("inspect", ids[0]).stdout)[0]
    assert info["Path"] == "/var/ruststack/stdio" and info["Args"][:2] == ["", ""], (info["Path"], info["Args"])


def test_warm_reuse_keeps_the_container(rlam):
    name = create_py_function(rlam, PROBE)
    outs = [invoke(rlam, name, decode=True)[1] for _ in range(3)]
    assert len({o["token"] for o in outs}) == 1
    assert [o["count"] for o in outs] == [1, 2, 3]
    assert len(fn_containers(name)) == 1


def test_timeout_kills_and_recovers(rlam):
    src = PROBE + "\nimport time\n_probe = handler\ndef handler(e, c):\n    time.sleep(e.get('sleep', 0))\n    return _probe(e, c)\n"
    name = create_py_function(rlam, src, Timeout=1)
    _, before = invoke(rlam, name, decode=True)
    old = fn_containers(name)
    r, err = invoke(rlam, name, {"sleep": 5}, decode=True)
    assert r["FunctionError"] == "Unhandled" and err["errorType"] == "Sandbox.Timedout"
    wait_for(lambda: not set(old) & set(fn_containers(name)), 10, "the timed-out container to be removed")
    r2, after = invoke(rlam, name, decode=True)
    assert "FunctionError" not in r2
    assert after["token"] != before["token"] and after["count"] == 1


def test_layers_are_uploaded_to_opt(rlam):
    l1 = rlam.publish_layer_version(LayerName=unique("lib"), Content={"ZipFile": make_zip({
        "python/mylib.py": "WHO = 'layer one'\n", "python/onlyone.py": "X = 1\n",
        "bin/tool*": "#!/bin/sh\necho tool-one\n"})})["LayerVersionArn"]
    l2 = rlam.publish_layer_version(LayerName=unique("lib"), Content={"ZipFile": make_zip({
        "python/mylib.py": "WHO = 'layer two'\n"})})["LayerVersionArn"]
    src = ("import mylib, onlyone, os, subprocess\n"
           "def handler(e, c):\n"
           "    return {'who': mylib.WHO, 'file': mylib.__file__, 'x': onlyone.X,\n"
           "            'tool': subprocess.run(['tool'], capture_output=True, text=True).stdout.strip(),\n"
           "            'opt_writable': os.access('/opt/python', os.W_OK)}\n")
    name = create_py_function(rlam, src, Layers=[l1, l2])
    r, out = invoke(rlam, name, decode=True)
    assert "FunctionError" not in r, out
    assert out == {"who": "layer two", "file": "/opt/python/mylib.py", "x": 1, "tool": "tool-one",
                   "opt_writable": False}


def test_custom_runtime_bootstrap_keeps_its_exec_bit(rlam):
    name = unique("prov")
    rlam.create_function(FunctionName=name, Runtime="provided.al2023", Handler="my.handler",
                         Role="arn:aws:iam::000000000000:role/lambda",
                         Code={"ZipFile": make_zip({"bootstrap*": SHELL_BOOTSTRAP})})
    r, out = invoke(rlam, name, {"x": 1}, decode=True)
    assert "FunctionError" not in r, out
    assert out["echo"] == {"x": 1} and out["from"] == "/var/task/bootstrap"


def test_package_type_image(rlam, baked_image):
    name = unique("img")
    rlam.create_function(FunctionName=name, Role="arn:aws:iam::000000000000:role/lambda",
                         PackageType="Image", Code={"ImageUri": baked_image})
    r, out = invoke(rlam, name, {"a": 1}, decode=True)
    assert "FunctionError" not in r, out
    assert in_container(out) and out["event"] == {"a": 1}
    assert out["env"]["_HANDLER"] == "app.handler"
    # The stdio helper is uploaded into image functions too: nothing of the host is mounted.
    ids = fn_containers(name)
    assert len(ids) == 1
    assert json.loads(docker("inspect", ids[0]).stdout)[0]["Mounts"] == []


# --- What protects the Runtime API (README, "The Runtime API over a network") ---------------

def test_each_environment_has_its_own_port(rlam):
    a = create_py_function(rlam, PROBE)
    b = create_py_function(rlam, PROBE)
    api_a = invoke(rlam, a, decode=True)[1]["env"]["AWS_LAMBDA_RUNTIME_API"]
    api_b = invoke(rlam, b, decode=True)[1]["env"]["AWS_LAMBDA_RUNTIME_API"]
    assert api_a != api_b
    assert invoke(rlam, a, decode=True)[1]["env"]["AWS_LAMBDA_RUNTIME_API"] == api_a  # warm: same endpoint


def test_listeners_bind_the_advertised_address_never_all_interfaces(rlam, rserver, gateway):
    """The Runtime API listener of an environment and the service port for containers are
    bound to the advertised (local) address; nothing the server listens on is 0.0.0.0/::."""
    name = create_py_function(rlam, PROBE)
    _, out = invoke(rlam, name, decode=True)
    api_port = int(out["env"]["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)[1])
    addrs = listening_addresses(rserver.proc.pid)
    assert (gateway, api_port) in addrs, addrs
    assert (gateway, rserver.port) in addrs and ("127.0.0.1", rserver.port) in addrs, addrs
    assert not [a for a in addrs if ipaddress.ip_address(a[0]).is_unspecified], addrs
    # So the environment's port is not reachable on another local address.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", api_port), timeout=5).close()
    assert "ALL interfaces" not in rserver.logs()


def test_request_ids_are_random_uuids(rlam):
    name = create_py_function(rlam, PROBE_HEALTH)
    ids = [invoke(rlam, name, decode=True)[1]["request_id"] for _ in range(3)]
    assert len(set(ids)) == 3
    assert all(uuid.UUID(i).version == 4 for i in ids), ids


def test_a_source_other_than_the_container_is_refused(rlam):
    name = create_py_function(rlam, PROBE_HEALTH)
    _, out = invoke(rlam, name, decode=True)
    api = out["env"]["AWS_LAMBDA_RUNTIME_API"]
    # This test runs on the host: its connections come from the gateway, not the container.
    status, body = get(f"http://{api}/2018-06-01/runtime/invocation/next")
    assert status == 403 and body["errorType"] == "AccessDenied", body
    status, body = post(f"http://{api}/2018-06-01/runtime/invocation/{out['request_id']}/response", b'"forged"')
    assert status == 403, body
    status, body = post(f"http://{api}/2018-06-01/runtime/init/error", b'{"errorType": "x"}')
    assert status == 403, body
    # The environment is untouched: same container, next invocation served as usual.
    r, again = invoke(rlam, name, decode=True)
    assert "FunctionError" not in r and again["token"] == out["token"] and again["count"] == 2


# Y, while its invocation is in flight, invokes X with its request id and Runtime API; X tries
# to answer Y's invocation on its own endpoint and on Y's.
HIJACKER = """
import json, os, urllib.request, urllib.error

def _post(url):
    req = urllib.request.Request(url, data=b'"hijacked"', method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")

def handler(e, c):
    own = os.environ["AWS_LAMBDA_RUNTIME_API"]
    out = {}
    out["own"] = _post(f"http://{own}/2018-06-01/runtime/invocation/{e['id']}/response")
    out["theirs"] = _post(f"http://{e['api']}/2018-06-01/runtime/invocation/{e['id']}/response")
    return out
"""

VICTIM = """
import json, os, boto3

def handler(e, c):
    r = boto3.client("lambda").invoke(FunctionName=e["hijacker"], Payload=json.dumps(
        {"id": c.aws_request_id, "api": os.environ["AWS_LAMBDA_RUNTIME_API"]}))
    return {"mine": True, "hijacker": json.loads(r["Payload"].read())}
"""


def test_an_environment_cannot_answer_another_environments_invocation(rlam):
    x = create_py_function(rlam, HIJACKER, Timeout=30)
    y = create_py_function(rlam, VICTIM, Timeout=30)
    r, out = invoke(rlam, y, {"hijacker": x}, decode=True)
    assert "FunctionError" not in r, out
    # Y's own answer arrived, not X's forgery.
    assert out["mine"] is True
    own_status, own_body = out["hijacker"]["own"]
    assert own_status == 400 and own_body["errorType"] == "InvalidRequestID", out
    theirs_status, theirs_body = out["hijacker"]["theirs"]
    assert theirs_status == 403 and theirs_body["errorType"] == "AccessDenied", out


# --- DOCKER_TLS_VERIFY: the same engine behind a TLS proxy that demands a client certificate --

def make_certs(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as DOCKER_CERT_PATH
    expects them (ca.pem, cert.pem, key.pem), plus server-cert.pem / server-key.pem."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=ruststack-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, ext in (("server", ["subjectAltName=IP:127.0.0.1", "extendedKeyUsage=serverAuth"]),
                      ("client", ["extendedKeyUsage=clientAuth"])):
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write("\n".join(ext) + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
                "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                "-out", f"{name}-cert.pem", "-days", "1", "-extfile", f"{name}.ext")
    os.rename(os.path.join(d, "client-cert.pem"), os.path.join(d, "cert.pem"))
    os.rename(os.path.join(d, "client-key.pem"), os.path.join(d, "key.pem"))


def test_tls_engine_with_client_certificates():
    with tempfile.TemporaryDirectory() as d:
        make_certs(d)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(d, "server-cert.pem"), os.path.join(d, "server-key.pem"))
        ctx.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no connection
        ctx.load_verify_locations(os.path.join(d, "ca.pem"))
        tls = SocketProxy(DOCKER_SOCK, ssl_context=ctx)
        env = {"DOCKER_HOST": f"tcp://127.0.0.1:{tls.port}", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": d}
        s = Server("--lambda-executor", "docker", *MAP, env=env)
        try:
            lam = s.client("lambda")
            name = create_py_function(lam, PROBE)
            r, out = invoke(lam, name, decode=True)
            assert "FunctionError" not in r, out
            assert in_container(out)
            assert tls.connections > 0
            assert f"docker=tcp://127.0.0.1:{tls.port}" in s.logs()
        finally:
            s.cleanup()
        # https:// is TLS without DOCKER_TLS_VERIFY; the start already talks to the engine
        # (removal of an earlier run's containers), so no function is needed to see it work.
        env = {"DOCKER_HOST": f"https://127.0.0.1:{tls.port}", "DOCKER_CERT_PATH": d}
        before = tls.connections
        s = Server("--lambda-executor", "docker", *MAP, env=env)
        try:
            log = wait_for(lambda: "Docker engine" in s.logs() and s.logs(), 20, "the engine to be connected")
            assert f"docker=https://127.0.0.1:{tls.port}" in log and "connected to a local Docker engine" in log, log
            assert tls.connections > before
        finally:
            s.cleanup()
            tls.close()


# --- DOCKER_HOST=ssh://: bollard's ssh transport through the system ssh client ---------------

SSHD = "/usr/sbin/sshd"


def test_ssh_engine(tmp_path):
    """An sshd of the test's own on 127.0.0.1 (its own host key, config and authorized key);
    `ssh` on RustStack's PATH is a wrapper that adds the test's client config. The engine is
    remote as far as RustStack can tell, so code is uploaded."""
    if not os.path.exists(SSHD):
        pytest.fail(f"{SSHD} is missing: install openssh-server (tests/run.sh does)")
    d = str(tmp_path)
    for key in ("hostkey", "id"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(d, key)], check=True)
    os.rename(os.path.join(d, "id.pub"), os.path.join(d, "authorized_keys"))
    port = free_port()
    with open(os.path.join(d, "sshd_config"), "w") as f:
        f.write(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nAuthorizedKeysFile {d}/authorized_keys\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\nStrictModes no\nUsePAM no\n"
                f"PidFile {d}/sshd.pid\n")
    with open(os.path.join(d, "ssh_config"), "w") as f:
        f.write(f"Host 127.0.0.1\n  Port {port}\n  IdentityFile {d}/id\n"
                f"  UserKnownHostsFile {d}/known_hosts\n  StrictHostKeyChecking accept-new\n  BatchMode yes\n")
    os.makedirs(os.path.join(d, "bin"))
    wrapper = os.path.join(d, "bin", "ssh")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec /usr/bin/ssh -F {d}/ssh_config \"$@\"\n")
    os.chmod(wrapper, 0o755)
    os.makedirs("/run/sshd", exist_ok=True)  # Debian's sshd wants its privilege separation dir
    sshd = subprocess.Popen([SSHD, "-D", "-f", os.path.join(d, "sshd_config"), "-E", os.path.join(d, "sshd.log")])
    try:
        wait_for(lambda: port_open(port), 10, "sshd to listen")
        host = f"ssh://{getpass.getuser()}@127.0.0.1"  # the user from the URL, not from ssh_config
        env = {"DOCKER_HOST": host, "PATH": os.path.join(d, "bin") + os.pathsep + os.environ["PATH"]}
        s = Server("--lambda-executor", "docker", *MAP, "--lambda-advertise-host", "127.0.0.1", env=env)
        try:
            lam = s.client("lambda")
            name = create_py_function(lam, PROBE)
            outs = [invoke(lam, name, decode=True) for _ in range(2)]
            assert all("FunctionError" not in r for r, _ in outs), outs
            assert in_container(outs[0][1]) and [o["count"] for _, o in outs] == [1, 2]
            assert outs[0][1]["task_writable"] is False
            log = s.logs()
            assert f"docker={host}" in log and "local=false" in log and "code_transfer=Upload" in log, log
            with open(os.path.join(d, "sshd.log")) as f:
                assert "Accepted publickey" in f.read()
        finally:
            s.cleanup()
        # --lambda-code-transfer mount forces bind mounts even on a remote engine (one that
        # does see the same paths, as this one does).
        s = Server("--lambda-executor", "docker", *MAP, "--lambda-advertise-host", "127.0.0.1",
                   "--lambda-code-transfer", "mount", env=env)
        try:
            lam = s.client("lambda")
            name = create_py_function(lam, PROBE)
            r, out = invoke(lam, name, decode=True)
            assert "FunctionError" not in r and in_container(out), out
            log = s.logs()
            assert "local=false" in log and "code_transfer=Mount" in log, log
            ids = fn_containers(name)
            assert len(ids) == 1
            mounts = json.loads(docker("inspect", ids[0]).stdout)[0]["Mounts"]
            assert [m["Destination"] for m in mounts if m["Type"] == "bind"] == ["/var/task"], mounts
        finally:
            s.cleanup()
    finally:
        sshd.terminate()
        sshd.wait(10)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# --- --lambda-advertise-host that is not local, or not an address at all ---------------------

def test_a_foreign_advertise_host_binds_all_interfaces_only_with_a_loud_warning():
    s = Server("--lambda-executor", "docker", *MAP, "--lambda-advertise-host", "203.0.113.7")
    try:
        log = wait_for(lambda: "ALL interfaces" in s.logs() and s.logs(), 10, "the warning")
        assert "--lambda-advertise-host 203.0.113.7 is not an address of this machine" in log
        assert " WARN " in next(line for line in log.splitlines() if "ALL interfaces" in line)
        # The service port is not widened silently: the main listener keeps 127.0.0.1.
        assert "containers cannot reach AWS_ENDPOINT_URL (try --host 0.0.0.0)" in s.logs()
        assert not [a for a in listening_addresses(s.proc.pid)
                    if a[1] == s.port and ipaddress.ip_address(a[0]).is_unspecified]
    finally:
        s.cleanup()


def test_an_unspecified_advertise_host_is_refused_at_start(tmp_path):
    with pytest.raises(RuntimeError) as ei:
        Server("--lambda-executor", "docker", "--lambda-advertise-host", "0.0.0.0", data_dir=str(tmp_path))
    assert "containers cannot connect to an unspecified address" in str(ei.value)


# --- upload archives are a per-run cache -------------------------------------------------------

def test_upload_archives_of_an_earlier_run_are_removed_at_start(tmp_path):
    # What an earlier run cached, and a removal a crash cut short, are gone after the start.
    data = tmp_path / "data"
    (data / "upload").mkdir(parents=True)
    (data / "upload" / "0123456789abcdef.tar").write_bytes(b"x" * 4096)
    (data / "upload.old-deadbeef").mkdir()
    (data / "upload.old-deadbeef" / "fedcba9876543210.tar").write_bytes(b"y" * 4096)
    s = Server("--lambda-executor", "docker", *MAP, "--lambda-code-transfer", "upload", data_dir=str(data))
    try:
        wait_for(lambda: not (data / "upload").exists()
                 and not any(p.name.startswith("upload.old-") for p in data.iterdir()),
                 10, "the stale upload archives to be removed")
    finally:
        s.stop()
