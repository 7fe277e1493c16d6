"""Lambda control plane (issue 2): every operation driven with boto3 (and once with
the AWS CLI) against the real `ruststack` binary. Field formats and error codes
follow PROTOCOL.md §1; each error check asserts the botocore code AND the HTTP status."""
import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import WaiterError

from conftest import CREDS, expect_error, http, invoke, make_zip, unique, wait_for

ROLE = "arn:aws:iam::000000000000:role/lambda"
ACCOUNT = "000000000000"
HANDLER_SRC = "def handler(event, context):\n    return event\n"
LAST_MODIFIED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def code_sha256(zip_bytes):
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()


def fn_arn(name, region="us-east-1", qualifier=None):
    arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def create(lam, name=None, files=None, **kw):
    """Creates a python3.12 function; returns (name, zip bytes, response)."""
    name = name or unique("cp")
    zb = make_zip(files or {"app.py": HANDLER_SRC})
    kw.setdefault("Runtime", "python3.12")
    kw.setdefault("Handler", "app.handler")
    resp = lam.create_function(FunctionName=name, Role=ROLE, Code={"ZipFile": zb}, **kw)
    return name, zb, resp


# ---------- CreateFunction and the FunctionConfiguration fields ----------

def test_create_function_fields(lam):
    zb = make_zip({"app.py": HANDLER_SRC})
    name = unique("cp-fields")
    resp = lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE,
                               Handler="app.handler", Code={"ZipFile": zb})
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert resp["ResponseMetadata"]["RequestId"]
    assert resp["FunctionName"] == name
    assert resp["FunctionArn"] == fn_arn(name)
    assert resp["CodeSha256"] == code_sha256(zb)
    assert len(resp["CodeSha256"]) == 44 and resp["CodeSha256"].endswith("=")
    assert resp["CodeSize"] == len(zb)
    assert resp["Timeout"] == 3
    assert resp["MemorySize"] == 128
    assert LAST_MODIFIED.match(resp["LastModified"]), resp["LastModified"]
    assert resp["Version"] == "$LATEST"
    # AWS answers CreateFunction with Pending and no LastUpdateStatus (recorded), then Active.
    assert resp["State"] == "Pending"
    assert resp["StateReason"] == "The function is being created."
    assert resp["StateReasonCode"] == "Creating"
    assert "LastUpdateStatus" not in resp
    assert UUID.match(resp["RevisionId"]), resp["RevisionId"]
    assert resp["Runtime"] == "python3.12"
    assert resp["Handler"] == "app.handler"
    assert resp["Role"] == ROLE
    assert resp["PackageType"] == "Zip"
    assert resp["Architectures"] == ["x86_64"]
    assert "Environment" not in resp and "Layers" not in resp

    fast = {"Delay": 1, "MaxAttempts": 2}
    lam.get_waiter("function_exists").wait(FunctionName=name, WaiterConfig=fast)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=fast)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=fast)
    lam.get_waiter("function_active").wait(FunctionName=name, WaiterConfig=fast)
    lam.get_waiter("function_updated").wait(FunctionName=name, WaiterConfig=fast)


def test_known_zip_code_sha256(lam):
    # A stored (uncompressed) zip with a fixed timestamp: the same 156 bytes on every machine.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        info = zipfile.ZipInfo("app.py", date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o100644 << 16
        z.writestr(info, HANDLER_SRC)
    zb = buf.getvalue()
    assert len(zb) == 156
    resp = lam.create_function(FunctionName=unique("cp-sha"), Runtime="python3.12", Role=ROLE,
                               Handler="app.handler", Code={"ZipFile": zb})
    assert resp["CodeSha256"] == "Y9B23BxPItzZpe+/p9ggNa64F1mkcf27+UXODG5hE1k="
    assert resp["CodeSize"] == 156


def test_region_comes_from_the_client(server):
    eu = boto3.client("lambda", endpoint_url=server.endpoint,
                      config=Config(retries={"max_attempts": 1}), **dict(CREDS, region_name="eu-west-1"))
    name, _, resp = create(eu)
    assert resp["FunctionArn"] == f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:{name}"
    assert eu.get_function_configuration(FunctionName=name)["FunctionArn"] == fn_arn(name, "eu-west-1")
    assert eu.get_function(FunctionName=name)["Configuration"]["FunctionArn"] == fn_arn(name, "eu-west-1")


def test_get_function(server, lam):
    name, zb, created = create(lam, Tags={"team": "core", "env": "test"},
                               Description="hello", Timeout=10, MemorySize=256)
    got = lam.get_function(FunctionName=name)
    cfg = got["Configuration"]
    # RevisionId changes when the function turns Active, as on AWS.
    for k in ("FunctionName", "FunctionArn", "CodeSha256", "CodeSize", "LastModified",
              "Timeout", "MemorySize", "Description"):
        assert cfg[k] == created[k], k
    assert cfg["Timeout"] == 10 and cfg["MemorySize"] == 256 and cfg["Description"] == "hello"
    assert got["Tags"] == {"team": "core", "env": "test"}
    assert got["Code"]["RepositoryType"] == "S3"
    with urllib.request.urlopen(got["Code"]["Location"], timeout=10) as r:
        assert r.read() == zb
    assert "Concurrency" not in got

    # The transition runs on a background task: under load it may not have finished yet.
    conf = wait_for(lambda: (c := lam.get_function_configuration(FunctionName=name))["State"] == "Active" and c, 10,
                    "the function to become Active")
    assert conf["FunctionArn"] == fn_arn(name)
    assert conf["CodeSha256"] == code_sha256(zb)
    assert conf["State"] == "Active" and conf["LastUpdateStatus"] == "Successful"


def test_function_name_forms(server, lam):
    name, zb, _ = create(lam)
    forms = [
        name,
        f"{ACCOUNT}:function:{name}",
        fn_arn(name),
        f"{name}:$LATEST",
        fn_arn(name, qualifier="$LATEST"),
        f"{ACCOUNT}:function:{name}:$LATEST",
    ]
    for form in forms:
        c = lam.get_function(FunctionName=form)["Configuration"]
        assert c["FunctionName"] == name, form
        assert c["Version"] == "$LATEST", form
        c = lam.get_function_configuration(FunctionName=form)
        assert c["FunctionName"] == name, form
    # boto3 percent-encodes the label; a raw client may too, and may add a trailing slash.
    quoted = urllib.request.quote(fn_arn(name, qualifier="$LATEST"), safe="")
    status, _, body = http(server, "GET", f"/2015-03-31/functions/{quoted}/configuration/")
    assert status == 200, body
    assert json.loads(body)["FunctionName"] == name
    status, _, body = http(server, "GET", "/2015-03-31/functions/")
    assert status == 200 and "Functions" in json.loads(body)
    # Update, tag and delete through the full ARN too.
    lam.update_function_configuration(FunctionName=fn_arn(name), Timeout=7)
    assert lam.get_function_configuration(FunctionName=name)["Timeout"] == 7
    lam.delete_function(FunctionName=fn_arn(name))
    expect_error("ResourceNotFoundException", 404, lam.get_function, FunctionName=name)


