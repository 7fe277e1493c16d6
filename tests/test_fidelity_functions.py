"""Function operations answer as AWS does (issue 11): every expected status, error code and
message below is the one recorded from real AWS in LocalStack's Lambda API snapshots
(test_lambda_api.snapshot.json), driven with boto3 against the real binary."""
import json

import boto3
import pytest
from botocore.config import Config

from conftest import CREDS, expect_error, make_zip, unique

ROLE = "arn:aws:iam::000000000000:role/lambda"
ACCOUNT = "000000000000"
SRC = "def handler(event, context):\n    return {'version': context.function_version}\n"


def fn_arn(name, region="us-east-1", qualifier=None, account=ACCOUNT):
    arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def create(lam, name=None, **kw):
    name = name or unique("fid")
    kw.setdefault("Runtime", "python3.12")
    kw.setdefault("Handler", "app.handler")
    resp = lam.create_function(FunctionName=name, Role=ROLE, Code={"ZipFile": make_zip({"app.py": SRC})}, **kw)
    return name, resp


def active(lam, name):
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})


@pytest.fixture(scope="module")
def raw(server):
    """A client that sends what it is given (boto3 would refuse some inputs itself)."""
    return server.client("lambda", parameter_validation=False)


# ---------- regions and accounts in ARNs ----------

OTHER_REGION_MSG = "Functions from 'eu-central-1' are not reachable in this region ('us-east-1')"


def test_arn_of_another_region_is_404_and_acts_on_nothing(lam):
    name, _ = create(lam)
    active(lam, name)
    wrong = fn_arn(name, region="eu-central-1")
    for call, kw in [
        (lam.get_function, {}),
        (lam.get_function_configuration, {}),
        (lam.get_function_concurrency, {}),
        (lam.update_function_configuration, {"Timeout": 9}),
        (lam.publish_version, {}),
        (lam.list_aliases, {}),
        (lam.invoke, {}),
        (lam.delete_function, {}),
    ]:
        err = expect_error("ResourceNotFoundException", 404, call, FunctionName=wrong, **kw)
        assert err["Error"]["Message"] == OTHER_REGION_MSG, call
    # The partial form with a region is refused the same way.
    err = expect_error("ResourceNotFoundException", 404, lam.delete_function,
                       FunctionName=f"eu-central-1:{ACCOUNT}:function:{name}")
    assert err["Error"]["Message"] == OTHER_REGION_MSG
    # Nothing was deleted or changed in us-east-1.
    cfg = lam.get_function_configuration(FunctionName=name)
    assert cfg["Timeout"] == 3
    # Tags take a function ARN too.
    err = expect_error("ResourceNotFoundException", 404, lam.list_tags, Resource=wrong)
    assert err["Error"]["Message"] == OTHER_REGION_MSG


def test_create_with_an_arn_of_another_region(lam):
    name = unique("fid-region")
    err = expect_error("ResourceNotFoundException", 404, lam.create_function,
                       FunctionName=fn_arn(name, region="ap-southeast-1"), Role=ROLE, Runtime="python3.12",
                       Handler="app.handler", Code={"ZipFile": make_zip({"app.py": SRC})})
    assert err["Error"]["Message"] == "Functions from 'ap-southeast-1' are not reachable in this region ('us-east-1')"
    expect_error("ResourceNotFoundException", 404, lam.get_function, FunctionName=name)


def test_arn_of_another_account_is_access_denied(lam):
    name, _ = create(lam)
    other = fn_arn(name, account="123456789012")
    for call in (lam.get_function, lam.invoke, lam.delete_function):
        expect_error("AccessDeniedException", 403, call, FunctionName=other)
    expect_error("AccessDeniedException", 403, lam.create_function,
                 FunctionName=fn_arn(unique("fid-acct"), account="123456789012"), Role=ROLE,
                 Runtime="python3.12", Handler="app.handler", Code={"ZipFile": make_zip({"app.py": SRC})})
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name


# ---------- names, qualifiers and not-found messages ----------

