"""Runs a WASI preview 1 command module under wasm3 (pywasm3), with just the
WASI calls a batch task like examples/collatz needs: arguments, environment,
clocks, stdout/stderr, exit, and no preopened directories. Prints the
guest's stdout, then the wall time of `_start` on stderr as `wasm3_s=...`.

    python3 wasm3_run.py MODULE.wasm [ARGS...]
"""
import struct
import sys
import time

import wasm3

ESUCCESS, EBADF = 0, 8


class Exit(Exception):
    def __init__(self, code):
        self.code = code


def main():
    path, argv = sys.argv[1], [sys.argv[1].rsplit("/", 1)[-1]] + sys.argv[2:]
    env = wasm3.Environment()
    rt = env.new_runtime(64 * 1024)
    module = env.parse_module(open(path, "rb").read())
    rt.load(module)
    out = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
    args = [a.encode() + b"\0" for a in argv]

    def mem():
        return rt.get_memory(0)

    def args_sizes_get(argc, size):
        struct.pack_into("<II", mem(), argc, len(args), 0)
        struct.pack_into("<I", mem(), size, sum(len(a) for a in args))
        return ESUCCESS

    def args_get(argv_ptr, buf):
        m = mem()
        for i, a in enumerate(args):
            struct.pack_into("<I", m, argv_ptr + 4 * i, buf)
            m[buf:buf + len(a)] = a
            buf += len(a)
        return ESUCCESS

    def environ_sizes_get(count, size):
        struct.pack_into("<I", mem(), count, 0)
        struct.pack_into("<I", mem(), size, 0)
        return ESUCCESS

    def environ_get(_env, _buf):
        return ESUCCESS

    def fd_write(fd, iovs, iovs_len, nwritten):
        if fd not in out:
            return EBADF
        m, total = mem(), 0
        for i in range(iovs_len):
            base, length = struct.unpack_from("<II", m, iovs + 8 * i)
            out[fd].write(bytes(m[base:base + length]))
            total += length
        struct.pack_into("<I", m, nwritten, total)
        return ESUCCESS

    def fd_prestat_get(_fd, _buf):
        return EBADF  # no preopened directories

    def fd_prestat_dir_name(_fd, _path, _len):
        return EBADF

    def fd_fdstat_get(fd, buf):
        if fd not in (0, 1, 2):
            return EBADF
        m = mem()
        m[buf:buf + 24] = bytes(24)
        m[buf] = 2  # character device
        struct.pack_into("<QQ", m, buf + 8, 0xFFFFFFFF, 0xFFFFFFFF)
        return ESUCCESS

    def fd_close(_fd):
        return ESUCCESS

    def fd_seek(_fd, _offset, _whence, _result):
        return 70  # ESPIPE: stdio cannot seek

    def proc_exit(code):
        raise Exit(code)

    def clock_time_get(_id, _precision, result):
        struct.pack_into("<Q", mem(), result, time.time_ns())
        return ESUCCESS

    wasi = "wasi_snapshot_preview1"
    links = {
        "args_sizes_get": ("i(**)", args_sizes_get),
        "args_get": ("i(**)", args_get),
        "environ_sizes_get": ("i(**)", environ_sizes_get),
        "environ_get": ("i(**)", environ_get),
        "fd_write": ("i(i*i*)", fd_write),
        "fd_prestat_get": ("i(i*)", fd_prestat_get),
        "fd_prestat_dir_name": ("i(i*i)", fd_prestat_dir_name),
        "fd_fdstat_get": ("i(i*)", fd_fdstat_get),
        "fd_close": ("i(i)", fd_close),
        "fd_seek": ("i(iIi*)", fd_seek),
        "proc_exit": ("v(i)", proc_exit),
        "clock_time_get": ("i(iI*)", clock_time_get),
    }
    for name, (sig, fn) in links.items():
        try:
            module.link_function(wasi, name, sig, fn)
        except RuntimeError:
            pass  # the module does not import it
    code = 0
    start = rt.find_function("_start")
    began = time.perf_counter()
    try:
        start()
    except Exit as e:
        code = e.code
    elapsed = time.perf_counter() - began
    sys.stdout.flush()
    print(f"wasm3_s={elapsed:.6f}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
