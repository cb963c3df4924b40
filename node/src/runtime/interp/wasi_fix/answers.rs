//! What wasmtime-wasi answers where wasi-common answers otherwise: the
//! decisions behind the interpreter's preview 1 fixes (wasi_fix.rs registers
//! them).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use wasmi_wasi::WasiCtx;
use wasmi_wasi::wasi_common::snapshots::preview_1::types::{
    self, Fd, Fdflags, Fdstat, Filetype, Lookupflags, Rights,
};
use wasmi_wasi::wasi_common::snapshots::preview_1::wasi_snapshot_preview1::{
    self as abi, WasiSnapshotPreview1,
};
use wiggle_wasi_common::{GuestMemory, GuestPtr};

/// The preview 1 errnos these fixes return themselves.
pub(super) const EBADF: i32 = types::Errno::Badf as i32;
pub(super) const ENOTDIR: i32 = types::Errno::Notdir as i32;
pub(super) const EPERM: i32 = types::Errno::Perm as i32;
pub(super) const EINVAL: i32 = types::Errno::Inval as i32;
pub(super) const EISDIR: i32 = types::Errno::Isdir as i32;
pub(super) const ENOTSUP: i32 = types::Errno::Notsup as i32;
pub(super) const ENOTSOCK: i32 = types::Errno::Notsock as i32;
pub(super) const ESPIPE: i32 = types::Errno::Spipe as i32;

/// Which side of stdio an fd is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stdio {
    /// fd 0.
    In,
    /// fds 1 and 2.
    Out,
}

