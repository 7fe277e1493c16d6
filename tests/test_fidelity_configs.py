"""Event-invoke configs, function URL configs and provisioned concurrency answer as AWS does
(status, code and exact message as recorded from AWS in LocalStack's snapshot tests)."""
import pytest

from conftest import create_py_function, expect_error

ACCOUNT = "000000000000"
CODE = "def handler(e, c):\n    return e\n"


def arn(name, q=None):
    return f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}" + (f":{q}" if q else "")


def msg(err):
    return err["Error"]["Message"]


@pytest.fixture(scope="module")
def loose(server):
    return server.client("lambda", parameter_validation=False)


@pytest.fixture(scope="module")
def fn(lam):
    """A function with version 1 and alias `live` -> 1."""
    name = create_py_function(lam, CODE)
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    return name


# ---------- event invoke configs ----------

def test_event_invoke_refusals(lam, loose, fn):
    other = create_py_function(lam, CODE)
    put = lam.put_function_event_invoke_config
    for target in ["doesnotexist", arn("doesnotexist")]:
        err = expect_error("ResourceNotFoundException", 404, put, FunctionName=target, MaximumRetryAttempts=1)
        assert msg(err) == "The function doesn't exist."
    err = expect_error("InvalidParameterValueException", 400, put, FunctionName="doesnotexist")
    assert msg(err) == "You must specify at least one of error handling or destination setting."
    err = expect_error("InvalidParameterValueException", 400, put, FunctionName=fn,
                       DestinationConfig={"OnSuccess": {"Destination": arn("doesnotexist")}})
    assert msg(err) == f"The destination ARN {arn('doesnotexist')} is invalid."
    err = expect_error("InvalidParameterValueException", 400, put, FunctionName=fn,
                       DestinationConfig={"OnSuccess": {"Destination": arn(fn)}})
    assert msg(err) == "You can't specify the function as a destination for itself."
    iam = arn(fn).replace(":lambda:", ":iam:")
    err = expect_error("InvalidParameterValueException", 400, put, FunctionName=fn,
                       DestinationConfig={"OnSuccess": {"Destination": iam}})
    assert msg(err) == (f"The provided destination config DestinationConfig(onSuccess=OnSuccess(destination={iam}), "
                        "onFailure=null) is invalid.")
    bad = arn(fn).replace(":lambda:", ":_-/!lambda:")
    err = expect_error("ValidationException", 400, put, FunctionName=fn,
                       DestinationConfig={"OnFailure": {"Destination": bad}})
    assert msg(err).startswith(f"1 validation error detected: Value '{bad}' at 'destinationConfig.onFailure."
                               "destination' failed to satisfy constraint: Member must satisfy regular expression "
                               "pattern: $|kafka://")
    ok = put(FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": arn(other)}})
    assert ok["DestinationConfig"] == {"OnSuccess": {"Destination": arn(other)}, "OnFailure": {}}
    ok = put(FunctionName=fn, DestinationConfig={"OnSuccess": {}})
    assert ok["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
    for kw in [dict(Qualifier="livedoesnotexist"), dict(Qualifier="9")]:
        err = expect_error("ResourceNotFoundException", 404, put, FunctionName=fn, MaximumRetryAttempts=1, **kw)
        assert msg(err) == "The function doesn't exist."
    for target, q in [(arn(fn, "live"), "livex"), (f"{fn}:1", "$LATEST"), (f"{fn}:$LATEST", "1"), (f"{fn}:1", "live")]:
        err = expect_error("InvalidParameterValueException", 400, put, FunctionName=target, Qualifier=q,
                           MaximumRetryAttempts=1)
        assert msg(err) == "The derived qualifier from the function name does not match the specified qualifier."
    err = expect_error("ValidationException", 400, loose.put_function_event_invoke_config, FunctionName=fn,
                       MaximumRetryAttempts=3)
    assert msg(err) == ("1 validation error detected: Value '3' at 'maximumRetryAttempts' failed to satisfy "
                        "constraint: Member must have value less than or equal to 2")
    # The model's ranges of MaximumEventAgeInSeconds (the model layer's text, no local copy).
    for age, bound in [(59, "greater than or equal to 60"), (21601, "less than or equal to 21600")]:
        err = expect_error("ValidationException", 400, loose.put_function_event_invoke_config, FunctionName=fn,
                           MaximumEventAgeInSeconds=age)
        assert msg(err) == (f"1 validation error detected: Value '{age}' at 'maximumEventAgeInSeconds' failed to "
                            f"satisfy constraint: Member must have value {bound}")


def test_event_invoke_qualifiers_and_not_found(lam, fn):
    put = lam.put_function_event_invoke_config
    for target, q, want in [(fn, None, "$LATEST"), (fn, "$LATEST", "$LATEST"), (fn, "1", "1"), (fn, "live", "live"),
                            (arn(fn, "live"), None, "live"), (f"{fn}:live", "live", "live"), (f"{fn}:1", None, "1")]:
        kw = {"Qualifier": q} if q else {}
        r = put(FunctionName=target, MaximumRetryAttempts=1, **kw)
        assert r["FunctionArn"] == arn(fn, want) and "MaximumEventAgeInSeconds" not in r
    listed = lam.list_function_event_invoke_configs(FunctionName=fn)["FunctionEventInvokeConfigs"]
    assert sorted(c["FunctionArn"] for c in listed) == sorted(arn(fn, q) for q in ["$LATEST", "1", "live"])
    for q in ["$LATEST", "1", "live"]:
        lam.delete_function_event_invoke_config(FunctionName=fn, Qualifier=q)
    err = expect_error("ResourceNotFoundException", 404, lam.delete_function_event_invoke_config, FunctionName=fn)
    assert msg(err) == f"The function {arn(fn, '$LATEST')} doesn't have an EventInvokeConfig"
    for call in [lam.delete_function_event_invoke_config, lam.get_function_event_invoke_config]:
        err = expect_error("ResourceNotFoundException", 404, call, FunctionName="doesnotexist")
        assert msg(err) == f"The function {arn('doesnotexist', '$LATEST')} doesn't have an EventInvokeConfig"
    err = expect_error("ResourceNotFoundException", 404, lam.get_function_event_invoke_config, FunctionName=fn,
                       Qualifier="doesnotexist")
    assert msg(err) == f"The function {arn(fn, 'doesnotexist')} doesn't have an EventInvokeConfig"
    err = expect_error("ResourceNotFoundException", 404, lam.list_function_event_invoke_configs,
                       FunctionName="doesnotexist")
    assert msg(err) == "The function doesn't exist."
    err = expect_error("ResourceNotFoundException", 404, lam.update_function_event_invoke_config,
                       FunctionName="doesnotexist", MaximumRetryAttempts=0)
    assert msg(err) == "The function doesn't exist."
    err = expect_error("ResourceNotFoundException", 404, lam.update_function_event_invoke_config,
                       FunctionName=arn(fn, "live"), MaximumRetryAttempts=0)
    assert msg(err) == f"The function {arn(fn, 'live')} doesn't have an EventInvokeConfig"


# ---------- function URL configs ----------

PATTERN = "Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)"


def test_url_config_refusals(lam, fn):
    create = lambda **kw: lam.create_function_url_config(AuthType="NONE", **kw)  # noqa: E731
    update = lambda **kw: lam.update_function_url_config(AuthType="NONE", **kw)  # noqa: E731
    for call, missing in [(create, "Function does not exist"), (update, "Function does not exist"),
                          (lam.get_function_url_config, "The resource you requested does not exist."),
                          (lam.delete_function_url_config, "The resource you requested does not exist.")]:
        for kw in [dict(FunctionName="doesnotexist"), dict(FunctionName=arn("doesnotexist")),
                   dict(FunctionName=fn, Qualifier="livedoesnotexist")]:
            err = expect_error("ResourceNotFoundException", 404, call, **kw)
            assert msg(err) == missing, (call, kw)
        for q in ["1", "2", "$LATEST"]:
            err = expect_error("ValidationException", 400, call, FunctionName=fn, Qualifier=q)
            assert msg(err) == f"1 validation error detected: Value '{q}' at 'qualifier' failed to satisfy constraint: {PATTERN}"
    err = expect_error("ResourceNotFoundException", 404, lam.list_function_url_configs, FunctionName="doesnotexist")
    assert msg(err) == "Function does not exist"
    for call in [create, update, lam.get_function_url_config]:
        err = expect_error("InvalidParameterValueException", 400, call, FunctionName=arn(fn, "live"), Qualifier="other")
        assert msg(err) == "The derived qualifier from the function name does not match the specified qualifier."


def test_url_config_lifecycle_shapes(lam):
    name = create_py_function(lam, CODE)
    created = lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert "InvokeMode" not in created and "LastModifiedTime" not in created
    assert created["FunctionArn"] == arn(name)
    err = expect_error("ResourceConflictException", 409, lam.create_function_url_config, FunctionName=name,
                       AuthType="NONE")
    assert msg(err) == (f"Failed to create function url config for [functionArn = {arn(name)}]. "
                        "Error message:  FunctionUrlConfig exists for this Lambda function")
    got = lam.get_function_url_config(FunctionName=name)
    assert got["InvokeMode"] == "BUFFERED" and "LastModifiedTime" in got
    updated = lam.update_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    assert updated["AuthType"] == "AWS_IAM" and "InvokeMode" not in updated and "LastModifiedTime" in updated
    assert lam.update_function_url_config(FunctionName=name, InvokeMode="RESPONSE_STREAM")["InvokeMode"] \
        == "RESPONSE_STREAM"
    lam.delete_function_url_config(FunctionName=name)
    err = expect_error("ResourceNotFoundException", 404, lam.get_function_url_config, FunctionName=name)
    assert msg(err) == "The resource you requested does not exist."


# ---------- provisioned concurrency ----------

def test_provisioned_refusals(lam, loose, fn):
    get, put, delete = (lam.get_provisioned_concurrency_config, lam.put_provisioned_concurrency_config,
                        lam.delete_provisioned_concurrency_config)
    err = expect_error("ProvisionedConcurrencyConfigNotFoundException", 404, get, FunctionName=fn, Qualifier="1")
    assert msg(err) == "No Provisioned Concurrency Config found for this function"
    for call in [get, delete]:
        for name, q, want in [("doesnotexist", "noalias", f"Cannot find alias arn: {arn('doesnotexist', 'noalias')}"),
                              (fn, "noalias", f"Cannot find alias arn: {arn(fn, 'noalias')}"),
                              (fn, "10", f"Function not found: {arn(fn, '10')}"),
                              ("doesnotexist", "1", f"Function not found: {arn('doesnotexist', '1')}")]:
            err = expect_error("ResourceNotFoundException", 404, call, FunctionName=name, Qualifier=q)
            assert msg(err) == want
        err = expect_error("InvalidParameterValueException", 400, call, FunctionName=fn, Qualifier="$LATEST")
        assert msg(err) == "The function resource provided must be an alias or a published version."
    err = expect_error("InvalidParameterValueException", 400, put, FunctionName=fn, Qualifier="$LATEST",
                       ProvisionedConcurrentExecutions=1)
    assert msg(err) == "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
    err = expect_error("ResourceNotFoundException", 404, put, FunctionName="doesnotexist", Qualifier="noalias",
                       ProvisionedConcurrentExecutions=1)
    assert msg(err) == f"Cannot find alias arn: {arn('doesnotexist', 'noalias')}"
    err = expect_error("ValidationException", 400, loose.put_provisioned_concurrency_config, FunctionName=fn,
                       Qualifier="1", ProvisionedConcurrentExecutions=0)
    assert msg(err) == ("1 validation error detected: Value '0' at 'provisionedConcurrentExecutions' failed to "
                        "satisfy constraint: Member must have value greater than or equal to 1")
    # Deleting a config that is not there answers 204, as AWS does.
    assert delete(FunctionName=fn, Qualifier="1")["ResponseMetadata"]["HTTPStatusCode"] == 204
    err = expect_error("ResourceNotFoundException", 404, lam.list_provisioned_concurrency_configs,
                       FunctionName="doesnotexist")
    assert msg(err) == f"Function not found: {arn('doesnotexist')}"
    assert lam.list_provisioned_concurrency_configs(FunctionName=fn)["ProvisionedConcurrencyConfigs"] == []


def test_provisioned_limits(lam):
    name = create_py_function(lam, CODE)
    lam.publish_version(FunctionName=name)
    limit = lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    err = expect_error("InvalidParameterValueException", 400, lam.put_provisioned_concurrency_config,
                       FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=limit + 1)
    assert msg(err) == f"Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [{limit}]."
    err = expect_error("InvalidParameterValueException", 400, lam.put_provisioned_concurrency_config,
                       FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=limit)
    assert msg(err) == ("Specified ConcurrentExecutions for function decreases account's "
                        "UnreservedConcurrentExecution below its minimum value of [100].")
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
    err = expect_error("InvalidParameterValueException", 400, lam.put_provisioned_concurrency_config,
                       FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=3)
    assert msg(err) == ("Requested Provisioned Concurrency should not be greater than the "
                        "reservedConcurrentExecution for function")
    lam.delete_function_concurrency(FunctionName=name)


def test_provisioned_version_and_alias_conflict(lam):
    name = create_py_function(lam, CODE)
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    r = lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1)
    assert r["Status"] == "IN_PROGRESS" and r["RequestedProvisionedConcurrentExecutions"] == 1
    err = expect_error("ResourceConflictException", 409, lam.put_provisioned_concurrency_config, FunctionName=name,
                       Qualifier="live", ProvisionedConcurrentExecutions=1)
    assert msg(err) == "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version"
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1)
    err = expect_error("ResourceConflictException", 409, lam.put_provisioned_concurrency_config, FunctionName=name,
                       Qualifier="1", ProvisionedConcurrentExecutions=1)
    assert msg(err) == "Version is pointed by a Provisioned Concurrency alias"
    lam.delete_alias(FunctionName=name, Name="live")
    err = expect_error("ResourceNotFoundException", 404, lam.get_provisioned_concurrency_config, FunctionName=name,
                       Qualifier="live")
    assert msg(err) == f"Cannot find alias arn: {arn(name, 'live')}"
    assert lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"] == []


