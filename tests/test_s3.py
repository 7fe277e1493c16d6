"""S3 integration tests: the real server driven by boto3 (and a few raw HTTP
requests for what boto3 cannot be made to send over plain http)."""
import base64
import concurrent.futures
import hashlib
import http.client
import io
import json
import os
import socket
import threading
import time
import urllib.request
import zlib

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import CREDS, unique, wait_for


def bucket_name(prefix="bkt"):
    return unique(prefix).lower()


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def status(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture
def bucket(s3):
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    yield name
    empty_bucket(s3, name)
    s3.delete_bucket(Bucket=name)


def empty_bucket(s3, name):
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        entries = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                   for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        for i in range(0, len(entries), 1000):
            s3.delete_objects(Bucket=name, Delete={"Objects": entries[i:i + 1000], "Quiet": True})


def raw_request(server, method, path, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


# ---- buckets ----

def test_bucket_lifecycle(s3):
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    # Re-creating your own bucket in us-east-1 succeeds.
    s3.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    head = s3.head_bucket(Bucket=name)
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
    assert s3.get_bucket_location(Bucket=name).get("LocationConstraint") is None

    s3.put_object(Bucket=name, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=name)
    assert error_code(e) == "BucketNotEmpty"
    assert status(e) == 409
    s3.delete_object(Bucket=name, Key="k")

    s3.delete_bucket(Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=name)
    assert status(e) == 404
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=name)
    assert error_code(e) == "NoSuchBucket"


def test_invalid_bucket_name(s3):
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket="Not_A_Valid_Bucket")
    assert error_code(e) == "InvalidBucketName"
    assert status(e) == 400


def test_create_bucket_with_configuration_body(s3):
    """A CreateBucketConfiguration body is accepted (we have one region) and the bucket exists."""
    name = bucket_name()
    created = s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert created["Location"] == f"/{name}"
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.delete_bucket(Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


# ---- objects ----

def test_put_get_head_delete_object(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="dir/hello.txt", Body=b"hello world",
                        ContentType="text/plain", Metadata={"color": "blue", "Owner": "me"},
                        CacheControl="max-age=60", ContentDisposition="attachment")
    assert put["ETag"] == '"%s"' % hashlib.md5(b"hello world").hexdigest()

    got = s3.get_object(Bucket=bucket, Key="dir/hello.txt")
    assert got["Body"].read() == b"hello world"
    assert got["ContentType"] == "text/plain"
    assert got["ContentLength"] == 11
    assert got["ETag"] == put["ETag"]
    assert got["Metadata"] == {"color": "blue", "owner": "me"}
    assert got["CacheControl"] == "max-age=60"
    assert got["ContentDisposition"] == "attachment"
    assert got["LastModified"].year >= 2024

    head = s3.head_object(Bucket=bucket, Key="dir/hello.txt")
    assert head["ContentLength"] == 11
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"]["color"] == "blue"
    assert head["ETag"] == put["ETag"]

    part = s3.get_object(Bucket=bucket, Key="dir/hello.txt", Range="bytes=6-")
    assert part["Body"].read() == b"world"
    assert part["ContentRange"] == "bytes 6-10/11"
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206

    deleted = s3.delete_object(Bucket=bucket, Key="dir/hello.txt")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="dir/hello.txt")
    assert error_code(e) == "NoSuchKey"
    # Deleting what is not there is not an error.
    s3.delete_object(Bucket=bucket, Key="dir/hello.txt")


def test_binary_5mb_object(s3, bucket):
    body = os.urandom(5 * 1024 * 1024)
    put = s3.put_object(Bucket=bucket, Key="blob.bin", Body=body)
    assert put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest()
    got = s3.get_object(Bucket=bucket, Key="blob.bin")
    assert got["ContentLength"] == len(body)
    assert got["Body"].read() == body
    assert s3.head_object(Bucket=bucket, Key="blob.bin")["ContentLength"] == len(body)
    default_type = got["ContentType"]
    assert default_type == "binary/octet-stream"


