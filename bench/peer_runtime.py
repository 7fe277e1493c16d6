"""A minimal Lambda runtime loop for the side-by-side peer (cargo lambda watch).

awslambdaric cannot run against cargo-lambda's Runtime API: its /next answer has no
Content-Type. This loop needs none. It keeps ONE keep-alive socket with TCP_NODELAY
and sends each request with a single sendall, like RustStack's bundled bootstrap, so
the client side costs the peer nothing that it does not cost RustStack.

    AWS_LAMBDA_RUNTIME_API=host:port[/prefix] python3 peer_runtime.py module.function
"""
import importlib
import json
import os
import socket
import sys


def main():
    api = os.environ["AWS_LAMBDA_RUNTIME_API"]
    if "://" in api:
        api = api.split("://", 1)[1]
    hostport, _, prefix = api.partition("/")
    prefix = ("/" + prefix).rstrip("/") if prefix else ""
    host, _, port = hostport.rpartition(":")
    modname, fname = sys.argv[1].rsplit(".", 1)
    sys.path.insert(0, os.getcwd())
    handler = getattr(importlib.import_module(modname), fname)

    sock = socket.create_connection((host.strip("[]"), int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    base = prefix + "/2018-06-01/runtime/invocation/"
    common = "Host: %s\r\n" % hostport

    def read_response():
        nonlocal buf
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "chunked" in headers.get("transfer-encoding", ""):
            body = b""
            while True:
                while b"\r\n" not in buf:
                    buf += sock.recv(65536)
                size_line, _, buf = buf.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(buf) < size + 2:
                    buf += sock.recv(65536)
                body += buf[:size]
                buf = buf[size + 2:]
                if size == 0:
                    break
        else:
            n = int(headers.get("content-length", "0"))
            while len(buf) < n:
                buf += sock.recv(65536)
            body, buf = buf[:n], buf[n:]
        return int(lines[0].split(" ")[1]), headers, body

    next_req = ("GET %snext HTTP/1.1\r\n%s\r\n" % (base, common)).encode()
    while True:
        sock.sendall(next_req)
        status, h, body = read_response()
        rid = h["lambda-runtime-aws-request-id"]
        out = json.dumps(handler(json.loads(body) if body else {}, None)).encode()
        sock.sendall(
            (
                "POST %s%s/response HTTP/1.1\r\n%sContent-Type: application/json\r\n"
                "Content-Length: %d\r\n\r\n" % (base, rid, common, len(out))
            ).encode()
            + out
        )
        read_response()


if __name__ == "__main__":
    try:
        main()
    except (ConnectionError, KeyboardInterrupt):
        pass  # the benchmark stopped the peer