# ---------- ListFunctions paging ----------

def test_list_functions_paging_120(lam):
    prefix = unique("cp-page")
    names = {f"{prefix}-{i:03d}" for i in range(120)}
    zb = make_zip({"app.py": HANDLER_SRC})
    for n in sorted(names):
        lam.create_function(FunctionName=n, Runtime="python3.12", Role=ROLE,
                            Handler="app.handler", Code={"ZipFile": zb})

    # By hand with MaxItems.
    seen, marker, pages = [], None, 0
    while True:
        kw = {"MaxItems": 7}
        if marker:
            kw["Marker"] = marker
        page = lam.list_functions(**kw)
        assert len(page["Functions"]) <= 7
        pages += 1
        seen += [f["FunctionName"] for f in page["Functions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert len(seen) == len(set(seen)), "a function appeared twice while paging"
    assert names <= set(seen)
    assert pages >= 120 // 7

    # MaxItems larger than 50 is capped at 50.
    big = lam.list_functions(MaxItems=1000)
    assert len(big["Functions"]) == 50 and big.get("NextMarker")
    # ListFunctions leaves out State and LastUpdateStatus (a subset of FunctionConfiguration).
    f0 = big["Functions"][0]
    assert "State" not in f0 and "LastUpdateStatus" not in f0
    assert f0["FunctionArn"].startswith(f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:")

    # The boto3 paginator: default page size, then PageSize.
    for cfg in ({}, {"PageSize": 33}):
        got, sizes = [], []
        for page in lam.get_paginator("list_functions").paginate(PaginationConfig=cfg):
            sizes.append(len(page["Functions"]))
            got += [f["FunctionName"] for f in page["Functions"]]
        assert max(sizes) <= 50
        assert len(got) == len(set(got))
        assert names <= set(got)
        if cfg:
            assert all(s <= 33 for s in sizes)
    # The paginator's own MaxItems (a total, with a resume token).
    res = lam.get_paginator("list_functions").paginate(
        PaginationConfig={"MaxItems": 60, "PageSize": 25}).build_full_result()
    assert len(res["Functions"]) == 60 and res.get("NextToken")

    # The usual cleanup loop deletes what each page lists while paging on: no function
    # may be skipped because the ones before it disappeared.
    for page in lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 10}):
        for f in page["Functions"]:
            if f["FunctionName"] in names:
                lam.delete_function(FunctionName=f["FunctionName"])
    left = {f["FunctionName"] for p in lam.get_paginator("list_functions").paginate() for f in p["Functions"]}
    assert not names & left, f"{len(names & left)} functions were skipped by the cleanup loop"


# ---------- updates ----------

def test_update_function_code(lam):
    name, zb, created = create(lam)
    zb2 = make_zip({"app.py": HANDLER_SRC + "# v2\n"})
    up = lam.update_function_code(FunctionName=name, ZipFile=zb2)
    assert up["CodeSha256"] == code_sha256(zb2) != created["CodeSha256"]
    assert up["CodeSize"] == len(zb2)
    assert up["RevisionId"] != created["RevisionId"]
    # AWS answers an update with InProgress (recorded), then Successful with a new RevisionId.
    assert up["Version"] == "$LATEST" and up["LastUpdateStatus"] == "InProgress"
    assert LAST_MODIFIED.match(up["LastModified"])
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 2})
    done = lam.get_function(FunctionName=name)["Configuration"]
    assert done["CodeSha256"] == code_sha256(zb2) and done["LastUpdateStatus"] == "Successful"

    # RevisionId guards the update.
    expect_error("PreconditionFailedException", 412, lam.update_function_code,
                 FunctionName=name, ZipFile=zb, RevisionId=created["RevisionId"])
    ok = lam.update_function_code(FunctionName=name, ZipFile=zb, RevisionId=done["RevisionId"])
    assert ok["CodeSha256"] == code_sha256(zb)
    # A bad zip on update is a 400 and keeps the old code.
    expect_error("InvalidParameterValueException", 400, lam.update_function_code,
                 FunctionName=name, ZipFile=b"not a zip at all")
    assert lam.get_function_configuration(FunctionName=name)["CodeSha256"] == code_sha256(zb)


def test_update_function_configuration(lam):
    name, zb, created = create(lam)
    up = lam.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"ALPHA": "1", "B_2": "two"}},
        Timeout=30, MemorySize=512, Handler="app.other", Description="d")
    assert up["Environment"] == {"Variables": {"ALPHA": "1", "B_2": "two"}}
    assert (up["Timeout"], up["MemorySize"], up["Handler"], up["Description"]) == (30, 512, "app.other", "d")
    assert up["RevisionId"] != created["RevisionId"]
    assert up["CodeSha256"] == created["CodeSha256"], "a config update must keep the code"
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 2})
    got = lam.get_function_configuration(FunctionName=name)
    assert got["Environment"]["Variables"] == {"ALPHA": "1", "B_2": "two"}
    assert got["Timeout"] == 30 and got["MemorySize"] == 512 and got["Handler"] == "app.other"

    # Fields not named are kept.
    up2 = lam.update_function_configuration(FunctionName=name, Timeout=5)
    assert up2["MemorySize"] == 512 and up2["Environment"]["Variables"]["ALPHA"] == "1"
    # Clearing the environment.
    up3 = lam.update_function_configuration(FunctionName=name, Environment={"Variables": {}})
    assert "Environment" not in up3 or up3["Environment"].get("Variables") in ({}, None)

    expect_error("PreconditionFailedException", 412, lam.update_function_configuration,
                 FunctionName=name, Timeout=9, RevisionId=created["RevisionId"])
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 2})
    settled = lam.get_function_configuration(FunctionName=name)
    assert settled["Timeout"] == 5
    ok = lam.update_function_configuration(FunctionName=name, Timeout=9, RevisionId=settled["RevisionId"])
    assert ok["Timeout"] == 9
    # A rejected update changes nothing.
    expect_error("InvalidParameterValueException", 400, lam.update_function_configuration,
                 FunctionName=name, Runtime="cobol85")
    expect_error("ResourceNotFoundException", 404, lam.update_function_configuration,
                 FunctionName=unique("cp-missing"), Timeout=4)


def test_update_configuration_keeps_concurrent_changes(lam):
    """Two config updates of different fields, one after the other, both stick."""
    name, _, _ = create(lam)
    lam.update_function_configuration(FunctionName=name, Timeout=11)
    lam.update_function_configuration(FunctionName=name, MemorySize=640)
    got = lam.get_function_configuration(FunctionName=name)
    assert got["Timeout"] == 11 and got["MemorySize"] == 640


