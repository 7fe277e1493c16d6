"""Aliases answer as AWS does (issue 11): RoutingConfig is validated with AWS's recorded
messages and applied at Invoke (a random split by weight, visible in ExecutedVersion and the
log's START line); alias not-found messages per operation. boto3 against the real binary."""
import base64
import json

import pytest

from conftest import expect_error, make_zip, unique

ROLE = "arn:aws:iam::000000000000:role/lambda"
ACCOUNT = "000000000000"
SRC = "def handler(event, context):\n    return {'version': context.function_version, 'tag': TAG}\n"
WAIT = {"Delay": 1, "MaxAttempts": 5}


def fn_arn(name, qualifier=None):
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def code(tag):
    return make_zip({"app.py": f"TAG = {tag!r}\n" + SRC})


@pytest.fixture(scope="module")
def fn(lam):
    """A function with versions 1 and 2 (different code)."""
    name = unique("fid-alias")
    lam.create_function(FunctionName=name, Role=ROLE, Runtime="python3.12", Handler="app.handler",
                        Code={"ZipFile": code("one")})
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    lam.update_function_code(FunctionName=name, ZipFile=code("two"))
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    return name


@pytest.fixture(scope="module")
def raw(server):
    """A client that sends what it is given (boto3 refuses a negative weight itself)."""
    return server.client("lambda", parameter_validation=False)


def routing_error(lam, name, version, weights):
    return dict(FunctionName=name, Name=unique("a")[:40], FunctionVersion=version,
                RoutingConfig={"AdditionalVersionWeights": weights})


