"""A payload that is not JSON gets AWS's InvalidRequestContentException (Jackson's wording, as recorded
from AWS) on sync, Event and InvokeWithResponseStream calls, and the function never runs."""
import json
import os
import tempfile

import pytest

from conftest import Server, create_py_function, expect_error, wait_for

SRC = ("import json, os\n"
       "def handler(event, context):\n"
       "    with open(os.environ['MARKS'], 'a') as f:\n"
       "        f.write(json.dumps(event) + '\\n')\n"
       "    return event\n")
WHERE = "\n at [Source: REDACTED (`StreamReadFeature.INCLUDE_SOURCE_IN_LOCATION` disabled); line: 1, column: "
# The two payloads and answers recorded from AWS (test_lambda.snapshot.json).
RECORDED = [
    (b"n\x87r\x9e\xe9\xb5\xd7I\xee\x9bmt",
     "Could not parse request body into json: Could not parse payload into json: "
     "Invalid UTF-8 start byte 0x87" + WHERE + "3]"),
    (b"\x99\xeb,j\x07\xa1zYh",
     "Could not parse request body into json: Could not parse payload into json: Unexpected character "
     "((CTRL-CHAR, code 153)): expected a valid value (JSON String, Number, Array, Object or token 'null', "
     "'true' or 'false')" + WHERE + "1]"),
    (b"hello",
     "Could not parse request body into json: Could not parse payload into json: Unrecognized token 'hello': "
     "was expecting (JSON String, Number, Array, Object or token 'null', 'true' or 'false')" + WHERE + "6]"),
]


@pytest.fixture(scope="module")
def env():
    marks = os.path.join(tempfile.mkdtemp(prefix="marks-"), "marks.txt")
    srv = Server()
    lam = srv.client("lambda")
    name = create_py_function(lam, SRC, Environment={"Variables": {"MARKS": marks}})
    yield lam, name, marks
    srv.cleanup()


def runs(marks):
    if not os.path.exists(marks):
        return []
    with open(marks) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("payload,message", RECORDED)
def test_non_json_payload_is_refused_everywhere(env, payload, message):
    lam, name, marks = env
    before = runs(marks)
    for call, kw in [(lam.invoke, {}), (lam.invoke, {"InvocationType": "Event"}),
                     (lam.invoke_with_response_stream, {})]:
        err = expect_error("InvalidRequestContentException", 400, call, FunctionName=name, Payload=payload, **kw)
        assert err["Error"]["Message"] == message
        assert err["Type"] == "User"
    # An Event invocation after the refused ones runs alone: none of them was queued.
    assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"after": 1}')["StatusCode"] == 202
    wait_for(lambda: len(runs(marks)) > len(before), 30, "the Event invocation after the refused ones to run")
    assert runs(marks) == before + [{"after": 1}]


def test_empty_payload_is_an_empty_object(env):
    lam, name, marks = env
    r = lam.invoke(FunctionName=name, Payload=b"")
    assert r["StatusCode"] == 200 and "FunctionError" not in r
    assert json.loads(r["Payload"].read()) == {}
    assert runs(marks)[-1] == {}
