"""Powertools for AWS Lambda (Python), shipped in the function's zip as on AWS: its Logger takes its
level from AWS_LAMBDA_LOG_LEVEL (LoggingConfig.ApplicationLogLevel, JSON format) and its JSON
records reach LogType=Tail and CloudWatch Logs; Metrics and Tracer import and run."""
import base64
import json
import os

import aws_lambda_powertools
import jmespath
import pytest
import typing_extensions

from conftest import create_py_function

APP = """
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger(service="orders")
metrics = Metrics(namespace="Shop", service="orders")
tracer = Tracer(service="orders", disabled=True)

@metrics.log_metrics
@logger.inject_lambda_context
def handler(event, context):
    logger.debug("debug from powertools")
    logger.info("info from powertools", extra={"order": 7})
    logger.warning("warning from powertools")
    metrics.add_metric(name="Orders", unit=MetricUnit.Count, value=1)
    return {"level": logger.log_level}
"""


def package_files():
    """Powertools and its dependencies, as `pip install -t` would put them in a zip."""
    files = {"app.py": APP}
    for mod in (aws_lambda_powertools, jmespath):
        root = os.path.dirname(mod.__file__)
        base = os.path.dirname(root)
        for d, _, names in os.walk(root):
            if "__pycache__" in d:
                continue
            for n in names:
                if n.endswith((".py", ".typed", ".json")):
                    p = os.path.join(d, n)
                    with open(p, "rb") as f:
                        files[os.path.relpath(p, base)] = f.read()
    with open(typing_extensions.__file__, "rb") as f:
        files["typing_extensions.py"] = f.read()
    return files


@pytest.fixture(scope="module")
def files():
    return package_files()


def run(server, files, level):
    lam, logs = server.client("lambda"), server.client("logs")
    name = create_py_function(lam, files, Timeout=30, MemorySize=256,
                              LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": level})
    r = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    out = json.loads(r["Payload"].read())
    assert "FunctionError" not in r, out
    rid = r["ResponseMetadata"]["RequestId"]
    tail = base64.b64decode(r["LogResult"]).decode()
    group = f"/aws/lambda/{name}"
    stream = logs.describe_log_streams(logGroupName=group)["logStreams"][0]["logStreamName"]
    cw = [e["message"] for e in logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]]
    return out, rid, tail, cw


def powertools_records(lines):
    recs = [json.loads(l) for l in lines if l.startswith("{")]
    return [x for x in recs if x.get("service") == "orders" and "level" in x]


def test_logger_takes_the_level_from_logging_config(server, files):
    out, rid, tail, cw = run(server, files, "DEBUG")
    assert out == {"level": 10}, "Powertools read AWS_LAMBDA_LOG_LEVEL=DEBUG"
    for lines in (tail.splitlines(), cw):
        recs = powertools_records(lines)
        assert [(x["level"], x["message"]) for x in recs] == [
            ("DEBUG", "debug from powertools"), ("INFO", "info from powertools"),
            ("WARNING", "warning from powertools")], lines
        assert all(x["function_request_id"] == rid for x in recs), recs
        assert recs[1]["order"] == 7
    emf = [json.loads(l) for l in cw if l.startswith("{") and "_aws" in l]
    assert len(emf) == 1 and emf[0]["Orders"] in (1, 1.0, [1.0]), emf
    assert emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Shop"


def test_logger_level_warn_filters(server, files):
    out, rid, tail, cw = run(server, files, "WARN")
    assert out == {"level": 30}
    for lines in (tail.splitlines(), cw):
        recs = powertools_records(lines)
        assert [(x["level"], x["message"]) for x in recs] == [("WARNING", "warning from powertools")], lines
