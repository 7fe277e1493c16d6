"""The model layer: every request is checked against botocore's model before any handler, and
answered with AWS's ValidationException text. The messages below are the ones recorded from real
AWS (LocalStack's test_lambda_api snapshots) unless a comment says they follow from the model.
boto3's own parameter validation is off, so each bad value reaches the server."""

import json

import pytest

from conftest import expect_error, http, make_zip, unique

ROLE = "arn:aws:iam::000000000000:role/lambda"
ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
FN_PATTERN = ("(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:)?(\\d{12}:)?"
              "(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?")
ZIP = make_zip({"app.py": "def handler(e, c):\n    return e\n"})


@pytest.fixture(scope="module")
def loose(server):
    return server.client("lambda", parameter_validation=False)


def invalid(call, **kw):
    """The message of the ValidationException (400) that this call must get."""
    err = expect_error("ValidationException", 400, call, **kw)
    return err["Error"]["Message"]


def one(value, member, constraint):
    return f"1 validation error detected: Value {value} at '{member}' failed to satisfy constraint: {constraint}"


def create_kw(**kw):
    args = dict(FunctionName=unique("val"), Runtime="python3.12", Role=ROLE, Handler="app.handler",
                Code={"ZipFile": ZIP})
    args.update(kw)
    return args


def test_function_name_pattern_and_nothing_created(loose, lam):
    msg = invalid(loose.create_function, **create_kw(FunctionName="invalid:function:name"))
    assert msg == one("'invalid:function:name'", "functionName",
                      f"Member must satisfy regular expression pattern: {FN_PATTERN}")


def test_function_arn_longer_than_the_model_allows(loose):
    long_arn = ARN + "a" * (141 - len(ARN))
    assert len(long_arn) == 141
    msg = invalid(loose.create_function, **create_kw(FunctionName=long_arn))
    assert msg == one(f"'{long_arn}'", "functionName", "Member must have length less than or equal to 140")


def test_role_pattern(loose):
    msg = invalid(loose.create_function, **create_kw(Role="r1"))
    assert msg == one("'r1'", "role", "Member must satisfy regular expression pattern: "
                      "arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+")


def test_architectures(loose):
    msg = invalid(loose.create_function, **create_kw(Architectures=["X86_64"]))
    assert msg == one("'[X86_64]'", "architectures", "Member must satisfy constraint: "
                      "[Member must satisfy enum value set: [x86_64, arm64], Member must not be null]")
    msg = invalid(loose.create_function, **create_kw(Architectures=["x86_64", "arm64"]))
    assert msg == one("'[x86_64, arm64]'", "architectures", "Member must have length less than or equal to 1")


def test_snapstart_enum_nested_path(loose):
    msg = invalid(loose.create_function, **create_kw(SnapStart={"ApplyOn": "invalidOption"}))
    assert msg == one("'invalidOption'", "snapStart.applyOn",
                      "Member must satisfy enum value set: [PublishedVersions, None]")


def test_memory_and_timeout_ranges_all_reported_in_member_order(loose, lam):
    # Bounds and order follow from the model (Timeout 1..5400, MemorySize 128..32768).
    kw = create_kw(Timeout=0, MemorySize=100000)
    msg = invalid(loose.create_function, **kw)
    assert msg == ("2 validation errors detected: "
                   "Value '0' at 'timeout' failed to satisfy constraint: Member must have value greater than or equal to 1; "
                   "Value '100000' at 'memorySize' failed to satisfy constraint: "
                   "Member must have value less than or equal to 32768")
    assert invalid(loose.create_function, **create_kw(MemorySize=64)) == one(
        "'64'", "memorySize", "Member must have value greater than or equal to 128")
    expect_error("ResourceNotFoundException", 404, lam.get_function, FunctionName=kw["FunctionName"])


def test_missing_required_members_are_null(loose):
    msg = invalid(loose.create_function, FunctionName=unique("val"), Runtime="python3.12")
    assert msg == ("2 validation errors detected: "
                   "Value null at 'role' failed to satisfy constraint: Member must not be null; "
                   "Value null at 'code' failed to satisfy constraint: Member must not be null")


def test_environment_keys_are_sensitive(loose):
    msg = invalid(loose.create_function, **create_kw(Environment={"Variables": {"1BAD": "x"}}))
    assert msg == ("1 validation error detected: Value at 'environment.variables' failed to satisfy constraint: "
                   "Map keys must satisfy constraint: [Member must satisfy regular expression pattern: "
                   "[a-zA-Z]([a-zA-Z0-9_])+]")