def test_delete_function(lam):
    name, _, _ = create(lam)
    r = lam.delete_function(FunctionName=name)
    assert r["ResponseMetadata"]["HTTPStatusCode"] in (200, 204)
    err = expect_error("ResourceNotFoundException", 404, lam.get_function, FunctionName=name)
    assert err["Error"]["Message"] == f"Function not found: {fn_arn(name)}"
    expect_error("ResourceNotFoundException", 404, lam.get_function_configuration, FunctionName=name)
    expect_error("ResourceNotFoundException", 404, lam.delete_function, FunctionName=name)
    # function_exists retries on ResourceNotFoundException (so it ends with max attempts, not a failure).
    with pytest.raises(WaiterError) as wi:
        lam.get_waiter("function_exists").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 1})
    assert "Max attempts exceeded" in str(wi.value)
    assert wi.value.last_response["Error"]["Code"] == "ResourceNotFoundException"
    # The name can be used again.
    _, _, again = create(lam, name=name)
    assert again["FunctionArn"] == fn_arn(name)
    lam.get_waiter("function_exists").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 1})


# ---------- versions, aliases, qualifiers ----------

def test_versions_aliases_and_qualifiers(lam):
    name, zb, created = create(lam)
    v1 = lam.publish_version(FunctionName=name, Description="first")
    assert v1["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert v1["Version"] == "1"
    assert v1["FunctionArn"] == fn_arn(name, qualifier="1")
    assert v1["CodeSha256"] == code_sha256(zb)
    # Nothing changed: no new version.
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    zb2 = make_zip({"app.py": HANDLER_SRC + "# v2\n"})
    up = lam.update_function_code(FunctionName=name, ZipFile=zb2)
    expect_error("PreconditionFailedException", 412, lam.publish_version,
                 FunctionName=name, RevisionId=created["RevisionId"])
    expect_error("InvalidParameterValueException", 400, lam.publish_version,
                 FunctionName=name, CodeSha256=code_sha256(zb))
    # The update's RevisionId changes again when it completes (as on AWS): read it after.
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 2})
    rev = lam.get_function_configuration(FunctionName=name)["RevisionId"]
    assert rev != up["RevisionId"]
    v2 = lam.publish_version(FunctionName=name, CodeSha256=code_sha256(zb2), RevisionId=rev)
    assert v2["Version"] == "2"

    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    assert versions[1]["FunctionArn"] == fn_arn(name, qualifier="1")
    paged = lam.get_paginator("list_versions_by_function").paginate(
        FunctionName=name, PaginationConfig={"PageSize": 1}).build_full_result()
    assert [v["Version"] for v in paged["Versions"]] == ["$LATEST", "1", "2"]

    # Qualified reads.
    assert lam.get_function(FunctionName=name, Qualifier="1")["Configuration"]["CodeSha256"] == code_sha256(zb)
    assert lam.get_function(FunctionName=f"{name}:2")["Configuration"]["Version"] == "2"
    assert lam.get_function_configuration(FunctionName=fn_arn(name, qualifier="1"))["Version"] == "1"
    assert lam.get_function(FunctionName=f"{name}:1", Qualifier="1")["Configuration"]["Version"] == "1"
    expect_error("InvalidParameterValueException", 400, lam.get_function,
                 FunctionName=f"{name}:1", Qualifier="2")
    expect_error("InvalidParameterValueException", 400, lam.get_function_configuration,
                 FunctionName=f"{name}:$LATEST", Qualifier="1")
    expect_error("ResourceNotFoundException", 404, lam.get_function, FunctionName=name, Qualifier="99")
    expect_error("ResourceNotFoundException", 404, lam.get_function, FunctionName=f"{name}:nope")

    # Aliases CRUD.
    a = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1", Description="prod")
    assert a["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert a["AliasArn"] == fn_arn(name, qualifier="live")
    assert (a["Name"], a["FunctionVersion"], a["Description"]) == ("live", "1", "prod")
    assert UUID.match(a["RevisionId"])
    expect_error("ResourceConflictException", 409, lam.create_alias,
                 FunctionName=name, Name="live", FunctionVersion="2")
    expect_error("ResourceNotFoundException", 404, lam.create_alias,
                 FunctionName=name, Name="ghost", FunctionVersion="42")
    lam.create_alias(FunctionName=name, Name="edge", FunctionVersion="$LATEST")
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "1"
    names = sorted(x["Name"] for x in lam.list_aliases(FunctionName=name)["Aliases"])
    assert names == ["edge", "live"]
    assert [x["Name"] for x in lam.list_aliases(FunctionName=name, FunctionVersion="1")["Aliases"]] == ["live"]
    via_alias = lam.get_function(FunctionName=name, Qualifier="live")["Configuration"]
    assert via_alias["Version"] == "1" and via_alias["FunctionArn"] == fn_arn(name, qualifier="live")
    assert lam.get_function(FunctionName=f"{name}:live")["Configuration"]["Version"] == "1"
    conf = lam.get_function_configuration(FunctionName=name, Qualifier="live")
    assert conf["Version"] == "1" and conf["FunctionArn"] == fn_arn(name, qualifier="1")
    latest = lam.get_function(FunctionName=name, Qualifier="$LATEST")["Configuration"]
    assert latest["FunctionArn"] == fn_arn(name, qualifier="$LATEST")
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"] == fn_arn(name)
    expect_error("InvalidParameterValueException", 400, lam.get_function,
                 FunctionName=f"{name}:live", Qualifier="edge")
    upd = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2")
    assert upd["FunctionVersion"] == "2" and upd["RevisionId"] != a["RevisionId"]
    expect_error("PreconditionFailedException", 412, lam.update_alias,
                 FunctionName=name, Name="live", FunctionVersion="1", RevisionId=a["RevisionId"])
    assert lam.get_function_configuration(FunctionName=name, Qualifier="live")["Version"] == "2"
    # A version an alias points to cannot be deleted; an unreferenced one can.
    expect_error("ResourceConflictException", 409, lam.delete_function, FunctionName=name, Qualifier="2")
    lam.delete_function(FunctionName=name, Qualifier="1")
    expect_error("ResourceNotFoundException", 404, lam.get_function, FunctionName=name, Qualifier="1")
    expect_error("InvalidParameterValueException", 400, lam.delete_function, FunctionName=name, Qualifier="$LATEST")
    lam.delete_alias(FunctionName=name, Name="edge")
    expect_error("ResourceNotFoundException", 404, lam.get_alias, FunctionName=name, Name="edge")
    # Deleting a missing alias is a no-op, as in AWS (LocalStack's snapshot-tested behaviour).
    lam.delete_alias(FunctionName=name, Name="edge")
    expect_error("ResourceNotFoundException", 404, lam.list_aliases, FunctionName=unique("cp-missing"))
    # Deleting the function takes its versions and aliases with it.
    lam.delete_function(FunctionName=name)
    expect_error("ResourceNotFoundException", 404, lam.get_alias, FunctionName=name, Name="live")
    expect_error("ResourceNotFoundException", 404, lam.list_versions_by_function, FunctionName=name)


def test_publish_on_create(lam):
    name, zb, resp = create(lam, Publish=True)
    assert resp["Version"] == "1"
    # AWS answers with the version's configuration under the unqualified ARN (recorded).
    assert resp["FunctionArn"] == fn_arn(name)
    assert resp["State"] == "Pending"
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST", "1"]


def test_image_package(lam):
    name = unique("cp-image")
    uri = "public.ecr.aws/lambda/python:3.12"
    resp = lam.create_function(FunctionName=name, Role=ROLE, PackageType="Image", Code={"ImageUri": uri},
                               ImageConfig={"Command": ["app.handler"]})
    assert resp["PackageType"] == "Image" and resp["State"] == "Pending"
    assert "Runtime" not in resp and "Handler" not in resp
    assert resp["ImageConfigResponse"] == {"ImageConfig": {"Command": ["app.handler"]}}
    got = lam.get_function(FunctionName=name)
    assert got["Code"]["RepositoryType"] == "ECR" and got["Code"]["ImageUri"] == uri
    up = lam.update_function_code(FunctionName=name, ImageUri=uri + "-v2")
    assert up["CodeSha256"] != resp["CodeSha256"]
    assert lam.get_function(FunctionName=name)["Code"]["ImageUri"] == uri + "-v2"
    expect_error("InvalidParameterValueException", 400, lam.update_function_code,
                 FunctionName=name, ZipFile=make_zip({"app.py": HANDLER_SRC}))
    expect_error("InvalidParameterValueException", 400, lam.create_function, FunctionName=unique("cp-image"),
                 Role=ROLE, PackageType="Image", Code={"ZipFile": make_zip({"app.py": HANDLER_SRC})})
    zname, _, _ = create(lam)
    expect_error("InvalidParameterValueException", 400, lam.update_function_code, FunctionName=zname, ImageUri=uri)


# ---------- layers ----------

def test_layers(lam, tmp_path):
    lname = unique("cp-layer")
    lz1 = make_zip({"python/util1.py": "X = 1\n"})
    lz2 = make_zip({"python/util2.py": "X = 2\n"})
    p1 = lam.publish_layer_version(LayerName=lname, Content={"ZipFile": lz1}, Description="one",
                                   CompatibleRuntimes=["python3.12"], LicenseInfo="MIT")
    assert p1["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert p1["Version"] == 1
    assert p1["LayerArn"] == f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:{lname}"
    assert p1["LayerVersionArn"] == p1["LayerArn"] + ":1"
    assert p1["Content"]["CodeSha256"] == code_sha256(lz1)
    assert p1["Content"]["CodeSize"] == len(lz1)
    assert LAST_MODIFIED.match(p1["CreatedDate"])
    assert p1["CompatibleRuntimes"] == ["python3.12"] and p1["LicenseInfo"] == "MIT"
    with urllib.request.urlopen(p1["Content"]["Location"], timeout=10) as r:
        assert r.read() == lz1
    p2 = lam.publish_layer_version(LayerName=lname, Content={"ZipFile": lz2}, CompatibleRuntimes=["nodejs20.x"])
    assert p2["Version"] == 2

    g = lam.get_layer_version(LayerName=lname, VersionNumber=1)
    assert g["LayerVersionArn"] == p1["LayerVersionArn"] and g["Description"] == "one"
    assert g["Content"]["CodeSha256"] == code_sha256(lz1)
    g2 = lam.get_layer_version_by_arn(Arn=p2["LayerVersionArn"])
    assert g2["Version"] == 2 and g2["Content"]["CodeSize"] == len(lz2)
    # By layer ARN instead of name.
    assert lam.get_layer_version(LayerName=p1["LayerArn"], VersionNumber=2)["Version"] == 2

    layers = {l["LayerName"]: l for l in lam.list_layers()["Layers"]}
    assert layers[lname]["LayerArn"] == p1["LayerArn"]
    assert layers[lname]["LatestMatchingVersion"]["Version"] == 2
    assert layers[lname]["LatestMatchingVersion"]["LayerVersionArn"] == p2["LayerVersionArn"]
    py = {l["LayerName"]: l for l in lam.list_layers(CompatibleRuntime="python3.12")["Layers"]}
    assert py[lname]["LatestMatchingVersion"]["Version"] == 1
    assert [v["Version"] for v in lam.list_layer_versions(LayerName=lname)["LayerVersions"]] == [2, 1]
    assert [v["Version"] for v in lam.list_layer_versions(LayerName=lname, CompatibleRuntime="nodejs20.x")["LayerVersions"]] == [2]

    # Layers on a function: by version ARN and by local zip path.
    local = tmp_path / "layer.zip"
    local.write_bytes(lz2)
    name, _, resp = create(lam, Layers=[p1["LayerVersionArn"], str(local)])
    assert resp["Layers"] == [
        {"Arn": p1["LayerVersionArn"], "CodeSize": len(lz1)},
        {"Arn": str(local), "CodeSize": len(lz2)},
    ]
    assert lam.get_function(FunctionName=name)["Configuration"]["Layers"] == resp["Layers"]
    up = lam.update_function_configuration(FunctionName=name, Layers=[p2["LayerVersionArn"]])
    assert up["Layers"] == [{"Arn": p2["LayerVersionArn"], "CodeSize": len(lz2)}]
    up = lam.update_function_configuration(FunctionName=name, Layers=[])
    assert "Layers" not in up or up["Layers"] == []
    expect_error("InvalidParameterValueException", 400, create, lam,
                 Layers=[p1["LayerArn"] + ":99"])
    expect_error("InvalidParameterValueException", 400, create, lam,
                 Layers=[str(tmp_path / "missing.zip")])
    # Only regular files are read: a device or a directory is refused, not read forever.
    for path in ("/dev/zero", str(tmp_path)):
        expect_error("InvalidParameterValueException", 400, create, lam, Layers=[path])
    (tmp_path / "notzip.zip").write_bytes(b"plain text")
    expect_error("InvalidParameterValueException", 400, create, lam, Layers=[str(tmp_path / "notzip.zip")])

    # Delete: 404 afterwards; numbers are never reused.
    r = lam.delete_layer_version(LayerName=lname, VersionNumber=1)
    assert r["ResponseMetadata"]["HTTPStatusCode"] in (200, 204)
    expect_error("ResourceNotFoundException", 404, lam.get_layer_version, LayerName=lname, VersionNumber=1)
    expect_error("ResourceNotFoundException", 404, lam.get_layer_version_by_arn, Arn=p1["LayerVersionArn"])
    assert [v["Version"] for v in lam.list_layer_versions(LayerName=lname)["LayerVersions"]] == [2]
    assert lam.publish_layer_version(LayerName=lname, Content={"ZipFile": lz1})["Version"] == 3
    expect_error("InvalidParameterValueException", 400, lam.publish_layer_version,
                 LayerName=unique("cp-badlayer"), Content={"ZipFile": b"no zip"})
    expect_error("ResourceNotFoundException", 404, lam.get_layer_version,
                 LayerName=unique("cp-nolayer"), VersionNumber=1)


# ---------- tags, account settings, concurrency ----------

def test_tags(lam):
    name, _, created = create(lam, Tags={"a": "1"})
    arn = created["FunctionArn"]
    assert lam.list_tags(Resource=arn)["Tags"] == {"a": "1"}
    r = lam.tag_resource(Resource=arn, Tags={"b": "2", "c": "3"})
    assert r["ResponseMetadata"]["HTTPStatusCode"] in (200, 204)
    assert lam.list_tags(Resource=arn)["Tags"] == {"a": "1", "b": "2", "c": "3"}
    lam.untag_resource(Resource=arn, TagKeys=["a", "c"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"b": "2"}
    assert lam.get_function(FunctionName=name)["Tags"] == {"b": "2"}
    lam.tag_resource(Resource=arn, Tags={"b": "changed"})
    assert lam.list_tags(Resource=arn)["Tags"] == {"b": "changed"}
    expect_error("ResourceNotFoundException", 404, lam.list_tags, Resource=fn_arn(unique("cp-missing")))
    expect_error("ResourceNotFoundException", 404, lam.tag_resource,
                 Resource=fn_arn(unique("cp-missing")), Tags={"x": "y"})


def test_account_settings(lam):
    create(lam)
    s = lam.get_account_settings()
    lim, use = s["AccountLimit"], s["AccountUsage"]
    assert lim["CodeSizeUnzipped"] == 262144000 and lim["CodeSizeZipped"] == 52428800
    assert lim["ConcurrentExecutions"] == 1000 and lim["TotalCodeSize"] == 80530636800
    assert "UnreservedConcurrentExecutions" in lim
    assert use["FunctionCount"] >= 1 and use["TotalCodeSize"] > 0


def test_function_concurrency(lam):
    name, _, _ = create(lam)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    r = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    assert r["ReservedConcurrentExecutions"] == 5
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 5
    assert lam.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 5}
    unreserved = lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    assert unreserved <= 995
    # At least 100 must stay unreserved across the account.
    err = expect_error("InvalidParameterValueException", 400, lam.put_function_concurrency,
                       FunctionName=name, ReservedConcurrentExecutions=unreserved + 5 - 99)
    assert "UnreservedConcurrentExecution" in err["Error"]["Message"]
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 5
    r = lam.delete_function_concurrency(FunctionName=name)
    assert r["ResponseMetadata"]["HTTPStatusCode"] in (200, 204)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == unreserved + 5
    expect_error("ResourceNotFoundException", 404, lam.put_function_concurrency,
                 FunctionName=unique("cp-missing"), ReservedConcurrentExecutions=1)


# ---------- errors ----------

def test_create_errors(server, lam):
    loose = server.client("lambda", parameter_validation=False)  # lets Timeout=0 etc. reach the server
    name, zb, _ = create(lam)
    err = expect_error("ResourceConflictException", 409, create, lam, name=name)
    assert name in err["Error"]["Message"]

    def rejected(client=lam, code="InvalidParameterValueException", **kw):
        """CreateFunction with one bad member: a 400 with this code, and no function. The model's
        constraints are ValidationException; Lambda's own checks after them InvalidParameterValue."""
        args = dict(FunctionName=unique("cp-bad"), Runtime="python3.12", Role=ROLE,
                    Handler="app.handler", Code={"ZipFile": zb})
        args.update(kw)
        args = {k: v for k, v in args.items() if v is not None}
        expect_error(code, 400, client.create_function, **args)
        if "FunctionName" in kw:
            return
        expect_error("ResourceNotFoundException", 404, lam.get_function, FunctionName=args["FunctionName"])

    model = "ValidationException"
    rejected(loose, model, FunctionName="bad name!")
    rejected(loose, model, FunctionName="bad.name")
    rejected(FunctionName="x" * 65)
    n64 = (unique("cp") + "x" * 64)[:64]
    assert create(lam, name=n64)[2]["FunctionName"] == n64  # 64 is fine
    rejected(Runtime="python2.0")
    rejected(Code={"ZipFile": b"this is not a zip file"})
    rejected(Code={"ZipFile": b"PK\x03\x04 truncated"})
    rejected(Handler=None)
    rejected(loose, model, Handler="app handler")
    rejected(Code={})
    rejected(loose, model, Timeout=0)
    rejected(loose, Timeout=901)
    rejected(loose, model, MemorySize=64)
    rejected(loose, model, Role="")
    rejected(loose, model, Role="lambda-role")
    rejected(loose, model, Environment={"Variables": {"1BAD": "x"}})
    rejected(loose, model, Architectures=["sparc"])


def test_environment_variable_rules(lam):
    """AWS's rules for variable names: the model's key pattern (a letter, then one or more
    letters, digits or underscores), no key Lambda reserves, 4 KB in all. A rejected update
    leaves the configuration as it was."""
    name, _, _ = create(lam, Environment={"Variables": {"KEEP": "1"}})
    update = lam.update_function_configuration
    err = expect_error("InvalidParameterValueException", 400, update, FunctionName=name,
                       Environment={"Variables": {"AWS_REGION": "x", "OK_1": "y", "AWS_ACCESS_KEY_ID": "k"}})
    assert err["Error"]["Message"] == (
        "Lambda was unable to configure your environment variables because the environment variables you have "
        "provided contains reserved keys that are currently not supported for modification. "
        "Reserved keys used in this request: AWS_ACCESS_KEY_ID, AWS_REGION")
    for key in ("LAMBDA_TASK_ROOT", "AWS_LAMBDA_RUNTIME_API", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        expect_error("InvalidParameterValueException", 400, update, FunctionName=name, Environment={"Variables": {key: "x"}})
    for key in ("A", "1A", "A-B", "_HANDLER", "ÄB", "", "A B"):
        err = expect_error("ValidationException", 400, update, FunctionName=name,
                           Environment={"Variables": {key: "x"}})
        assert "[a-zA-Z]([a-zA-Z0-9_])+" in err["Error"]["Message"], key
    expect_error("InvalidParameterValueException", 400, update, FunctionName=name,
                 Environment={"Variables": {"BIG": "x" * 4097}})
    expect_error("InvalidParameterValueException", 400, create, lam, Environment={"Variables": {"AWS_REGION": "x"}})
    assert lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"] == {"KEEP": "1"}
    # Not reserved: AWS lets a function set these.
    ok = {"TZ": "Europe/Paris", "LANG": "C.UTF-8", "PATH": "/x", "PYTHONPATH": "/p", "AWS_LAMBDA_EXEC_WRAPPER": "/opt/w", "AB": "1"}
    assert update(FunctionName=name, Environment={"Variables": ok})["Environment"]["Variables"] == ok


def test_not_found_names_the_function_arn(lam):
    """Every operation on a missing function answers 404 with AWS's message."""
    missing = unique("cp-missing")
    want = f"Function not found: {fn_arn(missing)}"
    calls = [
        (lam.get_function, {}),
        (lam.get_function_configuration, {}),
        (lam.delete_function, {}),
        (lam.update_function_code, {"ZipFile": make_zip({"app.py": HANDLER_SRC})}),
        (lam.update_function_configuration, {"Timeout": 5}),
        (lam.publish_version, {}),
        (lam.list_versions_by_function, {}),
        (lam.list_aliases, {}),
        (lam.get_function_concurrency, {}),
        (lam.delete_function_concurrency, {}),
    ]
    for call, kw in calls:
        err = expect_error("ResourceNotFoundException", 404, call, FunctionName=missing, **kw)
        assert err["Error"]["Message"] == want, (call, err["Error"]["Message"])
    # PutFunctionConcurrency names the function as :$LATEST (AWS's recorded answer).
    err = expect_error("ResourceNotFoundException", 404, lam.put_function_concurrency,
                       FunctionName=missing, ReservedConcurrentExecutions=1)
    assert err["Error"]["Message"] == f"Function not found: {fn_arn(missing, qualifier='$LATEST')}"
    # CreateAlias names the version the alias was to point at (AWS's recorded answer).
    err = expect_error("ResourceNotFoundException", 404, lam.create_alias,
                       FunctionName=missing, Name="a", FunctionVersion="1")
    assert err["Error"]["Message"] == f"Function not found: {fn_arn(missing, qualifier='1')}"
    err = expect_error("ResourceNotFoundException", 404, lam.get_function, FunctionName=missing, Qualifier="3")
    assert err["Error"]["Message"] == f"Function not found: {fn_arn(missing, qualifier='3')}"
    for call, kw in [(lam.tag_resource, {"Tags": {"a": "b"}}), (lam.untag_resource, {"TagKeys": ["a"]}),
                     (lam.list_tags, {})]:
        expect_error("ResourceNotFoundException", 404, call, Resource=fn_arn(missing), **kw)


def test_malformed_json_is_invalid_request_content(server):
    for body in (b"{not json", b'{"FunctionName": "x",', b"[1, 2]"):
        status, headers, raw = http(server, "POST", "/2015-03-31/functions", body=body,
                                    headers={"Content-Type": "application/json"})
        assert status == 400, raw
        assert headers["x-amzn-ErrorType"] == "InvalidRequestContentException"
        assert headers["x-amzn-RequestId"]
        msg = json.loads(raw)
        assert msg.get("message") or msg.get("Message")
    # Wrong member types are InvalidRequestContent too, not a 500.
    status, headers, _ = http(server, "POST", "/2015-03-31/functions",
                              body=json.dumps({"FunctionName": 5, "Role": ROLE, "Code": {}}).encode())
    assert status == 400 and headers["x-amzn-ErrorType"] == "InvalidRequestContentException"
    # Unknown operations are a clean 4xx with an error type.
    status, headers, _ = http(server, "PATCH", "/2015-03-31/functions/x/nothing-here")
    assert 400 <= status < 500 and headers["x-amzn-ErrorType"]


def test_invoke_payload_too_large(server, lam):
    name, _, _ = create(lam)
    err = expect_error("RequestTooLargeException", 413, lam.invoke,
                       FunctionName=name, Payload=b"x" * (6 * 1024 * 1024 + 1))
    assert err["Error"]["Message"]
    # Still serving.
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name


# ---------- zip safety ----------

def _hostile_zips(tag):
    def one(name, data, mode=0o100644):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("app.py", HANDLER_SRC)
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.create_system = 3
            z.writestr(info, data)
        return buf.getvalue()

    return {
        "dotdot": one(f"../../evil-{tag}.txt", "pwned"),
        "deep-dotdot": one(f"lib/../../../../../../../../tmp/evil-{tag}.txt", "pwned"),
        "absolute": one(f"/tmp/evil-{tag}", "pwned"),
        "symlink-out": one("escape", "../../../../../../../../tmp", mode=0o120777),
        "symlink-abs": one("escape", "/tmp", mode=0o120777),
    }


def _listing(root):
    out = set()
    for d, dirs, files in os.walk(root):
        for f in files + dirs:
            out.add(os.path.join(d, f))
    return out


def test_zip_slip_rejected(server, lam):
    tag = unique("slip")
    parent = os.path.dirname(server.data_dir)
    before_tmp = set(os.listdir("/tmp"))
    before_parent = set(os.listdir(parent))
    blobs_dir = os.path.join(server.data_dir, "lambda", "blobs")
    before_blobs = set(os.listdir(blobs_dir)) if os.path.isdir(blobs_dir) else set()
    for kind, zb in _hostile_zips(tag).items():
        err = expect_error("InvalidParameterValueException", 400, lam.create_function,
                           FunctionName=unique("cp-slip"), Runtime="python3.12", Role=ROLE,
                           Handler="app.handler", Code={"ZipFile": zb})
        assert err["Error"]["Message"], kind
        # Layers get the same check.
        expect_error("InvalidParameterValueException", 400, lam.publish_layer_version,
                     LayerName=unique("cp-slip"), Content={"ZipFile": zb})
    assert not [n for n in os.listdir("/tmp") if tag in n], "zip-slip wrote into /tmp"
    assert set(os.listdir(parent)) - before_parent <= set(os.listdir("/tmp")) - before_tmp
    assert not [p for p in _listing(parent) if tag in p]
    assert not [p for p in _listing(server.data_dir) if "evil" in os.path.basename(p)]
    after_blobs = set(os.listdir(blobs_dir)) if os.path.isdir(blobs_dir) else set()
    assert after_blobs == before_blobs, "a rejected zip was stored"
    # The server keeps serving.
    create(lam)


# ---------- persistence ----------

def _populate(lam, tmp_path):
    zb = make_zip({"app.py": HANDLER_SRC})
    lz = make_zip({"python/lib.py": "Y = 1\n"})
    layer = lam.publish_layer_version(LayerName="persist-layer", Content={"ZipFile": lz})
    local = tmp_path / "layer.zip"
    local.write_bytes(lz)
    lam.create_function(FunctionName="persist-a", Runtime="python3.12", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": zb}, Tags={"k": "v"}, Environment={"Variables": {"EV": "1"}},
                        Layers=[layer["LayerVersionArn"], str(local)])
    lam.create_function(FunctionName="persist-b", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": zb}, Timeout=42)
    lam.publish_version(FunctionName="persist-a")
    lam.create_alias(FunctionName="persist-a", Name="live", FunctionVersion="1")
    lam.put_function_concurrency(FunctionName="persist-b", ReservedConcurrentExecutions=3)
    return zb, lz, layer


def _check_state(lam, zb, lz, layer):
    names = {f["FunctionName"] for f in lam.list_functions()["Functions"]}
    assert {"persist-a", "persist-b"} <= names
    a = lam.get_function(FunctionName="persist-a")
    assert a["Configuration"]["CodeSha256"] == code_sha256(zb)
    assert a["Configuration"]["Environment"]["Variables"] == {"EV": "1"}
    assert a["Configuration"]["Layers"][0] == {"Arn": layer["LayerVersionArn"], "CodeSize": len(lz)}
    assert a["Tags"] == {"k": "v"}
    with urllib.request.urlopen(a["Code"]["Location"], timeout=10) as r:
        assert r.read() == zb
    assert lam.get_alias(FunctionName="persist-a", Name="live")["FunctionVersion"] == "1"
    assert lam.get_function(FunctionName="persist-a", Qualifier="live")["Configuration"]["Version"] == "1"
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName="persist-a")["Versions"]] == ["$LATEST", "1"]
    assert lam.get_function_configuration(FunctionName="persist-b")["Timeout"] == 42
    assert lam.get_function_concurrency(FunctionName="persist-b")["ReservedConcurrentExecutions"] == 3
    got = lam.get_layer_version(LayerName="persist-layer", VersionNumber=1)
    assert got["Content"]["CodeSha256"] == code_sha256(lz)
    expect_error("ResourceConflictException", 409, lam.create_function, FunctionName="persist-b",
                 Runtime="python3.12", Role=ROLE, Handler="app.handler", Code={"ZipFile": zb})


def test_restart_keeps_everything(fresh_server, tmp_path):
    srv = fresh_server()
    lam = srv.client("lambda")
    zb, lz, layer = _populate(lam, tmp_path)
    _check_state(lam, zb, lz, layer)

    srv.kill()  # SIGKILL: no chance to flush anything
    srv.start()
    lam = srv.client("lambda")
    _check_state(lam, zb, lz, layer)
    # Counters survive too: the next numbers are not reused.
    assert lam.publish_layer_version(LayerName="persist-layer", Content={"ZipFile": lz})["Version"] == 2
    lam.update_function_code(FunctionName="persist-a", ZipFile=make_zip({"app.py": HANDLER_SRC + "#2\n"}))
    assert lam.publish_version(FunctionName="persist-a")["Version"] == "2"
    lam.tag_resource(Resource=fn_arn("persist-b"), Tags={"after": "kill"})

    srv.restart()  # graceful
    lam = srv.client("lambda")
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName="persist-a")["Versions"]] == ["$LATEST", "1", "2"]
    assert lam.list_tags(Resource=fn_arn("persist-b"))["Tags"] == {"after": "kill"}
    assert [v["Version"] for v in lam.list_layer_versions(LayerName="persist-layer")["LayerVersions"]] == [2, 1]
    lam.delete_function(FunctionName="persist-b")
    srv.kill()
    srv.start()
    lam = srv.client("lambda")
    expect_error("ResourceNotFoundException", 404, lam.get_function, FunctionName="persist-b")
    assert lam.get_alias(FunctionName="persist-a", Name="live")["FunctionVersion"] == "1"


