"""Storage lifecycle against the real binary: code blobs and unpacked trees are freed with the
last record that uses them (also across kill -9 and restarts), code is unpacked before the
create answers, a full disk gets a clear error at create and does not stop the server, and
missing code is named at start and at invoke."""

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config

from conftest import CREDS, Server, expect_error, invoke, make_zip, unique, wait_for

ROLE = "arn:aws:iam::000000000000:role/lambda"
ECHO = "def handler(e, c):\n    return {'echo': e}\n"
DIGEST = re.compile(r"^[0-9a-f]{64}$")


def storage(srv):
    with urllib.request.urlopen(srv.endpoint + "/_ruststack/storage", timeout=10) as r:
        assert r.status == 200
        return json.loads(r.read())


def on_disk(data_dir):
    """(blob digests, code dir digests, leftover temp names) under lambda/."""
    root = os.path.join(data_dir, "lambda")
    blobs = {n[:-4] for n in os.listdir(os.path.join(root, "blobs")) if n.endswith(".zip") and DIGEST.match(n[:-4])}
    code = {n for n in os.listdir(os.path.join(root, "code")) if DIGEST.match(n)}
    temps = [n for sub in ("blobs", "code") for n in os.listdir(os.path.join(root, sub)) if ".tmp-" in n]
    return blobs, code, temps


def referenced(data_dir):
    """Every digest the persisted records name (function versions, their layers, layer versions)."""
    refs = set()

    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k in ("code_sha_hex", "sha_hex") and isinstance(x, str) and x:
                    refs.add(x)
                else:
                    walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    root = os.path.join(data_dir, "lambda")
    for dirpath, _, files in os.walk(root):
        if os.path.basename(dirpath) in ("functions", "layers"):
            for f in files:
                if f.endswith(".json"):
                    with open(os.path.join(dirpath, f)) as fh:
                        walk(json.load(fh))
    return refs


def code_dir_of(data_dir, code_sha256):
    """Whether the unpacked tree of the code with this CodeSha256 (base64) is on disk."""
    sha_hex = base64.b64decode(code_sha256).hex()
    return os.path.isfile(os.path.join(data_dir, "lambda", "blobs", f"{sha_hex}.zip")) and \
        os.path.isdir(os.path.join(data_dir, "lambda", "code", sha_hex))


def exactly_referenced(data_dir):
    blobs, code, temps = on_disk(data_dir)
    refs = referenced(data_dir)
    return blobs == refs and code == refs and not temps