def test_not_found_messages_keep_aws_qualifier_suffix(lam):
    missing = unique("fid-missing")
    cases = [
        (lam.get_function, {}, fn_arn(missing)),
        (lam.get_function, {"Qualifier": "1221"}, fn_arn(missing, qualifier="1221")),
        (lam.get_function_configuration, {"Qualifier": "1221"}, fn_arn(missing, qualifier="1221")),
        # Invoke names an unqualified function as :$LATEST.
        (lam.invoke, {}, fn_arn(missing, qualifier="$LATEST")),
        # A lowercase $latest is just a qualifier that does not exist.
        (lam.get_function, {"Qualifier": "$latest"}, fn_arn(missing, qualifier="$latest")),
        (lam.invoke, {"Qualifier": "$latest"}, fn_arn(missing, qualifier="$latest")),
        (lam.delete_function, {"Qualifier": "$latest"}, fn_arn(missing)),
        # A matching qualifier in the ARN and the parameter is looked up.
        (lam.get_function, {"FunctionName": fn_arn(missing, qualifier="$LATEST"), "Qualifier": "$LATEST"},
         fn_arn(missing, qualifier="$LATEST")),
    ]
    for call, kw, arn in cases:
        kw = {"FunctionName": missing, **kw}
        err = expect_error("ResourceNotFoundException", 404, call, **kw)
        assert err["Error"]["Message"] == f"Function not found: {arn}", (call, kw)


def test_long_name_and_arn_without_name_are_404(lam):
    long = "a" * 65
    for call, suffix in [(lam.get_function, None), (lam.delete_function, None), (lam.invoke, "$LATEST")]:
        err = expect_error("ResourceNotFoundException", 404, call, FunctionName=long)
        assert err["Error"]["Message"] == f"Function not found: {fn_arn(long, qualifier=suffix)}"
    # `arn:...:function` names the function `function`.
    bare = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function"
    for call, suffix in [(lam.get_function, None), (lam.delete_function, None), (lam.invoke, "$LATEST")]:
        err = expect_error("ResourceNotFoundException", 404, call, FunctionName=bare)
        assert err["Error"]["Message"] == f"Function not found: {fn_arn('function', qualifier=suffix)}"
    # CreateFunction holds names to 64 characters.
    err = expect_error("InvalidParameterValueException", 400, lam.create_function, FunctionName=long, Role=ROLE,
                       Runtime="python3.12", Handler="app.handler", Code={"ZipFile": make_zip({"app.py": SRC})})
    assert err["Error"]["Message"] == (
        f"1 validation error detected: Value '{long}' at 'functionName' failed to satisfy constraint: "
        "Member must have length less than or equal to 64")


def test_overlong_arn_of_invalid_region(lam):
    # test_function_name_and_qualifier_validation[function_name_too_long_and_invalid_region-*]: Get,
    # Delete and Invoke report the pattern only (past 140 characters for Delete too); Create reports
    # its 140-character limit first, then its own (stricter) pattern.
    arn = f"arn:aws:lambda:invalid-region:{ACCOUNT}:function:my-function" + "a" * 170
    loose_pattern = ("(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:)?"
                     "(\\d{12}:)?(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST(\\.PUBLISHED)?|[a-zA-Z0-9-_]+))?")
    for call in (lam.get_function, lam.delete_function, lam.invoke):
        err = expect_error("ValidationException", 400, call, FunctionName=arn)
        assert err["Error"]["Message"] == (
            f"1 validation error detected: Value '{arn}' at 'functionName' failed to satisfy constraint: "
            f"Member must satisfy regular expression pattern: {loose_pattern}"), call
    err = expect_error("ValidationException", 400, lam.create_function, FunctionName=arn, Role=ROLE,
                       Runtime="python3.12", Handler="app.handler", Code={"ZipFile": make_zip({"app.py": SRC})})
    assert err["Error"]["Message"] == (
        f"2 validation errors detected: Value '{arn}' at 'functionName' failed to satisfy constraint: Member must "
        f"have length less than or equal to 140; Value '{arn}' at 'functionName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|"
        "(-iso([a-z]?)))?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?")
    # Not recorded as such; follows from the recording above (Delete checks no length): not found.
    long = "a" * 150
    err = expect_error("ResourceNotFoundException", 404, lam.delete_function, FunctionName=long)
    assert err["Error"]["Message"] == f"Function not found: {fn_arn(long)}"


