"""RustStack Lambda: bundled Python runtime interface client.

Standard library only.  RustStack embeds this file in its binary and runs it as
``python3 -u <file>`` with the working directory set to the function code.
It follows the behaviour of awslambdaric (the official Python RIC) and of the
``/var/runtime/bootstrap.py`` in the AWS Python base images: it sets up
``sys.path`` (task root, then the layer directories), imports the handler,
then loops over the Lambda Runtime API (``/2018-06-01/runtime/...``).

Environment read:
  AWS_LAMBDA_RUNTIME_API       host:port of this environment's Runtime API
  _HANDLER                     "module.function" (sys.argv[1] overrides it)
  LAMBDA_TASK_ROOT             the code directory (default: the cwd)
  AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_FUNCTION_VERSION,
  AWS_LAMBDA_FUNCTION_MEMORY_SIZE, AWS_LAMBDA_LOG_GROUP_NAME,
  AWS_LAMBDA_LOG_STREAM_NAME   copied into the context object
  _RUSTSTACK_LAYER_DIRS        os.pathsep-separated layer roots (each one is
                               what AWS would mount at /opt), in order
  _RUSTSTACK_PYTHON_VERSION    declared runtime version, e.g. "3.12"
  AWS_EXECUTION_ENV            optional, "AWS_Lambda_python3.12" style
  AWS_LAMBDA_LOG_FORMAT        optional, "JSON" switches to JSON log records
  AWS_LAMBDA_LOG_LEVEL         optional, root logger level
"""

# Everything this file needs from the standard library is imported here,
# before sys.path is changed, so that user modules in the task root or in a
# layer cannot shadow them.
import sys
import os

_THIS_FILE = (lambda: None).__code__.co_filename


def _drop_own_dir():
    # `python3 file.py` puts the file's directory first on sys.path;
    # `python3 -c`/`-` put "".  Neither belongs to the function.
    if not sys.path:
        return
    first = sys.path[0]
    if first in ("", "."):
        del sys.path[0]
        return
    me = globals().get("__file__")
    if not me:
        return
    try:
        if os.path.realpath(first) == os.path.dirname(os.path.realpath(me)):
            del sys.path[0]
    except (OSError, ValueError):
        pass


_drop_own_dir()

# Only what every cold start needs is imported up front: the C modules _socket and
# _signal stand in for socket and signal (whose Python layers pull in selectors and
# enum), `traceback` is imported on the first error, and `logging` is set up when the
# function first imports it. Each of those costs milliseconds per cold start. Those
# modules still come from the standard library, never from a user module of the same
# name in the task root or a layer: _StdFinder resolves them on _STD_PATH, the
# interpreter's own sys.path.
import _signal  # noqa: E402
import _socket  # noqa: E402
import importlib  # noqa: E402
import importlib.machinery  # noqa: E402
import json  # noqa: E402
import site  # noqa: E402
import time  # noqa: E402

_STD_PATH = list(sys.path)


def _std_module(name):
    """A standard-library module, imported on first use from _STD_PATH."""
    module = sys.modules.get(name)
    if module is None:
        saved = sys.path[:]
        sys.path[:] = _STD_PATH
        try:
            module = importlib.import_module(name)
        finally:
            sys.path[:] = saved
    return module


_API_PREFIX = "/2018-06-01/runtime"
_NEXT_PATH = _API_PREFIX + "/invocation/next"
_INIT_ERROR_PATH = _API_PREFIX + "/init/error"

_ERROR_LINE_TERMINATOR = "\r"
_ERROR_INDENT = "\u00a0"  # NO-BREAK SPACE, as awslambdaric
_XRAY_CAUSE_MAX = 1024 * 1024

_UNHANDLED_WARNING = (
    "LAMBDA_WARNING: Unhandled exception. "
    "The most likely cause is an issue in the function code. "
    "However, in rare cases, a Lambda runtime update can cause unexpected "
    "function behavior. For functions using managed runtimes, runtime updates "
    "can be triggered by a function change, or can be applied automatically. "
    "To determine if the runtime has been updated, check the runtime version "
    "in the INIT_START log entry. If this error correlates with a change in "
    "the runtime version, you may be able to mitigate this error by "
    "temporarily rolling back to the previous runtime version. For more "
    "information, see "
    "https://docs.aws.amazon.com/lambda/latest/dg/runtimes-update.html"
)