def test_empty_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b""
    assert got["ContentLength"] == 0
    assert got["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'


def test_checksums_are_verified_and_returned(s3, bucket):
    body = b"checksum me"
    put = s3.put_object(Bucket=bucket, Key="c", Body=body, ChecksumAlgorithm="SHA256")
    expected = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert put["ChecksumSHA256"] == expected
    got = s3.get_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got["ChecksumSHA256"] == expected
    # botocore's default: CRC32, validated by botocore on the way back.
    s3.put_object(Bucket=bucket, Key="d", Body=body)
    got = s3.get_object(Bucket=bucket, Key="d")
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert got["ChecksumCRC32"] == crc
    assert got["Body"].read() == body


def test_bad_digest_rejected(server, bucket):
    code, _, body = raw_request(server, "PUT", f"/{bucket}/x", b"data",
                                {"Content-MD5": base64.b64encode(hashlib.md5(b"other").digest()).decode()})
    assert code == 400 and b"<Code>BadDigest</Code>" in body
    code, _, body = raw_request(server, "PUT", f"/{bucket}/x", b"data", {"x-amz-checksum-crc32": "AAAAAA=="})
    assert code == 400 and b"<Code>BadDigest</Code>" in body


def test_sha1_checksum_is_verified(server, s3, bucket):
    """x-amz-checksum-sha1 is checked like the CRCs: a wrong one is S3's BadDigest, a right one
    is kept and returned."""
    wrong = base64.b64encode(hashlib.sha1(b"other").digest()).decode()
    code, _, body = raw_request(server, "PUT", f"/{bucket}/s", b"data", {"x-amz-checksum-sha1": wrong})
    assert code == 400, body
    assert b"<Code>BadDigest</Code>" in body
    assert b"<Message>The SHA1 you specified did not match the calculated checksum.</Message>" in body
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="s")
    assert status(e) == 404

    put = s3.put_object(Bucket=bucket, Key="s", Body=b"data", ChecksumAlgorithm="SHA1")
    expected = base64.b64encode(hashlib.sha1(b"data").digest()).decode()
    assert put["ChecksumSHA1"] == expected
    got = s3.get_object(Bucket=bucket, Key="s", ChecksumMode="ENABLED")
    assert got["ChecksumSHA1"] == expected
    assert got["Body"].read() == b"data"


def test_xml_bodies_with_comments_and_nested_tags(server, s3, bucket):
    """XML request bodies are parsed, not scanned: a commented-out element is not read, and an
    element nested in a same-name element belongs to its parent, not to the document."""
    for k in ["real", "ghost", "outer", "inner"]:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    doc = (b'<?xml version="1.0" encoding="UTF-8"?>'
           b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
           b'<!-- <Object><Key>ghost</Key></Object> -->'
           b'<Object><Key>real</Key></Object>'
           b'<Object><Object><Key>inner</Key></Object><Key>outer</Key></Object>'
           b'</Delete>')
    code, _, body = raw_request(server, "POST", f"/{bucket}?delete", doc, {"Content-Type": "application/xml"})
    assert code == 200, body
    assert body.count(b"<Deleted>") == 2, body
    assert b"<Deleted><Key>real</Key></Deleted>" in body and b"<Deleted><Key>outer</Key></Deleted>" in body
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == ["ghost", "inner"]

    # CompleteMultipartUpload: a commented-out second part is not asked for.
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"part one")["ETag"]
    doc = (f'<CompleteMultipartUpload><!-- <Part><PartNumber>2</PartNumber><ETag>"nope"</ETag></Part> -->'
           f'<Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>').encode()
    code, _, body = raw_request(server, "POST", f"/{bucket}/mp?uploadId={upload}", doc)
    assert code == 200, body
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"part one"

    # Versioning: the commented-out status is not the one applied.
    doc = (b"<VersioningConfiguration><!-- <Status>Suspended</Status> --><Status>Enabled</Status>"
           b"</VersioningConfiguration>")
    code, _, body = raw_request(server, "PUT", f"/{bucket}?versioning", doc)
    assert code == 200, body
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"

    # Notifications: a commented-out event is not read (the scan took it and refused the
    # configuration), and a namespace-prefixed document reads the same.
    fn_arn = "arn:aws:lambda:us-east-1:000000000000:function:f"
    doc = (f'<n:NotificationConfiguration xmlns:n="http://s3.amazonaws.com/doc/2006-03-01/">'
           f'<n:LambdaFunctionConfiguration><n:Id>c1</n:Id><n:LambdaFunctionArn>{fn_arn}</n:LambdaFunctionArn>'
           f'<!-- <n:Event>not-an-event</n:Event> --><n:Event>s3:ObjectCreated:*</n:Event>'
           f'</n:LambdaFunctionConfiguration></n:NotificationConfiguration>').encode()
    code, _, body = raw_request(server, "PUT", f"/{bucket}?notification", doc)
    assert code == 200, body
    [got] = s3.get_bucket_notification_configuration(Bucket=bucket)["LambdaFunctionConfigurations"]
    assert got["Id"] == "c1" and got["LambdaFunctionArn"] == fn_arn and got["Events"] == ["s3:ObjectCreated:*"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})

    # A document that is not well-formed is still MalformedXML.
    code, _, body = raw_request(server, "POST", f"/{bucket}?delete", b"<Delete><Object><Key>a</Object></Delete>")
    assert code == 400 and b"<Code>MalformedXML</Code>" in body