def test_qualifier_in_arn_against_qualifier_parameter(lam):
    arn = fn_arn("some-function", qualifier="1")
    for call in (lam.get_function, lam.get_function_configuration, lam.delete_function, lam.invoke):
        err = expect_error("InvalidParameterValueException", 400, call, FunctionName=arn, Qualifier="$LATEST")
        assert err["Error"]["Message"] == \
            "The derived qualifier from the function name does not match the specified qualifier."
    err = expect_error("InvalidParameterValueException", 400, lam.delete_function,
                       FunctionName=fn_arn("some-function", qualifier="$LATEST"), Qualifier="$LATEST")
    assert err["Error"]["Message"] == "$LATEST version cannot be deleted without deleting the function."


def test_delete_function_qualifiers(lam):
    name, _ = create(lam)
    active(lam, name)
    # A version that does not exist is already deleted: 204, again and again.
    for _ in range(2):
        r = lam.delete_function(FunctionName=name, Qualifier="1233")
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    err = expect_error("InvalidParameterValueException", 400, lam.delete_function,
                       FunctionName=name, Qualifier="some-alias")
    assert err["Error"]["Message"] == "Deletion of aliases is not currently supported."
    lam.delete_function(FunctionName=name)
    for kw in ({}, {"Qualifier": "1233"}):
        err = expect_error("ResourceNotFoundException", 404, lam.delete_function, FunctionName=name, **kw)
        assert err["Error"]["Message"] == f"Function not found: {fn_arn(name)}"


# ---------- configuration checks ----------

ENV_LIMIT_MSG = ("Lambda was unable to configure your environment variables because the environment variables "
                 "you have provided exceeded the 4KB limit. String measured: ")


def test_environment_limit_is_measured_as_serialized_json(lam):
    # 4 KB minus 6 for the key and value: with `{"":""}` around them, one byte too many.
    big = {"LARGE_VAR": "x" * (4096 - 6 - len("LARGE_VAR"))}
    name = unique("fid-env")
    err = expect_error("InvalidParameterValueException", 400, create, lam, name=name,
                       Environment={"Variables": big})
    assert err["Error"]["Message"] == ENV_LIMIT_MSG + json.dumps(big, separators=(",", ":"))
    expect_error("ResourceNotFoundException", 404, lam.get_function, FunctionName=name)
    # One byte less fits exactly.
    near = {"LARGE_VAR": "x" * (4096 - 7 - len("LARGE_VAR"))}
    _, resp = create(lam, Environment={"Variables": near})
    assert resp["Environment"] == {"Variables": near}
    # Several keys count their quotes, colons and commas too; the message keeps the request's order.
    multi = {"SMALL_VAR": "ok", "LARGE_VAR": "x" * (4096 - 6 - len("LARGE_VAR") - len('"SMALL_VAR":"ok",'))}
    err = expect_error("InvalidParameterValueException", 400, create, lam, Environment={"Variables": multi})
    assert err["Error"]["Message"] == ENV_LIMIT_MSG + json.dumps(multi, separators=(",", ":"))
    assert '{"SMALL_VAR":"ok","LARGE_VAR":"xxx' in err["Error"]["Message"]
    # UpdateFunctionConfiguration measures the same way.
    name, _ = create(lam)
    active(lam, name)
    err = expect_error("InvalidParameterValueException", 400, lam.update_function_configuration,
                       FunctionName=name, Environment={"Variables": big})
    assert err["Error"]["Message"] == ENV_LIMIT_MSG + json.dumps(big, separators=(",", ":"))


@pytest.mark.parametrize("runtime", ["java8", "go1.x", "provided", "ruby2.7", "nodejs14.x", "python3.7",
                                     "dotnetcore3.1", "nodejs12.x"])
def test_deprecated_runtimes_are_refused(lam, runtime):
    err = expect_error("InvalidParameterValueException", 400, create, lam, Runtime=runtime)
    assert err["Error"]["Message"] == (
        f"The runtime parameter of {runtime} is no longer supported for creating or updating AWS Lambda "
        "functions. We recommend you use a supported runtime while creating or updating functions.")


def test_unknown_runtime_lists_the_creatable_ones(lam):
    err = expect_error("InvalidParameterValueException", 400, create, lam, Runtime="non-existent-runtime")
    assert err["Error"]["Message"] == (
        "Value non-existent-runtime at 'runtime' failed to satisfy constraint: Member must satisfy enum value "
        "set: [nodejs20.x, python3.14, provided.al2023, python3.12, python3.13, nodejs24.x, nodejs22.x, java25, "
        "python3.10, python3.11, java21, ruby3.3, ruby3.4, ruby3.2, python3.8, python3.9, java17, nodejs16.x, "
        "dotnet10, dotnet8, java11, dotnet6, nodejs18.x, provided.al2, java8.al2] or be a valid ARN")