# ---------- recursion ----------

def test_recursion_config(lam, loose):
    name = create_py_function(lam, CODE)
    assert lam.get_function_recursion_config(FunctionName=name)["RecursiveLoop"] == "Terminate"
    assert lam.put_function_recursion_config(FunctionName=name, RecursiveLoop="Allow")["RecursiveLoop"] == "Allow"
    assert lam.get_function_recursion_config(FunctionName=name)["RecursiveLoop"] == "Allow"
    err = expect_error("ValidationException", 400, loose.put_function_recursion_config, FunctionName=name,
                       RecursiveLoop="InvalidValue")
    assert msg(err) == ("1 validation error detected: Value 'InvalidValue' at 'recursiveLoop' failed to satisfy "
                        "constraint: Member must satisfy enum value set: [Terminate, Allow]")


def test_wrong_region_arn_is_refused(lam, fn):
    other = arn(fn).replace("us-east-1", "eu-central-1")
    want = "Functions from 'eu-central-1' are not reachable in this region ('us-east-1')"
    for call in [lam.get_function_url_config, lam.get_function_code_signing_config,
                 lam.get_function_event_invoke_config, lam.get_policy]:
        err = expect_error("ResourceNotFoundException", 404, call, FunctionName=other)
        assert msg(err) == want, call