_environ = os.environ

# RustStack's own settings (_RUSTSTACK_*): read once here, then hidden from the function by
# _hide_internal_env(), since no such variables exist on AWS.
_INTERNAL = {k: v for k, v in os.environ.items() if k.startswith("_RUSTSTACK_")}

# Forked by the fork server: its getrusage, to report the runtime's peak RSS (kB) with each
# result (taken out of the module's namespace, which an exec'd bootstrap's lacks).
_GETRUSAGE = globals().pop("_RUSTSTACK_MAXRSS", None)

# The request id of the invocation in flight, for log records.
_REQUEST_ID = None
_TENANT_ID = None


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class FaultException(Exception):
    MARSHAL_ERROR = "Runtime.MarshalError"
    UNMARSHAL_ERROR = "Runtime.UnmarshalError"
    USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
    HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
    IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
    BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
    MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
    LAMBDA_CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"

    def __init__(self, exception_type, msg, trace=None):
        Exception.__init__(self, msg)
        self.msg = msg
        self.exception_type = exception_type
        self.trace = trace


def _make_error(message, error_type, stack_trace, request_id=None):
    # Key order matters: it is the order of awslambdaric's make_error.
    return {
        "errorMessage": message if message else "",
        "errorType": error_type if error_type else "",
        "requestId": request_id if request_id is not None else "",
        "stackTrace": stack_trace if stack_trace else [],
    }


def _user_frames(tb):
    """Traceback tuples, without the leading frames of this file."""
    frames = [(f.filename, f.lineno, f.name, f.line) for f in _std_module("traceback").extract_tb(tb)]
    for i, frame in enumerate(frames):
        if frame[0] != _THIS_FILE:
            return frames[i:]
    return frames


def _make_xray_cause(error_type, message, frames):
    stack = []
    files = []
    for filename, lineno, name, _line in frames:
        stack.append({"label": name, "path": filename, "line": lineno})
        if filename not in files:
            files.append(filename)
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    return {
        "working_directory": cwd,
        "exceptions": [{"message": message, "type": error_type, "stack": stack}],
        "paths": files,
    }


def _fault_from_exc_info(exc_info, request_id=None):
    etype, value, tb = exc_info
    frames = _user_frames(tb)
    name = etype.__name__
    msg = str(value)
    error = _make_error(msg, name, _std_module("traceback").format_list(frames), request_id)
    return error, _make_xray_cause(name, msg, frames)


# --------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------


def _declared_version():
    """(major, minor) of the function's declared runtime."""
    exec_env = _environ.get("AWS_EXECUTION_ENV", "")
    for candidate in (
        _INTERNAL.get("_RUSTSTACK_PYTHON_VERSION", ""),
        exec_env[len("AWS_Lambda_python"):] if exec_env.startswith("AWS_Lambda_python") else "",
    ):
        candidate = candidate.strip()
        if candidate.startswith("python"):
            candidate = candidate[len("python"):]
        parts = candidate.split(".")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            return int(parts[0]), int(parts[1])
    return sys.version_info[0], sys.version_info[1]


def _json_default(obj):
    # Decimal support without importing decimal: a Decimal can only reach us
    # if the user's code already imported the module.
    dec = sys.modules.get("decimal")
    if dec is not None and isinstance(obj, dec.Decimal):
        if obj.is_nan():
            return float("nan")
        if obj.is_finite() and obj.as_tuple().exponent >= 0:
            return int(obj)
        return float(obj)
    raise TypeError(
        "Object of type %s is not JSON serializable" % type(obj).__name__
    )


# awslambdaric emits raw UTF-8 (ensure_ascii=False) for python3.12 and later.
_ENSURE_ASCII = _declared_version() < (3, 12)
_encoder = json.JSONEncoder(ensure_ascii=_ENSURE_ASCII, default=_json_default)
_encode = _encoder.encode
_xray_encode = json.JSONEncoder(default=str).encode  # ASCII: goes in a header


_json_decode = json.JSONDecoder().decode