def test_list_functions_version_filter(raw):
    err = expect_error("ValidationException", 400, raw.list_functions, FunctionVersion="invalid")
    assert err["Error"]["Message"] == ("1 validation error detected: Value 'invalid' at 'functionVersion' failed "
                                       "to satisfy constraint: Member must satisfy enum value set: [ALL]")
    assert "Functions" in raw.list_functions(FunctionVersion="ALL")


# ---------- response shapes ----------

RUNTIME_ARN = "arn:aws:lambda:us-east-1::runtime:"


def test_create_and_get_shapes(lam):
    name, resp = create(lam)
    # CreateFunction: Pending, no LastUpdateStatus, no Environment when none was given.
    assert (resp["State"], resp["StateReason"], resp["StateReasonCode"]) == \
        ("Pending", "The function is being created.", "Creating")
    assert "LastUpdateStatus" not in resp and "Environment" not in resp
    rv = resp["RuntimeVersionConfig"]["RuntimeVersionArn"]
    assert rv.startswith(RUNTIME_ARN) and len(rv) == len(RUNTIME_ARN) + 64
    active(lam, name)
    got = lam.get_function(FunctionName=name)
    assert "Tags" not in got
    cfg = got["Configuration"]
    assert cfg["State"] == "Active" and cfg["LastUpdateStatus"] == "Successful"
    assert "StateReason" not in cfg and "StateReasonCode" not in cfg
    assert cfg["RuntimeVersionConfig"] == {"RuntimeVersionArn": rv}
    assert cfg["RevisionId"] != resp["RevisionId"], "turning Active is a new revision, as on AWS"
    # An empty Environment given is kept as {"Variables": {}}.
    _, resp2 = create(lam, Environment={"Variables": {}})
    assert resp2["Environment"] == {"Variables": {}}


def test_list_versions_items_are_the_list_subset(lam):
    name, _ = create(lam, Publish=True)
    active(lam, name)
    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1"]
    for v in versions:
        for k in ("State", "StateReason", "StateReasonCode", "LastUpdateStatus", "RuntimeVersionConfig"):
            assert k not in v, k


def test_create_with_publish_answers_the_unqualified_arn(lam):
    name, resp = create(lam, Publish=True)
    assert resp["Version"] == "1" and resp["FunctionArn"] == fn_arn(name)
    assert resp["State"] == "Pending"
    active(lam, name)
    v1 = lam.get_function(FunctionName=name, Qualifier="1")["Configuration"]
    assert v1["State"] == "Active" and v1["FunctionArn"] == fn_arn(name, qualifier="1")


def test_publish_version_when_only_the_description_changed(lam):
    name, _ = create(lam, Description="No version :(")
    active(lam, name)
    lam.update_function_configuration(FunctionName=name, Description="First version :)")
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    v1 = lam.publish_version(FunctionName=name, Description="First version description :)")
    assert (v1["Version"], v1["Description"]) == ("1", "First version description :)")
    # Unchanged $LATEST: the same version, whatever Description is asked for.
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    lam.update_function_configuration(FunctionName=name, Description="Second version :))")
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    v2 = lam.publish_version(FunctionName=name)
    assert (v2["Version"], v2["Description"]) == ("2", "Second version :))")
    v2_again = lam.publish_version(FunctionName=name, Description="Third version description :)))")
    assert (v2_again["Version"], v2_again["Description"]) == ("2", "Second version :))")


# ---------- states ----------

def test_states_and_waiters(lam):
    name, resp = create(lam)
    assert resp["State"] == "Pending"
    active(lam, name)
    up = lam.update_function_configuration(FunctionName=name, MemorySize=512)
    assert up["State"] == "Active" and up["LastUpdateStatus"] == "InProgress"
    assert up["LastUpdateStatusReason"] == "The function is being created."
    assert up["LastUpdateStatusReasonCode"] == "Creating"
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    cfg = lam.get_function_configuration(FunctionName=name)
    assert cfg["LastUpdateStatus"] == "Successful" and cfg["MemorySize"] == 512
    assert "LastUpdateStatusReason" not in cfg
    code = lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": SRC + "# v2\n"}))
    assert code["LastUpdateStatus"] == "InProgress"
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    assert lam.get_function(FunctionName=name)["Configuration"]["LastUpdateStatus"] == "Successful"


