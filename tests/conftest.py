"""Shared fixtures: every integration test drives the real `ruststack` binary
on an ephemeral port with real clients (boto3, the AWS CLI, awslambdaric)."""
import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import zipfile

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("RUSTSTACK_BIN", os.path.join(ROOT, "target", "debug", "ruststack"))

CREDS = dict(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One running `ruststack` process with its own data dir and port."""

    def __init__(self, *args, data_dir=None, env=None, port=None):
        self.owns_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="ruststack-test-")
        self.args = list(args)
        self.env = dict(os.environ)
        self.env.setdefault("RUST_LOG", "info")
        self.env.update(env or {})
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(self.data_dir, f"server-{self.port}.log")
        self.start()

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BIN, "--port", str(self.port), "--data-dir", self.data_dir, *self.args],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
            start_new_session=True,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ruststack exited early:\n{self.logs()}")
            # Ready means serving: the port is bound before the stores are opened (and the
            # start's checks logged), so a connect alone is too early.
            try:
                with urllib.request.urlopen(self.endpoint + "/_ruststack/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                time.sleep(0.02)
        raise RuntimeError(f"ruststack did not become ready in time:\n{self.logs()}")

    def logs(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def health(self):
        """GET /_ruststack/health, decoded."""
        with urllib.request.urlopen(self.endpoint + "/_ruststack/health", timeout=10) as r:
            return json.loads(r.read())

    def client(self, service, **config):
        cfg = Config(retries=config.pop("retries", {"max_attempts": 1, "mode": "standard"}),
                     read_timeout=config.pop("read_timeout", 120), **config)
        return boto3.client(service, endpoint_url=self.endpoint, config=cfg, **CREDS)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def kill(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        self.start()

    def cleanup(self):
        self.stop()
        if self.owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def srv():
    """A server of the module's own, shared by its tests (for modules whose tests must not
    see the session server's functions, queues or logs)."""
    s = Server()
    yield s
    s.cleanup()


@pytest.fixture
def fresh_server():
    """A server of the test's own, for tests that restart or kill it."""
    servers = []

    def make(*args, **kw):
        s = Server(*args, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.cleanup()


@pytest.fixture(scope="session")
def lam(server):
    return server.client("lambda")


@pytest.fixture(scope="session")
def s3(server):
    return server.client("s3")


def make_zip(files):
    """files: {name: str|bytes} -> zip bytes. A name ending in '*' is made executable."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            mode = 0o644
            if name.endswith("*"):
                name, mode = name[:-1], 0o755
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return buf.getvalue()


_counter = [0]


def unique(prefix="fn"):
    _counter[0] += 1
    return f"{prefix}-{os.getpid()}-{_counter[0]}-{int(time.time() * 1000) % 100000}"


def create_py_function(lam, code, name=None, handler="app.handler", runtime="python3.11", **kw):
    """Create a Python function from the source of app.py (or a {file: src} dict)."""
    name = name or unique()
    files = code if isinstance(code, dict) else {"app.py": code}
    lam.create_function(
        FunctionName=name, Runtime=runtime, Role="arn:aws:iam::000000000000:role/lambda",
        Handler=handler, Code={"ZipFile": make_zip(files)}, **kw)
    return name


def b64(s):
    return base64.b64encode(s if isinstance(s, bytes) else s.encode()).decode()


def expect_error(code, status, call, *args, **kw):
    """Calls an SDK operation that must fail with this AWS error code and HTTP status."""
    with pytest.raises(ClientError) as ei:
        call(*args, **kw)
    err = ei.value.response
    assert err["Error"]["Code"] == code, err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == status, err
    return err


def wait_for(pred, timeout=10.0, what="the condition", step=0.05):
    """Polls `pred` until it returns something truthy, and returns that. After `timeout`
    seconds it fails the test with an AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def invoke(lam, name, payload=None, decode=False, **kw):
    """A RequestResponse Invoke with `payload` as JSON ({} when None): (response, payload read
    back), the payload as raw bytes, or JSON-decoded (None when empty) with decode=True."""
    r = lam.invoke(FunctionName=name, Payload=json.dumps(payload if payload is not None else {}), **kw)
    body = r["Payload"].read()
    return r, (json.loads(body or b"null") if decode else body)


def http(server, method, path, body=None, headers=None, timeout=60):
    """A raw request to the server (no SDK validation in the way): (status, headers, body)."""
    req = urllib.request.Request(server.endpoint + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def is_fork_spare(pid):
    """Whether pid is a Python fork server's pre-forked spare: a forked child waiting, in a
    memory cgroup of its own named `spare-N`, for an environment to become. It is no
    environment (it runs nothing of a function's), so process counts leave it out."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return any(line.rstrip().rsplit("/", 1)[-1].startswith("spare-") for line in f)
    except OSError:
        return False
