"""Event source mappings: the Lambda control plane (Create/Get/List/Update/Delete with AWS's
shapes, states and errors, as LocalStack's recordings of AWS show them) and the pollers that
feed real Python functions from the embedded SQS: batching, retries into the dead-letter
queue, partial batch failures, FIFO order, filter criteria, disable/enable, restart and
kill -9."""
import hashlib
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import Server, create_py_function, expect_error, unique, wait_for

ACCOUNT = "000000000000"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# A function that appends each invocation's event to $OUT/<its name>.jsonl and fails, or
# reports failures, as each message body asks ({"fail": true}, {"report": true}).
RECORDER = r'''
import json, os, time
def handler(event, context):
    out = os.path.join(os.environ["OUT"], context.function_name + ".jsonl")
    with open(out, "a") as f:
        f.write(json.dumps(event) + "\n")
    bodies = []
    for r in event.get("Records", []):
        try:
            b = json.loads(r["body"])
        except ValueError:
            b = {}
        bodies.append((r["messageId"], b if isinstance(b, dict) else {}))
    time.sleep(max([b.get("sleep", 0) for _, b in bodies] or [0]))
    if any(b.get("fail") for _, b in bodies):
        raise RuntimeError("asked to fail")
    if any(b.get("bad_report") for _, b in bodies):
        return {"batchItemFailures": [{"foo": "notvalid"}]}
    return {"batchItemFailures": [{"itemIdentifier": i} for i, b in bodies if b.get("report")]}
'''


@pytest.fixture(scope="module")
def lam(srv):
    return srv.client("lambda")


@pytest.fixture(scope="module")
def sqs(srv):
    return srv.client("sqs")