def test_invoke_during_a_transition_waits_for_it(lam):
    # No waiter: each invoke arrives while the function is Pending or its update InProgress.
    name, resp = create(lam)
    out = lam.invoke(FunctionName=name, Payload=b"{}")
    assert out["StatusCode"] == 200 and "FunctionError" not in out, out
    assert json.loads(out["Payload"].read()) == {"version": "$LATEST"}
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": SRC.replace("'version'", "'v'")}))
    out = lam.invoke(FunctionName=name, Payload=b"{}")
    assert json.loads(out["Payload"].read()) == {"v": "$LATEST"}


# ---------- reserved concurrency ----------

def test_put_function_concurrency_names_and_qualifiers(lam):
    err = expect_error("ResourceNotFoundException", 404, lam.put_function_concurrency,
                       FunctionName="doesnotexist", ReservedConcurrentExecutions=1)
    assert err["Error"]["Message"] == f"Function not found: {fn_arn('doesnotexist', qualifier='$LATEST')}"
    err = expect_error("ResourceNotFoundException", 404, lam.get_function_concurrency, FunctionName="doesnotexist")
    assert err["Error"]["Message"] == f"Function not found: {fn_arn('doesnotexist')}"
    name, _ = create(lam)
    err = expect_error("InvalidParameterValueException", 400, lam.put_function_concurrency,
                       FunctionName=fn_arn(name, qualifier="$LATEST"), ReservedConcurrentExecutions=0)
    assert err["Error"]["Message"] == (
        "This operation is permitted on Lambda functions only. Aliases and versions do not support this "
        "operation. Please specify either a function name or an unqualified function ARN.")
    assert lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)[
        "ReservedConcurrentExecutions"] == 0
    lam.delete_function_concurrency(FunctionName=name)


def test_publish_version_with_wrong_revision_or_sha(lam):
    name, resp = create(lam)
    active(lam, name)
    err = expect_error("PreconditionFailedException", 412, lam.publish_version, FunctionName=name,
                       RevisionId=resp["RevisionId"])
    assert err["Error"]["Message"] == ("The Revision Id provided does not match the latest Revision Id. "
                                       "Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
    err = expect_error("InvalidParameterValueException", 400, lam.publish_version, FunctionName=name,
                       CodeSha256="somenonexistentsha256")
    assert err["Error"]["Message"] == (
        f"CodeSHA256 (somenonexistentsha256) is different from current CodeSHA256 in $LATEST "
        f"({resp['CodeSha256']}). Please try again with the CodeSHA256 in $LATEST.")


def test_invoke_during_a_transition_waits_for_it(fresh_server):
    """An Invoke that arrives while the function is Pending (or its update InProgress) waits for
    the transition, then runs the new code (README: a deliberate difference from AWS's 409).
    The transitions are held for 1.5 s, so each Invoke below arrives during one; that it returns
    only once the function has settled is what shows it waited."""
    srv = fresh_server("--lambda-state-delay-ms", "1500")
    lam = srv.client("lambda")
    name = unique("pending")
    code = "def handler(event, context):\n    return {'code': %r}\n"
    created = lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
                                  Code={"ZipFile": make_zip({"app.py": code % "one"})})
    assert created["State"] == "Pending"
    assert lam.get_function_configuration(FunctionName=name)["State"] == "Pending"
    r = lam.invoke(FunctionName=name, Payload=b"{}")
    assert r["StatusCode"] == 200 and "FunctionError" not in r, r
    assert json.loads(r["Payload"].read()) == {"code": "one"}
    assert lam.get_function_configuration(FunctionName=name)["State"] == "Active"

    updated = lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": code % "two"}))
    assert updated["LastUpdateStatus"] == "InProgress"
    assert lam.get_function_configuration(FunctionName=name)["LastUpdateStatus"] == "InProgress"
    r = lam.invoke(FunctionName=name, Payload=b"{}")
    assert r["StatusCode"] == 200 and "FunctionError" not in r, r
    assert json.loads(r["Payload"].read()) == {"code": "two"}
    assert lam.get_function_configuration(FunctionName=name)["LastUpdateStatus"] == "Successful"
