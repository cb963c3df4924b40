//! Host functions of ours that shadow wasmi_wasi's (wasi-common's) preview 1
//! where it answers differently from wasmtime-wasi 48.0.8's, the reference
//! the JIT runs: each fix makes a case of node/tests/conformance.rs pass on
//! the interpreter. They delegate to wasi-common for everything else.
//!
//! - `fd_fdstat_get`: the rights and flags wasmtime reports (every right a
//!   file's open mode allows, not just read/write; stdio with no flags).
//! - `fd_seek`, `fd_tell`, `fd_pread`, `fd_pwrite`, `fd_allocate` on stdio:
//!   ESPIPE or EBADF as wasmtime says, not wasi-common's EBADF/ENOTSUP.
//! - `sock_*` on an open fd that is not a socket: ENOTSOCK (EBADF only for a
//!   closed fd).
//! - `path_rename` with a trailing slash on a name that is not a directory:
//!   ENOTDIR (wasi-common drops the slash and renames the file).
//! - `path_rename` and `path_link` from a writable directory into a
//!   read-only one: EPERM, not EBADF.
//! - `fd_sync`, `fd_datasync` on stdio, `fd_filestat_set_times` on a
//!   preopen: EBADF; `fd_prestat_dir_name` of a closed fd EBADF, of an fd
//!   that is not a preopen ENOTDIR.
//! - `path_open` with O_TRUNC but no write right: the file truncated and
//!   opened without it, or the path's own errno (ENOENT, EISDIR, ...),
//!   rather than EINVAL for every path.
//! - `path_open` with neither the read nor the write right: open for
//!   reading, as wasmtime does (wasi-common opens a file no call can use).
//! - `fd_fdstat_set_rights`: ENOTSUP (wasmtime keeps no rights to change).
//! - `path_open`, `fd_close`, `fd_renumber`: wasmtime's fd numbers, a
//!   closed number given out again (see [`fds`]).

use wasmi::{Caller, Extern, Linker};
use wasmi_wasi::WasiCtx;
use wasmi_wasi::wasi_common::snapshots::preview_1::types::Fd;
use wasmi_wasi::wasi_common::snapshots::preview_1::wasi_snapshot_preview1::{
    self as abi, WasiSnapshotPreview1,
};
use wiggle_wasi_common::{GuestMemory, GuestPtr};

use crate::runtime::RuntimeError;
use crate::runtime::hostcall::HostState;

pub(super) use fds::FdNumbers;

use answers::{
    EBADF, ENOTDIR, ENOTSUP, ESPIPE, Stdio, append_after_truncate, block, done, fd_fdstat_get,
    into_read_only, not_a_socket, readable_by_default, slash_on_a_non_directory, stdio,
    truncate_read_only,
};

const MODULE: &str = "wasi_snapshot_preview1";