@pytest.fixture
def out(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


def make_fn(lam, out, timeout=3):
    return create_py_function(lam, RECORDER, Timeout=timeout, Environment={"Variables": {"OUT": str(out)}})


def make_queue(sqs, fifo=False, **attrs):
    name = unique("q") + (".fifo" if fifo else "")
    a = {"VisibilityTimeout": "5", **{k: str(v) for k, v in attrs.items()}}
    if fifo:
        a["FifoQueue"] = "true"
    url = sqs.create_queue(QueueName=name, Attributes=a)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def events(out, fn):
    p = out / f"{fn}.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def records(out, fn):
    return [r for e in events(out, fn) for r in e["Records"]]


def bodies(out, fn):
    return [r["body"] for r in records(out, fn)]


def queue_count(sqs, url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def wait_state(lam, uuid, state, timeout=10):
    return wait_for(lambda: (m := lam.get_event_source_mapping(UUID=uuid))["State"] == state and m,
                    timeout, f"mapping {uuid} to be {state}")


def send_all(sqs, url, items, **kw):
    for i in range(0, len(items), 10):
        entries = [{"Id": str(j), "MessageBody": b, **kw} for j, b in enumerate(items[i:i + 10])]
        r = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not r.get("Failed"), r


def fn_arn(name):
    return f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"


# ---- control plane ----

def test_lifecycle_shape_and_states(lam, sqs, out):
    fn = make_fn(lam, out)
    _, qarn = make_queue(sqs)
    c = lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName=fn)
    assert c["ResponseMetadata"]["HTTPStatusCode"] == 202
    uuid = c["UUID"]
    assert UUID_RE.match(uuid)
    assert c["State"] == "Creating" and c["StateTransitionReason"] == "USER_INITIATED"
    assert c["BatchSize"] == 10 and c["MaximumBatchingWindowInSeconds"] == 0
    assert c["FunctionResponseTypes"] == []
    assert c["EventSourceArn"] == qarn and c["FunctionArn"] == fn_arn(fn)
    assert c["EventSourceMappingArn"] == f"arn:aws:lambda:us-east-1:{ACCOUNT}:event-source-mapping:{uuid}"
    assert c["LastModified"].year >= 2026
    # The keys of AWS's recorded SQS mapping, and no others.
    assert set(c) - {"ResponseMetadata"} == {
        "UUID", "BatchSize", "MaximumBatchingWindowInSeconds", "EventSourceArn", "EventSourceMappingArn",
        "FunctionArn", "LastModified", "State", "StateTransitionReason", "FunctionResponseTypes"}
    g = wait_state(lam, uuid, "Enabled")
    assert g["ResponseMetadata"]["HTTPStatusCode"] == 200 and g["UUID"] == uuid
    # Update: Updating, then Enabled again, with the new values.
    u = lam.update_event_source_mapping(UUID=uuid, BatchSize=20, MaximumBatchingWindowInSeconds=2,
                                        FunctionResponseTypes=["ReportBatchItemFailures"],
                                        ScalingConfig={"MaximumConcurrency": 3},
                                        FilterCriteria={"Filters": [{"Pattern": '{"body": {"a": ["1"]}}'}]})
    assert u["ResponseMetadata"]["HTTPStatusCode"] == 202 and u["State"] == "Updating"
    assert (u["BatchSize"], u["MaximumBatchingWindowInSeconds"]) == (20, 2)
    assert u["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert u["ScalingConfig"] == {"MaximumConcurrency": 3}
    assert u["FilterCriteria"] == {"Filters": [{"Pattern": '{"body": {"a": ["1"]}}'}]}
    wait_state(lam, uuid, "Enabled")
    # Clearing filters and scaling.
    u = lam.update_event_source_mapping(UUID=uuid, FilterCriteria={}, ScalingConfig={})
    assert "FilterCriteria" not in u and "ScalingConfig" not in u
    # Disable / enable.
    assert lam.update_event_source_mapping(UUID=uuid, Enabled=False)["State"] == "Disabling"
    wait_state(lam, uuid, "Disabled")
    assert lam.update_event_source_mapping(UUID=uuid, Enabled=True)["State"] == "Enabling"
    wait_state(lam, uuid, "Enabled")
    # Delete: Deleting, then gone.
    d = lam.delete_event_source_mapping(UUID=uuid)
    assert d["ResponseMetadata"]["HTTPStatusCode"] == 202 and d["State"] == "Deleting"
    wait_for(lambda: uuid not in [m["UUID"] for m in lam.list_event_source_mappings()["EventSourceMappings"]],
             10, "the mapping to be deleted")
    expect_error("ResourceNotFoundException", 404, lam.get_event_source_mapping, UUID=uuid)


def test_create_disabled_and_qualified(lam, sqs, out):
    fn = make_fn(lam, out)
    lam.publish_version(FunctionName=fn)
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion="1")
    _, qarn = make_queue(sqs)
    c = lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName=f"{fn}:live", Enabled=False, BatchSize=1)
    assert c["State"] == "Disabled" and c["FunctionArn"] == fn_arn(fn) + ":live" and c["BatchSize"] == 1
    assert lam.get_event_source_mapping(UUID=c["UUID"])["State"] == "Disabled"
    lam.delete_event_source_mapping(UUID=c["UUID"])