def tree_bytes(path):
    """Bytes of the files unpacked from the package (not the __pycache__ Python adds at run time)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        if "__pycache__" in dirpath.split(os.sep):
            continue
        for f in files:
            p = os.path.join(dirpath, f)
            if os.path.isfile(p) and not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def code_zip(tag, pad=0):
    files = {"app.py": ECHO + f"TAG = {tag!r}\n"}
    if pad:
        files["pad.bin"] = os.urandom(pad)
    return make_zip(files)


def create(lam, name, zip_bytes, **kw):
    return lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                               Code={"ZipFile": zip_bytes}, **kw)


@pytest.fixture(scope="module")
def slam(srv):
    return srv.client("lambda")


def test_churn_frees_exactly_what_is_unreferenced(srv, slam):
    lam = slam
    shared = code_zip("shared")
    layer_name = unique("churn-layer")
    keep = []
    deadline = time.monotonic() + 10  # the 10-second churn
    i = 0
    while time.monotonic() < deadline:
        i += 1
        name = unique("churn")
        out = create(lam, name, shared if i % 3 == 0 else code_zip(f"c{i}"))
        # Unpacked before the create answered.
        sha_hex = out["CodeSha256"]
        blobs, code, _ = on_disk(srv.data_dir)
        assert referenced(srv.data_dir) <= code, "code is unpacked at create"
        if i % 4 == 0:
            lam.publish_version(FunctionName=name)
            up = lam.update_function_code(FunctionName=name, ZipFile=code_zip(f"u{i}"))
            assert code_dir_of(srv.data_dir, up["CodeSha256"]), "UpdateFunctionCode unpacks before it answers"
        if i % 5 == 0:
            invoke(lam, name, {"i": i})  # an environment runs from the code dir
        used_layer = False
        if i % 6 == 0:
            lv = lam.publish_layer_version(LayerName=layer_name, Content={"ZipFile": make_zip({"python/l.py": f"L={i}\n"})})
            assert code_dir_of(srv.data_dir, lv["Content"]["CodeSha256"]), "PublishLayerVersion unpacks before it answers"
            if i % 12 == 0:
                # A function that uses the layer version keeps its code after the version is deleted.
                lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 20})
                lam.update_function_configuration(FunctionName=name, Layers=[lv["LayerVersionArn"]])
                used_layer = True
            lam.delete_layer_version(LayerName=layer_name, VersionNumber=lv["Version"])
        if i % 7 == 0 or used_layer:
            keep.append(name)
        else:
            lam.delete_function(FunctionName=name)
        assert sha_hex
    assert i > 10, f"only {i} creates in the churn"
    wait_for(lambda: exactly_referenced(srv.data_dir), timeout=15,
             what="the data dir to hold exactly the referenced blobs and code dirs")
    # The counters agree with the disk.
    blobs, code, _ = on_disk(srv.data_dir)
    st = storage(srv)
    root = os.path.join(srv.data_dir, "lambda")
    assert st["blobs"] == {"count": len(blobs),
                           "bytes": sum(os.path.getsize(os.path.join(root, "blobs", b + ".zip")) for b in blobs)}
    assert st["code"]["count"] == len(code)
    assert st["code"]["bytes"] == sum(tree_bytes(os.path.join(root, "code", c)) for c in code)
    assert st["damaged"] == []
    assert srv.health()["storage"]["blob_bytes"] == st["blobs"]["bytes"]

    srv.restart()
    assert exactly_referenced(srv.data_dir), "after a restart, still exactly the referenced ones"
    lam = srv.client("lambda")
    assert any(f.get("Layers") for f in lam.list_functions()["Functions"]), "a kept function uses a deleted layer version"
    for name in keep:
        r, body = invoke(lam, name, {"k": name})
        assert "FunctionError" not in r and json.loads(body) == {"echo": {"k": name}}, body


def test_deleting_a_version_frees_its_code(srv, slam):
    """DeleteFunction of one version frees the code only that version used; the code $LATEST
    and the other versions use stays."""
    lam = slam
    name = unique("versions")
    v1_zip, v2_zip = code_zip("ver1"), code_zip("ver2")
    create(lam, name, v1_zip)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 20})
    one = lam.publish_version(FunctionName=name)
    lam.update_function_code(FunctionName=name, ZipFile=v2_zip)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 20})
    two = lam.publish_version(FunctionName=name)
    assert code_dir_of(srv.data_dir, one["CodeSha256"]) and code_dir_of(srv.data_dir, two["CodeSha256"])
    # Version 2 shares its code with $LATEST: deleting it frees nothing.
    lam.delete_function(FunctionName=name, Qualifier=two["Version"])
    assert code_dir_of(srv.data_dir, two["CodeSha256"])
    # Version 1 was the last user of its code.
    lam.delete_function(FunctionName=name, Qualifier=one["Version"])
    gone = base64.b64decode(one["CodeSha256"]).hex()
    assert not os.path.exists(os.path.join(srv.data_dir, "lambda", "blobs", f"{gone}.zip"))
    assert not os.path.exists(os.path.join(srv.data_dir, "lambda", "code", gone))
    assert gone not in referenced(srv.data_dir)
    r, body = invoke(lam, name, {"v": 2})
    assert "FunctionError" not in r and json.loads(body) == {"echo": {"v": 2}}, body
    lam.delete_function(FunctionName=name)


def regional(srv, region):
    cfg = Config(retries={"max_attempts": 1, "mode": "standard"})
    return boto3.client("lambda", endpoint_url=srv.endpoint, config=cfg, **dict(CREDS, region_name=region))


def test_a_region_is_made_on_disk_by_its_first_write(fresh_server):
    """A region first named by a read or an invoke has nothing on disk and gets nothing made
    there (no disk work on the request's thread); its first write makes its directories, and
    a restart finds it."""
    srv = fresh_server()
    region_dir = os.path.join(srv.data_dir, "lambda", "regions", "ap-south-2")
    lam = regional(srv, "ap-south-2")
    assert lam.list_functions()["Functions"] == []
    expect_error("ResourceNotFoundException", 404, lam.get_function, FunctionName="not-here")
    expect_error("ResourceNotFoundException", 404, lam.invoke, FunctionName="not-here", Payload=b"{}")
    assert not os.path.exists(region_dir)
    create(lam, "made-here", code_zip("region"))
    assert os.path.isfile(os.path.join(region_dir, "functions", "made-here.json"))
    r, body = invoke(lam, "made-here", {"r": 1})
    assert json.loads(body) == {"echo": {"r": 1}}, body
    srv.restart()
    lam = regional(srv, "ap-south-2")
    assert [f["FunctionName"] for f in lam.list_functions()["Functions"]] == ["made-here"]
    r, body = invoke(lam, "made-here", {"r": 2})
    assert json.loads(body) == {"echo": {"r": 2}}, body


def test_storage_reports_s3_and_events(srv, slam):
    s3 = srv.client("s3")
    before = storage(srv)
    s3.create_bucket(Bucket="storage-report")
    s3.put_object(Bucket="storage-report", Key="k", Body=b"x" * 1000)
    after = storage(srv)
    assert after["s3"]["bytes"] == before["s3"]["bytes"] + 1000
    assert after["s3"]["objects"] == before["s3"]["objects"] + 1
    assert set(after) >= {"blobs", "code", "s3", "events", "total_bytes"}
    assert after["events"]["count"] == srv.health()["pending_events"]


def test_missing_blob_is_named_at_start_and_at_invoke(fresh_server):
    srv = fresh_server()
    lam = srv.client("lambda")
    name = unique("missing")
    z = code_zip("missing")
    sha = create(lam, name, z)["CodeSha256"]
    lam.publish_version(FunctionName=name)
    ok = unique("intact")
    create(lam, ok, code_zip("intact"))
    srv.stop()
    rec = json.load(open(os.path.join(srv.data_dir, "lambda", "functions", f"{name}.json")))
    sha_hex = rec["latest"]["code_sha_hex"]
    blob = os.path.join(srv.data_dir, "lambda", "blobs", f"{sha_hex}.zip")
    os.remove(blob)
    srv.start()
    logs = srv.logs()
    # Once per version that uses it ($LATEST and 1), each with function, version, digest and path.
    lines = [ln for ln in logs.splitlines() if f"the stored code blob {blob} is missing" in ln]
    assert len(lines) == 2, logs
    for version in ("$LATEST", "1"):
        want = f'function="{name}" version="{version}" digest="{sha_hex}" path={blob}'
        assert sum(want in ln for ln in lines) == 1, "\n".join(lines)
    assert storage(srv)["damaged"] == [sha_hex]
    lam = srv.client("lambda")
    err = expect_error("ServiceException", 500, lam.invoke, FunctionName=name, Payload=b"{}")
    assert err["Error"]["Message"] == (
        f"The stored code of function {name} version $LATEST (digest {sha_hex}) is missing or unusable: "
        f"the stored code blob {blob} is missing. Upload the code again (UpdateFunctionCode) to repair it.")
    err = expect_error("ServiceException", 500, lam.invoke, FunctionName=name, Qualifier="1", Payload=b"{}")
    assert "version 1 " in err["Error"]["Message"]
    # Others are untouched.
    r, body = invoke(lam, ok, {"a": 1})
    assert json.loads(body) == {"echo": {"a": 1}}
    # A re-upload of the same code repairs both versions.
    assert lam.update_function_code(FunctionName=name, ZipFile=z)["CodeSha256"] == sha
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 20})
    assert os.path.getsize(blob) == len(z)
    for q in ("$LATEST", "1"):
        r, body = invoke(lam, name, {"q": q}, Qualifier=q)
        assert "FunctionError" not in r and json.loads(body) == {"echo": {"q": q}}, body
    assert storage(srv)["damaged"] == []


def test_damaged_blob_and_missing_layer_blob_are_named_at_start_and_at_invoke(fresh_server):
    """A blob of the wrong size (damaged) and a layer version's missing blob: each logged once
    per version that uses it, each invoke of such a version refused with what is wrong, and a
    new upload of the same code (UpdateFunctionCode, PublishLayerVersion) repairs it."""
    srv = fresh_server()
    lam = srv.client("lambda")
    damaged, user = unique("damaged"), unique("layer-user")
    z = code_zip("damaged")
    create(lam, damaged, z)
    layer_name = unique("lost-layer")
    lz = make_zip({"python/lost.py": "VALUE = 'from the layer'\n"})
    lv = lam.publish_layer_version(LayerName=layer_name, Content={"ZipFile": lz})
    create(lam, user, make_zip({"app.py": "import lost\ndef handler(e, c):\n    return lost.VALUE\n"}),
           Layers=[lv["LayerVersionArn"]])
    srv.stop()
    sha = lambda name: json.load(open(os.path.join(srv.data_dir, "lambda", "functions", f"{name}.json")))["latest"]["code_sha_hex"]
    d_sha = sha(damaged)
    d_blob = os.path.join(srv.data_dir, "lambda", "blobs", f"{d_sha}.zip")
    with open(d_blob, "r+b") as f:
        f.truncate(len(z) // 2)
    l_sha = base64.b64decode(lv["Content"]["CodeSha256"]).hex()
    l_blob = os.path.join(srv.data_dir, "lambda", "blobs", f"{l_sha}.zip")
    os.remove(l_blob)
    srv.start()
    logs = srv.logs()
    bad = f"the stored code blob {d_blob} is damaged ({len(z) // 2} bytes, expected {len(z)})"
    lines = [ln for ln in logs.splitlines() if bad in ln]
    assert len(lines) == 1 and f'function="{damaged}" version="$LATEST" digest="{d_sha}" path={d_blob}' in lines[0], logs
    gone = f"the stored code blob {l_blob} is missing"
    lines = [ln for ln in logs.splitlines() if gone in ln]
    # The layer version itself, and the function version that uses it.
    assert len(lines) == 2, logs
    assert sum(f'kind="layer" function="{layer_name}" version="1" digest="{l_sha}"' in ln for ln in lines) == 1, lines
    assert sum(f'kind="function layer" function="{user}" version="$LATEST" digest="{l_sha}"' in ln for ln in lines) == 1, lines
    assert storage(srv)["damaged"] == sorted([d_sha, l_sha])

    lam = srv.client("lambda")
    err = expect_error("ServiceException", 500, lam.invoke, FunctionName=damaged, Payload=b"{}")
    assert err["Error"]["Message"] == (
        f"The stored code of function {damaged} version $LATEST (digest {d_sha}) is missing or unusable: "
        f"{bad}. Upload the code again (UpdateFunctionCode) to repair it."), err
    err = expect_error("ServiceException", 500, lam.invoke, FunctionName=user, Payload=b"{}")
    assert f"(digest {l_sha}) is missing or unusable: {gone}." in err["Error"]["Message"], err

    # Uploads of the same code repair them.
    lam.update_function_code(FunctionName=damaged, ZipFile=z)
    lam.get_waiter("function_updated_v2").wait(FunctionName=damaged, WaiterConfig={"Delay": 1, "MaxAttempts": 20})
    assert os.path.getsize(d_blob) == len(z)
    r, body = invoke(lam, damaged, {"d": 1})
    assert "FunctionError" not in r and json.loads(body) == {"echo": {"d": 1}}, body
    again = lam.publish_layer_version(LayerName=layer_name, Content={"ZipFile": lz})
    assert again["Content"]["CodeSha256"] == lv["Content"]["CodeSha256"] and again["Version"] == 2
    r, body = invoke(lam, user, {})
    assert "FunctionError" not in r and json.loads(body) == "from the layer", body
    assert storage(srv)["damaged"] == []


def test_kill9_during_deletes_loses_no_referenced_blob(fresh_server):
    srv = fresh_server()
    lam = srv.client("lambda")
    shared = code_zip("shared-k9")
    names = []
    for i in range(40):
        name = unique("k9")
        create(lam, name, shared if i % 2 else code_zip(f"k9-{i}"))
        names.append(name)
    deleted = []
    # Set by the deleter itself at its 10th delete: an event wakes the killer at once, where
    # polling the count could sleep through the remaining 30 deletes on a loaded machine.
    tenth = threading.Event()

    def deleter():
        c = srv.client("lambda")
        for n in names:
            try:
                c.delete_function(FunctionName=n)
                deleted.append(n)
            except Exception:
                return
            if len(deleted) == 10:
                tenth.set()

    t = threading.Thread(target=deleter)
    t.start()
    assert tenth.wait(30), f"10 deletes within 30 s ({len(deleted)} done)"
    srv.kill()
    t.join(30)
    assert not t.is_alive(), "the deleter ended once the server was gone"
    assert 10 <= len(deleted) < len(names), len(deleted)
    # Every persisted record's code is still there (before the restart's sweep runs).
    blobs, code, _ = on_disk(srv.data_dir)
    refs = referenced(srv.data_dir)
    assert refs <= blobs, f"referenced blobs lost: {refs - blobs}"
    srv.start()
    assert "is missing" not in srv.logs()
    # The start's sweep, or at worst the first periodic pass (every 2 s) after it, removes
    # what the kill left unreferenced (about 1 run in 10 a digest is left to that pass).
    wait_for(lambda: exactly_referenced(srv.data_dir), timeout=10,
             what="the sweep to remove what the kill left unreferenced")
    lam = srv.client("lambda")
    left = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert len(left) >= len(names) - len(deleted) - 1
    for n in left[:5]:
        r, body = invoke(lam, n, {"n": n})
        assert json.loads(body) == {"echo": {"n": n}}, body


# ---------- a full disk ----------

class LoggedElsewhere(Server):
    """A server whose data dir is on the small disk and whose log is not."""

    def __init__(self, data_dir, log_dir):
        self.log_dir = log_dir
        super().__init__(data_dir=data_dir)

    def start(self):
        self.log_path = os.path.join(self.log_dir, f"server-{self.port}.log")
        super().start()


@pytest.fixture
def small_disk():
    mnt = tempfile.mkdtemp(prefix="ruststack-small-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt], capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(mnt)
        pytest.skip(f"cannot mount a small tmpfs here (mount -t tmpfs needs root): {r.stderr.strip()}")
    logs = tempfile.mkdtemp(prefix="ruststack-small-logs-")
    yield mnt, logs
    subprocess.run(["umount", "-l", mnt], check=False)
    os.rmdir(mnt)
    shutil.rmtree(logs, ignore_errors=True)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path):
    """Fills the disk with one file; returns its path."""
    filler = os.path.join(path, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    try:
        os.fsync(f.fileno())
    except (OSError, ValueError):
        pass
    return filler


def test_full_disk(small_disk):
    mnt, logdir = small_disk
    data = os.path.join(mnt, "data")
    srv = LoggedElsewhere(data, logdir)
    try:
        lam = srv.client("lambda")
        s3 = srv.client("s3")
        s3.create_bucket(Bucket="full-disk")
        kept = os.urandom(4096)
        s3.put_object(Bucket="full-disk", Key="kept", Body=kept)
        made = []
        err = None
        for i in range(10):
            name = f"full-{i}"
            try:
                create(lam, name, code_zip(f"full{i}", pad=1024 * 1024))
                made.append(name)
            except Exception as e:  # noqa: BLE001 - checked below
                err = e
                break
        assert err is not None and 1 <= len(made) < 10, (made, err)
        resp = err.response
        assert resp["Error"]["Code"] == "ServiceException", resp
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 500
        full = (f"Could not store the deployment package: the disk holding the data directory "
                f"{os.path.join(data, 'lambda')} is full (No space left on device (os error 28))")
        assert resp["Error"]["Message"] == full, resp
        # Nothing half-written: no record, no blob, no tree of the refused one.
        names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
        assert sorted(names) == sorted(made)
        assert exactly_referenced(data)

        # UpdateFunctionCode and PublishLayerVersion get the same error at that call: the
        # function keeps the code it had, no layer version is made, nothing of either stays.
        had = lam.get_function(FunctionName=made[0])["Configuration"]["CodeSha256"]
        err = expect_error("ServiceException", 500, lam.update_function_code, FunctionName=made[0],
                           ZipFile=code_zip("update", pad=1024 * 1024))
        assert err["Error"]["Message"] == full, err
        assert lam.get_function(FunctionName=made[0])["Configuration"]["CodeSha256"] == had
        err = expect_error("ServiceException", 500, lam.publish_layer_version, LayerName="full-layer",
                           Content={"ZipFile": code_zip("layer", pad=1024 * 1024)})
        assert err["Error"]["Message"] == full, err
        assert "full-layer" not in [x["LayerName"] for x in lam.list_layers()["Layers"]]
        assert exactly_referenced(data)
        r, body = invoke(lam, made[0], {"kept": True})
        assert json.loads(body) == {"echo": {"kept": True}}, body

        # A truly full disk: existing functions invoke, and a restart works.
        filler = fill(mnt)
        assert free_bytes(mnt) < 64 * 1024
        for n in made:
            r, body = invoke(lam, n, {"n": n})
            assert json.loads(body) == {"echo": {"n": n}}, body
        assert s3.get_object(Bucket="full-disk", Key="kept")["Body"].read() == kept
        srv.restart()
        lam, s3 = srv.client("lambda"), srv.client("s3")
        assert sorted(f["FunctionName"] for f in lam.list_functions()["Functions"]) == sorted(made)
        for n in made:
            r, body = invoke(lam, n, {"n": n})
            assert json.loads(body) == {"echo": {"n": n}}, body
        assert s3.get_object(Bucket="full-disk", Key="kept")["Body"].read() == kept
        os.remove(filler)

        # Deleting a function frees its blob and tree, and a create fits again.
        before = free_bytes(mnt)
        lam.delete_function(FunctionName=made[0])
        wait_for(lambda: free_bytes(mnt) - before >= 2 * 1024 * 1024 - 64 * 1024, timeout=15,
                 what="the deleted function's blob and code dir to be freed")
        assert exactly_referenced(data)
        create(lam, "full-again", code_zip("again", pad=1024 * 1024))
        r, body = invoke(lam, "full-again", {"a": 1})
        assert json.loads(body) == {"echo": {"a": 1}}, body
    finally:
        srv.cleanup()


def test_event_invocations_at_least_once_across_kill9(fresh_server, tmp_path):
    """The durability contract: no Event is lost across a kill -9, and only an Event whose
    handler had started and was not yet recorded as finished (still on disk) runs twice."""
    srv = fresh_server()
    lam = srv.client("lambda")
    log = tmp_path / "ran.log"
    src = (f"import os, time\ndef handler(e, c):\n"
           f"    with open({str(log)!r}, 'a') as f:\n        f.write('S ' + c.aws_request_id + '\\n')\n"
           f"    time.sleep(0.02)\n"
           f"    with open({str(log)!r}, 'a') as f:\n        f.write('E ' + c.aws_request_id + '\\n')\n")
    name = unique("dur")
    create(lam, name, make_zip({"app.py": src}))
    ids = []
    for i in range(150):
        r = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"i": i}))
        assert r["StatusCode"] == 202
        ids.append(r["ResponseMetadata"]["RequestId"])

    def lines():
        return log.read_text().splitlines() if log.exists() else []

    wait_for(lambda: sum(ln.startswith("E ") for ln in lines()) >= 30, timeout=60, what="30 Events to run")
    srv.kill()
    events_dir = os.path.join(srv.data_dir, "lambda", "events")
    on_disk_at_kill = {n[:-5] for n in os.listdir(events_dir) if n.endswith(".json")}
    started_at_kill = {ln[2:] for ln in lines() if ln.startswith("S ")}
    assert started_at_kill and on_disk_at_kill, "the kill came mid-queue"
    srv.start()
    wait_for(lambda: {ln[2:] for ln in lines() if ln.startswith("E ")} >= set(ids), timeout=120,
             what="every queued Event to run after the restart")
    wait_for(lambda: srv.health()["pending_events"] == 0, timeout=30, what="the queue to drain")
    runs = {}
    for ln in lines():
        if ln.startswith("S "):
            runs[ln[2:]] = runs.get(ln[2:], 0) + 1
    assert set(runs) == set(ids), "none lost, none invented"
    twice = {i for i, n in runs.items() if n > 1}
    assert all(n <= 2 for n in runs.values()), runs
    assert twice <= (started_at_kill & on_disk_at_kill), \
        f"ran twice without having been in flight at the kill: {twice - (started_at_kill & on_disk_at_kill)}"


def test_pending_event_keeps_its_code_across_kill9(fresh_server, tmp_path):
    """An Event queued for code that $LATEST no longer has keeps that code through a kill -9:
    the sweep at the next start leaves its blob and tree, the Event runs on it, and the blob
    is freed once it has run."""
    srv = fresh_server("--lambda-max-containers", "1")
    lam = srv.client("lambda")
    gate, started, log = tmp_path / "gate", tmp_path / "started", tmp_path / "ran.log"

    def version(tag):
        return make_zip({"app.py": (
            f"import os, time\nTAG = {tag!r}\ndef handler(e, c):\n"
            f"    if e.get('wait'):\n        open({str(started)!r}, 'w').close()\n"
            f"        while not os.path.exists({str(gate)!r}):\n            time.sleep(0.01)\n"
            f"    with open({str(log)!r}, 'a') as f:\n        f.write(TAG + ' ' + e['name'] + '\\n')\n")})

    name = unique("evkill")
    create(lam, name, version("v1"))
    wait_for(lambda: lam.get_function(FunctionName=name)["Configuration"]["State"] == "Active", timeout=30,
             what="the function to be Active")
    rec = lambda: json.load(open(os.path.join(srv.data_dir, "lambda", "functions", f"{name}.json")))
    old = rec()["latest"]["code_sha_hex"]
    old_blob = os.path.join(srv.data_dir, "lambda", "blobs", f"{old}.zip")
    old_tree = os.path.join(srv.data_dir, "lambda", "code", old)
    assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"wait": True, "name": "A"}))["StatusCode"] == 202
    wait_for(started.exists, timeout=30, what="Event A to start")
    assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"name": "B"}))["StatusCode"] == 202
    lam.update_function_code(FunctionName=name, ZipFile=version("v2"))
    wait_for(lambda: lam.get_function(FunctionName=name)["Configuration"]["LastUpdateStatus"] == "Successful",
             timeout=30, what="the update to finish")
    assert rec()["latest"]["code_sha_hex"] != old and old not in referenced(srv.data_dir)
    events_dir = os.path.join(srv.data_dir, "lambda", "events")

    def queued_files():
        files = [os.path.join(events_dir, n) for n in os.listdir(events_dir) if n.endswith(".json")]
        return {"count": len(files), "bytes": sum(os.path.getsize(f) for f in files)}

    # The storage report counts the queued Events' files.
    assert storage(srv)["events"] == queued_files() and queued_files()["count"] == 2
    srv.kill()
    assert os.path.exists(old_blob) and os.path.isdir(old_tree)
    srv.start()
    # The start's sweep has run: no record names the old code, the pending Events do.
    assert srv.health()["pending_events"] == 2
    assert storage(srv)["events"] == queued_files()
    assert os.path.exists(old_blob) and os.path.isdir(old_tree), "the sweep at start freed the pending Events' code"
    gate.write_text("go")
    wait_for(lambda: srv.health()["pending_events"] == 0, timeout=60, what="both Events to run after the restart")
    ran = log.read_text().splitlines()
    # B ran once, on the code it was queued for; A (in flight at the kill) at least once, on it too.
    assert ran.count("v1 B") == 1 and "v1 A" in ran and set(ran) == {"v1 A", "v1 B"}, ran
    # The blob goes at once; the tree once the environment that ran the Events stops (it
    # stays warm meanwhile, counted as deferred).
    wait_for(lambda: not os.path.exists(old_blob), timeout=15, what="the old blob to be freed after the Events ran")
    blobs, _, _ = on_disk(srv.data_dir)
    assert blobs == referenced(srv.data_dir)
    assert not os.path.exists(old_tree) or storage(srv)["code"]["deferred"] == 1


def test_code_dir_of_a_running_environment_is_freed_after_it_stops(srv, slam, tmp_path):
    lam = slam
    started, gate = tmp_path / "started", tmp_path / "gate"
    # The handler runs until the test has looked at the store (bounded), not for a fixed time.
    src = (f"import os, time\ndef handler(e, c):\n    open({str(started)!r}, 'w').close()\n"
           f"    deadline = time.time() + 30\n"
           f"    while not os.path.exists({str(gate)!r}) and time.time() < deadline:\n        time.sleep(0.01)\n"
           f"    return sorted(n for n in os.listdir('.') if n != '__pycache__')\n")
    name = unique("busy")
    create(lam, name, make_zip({"app.py": src}), Timeout=60)
    sha_hex = json.load(open(os.path.join(srv.data_dir, "lambda", "functions", f"{name}.json")))["latest"]["code_sha_hex"]
    code_dir = os.path.join(srv.data_dir, "lambda", "code", sha_hex)
    out = {}
    t = threading.Thread(target=lambda: out.update(r=invoke(srv.client("lambda"), name, {})))
    t.start()
    wait_for(started.exists, timeout=30, what="the handler to start")
    lam.delete_function(FunctionName=name)
    # Its blob goes at once; the tree it runs from stays until the environment stops.
    assert not os.path.exists(os.path.join(srv.data_dir, "lambda", "blobs", f"{sha_hex}.zip"))
    assert os.path.isdir(code_dir)
    assert storage(srv)["code"]["deferred"] >= 1
    gate.touch()
    t.join(30)
    assert not t.is_alive(), "the invocation did not finish"
    r, body = out["r"]
    assert "FunctionError" not in r and json.loads(body) == ["app.py"], body
    wait_for(lambda: not os.path.exists(code_dir), timeout=15, what="the tree to be freed once the environment stopped")
    wait_for(lambda: exactly_referenced(srv.data_dir), timeout=15, what="exactly the referenced code")


def test_pending_event_keeps_the_code_it_was_queued_for(fresh_server, tmp_path):
    """An Event runs the code of the version it was queued for: an UpdateFunctionCode of
    $LATEST while it waits keeps the old blob, the Event runs on it, and the blob is freed
    once the Event has run."""
    srv = fresh_server("--lambda-max-containers", "1")
    lam = srv.client("lambda")
    gate, started, log = tmp_path / "gate", tmp_path / "started", tmp_path / "ran.log"

    def version(tag):
        return make_zip({"app.py": (
            f"import os, time\nTAG = {tag!r}\ndef handler(e, c):\n"
            f"    if e.get('wait'):\n        open({str(started)!r}, 'w').close()\n"
            f"        while not os.path.exists({str(gate)!r}):\n            time.sleep(0.01)\n"
            f"    with open({str(log)!r}, 'a') as f:\n        f.write(TAG + ' ' + e['name'] + '\\n')\n")})

    name = unique("evcode")
    create(lam, name, version("v1"))
    wait_for(lambda: lam.get_function(FunctionName=name)["Configuration"]["State"] == "Active", timeout=30,
             what="the function to be Active")
    old = json.load(open(os.path.join(srv.data_dir, "lambda", "functions", f"{name}.json")))["latest"]["code_sha_hex"]
    old_blob = os.path.join(srv.data_dir, "lambda", "blobs", f"{old}.zip")
    # A holds the only environment; B waits behind it in the queue.
    assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"wait": True, "name": "A"}))["StatusCode"] == 202
    wait_for(started.exists, timeout=30, what="Event A to start")
    assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"name": "B"}))["StatusCode"] == 202
    lam.update_function_code(FunctionName=name, ZipFile=version("v2"))
    wait_for(lambda: lam.get_function(FunctionName=name)["Configuration"]["LastUpdateStatus"] == "Successful",
             timeout=30, what="the update to finish")
    new = json.load(open(os.path.join(srv.data_dir, "lambda", "functions", f"{name}.json")))["latest"]["code_sha_hex"]
    assert new != old
    assert srv.health()["pending_events"] == 2
    assert os.path.exists(old_blob), "the pending Events' code was freed"
    gate.write_text("go")
    wait_for(lambda: log.exists() and len(log.read_text().splitlines()) == 2, timeout=60, what="both Events to run")
    assert sorted(log.read_text().splitlines()) == ["v1 A", "v1 B"]
    wait_for(lambda: srv.health()["pending_events"] == 0, timeout=30, what="the queue to drain")
    wait_for(lambda: not os.path.exists(old_blob), timeout=15, what="the old blob to be freed after the Events ran")
    # A new Event runs the current code.
    assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"name": "C"}))["StatusCode"] == 202
    wait_for(lambda: "v2 C" in log.read_text().splitlines(), timeout=60, what="Event C on the new code")
