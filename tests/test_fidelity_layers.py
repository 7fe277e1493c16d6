"""Layers answer as AWS does (status, code and exact message as recorded from AWS in
LocalStack's snapshot tests): not-found answers, version numbers, compatibility lists and
filters, a function's Layers rules, the unzipped limit of function and layers together, and
layer version permissions (which survive a restart)."""
import json
import zipfile
import io

import pytest

from conftest import create_py_function, expect_error, make_zip, unique

ACCOUNT = "000000000000"
CODE = "def handler(e, c):\n    return e\n"
LAYER_ZIP = make_zip({"python/mod.py": "X = 1\n"})


def layer_arn(name, v=None):
    return f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:{name}" + (f":{v}" if v is not None else "")


def msg(err):
    return err["Error"]["Message"]


@pytest.fixture(scope="module")
def loose(server):
    return server.client("lambda", parameter_validation=False)


def publish(lam, name, **kw):
    return lam.publish_layer_version(LayerName=name, Content={"ZipFile": kw.pop("zip", LAYER_ZIP)}, **kw)


def test_compatibility_lists_as_given(lam):
    name = unique("layer")
    r = publish(lam, name)
    assert "CompatibleRuntimes" not in r and "CompatibleArchitectures" not in r
    r = publish(lam, name, CompatibleRuntimes=[], CompatibleArchitectures=[])
    assert r["CompatibleRuntimes"] == [] and r["CompatibleArchitectures"] == []
    got = lam.get_layer_version(LayerName=name, VersionNumber=2)
    assert got["CompatibleRuntimes"] == [] and got["CompatibleArchitectures"] == []
    r = publish(lam, name, CompatibleRuntimes=["python3.12", "go1.x"], CompatibleArchitectures=["arm64", "x86_64"])
    assert r["CompatibleRuntimes"] == ["python3.12", "go1.x"] and r["Version"] == 3
    versions = lam.list_layer_versions(LayerName=name, CompatibleRuntime="go1.x")["LayerVersions"]
    assert [v["Version"] for v in versions] == [3]
    listed = [l for l in lam.list_layers(CompatibleArchitecture="arm64")["Layers"] if l["LayerName"] == name]
    assert listed[0]["LatestMatchingVersion"]["Version"] == 3