def test_errors_as_aws(lam, srv, sqs, out):
    fn = make_fn(lam, out, timeout=10)
    nope = "9f2b5a1e-0000-4000-8000-000000000000"
    for call, kw in [(lam.get_event_source_mapping, {}), (lam.delete_event_source_mapping, {}),
                     (lam.update_event_source_mapping, {"Enabled": False})]:
        err = expect_error("ResourceNotFoundException", 404, call, UUID=nope, **kw)
        assert err["Error"]["Message"] == "The resource you requested does not exist."
    # Listing does not care whether its filters name anything.
    assert lam.list_event_source_mappings(FunctionName="doesnotexist")["EventSourceMappings"] == []
    assert lam.list_event_source_mappings(
        EventSourceArn=f"arn:aws:sqs:us-east-1:{ACCOUNT}:somequeue")["EventSourceMappings"] == []
    missing_q = f"arn:aws:sqs:us-east-1:{ACCOUNT}:doesnotexist-{unique()}"

    def invalid(msg, **kw):
        err = expect_error("InvalidParameterValueException", 400, lam.create_event_source_mapping, **kw)
        assert err["Error"]["Message"] == msg, err

    invalid("Unrecognized event source.", FunctionName="doesnotexist")
    invalid("Function does not exist", FunctionName="doesnotexist", EventSourceArn=missing_q)
    invalid("Unsupported DestinationConfig parameter for given event source mapping type.",
            FunctionName="doesnotexist", EventSourceArn=missing_q,
            DestinationConfig={"OnSuccess": {"Destination": missing_q}})
    invalid("Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue. "
            "SQS Error Message: The specified queue does not exist.", FunctionName=fn, EventSourceArn=missing_q)
    invalid("Function does not exist", FunctionName=f"{fn}:nosuchalias", EventSourceArn=missing_q)
    _, qarn = make_queue(sqs)  # VisibilityTimeout 5 < the function's 10
    # AWS's wording, e.g. "InvalidParameterValueException: Queue visibility timeout: 30 seconds is
    # less than Function timeout: 60 seconds" (winglang/wing#1507, from AWS through Terraform).
    invalid("Queue visibility timeout: 5 seconds is less than Function timeout: 10 seconds",
            FunctionName=fn, EventSourceArn=qarn)
    # An update to a function whose timeout the queue's visibility timeout does not cover.
    short = make_fn(lam, out, timeout=3)
    m = lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName=short, Enabled=False)
    err = expect_error("InvalidParameterValueException", 400, lam.update_event_source_mapping,
                       UUID=m["UUID"], FunctionName=fn)
    assert err["Error"]["Message"] == "Queue visibility timeout: 5 seconds is less than Function timeout: 10 seconds"
    assert lam.get_event_source_mapping(UUID=m["UUID"])["FunctionArn"] == fn_arn(short)
    lam.delete_event_source_mapping(UUID=m["UUID"])
    _, qarn = make_queue(sqs, VisibilityTimeout=30)
    batch_rule = "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10"
    invalid(batch_rule, FunctionName=fn, EventSourceArn=qarn, BatchSize=11)
    for bad in ["null", '"simple string"', '{"eventSource": "aws:sqs"}', '{"eventSource": []}']:
        invalid("Invalid filter pattern definition.", FunctionName=fn, EventSourceArn=qarn,
                FilterCriteria={"Filters": [{"Pattern": bad}]})
    _, fifo = make_queue(sqs, fifo=True, VisibilityTimeout=30)
    invalid("Batching window is not supported for FIFO queues", FunctionName=fn, EventSourceArn=fifo,
            MaximumBatchingWindowInSeconds=1)
    # The model's ranges: ValidationException, worded as Lambda words it.
    loose = srv.client("lambda", parameter_validation=False)
    for kw, want in [
        (dict(BatchSize=10001), "Value '10001' at 'batchSize' failed to satisfy constraint: "
                                "Member must have value less than or equal to 10000"),
        (dict(BatchSize=0), "Value '0' at 'batchSize' failed to satisfy constraint: "
                            "Member must have value greater than or equal to 1"),
        (dict(ScalingConfig={"MaximumConcurrency": 1}),
         "Value '1' at 'scalingConfig.maximumConcurrency' failed to satisfy constraint: "
         "Member must have value greater than or equal to 2"),
        (dict(ScalingConfig={"MaximumConcurrency": 1001}),
         "Value '1001' at 'scalingConfig.maximumConcurrency' failed to satisfy constraint: "
         "Member must have value less than or equal to 1000"),
        (dict(MaximumBatchingWindowInSeconds=-1),
         "Value '-1' at 'maximumBatchingWindowInSeconds' failed to satisfy constraint: "
         "Member must have value greater than or equal to 0"),
        (dict(MaximumBatchingWindowInSeconds=301),
         "Value '301' at 'maximumBatchingWindowInSeconds' failed to satisfy constraint: "
         "Member must have value less than or equal to 300"),
    ]:
        err = expect_error("ValidationException", 400, loose.create_event_source_mapping,
                           FunctionName=fn, EventSourceArn=qarn, **kw)
        assert err["Error"]["Message"] == "1 validation error detected: " + want, err
    err = expect_error("ValidationException", 400, loose.create_event_source_mapping, FunctionName=fn,
                       EventSourceArn=qarn, FunctionResponseTypes=["Nope"])
    assert "functionResponseTypes" in err["Error"]["Message"]
    # A second mapping of the same queue and function: 409 naming the first.
    c = lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName=fn)
    err = expect_error("ResourceConflictException", 409, lam.create_event_source_mapping,
                       EventSourceArn=qarn, FunctionName=fn)
    assert err["Error"]["Message"] == (
        f'An event source mapping with SQS arn (" {qarn} ") and function (" {fn} ") already exists. '
        f'Please update or delete the existing mapping with UUID {c["UUID"]}')
    # Update re-checks the batching rule on the merged configuration.
    err = expect_error("InvalidParameterValueException", 400, lam.update_event_source_mapping,
                       UUID=c["UUID"], BatchSize=11)
    assert err["Error"]["Message"] == batch_rule
    lam.delete_event_source_mapping(UUID=c["UUID"])
    # The server kept serving.
    assert lam.list_event_source_mappings()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_list_filters_and_paging(lam, sqs, out):
    fa, fb = make_fn(lam, out), make_fn(lam, out)
    queues = [make_queue(sqs)[1] for _ in range(3)]
    made = [lam.create_event_source_mapping(EventSourceArn=q, FunctionName=f, Enabled=False)["UUID"]
            for q in queues for f in (fa, fb)]
    by_fn = lam.list_event_source_mappings(FunctionName=fa)["EventSourceMappings"]
    assert sorted(m["EventSourceArn"] for m in by_fn) == sorted(queues)
    assert {m["FunctionArn"] for m in by_fn} == {fn_arn(fa)}
    assert len(lam.list_event_source_mappings(FunctionName=fn_arn(fb))["EventSourceMappings"]) == 3
    by_q = lam.list_event_source_mappings(EventSourceArn=queues[1])["EventSourceMappings"]
    assert sorted(m["FunctionArn"] for m in by_q) == sorted([fn_arn(fa), fn_arn(fb)])
    both = lam.list_event_source_mappings(EventSourceArn=queues[1], FunctionName=fb)["EventSourceMappings"]
    assert [m["FunctionArn"] for m in both] == [fn_arn(fb)]
    seen, marker = [], None
    while True:
        kw = {"Marker": marker} if marker else {}
        page = lam.list_event_source_mappings(MaxItems=4, **kw)
        assert len(page["EventSourceMappings"]) <= 4
        seen += [m["UUID"] for m in page["EventSourceMappings"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert set(made) <= set(seen) and len(seen) == len(set(seen))
    # The paginator boto3 users use.
    pages = lam.get_paginator("list_event_source_mappings").paginate(PaginationConfig={"PageSize": 2})
    assert set(made) <= {m["UUID"] for p in pages for m in p["EventSourceMappings"]}
    for u in made:
        lam.delete_event_source_mapping(UUID=u)


def test_tags(lam, sqs, out):
    fn = make_fn(lam, out)
    _, qarn = make_queue(sqs)
    c = lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName=fn, Enabled=False,
                                        Tags={"testtag": "v1"})
    arn = c["EventSourceMappingArn"]
    assert lam.list_tags(Resource=arn)["Tags"] == {"testtag": "v1"}
    lam.tag_resource(Resource=arn, Tags={"b": "2"})
    lam.untag_resource(Resource=arn, TagKeys=["testtag"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"b": "2"}
    lam.delete_event_source_mapping(UUID=c["UUID"])
    gone = f"arn:aws:lambda:us-east-1:{ACCOUNT}:event-source-mapping:9f2b5a1e-0000-4000-8000-000000000000"
    for call, kw in [(lam.list_tags, {}), (lam.tag_resource, {"Tags": {"a": "1"}}),
                     (lam.untag_resource, {"TagKeys": ["a"]})]:
        err = expect_error("ResourceNotFoundException", 404, call, Resource=gone, **kw)
        assert err["Error"]["Message"] == f"Event source mapping not found: {gone}"


def test_aws_cli(srv, lam, sqs, out):
    fn = make_fn(lam, out)
    _, qarn = make_queue(sqs)
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1"}

    def cli(*args):
        r = subprocess.run([aws, "--endpoint-url", srv.endpoint, "lambda", *args, "--output", "json"],
                           capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    c = cli("create-event-source-mapping", "--function-name", fn, "--event-source-arn", qarn,
            "--batch-size", "5", "--no-enabled")
    assert c["State"] == "Disabled" and c["BatchSize"] == 5
    listed = cli("list-event-source-mappings", "--function-name", fn)["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [c["UUID"]]
    assert cli("list-event-source-mappings", "--event-source-arn", qarn)["EventSourceMappings"][0]["UUID"] == c["UUID"]
    u = cli("update-event-source-mapping", "--uuid", c["UUID"], "--batch-size", "7", "--enabled")
    assert (u["State"], u["BatchSize"]) == ("Enabling", 7)
    wait_for(lambda: cli("get-event-source-mapping", "--uuid", c["UUID"])["State"] == "Enabled", 20,
             "the mapping to be enabled")
    assert cli("delete-event-source-mapping", "--uuid", c["UUID"])["State"] == "Deleting"


# ---- pollers ----

def test_event_shape_and_batching(lam, sqs, out):
    fn = make_fn(lam, out)
    url, qarn = make_queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody='{"first": 1}', MessageAttributes={
        "Author": {"DataType": "String", "StringValue": "John"},
        "Blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}})
    items = [f"m{i}" for i in range(24)]
    send_all(sqs, url, items)
    uuid = lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName=fn, BatchSize=7,
                                           MaximumBatchingWindowInSeconds=1)["UUID"]
    wait_for(lambda: len(set(bodies(out, fn))) == 25, 30, "all 25 messages to be processed")
    assert all(1 <= len(e["Records"]) <= 7 for e in events(out, fn))
    first = next(r for r in records(out, fn) if r["body"] == '{"first": 1}')
    assert first["eventSource"] == "aws:sqs" and first["eventSourceARN"] == qarn and first["awsRegion"] == "us-east-1"
    assert UUID_RE.match(first["messageId"]) and first["receiptHandle"]
    assert first["md5OfBody"] == hashlib.md5(b'{"first": 1}').hexdigest()
    for k in ["ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"]:
        assert k in first["attributes"], first["attributes"]
    assert first["attributes"]["ApproximateReceiveCount"] == "1"
    assert first["messageAttributes"]["Author"] == {
        "stringValue": "John", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
    assert first["messageAttributes"]["Blob"]["binaryValue"] == "AAE="
    assert len(first["md5OfMessageAttributes"]) == 32
    plain = next(r for r in records(out, fn) if r["body"] == "m0")
    assert plain["md5OfMessageAttributes"] is None and plain["messageAttributes"] == {}
    wait_for(lambda: queue_count(sqs, url) == 0, 10, "the queue to be empty")
    lam.delete_event_source_mapping(UUID=uuid)


def test_retry_then_dlq(lam, sqs, out):
    fn = make_fn(lam, out, timeout=1)
    dlq_url, dlq_arn = make_queue(sqs)
    url, qarn = make_queue(sqs, VisibilityTimeout=1,
                           RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"fail": True}))
    uuid = lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName=fn, BatchSize=1)["UUID"]
    moved = wait_for(lambda: sqs.receive_message(QueueUrl=dlq_url, AttributeNames=["All"]).get("Messages"),
                     30, "the message to reach the dead-letter queue")
    assert json.loads(moved[0]["Body"]) == {"fail": True}
    counts = [r["attributes"]["ApproximateReceiveCount"] for r in records(out, fn)]
    assert counts[:2] == ["1", "2"], counts
    lam.delete_event_source_mapping(UUID=uuid)


def test_partial_batch_failure(lam, sqs, out):
    fn = make_fn(lam, out, timeout=1)
    url, qarn = make_queue(sqs, VisibilityTimeout=1)
    send_all(sqs, url, [json.dumps({"n": 1}), json.dumps({"n": 2, "report": True}), json.dumps({"n": 3})])
    uuid = lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName=fn, BatchSize=10,
                                           FunctionResponseTypes=["ReportBatchItemFailures"],
                                           Enabled=False)["UUID"]
    lam.update_event_source_mapping(UUID=uuid, Enabled=True)
    # The reported item comes back (it reports itself every time); the others never do.
    wait_for(lambda: bodies(out, fn).count(json.dumps({"n": 2, "report": True})) >= 3, 30,
             "the reported message to be retried")
    seen = bodies(out, fn)
    assert seen.count(json.dumps({"n": 1})) == 1 and seen.count(json.dumps({"n": 3})) == 1, seen
    lam.delete_event_source_mapping(UUID=uuid)
    wait_for(lambda: not lam.list_event_source_mappings(EventSourceArn=qarn)["EventSourceMappings"], 10,
             "the mapping to go")
    assert queue_count(sqs, url) == 1


def test_invalid_batch_item_failures_response_fails_the_batch(lam, sqs, out):
    # An item without itemIdentifier makes the whole response invalid: every record is retried
    # and reaches the dead-letter queue (LocalStack's AWS-validated
    # test_report_batch_item_failures_invalid_result_json_batch_fails answers
    # {"batchItemFailures": [{"foo": "notvalid"}]} and finds the message in the DLQ).
    fn = make_fn(lam, out, timeout=1)
    dlq_url, dlq_arn = make_queue(sqs)
    url, qarn = make_queue(sqs, VisibilityTimeout=1,
                           RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}))
    send_all(sqs, url, [json.dumps({"n": 1, "bad_report": True}), json.dumps({"n": 2})])
    uuid = lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName=fn, BatchSize=10,
                                           FunctionResponseTypes=["ReportBatchItemFailures"])["UUID"]
    moved = []
    wait_for(lambda: moved.extend(sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)
                                  .get("Messages", [])) or len(moved) >= 2, 30, "both messages in the DLQ")
    assert sorted(json.loads(m["Body"])["n"] for m in moved) == [1, 2]
    # The good record was not deleted after the first invocation: it came again.
    assert bodies(out, fn).count(json.dumps({"n": 2})) == 2, bodies(out, fn)
    lam.delete_event_source_mapping(UUID=uuid)


