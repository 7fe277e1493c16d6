"""Function URLs: the control plane (Create/Get/Update/Delete/ListFunctionUrlConfigs) and the
HTTP endpoint, which turns a request into a payload format 2.0 event and the function's answer
into the response, as on AWS."""
import base64
import http.client
import json
import re

from conftest import create_py_function, expect_error, make_zip

ECHO = """
import base64, json
def handler(event, context):
    if event.get("rawPath") == "/plain":
        return {"just": "json", "n": 1}
    if event.get("rawPath") == "/boom":
        raise ValueError("boom")
    if event.get("rawPath") == "/binary":
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(b"\\x00\\x01\\xff").decode(), "isBase64Encoded": True}
    return {"statusCode": 201, "headers": {"x-out": "yes", "content-type": "application/json"},
            "cookies": ["s=1; Path=/", "t=2"], "body": json.dumps({"event": event, "version": context.function_version})}
"""


def url_id(cfg):
    m = re.fullmatch(r"http://([a-z0-9]{32})\.lambda-url\.us-east-1\.localhost:(\d+)/", cfg["FunctionUrl"])
    assert m, cfg["FunctionUrl"]
    return m.group(1)


def request(server, uid, method, path, body=None, headers=None, host=True):
    """A request to the function URL, by Host header (as a browser or curl sends it: the name
    need not resolve here) or by the path-style fallback."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = dict(headers or {})
    if host:
        headers["Host"] = f"{uid}.lambda-url.us-east-1.localhost:{server.port}"
    else:
        path = f"/_ruststack/url/{uid}{path}"
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r, data


def test_url_config_lifecycle(lam):
    name = create_py_function(lam, ECHO)
    expect_error("ResourceNotFoundException", 404, lam.get_function_url_config, FunctionName=name)
    cfg = lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert cfg["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert cfg["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    # AWS's CreateFunctionUrlConfig answer names InvokeMode only when the request did.
    assert cfg["AuthType"] == "NONE" and "InvokeMode" not in cfg and cfg["CreationTime"]
    url_id(cfg)
    err = expect_error("ResourceConflictException", 409, lam.create_function_url_config, FunctionName=name, AuthType="NONE")
    assert "FunctionUrlConfig exists" in err["Error"]["Message"]
    got = lam.get_function_url_config(FunctionName=name)
    assert got["FunctionUrl"] == cfg["FunctionUrl"] and got["LastModifiedTime"]
    up = lam.update_function_url_config(FunctionName=name, AuthType="AWS_IAM", Cors={"AllowOrigins": ["*"]})
    assert up["AuthType"] == "AWS_IAM" and up["Cors"]["AllowOrigins"] == ["*"] and up["FunctionUrl"] == cfg["FunctionUrl"]
    listed = lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
    assert [c["FunctionUrl"] for c in listed] == [cfg["FunctionUrl"]]
    err = expect_error("ValidationException", 400, lam.create_function_url_config, FunctionName=name,
                       Qualifier="1", AuthType="NONE")
    assert err["Error"]["Message"] == (
        "1 validation error detected: Value '1' at 'qualifier' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)")
    expect_error("ResourceNotFoundException", 404, lam.create_function_url_config, FunctionName=name,
                 Qualifier="nope", AuthType="NONE")
    lam.delete_function_url_config(FunctionName=name)
    expect_error("ResourceNotFoundException", 404, lam.get_function_url_config, FunctionName=name)
    assert lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"] == []


def test_url_request_becomes_an_event_and_the_answer_a_response(lam, server):
    name = create_py_function(lam, ECHO)
    uid = url_id(lam.create_function_url_config(FunctionName=name, AuthType="NONE"))
    r, data = request(server, uid, "POST", "/hello/world?a=1&a=2&b=x%20y", body=b'{"k": "v"}',
                      headers={"Content-Type": "application/json", "Cookie": "c1=1; c2=2", "X-Custom": "Z"})
    assert r.status == 201, data
    assert r.getheader("x-out") == "yes"
    assert r.headers.get_all("set-cookie") == ["s=1; Path=/", "t=2"]
    out = json.loads(data)
    ev = out["event"]
    assert out["version"] == "$LATEST"
    assert ev["version"] == "2.0" and ev["routeKey"] == "$default"
    assert ev["rawPath"] == "/hello/world" and ev["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert ev["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert ev["cookies"] == ["c1=1", "c2=2"] and "cookie" not in ev["headers"]
    assert ev["headers"]["x-custom"] == "Z" and ev["headers"]["content-type"] == "application/json"
    assert ev["body"] == '{"k": "v"}' and ev["isBase64Encoded"] is False
    ctx = ev["requestContext"]
    assert ctx["http"]["method"] == "POST" and ctx["http"]["path"] == "/hello/world"
    assert ctx["apiId"] == uid and ctx["domainPrefix"] == uid and ctx["stage"] == "$default"
    assert ctx["requestId"] == r.getheader("x-amzn-RequestId")
    # The path-style fallback reaches the same function.
    r, data = request(server, uid, "GET", "/plain", host=False)
    assert r.status == 200 and r.getheader("content-type") == "application/json"
    assert json.loads(data) == {"just": "json", "n": 1}
    # A binary body arrives base64-encoded; a base64 answer leaves as bytes.
    r, data = request(server, uid, "PUT", "/bin-in", body=b"\x00\xffraw", headers={"Content-Type": "application/octet-stream"})
    ev = json.loads(data)["event"]
    assert ev["isBase64Encoded"] is True and base64.b64decode(ev["body"]) == b"\x00\xffraw"
    r, data = request(server, uid, "GET", "/binary")
    assert r.status == 200 and data == b"\x00\x01\xff" and r.getheader("content-type") == "application/octet-stream"
    # A function error is a 502.
    r, data = request(server, uid, "GET", "/boom")
    assert r.status == 502 and json.loads(data) == {"Message": "Internal Server Error"}
    # Unknown URL ids are not found.
    r, _ = request(server, "f" * 32, "GET", "/")
    assert r.status == 404


def test_url_auth_cors_and_alias(lam, server):
    name = create_py_function(lam, ECHO)
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": "def handler(e, c): return 'v2'\n"}))
    alias_cfg = lam.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE",
                                               Cors={"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"],
                                                     "AllowHeaders": ["x-custom"], "MaxAge": 60})
    assert alias_cfg["FunctionArn"].endswith(f"function:{name}:live")
    uid = url_id(alias_cfg)
    r, data = request(server, uid, "GET", "/x", headers={"Origin": "https://app.example"})
    assert json.loads(data)["version"] == "1", "the alias's version answers"
    assert r.getheader("access-control-allow-origin") == "https://app.example"
    r, _ = request(server, uid, "OPTIONS", "/x", headers={"Origin": "https://app.example",
                                                          "Access-Control-Request-Method": "POST"})
    assert r.status == 200 and r.getheader("access-control-allow-methods") == "GET,POST"
    assert r.getheader("access-control-allow-headers") == "x-custom" and r.getheader("access-control-max-age") == "60"
    r, _ = request(server, uid, "GET", "/x", headers={"Origin": "https://evil.example"})
    assert r.getheader("access-control-allow-origin") is None
    # The unqualified URL runs $LATEST; AWS_IAM wants a signed request.
    latest = url_id(lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM"))
    r, data = request(server, latest, "GET", "/")
    assert r.status == 403 and json.loads(data) == {"Message": "Forbidden"}
    r, data = request(server, latest, "GET", "/", headers={
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=x"})
    assert r.status == 200 and json.loads(data) == "v2"
