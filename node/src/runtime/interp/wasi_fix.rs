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

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use wasmi::{Caller, Extern, Linker};
use wasmi_wasi::WasiCtx;
use wasmi_wasi::wasi_common::snapshots::preview_1::types::{
    self, Fd, Fdflags, Fdstat, Filetype, Lookupflags, Rights,
};
use wasmi_wasi::wasi_common::snapshots::preview_1::wasi_snapshot_preview1::{
    self as abi, WasiSnapshotPreview1,
};
use wiggle::{GuestMemory, GuestPtr};

use crate::runtime::RuntimeError;

/// The preview 1 errnos these fixes return themselves.
const EBADF: i32 = types::Errno::Badf as i32;
const ENOTDIR: i32 = types::Errno::Notdir as i32;
const EPERM: i32 = types::Errno::Perm as i32;
const ENOTSOCK: i32 = types::Errno::Notsock as i32;
const ESPIPE: i32 = types::Errno::Spipe as i32;

const MODULE: &str = "wasi_snapshot_preview1";

/// Adds the fixes to `linker`, over the wasmi_wasi functions of the same
/// names already in it.
pub(super) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut WasiCtx,
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
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Err(wasmi::Error::new("missing required WASI memory export"));
    };
    let (data, state) = memory.data_and_store_mut(caller);
    let mut mem = GuestMemory::Unshared(data);
    Ok(f(get(state), &mut mem))
}

/// Polls a wasi-common call once: with the sync file system and our own
/// pipes, none of the calls fixed here ever waits.
fn block<F: Future>(future: F) -> Result<F::Output, wasmi::Error> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => Ok(value),
        Poll::Pending => Err(wasmi::Error::new("a WASI call would block")),
    }
}

/// The errno of a delegated wasi-common call; its traps stay traps.
fn done<E: std::fmt::Display>(
    call: impl Future<Output = Result<i32, E>>,
) -> Result<i32, wasmi::Error> {
    block(call)?.map_err(|e| wasmi::Error::new(e.to_string()))
}

/// Which side of stdio an fd is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stdio {
    In,
    Out,
}

/// Whether `fd` is one of stdin, stdout, stderr: fds 0-2 while they hold a
/// stream (a pipe or a terminal), not a file the guest renumbered there.
fn stdio(ctx: &mut WasiCtx, mem: &mut GuestMemory<'_>, fd: i32) -> Option<Stdio> {
    if !(0..=2).contains(&fd) {
        return None;
    }
    let stat = block(ctx.fd_fdstat_get(mem, Fd::from(fd as u32)))
        .ok()?
        .ok()?;
    match stat.fs_filetype {
        Filetype::RegularFile | Filetype::Directory => None,
        _ if fd == 0 => Some(Stdio::In),
        _ => Some(Stdio::Out),
    }
}

/// wasmtime's answer to `sock_*` on anything but a socket (corral gives
/// guests no sockets).
fn not_a_socket(ctx: &WasiCtx, fd: i32) -> i32 {
    if ctx.table().contains_key(fd as u32) {
        ENOTSOCK
    } else {
        EBADF
    }
}

/// wasi-common's answer, then the rights and flags wasmtime reports.
fn fd_fdstat_get(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: i32,
    out: i32,
) -> Result<i32, wasmi::Error> {
    let code = done(abi::fd_fdstat_get(ctx, mem, fd, out))?;
    if code != 0 {
        return Ok(code);
    }
    let ptr = GuestPtr::<Fdstat>::new(out as u32);
    let trap = |e: wiggle::GuestError| wasmi::Error::new(e.to_string());
    let stat = mem.read(ptr).map_err(trap)?;
    let preopen = block(ctx.fd_prestat_get(mem, Fd::from(fd as u32)))?.is_ok();
    let fixed = wasmtime_fdstat(stat, stdio(ctx, mem, fd), preopen);
    mem.write(ptr, fixed).map_err(trap)?;
    Ok(0)
}

/// What wasmtime-wasi's `fd_fdstat_get` says of an fd wasi-common described
/// as `stat`.
fn wasmtime_fdstat(stat: Fdstat, stdio: Option<Stdio>, preopen: bool) -> Fdstat {
    let (filetype, base) = (stat.fs_filetype, stat.fs_rights_base);
    let mut fixed = stat;
    match stdio {
        Some(side) => {
            fixed.fs_flags = Fdflags::empty();
            fixed.fs_rights_base = match side {
                Stdio::In => Rights::FD_READ,
                Stdio::Out => Rights::FD_WRITE,
            };
            fixed.fs_rights_inheriting = fixed.fs_rights_base;
        }
        // wasi-common already reports a preopen's fixed set of rights.
        None if preopen => {}
        None => {
            let mut rights = Rights::all();
            if filetype == Filetype::Directory {
                rights &= !(Rights::FD_SEEK
                    | Rights::FD_FILESTAT_SET_SIZE
                    | Rights::PATH_FILESTAT_SET_SIZE
                    | Rights::FD_WRITE);
            } else {
                if !base.contains(Rights::FD_READ) {
                    rights &= !(Rights::FD_READ | Rights::FD_READDIR);
                }
                if !base.contains(Rights::FD_WRITE) {
                    rights &= !Rights::FD_WRITE;
                }
            }
            fixed.fs_rights_base = rights;
            fixed.fs_rights_inheriting = rights;
        }
    }
    fixed
}

