#!/usr/bin/env bash
# Instructions per warm invoke of the server process, counted by callgrind (repeatable under
# load, unlike wall time).
#
# What it measures: the release `ruststack` runs under `valgrind --tool=callgrind` with
# instrumentation off. A python3.11 function with a trivial handler is created and warmed
# (one Invoke, then 200 over bench_client's keep-alive connection). Then instrumentation is
# switched on for two windows of the same length:
#   A: N sequential RequestResponse Invokes over one keep-alive connection (bench_client);
#   B: the server idle (its timers and background passes only).
# instructions/invoke = (A - B) / N. Only the server process is counted: the runtime
# (python) runs natively in its own process. Each window's profile is kept for
# callgrind_annotate (A minus B is printed per function, top first).
#
#   bench/profile_warm.sh                  # N=1000, binaries from target-rel/release
#   N=2000 BIN=... CLIENT=... bench/profile_warm.sh
# Build first: cargo build --release --bin ruststack --example bench_client --target-dir target-rel
# Output: a directory (printed) with callgrind.A, callgrind.B, diff.txt and server.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${N:-1000}
BIN=${BIN:-$ROOT/target-rel/release/ruststack}
CLIENT=${CLIENT:-$ROOT/target-rel/release/examples/bench_client}
PY=${PY:-$ROOT/.venv/bin/python}
OUT=${OUT:-$(mktemp -d /tmp/profile-warm.XXXXXX)}
DATA=$OUT/data
mkdir -p "$DATA"
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADDR=127.0.0.1:$PORT
PATH_INV=/2015-03-31/functions/warm/invocations

RUST_LOG=${RUST_LOG:-info} valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$OUT/callgrind.out" \
    "$BIN" --port "$PORT" --data-dir "$DATA" >"$OUT/server.log" 2>&1 &
VG=$!
trap 'kill $VG 2>/dev/null || true; wait $VG 2>/dev/null || true' EXIT

"$PY" - "$PORT" <<'EOF'
import base64, http.client, io, json, sys, time, zipfile
port = int(sys.argv[1])
def call(method, path, body=b"", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse(); data = r.read(); c.close()
    return r.status, data
deadline = time.time() + 180
while True:
    try:
        if call("GET", "/_ruststack/health")[0] == 200:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("the server did not start")
    time.sleep(0.2)
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    z.writestr("handler.py", "def handler(event, context):\n    return {'ok': True}\n")
spec = {"FunctionName": "warm", "Runtime": "python3.11", "Handler": "handler.handler",
        "Role": "arn:aws:iam::000000000000:role/lambda",
        "Code": {"ZipFile": base64.b64encode(buf.getvalue()).decode()}}
st, data = call("POST", "/2015-03-31/functions", json.dumps(spec).encode(), {"Content-Type": "application/json"})
assert st == 201, (st, data[:300])
st, data = call("POST", "/2015-03-31/functions/warm/invocations", b"{}")
assert st == 200, (st, data[:300])
EOF
"$CLIENT" latency "$ADDR" "$PATH_INV" '{}' 200 >/dev/null

window() {  # name, command...
    local name=$1; shift
    callgrind_control -z "$VG" >/dev/null
    callgrind_control -i on "$VG" >/dev/null
    "$@"
    callgrind_control -i off "$VG" >/dev/null
    callgrind_control -d "$name" "$VG" >/dev/null
    mv "$(ls -t "$OUT"/callgrind.out.* | head -1)" "$OUT/callgrind.$name"
}
t0=$(date +%s.%N)
window A "$CLIENT" latency "$ADDR" "$PATH_INV" '{}' "$N" >/dev/null
secs=$("$PY" -c "import time; print(max(0.0, time.time() - $t0))")
window B sleep "$secs"

total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'; }
A=$(total "$OUT/callgrind.A")
B=$(total "$OUT/callgrind.B")
echo "window: ${secs}s; A (N=$N invokes): $A; B (idle): $B"
echo "instructions per warm invoke: $(( (A - B) / N ))"
# Per function, A minus B per invoke, top first.
"$PY" - "$OUT/callgrind.A" "$OUT/callgrind.B" "$N" >"$OUT/diff.txt" <<'EOF'
import re, subprocess, sys
def per_fn(path):
    out = subprocess.run(["callgrind_annotate", "--auto=no", "--inclusive=no", "--threshold=100", path],
                         capture_output=True, text=True).stdout
    d = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*)", line)
        if m and ":" in m.group(2):
            d[m.group(2).strip()] = d.get(m.group(2).strip(), 0) + int(m.group(1).replace(",", ""))
    return d
a, b, n = per_fn(sys.argv[1]), per_fn(sys.argv[2]), int(sys.argv[3])
rows = sorted(((a.get(k, 0) - b.get(k, 0)) / n, k) for k in set(a) | set(b))
for v, k in reversed(rows):
    if abs(v) >= 20:
        print("%8.0f  %s" % (v, k))
EOF
head -40 "$OUT/diff.txt"
echo "profiles and diff: $OUT"
