//! The disk quota for the JIT: wasmtime-wasi has no trait objects to wrap,
//! so the write-ish preview 1 functions are shadowed on the linker by ours,
//! which charge the run's [`Quota`] and then call wasmtime-wasi's own
//! implementation (the functions wiggle generates for it, on the run's
//! `WasiP1Ctx`). The size, cursor and append flag of the file come from
//! the same context, without touching guest memory.
//!
//! Only regular files are charged (stdout and stderr have their own caps);
//! read-only preopens cannot be written at all, so every file a guest can
//! write is in a writable preopen.

use wasmtime::{AsContextMut, Caller, Extern, Linker};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::types::{Fd, Fdflags, Filetype, Lookupflags};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1};
use wasmtime_wasi::runtime::in_tokio;
use wiggle::{GuestMemory, GuestPtr};

use crate::runtime::quota::{DISK_LIMIT, Quota, growth};

const MODULE: &str = "wasi_snapshot_preview1";
/// `oflags::creat` and `oflags::trunc` of preview 1.
const O_CREAT: i32 = 1;
const O_TRUNC: i32 = 8;
/// `lookupflags::symlink_follow`.
const FOLLOW: i32 = 1;

type Result<T> = wasmtime::Result<T>;

fn refused() -> wasmtime::Error {
    wasmtime::Error::msg(DISK_LIMIT)
}

/// Where a run's store data keeps its WASI context and quota.
pub(super) type Parts<T> = fn(&mut T) -> (&mut WasiP1Ctx, &Quota);

/// Runs `f` on the run's WASI context, quota and guest memory.
fn with<T, R>(
    caller: &mut Caller<'_, T>,
    parts: Parts<T>,
    f: impl FnOnce(&mut WasiP1Ctx, &Quota, &mut [u8]) -> Result<R>,
) -> Result<R> {
    let memory = match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => memory,
        _ => return Err(wasmtime::Error::msg("the module exports no memory")),
    };
    // As wasmtime-wasi's own entry points do: the call may read as much
    // guest data as the store allows a host call.
    let fuel = caller.as_context_mut().hostcall_fuel();
    let (bytes, state) = memory.data_and_store_mut(caller);
    let (wasi, quota) = parts(state);
    wasi.set_hostcall_fuel(fuel);
    f(wasi, quota, bytes)
}

fn fd(raw: i32) -> Fd {
    Fd::from(raw.cast_unsigned())
}

fn read_u32(bytes: &[u8], at: u64) -> Option<u32> {
    let at = usize::try_from(at).ok()?;
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(word.try_into().ok()?))
}

/// The bytes an iovec array asks to write (0 if it is out of bounds: the
/// call itself then fails).
fn iovec_total(bytes: &[u8], iovs: i32, count: i32) -> u64 {
    let base = u64::from(iovs.cast_unsigned());
    (0..u64::from(count.cast_unsigned()))
        .map(|i| read_u32(bytes, base + 8 * i + 4).map_or(0, u64::from))
        .sum()
}

/// A regular file's size, or `None` for anything else.
fn file_size(wasi: &mut WasiP1Ctx, bytes: &mut [u8], raw: i32) -> Option<u64> {
    let mut memory = GuestMemory::Unshared(bytes);
    let stat = in_tokio(wasi.fd_filestat_get(&mut memory, fd(raw))).ok()?;
    (stat.filetype == Filetype::RegularFile).then_some(stat.size)
}

