"""AddPermission, GetPolicy and RemovePermission answer as AWS does (status, code and exact
message as recorded from AWS in LocalStack's snapshot tests), and policies survive a restart."""
import json

from conftest import create_py_function, expect_error, unique, wait_for

ACCOUNT = "000000000000"
CODE = "def handler(e, c):\n    return e\n"


def arn(name, q=None):
    return f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}" + (f":{q}" if q else "")


def add(lam, name, sid="s3", **kw):
    kw.setdefault("Action", "lambda:InvokeFunction")
    kw.setdefault("Principal", "s3.amazonaws.com")
    return lam.add_permission(FunctionName=name, StatementId=sid, **kw)


def msg(err):
    return err["Error"]["Message"]


def test_add_permission_refusals(lam):
    name = create_py_function(lam, CODE)
    err = expect_error("ValidationException", 400, add, lam, name, sid="example.com")
    assert msg(err) == ("1 validation error detected: Value 'example.com' at 'statementId' failed to satisfy "
                        "constraint: Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)")
    err = expect_error("ValidationException", 400, add, lam, name, Action="lambda:Invoke-Function")
    assert msg(err) == ("1 validation error detected: Value 'lambda:Invoke-Function' at 'action' failed to satisfy "
                        "constraint: Member must satisfy regular expression pattern: (lambda:[*]|lambda:[a-zA-Z]+|[*])")
    err = expect_error("InvalidParameterValueException", 400, add, lam, f"{name}:alias-not-42", Qualifier="42")
    assert msg(err) == "The derived qualifier from the function name does not match the specified qualifier."
    err = expect_error("InvalidParameterValueException", 400, add, lam, f"{name}:$LATEST", Qualifier="$LATEST")
    assert msg(err) == "We currently do not support adding policies for $LATEST."
    err = expect_error("InvalidParameterValueException", 400, add, lam, name, sid="lambda",
                       Principal="invalid.nonaws.com", SourceAccount=ACCOUNT)
    assert msg(err) == "The provided principal was invalid. Please check the principal and try again."
    err = expect_error("ResourceNotFoundException", 404, add, lam, "doesnotexist")
    assert msg(err) == f"Function not found: {arn('doesnotexist')}"
    err = expect_error("ResourceNotFoundException", 404, add, lam, f"{name}:alias-doesnotexist")
    assert msg(err) == f"Cannot find alias arn: {arn(name, 'alias-doesnotexist')}"
    err = expect_error("ResourceNotFoundException", 404, add, lam, name, Qualifier="42")
    assert msg(err) == f"Function not found: {arn(name, '42')}"
    err = expect_error("ResourceNotFoundException", 404, add, lam, name, Qualifier="valid-with-$-but-doesnotexist")
    assert msg(err) == f"Function not found: {arn(name, 'valid-with-$-but-doesnotexist')}"
    add(lam, name, SourceArn="arn:aws:s3:::test-bucket")
    err = expect_error("ResourceConflictException", 409, add, lam, name, SourceArn="arn:aws:s3:::test-bucket")
    assert msg(err) == ("The statement id (s3) provided already exists. Please provide a new statement id, "
                        "or remove the existing statement.")


def test_get_and_remove_not_found(lam):
    name = create_py_function(lam, CODE)
    for kw in [dict(FunctionName="doesnotexist"), dict(FunctionName=name, Qualifier="77"), dict(FunctionName=name)]:
        err = expect_error("ResourceNotFoundException", 404, lam.get_policy, **kw)
        assert msg(err) == "The resource you requested does not exist."
    err = expect_error("ResourceNotFoundException", 404, lam.remove_permission, FunctionName=name, StatementId="s3")
    assert msg(err) == "No policy is associated with the given resource."
    err = expect_error("ResourceNotFoundException", 404, lam.remove_permission, FunctionName="doesnotexist",
                       StatementId="s3")
    assert msg(err) == f"No policy found for: {arn('doesnotexist')}"
    err = expect_error("ResourceNotFoundException", 404, lam.remove_permission, FunctionName=name,
                       StatementId="s3", Qualifier="alias-doesnotexist")
    assert msg(err) == f"Cannot find alias arn: {arn(name, 'alias-doesnotexist')}"
    add(lam, name)
    err = expect_error("ResourceNotFoundException", 404, lam.remove_permission, FunctionName=name,
                       StatementId="non-existent")
    assert msg(err) == "Statement non-existent is not found in resource policy."
    lam.remove_permission(FunctionName=name, StatementId="s3")
    err = expect_error("ResourceNotFoundException", 404, lam.get_policy, FunctionName=name)
    assert msg(err) == "The resource you requested does not exist."