def test_permissions_policy(lam):
    """AddPermission / GetPolicy / RemovePermission: the statements AWS writes, per qualifier."""
    name, _, _ = create(lam)
    expect_error("ResourceNotFoundException", 404, lam.get_policy, FunctionName=name)
    r = lam.add_permission(FunctionName=name, StatementId="s3-invoke", Action="lambda:InvokeFunction",
                           Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::my-bucket", SourceAccount="123456789012")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 201
    st = json.loads(r["Statement"])
    assert st == {"Sid": "s3-invoke", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
                  "Action": "lambda:InvokeFunction", "Resource": fn_arn(name),
                  "Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::my-bucket"},
                                "StringEquals": {"AWS:SourceAccount": "123456789012"}}}
    lam.add_permission(FunctionName=name, StatementId="acct", Action="lambda:GetFunction", Principal="111122223333")
    pol = lam.get_policy(FunctionName=name)
    doc = json.loads(pol["Policy"])
    assert doc["Version"] == "2012-10-17" and [s["Sid"] for s in doc["Statement"]] == ["s3-invoke", "acct"]
    assert doc["Statement"][1]["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}
    assert pol["RevisionId"] == lam.get_function_configuration(FunctionName=name)["RevisionId"]
    err = expect_error("ResourceConflictException", 409, lam.add_permission, FunctionName=name, StatementId="acct",
                       Action="lambda:InvokeFunction", Principal="*")
    assert "The statement id (acct) provided already exists" in err["Error"]["Message"]
    expect_error("ValidationException", 400, lam.add_permission, FunctionName=name, StatementId="bad sid",
                 Action="lambda:InvokeFunction", Principal="*")
    expect_error("ValidationException", 400, lam.add_permission, FunctionName=name, StatementId="x",
                 Action="s3:GetObject", Principal="*")
    # Per qualifier: an alias has its own policy; a missing qualifier is not found.
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lam.add_permission(FunctionName=name, Qualifier="live", StatementId="alias-only", Action="lambda:InvokeFunction",
                       Principal="apigateway.amazonaws.com")
    alias_doc = json.loads(lam.get_policy(FunctionName=name, Qualifier="live")["Policy"])
    assert [s["Resource"] for s in alias_doc["Statement"]] == [fn_arn(name) + ":live"]
    expect_error("ResourceNotFoundException", 404, lam.add_permission, FunctionName=name, Qualifier="nope",
                 StatementId="x", Action="lambda:InvokeFunction", Principal="*")
    # Remove, then not found; the last statement gone means no policy at all.
    lam.remove_permission(FunctionName=name, StatementId="s3-invoke")
    err = expect_error("ResourceNotFoundException", 404, lam.remove_permission, FunctionName=name, StatementId="s3-invoke")
    assert err["Error"]["Message"] == "Statement s3-invoke is not found in resource policy."
    lam.remove_permission(FunctionName=name, StatementId="acct")
    expect_error("ResourceNotFoundException", 404, lam.get_policy, FunctionName=name)
    assert json.loads(lam.get_policy(FunctionName=name, Qualifier="live")["Policy"])["Statement"][0]["Sid"] == "alias-only"


def test_functions_and_layers_are_regional(fresh_server):
    """As on AWS, each region has its own functions and layers: the same name in two regions
    is two functions, each listed, invoked, deleted and persisted on its own."""
    srv = fresh_server()

    def client(region):
        cfg = Config(retries={"max_attempts": 1, "mode": "standard"})
        creds = dict(CREDS, region_name=region)
        return boto3.client("lambda", endpoint_url=srv.endpoint, config=cfg, **creds)

    east, west = client("us-east-1"), client("eu-west-1")
    src = "import os\ndef handler(e, c):\n    return [%r, os.environ['AWS_REGION'], c.invoked_function_arn]\n"
    for lam, tag in ((east, "east"), (west, "west")):
        lam.create_function(FunctionName="same", Runtime="python3.12", Role=ROLE, Handler="app.handler",
                            Code={"ZipFile": make_zip({"app.py": src % tag})})
    expect_error("ResourceConflictException", 409, west.create_function, FunctionName="same", Runtime="python3.12",
                 Role=ROLE, Handler="app.handler", Code={"ZipFile": make_zip({"app.py": src % "again"})})
    west_only = unique("west-only")
    west.create_function(FunctionName=west_only, Runtime="python3.12", Role=ROLE, Handler="app.handler",
                         Code={"ZipFile": make_zip({"app.py": src % "w2"})})

    def result(lam, name):
        return invoke(lam, name, decode=True)[1]

    assert result(east, "same") == ["east", "us-east-1", "arn:aws:lambda:us-east-1:000000000000:function:same"]
    assert result(west, "same") == ["west", "eu-west-1", "arn:aws:lambda:eu-west-1:000000000000:function:same"]
    assert sorted(f["FunctionName"] for f in west.list_functions()["Functions"]) == sorted(["same", west_only])
    assert [f["FunctionName"] for f in east.list_functions()["Functions"]] == ["same"]
    expect_error("ResourceNotFoundException", 404, east.get_function, FunctionName=west_only)
    assert east.get_account_settings()["AccountUsage"]["FunctionCount"] == 1
    assert west.get_account_settings()["AccountUsage"]["FunctionCount"] == 2
    layer = west.publish_layer_version(LayerName="regional", Content={"ZipFile": make_zip({"python/x.py": "X = 1\n"})})
    assert layer["LayerVersionArn"].startswith("arn:aws:lambda:eu-west-1:")
    assert east.list_layers()["Layers"] == [] and len(west.list_layers()["Layers"]) == 1
    east.delete_function(FunctionName="same")
    assert result(west, "same")[0] == "west"

    srv.kill()
    srv.start()
    east, west = client("us-east-1"), client("eu-west-1")
    assert east.list_functions()["Functions"] == []
    assert sorted(f["FunctionName"] for f in west.list_functions()["Functions"]) == sorted(["same", west_only])
    assert result(west, "same")[0] == "west"
    assert [lv["Version"] for lv in west.list_layer_versions(LayerName="regional")["LayerVersions"]] == [1]
    # The default region keeps the layout of data dirs from before regions were kept apart.
    east.create_function(FunctionName="legacy-place", Runtime="python3.12", Role=ROLE, Handler="app.handler",
                         Code={"ZipFile": make_zip({"app.py": src % "e"})})
    assert os.path.isfile(os.path.join(srv.data_dir, "lambda", "functions", "legacy-place.json"))
    assert os.path.isfile(os.path.join(srv.data_dir, "lambda", "regions", "eu-west-1", "functions", "same.json"))


# ---------- AWS CLI ----------

def test_aws_cli(server, tmp_path):
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="", AWS_CONFIG_FILE=os.devnull,
               AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    zip_path = tmp_path / "fn.zip"
    zb = make_zip({"app.py": HANDLER_SRC})
    zip_path.write_bytes(zb)
    name = unique("cp-cli")
    base = [aws, "--endpoint-url", server.endpoint, "--output", "json", "lambda"]
    out = subprocess.run(base + ["create-function", "--function-name", name, "--runtime", "python3.12",
                                 "--role", ROLE, "--handler", "app.handler",
                                 "--zip-file", f"fileb://{zip_path}"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["FunctionArn"] == fn_arn(name)
    assert created["CodeSha256"] == code_sha256(zb)
    out = subprocess.run(base + ["list-functions"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert name in {f["FunctionName"] for f in json.loads(out.stdout)["Functions"]}
    out = subprocess.run(base + ["get-function", "--function-name", "cp-cli-does-not-exist"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "ResourceNotFoundException" in out.stderr


# ---------- code from S3 (needs the S3 service) ----------

def test_create_function_from_s3(server, lam):
    s3 = server.client("s3")
    bucket = unique("cp-code").lower()
    s3.create_bucket(Bucket=bucket)
    zb = make_zip({"app.py": HANDLER_SRC})
    s3.put_object(Bucket=bucket, Key="code/fn.zip", Body=zb)
    name = unique("cp-s3")
    resp = lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
                               Code={"S3Bucket": bucket, "S3Key": "code/fn.zip"})
    assert resp["CodeSha256"] == code_sha256(zb) and resp["CodeSize"] == len(zb)
    expect_error("InvalidParameterValueException", 400, lam.create_function,
                 FunctionName=unique("cp-s3"), Runtime="python3.12", Role=ROLE, Handler="app.handler",
                 Code={"S3Bucket": bucket, "S3Key": "code/missing.zip"})
    expect_error("InvalidParameterValueException", 400, lam.create_function,
                 FunctionName=unique("cp-s3"), Runtime="python3.12", Role=ROLE, Handler="app.handler",
                 Code={"S3Bucket": bucket + "-nope", "S3Key": "code/fn.zip"})
    # Update from S3, and a pinned object version.
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    zv1 = make_zip({"app.py": HANDLER_SRC + "# s3 v1\n"})
    zv2 = make_zip({"app.py": HANDLER_SRC + "# s3 v2\n"})
    v1 = s3.put_object(Bucket=bucket, Key="code/v.zip", Body=zv1)["VersionId"]
    s3.put_object(Bucket=bucket, Key="code/v.zip", Body=zv2)
    up = lam.update_function_code(FunctionName=name, S3Bucket=bucket, S3Key="code/v.zip", S3ObjectVersion=v1)
    assert up["CodeSha256"] == code_sha256(zv1)
    up = lam.update_function_code(FunctionName=name, S3Bucket=bucket, S3Key="code/v.zip")
    assert up["CodeSha256"] == code_sha256(zv2)
    layer = lam.publish_layer_version(LayerName=unique("cp-s3layer"),
                                      Content={"S3Bucket": bucket, "S3Key": "code/fn.zip"})
    assert layer["Content"]["CodeSha256"] == code_sha256(zb)