def test_error_codes(s3, bucket):
    missing = bucket_name("missing")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=missing, Key="k")
    assert error_code(e) == "NoSuchBucket"
    assert status(e) == 404
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket=missing)
    assert error_code(e) == "NoSuchBucket"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=missing, Key="k", Body=b"x")
    assert error_code(e) == "NoSuchBucket"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="nope")
    assert error_code(e) == "NoSuchKey"
    assert e.value.response["Error"]["Key"] == "nope"
    assert e.value.response["ResponseMetadata"]["RequestId"]
    # HEAD errors have no body: botocore reports the status as the code.
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="nope")
    assert error_code(e) == "404"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k" * 1025)
    assert error_code(e) == "KeyTooLongError"
    with pytest.raises(ClientError) as e:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_code(e) == "NotImplemented"
    assert status(e) == 501


def test_malformed_input_gets_clear_errors(server, bucket):
    code, headers, body = raw_request(server, "PUT", f"/{bucket}?versioning", b"<VersioningConfiguration><Status>Maybe")
    assert code == 400 and b"<Code>MalformedXML</Code>" in body
    assert headers.get("x-amz-request-id")
    code, _, body = raw_request(server, "POST", f"/{bucket}?delete", b"not xml at all")
    assert code == 400 and b"<Code>MalformedXML</Code>" in body
    code, _, body = raw_request(server, "GET", f"/{bucket}/%FF%FE")
    assert code == 400 and b"<Code>InvalidURI</Code>" in body
    code, _, body = raw_request(server, "GET", f"/{bucket}?list-type=2&continuation-token=%%%")
    assert code == 400
    code, _, body = raw_request(server, "GET", f"/{bucket}?list-type=2&max-keys=lots")
    assert code == 400 and b"<Code>InvalidArgument</Code>" in body
    code, _, body = raw_request(server, "PUT", f"/{bucket}/chunky", b"zz\r\nnot hex\r\n",
                                {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "7"})
    assert code == 400 and b"<Code>IncompleteBody</Code>" in body
    # The server is still fine.
    code, _, _ = raw_request(server, "HEAD", f"/{bucket}")
    assert code == 200