def _json_loads(body):
    """json.loads(bytes) without its per-call encoding sniffing for UTF-8."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return json.loads(body)  # UTF-16/32: let json detect the encoding
    if text[:1] == "\ufeff":
        return json.loads(body)  # UTF-8 BOM: json.loads(bytes) accepts it
    return _json_decode(text)


def _to_json_bytes(obj):
    return _encode(obj).encode("utf-8")


# --------------------------------------------------------------------------
# Context
# --------------------------------------------------------------------------


def _memory_size():
    # awslambdaric hands the variable's text through unchanged: a str, not an int.
    return _environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")


_FUNCTION_NAME = _environ.get("AWS_LAMBDA_FUNCTION_NAME")
_FUNCTION_VERSION = _environ.get("AWS_LAMBDA_FUNCTION_VERSION")
_MEMORY_SIZE = _memory_size()
_LOG_GROUP = _environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
_LOG_STREAM = _environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
_W3C_FIELDS = ("traceparent", "tracestate", "baggage")


class CognitoIdentity(object):
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, identity_id=None, pool_id=None):
        self.cognito_identity_id = identity_id
        self.cognito_identity_pool_id = pool_id

    def __repr__(self):
        return "CognitoIdentity([cognito_identity_id=%s,cognito_identity_pool_id=%s])" % (
            self.cognito_identity_id,
            self.cognito_identity_pool_id,
        )


class Client(object):
    __slots__ = (
        "installation_id",
        "app_title",
        "app_version_name",
        "app_version_code",
        "app_package_name",
    )

    def __repr__(self):
        return "Client([%s])" % ",".join(
            "%s=%s" % (k, getattr(self, k)) for k in self.__slots__
        )


class ClientContext(object):
    __slots__ = ("custom", "env", "client")

    def __repr__(self):
        return "ClientContext([custom=%s,env=%s,client=%s])" % (
            self.custom,
            self.env,
            self.client,
        )


def _obj_from_dict(cls, data):
    if data is None:
        return None
    obj = cls()
    get = data.get if isinstance(data, dict) else (lambda _k, _d=None: None)
    for field in cls.__slots__:
        setattr(obj, field, get(field, None))
    return obj


def _parse_json_header(value, name):
    try:
        return json.loads(value)
    except Exception as e:
        raise FaultException(
            FaultException.LAMBDA_CONTEXT_UNMARSHAL_ERROR,
            "Unable to parse %s JSON: %s" % (name, e),
        )


class LambdaContext(object):
    # No __slots__: like awslambdaric's, user code may set attributes on it.

    def __init__(
        self,
        request_id,
        client_context_json,
        cognito_identity_json,
        deadline_ms,
        invoked_function_arn,
        tenant_id=None,
    ):
        self.aws_request_id = request_id
        self.log_group_name = _LOG_GROUP
        self.log_stream_name = _LOG_STREAM
        self.function_name = _FUNCTION_NAME
        self.memory_limit_in_mb = _MEMORY_SIZE
        self.function_version = _FUNCTION_VERSION
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id
        self._epoch_deadline_time_in_ms = deadline_ms
        self._w3c_fields = {}

        if client_context_json:
            cc = _parse_json_header(client_context_json, "Client Context")
            if isinstance(cc, dict) and "w3c" in cc:
                raw = cc.pop("w3c")
                if isinstance(raw, dict):
                    self._w3c_fields = {
                        k: raw[k] for k in _W3C_FIELDS if isinstance(raw.get(k), str)
                    }
            cc_obj = _obj_from_dict(ClientContext, cc)
            if cc_obj is not None:
                cc_obj.client = _obj_from_dict(Client, cc_obj.client)
            self.client_context = cc_obj
        else:
            self.client_context = None

        if cognito_identity_json:
            ident = _parse_json_header(cognito_identity_json, "Cognito Identity")
            if isinstance(ident, dict):
                self.identity = CognitoIdentity(
                    ident.get("cognitoIdentityId"), ident.get("cognitoIdentityPoolId")
                )
            else:
                self.identity = CognitoIdentity()
        else:
            self.identity = CognitoIdentity()

    def get_remaining_time_in_millis(self):
        delta = self._epoch_deadline_time_in_ms - int(time.time() * 1000)
        return delta if delta > 0 else 0

    def w3c(self):
        return dict(self._w3c_fields)

    def log(self, msg):
        sys.stdout.write(str(msg))

    def __repr__(self):
        return (
            "LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,"
            "function_name=%s,memory_limit_in_mb=%s,function_version=%s,"
            "invoked_function_arn=%s,client_context=%s,identity=%s,tenant_id=%s])"
            % (
                self.aws_request_id,
                self.log_group_name,
                self.log_stream_name,
                self.function_name,
                self.memory_limit_in_mb,
                self.function_version,
                self.invoked_function_arn,
                self.client_context,
                self.identity,
                self.tenant_id,
            )
        )


# --------------------------------------------------------------------------
# Logging (set up once, at init)
# --------------------------------------------------------------------------

_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
_LOG_FORMAT_JSON = (_environ.get("AWS_LAMBDA_LOG_FORMAT") or "").upper() == "JSON"
_LOG_RESERVED = frozenset(
    (
        "name", "msg", "args", "levelname", "levelno", "pathname", "filename",
        "module", "exc_info", "exc_text", "stack_info", "lineno", "funcName",
        "created", "msecs", "relativeCreated", "thread", "threadName",
        "processName", "process", "aws_request_id", "tenant_id", "_frame_type",
    )
)


def _setup_logging(logging):
    """Route the root logger to stdout in Lambda's format (called once `logging` exists)."""

    class _LambdaLogFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = _REQUEST_ID or ""
            record.tenant_id = _TENANT_ID
            return True

    class _LambdaLogHandler(logging.Handler):
        def emit(self, record):
            try:
                msg = self.format(record)
                sys.stdout.write(msg)
            except Exception:
                self.handleError(record)

    class _JsonLogFormatter(logging.Formatter):
        def __init__(self):
            logging.Formatter.__init__(self, datefmt=_DATETIME_FORMAT)
            self._enc = json.JSONEncoder(ensure_ascii=False, default=str).encode

        def formatTime(self, record, datefmt=None):
            # awslambdaric's JSON timestamps have whole seconds: 2024-01-15T10:30:45Z.
            return time.strftime(_DATETIME_FORMAT + "Z", time.gmtime(record.created))

        def format(self, record):
            level = min(50, max(0, record.levelno)) // 10 * 10
            record.levelno = level
            record.levelname = logging.getLevelName(level)
            exc = record.exc_info
            result = {
                "timestamp": self.formatTime(record, self.datefmt),
                "level": record.levelname,
                "message": (
                    record.msg if isinstance(record.msg, dict) and not record.args else record.getMessage()
                ),
                "logger": record.name,
                "stackTrace": _std_module("traceback").format_tb(exc[2]) if exc else None,
                "errorType": exc[0].__name__ if exc else None,
                "errorMessage": str(exc[1]) if exc else None,
                "requestId": getattr(record, "aws_request_id", None),
                "location": (
                    "%s:%s:%s" % (record.pathname, record.funcName, record.lineno) if exc else None
                ),
            }
            if getattr(record, "tenant_id", None) is not None:
                result["tenantId"] = record.tenant_id
            for key, value in record.__dict__.items():
                if key not in _LOG_RESERVED and key not in result:
                    result[key] = value
            return self._enc({k: v for k, v in result.items() if v is not None}) + "\n"

    logging.Formatter.converter = time.gmtime
    handler = _LambdaLogHandler()
    if _LOG_FORMAT_JSON:
        handler.setFormatter(_JsonLogFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
                _DATETIME_FORMAT,
            )
        )
    handler.addFilter(_LambdaLogFilter())
    root = logging.getLogger()
    level = _environ.get("AWS_LAMBDA_LOG_LEVEL")
    level = {None: "", "TRACE": "DEBUG"}.get(level, level).upper()
    if level in logging._nameToLevel:
        root.setLevel(level)
    root.addHandler(handler)


