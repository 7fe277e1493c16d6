"""Asynchronous invocation settings (Put/Update/Get/Delete/ListFunctionEventInvokeConfig) and
what they change: the number of retries and the OnSuccess / OnFailure destinations that get
AWS's invocation record. Also the small settings infrastructure tools read."""
import json

from conftest import create_py_function, expect_error, unique, wait_for


def arn(name, q=None):
    return f"arn:aws:lambda:us-east-1:000000000000:function:{name}" + (f":{q}" if q else "")


def test_event_invoke_config_api(lam, server):
    name = create_py_function(lam, "def handler(e, c):\n    return 1\n")
    err = expect_error("ResourceNotFoundException", 404, lam.get_function_event_invoke_config, FunctionName=name)
    assert err["Error"]["Message"] == f"The function {arn(name, '$LATEST')} doesn't have an EventInvokeConfig"
    # A function destination must exist (AWS checks it).
    sink = create_py_function(lam, "def handler(e, c):\n    return 1\n")
    dest = {"OnFailure": {"Destination": arn(sink)}}
    c = lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0, MaximumEventAgeInSeconds=60,
                                             DestinationConfig=dest)
    assert c["FunctionArn"] == arn(name, "$LATEST") and c["MaximumRetryAttempts"] == 0
    assert c["MaximumEventAgeInSeconds"] == 60 and c["DestinationConfig"]["OnFailure"] == dest["OnFailure"]
    assert c["LastModified"].year >= 2026
    # Update keeps what it does not name; Put replaces everything.
    c = lam.update_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)
    assert (c["MaximumRetryAttempts"], c["MaximumEventAgeInSeconds"]) == (1, 60)
    assert c["DestinationConfig"]["OnFailure"] == dest["OnFailure"]
    c = lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=2)
    assert "MaximumEventAgeInSeconds" not in c and c["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
    assert lam.get_function_event_invoke_config(FunctionName=name)["MaximumRetryAttempts"] == 2
    loose = server.client("lambda", parameter_validation=False)  # botocore checks the ranges itself
    # The model's ranges: AWS answers ValidationException.
    for bad, want in [
        (dict(MaximumRetryAttempts=3), "Value '3' at 'maximumRetryAttempts' failed to satisfy constraint: "
                                       "Member must have value less than or equal to 2"),
        (dict(MaximumEventAgeInSeconds=59), "Value '59' at 'maximumEventAgeInSeconds' failed to satisfy constraint: "
                                            "Member must have value greater than or equal to 60"),
        (dict(MaximumEventAgeInSeconds=21601), "Value '21601' at 'maximumEventAgeInSeconds' failed to satisfy "
                                               "constraint: Member must have value less than or equal to 21600"),
    ]:
        err = expect_error("ValidationException", 400, loose.put_function_event_invoke_config, FunctionName=name, **bad)
        assert err["Error"]["Message"] == "1 validation error detected: " + want
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lam.put_function_event_invoke_config(FunctionName=name, Qualifier="live", MaximumRetryAttempts=0)
    listed = lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
    assert sorted(c["FunctionArn"] for c in listed) == sorted([arn(name, "$LATEST"), arn(name, "live")])
    expect_error("ResourceNotFoundException", 404, lam.put_function_event_invoke_config, FunctionName=name,
                 Qualifier="nope", MaximumRetryAttempts=0)
    lam.delete_function_event_invoke_config(FunctionName=name)
    expect_error("ResourceNotFoundException", 404, lam.get_function_event_invoke_config, FunctionName=name)
    expect_error("ResourceNotFoundException", 404, lam.update_function_event_invoke_config, FunctionName=name,
                 MaximumRetryAttempts=1)
    assert lam.get_function_event_invoke_config(FunctionName=name, Qualifier="live")["MaximumRetryAttempts"] == 0


def wait_for_lines(path, n, timeout=30):
    """The lines of `path` once it has at least `n`."""
    return wait_for(lambda: path.exists() and len(path.read_text().splitlines()) >= n and path.read_text().splitlines(),
                    timeout, f"{n} lines in {path.name}")


def test_retries_and_destinations(lam, tmp_path):
    runs, records = tmp_path / "runs.txt", tmp_path / "records.txt"
    sink = create_py_function(lam, f"import json\ndef handler(e, c):\n    open({str(records)!r}, 'a').write(json.dumps(e) + '\\n')\n")
    failing = create_py_function(lam, f"def handler(e, c):\n    open({str(runs)!r}, 'a').write('run\\n')\n    raise RuntimeError('no')\n")
    lam.put_function_event_invoke_config(FunctionName=failing, MaximumRetryAttempts=0,
                                         DestinationConfig={"OnFailure": {"Destination": arn(sink)}})
    r = lam.invoke(FunctionName=failing, InvocationType="Event", Payload=json.dumps({"order": 7}))
    request_id = r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    [line] = wait_for_lines(records, 1)
    rec = json.loads(line)
    assert rec["version"] == "1.0" and rec["requestPayload"] == {"order": 7}
    assert rec["requestContext"] == {"requestId": request_id, "functionArn": arn(failing, "$LATEST"),
                                     "condition": "RetriesExhausted", "approximateInvokeCount": 1}
    assert rec["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert rec["responsePayload"]["errorType"] == "RuntimeError" and rec["responsePayload"]["errorMessage"] == "no"
    # The RetriesExhausted record is sent after the event's last attempt, so the count is final.
    assert runs.read_text().splitlines() == ["run"], "MaximumRetryAttempts=0: no retry"

    ok = create_py_function(lam, "def handler(e, c):\n    return {'doubled': e['n'] * 2}\n")
    lam.put_function_event_invoke_config(FunctionName=ok, DestinationConfig={"OnSuccess": {"Destination": arn(sink)}})
    lam.invoke(FunctionName=ok, InvocationType="Event", Payload=json.dumps({"n": 21}))
    lines = wait_for_lines(records, 2)
    rec = json.loads(lines[1])
    assert rec["requestContext"]["condition"] == "Success" and rec["responsePayload"] == {"doubled": 42}
    assert "functionError" not in rec["responseContext"]
    # A destination RustStack cannot deliver to (a queue) is logged, not fatal.
    lam.put_function_event_invoke_config(FunctionName=ok, DestinationConfig={
        "OnSuccess": {"Destination": "arn:aws:sqs:us-east-1:000000000000:q"}})
    lam.invoke(FunctionName=ok, InvocationType="Event", Payload=json.dumps({"n": 1}))
    assert json.loads(lam.invoke(FunctionName=ok, Payload=json.dumps({"n": 2}))["Payload"].read()) == {"doubled": 4}


def test_settings_infrastructure_tools_read(lam):
    name = create_py_function(lam, "def handler(e, c):\n    return 1\n")
    # A function without a code signing config answers AWS's empty shape.
    csc = lam.get_function_code_signing_config(FunctionName=name)
    assert "CodeSigningConfigArn" not in csc and "FunctionName" not in csc
    rmc = lam.get_runtime_management_config(FunctionName=name)
    assert rmc["UpdateRuntimeOn"] == "Auto" and rmc["FunctionArn"] == arn(name, "$LATEST")
    assert lam.get_function_recursion_config(FunctionName=name)["RecursiveLoop"] == "Terminate"
    assert lam.put_function_recursion_config(FunctionName=name, RecursiveLoop="Allow")["RecursiveLoop"] == "Allow"
    assert lam.get_function_recursion_config(FunctionName=name)["RecursiveLoop"] == "Allow"
    expect_error("ResourceNotFoundException", 404, lam.get_function_code_signing_config, FunctionName=unique("none"))