def test_fifo_order_under_failure(lam, sqs, out, tmp_path):
    # Message 2 of group A fails on its first delivery only (a marker file remembers it).
    marker = tmp_path / "failed-once"
    code = RECORDER.replace('    if any(b.get("fail") for _, b in bodies):',
                            f'    if any(b.get("fail_once") for _, b in bodies) and not os.path.exists({str(marker)!r}):\n'
                            f'        open({str(marker)!r}, "w").close()\n'
                            '        raise RuntimeError("first time")\n'
                            '    if any(b.get("fail") for _, b in bodies):')
    fn = create_py_function(lam, code, Timeout=1, Environment={"Variables": {"OUT": str(out)}})
    url, qarn = make_queue(sqs, fifo=True, VisibilityTimeout=2, ContentBasedDeduplication="true")
    for g in ["A", "B"]:
        for i in range(1, 6):
            body = {"g": g, "i": i, **({"fail_once": True} if (g, i) == ("A", 2) else {})}
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body), MessageGroupId=g)
    uuid = lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName=fn, BatchSize=1)["UUID"]

    def done():
        ok = {}
        for r in records(out, fn):
            b = json.loads(r["body"])
            ok.setdefault(b["g"], []).append(b["i"])
        return all(sorted(set(v)) == [1, 2, 3, 4, 5] for v in ok.values()) and len(ok) == 2 and ok

    seen = wait_for(done, 40, "both groups to be processed")
    assert seen["B"] == [1, 2, 3, 4, 5]
    # A's 2 failed once and came again before 3: order within the group held.
    assert seen["A"] == [1, 2, 2, 3, 4, 5], seen
    assert all(r["attributes"]["MessageGroupId"] in "AB" for r in records(out, fn))
    lam.delete_event_source_mapping(UUID=uuid)