# The standard-library modules the bootstrap used to import up front (and so kept user
# modules of the same names from shadowing): they still come from the standard library.
_STD_NAMES = frozenset((
    "array", "linecache", "logging", "select", "selectors", "signal", "socket",
    "string", "textwrap", "token", "tokenize", "traceback",
))


class _StdFinder(object):
    """Finds _STD_NAMES on _STD_PATH, as if imported before the task root went on
    sys.path, and sets up logging when the function first imports `logging` (most never
    do): _setup_logging runs right after the module body, before the importer sees it.
    """

    @staticmethod
    def find_spec(name, path=None, target=None):
        if path is not None or name not in _STD_NAMES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, _STD_PATH)
        if name != "logging" or spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            try:
                _setup_logging(module)
            except Exception as e:
                _complain("cannot set up logging: %s" % e)

        spec.loader.exec_module = exec_module
        return spec

    @staticmethod
    def invalidate_caches():
        pass


def _install_std_finder():
    if "logging" in sys.modules:
        _setup_logging(sys.modules["logging"])
    sys.meta_path.insert(0, _StdFinder)


def _indent(line):
    n = len(line) - len(line.lstrip(" "))
    return _ERROR_INDENT * n + line[n:]


def _log_error(error):
    """Write the `[ERROR] type: message` record, like awslambdaric."""
    if _LOG_FORMAT_JSON:
        record = {
            "timestamp": time.strftime(_DATETIME_FORMAT + "Z", time.gmtime()),
            "level": "ERROR",
        }
        record.update(error)
        text = _encode(record) + "\n"
    else:
        head = "[ERROR]"
        etype = error.get("errorType")
        emsg = error.get("errorMessage")
        if etype:
            head += " " + etype
        if emsg:
            if etype:
                head += ":"
            head += " " + emsg
        lines = [head, "Traceback (most recent call last):"]
        for element in error.get("stackTrace") or ():
            if element == "":
                lines.append("")
            else:
                lines.extend(_indent(tl) for tl in element.splitlines())
        text = _ERROR_LINE_TERMINATOR.join(lines) + "\n"
    try:
        sys.stdout.write(text)
    except Exception:
        pass