def test_aws_chunked_upload(server, s3, bucket):
    """What botocore sends over https (and other SDKs over http): aws-chunked
    framing with a trailing checksum."""
    data = b"x" * 70000 + b"tail"
    chunks = [data[:65536], data[65536:]]
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    body += b"0\r\nx-amz-checksum-crc32:" + crc.encode() + b"\r\n\r\n"
    code, headers, resp = raw_request(server, "PUT", f"/{bucket}/chunked.bin", body, {
        "Content-Encoding": "aws-chunked",
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32",
    })
    assert code == 200, resp
    assert headers["x-amz-checksum-crc32"] == crc
    got = s3.get_object(Bucket=bucket, Key="chunked.bin")
    assert got["Body"].read() == data
    assert "ContentEncoding" not in got

    # Signed chunks (SigV4 streaming) carry chunk signatures we skip.
    sig = ";chunk-signature=" + "0" * 64
    body = b"%x%s\r\n%s\r\n0%s\r\n\r\n" % (len(data), sig.encode(), data, sig.encode())
    code, _, resp = raw_request(server, "PUT", f"/{bucket}/signed.bin", body, {
        "Content-Encoding": "aws-chunked",
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "x-amz-decoded-content-length": str(len(data)),
    })
    assert code == 200, resp
    assert s3.get_object(Bucket=bucket, Key="signed.bin")["Body"].read() == data


def test_keys_with_special_characters(s3, bucket):
    keys = ["a b/c+d.txt", "unicode/ünï©ødé ✓", "q?x=1&y=2#frag", "percent%20literal", "dots/../up",
            "xml<&>'\"", "trailing/slash/", "double//slash"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    for k in keys:
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == k.encode()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(keys)
    listed_v1 = [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]]
    assert listed_v1 == sorted(keys)


def test_copy_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"payload", ContentType="text/x-src", Metadata={"a": "1"})
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"payload"
    assert got["ContentType"] == "text/x-src"
    assert got["Metadata"] == {"a": "1"}
    s3.copy_object(Bucket=bucket, Key="dst2", CopySource=f"{bucket}/src", MetadataDirective="REPLACE",
                   ContentType="text/plain", Metadata={"b": "2"})
    got = s3.head_object(Bucket=bucket, Key="dst2")
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"b": "2"}
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst3", CopySource={"Bucket": bucket, "Key": "missing"})
    assert error_code(e) == "NoSuchKey"


def test_conditional_requests(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"v1")["ETag"]
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="c", Body=b"v2", IfNoneMatch="*")
    assert status(e) == 412
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert status(e) == 304
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"nope"')
    assert error_code(e) == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"v1"


def test_delete_objects(s3, bucket):
    for k in ["a", "b", "c"]:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}, {"Key": "zz"}]})
    assert sorted(d["Key"] for d in resp["Deleted"]) == ["a", "b", "zz"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["c"]


# ---- listings ----

def test_list_objects_v2_prefix_and_delimiter(s3, bucket):
    for k in ["a.txt", "photos/2024/1.jpg", "photos/2024/2.jpg", "photos/2025/1.jpg", "photos/cover.jpg",
              "videos/x.mp4"]:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["a.txt"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["photos/", "videos/"]
    assert top["KeyCount"] == 3
    assert top["IsTruncated"] is False

    photos = s3.list_objects_v2(Bucket=bucket, Prefix="photos/", Delimiter="/")
    assert [o["Key"] for o in photos["Contents"]] == ["photos/cover.jpg"]
    assert [p["Prefix"] for p in photos["CommonPrefixes"]] == ["photos/2024/", "photos/2025/"]

    flat = s3.list_objects_v2(Bucket=bucket, Prefix="photos/2024/")
    assert [o["Key"] for o in flat["Contents"]] == ["photos/2024/1.jpg", "photos/2024/2.jpg"]
    assert flat["Contents"][0]["Size"] == 1
    assert flat["Contents"][0]["StorageClass"] == "STANDARD"

    page = s3.list_objects_v2(Bucket=bucket, MaxKeys=2)
    assert page["IsTruncated"] is True and page["KeyCount"] == 2
    rest = s3.list_objects_v2(Bucket=bucket, ContinuationToken=page["NextContinuationToken"])
    assert len(rest["Contents"]) == 4
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="photos/cover.jpg")
    assert [o["Key"] for o in after["Contents"]] == ["videos/x.mp4"]
    assert s3.list_objects_v2(Bucket=bucket, Prefix="nothing/")["KeyCount"] == 0


def test_paginate_2500_keys(s3, bucket):
    keys = [f"many/{i:05d}" for i in range(2500)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=k.encode()), keys))

    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="many/"))
    assert len(pages) == 3
    assert [o["Key"] for p in pages for o in p["Contents"]] == keys
    assert [p["KeyCount"] for p in pages] == [1000, 1000, 500]

    small = list(s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 300}))
    assert len(small) == 9
    assert sum(p["KeyCount"] for p in small) == 2500

    v1 = list(s3.get_paginator("list_objects").paginate(Bucket=bucket, PaginationConfig={"PageSize": 700}))
    assert [o["Key"] for p in v1 for o in p["Contents"]] == keys

    for i in range(0, 2500, 1000):
        resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]],
                                                        "Quiet": True})
        assert not resp.get("Errors")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


