"""Minimal real debugger clients for the debug tests: the Debug Adapter Protocol (debugpy, over
TCP) and the Chrome DevTools Protocol (Node's inspector, over its WebSocket). Every wait is
bounded; a missed deadline raises AssertionError naming what was awaited."""
import json
import socket
import threading
import time
import urllib.request

import websocket


def _deadline_left(deadline, what):
    left = deadline - time.monotonic()
    if left <= 0:
        raise AssertionError(f"timed out waiting for {what}")
    return left


class Dap:
    """A DAP client connected to debugpy's --listen port."""

    def __init__(self, port, timeout=30):
        """Connects and sends `initialize`, again until debugpy answers: a port Docker
        publishes accepts (then resets) connections before the container listens."""
        deadline = time.monotonic() + timeout
        self.sock = None
        while True:
            self.buf = b""
            self.seq = 0
            self.events = []
            self.responses = {}
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=1)
                self.caps = self.request("initialize", {
                    "clientID": "ruststack-test", "adapterID": "debugpy", "linesStartAt1": True,
                    "columnsStartAt1": True, "pathFormat": "path"},
                    # The rest of the deadline: a port Docker publishes early resets at once (an
                    # OSError or EOF, retried); a debugpy that accepted may be slow to answer under
                    # load (a 10 s cap here failed once in CI).
                    timeout=max(1.0, deadline - time.monotonic()))
                return
            except (OSError, EOFError):
                self.close()
                _deadline_left(deadline, f"debugpy to answer on {port}")
                time.sleep(0.05)

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, command, arguments=None):
        self.seq += 1
        msg = {"seq": self.seq, "type": "request", "command": command, "arguments": arguments or {}}
        body = json.dumps(msg).encode()
        self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return self.seq

    def _read_one(self, deadline, what):
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline, what)
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        while len(rest) < length:
            self.buf = head + b"\r\n\r\n" + rest
            self._fill(deadline, what)
            head, _, rest = self.buf.partition(b"\r\n\r\n")
        self.buf = rest[length:]
        msg = json.loads(rest[:length])
        if msg["type"] == "event":
            self.events.append(msg)
        elif msg["type"] == "response":
            self.responses[msg["request_seq"]] = msg
        return msg

    def _fill(self, deadline, what):
        self.sock.settimeout(_deadline_left(deadline, what))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"timed out waiting for {what}")
        if not data:
            raise EOFError(f"debugpy closed the connection while waiting for {what}")
        self.buf += data

    def response(self, seq, timeout=30):
        deadline = time.monotonic() + timeout
        while seq not in self.responses:
            self._read_one(deadline, f"the response to request {seq}")
        r = self.responses.pop(seq)
        assert r["success"], r
        return r.get("body") or {}

    def request(self, command, arguments=None, timeout=30):
        return self.response(self.send(command, arguments), timeout)

    def event(self, name, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name:
                    return self.events.pop(i).get("body") or {}
            self._read_one(deadline, f"the {name!r} event")

    def attach(self, breakpoints=None, path_mappings=None):
        """attach, setBreakpoints ({path: [line]}), configurationDone (after `initialize`)."""
        assert self.caps.get("supportsConfigurationDoneRequest"), self.caps
        args = {"justMyCode": False}
        if path_mappings:
            args["pathMappings"] = path_mappings
        attach_seq = self.send("attach", args)
        self.event("initialized")
        verified = {}
        for path, lines in (breakpoints or {}).items():
            verified[path] = self.set_breakpoints(path, lines)
        self.request("configurationDone")
        self.response(attach_seq)
        return verified

    def set_breakpoints(self, path, lines):
        body = self.request("setBreakpoints", {"source": {"path": path},
                                               "breakpoints": [{"line": n} for n in lines]})
        return body["breakpoints"]

    def stopped_frame(self, timeout=60):
        """Waits for `stopped`; returns (threadId, reason, the top frame)."""
        stopped = self.event("stopped", timeout)
        tid = stopped["threadId"]
        frames = self.request("stackTrace", {"threadId": tid, "startFrame": 0, "levels": 5})["stackFrames"]
        assert frames, stopped
        return tid, stopped["reason"], frames[0]

    def evaluate(self, frame_id, expression):
        scopes = self.request("scopes", {"frameId": frame_id})["scopes"]
        assert any(s["name"].lower().startswith("locals") for s in scopes), scopes
        return self.request("evaluate", {"expression": expression, "frameId": frame_id,
                                         "context": "watch"})["result"]


class Cdp:
    """A Chrome DevTools Protocol client on Node's --inspect WebSocket."""

    def __init__(self, port, timeout=30):
        deadline = time.monotonic() + timeout
        url = None
        while url is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=1) as r:
                    targets = json.load(r)
                url = next((t["webSocketDebuggerUrl"] for t in targets if t.get("webSocketDebuggerUrl")), None)
            except OSError:
                pass
            if url is None:
                _deadline_left(deadline, f"the Node inspector on {port}")
                time.sleep(0.05)
        self.ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        self.id = 0
        self.events = []
        self.results = {}

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass

    def send(self, method, params=None):
        self.id += 1
        self.ws.send(json.dumps({"id": self.id, "method": method, "params": params or {}}))
        return self.id

    def _read_one(self, deadline, what):
        self.ws.settimeout(_deadline_left(deadline, what))
        try:
            msg = json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            raise AssertionError(f"timed out waiting for {what}")
        if "id" in msg:
            self.results[msg["id"]] = msg
        else:
            self.events.append(msg)

    def call(self, method, params=None, timeout=30):
        i = self.send(method, params)
        deadline = time.monotonic() + timeout
        while i not in self.results:
            self._read_one(deadline, f"the answer to {method}")
        r = self.results.pop(i)
        assert "error" not in r, r
        return r["result"]

    def event(self, method, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["method"] == method:
                    return self.events.pop(i)["params"]
            self._read_one(deadline, f"the {method} event")


class Invoke:
    """An invocation on a thread of its own: `join()` returns its decoded answer (and fails the
    test when it did not end in time, or raised)."""

    def __init__(self, lam, name, payload):
        self.result = {}

        def run():
            try:
                r = lam.invoke(FunctionName=name, Payload=json.dumps(payload))
                self.result["answer"] = (r.get("FunctionError"), json.loads(r["Payload"].read()))
            except Exception as e:  # reported by join(), on the test's thread
                self.result["error"] = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout=60, check=True):
        """`check=False`: on a failing test's way out, waits (bounded) and reports nothing."""
        self.thread.join(timeout if check else min(timeout, 10))
        if not check:
            return None
        assert not self.thread.is_alive(), "the invocation did not end in time"
        if "error" in self.result:
            raise self.result["error"]
        error, answer = self.result["answer"]
        assert error is None, answer
        return answer