def _flush_std():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _complain(msg):
    try:
        sys.stderr.write("[ruststack-bootstrap] %s\n" % msg)
        sys.stderr.flush()
    except Exception:
        pass


def _configure_std_streams():
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        try:
            kwargs = {"line_buffering": True, "write_through": True}
            enc = (getattr(stream, "encoding", "") or "").lower().replace("-", "")
            if enc != "utf8":
                kwargs["encoding"] = "utf-8"
                kwargs["errors"] = "backslashreplace"
            stream.reconfigure(**kwargs)
        except Exception:
            pass


# --------------------------------------------------------------------------
# Runtime API client
# --------------------------------------------------------------------------


class ProtocolError(ConnectionError):
    """The Runtime API sent something that is not a usable HTTP/1.1 response."""


_USER_AGENT = "ruststack-lambda-python/%d.%d.%d" % sys.version_info[:3]
_MAX_HEAD = 64 * 1024


def _split_address(address):
    """'host:port', '[v6]:port' or 'host' -> (host, port)."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif address.count(":") == 1:
        host, _, port = address.partition(":")
    else:
        host, port = address, ""
    host = host or "127.0.0.1"
    try:
        # A bytes host keeps getaddrinfo from loading the idna codec (and with
        # it `stringprep`/`unicodedata`) after user paths are on sys.path.
        host = host.encode("ascii")
    except UnicodeEncodeError:
        pass
    return host, int(port) if port else 80


class RuntimeClient(object):
    """A minimal HTTP/1.1 client on ONE persistent keep-alive connection.

    It is not http.client: http.client parses every response's headers with
    the email package, builds a new file object per response and writes the
    headers and the body of a POST with two send() calls; that cost about
    0.2 ms of CPU per invoke on the development VM, against ~30 us for the
    whole loop here.  This client sends each request (headers and body) with
    a single sendall() on a TCP_NODELAY socket, always with Content-Length,
    and parses responses with a few string operations (Content-Length or
    chunked bodies).  If the connection drops, it reconnects and resends
    once.
    """

    def __init__(self, address):
        self.host, self.port = _split_address(address)
        self.sock = None
        self.buf = b""
        # recv_into one reusable buffer: sock.recv(big) would malloc (and on
        # glibc mmap/munmap) a fresh buffer on every call.
        self.rbuf = memoryview(bytearray(65536))
        common = ("Host: %s\r\nUser-Agent: %s\r\n" % (address, _USER_AGENT)).encode("latin-1")
        self.next_request = b"GET " + _NEXT_PATH.encode() + b" HTTP/1.1\r\n" + common + b"\r\n"
        self.post_tail = b" HTTP/1.1\r\n" + common

    def connect(self):
        self.close()
        sock = None
        error = OSError("getaddrinfo returned no address for %r" % (self.host,))
        for family, kind, proto, _name, addr in _socket.getaddrinfo(
            self.host, self.port, 0, _socket.SOCK_STREAM
        ):
            sock = _socket.socket(family, kind, proto)
            try:
                sock.connect(addr)
                break
            except OSError as e:
                sock.close()
                sock = None
                error = e
        if sock is None:
            raise error
        try:
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.sock = sock
        self.buf = b""

    def warm_up(self):
        try:
            self.connect()
        except OSError:
            self.close()

    def close(self):
        sock = self.sock
        self.sock = None
        self.buf = b""
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _exchange(self, request):
        for attempt in (0, 1):
            try:
                if self.sock is None:
                    self.connect()
                self.sock.sendall(request)
                return self._read_response()
            except OSError:  # includes ProtocolError and ConnectionError
                self.close()
                if attempt:
                    raise

    def _fill(self, buf):
        rbuf = self.rbuf
        n = self.sock.recv_into(rbuf)
        if not n:
            raise ProtocolError("Runtime API closed the connection")
        return buf + rbuf[:n]

    def _read_exact(self, buf, n):
        """Return (n bytes, leftover), reading more from the socket if needed."""
        have = len(buf)
        if have >= n:
            return buf[:n], buf[n:]
        out = bytearray(n)
        view = memoryview(out)
        view[:have] = buf
        recv_into = self.sock.recv_into
        while have < n:
            got = recv_into(view[have:])
            if not got:
                raise ProtocolError("Runtime API closed the connection mid-body")
            have += got
        view.release()
        return bytes(out), b""

    def _read_chunked(self, buf):
        parts = []
        while True:
            while b"\r\n" not in buf:
                buf = self._fill(buf)
            line, _, buf = buf.partition(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ProtocolError("bad chunk size line %r" % line[:80])
            if size == 0:
                # Trailers (if any) end with an empty line.
                while True:
                    while b"\r\n" not in buf:
                        buf = self._fill(buf)
                    line, _, buf = buf.partition(b"\r\n")
                    if not line:
                        return b"".join(parts), buf
            chunk, buf = self._read_exact(buf, size + 2)
            parts.append(chunk[:size])

    def _read_response(self):
        buf = self.buf
        while True:
            end = buf.find(b"\r\n\r\n")
            while end < 0:
                if len(buf) > _MAX_HEAD:
                    raise ProtocolError("response head too large")
                buf = self._fill(buf)
                end = buf.find(b"\r\n\r\n")
            lines = buf[:end].decode("latin-1").split("\r\n")
            buf = buf[end + 4:]
            status_line = lines[0].split(" ", 2)
            try:
                status = int(status_line[1])
            except (IndexError, ValueError):
                raise ProtocolError("bad status line %r" % lines[0][:80])
            if 100 <= status < 200:
                continue  # interim response; the real one follows
            break
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.lower()
            if name not in headers:
                headers[name] = value.strip()
        te = headers.get("transfer-encoding")
        if te is not None and "chunked" in te.lower():
            body, buf = self._read_chunked(buf)
        else:
            length = headers.get("content-length")
            if length is not None:
                try:
                    n = int(length)
                except ValueError:
                    raise ProtocolError("bad Content-Length %r" % length)
                body, buf = self._read_exact(buf, n)
            elif status == 204 or status == 304:
                body = b""
            else:
                # No framing: the body runs to the end of the connection.
                parts = [buf]
                rbuf = self.rbuf
                while True:
                    got = self.sock.recv_into(rbuf)
                    if not got:
                        break
                    parts.append(bytes(rbuf[:got]))
                self.close()
                return status, headers, b"".join(parts)
        conn_hdr = headers.get("connection")
        if (conn_hdr is not None and conn_hdr.lower() == "close") or status_line[0] == "HTTP/1.0":
            self.close()
        else:
            self.buf = buf
        return status, headers, body

    def next(self):
        """GET /next -> (status, lower-cased header dict, body bytes)."""
        return self._exchange(self.next_request)

    def post(self, path, body, header_block):
        """POST body to path; header_block is pre-encoded 'Name: value\\r\\n' lines."""
        request = b"".join(
            (
                b"POST ",
                path.encode("latin-1"),
                self.post_tail,
                header_block,
                b"Content-Length: %d\r\n\r\n" % len(body),
                body,
            )
        )
        status, _headers, data = self._exchange(request)
        return status, data


def _header_safe(value):
    """A header value that cannot break the request framing."""
    return "".join(c if " " <= c <= "~" else "?" for c in str(value))


def _header_block(*pairs):
    return "".join("%s: %s\r\n" % pair for pair in pairs).encode("latin-1")


# --------------------------------------------------------------------------
# Init
# --------------------------------------------------------------------------


def _setup_sys_path(task_root):
    """Like the AWS image's bootstrap.py, with each layer root standing for /opt.

    Result (most important first): task root, every layer's
    python/lib/pythonX.Y/site-packages, every layer's python, then whatever
    .pth files add, then the interpreter's own entries.
    """
    major_minor = "%d.%d" % _declared_version()
    layer_roots = [p for p in _INTERNAL.get("_RUSTSTACK_LAYER_DIRS", "").split(os.pathsep) if p]
    site_dirs = [
        os.path.join(root, "python", "lib", "python" + major_minor, "site-packages")
        for root in layer_roots
    ]
    python_dirs = [os.path.join(root, "python") for root in layer_roots]
    wanted = [task_root] + [d for d in site_dirs + python_dirs if os.path.isdir(d)]

    seen = set()
    ordered = []
    for d in wanted:
        d = os.path.abspath(d)
        if d not in seen:
            seen.add(d)
            ordered.append(d)
    sys.path[:] = ordered + [p for p in sys.path if os.path.abspath(p or ".") not in seen]

    # addsitedir leaves entries that are already present where they are and
    # appends what .pth files name; it also processes `import` lines.
    for d in ordered:
        try:
            site.addsitedir(d)
        except Exception:
            pass


def _load_handler(handler):
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise FaultException(
            FaultException.MALFORMED_HANDLER_NAME,
            "Bad handler '%s': %s" % (handler, e),
        )
    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise FaultException(
                FaultException.BUILT_IN_MODULE_CONFLICT,
                "Cannot use built-in module %s as a handler module" % modname,
            )
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise FaultException(
            FaultException.IMPORT_MODULE_ERROR,
            "Unable to import module '%s': %s" % (modname, e),
        )
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise FaultException(
            FaultException.USER_CODE_SYNTAX_ERROR,
            "Syntax error in module '%s': %s" % (modname, e),
            trace,
        )
    try:
        return getattr(module, fname)
    except AttributeError:
        raise FaultException(
            FaultException.HANDLER_NOT_FOUND,
            "Handler '%s' missing on module '%s'" % (fname, modname),
        )


def _fail_init(client, error):
    _std_module("logging").warning(_UNHANDLED_WARNING)
    _log_error(error)
    _flush_std()
    try:
        status, data = client.post(
            _INIT_ERROR_PATH,
            _to_json_bytes(error),
            _header_block(
                ("Content-Type", "application/json"),
                ("Lambda-Runtime-Function-Error-Type", _header_safe(error["errorType"]) or "Runtime.Unknown"),
            ),
        )
        if status != 202:
            _complain("POST %s answered %s: %r" % (_INIT_ERROR_PATH, status, data[:500]))
    except Exception as e:
        _complain("POST %s failed: %s" % (_INIT_ERROR_PATH, e))
    _flush_std()
    os._exit(1)


def _on_sigterm(_signum, _frame):
    _flush_std()
    os._exit(0)


# --------------------------------------------------------------------------
# The invoke loop
# --------------------------------------------------------------------------


def _run(client, request_handler):
    global _REQUEST_ID, _TENANT_ID

    environ = _environ
    to_json_bytes = _to_json_bytes
    flush = _flush_std
    fault = FaultException
    make_ctx = LambdaContext
    loads = _json_loads
    next_invocation = client.next
    post = client.post
    getrusage = _GETRUSAGE
    json_headers = _header_block(("Content-Type", "application/json"))
    bytes_headers = _header_block(("Content-Type", "application/unknown"))
    prefix = _API_PREFIX + "/invocation/"

    while True:
        try:
            status, h, body = next_invocation()
        except Exception as e:
            _complain("GET %s failed: %s" % (_NEXT_PATH, e))
            flush()
            os._exit(1)
        if status != 200:
            _complain("GET %s answered %s: %r" % (_NEXT_PATH, status, body[:500]))
            flush()
            os._exit(1)

        request_id = h.get("lambda-runtime-aws-request-id")
        if not request_id:
            _complain("GET %s: response has no Lambda-Runtime-Aws-Request-Id" % _NEXT_PATH)
            flush()
            os._exit(1)
        _REQUEST_ID = request_id
        _TENANT_ID = tenant_id = h.get("lambda-runtime-aws-tenant-id")

        trace_id = h.get("lambda-runtime-trace-id")
        try:
            if trace_id is not None:
                environ["_X_AMZN_TRACE_ID"] = trace_id
            elif "_X_AMZN_TRACE_ID" in environ:
                del environ["_X_AMZN_TRACE_ID"]
        except ValueError:  # e.g. an embedded NUL
            pass

        try:
            deadline_ms = int(h.get("lambda-runtime-deadline-ms") or 0)
        except ValueError:
            deadline_ms = 0

        error = None
        xray = None
        try:
            ctx = make_ctx(
                request_id,
                h.get("lambda-runtime-client-context"),
                h.get("lambda-runtime-cognito-identity"),
                deadline_ms,
                h.get("lambda-runtime-invoked-function-arn"),
                tenant_id,
            )
            if h.get("content-type") == "application/json":
                if body:
                    try:
                        event = loads(body)
                    except Exception as e:
                        raise fault(
                            fault.UNMARSHAL_ERROR, "Unable to unmarshal input: %s" % (e,)
                        )
                else:
                    event = None
            else:
                event = body

            result = request_handler(event, ctx)

            if isinstance(result, bytes):
                payload = result
                headers = bytes_headers
            else:
                try:
                    payload = to_json_bytes(result)
                except Exception as e:
                    raise fault(fault.MARSHAL_ERROR, "Unable to marshal response: %s" % (e,))
                headers = json_headers
        except fault as e:
            error = _make_error(e.msg, e.exception_type, e.trace, request_id)
            xray = _make_xray_cause("LambdaValidationError", e.msg, [])
        except Exception:
            error, xray = _fault_from_exc_info(sys.exc_info(), request_id)

        if error is None:
            path = prefix + request_id + "/response"
        else:
            _log_error(error)
            path = prefix + request_id + "/error"
            try:
                payload = to_json_bytes(error)
            except Exception:
                payload = json.dumps(error, default=str).encode("utf-8")
            headers = json_headers
            try:
                cause = _xray_encode(xray)
                if len(cause) < _XRAY_CAUSE_MAX:
                    headers = json_headers + _header_block(
                        ("Lambda-Runtime-Function-XRay-Error-Cause", cause)
                    )
            except Exception:
                pass

        flush()
        if getrusage is not None:
            try:
                headers = headers + b"X-Ruststack-Max-Rss-Kb: %d\r\n" % getrusage(0).ru_maxrss
            except Exception:
                pass
        try:
            status, data = post(path, payload, headers)
        except Exception as e:
            _complain("POST %s failed: %s" % (path, e))
            flush()
            os._exit(1)
        if status != 202 and status != 413:
            _complain("POST %s answered %s: %r" % (path, status, data[:500]))
            if status >= 500:
                flush()
                os._exit(1)


def _hide_internal_env():
    """Takes RustStack's variables out of os.environ before the function loads.

    _RUSTSTACK_OWNER leaves only the mapping and stays in the process's C environment, so the
    processes the function starts still inherit it and the server's sweep after a kill -9
    finds them."""
    for key in _INTERNAL:
        if key == "_RUSTSTACK_OWNER":
            os.environ._data.pop(os.environ.encodekey(key), None)
        else:
            os.environ.pop(key, None)


def main():
    _signal.signal(_signal.SIGTERM, _on_sigterm)
    _configure_std_streams()

    address = _environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        _complain("AWS_LAMBDA_RUNTIME_API is not set")
        os._exit(1)
    handler_name = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else _environ.get("_HANDLER", "")
    task_root = _environ.get("LAMBDA_TASK_ROOT") or os.getcwd()

    client = RuntimeClient(address)
    # Connect now, before user paths are on sys.path (getaddrinfo may import
    # the idna codec lazily).
    client.warm_up()

    _install_std_finder()
    _setup_sys_path(task_root)
    _hide_internal_env()

    try:
        request_handler = _load_handler(handler_name)
    except FaultException as e:
        _fail_init(client, _make_error(e.msg, e.exception_type, e.trace))
    except Exception:
        error, _xray = _fault_from_exc_info(sys.exc_info())
        _fail_init(client, error)

    _run(client, request_handler)


if __name__ == "__main__":
    main()