# ---- versioning ----

def test_versioning(s3, bucket):
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    unversioned = s3.put_object(Bucket=bucket, Key="before", Body=b"b")
    assert "VersionId" not in unversioned

    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    v1 = s3.put_object(Bucket=bucket, Key="doc", Body=b"first")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="doc", Body=b"second")["VersionId"]
    assert v1 and v2 and v1 != v2 and v1 != "null"

    latest = s3.get_object(Bucket=bucket, Key="doc")
    assert latest["Body"].read() == b"second"
    assert latest["VersionId"] == v2
    old = s3.get_object(Bucket=bucket, Key="doc", VersionId=v1)
    assert old["Body"].read() == b"first"
    assert old["VersionId"] == v1
    assert s3.head_object(Bucket=bucket, Key="doc", VersionId=v1)["ContentLength"] == 5
    # The object written before versioning is the "null" version.
    assert s3.get_object(Bucket=bucket, Key="before", VersionId="null")["Body"].read() == b"b"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="doc", VersionId="nonexistent")
    assert error_code(e) == "NoSuchVersion"

    versions = s3.list_object_versions(Bucket=bucket, Prefix="doc")
    assert [(v["VersionId"], v["IsLatest"]) for v in versions["Versions"]] == [(v2, True), (v1, False)]

    # A plain delete leaves a delete marker; the versions stay.
    marker = s3.delete_object(Bucket=bucket, Key="doc")
    assert marker["DeleteMarker"] is True
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="doc")
    assert error_code(e) == "NoSuchKey"
    assert s3.get_object(Bucket=bucket, Key="doc", VersionId=v2)["Body"].read() == b"second"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="doc")
    # Removing the marker brings the object back.
    s3.delete_object(Bucket=bucket, Key="doc", VersionId=marker["VersionId"])
    assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"second"
    # Deleting a specific version removes just that one.
    s3.delete_object(Bucket=bucket, Key="doc", VersionId=v2)
    assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"first"

    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    assert s3.put_object(Bucket=bucket, Key="doc", Body=b"third").get("VersionId") == "null"
    assert s3.get_object(Bucket=bucket, Key="doc", VersionId=v1)["Body"].read() == b"first"


# ---- multipart (boto3's managed transfers) ----

def test_multipart_upload_and_ranged_download(s3, bucket):
    body = os.urandom(12 * 1024 * 1024 + 123)
    cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    s3.upload_fileobj(io.BytesIO(body), bucket, "big.bin", Config=cfg)
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(body)
    assert head["ETag"].endswith('-3"')
    out = io.BytesIO()
    s3.download_fileobj(bucket, "big.bin", out, Config=cfg)
    assert out.getvalue() == body