def test_routing_config_is_validated(lam, raw, fn):
    cases = [
        ("1", {"1": 0.8, "2": 0.2}, "InvalidParameterValueException", 400,
         "Number of items in AdditionalVersionWeights cannot be greater than 1"),
        ("1", {"2": 2}, "ValidationException", 400,
         "1 validation error detected: Value '{2=2.0}' at 'routingConfig.additionalVersionWeights' failed to "
         "satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to "
         "1.0, Member must have value greater than or equal to 0.0, Member must not be null]"),
        ("1", {"2": -1}, "ValidationException", 400,
         "1 validation error detected: Value '{2=-1.0}' at 'routingConfig.additionalVersionWeights' failed to "
         "satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to "
         "1.0, Member must have value greater than or equal to 0.0, Member must not be null]"),
        ("1", {"1": 0.5}, "InvalidParameterValueException", 400,
         "Invalid function version 1. Function version 1 is already included in routing configuration."),
        ("10", {"2": 0.5}, "ResourceNotFoundException", 404, f"Function not found: {fn_arn(fn, '10')}"),
        ("1", {"10": 0.5}, "ResourceNotFoundException", 404, f"Function not found: {fn_arn(fn, '10')}"),
        ("$LATEST", {"1": 0.5}, "InvalidParameterValueException", 400,
         "$LATEST is not supported for an alias pointing to more than 1 version"),
        ("1", {"$LATEST": 0.5}, "ValidationException", 400,
         "1 validation error detected: Value '{$LATEST=0.5}' at 'routingConfig.additionalVersionWeights' failed "
         "to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal "
         "to 1024, Member must have length greater than or equal to 1, Member must satisfy regular expression "
         "pattern: [0-9]+]"),
    ]
    for version, weights, code_, status, msg in cases:
        err = expect_error(code_, status, raw.create_alias, **routing_error(lam, fn, version, weights))
        assert err["Error"]["Message"] == msg, (version, weights)
    # The same checks guard UpdateAlias.
    lam.create_alias(FunctionName=fn, Name="checked", FunctionVersion="1")
    err = expect_error("InvalidParameterValueException", 400, lam.update_alias, FunctionName=fn, Name="checked",
                       RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}})
    assert err["Error"]["Message"] == \
        "Invalid function version 1. Function version 1 is already included in routing configuration."
    # A function that does not exist is named with the alias's target version.
    err = expect_error("ResourceNotFoundException", 404, lam.create_alias, FunctionName=fn + "-unknown",
                       Name="custom", FunctionVersion="1", RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    assert err["Error"]["Message"] == f"Function not found: {fn_arn(fn + '-unknown', '1')}"
    lam.create_alias(FunctionName=fn, Name="custom", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    err = expect_error("ResourceConflictException", 409, lam.create_alias, FunctionName=fn, Name="custom",
                       FunctionVersion="1", RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    assert err["Error"]["Message"] == f"Alias already exists: {fn_arn(fn, 'custom')}"


def test_empty_routing_config_is_dropped(lam, fn):
    a = lam.create_alias(FunctionName=fn, Name="plain", FunctionVersion="1",
                         RoutingConfig={"AdditionalVersionWeights": {}})
    assert "RoutingConfig" not in a
    routed = lam.create_alias(FunctionName=fn, Name="routed", FunctionVersion="1",
                              RoutingConfig={"AdditionalVersionWeights": {"2": 0.2}})
    assert routed["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.2}}
    assert lam.get_alias(FunctionName=fn, Name="routed")["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.2}}
    cleared = lam.update_alias(FunctionName=fn, Name="routed", RoutingConfig={"AdditionalVersionWeights": {}})
    assert "RoutingConfig" not in cleared
    assert "RoutingConfig" not in lam.get_alias(FunctionName=fn, Name="routed")


def test_alias_not_found_messages(lam, fn):
    err = expect_error("ResourceNotFoundException", 404, lam.get_alias, FunctionName=fn, Name="non-existent")
    assert err["Error"]["Message"] == f"Cannot find alias arn: {fn_arn(fn, 'non-existent')}"
    err = expect_error("ResourceNotFoundException", 404, lam.update_alias, FunctionName=fn, Name="non-existent",
                       FunctionVersion="1")
    assert err["Error"]["Message"] == f"Alias not found: {fn_arn(fn, 'non-existent')}"
    err = expect_error("ResourceNotFoundException", 404, lam.get_function, FunctionName=fn,
                       Qualifier="aliasdoesnotexist")
    assert err["Error"]["Message"] == f"Function not found: {fn_arn(fn, 'aliasdoesnotexist')}"
    # Deleting an alias that does not exist is a 204, as on AWS.
    r = lam.delete_alias(FunctionName=fn, Name="non-existent")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204


def start_version(log_b64):
    """The version named by the log's START line."""
    for line in base64.b64decode(log_b64).decode().splitlines():
        if line.startswith("START RequestId: "):
            return line.rsplit("Version: ", 1)[1].strip()
    raise AssertionError("no START line")


def test_routing_is_applied_at_invoke(lam, fn):
    lam.create_alias(FunctionName=fn, Name="split", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    seen = {"1": 0, "2": 0}
    n = 200
    for _ in range(n):
        out = lam.invoke(FunctionName=fn, Qualifier="split", Payload=b"{}", LogType="Tail")
        executed = out["ExecutedVersion"]
        body = json.loads(out["Payload"].read())
        # The header, the code that ran and the log's START line agree on the version.
        assert body == {"version": executed, "tag": {"1": "one", "2": "two"}[executed]}, body
        assert start_version(out["LogResult"]) == executed
        seen[executed] += 1
    # Weight 0.5 over 200 draws: both versions, each well within [25%, 75%]
    # (outside that happens with probability below 1e-12).
    assert 0.25 * n <= seen["1"] <= 0.75 * n, seen
    assert 0.25 * n <= seen["2"] <= 0.75 * n, seen


def test_routing_weights_zero_and_one(lam, fn):
    lam.create_alias(FunctionName=fn, Name="never", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.0}})
    lam.create_alias(FunctionName=fn, Name="always", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 1.0}})
    for _ in range(20):
        assert lam.invoke(FunctionName=fn, Qualifier="never", Payload=b"{}")["ExecutedVersion"] == "1"
        assert lam.invoke(FunctionName=fn, Qualifier="always", Payload=b"{}")["ExecutedVersion"] == "2"