/// Whether `fd` is one of stdin, stdout, stderr: fds 0-2 while they hold a
/// stream (a pipe or a terminal), not a file the guest renumbered there.
pub(super) fn stdio(ctx: &mut WasiCtx, mem: &mut GuestMemory<'_>, fd: i32) -> Option<Stdio> {
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
pub(super) fn not_a_socket(ctx: &WasiCtx, fd: i32) -> i32 {
    if ctx.table().contains_key(fd as u32) {
        ENOTSOCK
    } else {
        EBADF
    }
}

/// wasi-common's answer, then the rights and flags wasmtime reports.
pub(super) fn fd_fdstat_get(
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
    let trap = |e: wiggle_wasi_common::GuestError| wasmi::Error::new(e.to_string());
    let stat = mem.read(ptr).map_err(trap)?;
    let preopen = block(ctx.fd_prestat_get(mem, Fd::from(fd as u32)))?.is_ok();
    let fixed = wasmtime_fdstat(stat, stdio(ctx, mem, fd), preopen);
    mem.write(ptr, fixed).map_err(trap)?;
    Ok(0)
}

/// What wasmtime-wasi's `fd_fdstat_get` says of an fd wasi-common described
/// as `stat`.
pub(super) fn wasmtime_fdstat(stat: Fdstat, stdio: Option<Stdio>, preopen: bool) -> Fdstat {
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

/// The rights `path_open` passes to wasi-common: wasmtime opens a file asked
/// for with neither fd_read nor fd_write for reading (the host needs one
/// mode), and reads and fdstat then work as for a read-only open.
pub(super) fn readable_by_default(base: i64) -> i64 {
    let read = Rights::FD_READ.bits() as i64;
    let write = Rights::FD_WRITE.bits() as i64;
    if base & (read | write) == 0 {
        base | read
    } else {
        base
    }
}

/// wasmtime's answer to `path_open` with O_TRUNC but without the right to
/// write, where wasi-common (through std's OpenOptions) refuses every such
/// open with EINVAL before looking at the path: wasmtime opens the file,
/// truncated, with the rights asked for, or answers as the path is (ENOENT,
/// EPERM, ..., EISDIR for a directory). A file is truncated by an open with
/// the write right, closed, then opened again without O_TRUNC: the guest
/// gets an fd without the write right, as under wasmtime. (Only a writable
/// directory gets here: a read-only one refuses O_TRUNC with EPERM first.)
pub(super) fn truncate_read_only(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    code: i32,
    (fd, dirflags, path, path_len): (i32, i32, i32, i32),
    (oflags, base, inheriting, fdflags, out): (i32, i64, i64, i32, i32),
) -> Result<i32, wasmi::Error> {
    const O_DIRECTORY: i32 = 2;
    const O_TRUNC: i32 = 8;
    let write = Rights::FD_WRITE.bits() as i64;
    if code != EINVAL || oflags & O_TRUNC == 0 || oflags & O_DIRECTORY != 0 || base & write != 0 {
        return Ok(code);
    }
    let follow = Lookupflags::from_bits_truncate(dirflags as u32);
    let name = GuestPtr::<str>::new((path as u32, path_len as u32));
    match block(ctx.path_filestat_get(mem, Fd::from(fd as u32), follow, name))? {
        Ok(stat) if stat.filetype == Filetype::Directory => Ok(EISDIR),
        Ok(_) => {
            let open = |ctx: &mut WasiCtx, mem: &mut GuestMemory<'_>, oflags: i32, base: i64| {
                done(abi::path_open(
                    ctx, mem, fd, dirflags, path, path_len, oflags, base, inheriting, fdflags, out,
                ))
            };
            let code = open(ctx, mem, oflags, base | write)?;
            if code != 0 {
                return Ok(code);
            }
            let truncated = mem
                .read(GuestPtr::<u32>::new(out as u32))
                .map_err(|e| wasmi::Error::new(e.to_string()))?;
            let _ = block(ctx.fd_close(mem, Fd::from(truncated)))?;
            open(ctx, mem, oflags & !O_TRUNC, base)
        }
        Err(error) => Ok(error
            .downcast_ref()
            .map_or(code, |errno: &types::Errno| *errno as i32)),
    }
}

/// wasmtime opens a file with O_TRUNC and the APPEND flag together
/// (truncate, then append); wasi-common's open options refuse the pair
/// (EINVAL). Opened without APPEND, then APPEND set on the open file.
pub(super) fn append_after_truncate(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    code: i32,
    (fd, dirflags, path, path_len): (i32, i32, i32, i32),
    (oflags, base, inheriting, fdflags, out): (i32, i64, i64, i32, i32),
) -> Result<i32, wasmi::Error> {
    const O_TRUNC: i32 = 8;
    let append = Fdflags::APPEND.bits() as i32;
    if code != EINVAL || oflags & O_TRUNC == 0 || fdflags & append == 0 {
        return Ok(code);
    }
    let code = done(abi::path_open(
        ctx,
        mem,
        fd,
        dirflags,
        path,
        path_len,
        oflags,
        base,
        inheriting,
        fdflags & !append,
        out,
    ))?;
    if code != 0 {
        return Ok(code);
    }
    let opened = mem
        .read(GuestPtr::<u32>::new(out as u32))
        .map_err(|e| wasmi::Error::new(e.to_string()))?;
    let flags = Fdflags::from_bits_truncate(fdflags as u16);
    match block(ctx.fd_fdstat_set_flags(mem, Fd::from(opened), flags))? {
        Ok(()) => Ok(0),
        Err(error) => {
            let _ = block(ctx.fd_close(mem, Fd::from(opened)))?;
            Ok(error
                .downcast_ref()
                .map_or(EINVAL, |errno: &types::Errno| *errno as i32))
        }
    }
}

/// wasmtime's EPERM for a rename or link from a writable directory into a
/// read-only one. wasi-common's directory moves an entry only into another
/// directory of its own type; corral's read-only wrapper is not, so it says
/// EBADF though both fds are open directories. (A read-only source already
/// answers EPERM itself.)
pub(super) fn into_read_only(
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
pub(super) fn slash_on_a_non_directory(
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

/// Polls a wasi-common call once: with the sync file system and our own
/// pipes, none of the calls fixed here ever waits.
pub(super) fn block<F: Future>(future: F) -> Result<F::Output, wasmi::Error> {
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
pub(super) fn done<E: std::fmt::Display>(
    call: impl Future<Output = Result<i32, E>>,
) -> Result<i32, wasmi::Error> {
    block(call)?.map_err(|e| wasmi::Error::new(e.to_string()))
}