def test_multipart_errors(s3, bucket):
    upload = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    p1 = s3.upload_part(Bucket=bucket, Key="m", UploadId=upload, PartNumber=1, Body=b"small")
    p2 = s3.upload_part(Bucket=bucket, Key="m", UploadId=upload, PartNumber=2, Body=b"parts")
    parts = [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=upload, MultipartUpload={"Parts": parts})
    assert error_code(e) == "EntityTooSmall"
    # A single small part is fine: the last part has no minimum.
    s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=upload,
                                 MultipartUpload={"Parts": parts[:1]})
    assert s3.get_object(Bucket=bucket, Key="m")["Body"].read() == b"small"
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="m", UploadId=upload, PartNumber=3, Body=b"x")
    assert error_code(e) == "NoSuchUpload"
    aborted = s3.create_multipart_upload(Bucket=bucket, Key="m2")["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key="m2", UploadId=aborted)
    with pytest.raises(ClientError) as e:
        s3.abort_multipart_upload(Bucket=bucket, Key="m2", UploadId=aborted)
    assert error_code(e) == "NoSuchUpload"


# ---- addressing ----

@pytest.fixture
def resolve_localhost_subdomains(monkeypatch):
    """`bucket.localhost` does not resolve everywhere (it needs nss-myhostname
    or systemd-resolved); point it at 127.0.0.1 the way those would."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_virtual_host_addressing(server, s3, resolve_localhost_subdomains):
    # Against an IP endpoint botocore always uses path style, so use localhost.
    cfg = Config(s3={"addressing_style": "virtual"}, retries={"max_attempts": 1, "mode": "standard"})
    vs3 = boto3.client("s3", endpoint_url=f"http://localhost:{server.port}", config=cfg, **CREDS)
    urls = []
    vs3.meta.events.register("before-send.s3", lambda request, **kw: urls.append(request.url))

    name = bucket_name("vhost")
    vs3.create_bucket(Bucket=name)
    assert urls[-1] == f"http://{name}.localhost:{server.port}/"
    vs3.put_object(Bucket=name, Key="dir/file name.txt", Body=b"virtual", ContentType="text/plain")
    assert urls[-1].startswith(f"http://{name}.localhost:{server.port}/dir/file%20name.txt")
    got = vs3.get_object(Bucket=name, Key="dir/file name.txt")
    assert got["Body"].read() == b"virtual"
    assert got["ContentType"] == "text/plain"
    assert [o["Key"] for o in vs3.list_objects_v2(Bucket=name)["Contents"]] == ["dir/file name.txt"]
    vs3.head_bucket(Bucket=name)
    with pytest.raises(ClientError) as e:
        vs3.get_object(Bucket=name, Key="missing")
    assert error_code(e) == "NoSuchKey"

    # The same bucket through path style.
    assert s3.get_object(Bucket=name, Key="dir/file name.txt")["Body"].read() == b"virtual"
    vs3.delete_object(Bucket=name, Key="dir/file name.txt")
    vs3.delete_bucket(Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_path_style_addressing(server):
    cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"})
    ps3 = boto3.client("s3", endpoint_url=f"http://localhost:{server.port}", config=cfg, **CREDS)
    urls = []
    ps3.meta.events.register("before-send.s3", lambda request, **kw: urls.append(request.url))
    name = bucket_name("path")
    ps3.create_bucket(Bucket=name)
    assert urls[-1] == f"http://localhost:{server.port}/{name}"
    ps3.put_object(Bucket=name, Key="k", Body=b"path")
    assert ps3.get_object(Bucket=name, Key="k")["Body"].read() == b"path"
    ps3.delete_object(Bucket=name, Key="k")
    ps3.delete_bucket(Bucket=name)


# ---- persistence ----

def test_objects_survive_restart_and_kill(fresh_server):
    srv = fresh_server()
    s3 = srv.client("s3")
    name = bucket_name("persist")
    s3.create_bucket(Bucket=name)
    body = os.urandom(256 * 1024)
    s3.put_object(Bucket=name, Key="data.bin", Body=body, ContentType="application/x-test",
                  Metadata={"k": "v"})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=name, Key="versioned", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=name, Key="versioned", Body=b"two")["VersionId"]

    srv.restart()
    s3 = srv.client("s3")
    got = s3.get_object(Bucket=name, Key="data.bin")
    assert got["Body"].read() == body
    assert got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"k": "v"}
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    assert s3.get_object(Bucket=name, Key="versioned", VersionId=v1)["Body"].read() == b"one"
    assert s3.get_object(Bucket=name, Key="versioned")["VersionId"] == v2

    s3.put_object(Bucket=name, Key="after-restart", Body=b"kept")
    s3.delete_object(Bucket=name, Key="data.bin")
    srv.kill()
    srv.start()
    s3 = srv.client("s3")
    assert s3.get_object(Bucket=name, Key="after-restart")["Body"].read() == b"kept"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]]
    assert keys == ["after-restart", "versioned"]
    # The data dir holds no leftovers of in-flight writes.
    assert os.listdir(os.path.join(srv.data_dir, "s3", "tmp")) == []


def test_presigned_urls(s3, bucket):
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "signed/upload.txt"})
    req = urllib.request.Request(put_url, data=b"uploaded via presigned url", method="PUT")
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 200
    get_url = s3.generate_presigned_url("get_object", Params={
        "Bucket": bucket, "Key": "signed/upload.txt", "ResponseContentType": "text/x-override"})
    with urllib.request.urlopen(get_url) as resp:
        assert resp.read() == b"uploaded via presigned url"
        assert resp.headers["Content-Type"] == "text/x-override"


def test_kill_during_writes_leaves_only_whole_objects(fresh_server):
    """kill -9 in the middle of many uploads: after restart every object that
    is listed reads back whole and matches its ETag."""
    srv = fresh_server()
    s3 = srv.client("s3")
    name = bucket_name("crash")
    s3.create_bucket(Bucket=name)
    stop = threading.Event()

    written = []

    def writer(n):
        i = 0
        while not stop.is_set():
            try:
                s3.put_object(Bucket=name, Key=f"w{n}/{i % 5}", Body=os.urandom(512 * 1024 + i))
            except Exception:
                return
            written.append((n, i))
            i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    # Kill once every writer has overwritten its keys at least once, with writes still going.
    wait_for(lambda: len({n for n, i in written if i >= 5}) == 4, 60, "every writer to overwrite its keys")
    srv.kill()
    stop.set()
    for t in threads:
        t.join()

    srv.start()
    s3 = srv.client("s3")
    listed = s3.list_objects_v2(Bucket=name).get("Contents", [])
    assert listed, "some uploads should have completed before the kill"
    for obj in listed:
        body = s3.get_object(Bucket=name, Key=obj["Key"])["Body"].read()
        assert len(body) == obj["Size"]
        assert '"%s"' % hashlib.md5(body).hexdigest() == obj["ETag"]
        s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


def test_bucket_notifications_invoke_functions(server, tmp_path):
    """PutBucketNotificationConfiguration with a Lambda function: a matching object change is
    delivered as AWS's S3 event (an Event invocation); filters and event types are honoured."""
    from conftest import create_py_function
    lam, s3c = server.client("lambda"), server.client("s3")
    seen = tmp_path / "events.jsonl"
    fn = create_py_function(lam, f"import json\ndef handler(e, c):\n    open({str(seen)!r}, 'a').write(json.dumps(e) + '\\n')\n")
    arn = lam.get_function(FunctionName=fn)["Configuration"]["FunctionArn"]
    bucket = f"notify-{int(time.time() * 1000)}"
    s3c.create_bucket(Bucket=bucket)
    s3c.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [
            {"Id": "created", "LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/"}, {"Name": "suffix", "Value": ".txt"}]}}},
            {"Id": "removed", "LambdaFunctionArn": arn, "Events": ["s3:ObjectRemoved:Delete"]},
        ]})
    got = s3c.get_bucket_notification_configuration(Bucket=bucket)["LambdaFunctionConfigurations"]
    assert [c["Id"] for c in got] == ["created", "removed"] and got[0]["LambdaFunctionArn"] == arn
    s3c.put_object(Bucket=bucket, Key="in/hello world.txt", Body=b"hello")
    s3c.put_object(Bucket=bucket, Key="in/skip.bin", Body=b"no")      # suffix does not match
    s3c.put_object(Bucket=bucket, Key="out/skip.txt", Body=b"no")     # prefix does not match
    s3c.copy_object(Bucket=bucket, Key="in/copy.txt", CopySource={"Bucket": bucket, "Key": "in/hello world.txt"})
    s3c.delete_object(Bucket=bucket, Key="out/skip.txt")

    wait_for(lambda: seen.exists() and len(seen.read_text().splitlines()) >= 3, 20, "three notification events")
    # Notifications are queued before the S3 call answers, so an empty queue means every event
    # those five calls caused has run: no others are on their way.
    wait_for(lambda: server.health()["pending_events"] == 0, 20, "the event queue to drain")
    records = [json.loads(line)["Records"][0] for line in seen.read_text().splitlines()]
    by_name = {(r["eventName"], r["s3"]["object"]["key"]): r for r in records}
    assert set(by_name) == {("ObjectCreated:Put", "in/hello+world.txt"), ("ObjectCreated:Copy", "in/copy.txt"),
                            ("ObjectRemoved:Delete", "out/skip.txt")}
    put = by_name[("ObjectCreated:Put", "in/hello+world.txt")]
    assert put["eventSource"] == "aws:s3" and put["awsRegion"] == "us-east-1" and put["eventVersion"] == "2.1"
    assert put["s3"]["bucket"]["name"] == bucket and put["s3"]["bucket"]["arn"] == f"arn:aws:s3:::{bucket}"
    assert put["s3"]["object"]["size"] == 5 and put["s3"]["object"]["eTag"] == "5d41402abc4b2a76b9719d911017c592"
    assert put["s3"]["configurationId"] == "created"
    # An empty configuration removes the rules.
    s3c.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    assert "LambdaFunctionConfigurations" not in s3c.get_bucket_notification_configuration(Bucket=bucket)


