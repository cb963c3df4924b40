#!/usr/bin/env bash
# Benchmark of the local runner on the prime counter, side by side with the
# wasmtime CLI of the same version; prints times and ratios (hyperfine).
#
#   bench/local-runner.sh [LIMIT]        (default LIMIT 20000000)
#
# Needs: a release build (cargo build --release -p corral-node), hyperfine
# (apt-get install hyperfine), and wasmtime 48.0.8
# (cargo install wasmtime-cli --version 48.0.8 --locked). A missing peer is
# reported, never silently skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
limit="${1:-20000000}"
corral=target/release/corral
module=examples/wasm/primes.wasm
[ -x "$corral" ] || { echo "missing $corral: cargo build --release -p corral-node" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "missing hyperfine: apt-get install hyperfine" >&2; exit 1; }
if ! command -v wasmtime >/dev/null || ! wasmtime --version | grep -q ' 48\.0\.8'; then
    echo "missing peer: wasmtime 48.0.8 (cargo install wasmtime-cli --version 48.0.8 --locked)" >&2
    exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export CORRAL_DATA_DIR="$work/data"

run() { hyperfine --style basic --warmup 2 --runs 10 --export-json "$work/$1.json" "${@:2}" >&2; }
mean() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['results'][${2:-0}]['mean'])" "$work/$1.json"; }

# Warm: compiled code cached on both sides (wasmtime's own cache is on by
# default). corral always runs with a wall-clock timeout (epoch checks in
# loops); the like-for-like peer is wasmtime with -W timeout.
run warm \
    "wasmtime run $module 0 1 $limit" \
    "$corral run --local --engine jit $module -- 0 1 $limit" \
    "wasmtime run -W timeout=3600s $module 0 1 $limit"
# Cold: no cache on either side.
run cold \
    "wasmtime run -C cache=n $module 0 1 $limit" \
    "$corral run --local --engine jit $module -- 0 1 $limit" \
    --prepare "rm -rf $work/data"
run interp \
    "$corral run --local --engine jit $module -- 0 1 $limit" \
    "$corral run --local --engine interp $module -- 0 1 $limit"

python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
def m(name, i): return json.load(open(f"{w}/{name}.json"))["results"][i]["mean"]
rows = [
    ("corral jit (warm) / wasmtime CLI with -W timeout (warm)", m("warm", 1), m("warm", 2)),
    ("corral jit (warm) / wasmtime CLI, no timeout (warm)", m("warm", 1), m("warm", 0)),
    ("corral jit (cold) / wasmtime CLI (cache off)", m("cold", 1), m("cold", 0)),
    ("corral interp (wasmi) / corral jit (wasmtime)", m("interp", 1), m("interp", 0)),
]
print(f"{'figure':58} {'corral s':>9} {'peer s':>9} {'ratio':>7}")
for name, a, b in rows:
    print(f"{name:58} {a:9.4f} {b:9.4f} {a/b:7.3f}")
PY