def test_filter_criteria(lam, sqs, out):
    fn = make_fn(lam, out)
    url, qarn = make_queue(sqs)
    keep = [json.dumps({"kind": "order", "n": 150}), "plain text", json.dumps({"file": "a.png"}),
            json.dumps({"urgent": 1, "kind": "alert"}), json.dumps({"kind": "order", "n": 100.5})]
    drop = [json.dumps({"kind": "order", "n": 50}), json.dumps({"kind": "refund", "n": 500}), "order",
            json.dumps({"file": "a.png.jpg"}), json.dumps({"urgent": 1, "kind": "refund"}),
            json.dumps({"kind": "alert"}), json.dumps({"kind": "order", "n": 200})]
    send_all(sqs, url, keep + drop)
    # Exact AND numeric range; prefix on a plain body; suffix; exists AND anything-but (ORed).
    pats = [json.dumps({"body": {"kind": ["order"], "n": [{"numeric": [">", 100, "<", 200]}]}}),
            json.dumps({"body": [{"prefix": "plain"}]}),
            json.dumps({"body": {"file": [{"suffix": ".png"}]}}),
            json.dumps({"body": {"urgent": [{"exists": True}], "kind": [{"anything-but": ["order", "refund"]}]}})]
    uuid = lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName=fn, BatchSize=10,
                                           MaximumBatchingWindowInSeconds=1,
                                           FilterCriteria={"Filters": [{"Pattern": p} for p in pats]})["UUID"]
    # The rejected ones are deleted without an invocation: the queue empties.
    wait_for(lambda: queue_count(sqs, url) == 0, 30, "the queue to empty")
    assert sorted(bodies(out, fn)) == sorted(keep)
    lam.delete_event_source_mapping(UUID=uuid)