/// wasmtime's EPERM for a rename or link from a writable directory into a
/// read-only one. wasi-common's directory moves an entry only into another
/// directory of its own type; corral's read-only wrapper is not, so it says
/// EBADF though both fds are open directories. (A read-only source already
/// answers EPERM itself.)
fn into_read_only(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    code: i32,
    fd: i32,
    new_fd: i32,
) -> i32 {
    let is_dir = |ctx: &mut WasiCtx, mem: &mut GuestMemory<'_>, fd: i32| {
        matches!(
            block(ctx.fd_fdstat_get(mem, Fd::from(fd as u32))),
            Ok(Ok(stat)) if stat.fs_filetype == Filetype::Directory
        )
    };
    if code == EBADF && fd != new_fd && is_dir(ctx, mem, fd) && is_dir(ctx, mem, new_fd) {
        EPERM
    } else {
        code
    }
}

/// Whether a rename names `old` or `new` with a trailing slash while `old`
/// is not a directory (wasmtime: ENOTDIR; wasi-common drops the slash).
fn slash_on_a_non_directory(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    fd: i32,
    old: (i32, i32),
    new: (i32, i32),
) -> bool {
    let path = |mem: &GuestMemory<'_>, (ptr, len): (i32, i32)| {
        mem.as_cow_str(GuestPtr::<str>::new((ptr as u32, len as u32)))
            .map(|s| s.ends_with('/'))
            .unwrap_or(false)
    };
    if !path(mem, old) && !path(mem, new) {
        return false;
    }
    let (ptr, len) = old;
    let trimmed = {
        // Stat the old name without its slashes and without following a
        // final symlink, as the rename itself would see it.
        let Ok(name) = mem.as_cow_str(GuestPtr::<str>::new((ptr as u32, len as u32))) else {
            return false;
        };
        name.trim_end_matches('/').len() as u32
    };
    if trimmed == 0 {
        return false;
    }
    let stat = block(ctx.path_filestat_get(
        mem,
        Fd::from(fd as u32),
        Lookupflags::empty(),
        GuestPtr::<str>::new((ptr as u32, trimmed)),
    ));
    matches!(stat, Ok(Ok(s)) if s.filetype != Filetype::Directory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(base: Rights) -> Fdstat {
        Fdstat {
            fs_filetype: Filetype::RegularFile,
            fs_flags: Fdflags::APPEND,
            fs_rights_base: base,
            fs_rights_inheriting: Rights::empty(),
        }
    }

    #[test]
    fn a_file_gets_every_right_its_mode_allows() {
        let both = wasmtime_fdstat(file(Rights::FD_READ | Rights::FD_WRITE), None, false);
        assert_eq!(both.fs_rights_base, Rights::all());
        assert_eq!(both.fs_rights_inheriting, Rights::all());
        assert_eq!(both.fs_flags, Fdflags::APPEND);
        let read = wasmtime_fdstat(file(Rights::FD_READ), None, false);
        assert_eq!(read.fs_rights_base, Rights::all() & !Rights::FD_WRITE);
        let write = wasmtime_fdstat(file(Rights::FD_WRITE), None, false);
        assert!(!write.fs_rights_base.contains(Rights::FD_READ));
        assert!(!write.fs_rights_base.contains(Rights::FD_READDIR));
    }

    #[test]
    fn stdio_has_one_right_and_no_flags() {
        let out = wasmtime_fdstat(file(Rights::FD_WRITE), Some(Stdio::Out), false);
        assert_eq!(out.fs_rights_base, Rights::FD_WRITE);
        assert_eq!(out.fs_rights_inheriting, Rights::FD_WRITE);
        assert_eq!(out.fs_flags, Fdflags::empty());
        let input = wasmtime_fdstat(file(Rights::FD_READ), Some(Stdio::In), false);
        assert_eq!(input.fs_rights_base, Rights::FD_READ);
    }

    #[test]
    fn a_preopen_keeps_its_rights() {
        let mut dir = file(Rights::PATH_OPEN);
        dir.fs_filetype = Filetype::Directory;
        assert_eq!(
            wasmtime_fdstat(dir, None, true).fs_rights_base,
            Rights::PATH_OPEN
        );
    }
}
