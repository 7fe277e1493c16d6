"""The embedded SQS: boto3 (JSON 1.0), raw signed query-protocol requests, and the AWS CLI
against the real binary. FIFO, dead-letter queues, long polling and kill -9 durability."""
import base64
import hashlib
import json
import os
import struct
import subprocess
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import CREDS, expect_error, http, unique, wait_for

NS = {"s": "http://queue.amazonaws.com/doc/2012-11-05/"}


@pytest.fixture(scope="module")
def sqs(srv):
    return srv.client("sqs")


def qname(prefix="q"):
    return unique(prefix).replace(".", "-")


def new_queue(sqs, fifo=False, **attrs):
    name = qname("fifo" if fifo else "q") + (".fifo" if fifo else "")
    if fifo:
        attrs["FifoQueue"] = "true"
    return sqs.create_queue(QueueName=name, Attributes={k: str(v) for k, v in attrs.items()})["QueueUrl"]


def md5_of_attributes(attrs):
    """AWS's documented algorithm, written independently of the server's."""
    buf = b""
    for name in sorted(attrs):
        v = attrs[name]
        buf += struct.pack(">I", len(name.encode())) + name.encode()
        buf += struct.pack(">I", len(v["DataType"].encode())) + v["DataType"].encode()
        if "BinaryValue" in v:
            buf += b"\x02" + struct.pack(">I", len(v["BinaryValue"])) + v["BinaryValue"]
        else:
            buf += b"\x01" + struct.pack(">I", len(v["StringValue"].encode())) + v["StringValue"].encode()
    return hashlib.md5(buf).hexdigest()