def test_disable_enable(lam, sqs, out):
    fn = make_fn(lam, out)
    url, qarn = make_queue(sqs)
    uuid = lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName=fn, BatchSize=1)["UUID"]
    wait_state(lam, uuid, "Enabled")
    sqs.send_message(QueueUrl=url, MessageBody="one")
    wait_for(lambda: bodies(out, fn) == ["one"], 20, "the first message")
    lam.update_event_source_mapping(UUID=uuid, Enabled=False)
    wait_state(lam, uuid, "Disabled")
    sqs.send_message(QueueUrl=url, MessageBody="two")
    # While disabled, the message stays in the queue, visible, unread.
    wait_for(lambda: int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
                         ["Attributes"]["ApproximateNumberOfMessages"]) == 1, 5, "the message to wait in the queue")
    assert bodies(out, fn) == ["one"]
    lam.update_event_source_mapping(UUID=uuid, Enabled=True)
    wait_for(lambda: bodies(out, fn) == ["one", "two"], 20, "the second message after enabling")
    lam.delete_event_source_mapping(UUID=uuid)
    # Deleted (gone once its poller has stopped): a new message stays in the queue for us.
    wait_for(lambda: not lam.list_event_source_mappings(EventSourceArn=qarn)["EventSourceMappings"], 10,
             "the mapping to go")
    sqs.send_message(QueueUrl=url, MessageBody="three")
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5).get("Messages", [])
    assert [m["Body"] for m in got] == ["three"]
    assert bodies(out, fn) == ["one", "two"]