/// Adds the fixes to `linker`, over the wasmi_wasi functions of the same
/// names already in it. `get` finds a run's WASI context, `numbers` the
/// context with the run's fd numbering.
pub(super) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut WasiCtx,
    numbers: fn(&mut T) -> Numbers<'_>,
) -> Result<(), RuntimeError> {
    let failed = |e: wasmi::errors::LinkerError| RuntimeError::Engine {
        engine: "wasmi",
        reason: format!("cannot add the WASI fixes: {e}"),
    };
    linker.allow_shadowing(true);
    linker
        .func_wrap(
            MODULE,
            "fd_fdstat_get",
            move |mut c: Caller<'_, T>, fd: i32, out: i32| {
                with_wasi(&mut c, get, |ctx, mem| fd_fdstat_get(ctx, mem, fd, out))?
            },
        )
        .map_err(failed)?;
    linker
        .func_wrap(
            MODULE,
            "fd_seek",
            move |mut c: Caller<'_, T>, fd: i32, offset: i64, whence: i32, out: i32| {
                with_wasi(&mut c, get, |ctx, mem| match stdio(ctx, mem, fd) {
                    Some(_) => Ok(ESPIPE),
                    None => done(abi::fd_seek(ctx, mem, fd, offset, whence, out)),
                })?
            },
        )
        .map_err(failed)?;
    linker
        .func_wrap(
            MODULE,
            "fd_tell",
            move |mut c: Caller<'_, T>, fd: i32, out: i32| {
                with_wasi(&mut c, get, |ctx, mem| match stdio(ctx, mem, fd) {
                    Some(_) => Ok(ESPIPE),
                    None => done(abi::fd_tell(ctx, mem, fd, out)),
                })?
            },
        )
        .map_err(failed)?;
    linker
        .func_wrap(
            MODULE,
            "fd_pread",
            move |mut c: Caller<'_, T>, fd: i32, iovs: i32, len: i32, offset: i64, out: i32| {
                with_wasi(&mut c, get, |ctx, mem| match stdio(ctx, mem, fd) {
                    Some(Stdio::In) => Ok(ESPIPE),
                    Some(Stdio::Out) => Ok(EBADF),
                    None => done(abi::fd_pread(ctx, mem, fd, iovs, len, offset, out)),
                })?
            },
        )
        .map_err(failed)?;
    linker
        .func_wrap(
            MODULE,
            "fd_pwrite",
            move |mut c: Caller<'_, T>, fd: i32, iovs: i32, len: i32, offset: i64, out: i32| {
                with_wasi(&mut c, get, |ctx, mem| match stdio(ctx, mem, fd) {
                    Some(Stdio::In) => Ok(EBADF),
                    Some(Stdio::Out) => Ok(ESPIPE),
                    None => done(abi::fd_pwrite(ctx, mem, fd, iovs, len, offset, out)),
                })?
            },
        )
        .map_err(failed)?;
    linker
        .func_wrap(
            MODULE,
            "fd_allocate",
            move |mut c: Caller<'_, T>, fd: i32, offset: i64, len: i64| {
                with_wasi(&mut c, get, |ctx, mem| match stdio(ctx, mem, fd) {
                    Some(_) => Ok(EBADF),
                    None => done(abi::fd_allocate(ctx, mem, fd, offset, len)),
                })?
            },
        )
        .map_err(failed)?;
    linker
        .func_wrap(MODULE, "fd_sync", move |mut c: Caller<'_, T>, fd: i32| {
            with_wasi(&mut c, get, |ctx, mem| match stdio(ctx, mem, fd) {
                Some(_) => Ok(EBADF),
                None => done(abi::fd_sync(ctx, mem, fd)),
            })?
        })
        .map_err(failed)?;
    linker
        .func_wrap(
            MODULE,
            "fd_datasync",
            move |mut c: Caller<'_, T>, fd: i32| {
                with_wasi(&mut c, get, |ctx, mem| match stdio(ctx, mem, fd) {
                    Some(_) => Ok(EBADF),
                    None => done(abi::fd_datasync(ctx, mem, fd)),
                })?
            },
        )
        .map_err(failed)?;
    linker
        .func_wrap(
            MODULE,
            "fd_filestat_set_times",
            move |mut c: Caller<'_, T>, fd: i32, atim: i64, mtim: i64, flags: i32| {
                with_wasi(&mut c, get, |ctx, mem| {
                    // wasmtime holds a preopen by a handle the host cannot
                    // set times through: EBADF (other directories work).
                    if block(ctx.fd_prestat_get(mem, Fd::from(fd as u32)))?.is_ok() {
                        return Ok(EBADF);
                    }
                    done(abi::fd_filestat_set_times(ctx, mem, fd, atim, mtim, flags))
                })?
            },
        )
        .map_err(failed)?;
    linker
        .func_wrap(
            MODULE,
            "fd_prestat_dir_name",
            move |mut c: Caller<'_, T>, fd: i32, buf: i32, len: i32| {
                with_wasi(&mut c, get, |ctx, mem| {
                    if !ctx.table().contains_key(fd as u32) {
                        return Ok(EBADF);
                    }
                    match done(abi::fd_prestat_dir_name(ctx, mem, fd, buf, len))? {
                        ENOTSUP => Ok(ENOTDIR),
                        code => Ok(code),
                    }
                })?
            },
        )
        .map_err(failed)?;
    linker
        .func_wrap(
            MODULE,
            "path_open",
            move |mut c: Caller<'_, T>,
                  fd: i32,
                  dirflags: i32,
                  path: i32,
                  path_len: i32,
                  oflags: i32,
                  base: i64,
                  inheriting: i64,
                  fdflags: i32,
                  out: i32| {
                with_numbers(&mut c, numbers, |(ctx, fds, _host), mem| {
                    let base = readable_by_default(base);
                    let code = done(abi::path_open(
                        ctx, mem, fd, dirflags, path, path_len, oflags, base, inheriting, fdflags,
                        out,
                    ))?;
                    let at = (fd, dirflags, path, path_len);
                    let opened = (oflags, base, inheriting, fdflags, out);
                    let code = truncate_read_only(ctx, mem, code, at, opened)?;
                    match append_after_truncate(ctx, mem, code, at, opened)? {
                        0 => renumber_opened(ctx, fds, mem, out),
                        code => Ok(code),
                    }
                })?
            },
        )
        .map_err(failed)?;
    linker
        .func_wrap(MODULE, "fd_close", move |mut c: Caller<'_, T>, fd: i32| {
            with_numbers(&mut c, numbers, |(ctx, fds, host), mem| {
                let code = done(abi::fd_close(ctx, mem, fd))?;
                if code == 0 {
                    fds.closed(fd as u32);
                    host.fd_closed(fd as u32);
                }
                Ok(code)
            })?
        })
        .map_err(failed)?;
    linker
        .func_wrap(
            MODULE,
            "fd_renumber",
            move |mut c: Caller<'_, T>, from: i32, to: i32| {
                with_numbers(&mut c, numbers, |(ctx, fds, host), mem| {
                    let code = done(abi::fd_renumber(ctx, mem, from, to))?;
                    if code == 0 {
                        fds.renumbered(from as u32, to as u32);
                        host.fd_renumbered(from as u32, to as u32);
                    }
                    Ok(code)
                })?
            },
        )
        .map_err(failed)?;
    linker
        .func_wrap(
            MODULE,
            "fd_fdstat_set_rights",
            move |mut c: Caller<'_, T>, fd: i32, _: i64, _: i64| {
                with_wasi(&mut c, get, |ctx, mem| {
                    // wasmtime keeps no rights to change: ENOTSUP for any
                    // file or directory, EBADF for stdio and closed fds.
                    if !ctx.table().contains_key(fd as u32) || stdio(ctx, mem, fd).is_some() {
                        EBADF
                    } else {
                        ENOTSUP
                    }
                })
            },
        )
        .map_err(failed)?;
    linker
        .func_wrap(
            MODULE,
            "sock_accept",
            move |mut c: Caller<'_, T>, fd: i32, _: i32, _: i32| {
                with_wasi(&mut c, get, |ctx, _| Ok(not_a_socket(ctx, fd)))?
            },
        )
        .map_err(failed)?;
    linker
        .func_wrap(
            MODULE,
            "sock_recv",
            move |mut c: Caller<'_, T>, fd: i32, _: i32, _: i32, _: i32, _: i32, _: i32| {
                with_wasi(&mut c, get, |ctx, _| Ok(not_a_socket(ctx, fd)))?
            },
        )
        .map_err(failed)?;
    linker
        .func_wrap(
            MODULE,
            "sock_send",
            move |mut c: Caller<'_, T>, fd: i32, _: i32, _: i32, _: i32, _: i32| {
                with_wasi(&mut c, get, |ctx, _| Ok(not_a_socket(ctx, fd)))?
            },
        )
        .map_err(failed)?;
    linker
        .func_wrap(
            MODULE,
            "sock_shutdown",
            move |mut c: Caller<'_, T>, fd: i32, _: i32| {
                with_wasi(&mut c, get, |ctx, _| Ok(not_a_socket(ctx, fd)))?
            },
        )
        .map_err(failed)?;
    linker
        .func_wrap(
            MODULE,
            "path_rename",
            move |mut c: Caller<'_, T>,
                  fd: i32,
                  old: i32,
                  old_len: i32,
                  new_fd: i32,
                  new: i32,
                  new_len: i32| {
                with_wasi(&mut c, get, |ctx, mem| {
                    if slash_on_a_non_directory(ctx, mem, fd, (old, old_len), (new, new_len)) {
                        return Ok(ENOTDIR);
                    }
                    let code = done(abi::path_rename(
                        ctx, mem, fd, old, old_len, new_fd, new, new_len,
                    ))?;
                    Ok(into_read_only(ctx, mem, code, fd, new_fd))
                })?
            },
        )
        .map_err(failed)?;
    linker
        .func_wrap(
            MODULE,
            "path_link",
            move |mut c: Caller<'_, T>,
                  fd: i32,
                  flags: i32,
                  old: i32,
                  old_len: i32,
                  new_fd: i32,
                  new: i32,
                  new_len: i32| {
                with_wasi(&mut c, get, |ctx, mem| {
                    let code = done(abi::path_link(
                        ctx, mem, fd, flags, old, old_len, new_fd, new, new_len,
                    ))?;
                    Ok(into_read_only(ctx, mem, code, fd, new_fd))
                })?
            },
        )
        .map_err(failed)?;
    Ok(())
}

