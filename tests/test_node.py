"""nodejs functions in subprocess mode: the bundled runtime client (runtime-api/node/bootstrap.js)
on the host's `node`, driven through boto3 like the Python tests."""
import base64
import json
import shutil
import subprocess

import pytest
from botocore.exceptions import ClientError

from conftest import invoke, make_zip, unique

ROLE = "arn:aws:iam::000000000000:role/lambda"


def node_major():
    node = shutil.which("node")
    assert node, "these tests need node on PATH (the machine image has it)"
    return subprocess.run([node, "-p", "process.versions.node.split('.')[0]"], capture_output=True, text=True).stdout.strip()


def create_node(lam, files, handler="index.handler", runtime=None, **kw):
    name = unique("node")
    lam.create_function(FunctionName=name, Runtime=runtime or "nodejs%s.x" % node_major(), Role=ROLE,
                        Handler=handler, Code={"ZipFile": make_zip(files)}, **kw)
    return name


ESM_CONTEXT = """
let calls = 0;
export const handler = async (event, context) => {
  calls += 1;
  console.log('hello from', context.functionName);
  return {
    event, calls, pid: process.pid,
    requestId: context.awsRequestId, arn: context.invokedFunctionArn,
    name: context.functionName, version: context.functionVersion, memory: context.memoryLimitInMB,
    group: context.logGroupName, remaining: context.getRemainingTimeInMillis(),
    myVar: process.env.MY_VAR, region: process.env.AWS_REGION, exec: process.env.AWS_EXECUTION_ENV,
    trace: process.env._X_AMZN_TRACE_ID, root: process.env.LAMBDA_TASK_ROOT, cwd: process.cwd(),
    tz: process.env.TZ, endpoint: process.env.AWS_ENDPOINT_URL,
  };
};
"""