OVERLAP = r'''
import json, os, time
def handler(event, context):
    start = time.time()
    time.sleep(0.4)
    with open(os.path.join(os.environ["OUT"], "spans.jsonl"), "a") as f:
        f.write(json.dumps([start, time.time(), len(event["Records"])]) + "\n")
'''


def test_maximum_concurrency(lam, sqs, out):
    fn = create_py_function(lam, OVERLAP, Timeout=3, Environment={"Variables": {"OUT": str(out)}})
    url, qarn = make_queue(sqs)
    send_all(sqs, url, [f"m{i}" for i in range(12)])
    uuid = lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName=fn, BatchSize=1,
                                           ScalingConfig={"MaximumConcurrency": 3})["UUID"]
    spans_path = out / "spans.jsonl"
    spans = wait_for(lambda: spans_path.exists() and len(lines := spans_path.read_text().splitlines()) >= 12
                     and [json.loads(x) for x in lines], 40, "all 12 invocations")
    assert all(n == 1 for _, _, n in spans)
    # The most invocations running at one moment: more than one, never more than 3.
    peak = max(sum(1 for a, b, _ in spans if a <= t < b) for t, _, _ in spans)
    assert 2 <= peak <= 3, spans
    lam.delete_event_source_mapping(UUID=uuid)