def test_bucket_notification_bad_input(server):
    """Malformed or invalid notification configurations are S3 errors; nothing is kept."""
    bucket = f"notify-bad-{int(time.time() * 1000)}"
    s3c = server.client("s3")
    s3c.create_bucket(Bucket=bucket)
    conn_headers = {"Content-Type": "application/xml"}
    cases = [
        (b"<NotificationConfiguration><LambdaFunctionConfiguration>", 400),
        (b"\xff\xfe not utf-8", 400),
        (b"<NotificationConfiguration><LambdaFunctionConfiguration><LambdaFunctionArn>nope</LambdaFunctionArn>"
         b"<Event>s3:ObjectCreated:*</Event></LambdaFunctionConfiguration></NotificationConfiguration>", 400),
        (b"<NotificationConfiguration><LambdaFunctionConfiguration><LambdaFunctionArn>arn:aws:lambda:us-east-1:000000000000:function:f"
         b"</LambdaFunctionArn><Event>ObjectCreated</Event></LambdaFunctionConfiguration></NotificationConfiguration>", 400),
        (b"<NotificationConfiguration><LambdaFunctionConfiguration><LambdaFunctionArn>arn:aws:lambda:us-east-1:000000000000:function:f"
         b"</LambdaFunctionArn><Event>s3:ObjectCreated:*</Event><Filter><S3Key><FilterRule><Name>middle</Name><Value>x</Value>"
         b"</FilterRule></S3Key></Filter></LambdaFunctionConfiguration></NotificationConfiguration>", 400),
    ]
    for body, status in cases:
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        c.request("PUT", f"/{bucket}?notification", body=body, headers=conn_headers)
        r = c.getresponse()
        r.read()
        c.close()
        assert r.status == status, (body[:60], r.status)
    assert "LambdaFunctionConfigurations" not in s3c.get_bucket_notification_configuration(Bucket=bucket)
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    c.request("GET", f"/no-such-bucket-{int(time.time())}?notification")
    r = c.getresponse()
    assert r.status == 404 and b"NoSuchBucket" in r.read()
    c.close()