def test_esm_round_trip_context_env_and_warm_reuse(lam, server):
    name = create_node(lam, {"index.mjs": ESM_CONTEXT}, MemorySize=256, Timeout=7,
                       Environment={"Variables": {"MY_VAR": "hi", "TZ": "Europe/Paris"}})
    r, out = invoke(lam, name, {"n": 1}, LogType="Tail", decode=True)
    assert r["StatusCode"] == 200 and "FunctionError" not in r, out
    assert out["event"] == {"n": 1} and out["calls"] == 1
    assert out["requestId"] == r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert out["arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert (out["name"], out["version"], out["memory"]) == (name, "$LATEST", "256")
    assert out["group"] == f"/aws/lambda/{name}"
    assert 5000 < out["remaining"] <= 7000
    assert out["myVar"] == "hi" and out["region"] == "us-east-1"
    assert out["exec"].startswith("AWS_Lambda_nodejs")
    assert out["trace"].startswith("Root=1-")
    assert out["root"] == out["cwd"]
    assert out["tz"] == "Europe/Paris", "TZ is not reserved: the function's own value wins"
    assert out["endpoint"] == server.endpoint
    log = base64.b64decode(r["LogResult"]).decode()
    line = [x for x in log.splitlines() if "hello from" in x][0]
    ts, rid, level, msg = line.split("\t")
    assert ts.endswith("Z") and rid == out["requestId"] and level == "INFO" and msg == f"hello from {name}"
    _, out2 = invoke(lam, name, {"n": 2}, decode=True)
    assert out2["calls"] == 2 and out2["pid"] == out["pid"], "the warm environment is reused"


def test_commonjs_callback_nested_dir_and_handler_path(lam):
    files = {
        "src/app.js": "exports.api = { v1: { handle: (event, context, callback) => {"
                      " setTimeout(() => callback(null, {got: event.x, kind: 'callback'}), 20); } } };\n",
        "src/lib.cjs": "module.exports = 41;\n",
        "src/sum.cjs": "const base = require('./lib.cjs'); exports.handler = async (e) => base + e.add;\n",
    }
    name = create_node(lam, files, handler="src/app.api.v1.handle")
    assert invoke(lam, name, {"x": 5}, decode=True)[1] == {"got": 5, "kind": "callback"}
    name2 = create_node(lam, files, handler="src/sum.handler")
    assert invoke(lam, name2, {"add": 1}, decode=True)[1] == 42


def test_esm_package_type_module_and_node_modules(lam):
    files = {
        "package.json": json.dumps({"type": "module"}),
        "index.js": "import greet from 'greeter';\nexport async function handler(e) { return greet(e.who); }\n",
        "node_modules/greeter/package.json": json.dumps({"name": "greeter", "main": "main.js", "type": "module"}),
        "node_modules/greeter/main.js": "export default (who) => `hello ${who}`;\n",
    }
    name = create_node(lam, files)
    assert invoke(lam, name, {"who": "node"}, decode=True)[1] == "hello node"


def test_sync_handler_answers_null_unless_callback(lam):
    """AWS: a non-async handler that returns a value without calling the callback answers
    null; one that calls back waits for the event loop (callbackWaitsForEmptyEventLoop) unless
    it turns that off."""
    files = {
        "index.js": "exports.plain = () => 'ignored';\n"
                    "exports.waits = (e, c, cb) => { setTimeout(() => { globalThis.late = true; }, 100); cb(null, 'early'); };\n"
                    "exports.seesLate = async () => globalThis.late === true;\n"
                    "exports.nowait = (e, c, cb) => { c.callbackWaitsForEmptyEventLoop = false;"
                    " setTimeout(() => {}, 3000); cb(null, 'now'); };\n",
    }
    assert invoke(lam, create_node(lam, files, handler="index.plain"), decode=True)[1] is None
    name = create_node(lam, files, handler="index.waits")
    assert invoke(lam, name, decode=True)[1] == "early"
    name2 = create_node(lam, files, handler="index.nowait", Timeout=2)
    r, out = invoke(lam, name2, decode=True)
    assert out == "now" and "FunctionError" not in r


def test_handler_errors(lam):
    files = {
        "index.mjs": "export const thrown = async () => { throw new TypeError('bad thing'); };\n"
                     "export const called = (e, c, cb) => cb('just a string');\n"
                     "export const custom = async () => { const e = new Error('nope'); e.name = 'MyError'; throw e; };\n",
    }
    r, out = invoke(lam, create_node(lam, files, handler="index.thrown"), decode=True)
    assert r["FunctionError"] == "Unhandled"
    assert out["errorType"] == "TypeError" and out["errorMessage"] == "bad thing"
    assert out["trace"][0] == "TypeError: bad thing" and any("index.mjs" in t for t in out["trace"])
    r, out = invoke(lam, create_node(lam, files, handler="index.called"), decode=True)
    assert r["FunctionError"] == "Unhandled" and out == {"errorType": "string", "errorMessage": "just a string", "trace": []}
    r, out = invoke(lam, create_node(lam, files, handler="index.custom"), decode=True)
    assert out["errorType"] == "MyError" and out["errorMessage"] == "nope"


@pytest.mark.parametrize("files,handler,error_type,message", [
    ({"index.js": "exports.handler = async () => 1;\n"}, "missing.handler", "Runtime.ImportModuleError",
     "Error: Cannot find module 'missing'"),
    ({"index.js": "exports.other = async () => 1;\n"}, "index.handler", "Runtime.HandlerNotFound",
     "index.handler is undefined or not exported"),
    ({"index.js": "exports.handler = 42;\n"}, "index.handler", "Runtime.HandlerNotFound",
     "index.handler is not a function"),
    ({"index.js": "exports.handler = async () => {\n"}, "index.handler", "Runtime.UserCodeSyntaxError",
     "SyntaxError: "),
    ({"index.js": "exports.handler = async () => 1;\n"}, "index", "Runtime.MalformedHandlerName", "Bad handler"),
    ({"index.js": "throw new RangeError('at load');\n"}, "index.handler", "RangeError", "at load"),
])
def test_init_errors(lam, files, handler, error_type, message):
    name = create_node(lam, files, handler=handler)
    r, out = invoke(lam, name, decode=True)
    assert r["FunctionError"] == "Unhandled", out
    assert out["errorType"] == error_type and out["errorMessage"].startswith(message), out
    # The function stays usable once fixed.
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"index.js": "exports.handler = async () => 'fixed';\n"}))
    lam.update_function_configuration(FunctionName=name, Handler="index.handler")
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert invoke(lam, name, decode=True)[1] == "fixed"


def test_unhandled_rejection_and_exit_recover(lam):
    files = {"index.js": "let n = 0;\n"
                         "exports.handler = async (e) => { n += 1;"
                         " if (e.reject) { Promise.reject(new Error('floating')); await new Promise(r => setTimeout(r, 200)); }"
                         " if (e.exit) process.exit(3);"
                         " return n; };\n"}
    name = create_node(lam, files)
    r, out = invoke(lam, name, {"reject": True}, decode=True)
    assert r["FunctionError"] == "Unhandled"
    assert out["errorType"] == "Runtime.UnhandledPromiseRejection" and out["errorMessage"] == "Error: floating"
    assert invoke(lam, name, decode=True)[1] == 1, "a fresh environment after the runtime exited"
    r, out = invoke(lam, name, {"exit": True}, decode=True)
    assert out["errorType"] == "Runtime.ExitError" and "exit status 3" in out["errorMessage"]
    assert invoke(lam, name, decode=True)[1] == 1


