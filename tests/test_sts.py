"""STS GetCallerIdentity: the account of --account-id, the root identity, from boto3 and from a function."""
import json
import sys

import pytest

from conftest import Server, create_py_function, http

ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def srv():
    s = Server("--account-id", ACCOUNT, "--python", sys.executable)
    yield s
    s.cleanup()


def test_get_caller_identity_with_boto3(srv):
    r = srv.client("sts").get_caller_identity()
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert {k: r[k] for k in ("Account", "Arn", "UserId")} == {
        "Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:root", "UserId": ACCOUNT}
    assert r["ResponseMetadata"]["RequestId"]


def test_get_caller_identity_from_a_function(srv):
    lam = srv.client("lambda")
    src = ("import boto3\n"
           "def handler(e, c):\n"
           "    r = boto3.client('sts').get_caller_identity()\n"
           "    return [r['Account'], r['Arn'], r['UserId']]\n")
    name = create_py_function(lam, src, Timeout=30)
    r = lam.invoke(FunctionName=name)
    body = json.loads(r["Payload"].read())
    assert "FunctionError" not in r, body
    assert body == [ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT]


AUTH = ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/eu-west-1/sts/aws4_request, "
        "SignedHeaders=host, Signature=0")


def test_get_caller_identity_query_wire_form(srv):
    status, headers, body = http(srv, "POST", "/", body=b"Action=GetCallerIdentity&Version=2011-06-15", headers={
        "authorization": AUTH, "content-type": "application/x-www-form-urlencoded; charset=utf-8"})
    assert status == 200
    assert headers["content-type"] == "text/xml"
    rid = headers["x-amzn-requestid"]
    assert body.decode() == (
        '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">\n'
        "  <GetCallerIdentityResult>\n"
        f"    <Arn>arn:aws:iam::{ACCOUNT}:root</Arn>\n"
        f"    <UserId>{ACCOUNT}</UserId>\n"
        f"    <Account>{ACCOUNT}</Account>\n"
        "  </GetCallerIdentityResult>\n"
        "  <ResponseMetadata>\n"
        f"    <RequestId>{rid}</RequestId>\n"
        "  </ResponseMetadata>\n"
        "</GetCallerIdentityResponse>\n")


def test_get_caller_identity_json_wire_form(srv):
    status, headers, body = http(srv, "POST", "/", body=b"{}", headers={
        "authorization": AUTH, "content-type": "application/x-amz-json-1.0",
        "x-amz-target": "AWSSecurityTokenServiceV20110615.GetCallerIdentity"})
    assert status == 200
    assert headers["content-type"] == "application/x-amz-json-1.0"
    assert json.loads(body) == {"Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:root", "UserId": ACCOUNT}


def test_other_sts_actions_are_not_implemented_without_upstream(srv):
    status, headers, body = http(srv, "POST", "/", body=b"Action=GetSessionToken&Version=2011-06-15", headers={
        "authorization": AUTH, "content-type": "application/x-www-form-urlencoded; charset=utf-8"})
    assert status == 501
    rid = headers["x-amzn-requestid"]
    assert body.decode() == (
        '<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error><Type>Receiver</Type>'
        "<Code>InternalFailure</Code><Message>RustStack does not implement the sts operation GetSessionToken; "
        "start RustStack with --upstream URL to forward it there</Message></Error>"
        f"<RequestId>{rid}</RequestId></ErrorResponse>")