def test_qualifier_patterns(loose):
    msg = invalid(loose.add_permission, FunctionName="val-any", Action="lambda:InvokeFunction", StatementId="s3",
                  Principal="s3.amazonaws.com", Qualifier="invalid-qualifier-with-?-char")
    assert msg == one("'invalid-qualifier-with-?-char'", "qualifier",
                      "Member must satisfy regular expression pattern: \\$(LATEST(\\.PUBLISHED)?)|[a-zA-Z0-9-_$]+")
    # Function URL qualifiers are alias names: not a version, not $LATEST. Checked before lookup.
    for q in ("1", "$LATEST"):
        msg = invalid(loose.get_function_url_config, FunctionName="val-missing", Qualifier=q)
        assert msg == one(f"'{q}'", "qualifier",
                          "Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)")


def test_statement_id_pattern(loose):
    msg = invalid(loose.add_permission, FunctionName="val-any", Action="lambda:InvokeFunction",
                  StatementId="example.com", Principal="s3.amazonaws.com")
    assert msg == one("'example.com'", "statementId", "Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)")


def test_alias_name_not_all_digits(loose):
    msg = invalid(loose.create_alias, FunctionName="val-any", Name="2024", FunctionVersion="1")
    assert msg == one("'2024'", "name", "Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)")


def test_routing_config_weights(loose):
    def routing(weights):
        return invalid(loose.update_alias, FunctionName="val-any", Name="live",
                       RoutingConfig={"AdditionalVersionWeights": weights})

    value_rule = ("Map value must satisfy constraint: [Member must have value less than or equal to 1.0, "
                  "Member must have value greater than or equal to 0.0, Member must not be null]")
    assert routing({"2": 2.0}) == one("'{2=2.0}'", "routingConfig.additionalVersionWeights", value_rule)
    assert routing({"2": -1.0}) == one("'{2=-1.0}'", "routingConfig.additionalVersionWeights", value_rule)
    assert routing({"$LATEST": 0.5}) == one(
        "'{$LATEST=0.5}'", "routingConfig.additionalVersionWeights",
        "Map keys must satisfy constraint: [Member must have length less than or equal to 1024, "
        "Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: [0-9]+]")


def test_provisioned_concurrency_minimum(loose):
    msg = invalid(loose.put_provisioned_concurrency_config, FunctionName="val-any", Qualifier="1",
                  ProvisionedConcurrentExecutions=0)
    assert msg == one("'0'", "provisionedConcurrentExecutions", "Member must have value greater than or equal to 1")


def test_enums_in_aws_order(loose):
    msg = invalid(loose.put_function_recursion_config, FunctionName="val-any", RecursiveLoop="InvalidValue")
    assert msg == one("'InvalidValue'", "recursiveLoop", "Member must satisfy enum value set: [Terminate, Allow]")
    msg = invalid(loose.create_function_url_config, FunctionName="val-any", AuthType="NONE", InvokeMode="UNKNOWN")
    assert msg == one("'UNKNOWN'", "invokeMode", "Member must satisfy enum value set: [RESPONSE_STREAM, BUFFERED]")
    # Not recorded from AWS: the model's AuthType value set, in the model's order.
    msg = invalid(loose.create_function_url_config, FunctionName="val-any", AuthType="OPEN")
    assert msg == one("'OPEN'", "authType", "Member must satisfy enum value set: [NONE, AWS_IAM]")
    msg = invalid(loose.update_function_url_config, FunctionName="val-any", InvokeMode="UNKNOWN")
    assert msg == one("'UNKNOWN'", "invokeMode", "Member must satisfy enum value set: [RESPONSE_STREAM, BUFFERED]")
    msg = invalid(loose.list_functions, FunctionVersion="invalid")
    assert msg == one("'invalid'", "functionVersion", "Member must satisfy enum value set: [ALL]")


def test_untag_without_keys(loose):
    msg = invalid(loose.untag_resource, Resource=ARN + "val-any")
    assert msg == one("null", "tagKeys", "Member must not be null")


def test_destination_pattern(loose):
    bad = "arn:aws:_-/!lambda:us-east-1:000000000000:function:val-any:1"
    msg = invalid(loose.put_function_event_invoke_config, FunctionName="val-any",
                  DestinationConfig={"OnFailure": {"Destination": bad}})
    assert msg == one(f"'{bad}'", "destinationConfig.onFailure.destination",
                      "Member must satisfy regular expression pattern: $|kafka://([^.]([a-zA-Z0-9\\-_.]{0,248}))|"
                      "arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\\-])+:((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-"
                      "\\d{1})?:(\\d{12})?:(.*)")


