#!/usr/bin/env python3
"""SQS → Lambda: how fast one event source mapping drains a queue. Sends N messages
(default 10,000) to an embedded SQS queue, maps it to a trivial Python function, and prints
messages/s from the mapping's creation until the queue is empty, for a few batch sizes.

Run after `cargo build --release` (RUSTSTACK_BIN overrides the binary):
    .venv/bin/python bench/bench_esm.py [--n 10000] [--batch 10,100]
Nothing here asserts; it prints figures.
"""
import argparse
import io
import json
import os
import sys
import time
import zipfile

import boto3
from botocore.config import Config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import CREDS, ROLE, Server  # noqa: E402

HANDLER = "def handler(event, context):\n    return {'n': len(event['Records'])}\n"


def zip_of(src):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", src)
    return buf.getvalue()


def drain(srv, n, batch, window):
    cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=120, max_pool_connections=20)
    lam = srv.client()
    sqs = boto3.client("sqs", endpoint_url=srv.endpoint, config=cfg, **CREDS)
    name = f"drain-{batch}"
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": zip_of(HANDLER)}, Timeout=30)
    url = sqs.create_queue(QueueName=f"drain-{batch}", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    t0 = time.perf_counter()
    for i in range(0, n, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(j), "MessageBody": json.dumps({"i": i + j})} for j in range(min(10, n - i))])
    send_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=batch,
                                    MaximumBatchingWindowInSeconds=window)
    while True:
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        left = int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])
        if left == 0:
            break
        if time.perf_counter() - t0 > 600:
            print(f"  batch {batch}: {left} messages left after 600 s; giving up")
            return
        time.sleep(0.05)
    drain_s = time.perf_counter() - t0
    print(f"  BatchSize {batch:>5} (window {window} s): sent {n} in {send_s:.1f} s ({n / send_s:,.0f}/s); "
          f"drained in {drain_s:.2f} s: {n / drain_s:,.0f} messages/s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--batch", default="10,100,1000")
    args = ap.parse_args()
    srv = Server()
    try:
        print(f"SQS event source mapping drain, {args.n} messages, one mapping, trivial python3.11 handler")
        for b in [int(x) for x in args.batch.split(",")]:
            drain(srv, args.n, b, 0 if b <= 10 else 1)
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