def test_statements_as_aws_renders_them(lam):
    name = create_py_function(lam, CODE)
    st = json.loads(add(lam, name, sid="wildcard", Principal="*", SourceAccount=ACCOUNT)["Statement"])
    assert st == {"Sid": "wildcard", "Effect": "Allow", "Principal": "*", "Action": "lambda:InvokeFunction",
                  "Resource": arn(name), "Condition": {"StringEquals": {"AWS:SourceAccount": ACCOUNT}}}
    st = json.loads(add(lam, name, sid="account-id", Principal="111111111111")["Statement"])
    assert st["Principal"] == {"AWS": "arn:aws:iam::111111111111:root"} and "Condition" not in st
    st = json.loads(add(lam, name, sid="user-arn", Principal="arn:aws:iam::111111111111:user/u")["Statement"])
    assert st["Principal"] == {"AWS": "arn:aws:iam::111111111111:user/u"}
    st = json.loads(add(lam, name, sid="urlPermission", Action="lambda:InvokeFunctionUrl", Principal="*",
                        SourceArn="arn:aws:s3:::test-bucket", SourceAccount=ACCOUNT,
                        PrincipalOrgID="o-1234567890", FunctionUrlAuthType="NONE")["Statement"])
    assert st["Condition"] == {"StringEquals": {"AWS:SourceAccount": ACCOUNT, "lambda:FunctionUrlAuthType": "NONE",
                                                "aws:PrincipalOrgID": "o-1234567890"},
                               "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::test-bucket"}}
    raw = lam.get_policy(FunctionName=name)["Policy"]
    # The document's keys come in AWS's order, not sorted.
    assert raw.startswith('{"Version":"2012-10-17","Id":"default","Statement":[{"Sid":"wildcard","Effect":"Allow",'
                          '"Principal":"*","Action":"lambda:InvokeFunction","Resource":')
    policy = json.loads(raw)
    assert policy["Version"] == "2012-10-17" and policy["Id"] == "default"
    assert [s["Sid"] for s in policy["Statement"]] == ["wildcard", "account-id", "user-arn", "urlPermission"]


def test_policy_revision_is_the_function_revision(lam):
    name = create_py_function(lam, CODE)
    # Read after the function is Active: leaving Pending is a new RevisionId, as on AWS.
    wait_for(lambda: lam.get_function(FunctionName=name)["Configuration"]["State"] == "Active", 10,
             "the function to become Active")
    rev1 = lam.get_function(FunctionName=name)["Configuration"]["RevisionId"]
    err = expect_error("PreconditionFailedException", 412, add, lam, name, RevisionId="wrong")
    assert msg(err) == ("The Revision Id provided does not match the latest Revision Id. "
                        "Call the GetPolicy API to retrieve the latest Revision Id")
    add(lam, name, RevisionId=rev1)
    rev2 = lam.get_policy(FunctionName=name)["RevisionId"]
    assert rev2 != rev1 and rev2 == lam.get_function(FunctionName=name)["Configuration"]["RevisionId"]
    err = expect_error("PreconditionFailedException", 412, lam.remove_permission, FunctionName=name,
                       StatementId="s3", RevisionId="wrong")
    assert msg(err) == ("The Revision Id provided does not match the latest Revision Id. "
                        "Call the GetPolicy API to retrieve the latest Revision Id")
    lam.remove_permission(FunctionName=name, StatementId="s3", RevisionId=rev2)
    assert lam.get_function(FunctionName=name)["Configuration"]["RevisionId"] not in (rev1, rev2)
    # A version's policy is its own, with the version's revision.
    lam.publish_version(FunctionName=name)
    st = json.loads(add(lam, name, sid="v1", Qualifier="1")["Statement"])
    assert st["Resource"] == arn(name, "1")
    got = lam.get_policy(FunctionName=name, Qualifier="1")
    assert got["RevisionId"] == lam.get_function(FunctionName=name, Qualifier="1")["Configuration"]["RevisionId"]
    expect_error("ResourceNotFoundException", 404, lam.get_policy, FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    alias_rev = lam.get_alias(FunctionName=name, Name="live")["RevisionId"]
    add(lam, name, sid="a", Qualifier="live", RevisionId=alias_rev)
    assert json.loads(lam.get_policy(FunctionName=name, Qualifier="live")["Policy"])["Statement"][0]["Resource"] \
        == arn(name, "live")


def test_policy_survives_restart(fresh_server):
    srv = fresh_server()
    lam = srv.client("lambda")
    name = create_py_function(lam, CODE, name=unique("perm"))
    add(lam, name, SourceArn="arn:aws:s3:::b")
    before = lam.get_policy(FunctionName=name)
    srv.restart()
    lam = srv.client("lambda")
    after = lam.get_policy(FunctionName=name)
    assert (after["Policy"], after["RevisionId"]) == (before["Policy"], before["RevisionId"])