/// Runs `f` on the guest's memory and the run's WASI context, as wasmi_wasi
/// does for its own functions.
fn with_wasi<T, R>(
    caller: &mut Caller<'_, T>,
    get: fn(&mut T) -> &mut WasiCtx,
    f: impl FnOnce(&mut WasiCtx, &mut GuestMemory<'_>) -> R,
) -> Result<R, wasmi::Error> {
    let (data, state) = memory_and_state(caller)?;
    Ok(f(get(state), &mut GuestMemory::Unshared(data)))
}

/// [`with_wasi`] with the run's fd numbering as well.
/// What the fd-numbering calls change: the WASI context, the numbers given
/// out, and where corral's stdin stream is.
pub(super) type Numbers<'a> = (&'a mut WasiCtx, &'a mut FdNumbers, &'a mut HostState);

fn with_numbers<T, R>(
    caller: &mut Caller<'_, T>,
    get: fn(&mut T) -> Numbers<'_>,
    f: impl FnOnce(Numbers<'_>, &mut GuestMemory<'_>) -> R,
) -> Result<R, wasmi::Error> {
    let (data, state) = memory_and_state(caller)?;
    Ok(f(get(state), &mut GuestMemory::Unshared(data)))
}

fn memory_and_state<'a, T>(
    caller: &'a mut Caller<'_, T>,
) -> Result<(&'a mut [u8], &'a mut T), wasmi::Error> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Err(wasmi::Error::new("missing required WASI memory export"));
    };
    Ok(memory.data_and_store_mut(caller))
}

/// Moves the fd `path_open` just wrote at `out` to wasmtime's number for
/// it, and writes that number there instead.
fn renumber_opened(
    ctx: &mut WasiCtx,
    fds: &mut FdNumbers,
    mem: &mut GuestMemory<'_>,
    out: i32,
) -> Result<i32, wasmi::Error> {
    let trap = |e: &dyn std::fmt::Display| wasmi::Error::new(e.to_string());
    let at = GuestPtr::<u32>::new(out as u32);
    let got = mem.read(at).map_err(|e| trap(&e))?;
    let fd = fds.opened(ctx, got).map_err(|e| trap(&e))?;
    mem.write(at, fd).map_err(|e| trap(&e))?;
    Ok(0)
}

mod answers;
mod fds;
#[cfg(test)]
mod numbers_tests;
#[cfg(test)]
mod tests;