def receive_all(sqs, url, expect, timeout=20, **kw):
    """Receives (and deletes) until `expect` messages came or the time is up: the bodies."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < expect and time.monotonic() < deadline:
        r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, **kw)
        for m in r.get("Messages", []):
            got.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return got


# ---- queues ----

def test_create_queue_is_idempotent_and_urls_name_host_account_and_queue(srv, sqs):
    name = qname()
    url = sqs.create_queue(QueueName=name, Attributes={"DelaySeconds": "2"})["QueueUrl"]
    assert url == f"{srv.endpoint}/000000000000/{name}"
    assert sqs.create_queue(QueueName=name, Attributes={"DelaySeconds": "2"})["QueueUrl"] == url
    assert sqs.create_queue(QueueName=name)["QueueUrl"] == url
    err = expect_error("QueueAlreadyExists", 400, sqs.create_queue, QueueName=name, Attributes={"DelaySeconds": "1"})
    assert err["Error"]["Message"] == (
        "A queue already exists with the same name and a different value for attribute DelaySeconds")
    assert err["Error"]["QueryErrorCode"] == "QueueNameExists"
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url


def test_queue_name_rules(sqs):
    expect_error("InvalidParameterValue", 400, sqs.create_queue, QueueName="bad name")
    expect_error("InvalidParameterValue", 400, sqs.create_queue, QueueName="x" * 81)
    expect_error("InvalidParameterValue", 400, sqs.create_queue, QueueName=qname() + ".fifo")
    expect_error("InvalidParameterValue", 400, sqs.create_queue, QueueName=qname(),
                 Attributes={"FifoQueue": "true"})
    err = expect_error("InvalidAttributeName", 400, sqs.create_queue, QueueName=qname(),
                       Attributes={"ContentBasedDeduplication": "true"})
    assert err["Error"]["Message"] == "Unknown Attribute ContentBasedDeduplication."
    err = expect_error("InvalidAttributeName", 400, sqs.create_queue, QueueName=qname(),
                       Attributes={"FifoThroughputLimit": "perQueue"})
    assert err["Error"]["Message"] == "You can specify the FifoThroughputLimit only when FifoQueue is set to true."


def test_nonexistent_queue_errors(srv, sqs):
    err = expect_error("AWS.SimpleQueueService.NonExistentQueue", 400, sqs.get_queue_url, QueueName="no-such-q")
    assert err["Error"]["Message"] == "The specified queue does not exist."
    assert err["Error"]["QueryErrorCode"] == "QueueDoesNotExist"
    assert err["Error"]["Type"] == "Sender"
    url = f"{srv.endpoint}/000000000000/no-such-q"
    expect_error("AWS.SimpleQueueService.NonExistentQueue", 400, sqs.send_message, QueueUrl=url, MessageBody="x")
    expect_error("AWS.SimpleQueueService.NonExistentQueue", 400, sqs.receive_message, QueueUrl=url)
    expect_error("AWS.SimpleQueueService.NonExistentQueue", 400, sqs.get_queue_attributes, QueueUrl=url)


def test_list_queues_prefix_and_paging(srv, sqs):
    prefix = qname("list")
    urls = [sqs.create_queue(QueueName=f"{prefix}-{i}")["QueueUrl"] for i in range(5)]
    assert sqs.list_queues(QueueNamePrefix=prefix)["QueueUrls"] == urls
    first = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2)
    assert first["QueueUrls"] == urls[:2]
    rest = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=10, NextToken=first["NextToken"])
    assert rest["QueueUrls"] == urls[2:]
    assert "NextToken" not in rest
    assert "QueueUrls" not in sqs.list_queues(QueueNamePrefix="nothing-has-this-prefix")
    pages = sqs.get_paginator("list_queues").paginate(QueueNamePrefix=prefix, PaginationConfig={"PageSize": 2})
    assert [u for p in pages for u in p.get("QueueUrls", [])] == urls


def test_delete_queue(sqs):
    url = new_queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="x")
    sqs.delete_queue(QueueUrl=url)
    expect_error("AWS.SimpleQueueService.NonExistentQueue", 400, sqs.get_queue_attributes, QueueUrl=url)
    expect_error("AWS.SimpleQueueService.NonExistentQueue", 400, sqs.delete_queue, QueueUrl=url)


def test_queue_attributes(sqs):
    url = new_queue(sqs, VisibilityTimeout=40)
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert a["VisibilityTimeout"] == "40"
    assert a["QueueArn"] == "arn:aws:sqs:us-east-1:000000000000:" + url.rsplit("/", 1)[1]
    assert a["MaximumMessageSize"] == "1048576"
    assert a["MessageRetentionPeriod"] == "345600"
    assert a["DelaySeconds"] == "0"
    assert a["ReceiveMessageWaitTimeSeconds"] == "0"
    assert a["ApproximateNumberOfMessages"] == "0"
    assert "FifoQueue" not in a
    # Exactly the names AWS answers for a standard queue (LocalStack's recording of AWS,
    # test_sqs.snapshot.json, test_set_queue_attributes_default_values).
    assert set(a) == {"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed",
                      "ApproximateNumberOfMessagesNotVisible", "CreatedTimestamp", "DelaySeconds",
                      "LastModifiedTimestamp", "MaximumMessageSize", "MessageRetentionPeriod", "QueueArn",
                      "ReceiveMessageWaitTimeSeconds", "SqsManagedSseEnabled", "VisibilityTimeout"}
    assert a["SqsManagedSseEnabled"] == "true"
    only = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn", "VisibilityTimeout"])["Attributes"]
    assert set(only) == {"QueueArn", "VisibilityTimeout"}
    assert "Attributes" not in sqs.get_queue_attributes(QueueUrl=url)
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "7", "DelaySeconds": "3",
                                                        "MessageRetentionPeriod": "120"})
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (a["VisibilityTimeout"], a["DelaySeconds"], a["MessageRetentionPeriod"]) == ("7", "3", "120")
    err = expect_error("InvalidAttributeName", 400, sqs.get_queue_attributes, QueueUrl=url, AttributeNames=["Nope"])
    assert err["Error"]["Message"] == "Unknown Attribute Nope."
    expect_error("InvalidAttributeValue", 400, sqs.set_queue_attributes, QueueUrl=url,
                 Attributes={"VisibilityTimeout": "43201"})
    expect_error("InvalidAttributeName", 400, sqs.set_queue_attributes, QueueUrl=url, Attributes={"Nope": "1"})
    err = expect_error("InvalidAttributeName", 400, sqs.set_queue_attributes, QueueUrl=url,
                       Attributes={"FifoQueue": "true"})
    assert err["Error"]["Message"] == "Unknown Attribute FifoQueue."
    # RedriveAllowPolicy: set, read back, refused when not a JSON object, cleared with "".
    allow = json.dumps({"redrivePermission": "allowAll"})
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedriveAllowPolicy": allow})
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedriveAllowPolicy"])["Attributes"] == \
        {"RedriveAllowPolicy": allow}
    expect_error("InvalidAttributeValue", 400, sqs.set_queue_attributes, QueueUrl=url,
                 Attributes={"RedriveAllowPolicy": "not json"})
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedriveAllowPolicy": ""})
    assert "RedriveAllowPolicy" not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def test_approximate_counts(sqs):
    url = new_queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="a")
    sqs.send_message(QueueUrl=url, MessageBody="b")
    sqs.send_message(QueueUrl=url, MessageBody="c", DelaySeconds=900)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (a["ApproximateNumberOfMessages"], a["ApproximateNumberOfMessagesNotVisible"],
            a["ApproximateNumberOfMessagesDelayed"]) == ("1", "1", "1")


def test_tags(sqs):
    name = qname()
    url = sqs.create_queue(QueueName=name, tags={"a": "1"})["QueueUrl"]
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"a": "1"}
    sqs.tag_queue(QueueUrl=url, Tags={"b": "2", "a": "3"})
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"a": "3", "b": "2"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["a"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"b": "2"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["b"])
    assert "Tags" not in sqs.list_queue_tags(QueueUrl=url)


def test_purge_queue(sqs):
    url = new_queue(sqs)
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=str(i))
    sqs.purge_queue(QueueUrl=url)
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    err = expect_error("AWS.SimpleQueueService.PurgeQueueInProgress", 403, sqs.purge_queue, QueueUrl=url)
    assert err["Error"]["Message"] == f"Only one PurgeQueue operation on {url.rsplit('/', 1)[1]} is allowed every 60 seconds."


# ---- messages ----

def test_send_receive_delete_with_md5s_and_attributes(sqs):
    url = new_queue(sqs)
    attrs = {"Foo": {"DataType": "String", "StringValue": "Bar"},
             "N": {"DataType": "Number", "StringValue": "1.5"},
             "Bin": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
             "Custom": {"DataType": "String.custom", "StringValue": "ü"}}
    r = sqs.send_message(QueueUrl=url, MessageBody="msg", MessageAttributes=attrs)
    assert r["MD5OfMessageBody"] == hashlib.md5(b"msg").hexdigest() == "6e2baaf3b97dbeef01c0043275f9a0e7"
    assert r["MD5OfMessageAttributes"] == md5_of_attributes(attrs)
    assert "SequenceNumber" not in r
    m = sqs.receive_message(QueueUrl=url, AttributeNames=["All"], MessageAttributeNames=["All"])["Messages"][0]
    assert m["MessageId"] == r["MessageId"]
    assert m["Body"] == "msg"
    assert m["MD5OfBody"] == r["MD5OfMessageBody"]
    assert m["MessageAttributes"] == attrs
    assert m["MD5OfMessageAttributes"] == r["MD5OfMessageAttributes"]
    assert m["Attributes"]["ApproximateReceiveCount"] == "1"
    assert set(m["Attributes"]) == {"ApproximateReceiveCount", "SentTimestamp", "SenderId",
                                    "ApproximateFirstReceiveTimestamp"}
    assert abs(int(m["Attributes"]["SentTimestamp"]) - time.time() * 1000) < 60_000
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    # Deleting again is not an error (AWS accepts a handle of a deleted message).
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (a["ApproximateNumberOfMessages"], a["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")


def test_receive_filters_attribute_names(sqs):
    url = new_queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="msg", MessageAttributes={
        "Foo": {"DataType": "String", "StringValue": "Bar"}, "x.a": {"DataType": "String", "StringValue": "1"},
        "x.b": {"DataType": "Number", "StringValue": "2"}})
    m = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"][0]
    assert "Attributes" not in m and "MessageAttributes" not in m and "MD5OfMessageAttributes" not in m
    m = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0, MessageSystemAttributeNames=["SenderId"],
                            MessageAttributeNames=["x.*"])["Messages"][0]
    assert list(m["Attributes"]) == ["SenderId"]
    assert set(m["MessageAttributes"]) == {"x.a", "x.b"}
    assert m["MD5OfMessageAttributes"] == md5_of_attributes(m["MessageAttributes"])
    m = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0, MessageAttributeNames=["Foo"],
                            AttributeNames=["ApproximateReceiveCount"])["Messages"][0]
    assert m["MessageAttributes"] == {"Foo": {"DataType": "String", "StringValue": "Bar"}}
    assert m["MD5OfMessageAttributes"] == "ae7155c6026991b6d54b11589678bf9c"  # recorded from AWS
    assert m["Attributes"] == {"ApproximateReceiveCount": "3"}


def test_visibility_timeout_and_change_visibility(sqs):
    url = new_queue(sqs, VisibilityTimeout=600)
    sqs.send_message(QueueUrl=url, MessageBody="v")
    m = sqs.receive_message(QueueUrl=url)["Messages"][0]
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    m2 = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"], VisibilityTimeout=1)
    m2 = m2["Messages"][0]
    assert m2["MessageId"] == m["MessageId"] and m2["Attributes"]["ApproximateReceiveCount"] == "2"
    # A visibility timeout of 1 s: the long poll gets the message back when it expires.
    t = time.monotonic()
    m3 = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)["Messages"][0]
    assert m3["MessageId"] == m["MessageId"]
    assert time.monotonic() - t < 8
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m3["ReceiptHandle"])
    # AWS's answer for a deleted message (as seen from AWS in vmihailenco/taskq#29:
    # "InvalidParameterValue: Value ... for parameter ReceiptHandle is invalid. Reason: Message
    # does not exist or is not available for visibility timeout change.").
    err = expect_error("InvalidParameterValue", 400, sqs.change_message_visibility,
                       QueueUrl=url, ReceiptHandle=m3["ReceiptHandle"], VisibilityTimeout=5)
    assert err["Error"]["Message"] == (
        f"Value {m3['ReceiptHandle']} for parameter ReceiptHandle is invalid. "
        "Reason: Message does not exist or is not available for visibility timeout change.")
    expect_error("InvalidParameterValue", 400, sqs.change_message_visibility, QueueUrl=url,
                 ReceiptHandle=m3["ReceiptHandle"], VisibilityTimeout=43201)


def test_change_visibility_of_an_expired_handle_is_accepted(sqs):
    # AWS answers 200 and changes nothing (LocalStack's recording of AWS,
    # tests/aws/services/sqs/test_sqs.snapshot.json,
    # test_change_message_visibility_after_visibility_timeout_expiration).
    url = new_queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="expired")
    m = sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)["Messages"][0]
    again = wait_for(lambda: sqs.receive_message(QueueUrl=url, VisibilityTimeout=0).get("Messages"), 10,
                     "the message to be visible again")
    assert again[0]["MessageId"] == m["MessageId"]
    r = sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=600)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    # Nothing changed: the message is still visible.
    assert sqs.receive_message(QueueUrl=url)["Messages"][0]["MessageId"] == m["MessageId"]


def test_invalid_receipt_handle(sqs):
    url = new_queue(sqs)
    err = expect_error("ReceiptHandleIsInvalid", 400, sqs.delete_message, QueueUrl=url, ReceiptHandle="garbage")
    assert err["Error"]["Message"] == 'The input receipt handle "garbage" is not a valid receipt handle.'
    other = new_queue(sqs)
    sqs.send_message(QueueUrl=other, MessageBody="x")
    h = sqs.receive_message(QueueUrl=other)["Messages"][0]["ReceiptHandle"]
    expect_error("ReceiptHandleIsInvalid", 400, sqs.delete_message, QueueUrl=url, ReceiptHandle=h)
    expect_error("ReceiptHandleIsInvalid", 400, sqs.change_message_visibility, QueueUrl=url, ReceiptHandle=h,
                 VisibilityTimeout=1)


def test_receive_parameter_errors(sqs):
    url = new_queue(sqs)
    err = expect_error("InvalidParameterValue", 400, sqs.receive_message, QueueUrl=url, MaxNumberOfMessages=11)
    assert err["Error"]["Message"] == (
        "Value 11 for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.")
    assert err["Error"]["QueryErrorCode"] == "InvalidParameterValueException"
    err = expect_error("InvalidParameterValue", 400, sqs.receive_message, QueueUrl=url, WaitTimeSeconds=21)
    assert err["Error"]["Message"] == (
        "Value 21 for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.")
    expect_error("InvalidParameterValue", 400, sqs.receive_message, QueueUrl=url, WaitTimeSeconds=-1)


def test_send_errors(sqs):
    url = new_queue(sqs)
    err = expect_error("MissingParameter", 400, sqs.send_message, QueueUrl=url, MessageBody="")
    assert err["Error"]["Message"] == "The request must contain the parameter MessageBody."
    err = expect_error("InvalidMessageContents", 400, sqs.send_message, QueueUrl=url, MessageBody="a\x01b")
    assert err["Error"]["Message"].startswith("Invalid characters found.")
    err = expect_error("InvalidParameterValue", 400, sqs.send_message, QueueUrl=url, MessageBody="x",
                       MessageAttributes={"ErrorDetails": {"DataType": "String", "StringValue": ""}})
    assert err["Error"]["Message"] == (
        "Message (user) attribute 'ErrorDetails' must contain a non-empty value of type 'String'.")
    expect_error("InvalidParameterValue", 400, sqs.send_message, QueueUrl=url, MessageBody="x",
                 MessageAttributes={"n": {"DataType": "Number", "StringValue": "abc"}})
    expect_error("InvalidParameterValue", 400, sqs.send_message, QueueUrl=url, MessageBody="x",
                 MessageAttributes={"n": {"DataType": "Weird", "StringValue": "abc"}})
    expect_error("InvalidParameterValue", 400, sqs.send_message, QueueUrl=url, MessageBody="x", DelaySeconds=901)


def test_message_size_limits(sqs):
    url = new_queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="x" * 1_048_576)
    err = expect_error("InvalidParameterValue", 400, sqs.send_message, QueueUrl=url, MessageBody="x" * 1_048_577)
    assert err["Error"]["Message"] == (
        "One or more parameters are invalid. Reason: Message must be shorter than 1048576 bytes.")
    small = new_queue(sqs, MaximumMessageSize=1024)
    sqs.send_message(QueueUrl=small, MessageBody="x" * 1024)
    err = expect_error("InvalidParameterValue", 400, sqs.send_message, QueueUrl=small, MessageBody="x" * 1025)
    assert err["Error"]["Message"] == (
        "One or more parameters are invalid. Reason: Message must be shorter than 1024 bytes.")
    # In a batch the entry fails alone, worded "cannot be validated" (LocalStack's recording of
    # AWS, test_sqs.snapshot.json, test_send_batch_message_size).
    r = sqs.send_message_batch(QueueUrl=small, Entries=[{"Id": "ok", "MessageBody": "a" * 1024},
                                                        {"Id": "big", "MessageBody": "a" * 1025}])
    assert [e["Id"] for e in r["Successful"]] == ["ok"]
    assert r["Failed"] == [{"Id": "big", "SenderFault": True, "Code": "InvalidParameterValue", "Message":
                            "One or more parameters cannot be validated. Reason: Message must be shorter than 1024 bytes."}]


def test_delay_seconds(sqs):
    url = new_queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=1)
    t = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    m = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)["Messages"][0]
    assert m["Body"] == "later"
    assert 0.5 < time.monotonic() - t < 8


def test_long_poll_wakes_on_send(srv, sqs):
    url = new_queue(sqs)
    out = {}

    def poll():
        t = time.monotonic()
        out["r"] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20)
        out["took"] = time.monotonic() - t

    waiting = srv.health()["sqs"]["waiting_receives"]
    th = threading.Thread(target=poll)
    th.start()
    wait_for(lambda: srv.health()["sqs"]["waiting_receives"] > waiting, what="the receive to wait")
    sqs.send_message(QueueUrl=url, MessageBody="wake")
    th.join(25)
    assert not th.is_alive()
    assert out["r"]["Messages"][0]["Body"] == "wake"
    assert out["took"] < 10


def test_long_poll_times_out_empty(sqs):
    url = new_queue(sqs)
    t = time.monotonic()
    r = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    took = time.monotonic() - t
    assert "Messages" not in r
    assert 0.9 < took < 5
    # The queue's ReceiveMessageWaitTimeSeconds is the default wait.
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"ReceiveMessageWaitTimeSeconds": "1"})
    t = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    assert 0.9 < time.monotonic() - t < 5


def test_receive_max_number_of_messages(sqs):
    url = new_queue(sqs)
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(10)])
    r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=4)
    assert len(r["Messages"]) == 4
    r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    assert len(r["Messages"]) == 6


# ---- batches ----

def test_send_message_batch(sqs):
    url = new_queue(sqs)
    r = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "one", "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}},
        {"Id": "b", "MessageBody": "two"},
        {"Id": "c", "MessageBody": "bad", "DelaySeconds": 1000},
    ])
    ok = {e["Id"]: e for e in r["Successful"]}
    assert set(ok) == {"a", "b"}
    assert ok["a"]["MD5OfMessageBody"] == hashlib.md5(b"one").hexdigest()
    assert ok["a"]["MD5OfMessageAttributes"] == md5_of_attributes({"k": {"DataType": "String", "StringValue": "v"}})
    assert [(f["Id"], f["Code"], f["SenderFault"]) for f in r["Failed"]] == [("c", "InvalidParameterValue", True)]
    assert sorted(receive_all(sqs, url, 2)) == ["one", "two"]


def test_batch_errors(sqs):
    url = new_queue(sqs)
    err = expect_error("AWS.SimpleQueueService.EmptyBatchRequest", 400, sqs.send_message_batch, QueueUrl=url,
                       Entries=[])
    err = expect_error("AWS.SimpleQueueService.TooManyEntriesInBatchRequest", 400, sqs.send_message_batch,
                       QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(20)])
    assert err["Error"]["Message"] == "Maximum number of entries per request are 10. You have sent 20."
    expect_error("AWS.SimpleQueueService.BatchEntryIdsNotDistinct", 400, sqs.send_message_batch, QueueUrl=url,
                 Entries=[{"Id": "a", "MessageBody": "x"}, {"Id": "a", "MessageBody": "y"}])
    err = expect_error("AWS.SimpleQueueService.InvalidBatchEntryId", 400, sqs.delete_message_batch, QueueUrl=url,
                       Entries=[{"Id": "a.b", "ReceiptHandle": "x"}])
    assert err["Error"]["Message"] == ("A batch entry id can only contain alphanumeric characters, hyphens and "
                                       "underscores. It can be at most 80 letters long.")
    err = expect_error("AWS.SimpleQueueService.BatchRequestTooLong", 400, sqs.send_message_batch, QueueUrl=url,
                       Entries=[{"Id": "a", "MessageBody": "x" * 524_288}, {"Id": "b", "MessageBody": "x" * 524_289}])
    assert err["Error"]["Message"] == "Batch requests cannot be longer than 1048576 bytes. You have sent 1048577 bytes."


def test_delete_and_change_visibility_batches(sqs):
    url = new_queue(sqs, VisibilityTimeout=600)
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(3)])
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(msgs) == 3
    r = sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
        {"Id": "z", "ReceiptHandle": msgs[0]["ReceiptHandle"], "VisibilityTimeout": 0},
        {"Id": "bad", "ReceiptHandle": "garbage", "VisibilityTimeout": 0}])
    assert [e["Id"] for e in r["Successful"]] == ["z"]
    assert [(f["Id"], f["Code"]) for f in r["Failed"]] == [("bad", "ReceiptHandleIsInvalid")]
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["MessageId"] for m in again] == [msgs[0]["MessageId"]]
    r = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "ReceiptHandle": again[0]["ReceiptHandle"]},
        {"Id": "b", "ReceiptHandle": msgs[1]["ReceiptHandle"]},
        {"Id": "c", "ReceiptHandle": msgs[2]["ReceiptHandle"]},
        {"Id": "d", "ReceiptHandle": "garbage"}])
    assert sorted(e["Id"] for e in r["Successful"]) == ["a", "b", "c"]
    assert [(f["Id"], f["Code"], f["SenderFault"]) for f in r["Failed"]] == [("d", "ReceiptHandleIsInvalid", True)]
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (a["ApproximateNumberOfMessages"], a["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")


# ---- FIFO ----

def test_fifo_order_group_lock_and_sequence_numbers(sqs):
    url = new_queue(sqs, fifo=True, ContentBasedDeduplication="true")
    seqs = []
    for i in range(4):
        r = sqs.send_message(QueueUrl=url, MessageBody=f"a{i}", MessageGroupId="A")
        seqs.append(int(r["SequenceNumber"]))
    sqs.send_message(QueueUrl=url, MessageBody="b0", MessageGroupId="B")
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, AttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in first] == ["a0", "a1"]
    assert first[0]["Attributes"]["MessageGroupId"] == "A"
    assert int(first[0]["Attributes"]["SequenceNumber"]) == seqs[0]
    assert first[0]["Attributes"]["MessageDeduplicationId"] == hashlib.sha256(b"a0").hexdigest()
    # Group A is locked while a0/a1 are in flight: only B comes.
    second = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in second] == ["b0"]
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    for m in first:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    third = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in third] == ["a2", "a3"]


def test_fifo_failed_message_keeps_group_order(sqs):
    url = new_queue(sqs, fifo=True, ContentBasedDeduplication="true")
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}", MessageGroupId="g")
    m = sqs.receive_message(QueueUrl=url)["Messages"][0]
    assert m["Body"] == "m0"
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    assert [x["Body"] for x in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]] == \
        ["m0", "m1", "m2"]


def test_fifo_zero_delay_takes_the_queue_delay(sqs):
    # A FIFO queue has no per-message delay: DelaySeconds=0 is accepted and the queue's delay
    # applies (LocalStack's recording of AWS, test_sqs.snapshot.json,
    # test_fifo_queue_send_message_with_zero_delay_defaults_to_queue_delay).
    url = new_queue(sqs, fifo=True, ContentBasedDeduplication="true", DelaySeconds=2)
    sqs.send_message(QueueUrl=url, MessageBody="message-1", MessageGroupId="1", DelaySeconds=0)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    assert a["Attributes"] == {"ApproximateNumberOfMessagesDelayed": "1"}
    m = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)["Messages"][0]
    assert m["Body"] == "message-1"


def test_fifo_deduplication(sqs):
    url = new_queue(sqs, fifo=True)
    r1 = sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="d1")
    r2 = sqs.send_message(QueueUrl=url, MessageBody="y", MessageGroupId="g", MessageDeduplicationId="d1")
    assert r1["MessageId"] == r2["MessageId"]
    assert r1["SequenceNumber"] == r2["SequenceNumber"]
    sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="d2")
    assert receive_all(sqs, url, 2) == ["x", "x"]
    # Deleted, it is still deduplicated within the 5 minutes.
    sqs.send_message(QueueUrl=url, MessageBody="z", MessageGroupId="g", MessageDeduplicationId="d1")
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    cbd = new_queue(sqs, fifo=True, ContentBasedDeduplication="true")
    a = sqs.send_message(QueueUrl=cbd, MessageBody="same", MessageGroupId="g")
    b = sqs.send_message(QueueUrl=cbd, MessageBody="same", MessageGroupId="h")
    assert a["MessageId"] == b["MessageId"]


def test_fifo_batch_entry_without_group_or_dedup_id_fails_the_request(sqs):
    # The whole request fails, with InvalidParameterValue (LocalStack's recordings of AWS,
    # test_sqs.snapshot.json, test_send_batch_missing_message_group_id_for_fifo_queue and
    # test_send_batch_missing_deduplication_id_for_fifo_queue).
    url = new_queue(sqs, fifo=True, ContentBasedDeduplication="false")
    good = {"Id": "m1", "MessageBody": "b", "MessageGroupId": "g", "MessageDeduplicationId": "d1"}
    err = expect_error("InvalidParameterValue", 400, sqs.send_message_batch, QueueUrl=url, Entries=[
        good, {"Id": "m2", "MessageBody": "b", "MessageDeduplicationId": "d2"}])
    assert err["Error"]["Message"] == "The request must contain the parameter MessageGroupId."
    assert err["Error"]["QueryErrorCode"] == "InvalidParameterValueException"
    err = expect_error("InvalidParameterValue", 400, sqs.send_message_batch, QueueUrl=url, Entries=[
        good, {"Id": "m2", "MessageBody": "b", "MessageGroupId": "g"}])
    assert err["Error"]["Message"] == ("The queue should either have ContentBasedDeduplication enabled or "
                                       "MessageDeduplicationId provided explicitly")
    # Nothing of a refused request was sent.
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)


def test_standard_queue_keeps_message_group_id(sqs):
    # Fair queues: a standard queue takes a MessageGroupId and answers it among the system
    # attributes, with no sequence number (LocalStack's recording of AWS, test_sqs.snapshot.json,
    # test_fair_queue_with_message_group_id).
    url = new_queue(sqs)
    r = sqs.send_message(QueueUrl=url, MessageBody="message", MessageGroupId="test")
    assert set(r) - {"ResponseMetadata"} == {"MD5OfMessageBody", "MessageId"}
    m = sqs.receive_message(QueueUrl=url, AttributeNames=["All"])["Messages"][0]
    assert set(m["Attributes"]) == {"ApproximateFirstReceiveTimestamp", "ApproximateReceiveCount",
                                    "MessageGroupId", "SenderId", "SentTimestamp"}
    assert m["Attributes"]["MessageGroupId"] == "test"


def test_fifo_errors(sqs):
    url = new_queue(sqs, fifo=True)
    err = expect_error("MissingParameter", 400, sqs.send_message, QueueUrl=url, MessageBody="x",
                       MessageDeduplicationId="d")
    assert err["Error"]["Message"] == "The request must contain the parameter MessageGroupId."
    err = expect_error("InvalidParameterValue", 400, sqs.send_message, QueueUrl=url, MessageBody="x",
                       MessageGroupId="g")
    assert err["Error"]["Message"] == ("The queue should either have ContentBasedDeduplication enabled or "
                                       "MessageDeduplicationId provided explicitly")
    err = expect_error("InvalidParameterValue", 400, sqs.send_message, QueueUrl=url, MessageBody="x",
                       MessageGroupId="g", MessageDeduplicationId="d", DelaySeconds=2)
    assert err["Error"]["Message"] == ("Value 2 for parameter DelaySeconds is invalid. Reason: The request include "
                                       "parameter that is not valid for this queue type.")
    err = expect_error("InvalidParameterValue", 400, sqs.send_message, QueueUrl=url, MessageBody="x",
                       MessageGroupId="group 123", MessageDeduplicationId="d")
    assert err["Error"]["Message"] == ("Value group 123 for parameter MessageGroupId is invalid. Reason: "
                                       "MessageGroupId can only include alphanumeric and punctuation characters. "
                                       "1 to 128 in length.")
    err = expect_error("InvalidAttributeValue", 400, sqs.set_queue_attributes, QueueUrl=url,
                       Attributes={"FifoQueue": "false"})
    assert err["Error"]["Message"] == (
        "Invalid value for the parameter FifoQueue. Reason: Modifying queue type is not supported.")
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (a["FifoQueue"], a["ContentBasedDeduplication"], a["DeduplicationScope"], a["FifoThroughputLimit"]) == \
        ("true", "false", "queue", "perQueue")
    # A FIFO handle expires with its visibility timeout.
    sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="e")
    m = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"][0]
    err = expect_error("InvalidParameterValue", 400, sqs.delete_message, QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert err["Error"]["Message"].endswith("for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.")


# ---- dead-letter queues ----

def test_redrive_moves_message_to_dlq_after_max_receive_count(sqs):
    dlq = new_queue(sqs)
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    src = new_queue(sqs, RedrivePolicy=policy)
    assert json.loads(sqs.get_queue_attributes(QueueUrl=src, AttributeNames=["RedrivePolicy"])
                      ["Attributes"]["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}
    sent = sqs.send_message(QueueUrl=src, MessageBody="poison")
    for n in (1, 2):
        m = sqs.receive_message(QueueUrl=src, VisibilityTimeout=0, AttributeNames=["All"])["Messages"][0]
        assert m["Attributes"]["ApproximateReceiveCount"] == str(n)
    assert "Messages" not in sqs.receive_message(QueueUrl=src)
    moved = sqs.receive_message(QueueUrl=dlq, AttributeNames=["All"])["Messages"][0]
    assert moved["MessageId"] == sent["MessageId"] and moved["Body"] == "poison"
    assert moved["Attributes"]["DeadLetterQueueSourceArn"].endswith(":" + src.rsplit("/", 1)[1])
    # The receive count carries over into the DLQ (LocalStack's recording of AWS,
    # test_sqs.snapshot.json, test_dead_letter_queue_message_attributes: received once with
    # maxReceiveCount 1, the DLQ answers ApproximateReceiveCount 2).
    assert moved["Attributes"]["ApproximateReceiveCount"] == "3"
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [src]
    err = expect_error("InvalidAttributeValue", 400, sqs.set_queue_attributes, QueueUrl=src,
                       Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn})})
    assert "maxReceiveCount" in err["Error"]["Message"]


# ---- protocols and clients ----

def query(srv, params, path="/", region="us-east-1"):
    """A query-protocol request signed with SigV4 (as older SDKs send): (status, XML root)."""
    body = urllib.parse.urlencode(params)
    req = AWSRequest(method="POST", url=srv.endpoint + path, data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(CREDS["aws_access_key_id"], CREDS["aws_secret_access_key"]), "sqs", region).add_auth(req)
    status, headers, raw = http(srv, "POST", path, body=body.encode(), headers=dict(req.headers.items()))
    assert headers["content-type"] == "text/xml"
    return status, ET.fromstring(raw)


def test_query_protocol(srv, sqs):
    name = qname("query")
    status, root = query(srv, {"Action": "CreateQueue", "QueueName": name, "Attribute.1.Name": "VisibilityTimeout",
                               "Attribute.1.Value": "45", "Tag.1.Key": "t", "Tag.1.Value": "v", "Version": "2012-11-05"})
    assert status == 200, ET.tostring(root)
    url = root.find("s:CreateQueueResult/s:QueueUrl", NS).text
    assert url == f"{srv.endpoint}/000000000000/{name}"
    assert root.find("s:ResponseMetadata/s:RequestId", NS).text
    # The JSON protocol sees the same queue.
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"] == \
        {"VisibilityTimeout": "45"}
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"t": "v"}
    status, root = query(srv, {"Action": "SendMessage", "QueueUrl": url, "MessageBody": "hello <&> world",
                               "MessageAttribute.1.Name": "Foo", "MessageAttribute.1.Value.DataType": "String",
                               "MessageAttribute.1.Value.StringValue": "Bar"})
    assert status == 200
    r = root.find("s:SendMessageResult", NS)
    assert r.find("s:MD5OfMessageBody", NS).text == hashlib.md5(b"hello <&> world").hexdigest()
    assert r.find("s:MD5OfMessageAttributes", NS).text == "ae7155c6026991b6d54b11589678bf9c"
    msg_id = r.find("s:MessageId", NS).text
    # Posted to the queue's own path, without QueueUrl, as older SDKs do.
    status, root = query(srv, {"Action": "ReceiveMessage", "AttributeName.1": "All", "MessageAttributeName.1": "All",
                               "MaxNumberOfMessages": "5"}, path=f"/000000000000/{name}")
    assert status == 200
    msgs = root.findall("s:ReceiveMessageResult/s:Message", NS)
    assert len(msgs) == 1
    m = msgs[0]
    assert m.find("s:MessageId", NS).text == msg_id
    assert m.find("s:Body", NS).text == "hello <&> world"
    attrs = {a.find("s:Name", NS).text: a.find("s:Value", NS).text for a in m.findall("s:Attribute", NS)}
    assert attrs["ApproximateReceiveCount"] == "1"
    ma = m.find("s:MessageAttribute", NS)
    assert ma.find("s:Name", NS).text == "Foo"
    assert ma.find("s:Value/s:StringValue", NS).text == "Bar"
    assert ma.find("s:Value/s:DataType", NS).text == "String"
    handle = m.find("s:ReceiptHandle", NS).text
    status, root = query(srv, {"Action": "DeleteMessageBatch", "QueueUrl": url,
                               "DeleteMessageBatchRequestEntry.1.Id": "one",
                               "DeleteMessageBatchRequestEntry.1.ReceiptHandle": handle,
                               "DeleteMessageBatchRequestEntry.2.Id": "two",
                               "DeleteMessageBatchRequestEntry.2.ReceiptHandle": "garbage"})
    assert status == 200
    res = root.find("s:DeleteMessageBatchResult", NS)
    assert [e.find("s:Id", NS).text for e in res.findall("s:DeleteMessageBatchResultEntry", NS)] == ["one"]
    failed = res.findall("s:BatchResultErrorEntry", NS)
    assert [(f.find("s:Id", NS).text, f.find("s:Code", NS).text, f.find("s:SenderFault", NS).text)
            for f in failed] == [("two", "ReceiptHandleIsInvalid", "true")]
    status, root = query(srv, {"Action": "GetQueueAttributes", "QueueUrl": url, "AttributeName.1": "All"})
    got = {a.find("s:Name", NS).text: a.find("s:Value", NS).text
           for a in root.findall("s:GetQueueAttributesResult/s:Attribute", NS)}
    assert got["VisibilityTimeout"] == "45" and got["ApproximateNumberOfMessages"] == "0"
    status, root = query(srv, {"Action": "ListQueues", "QueueNamePrefix": name})
    assert [u.text for u in root.findall("s:ListQueuesResult/s:QueueUrl", NS)] == [url]
    status, root = query(srv, {"Action": "DeleteQueue", "QueueUrl": url})
    assert status == 200 and root.tag == "{http://queue.amazonaws.com/doc/2012-11-05/}DeleteQueueResponse"


def test_unsigned_query_request_to_a_queue_url(srv, sqs):
    url = new_queue(sqs)
    path = urllib.parse.urlparse(url).path
    body = urllib.parse.urlencode({"Action": "SendMessage", "MessageBody": "unsigned"}).encode()
    status, headers, raw = http(srv, "POST", path, body=body,
                                headers={"content-type": "application/x-www-form-urlencoded"})
    assert status == 200, raw
    assert ET.fromstring(raw).find("s:SendMessageResult/s:MD5OfMessageBody", NS).text == \
        hashlib.md5(b"unsigned").hexdigest()
    status, headers, raw = http(srv, "GET", path + "?Action=ReceiveMessage&MaxNumberOfMessages=1")
    assert status == 200, raw
    assert ET.fromstring(raw).find("s:ReceiveMessageResult/s:Message/s:Body", NS).text == "unsigned"


def test_query_protocol_errors(srv):
    status, root = query(srv, {"Action": "GetQueueUrl", "QueueName": "no-such-queue"})
    assert status == 400
    assert root.find("s:Error/s:Code", NS).text == "AWS.SimpleQueueService.NonExistentQueue"
    assert root.find("s:Error/s:Type", NS).text == "Sender"
    # The query protocol's wording (LocalStack's recording of AWS, test_sqs.snapshot.json,
    # test_non_existent_queue: queue-does-not-exist-query); JSON says "...does not exist."
    assert root.find("s:Error/s:Message", NS).text == "The specified queue does not exist for this wsdl version."
    assert root.find("s:RequestId", NS).text
    status, root = query(srv, {"Action": "CreateQueue", "QueueName": qname(), "Attribute.1.Name": "Bogus",
                               "Attribute.1.Value": "1"})
    assert status == 400 and root.find("s:Error/s:Code", NS).text == "InvalidAttributeName"
    status, root = query(srv, {"Action": "NoSuchAction"})
    assert status == 400 and root.find("s:Error/s:Code", NS).text == "InvalidAction"


def q_ok(srv, params, path="/"):
    status, root = query(srv, params, path)
    assert status == 200, ET.tostring(root)
    assert root.find("s:ResponseMetadata/s:RequestId", NS).text
    return root


def q_err(srv, params, status=400):
    """A query-protocol call that must fail: (Code, Message) of its <ErrorResponse>."""
    got, root = query(srv, params)
    assert got == status, ET.tostring(root)
    assert root.tag == "{http://queue.amazonaws.com/doc/2012-11-05/}ErrorResponse"
    assert root.find("s:Error/s:Type", NS).text == "Sender"
    return root.find("s:Error/s:Code", NS).text, root.find("s:Error/s:Message", NS).text


def texts(root, path):
    return [e.text for e in root.findall(path, NS)]


def test_query_protocol_every_operation_and_error(srv):
    """Each SQS operation and the errors of the issue, through the query protocol."""
    name = qname("qall")
    create = {"Action": "CreateQueue", "QueueName": name, "Attribute.1.Name": "VisibilityTimeout",
              "Attribute.1.Value": "30"}
    url = q_ok(srv, create).find("s:CreateQueueResult/s:QueueUrl", NS).text
    assert q_ok(srv, create).find("s:CreateQueueResult/s:QueueUrl", NS).text == url
    assert q_err(srv, {**create, "Attribute.1.Value": "31"}) == (
        "QueueAlreadyExists",
        "A queue already exists with the same name and a different value for attribute VisibilityTimeout")
    assert texts(q_ok(srv, {"Action": "GetQueueUrl", "QueueName": name}), "s:GetQueueUrlResult/s:QueueUrl") == [url]
    # Attributes.
    q_ok(srv, {"Action": "SetQueueAttributes", "QueueUrl": url, "Attribute.1.Name": "VisibilityTimeout",
               "Attribute.1.Value": "600", "Attribute.2.Name": "MaximumMessageSize", "Attribute.2.Value": "2048"})
    root = q_ok(srv, {"Action": "GetQueueAttributes", "QueueUrl": url, "AttributeName.1": "VisibilityTimeout",
                      "AttributeName.2": "MaximumMessageSize"})
    got = {a.find("s:Name", NS).text: a.find("s:Value", NS).text
           for a in root.findall("s:GetQueueAttributesResult/s:Attribute", NS)}
    assert got == {"VisibilityTimeout": "600", "MaximumMessageSize": "2048"}
    assert q_err(srv, {"Action": "SetQueueAttributes", "QueueUrl": url, "Attribute.1.Name": "VisibilityTimeout",
                       "Attribute.1.Value": "43201"}) == (
        "InvalidAttributeValue", "Invalid value for the parameter VisibilityTimeout.")
    assert q_err(srv, {"Action": "GetQueueAttributes", "QueueUrl": url, "AttributeName.1": "Nope"}) == (
        "InvalidAttributeName", "Unknown Attribute Nope.")
    # Sends.
    assert q_err(srv, {"Action": "SendMessage", "QueueUrl": url}) == (
        "MissingParameter", "The request must contain the parameter MessageBody.")
    assert q_err(srv, {"Action": "SendMessage", "QueueUrl": url, "MessageBody": "x" * 2049}) == (
        "InvalidParameterValue", "One or more parameters are invalid. Reason: Message must be shorter than 2048 bytes.")
    root = q_ok(srv, {"Action": "SendMessageBatch", "QueueUrl": url,
                      "SendMessageBatchRequestEntry.1.Id": "a", "SendMessageBatchRequestEntry.1.MessageBody": "one",
                      "SendMessageBatchRequestEntry.2.Id": "b", "SendMessageBatchRequestEntry.2.MessageBody": "two",
                      "SendMessageBatchRequestEntry.3.Id": "c", "SendMessageBatchRequestEntry.3.MessageBody": "bad",
                      "SendMessageBatchRequestEntry.3.DelaySeconds": "1000"})
    res = root.find("s:SendMessageBatchResult", NS)
    ok = {e.find("s:Id", NS).text: e.find("s:MD5OfMessageBody", NS).text
          for e in res.findall("s:SendMessageBatchResultEntry", NS)}
    assert ok == {"a": hashlib.md5(b"one").hexdigest(), "b": hashlib.md5(b"two").hexdigest()}
    assert [(f.find("s:Id", NS).text, f.find("s:Code", NS).text, f.find("s:SenderFault", NS).text)
            for f in res.findall("s:BatchResultErrorEntry", NS)] == [("c", "InvalidParameterValue", "true")]
    entry = "SendMessageBatchRequestEntry"
    assert q_err(srv, {"Action": "SendMessageBatch", "QueueUrl": url, f"{entry}.1.Id": "a",
                       f"{entry}.1.MessageBody": "x", f"{entry}.2.Id": "a", f"{entry}.2.MessageBody": "y"}) == (
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", "Id a repeated.")
    assert q_err(srv, {"Action": "SendMessageBatch", "QueueUrl": url}) == (
        "AWS.SimpleQueueService.EmptyBatchRequest",
        "There should be at least one SendMessageBatchRequestEntry in the request.")
    eleven = {f"{entry}.{i}.{k}": v for i in range(1, 12) for k, v in (("Id", str(i)), ("MessageBody", "x"))}
    assert q_err(srv, {"Action": "SendMessageBatch", "QueueUrl": url, **eleven}) == (
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        "Maximum number of entries per request are 10. You have sent 11.")
    # Receives and visibility.
    assert q_err(srv, {"Action": "ReceiveMessage", "QueueUrl": url, "MaxNumberOfMessages": "11"}) == (
        "InvalidParameterValue",
        "Value 11 for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.")
    msgs = q_ok(srv, {"Action": "ReceiveMessage", "QueueUrl": url, "MaxNumberOfMessages": "10"}).findall(
        "s:ReceiveMessageResult/s:Message", NS)
    assert sorted(m.find("s:Body", NS).text for m in msgs) == ["one", "two"]
    handles = [m.find("s:ReceiptHandle", NS).text for m in msgs]
    q_ok(srv, {"Action": "ChangeMessageVisibility", "QueueUrl": url, "ReceiptHandle": handles[0],
               "VisibilityTimeout": "0"})
    root = q_ok(srv, {"Action": "ChangeMessageVisibilityBatch", "QueueUrl": url,
                      "ChangeMessageVisibilityBatchRequestEntry.1.Id": "x",
                      "ChangeMessageVisibilityBatchRequestEntry.1.ReceiptHandle": handles[1],
                      "ChangeMessageVisibilityBatchRequestEntry.1.VisibilityTimeout": "0",
                      "ChangeMessageVisibilityBatchRequestEntry.2.Id": "bad",
                      "ChangeMessageVisibilityBatchRequestEntry.2.ReceiptHandle": "garbage",
                      "ChangeMessageVisibilityBatchRequestEntry.2.VisibilityTimeout": "0"})
    res = root.find("s:ChangeMessageVisibilityBatchResult", NS)
    assert texts(res, "s:ChangeMessageVisibilityBatchResultEntry/s:Id") == ["x"]
    assert texts(res, "s:BatchResultErrorEntry/s:Code") == ["ReceiptHandleIsInvalid"]
    # Both are visible again.
    msgs = q_ok(srv, {"Action": "ReceiveMessage", "QueueUrl": url, "MaxNumberOfMessages": "10"}).findall(
        "s:ReceiveMessageResult/s:Message", NS)
    assert len(msgs) == 2
    handles = [m.find("s:ReceiptHandle", NS).text for m in msgs]
    q_ok(srv, {"Action": "DeleteMessage", "QueueUrl": url, "ReceiptHandle": handles[0]})
    assert q_err(srv, {"Action": "DeleteMessage", "QueueUrl": url, "ReceiptHandle": "garbage"}) == (
        "ReceiptHandleIsInvalid", 'The input receipt handle "garbage" is not a valid receipt handle.')
    assert q_err(srv, {"Action": "ChangeMessageVisibility", "QueueUrl": url, "ReceiptHandle": handles[0],
                       "VisibilityTimeout": "5"}) == (
        "InvalidParameterValue", f"Value {handles[0]} for parameter ReceiptHandle is invalid. "
                                 "Reason: Message does not exist or is not available for visibility timeout change.")
    assert q_err(srv, {"Action": "DeleteMessageBatch", "QueueUrl": url,
                       "DeleteMessageBatchRequestEntry.1.Id": "a.b",
                       "DeleteMessageBatchRequestEntry.1.ReceiptHandle": handles[1]}) == (
        "AWS.SimpleQueueService.InvalidBatchEntryId",
        "A batch entry id can only contain alphanumeric characters, hyphens and underscores. "
        "It can be at most 80 letters long.")
    # Purge, once a minute.
    q_ok(srv, {"Action": "PurgeQueue", "QueueUrl": url})
    assert q_err(srv, {"Action": "PurgeQueue", "QueueUrl": url}, status=403) == (
        "AWS.SimpleQueueService.PurgeQueueInProgress", f"Only one PurgeQueue operation on {name} is allowed every 60 seconds.")
    assert q_ok(srv, {"Action": "ReceiveMessage", "QueueUrl": url}).find("s:ReceiveMessageResult/s:Message", NS) is None
    # Tags.
    q_ok(srv, {"Action": "TagQueue", "QueueUrl": url, "Tag.1.Key": "k", "Tag.1.Value": "v", "Tag.2.Key": "k2",
               "Tag.2.Value": "v2"})

    def tags():
        root = q_ok(srv, {"Action": "ListQueueTags", "QueueUrl": url})
        return {t.find("s:Key", NS).text: t.find("s:Value", NS).text
                for t in root.findall("s:ListQueueTagsResult/s:Tag", NS)}

    assert tags() == {"k": "v", "k2": "v2"}
    q_ok(srv, {"Action": "UntagQueue", "QueueUrl": url, "TagKey.1": "k"})
    assert tags() == {"k2": "v2"}
    # Dead-letter sources.
    arn = f"arn:aws:sqs:us-east-1:000000000000:{name}"
    src = q_ok(srv, {"Action": "CreateQueue", "QueueName": name + "-src", "Attribute.1.Name": "RedrivePolicy",
                     "Attribute.1.Value": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 1})}).find(
        "s:CreateQueueResult/s:QueueUrl", NS).text
    root = q_ok(srv, {"Action": "ListDeadLetterSourceQueues", "QueueUrl": url})
    assert texts(root, "s:ListDeadLetterSourceQueuesResult/s:QueueUrl") == [src]
    # Delete; the queue is gone.
    for u in (src, url):
        q_ok(srv, {"Action": "DeleteQueue", "QueueUrl": u})
    assert q_err(srv, {"Action": "GetQueueAttributes", "QueueUrl": url, "AttributeName.1": "All"}) == (
        "AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist for this wsdl version.")
    assert q_err(srv, {"Action": "SendMessage", "QueueUrl": url, "MessageBody": "x"})[0] == \
        "AWS.SimpleQueueService.NonExistentQueue"


def test_json_protocol_raw_errors(srv):
    """Bad input gets an AWS error, and the server keeps serving."""
    auth = ("AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/sqs/aws4_request, "
            "SignedHeaders=host, Signature=0")
    status, headers, body = http(srv, "POST", "/", body=b"{not json", headers={
        "authorization": auth, "x-amz-target": "AmazonSQS.SendMessage", "content-type": "application/x-amz-json-1.0"})
    assert status == 400 and "__type" in json.loads(body)
    status, headers, body = http(srv, "POST", "/", body=b"{}", headers={
        "x-amz-target": "AmazonSQS.Frobnicate", "content-type": "application/x-amz-json-1.0"})
    assert status == 400
    assert headers["x-amzn-query-error"] == "InvalidAction;Sender"
    status, headers, body = http(srv, "POST", "/", body=b'{"QueueName": "no-such"}', headers={
        "x-amz-target": "AmazonSQS.GetQueueUrl", "content-type": "application/x-amz-json-1.0"})
    assert status == 400
    assert json.loads(body)["__type"] == "com.amazonaws.sqs#QueueDoesNotExist"
    assert headers["x-amzn-query-error"] == "AWS.SimpleQueueService.NonExistentQueue;Sender"
    assert srv.health()["services"]["sqs"] == "running"


def aws_cli(srv, *args):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    aws = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", ".venv", "bin", "aws")
    p = subprocess.run([aws, "--endpoint-url", srv.endpoint, "--output", "json", *args], env=env,
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def test_aws_cli(srv):
    name = qname("cli")
    rc, out, err = aws_cli(srv, "sqs", "create-queue", "--queue-name", name)
    assert rc == 0, err
    url = json.loads(out)["QueueUrl"]
    assert url.endswith(f"/000000000000/{name}")
    rc, out, err = aws_cli(srv, "sqs", "send-message", "--queue-url", url, "--message-body", "from the cli")
    assert rc == 0, err
    assert json.loads(out)["MD5OfMessageBody"] == hashlib.md5(b"from the cli").hexdigest()
    rc, out, err = aws_cli(srv, "sqs", "receive-message", "--queue-url", url, "--wait-time-seconds", "1")
    assert rc == 0, err
    m = json.loads(out)["Messages"][0]
    assert m["Body"] == "from the cli"
    rc, out, err = aws_cli(srv, "sqs", "delete-message", "--queue-url", url, "--receipt-handle", m["ReceiptHandle"])
    assert rc == 0, err
    rc, out, err = aws_cli(srv, "sqs", "get-queue-url", "--queue-name", "no-such-cli-queue")
    assert rc != 0
    assert "NonExistentQueue" in err


def test_aws_cli_every_operation(srv):
    """The other SQS operations (and a few of their errors) through the AWS CLI."""
    def ok(*args):
        rc, out, err = aws_cli(srv, "sqs", *args)
        assert rc == 0, err
        return json.loads(out) if out.strip() else {}

    def fails(code, *args):
        rc, out, err = aws_cli(srv, "sqs", *args)
        assert rc != 0 and f"({code})" in err, err
        return err

    name = qname("cliall")
    url = ok("create-queue", "--queue-name", name, "--attributes", "VisibilityTimeout=30", "--tags", "a=1")["QueueUrl"]
    assert ok("get-queue-url", "--queue-name", name)["QueueUrl"] == url
    assert ok("list-queues", "--queue-name-prefix", name)["QueueUrls"] == [url]
    fails("QueueAlreadyExists", "create-queue", "--queue-name", name, "--attributes", "VisibilityTimeout=31")
    ok("set-queue-attributes", "--queue-url", url, "--attributes", "VisibilityTimeout=600,DelaySeconds=0")
    a = ok("get-queue-attributes", "--queue-url", url, "--attribute-names", "All")["Attributes"]
    assert (a["VisibilityTimeout"], a["DelaySeconds"], a["ApproximateNumberOfMessages"]) == ("600", "0", "0")
    r = ok("send-message-batch", "--queue-url", url, "--entries", json.dumps(
        [{"Id": "a", "MessageBody": "one"}, {"Id": "b", "MessageBody": "two"}]))
    assert sorted(e["Id"] for e in r["Successful"]) == ["a", "b"]
    fails("AWS.SimpleQueueService.BatchEntryIdsNotDistinct", "send-message-batch", "--queue-url", url,
          "--entries", json.dumps([{"Id": "a", "MessageBody": "x"}, {"Id": "a", "MessageBody": "y"}]))
    got = wait_for(lambda: (ok("receive-message", "--queue-url", url, "--max-number-of-messages", "10")
                            .get("Messages")), 20, "the CLI's messages")
    assert sorted(m["Body"] for m in got) == ["one", "two"]
    handles = [m["ReceiptHandle"] for m in got]
    ok("change-message-visibility", "--queue-url", url, "--receipt-handle", handles[0], "--visibility-timeout", "0")
    r = ok("change-message-visibility-batch", "--queue-url", url, "--entries", json.dumps(
        [{"Id": "x", "ReceiptHandle": handles[0], "VisibilityTimeout": 700}]))
    assert [e["Id"] for e in r["Successful"]] == ["x"]
    r = ok("delete-message-batch", "--queue-url", url, "--entries", json.dumps(
        [{"Id": "d", "ReceiptHandle": handles[0]}, {"Id": "bad", "ReceiptHandle": "garbage"}]))
    assert [e["Id"] for e in r["Successful"]] == ["d"]
    assert [(f["Id"], f["Code"]) for f in r["Failed"]] == [("bad", "ReceiptHandleIsInvalid")]
    fails("ReceiptHandleIsInvalid", "delete-message", "--queue-url", url, "--receipt-handle", "garbage")
    fails("InvalidParameterValue", "receive-message", "--queue-url", url, "--max-number-of-messages", "11")
    ok("purge-queue", "--queue-url", url)
    fails("AWS.SimpleQueueService.PurgeQueueInProgress", "purge-queue", "--queue-url", url)
    ok("tag-queue", "--queue-url", url, "--tags", "b=2")
    assert ok("list-queue-tags", "--queue-url", url)["Tags"] == {"a": "1", "b": "2"}
    ok("untag-queue", "--queue-url", url, "--tag-keys", "a")
    assert ok("list-queue-tags", "--queue-url", url)["Tags"] == {"b": "2"}
    ok("delete-queue", "--queue-url", url)
    fails("AWS.SimpleQueueService.NonExistentQueue", "get-queue-attributes", "--queue-url", url)


# ---- durability ----

def test_kill9_keeps_acknowledged_sends_and_deletes(fresh_server):
    s = fresh_server()
    sqs = s.client("sqs")
    url = sqs.create_queue(QueueName="durable")["QueueUrl"]
    fifo = sqs.create_queue(QueueName="durable.fifo", Attributes={"FifoQueue": "true",
                                                                  "ContentBasedDeduplication": "true"})["QueueUrl"]
    bodies = [f"m{i}" for i in range(40)]
    for b in bodies[:20]:
        sqs.send_message(QueueUrl=url, MessageBody=b, MessageAttributes={"i": {"DataType": "Number", "StringValue": b[1:]}})
    for i in range(20, 40, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(j), "MessageBody": bodies[j]} for j in range(i, i + 10)])
    for i in range(5):
        sqs.send_message(QueueUrl=fifo, MessageBody=f"f{i}", MessageGroupId="g")
    s.kill()
    s.start()
    sqs = s.client("sqs")
    got = {}
    deadline = time.monotonic() + 30
    while len(got) < 40 and time.monotonic() < deadline:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                     VisibilityTimeout=600).get("Messages", []):
            got[m["Body"]] = m
    assert sorted(got) == sorted(bodies)
    assert got["m3"]["MessageAttributes"] == {"i": {"DataType": "Number", "StringValue": "3"}}
    # Delete half; the rest stay in flight (they come back after the restart).
    deleted = bodies[::2]
    for b in deleted:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=got[b]["ReceiptHandle"])
    f = sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=2)["Messages"]
    assert [m["Body"] for m in f] == ["f0", "f1"]
    for m in f:
        sqs.delete_message(QueueUrl=fifo, ReceiptHandle=m["ReceiptHandle"])
    s.kill()
    s.start()
    sqs = s.client("sqs")
    after = receive_all(sqs, url, 20)
    assert sorted(after) == sorted(set(bodies) - set(deleted))
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    assert receive_all(sqs, fifo, 3) == ["f2", "f3", "f4"]
    # The queues' attributes and the receive counts survived too.
    assert sqs.get_queue_attributes(QueueUrl=fifo, AttributeNames=["FifoQueue"])["Attributes"] == {"FifoQueue": "true"}


def test_receive_count_survives_restart_for_redrive(fresh_server):
    s = fresh_server()
    sqs = s.client("sqs")
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    src = sqs.create_queue(QueueName="src", Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": arn, "maxReceiveCount": 1})})["QueueUrl"]
    sqs.send_message(QueueUrl=src, MessageBody="once")
    assert sqs.receive_message(QueueUrl=src, VisibilityTimeout=600)["Messages"][0]["Body"] == "once"
    s.kill()
    s.start()
    sqs = s.client("sqs")
    assert "Messages" not in sqs.receive_message(QueueUrl=src)
    assert sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1)["Messages"][0]["Body"] == "once"
    s.stop()
    s.start()  # a graceful stop keeps everything too
    sqs = s.client("sqs")
    assert sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"] == \
        {"ApproximateNumberOfMessages": "1"}
    wait_for(lambda: os.path.exists(os.path.join(s.data_dir, "sqs", "log.jsonl")), what="the SQS log")
