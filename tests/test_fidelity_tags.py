"""Tagging answers as AWS does (issue 11): qualified ARNs refused, the 50-tag limit on
TagResource and CreateFunction, empty Tags / TagKeys refused, each with AWS's recorded message."""
import pytest

from conftest import expect_error, make_zip, unique

ROLE = "arn:aws:iam::000000000000:role/lambda"
ACCOUNT = "000000000000"
SRC = "def handler(event, context):\n    return event\n"
LIMIT_MSG = "Number of tags exceeds resource tag limit."


def fn_arn(name, qualifier=None):
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def create(lam, **kw):
    name = unique("fid-tags")
    lam.create_function(FunctionName=name, Role=ROLE, Runtime="python3.12", Handler="app.handler",
                        Code={"ZipFile": make_zip({"app.py": SRC})}, **kw)
    return name


@pytest.fixture(scope="module")
def raw(server):
    """A client that sends what it is given (boto3 insists on TagKeys)."""
    return server.client("lambda", parameter_validation=False)


def test_qualified_arns_are_refused(lam):
    name = create(lam)
    lam.publish_version(FunctionName=name)
    for q in ("1", "$LATEST", "live", "doesnotexist"):
        for call, kw in [(lam.tag_resource, {"Tags": {"a": "b"}}), (lam.untag_resource, {"TagKeys": ["a"]}),
                         (lam.list_tags, {})]:
            err = expect_error("InvalidParameterValueException", 400, call, Resource=fn_arn(name, q), **kw)
            assert err["Error"]["Message"] == \
                "Tags on function aliases and versions are not supported. Please specify a function ARN.", (q, call)


def test_tag_limit_on_tag_resource(lam):
    name = create(lam)
    fifty = {f"k{i}": "v" for i in range(50)}
    err = expect_error("InvalidParameterValueException", 400, lam.tag_resource, Resource=fn_arn(name),
                       Tags={**fifty, "one-more": "v"})
    assert err["Error"]["Message"] == LIMIT_MSG
    lam.tag_resource(Resource=fn_arn(name), Tags=fifty)
    err = expect_error("InvalidParameterValueException", 400, lam.tag_resource, Resource=fn_arn(name),
                       Tags={"additional": "v"})
    assert err["Error"]["Message"] == LIMIT_MSG
    # Overwriting a key that is already there adds nothing.
    lam.tag_resource(Resource=fn_arn(name), Tags={"k0": "changed"})
    tags = lam.list_tags(Resource=fn_arn(name))["Tags"]
    assert len(tags) == 50 and tags["k0"] == "changed"


def test_tag_limit_on_create_function(lam):
    err = expect_error("InvalidParameterValueException", 400, create, lam, Tags={f"k{i}": "v" for i in range(51)})
    assert err["Error"]["Message"] == LIMIT_MSG
    name = create(lam, Tags={f"k{i}": "v" for i in range(50)})
    assert len(lam.get_function(FunctionName=name)["Tags"]) == 50


def test_empty_tags_and_tag_keys(lam, raw):
    name = create(lam)
    err = expect_error("InvalidParameterValueException", 400, lam.tag_resource, Resource=fn_arn(name), Tags={})
    assert err["Error"]["Message"] == "An error occurred and the request cannot be processed."
    err = expect_error("ValidationException", 400, raw.untag_resource, Resource=fn_arn(name), TagKeys=[])
    assert err["Error"]["Message"] == \
        "1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: Member must not be null"


def test_missing_function(lam):
    missing = unique("fid-tags-missing")
    for call, kw in [(lam.tag_resource, {"Tags": {"a": "b"}}), (lam.untag_resource, {"TagKeys": ["a"]}),
                     (lam.list_tags, {})]:
        err = expect_error("ResourceNotFoundException", 404, call, Resource=fn_arn(missing), **kw)
        assert err["Error"]["Message"] == f"Function not found: {fn_arn(missing)}"