def test_layer_refusals(lam, loose):
    name = unique("layer")
    publish(lam, name, CompatibleRuntimes=["python3.12"], CompatibleArchitectures=["x86_64"])
    for call in [lam.list_layers, lambda **kw: lam.list_layer_versions(LayerName=name, **kw)]:
        err = expect_error("ValidationException", 400, call, CompatibleRuntime="runtimedoesnotexist")
        assert msg(err).startswith("1 validation error detected: Value 'runtimedoesnotexist' at 'compatibleRuntime' "
                                   "failed to satisfy constraint: Member must satisfy enum value set: [ruby3.5, ruby2.6, ")
        err = expect_error("ValidationException", 400, call, CompatibleArchitecture="archdoesnotexist")
        assert msg(err) == ("1 validation error detected: Value 'archdoesnotexist' at 'compatibleArchitecture' failed "
                            "to satisfy constraint: Member must satisfy enum value set: [x86_64, arm64]")
    assert lam.list_layer_versions(LayerName=unique("none"))["LayerVersions"] == []
    for layer, v in [(unique("none"), 1), (name, 2)]:
        err = expect_error("ResourceNotFoundException", 404, lam.get_layer_version, LayerName=layer, VersionNumber=v)
        assert msg(err) == "The resource you requested does not exist."
    for v in [0, -1]:
        for call in [loose.get_layer_version, loose.delete_layer_version]:
            err = expect_error("InvalidParameterValueException", 400, call, LayerName=name, VersionNumber=v)
            assert msg(err) == "Layer Version Cannot be less than 1"
    err = expect_error("ValidationException", 400, lam.get_layer_version_by_arn, Arn=layer_arn(name))
    # test_layer_exceptions: AWS prints the pattern without the model's outer parentheses.
    assert msg(err) == (
        f"1 validation error detected: Value '{layer_arn(name)}' at 'arn' failed to satisfy constraint: Member must "
        "satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-"
        "[a-z]+-\\d{1}:\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+)")
    err = expect_error("ResourceNotFoundException", 404, lam.get_layer_version_by_arn, Arn=layer_arn(name, 2))
    assert msg(err) == "The resource you requested does not exist."
    err = expect_error("ValidationException", 400, publish, lam, name, CompatibleRuntimes=["invalidruntime", "nodejs20.x"],
                       CompatibleArchitectures=["invalidarch", "x86_64"])
    assert msg(err).startswith("2 validation errors detected: Value '[invalidruntime, nodejs20.x]' at "
                               "'compatibleRuntimes' failed to satisfy constraint: Member must satisfy enum value "
                               "set: [nodejs20.x, python3.14, ")
    assert msg(err).endswith("; Value '[invalidarch, x86_64]' at 'compatibleArchitectures' failed to satisfy "
                             "constraint: Member must satisfy constraint: [Member must satisfy enum value set: "
                             "[x86_64, arm64], Member must not be null]")
    assert lam.delete_layer_version(LayerName=unique("none"), VersionNumber=1)["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_function_layers_rules(lam):
    name = unique("layer")
    for _ in range(3):
        publish(lam, name)
    v1, v2, v3 = (layer_arn(name, v) for v in (1, 2, 3))
    two = "Two different versions of the same layer are not allowed to be referenced in the same function."
    for layers, pair in [([v1, v2], (v1, v2)), ([v1, v2, v3], (v1, v2)), ([v1, v1], (v1, v1))]:
        err = expect_error("InvalidParameterValueException", 400, create_py_function, lam, CODE, Layers=layers)
        assert msg(err) == f"{two} {pair[0]} and {pair[1]} are versions of the same layer."
    for missing in [layer_arn("doesnotexist", 1), layer_arn(name, 9)]:
        err = expect_error("InvalidParameterValueException", 400, create_py_function, lam, CODE, Layers=[missing])
        assert msg(err) == f"Layer version {missing} does not exist."
    other_region = v1.replace("us-east-1", "eu-west-1")
    err = expect_error("InvalidParameterValueException", 400, create_py_function, lam, CODE, Layers=[other_region])
    assert msg(err) == "Layers are not in the same region as the function. Layers are expected to be in region us-east-1."
    err = expect_error("ValidationException", 400, create_py_function, lam, CODE, Layers=[layer_arn(name)])
    assert msg(err) == (
        f"1 validation error detected: Value '[{layer_arn(name)}]' at 'layers' failed to satisfy constraint: Member "
        "must satisfy constraint: [Member must have length less than or equal to 2048, Member must have length "
        "greater than or equal to 1, Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:"
        "(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:"
        "lambda:::awslayer:[a-zA-Z0-9-_]+), Member must not be null]")
    err = expect_error("InvalidParameterValueException", 400, create_py_function, lam, CODE, Layers=[v1] * 6)
    assert msg(err) == "Cannot reference more than 5 layers."
    fn = create_py_function(lam, CODE, Layers=[v1])
    err = expect_error("InvalidParameterValueException", 400, lam.update_function_configuration, FunctionName=fn,
                       Layers=[v2, v3])
    assert msg(err) == f"{two} {v2} and {v3} are versions of the same layer."


def big_zip(zeros, small=None):
    """A zip with files of zeros ({name: size}) and small text files; deflate keeps it small."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for n, size in zeros.items():
            with z.open(n, "w") as f:
                chunk = b"\0" * (1 << 20)
                while size:
                    f.write(chunk[:min(size, len(chunk))])
                    size -= min(size, len(chunk))
        for n, text in (small or {}).items():
            z.writestr(n, text)
    return buf.getvalue()


def test_unzipped_limit_counts_function_and_layers(lam):
    layer_size = 200_000_000
    code = "def handler(e, c):\n    return 1\n"
    lv = publish(lam, unique("biglayer"), zip=big_zip({"python/blob.bin": layer_size}))["LayerVersionArn"]
    fn = create_py_function(lam, code, Layers=[lv])
    # Exactly at the limit is accepted; one byte over is refused with AWS's message.
    pad = 262_144_000 - layer_size - len(code)
    lam.update_function_code(FunctionName=fn, ZipFile=big_zip({"pad.bin": pad}, {"app.py": code}))
    err = expect_error("InvalidParameterValueException", 400, lam.update_function_code, FunctionName=fn,
                       ZipFile=big_zip({"pad.bin": pad + 1}, {"app.py": code}))
    assert msg(err) == ("Function code combined with layers exceeds the maximum allowed size of 262144000 bytes. "
                        "The actual size is 262144001 bytes.")
    plain = create_py_function(lam, code)
    lam.update_function_code(FunctionName=plain, ZipFile=big_zip({"pad.bin": pad + 1}, {"app.py": code}))
    err = expect_error("InvalidParameterValueException", 400, lam.update_function_configuration, FunctionName=plain,
                       Layers=[lv])
    assert msg(err) == ("Function code combined with layers exceeds the maximum allowed size of 262144000 bytes. "
                        "The actual size is 262144001 bytes.")


def test_layer_version_permissions(lam, loose):
    name = unique("layer")
    publish(lam, name)
    err = expect_error("ResourceNotFoundException", 404, lam.get_layer_version_policy, LayerName=name, VersionNumber=1)
    assert msg(err) == "No policy is associated with the given resource."
    add = lambda sid, **kw: lam.add_layer_version_permission(  # noqa: E731
        LayerName=kw.pop("layer", name), VersionNumber=kw.pop("v", 1), StatementId=sid,
        Action=kw.pop("Action", "lambda:GetLayerVersion"), Principal=kw.pop("Principal", "*"), **kw)
    r1 = add("s1")
    assert json.loads(r1["Statement"]) == {"Sid": "s1", "Effect": "Allow", "Principal": "*",
                                           "Action": "lambda:GetLayerVersion", "Resource": layer_arn(name, 1)}
    got = lam.get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert got["RevisionId"] == r1["RevisionId"]
    assert json.loads(got["Policy"]) == {"Version": "2012-10-17", "Id": "default",
                                         "Statement": [json.loads(r1["Statement"])]}
    err = expect_error("ValidationException", 400, add, "s2", Action="*")
    assert msg(err) == ("1 validation error detected: Value '*' at 'action' failed to satisfy constraint: "
                        "Member must satisfy regular expression pattern: lambda:GetLayerVersion")
    # The model's StatementId and Principal patterns (the model layer's text, no local copy).
    err = expect_error("ValidationException", 400, add, "bad.sid")
    assert msg(err) == ("1 validation error detected: Value 'bad.sid' at 'statementId' failed to satisfy constraint: "
                        "Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)")
    err = expect_error("ValidationException", 400, add, "s2", Principal="arn:aws:iam::123456789012:user/x")
    assert msg(err) == ("1 validation error detected: Value 'arn:aws:iam::123456789012:user/x' at 'principal' failed "
                        "to satisfy constraint: Member must satisfy regular expression pattern: "
                        "\\d{12}|\\*|arn:(aws[a-zA-Z-]*):iam::\\d{12}:root")
    err = expect_error("ValidationException", 400, lam.get_layer_version_by_arn, Arn="arn:aws:lambda:us-east-1:1:layer:x:1")
    assert msg(err).startswith("1 validation error detected: Value 'arn:aws:lambda:us-east-1:1:layer:x:1' at 'arn' ")
    err = expect_error("ResourceConflictException", 409, add, "s1")
    assert msg(err) == ("The statement id (s1) provided already exists. Please provide a new statement id, "
                        "or remove the existing statement.")
    mismatch = ("The Revision Id provided does not match the latest Revision Id. "
                "Call the GetLayerPolicy API to retrieve the latest Revision Id")
    err = expect_error("PreconditionFailedException", 412, add, "s2", RevisionId="wrong")
    assert msg(err) == mismatch
    for layer, v in [(f"{name}-doesnotexist", 1), (name, 2)]:
        want = f"Layer version {layer_arn(layer, v)} does not exist."
        err = expect_error("ResourceNotFoundException", 404, add, "s9", layer=layer, v=v)
        assert msg(err) == want
        err = expect_error("ResourceNotFoundException", 404, lam.get_layer_version_policy, LayerName=layer, VersionNumber=v)
        assert msg(err) == want
        err = expect_error("ResourceNotFoundException", 404, lam.remove_layer_version_permission, LayerName=layer,
                           VersionNumber=v, StatementId="s1")
        assert msg(err) == want
    err = expect_error("ResourceNotFoundException", 404, lam.remove_layer_version_permission, LayerName=name,
                       VersionNumber=1, StatementId="doesnotexist")
    assert msg(err) == "Statement doesnotexist is not found in resource policy."
    err = expect_error("PreconditionFailedException", 412, lam.remove_layer_version_permission, LayerName=name,
                       VersionNumber=1, StatementId="s1", RevisionId="wrong")
    assert msg(err) == mismatch
    r2 = add("s2", Principal="111111111111", OrganizationId="o-1234567890", RevisionId=r1["RevisionId"])
    assert r2["RevisionId"] != r1["RevisionId"]
    assert json.loads(r2["Statement"])["Principal"] == {"AWS": "arn:aws:iam::111111111111:root"}
    assert json.loads(r2["Statement"])["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-1234567890"}}
    lam.remove_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="s2", RevisionId=r2["RevisionId"])
    got = lam.get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert [s["Sid"] for s in json.loads(got["Policy"])["Statement"]] == ["s1"]
    assert got["RevisionId"] not in (r1["RevisionId"], r2["RevisionId"])


def test_layer_policy_survives_restart(fresh_server):
    srv = fresh_server()
    lam = srv.client("lambda")
    name = unique("layer")
    publish(lam, name)
    lam.add_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="s1",
                                     Action="lambda:GetLayerVersion", Principal="*")
    before = lam.get_layer_version_policy(LayerName=name, VersionNumber=1)
    srv.restart()
    after = srv.client("lambda").get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert (after["Policy"], after["RevisionId"]) == (before["Policy"], before["RevisionId"])