/// A write of `len` bytes at `at` (the cursor when `None`): charged before,
/// given back after for what it did not add.
fn write<T>(
    caller: &mut Caller<'_, T>,
    parts: Parts<T>,
    raw: i32,
    at: Option<u64>,
    (iovs, count, written): (i32, i32, i32),
    call: impl FnOnce(&mut WasiP1Ctx, &mut GuestMemory<'_>) -> Result<i32>,
) -> Result<i32> {
    with(caller, parts, |wasi, quota, bytes| {
        // No writable preopen (a pass-through task): nothing to charge, and
        // no look-up of the fd's size on every print.
        if !quota.watching() {
            return call(wasi, &mut GuestMemory::Unshared(bytes));
        }
        let len = iovec_total(bytes, iovs, count);
        let Some(size) = file_size(wasi, bytes, raw) else {
            return call(wasi, &mut GuestMemory::Unshared(bytes));
        };
        let start = match at {
            Some(offset) => offset,
            None => {
                let mut memory = GuestMemory::Unshared(&mut *bytes);
                let append = in_tokio(wasi.fd_fdstat_get(&mut memory, fd(raw)))
                    .is_ok_and(|s| s.fs_flags.contains(Fdflags::APPEND));
                match append {
                    true => size,
                    false => wasi.fd_tell(&mut memory, fd(raw)).unwrap_or(size),
                }
            }
        };
        let charged = growth(size, start, len);
        quota.charge_bytes(charged).map_err(|_| refused())?;
        let errno = call(wasi, &mut GuestMemory::Unshared(&mut *bytes));
        let added = match errno {
            Ok(0) => read_u32(bytes, u64::from(written.cast_unsigned()))
                .map_or(charged, |n| growth(size, start, u64::from(n))),
            _ => 0,
        };
        quota.credit_bytes(charged - added.min(charged));
        errno
    })
}

/// A call that creates one entry: charged before, given back if it failed.
fn creating<T>(
    caller: &mut Caller<'_, T>,
    parts: Parts<T>,
    call: impl FnOnce(&mut WasiP1Ctx, &mut GuestMemory<'_>) -> Result<i32>,
) -> Result<i32> {
    with(caller, parts, |wasi, quota, bytes| {
        quota.charge_file().map_err(|_| refused())?;
        let errno = call(wasi, &mut GuestMemory::Unshared(bytes));
        if !matches!(errno, Ok(0)) {
            quota.credit_file();
        }
        errno
    })
}

/// Size and link count of `path` under `dir`, if it exists.
fn path_stat(
    wasi: &mut WasiP1Ctx,
    bytes: &mut [u8],
    dir: i32,
    follow: bool,
    (path, len): (i32, i32),
) -> Option<(u64, u64)> {
    let flags = match follow {
        true => Lookupflags::SYMLINK_FOLLOW,
        false => Lookupflags::empty(),
    };
    let path = GuestPtr::<str>::new((path.cast_unsigned(), len.cast_unsigned()));
    let mut memory = GuestMemory::Unshared(bytes);
    let stat = in_tokio(wasi.path_filestat_get(&mut memory, fd(dir), flags, path)).ok()?;
    Some((stat.size, stat.nlink))
}

/// Shadows the write-ish preview 1 functions of `linker` (which already
/// holds wasmtime-wasi's) with ones that charge the run's quota.
pub(super) fn shadow<T: 'static>(linker: &mut Linker<T>, parts: Parts<T>) -> Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        MODULE,
        "fd_write",
        move |mut c: Caller<'_, T>, f: i32, iovs: i32, n: i32, out: i32| {
            write(&mut c, parts, f, None, (iovs, n, out), |w, m| {
                in_tokio(p1::fd_write(w, m, f, iovs, n, out))
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_pwrite",
        move |mut c: Caller<'_, T>, f: i32, iovs: i32, n: i32, at: i64, out: i32| {
            let offset = Some(at.cast_unsigned());
            write(&mut c, parts, f, offset, (iovs, n, out), |w, m| {
                in_tokio(p1::fd_pwrite(w, m, f, iovs, n, at, out))
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_filestat_set_size",
        move |mut c: Caller<'_, T>, f: i32, size: i64| {
            with(&mut c, parts, |wasi, quota, bytes| {
                let new = size.cast_unsigned();
                let old = file_size(wasi, bytes, f);
                let grow = old.map_or(0, |old| new.saturating_sub(old));
                quota.charge_bytes(grow).map_err(|_| refused())?;
                let mut memory = GuestMemory::Unshared(bytes);
                let errno = in_tokio(p1::fd_filestat_set_size(wasi, &mut memory, f, size));
                match (&errno, old) {
                    (Ok(0), Some(old)) => quota.credit_bytes(old.saturating_sub(new)),
                    _ => quota.credit_bytes(grow),
                }
                errno
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_open",
        move |mut c: Caller<'_, T>,
              dir: i32,
              flags: i32,
              path: i32,
              len: i32,
              oflags: i32,
              base: i64,
              inheriting: i64,
              fdflags: i32,
              out: i32| {
            let before = with(&mut c, parts, |wasi, _, bytes| {
                Ok(path_stat(
                    wasi,
                    bytes,
                    dir,
                    flags & FOLLOW != 0,
                    (path, len),
                ))
            })?;
            let open = |w: &mut WasiP1Ctx, m: &mut GuestMemory<'_>| {
                in_tokio(p1::path_open(
                    w, m, dir, flags, path, len, oflags, base, inheriting, fdflags, out,
                ))
            };
            if oflags & O_CREAT != 0 && before.is_none() {
                return creating(&mut c, parts, open);
            }
            with(&mut c, parts, |wasi, quota, bytes| {
                let errno = open(wasi, &mut GuestMemory::Unshared(bytes));
                if let (Ok(0), Some((size, _))) = (&errno, before)
                    && oflags & O_TRUNC != 0
                {
                    quota.credit_bytes(size);
                }
                errno
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_create_directory",
        move |mut c: Caller<'_, T>, dir: i32, path: i32, len: i32| {
            creating(&mut c, parts, |w, m| {
                in_tokio(p1::path_create_directory(w, m, dir, path, len))
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_symlink",
        move |mut c: Caller<'_, T>, old: i32, old_len: i32, dir: i32, new: i32, len: i32| {
            creating(&mut c, parts, |w, m| {
                in_tokio(p1::path_symlink(w, m, old, old_len, dir, new, len))
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_link",
        move |mut c: Caller<'_, T>,
              old_dir: i32,
              flags: i32,
              old: i32,
              old_len: i32,
              dir: i32,
              new: i32,
              len: i32| {
            creating(&mut c, parts, |w, m| {
                in_tokio(p1::path_link(
                    w, m, old_dir, flags, old, old_len, dir, new, len,
                ))
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_unlink_file",
        move |mut c: Caller<'_, T>, dir: i32, path: i32, len: i32| {
            with(&mut c, parts, |wasi, quota, bytes| {
                let before = path_stat(wasi, bytes, dir, false, (path, len));
                let mut memory = GuestMemory::Unshared(bytes);
                let errno = in_tokio(p1::path_unlink_file(wasi, &mut memory, dir, path, len));
                if let (Ok(0), Some((size, links))) = (&errno, before) {
                    quota.credit_file();
                    // A file with another link keeps its bytes.
                    if links <= 1 {
                        quota.credit_bytes(size);
                    }
                }
                errno
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_remove_directory",
        move |mut c: Caller<'_, T>, dir: i32, path: i32, len: i32| {
            with(&mut c, parts, |wasi, quota, bytes| {
                let mut memory = GuestMemory::Unshared(bytes);
                let errno = in_tokio(p1::path_remove_directory(wasi, &mut memory, dir, path, len));
                if matches!(errno, Ok(0)) {
                    quota.credit_file();
                }
                errno
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