def test_update_function_name(lam, sqs, out):
    first, second = make_fn(lam, out), make_fn(lam, out)
    url, qarn = make_queue(sqs)
    uuid = lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName=first, BatchSize=1)["UUID"]
    sqs.send_message(QueueUrl=url, MessageBody="to-first")
    wait_for(lambda: bodies(out, first) == ["to-first"], 20, "the first function's message")
    u = lam.update_event_source_mapping(UUID=uuid, FunctionName=second)
    assert u["FunctionArn"] == fn_arn(second) and u["State"] == "Updating"
    wait_state(lam, uuid, "Enabled")
    sqs.send_message(QueueUrl=url, MessageBody="to-second")
    wait_for(lambda: bodies(out, second) == ["to-second"], 20, "the second function's message")
    assert bodies(out, first) == ["to-first"]
    lam.delete_event_source_mapping(UUID=uuid)


def test_function_deleted_mapping_stays(lam, sqs, out):
    fn = make_fn(lam, out)
    url, qarn = make_queue(sqs)
    uuid = lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName=fn, BatchSize=1)["UUID"]
    wait_state(lam, uuid, "Enabled")
    lam.delete_function(FunctionName=fn)
    # As on AWS, the mapping outlives its function; with no function nothing is consumed.
    assert lam.get_event_source_mapping(UUID=uuid)["State"] == "Enabled"
    sqs.send_message(QueueUrl=url, MessageBody="nobody")
    got = wait_for(lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages"), 20,
                   "the message to stay in the queue")
    assert got[0]["Body"] == "nobody" and bodies(out, fn) == []
    lam.delete_event_source_mapping(UUID=uuid)


def test_restart_resumes(tmp_path, out):
    s = Server()
    try:
        lam, sqs = s.client("lambda"), s.client("sqs")
        fn = make_fn(lam, out)
        url, qarn = make_queue(sqs)
        uuid = lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName=fn, BatchSize=1)["UUID"]
        wait_state(lam, uuid, "Enabled")
        # A disabled mapping persists disabled, with its filters.
        off_url, off_arn = make_queue(sqs)
        pattern = json.dumps({"body": {"k": ["v"]}})
        off = lam.create_event_source_mapping(EventSourceArn=off_arn, FunctionName=fn, Enabled=False,
                                              FilterCriteria={"Filters": [{"Pattern": pattern}]})["UUID"]
        # SIGTERM while the poller long-polls: it stops at once and the server exits cleanly.
        assert s.stop(timeout=10) == 0
        s.start()
        lam, sqs = s.client("lambda"), s.client("sqs")
        m = lam.get_event_source_mapping(UUID=uuid)
        assert m["State"] == "Enabled" and m["BatchSize"] == 1
        m = lam.get_event_source_mapping(UUID=off)
        assert m["State"] == "Disabled" and m["FilterCriteria"] == {"Filters": [{"Pattern": pattern}]}
        sqs.send_message(QueueUrl=url, MessageBody="after restart")
        sqs.send_message(QueueUrl=off_url, MessageBody=json.dumps({"k": "v"}))
        wait_for(lambda: bodies(out, fn) == ["after restart"], 20, "the mapping to resume")
        # The disabled one consumed nothing: its message is still there for us.
        assert [x["Body"] for x in sqs.receive_message(QueueUrl=off_url, WaitTimeSeconds=2)["Messages"]] == \
            [json.dumps({"k": "v"})]
        assert bodies(out, fn) == ["after restart"]
    finally:
        s.cleanup()


def test_kill9_loses_nothing(out):
    s = Server()
    try:
        lam, sqs = s.client("lambda"), s.client("sqs")
        fn = make_fn(lam, out, timeout=2)
        url, qarn = make_queue(sqs, VisibilityTimeout=2)
        n = 60
        send_all(sqs, url, [json.dumps({"i": i, "sleep": 0.05}) for i in range(n)])
        lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName=fn, BatchSize=5,
                                        ScalingConfig={"MaximumConcurrency": 2})
        wait_for(lambda: len(records(out, fn)) >= 10, 30, "processing to be under way")
        s.kill()
        done_before = {json.loads(b)["i"] for b in bodies(out, fn)}
        assert len(done_before) < n, "everything finished before the kill: the test proves nothing"
        s.start()
        lam, sqs = s.client("lambda"), s.client("sqs")
        wait_for(lambda: {json.loads(b)["i"] for b in bodies(out, fn)} == set(range(n)), 60,
                 "every message to be processed after the restart")
        wait_for(lambda: queue_count(sqs, url) == 0, 20, "the queue to be empty")
    finally:
        s.cleanup()