def test_timeout(lam):
    name = create_node(lam, {"index.js": "exports.handler = () => new Promise(() => setInterval(() => {}, 1000));\n"},
                       Timeout=1)
    r, out = invoke(lam, name, decode=True)
    assert r["FunctionError"] == "Unhandled" and out["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in out["errorMessage"]


def test_layer_node_modules(lam):
    """A layer's nodejs/node_modules is on NODE_PATH, as in the Lambda images (require only:
    ESM import does not read NODE_PATH, on AWS either)."""
    layer = lam.publish_layer_version(LayerName=unique("nodelayer"), Content={"ZipFile": make_zip({
        "nodejs/node_modules/shout/index.js": "module.exports = (s) => s.toUpperCase() + '!';\n"})})
    name = create_node(lam, {"index.js": "const shout = require('shout');\nexports.handler = async (e) => shout(e.s);\n"},
                       Layers=[layer["LayerVersionArn"]])
    assert invoke(lam, name, {"s": "hey"}, decode=True)[1] == "HEY!"


def test_no_node_on_the_host_is_a_clear_error(fresh_server):
    srv = fresh_server("--node", "/nonexistent/node")
    lam = srv.client("lambda")
    name = create_node(lam, {"index.js": "exports.handler = async () => 1;\n"})
    for _ in range(2):
        with pytest.raises(ClientError) as ei:
            lam.invoke(FunctionName=name, Payload=b"{}")
        err = ei.value.response
        assert err["Error"]["Code"] == "InvalidRuntimeException", err
        assert "no Node.js found" in err["Error"]["Message"] and "/nonexistent/node" in err["Error"]["Message"]
    assert srv.client("lambda").get_function(FunctionName=name)["Configuration"]["State"] == "Active"


STREAMING = """
export const handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  if (event.rawPath) {
    responseStream = awslambda.HttpResponseStream.from(responseStream, {
      statusCode: 201, headers: {'content-type': 'text/html', 'x-streamed': 'yes'}, cookies: ['k=v']});
  }
  responseStream.write('<p>');
  await new Promise((r) => setTimeout(r, 20));
  responseStream.write(context.functionName);
  responseStream.end('</p>');
});
"""


def test_streamify_response_answers_every_path(lam, server):
    """awslambda.streamifyResponse handlers load and answer through Invoke (collected),
    InvokeWithResponseStream and a function URL with HttpResponseStream (streamed: see
    test_streaming.py for chunks arriving before the handler returns)."""
    import http.client
    name = create_node(lam, {"index.mjs": STREAMING})
    r = lam.invoke(FunctionName=name, Payload=b"{}")
    assert "FunctionError" not in r and r["Payload"].read() == f"<p>{name}</p>".encode()
    events = list(lam.invoke_with_response_stream(FunctionName=name, Payload=b"{}")["EventStream"])
    assert b"".join(e["PayloadChunk"]["Payload"] for e in events if "PayloadChunk" in e) == f"<p>{name}</p>".encode()
    assert "InvokeComplete" in events[-1] and "ErrorCode" not in events[-1]["InvokeComplete"]
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE", InvokeMode="RESPONSE_STREAM")["FunctionUrl"]
    host = url.split("//")[1].rstrip("/")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/page", headers={"Host": host})
    resp = conn.getresponse()
    assert resp.status == 201 and resp.getheader("content-type") == "text/html" and resp.getheader("x-streamed") == "yes"
    assert resp.getheader("set-cookie") == "k=v" and resp.read() == f"<p>{name}</p>".encode()
    conn.close()


def test_oversize_answer_and_flood(lam):
    """A 7 MB answer is Function.ResponseSizeTooLarge (the runtime keeps serving); a handler
    that floods stdout still answers, with the log tail cut to 4 KB."""
    files = {"index.js": "exports.big = async () => 'x'.repeat(7 * 1024 * 1024);\n"
                         "exports.flood = async () => { for (let i = 0; i < 50000; i++) console.log('line', i); return 'done'; };\n"}
    name = create_node(lam, files, handler="index.big")
    r, out = invoke(lam, name, decode=True)
    assert r["FunctionError"] == "Unhandled" and out["errorType"] == "Function.ResponseSizeTooLarge", out
    flood = create_node(lam, files, handler="index.flood", Timeout=30)
    r, out = invoke(lam, flood, LogType="Tail", decode=True)
    assert out == "done" and len(base64.b64decode(r["LogResult"])) <= 4096
