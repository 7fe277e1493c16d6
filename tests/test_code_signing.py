"""Code signing configs: stored, persisted and reported as AWS reports them (shapes and
not-found answers as recorded from AWS in LocalStack's snapshot tests). RustStack does not
check signatures; these calls only keep and report the settings."""
import re

from conftest import create_py_function, expect_error, unique

ACCOUNT = "000000000000"
CODE = "def handler(e, c):\n    return e\n"
PROFILE = f"arn:aws:signer:us-east-1:{ACCOUNT}:/signing-profiles/test"


def msg(err):
    return err["Error"]["Message"]


def create(lam, policy="Enforce"):
    return lam.create_code_signing_config(
        Description="Testing CodeSigning Config",
        AllowedPublishers={"SigningProfileVersionArns": [PROFILE]},
        CodeSigningPolicies={"UntrustedArtifactOnDeployment": policy})["CodeSigningConfig"]


def test_code_signing_lifecycle(lam):
    name = create_py_function(lam, CODE)
    csc = create(lam)
    assert re.fullmatch(rf"arn:aws:lambda:us-east-1:{ACCOUNT}:code-signing-config:csc-[0-9a-f]{{17}}",
                        csc["CodeSigningConfigArn"])
    assert csc["CodeSigningConfigArn"].endswith(":" + csc["CodeSigningConfigId"])
    assert csc["AllowedPublishers"] == {"SigningProfileVersionArns": [PROFILE]}
    assert csc["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Enforce"}
    assert csc["Description"] == "Testing CodeSigning Config" and csc["LastModified"]
    a = csc["CodeSigningConfigArn"]
    updated = lam.update_code_signing_config(CodeSigningConfigArn=a,
                                             CodeSigningPolicies={"UntrustedArtifactOnDeployment": "Warn"})
    assert updated["CodeSigningConfig"]["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Warn"}
    assert lam.get_code_signing_config(CodeSigningConfigArn=a)["CodeSigningConfig"] == updated["CodeSigningConfig"]
    assert lam.update_code_signing_config(CodeSigningConfigArn=a)["CodeSigningConfig"] == updated["CodeSigningConfig"]
    # A function without one answers AWS's empty shape.
    got = lam.get_function_code_signing_config(FunctionName=name)
    assert "CodeSigningConfigArn" not in got and "FunctionName" not in got
    assert lam.list_functions_by_code_signing_config(CodeSigningConfigArn=a)["FunctionArns"] == []
    put = lam.put_function_code_signing_config(CodeSigningConfigArn=a, FunctionName=name)
    assert (put["CodeSigningConfigArn"], put["FunctionName"]) == (a, name)
    got = lam.get_function_code_signing_config(FunctionName=name)
    assert (got["CodeSigningConfigArn"], got["FunctionName"]) == (a, name)
    assert [c for c in lam.list_code_signing_configs()["CodeSigningConfigs"] if c["CodeSigningConfigArn"] == a] \
        == [updated["CodeSigningConfig"]]
    assert lam.list_functions_by_code_signing_config(CodeSigningConfigArn=a)["FunctionArns"] == \
        [f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"]
    err = expect_error("ResourceConflictException", 409, lam.delete_code_signing_config, CodeSigningConfigArn=a)
    assert name in msg(err)
    assert lam.delete_function_code_signing_config(FunctionName=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.delete_function_code_signing_config(FunctionName=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.delete_code_signing_config(CodeSigningConfigArn=a)["ResponseMetadata"]["HTTPStatusCode"] == 204
    err = expect_error("ResourceNotFoundException", 404, lam.get_code_signing_config, CodeSigningConfigArn=a)
    assert msg(err) == f"The Lambda code signing configuration {a} can not be found."


def test_code_signing_not_found(lam):
    name = create_py_function(lam, CODE)
    a = create(lam)["CodeSigningConfigArn"]
    bad = a[:-1] + "x"
    missing = f"The Lambda code signing configuration {bad} can not be found."
    for call, kw in [(lam.delete_code_signing_config, {}), (lam.update_code_signing_config, {"Description": "d"}),
                     (lam.update_code_signing_config, {}), (lam.get_code_signing_config, {}),
                     (lam.list_functions_by_code_signing_config, {})]:
        err = expect_error("ResourceNotFoundException", 404, call, CodeSigningConfigArn=bad, **kw)
        assert msg(err) == missing
    fn_missing = f"Function not found: arn:aws:lambda:us-east-1:{ACCOUNT}:function:csc-test-doesnotexist"
    for call, kw in [(lam.delete_function_code_signing_config, {}), (lam.get_function_code_signing_config, {}),
                     (lam.put_function_code_signing_config, {"CodeSigningConfigArn": a})]:
        err = expect_error("ResourceNotFoundException", 404, call, FunctionName="csc-test-doesnotexist", **kw)
        assert msg(err) == fn_missing
    for fn in [name, "csc-test-doesnotexist"]:
        err = expect_error("CodeSigningConfigNotFoundException", 404, lam.put_function_code_signing_config,
                           FunctionName=fn, CodeSigningConfigArn=bad)
        assert msg(err) == ("The code signing configuration cannot be found. Check that the provided configuration "
                            f"is not deleted: {bad}.")


def test_code_signing_survives_restart(fresh_server):
    srv = fresh_server()
    lam = srv.client("lambda")
    name = create_py_function(lam, CODE, name=unique("csc"))
    csc = create(lam)
    lam.put_function_code_signing_config(CodeSigningConfigArn=csc["CodeSigningConfigArn"], FunctionName=name)
    srv.restart()
    lam = srv.client("lambda")
    assert lam.get_code_signing_config(CodeSigningConfigArn=csc["CodeSigningConfigArn"])["CodeSigningConfig"] == csc
    assert lam.get_function_code_signing_config(FunctionName=name)["CodeSigningConfigArn"] == csc["CodeSigningConfigArn"]


def test_create_function_with_code_signing_config(lam):
    a = create(lam)["CodeSigningConfigArn"]
    name = create_py_function(lam, CODE, CodeSigningConfigArn=a)
    assert lam.get_function_code_signing_config(FunctionName=name)["CodeSigningConfigArn"] == a
    assert f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}" in \
        lam.list_functions_by_code_signing_config(CodeSigningConfigArn=a)["FunctionArns"]
    bad = a[:-1] + ("y" if a[-1] != "y" else "z")
    err = expect_error("CodeSigningConfigNotFoundException", 404, create_py_function, lam, CODE,
                       CodeSigningConfigArn=bad)
    assert msg(err) == ("The code signing configuration cannot be found. Check that the provided configuration "
                        f"is not deleted: {bad}.")


def test_code_signing_policy_value_set(server):
    loose = server.client("lambda", parameter_validation=False)
    err = expect_error("ValidationException", 400, loose.create_code_signing_config,
                       AllowedPublishers={"SigningProfileVersionArns": [
                           "arn:aws:signer:us-east-1:000000000000:/signing-profiles/p/v1"]},
                       CodeSigningPolicies={"UntrustedArtifactOnDeployment": "Block"})
    assert err["Error"]["Message"] == (
        "1 validation error detected: Value 'Block' at 'codeSigningPolicies.untrustedArtifactOnDeployment' failed "
        "to satisfy constraint: Member must satisfy enum value set: [Warn, Enforce]")
