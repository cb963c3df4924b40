#!/usr/bin/env bash
# Builds every example module for wasm32-wasip1, reproducibly, into OUTDIR
# (default: examples/wasm, the committed copies the demo and tests use).
#
#   examples/build.sh [OUTDIR]
#
# Needs the wasm32-wasip1 Rust target and Debian's clang, lld, wasi-libc and
# libclang-rt-14-dev-wasm32 (for the C example).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/wasm}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || {
    echo "error: the wasm32-wasip1 target is missing: rustup target add wasm32-wasip1" >&2; exit 1; }
command -v clang >/dev/null || {
    echo "error: clang is missing: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32" >&2; exit 1; }

# Same bytes on every machine: no absolute paths in the modules.
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
export RUSTFLAGS="--remap-path-prefix=$here=/corral/examples --remap-path-prefix=$cargo_home/registry/src=/cargo/registry"
export CARGO_TARGET_DIR="$here/target"
(cd "$here" && cargo build --release --locked -j 1 --target wasm32-wasip1 -q)
for name in primes mandelbrot wordfreq testkit markdown; do
    cp "$CARGO_TARGET_DIR/wasm32-wasip1/release/$name.wasm" "$out/$name.wasm"
done

cc() {
    clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror -g0 -Wl,--strip-all \
        -ffile-prefix-map="$here"=/corral/examples "$@"
}
cc -o "$out/collatz.wasm" "$here/c/collatz/collatz.c"
cc -o "$out/preopens.wasm" "$here/c/preopens/preopens.c"
cc -o "$out/diskfill.wasm" "$here/c/diskfill/diskfill.c"

# The WASI conformance guests corral's tests run (node/tests/conformance.rs).
mkdir -p "$out/conformance"
for name in conf-paths conf-files conf-readdir conf-readonly conf-edges; do
    cp "$CARGO_TARGET_DIR/wasm32-wasip1/release/$name.wasm" "$out/conformance/$name.wasm"
done
for src in "$here"/c/conformance/*.c; do
    cc -o "$out/conformance/$(basename "$src" .c).wasm" "$src"
done

for f in "$out"/*.wasm "$out"/conformance/*.wasm; do
    printf '%-28s %8d bytes\n' "${f#"$out"/}" "$(stat -c %s "$f")"
done