LAYER_RUNTIMES = ("nodejs20.x, python3.14, provided.al2023, python3.12, python3.13, nodejs24.x, nodejs22.x, java25, "
                  "python3.10, python3.11, java21, ruby3.3, ruby3.4, ruby3.2, python3.8, python3.9, java17, "
                  "nodejs16.x, dotnet10, dotnet8, java11, dotnet6, nodejs18.x, provided.al2, java8.al2")


def test_layer_runtimes_and_architectures_two_errors(loose):
    msg = invalid(loose.publish_layer_version, LayerName=unique("val-layer"), Content={"ZipFile": ZIP},
                  CompatibleRuntimes=["invalidruntime", "invalidruntime2", "nodejs20.x"],
                  CompatibleArchitectures=["invalidarch", "x86_64"])
    assert msg == ("2 validation errors detected: Value '[invalidruntime, invalidruntime2, nodejs20.x]' at "
                   "'compatibleRuntimes' failed to satisfy constraint: Member must satisfy enum value set: "
                   f"[{LAYER_RUNTIMES}]; Value '[invalidarch, x86_64]' at 'compatibleArchitectures' failed to "
                   "satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: "
                   "[x86_64, arm64], Member must not be null]")


def test_list_layers_filters(loose):
    msg = invalid(loose.list_layers, CompatibleArchitecture="archdoesnotexist")
    assert msg == one("'archdoesnotexist'", "compatibleArchitecture",
                      "Member must satisfy enum value set: [x86_64, arm64]")
    msg = invalid(loose.list_layers, CompatibleRuntime="runtimedoesnotexist")
    assert msg.startswith(one("'runtimedoesnotexist'", "compatibleRuntime",
                              "Member must satisfy enum value set: [ruby3.5, ruby2.6, dotnetcore1.0, python3.7, "))
    assert msg.endswith(", ruby2.5, python3.6, python2.7]")


def test_layer_list_elements(loose):
    # Follows from the model's LayerVersionArn shape (its pattern text is the model's).
    bad = "arn:aws:lambda:us-east-1:000000000000:layer:no-version"
    msg = invalid(loose.create_function, **create_kw(Layers=[bad]))
    assert msg.startswith(one(f"'[{bad}]'", "layers", "Member must satisfy constraint: [Member must have length "
                              "less than or equal to 2048, Member must have length greater than or equal to 1, "
                              "Member must satisfy regular expression pattern: "))
    # AWS prints the pattern without the model's outer parentheses (PATTERN_TEXT in the generator).
    assert msg.endswith(":lambda:::awslayer:[a-zA-Z0-9-_]+), Member must not be null]")
    assert "pattern: (arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?" in msg


def test_invocation_type_header(loose):
    msg = invalid(loose.invoke, FunctionName="val-missing", InvocationType="Sideways", Payload=b"{}")
    assert msg == one("'Sideways'", "invocationType",
                      "Member must satisfy enum value set: [Event, RequestResponse, DryRun]")


def test_unimplemented_operation_is_named(loose):
    err = expect_error("InternalFailure", 501, loose.get_function_scaling_config, FunctionName="val-any",
                       Qualifier="1")
    assert err["Error"]["Message"] == "RustStack does not implement the Lambda operation GetFunctionScalingConfig"
    # The model layer still comes first.
    msg = invalid(loose.get_function_scaling_config, FunctionName="val-any", Qualifier="live")
    assert msg == one("'live'", "qualifier",
                      "Member must satisfy regular expression pattern: (\\$LATEST\\.PUBLISHED|[0-9]+)")


def test_paths_outside_the_model_and_bodies_that_are_not_json(server):
    status, headers, raw = http(server, "PATCH", "/2015-03-31/functions/x/nothing-here")
    assert status == 404 and headers["x-amzn-ErrorType"] == "UnknownOperationException"
    assert json.loads(raw)["message"] == "No Lambda operation matches PATCH /2015-03-31/functions/x/nothing-here"
    # An operation with body members needs a JSON object before the model can be checked.
    status, headers, raw = http(server, "POST", "/2015-03-31/functions", body=b"{not json",
                                headers={"Content-Type": "application/json"})
    assert status == 400 and headers["x-amzn-ErrorType"] == "InvalidRequestContentException"
    assert json.loads(raw)["message"] == "Could not parse request body into json: key must be a string at line 1 column 2"
    # ValidationException's body: AWS's `message`, as every Lambda error, and the header.
    status, headers, raw = http(server, "GET", "/2015-03-31/functions?FunctionVersion=invalid")
    assert status == 400 and headers["x-amzn-ErrorType"] == "ValidationException"
    assert json.loads(raw)["message"] == (
        "1 validation error detected: Value 'invalid' at 'functionVersion' failed to satisfy constraint: "
        "Member must satisfy enum value set: [ALL]")
