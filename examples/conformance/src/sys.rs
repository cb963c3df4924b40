//! The WASI preview 1 functions the guests call, imported by hand, with thin
//! safe wrappers that return the host's errno untouched.

use crate::check;

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    #[link_name = "fd_prestat_get"]
    fn raw_prestat_get(fd: u32, out: *mut u32) -> i32;
    #[link_name = "fd_prestat_dir_name"]
    fn raw_prestat_dir_name(fd: u32, buf: *mut u8, len: u32) -> i32;
    #[link_name = "fd_read"]
    fn raw_fd_read_many(fd: u32, iovs: *const Iovec, n: u32, out: *mut u32) -> i32;
    #[link_name = "path_open"]
    fn raw_path_open(
        fd: u32,
        dirflags: u32,
        path: *const u8,
        path_len: u32,
        oflags: u32,
        base: u64,
        inheriting: u64,
        fdflags: u32,
        out: *mut u32,
    ) -> i32;
    #[link_name = "path_symlink"]
    fn raw_path_symlink(old: *const u8, old_len: u32, fd: u32, new: *const u8, new_len: u32)
    -> i32;
    #[link_name = "path_readlink"]
    fn raw_path_readlink(
        fd: u32,
        path: *const u8,
        path_len: u32,
        buf: *mut u8,
        buf_len: u32,
        used: *mut u32,
    ) -> i32;
    #[link_name = "path_rename"]
    fn raw_path_rename(
        fd: u32,
        old: *const u8,
        old_len: u32,
        new_fd: u32,
        new: *const u8,
        new_len: u32,
    ) -> i32;
    #[link_name = "path_link"]
    fn raw_path_link(
        old_fd: u32,
        flags: u32,
        old: *const u8,
        old_len: u32,
        new_fd: u32,
        new: *const u8,
        new_len: u32,
    ) -> i32;
    #[link_name = "path_unlink_file"]
    fn raw_path_unlink_file(fd: u32, path: *const u8, len: u32) -> i32;
    #[link_name = "path_remove_directory"]
    fn raw_path_remove_directory(fd: u32, path: *const u8, len: u32) -> i32;
    #[link_name = "path_create_directory"]
    fn raw_path_create_directory(fd: u32, path: *const u8, len: u32) -> i32;
    #[link_name = "path_filestat_get"]
    fn raw_path_filestat_get(fd: u32, flags: u32, path: *const u8, len: u32, out: *mut u8) -> i32;
    #[link_name = "path_filestat_set_times"]
    fn raw_path_filestat_set_times(
        fd: u32,
        flags: u32,
        path: *const u8,
        len: u32,
        atim: u64,
        mtim: u64,
        fst: u32,
    ) -> i32;
    #[link_name = "fd_read"]
    fn raw_fd_read(fd: u32, iovs: *const Iovec, n: u32, out: *mut u32) -> i32;
    #[link_name = "fd_write"]
    fn raw_fd_write(fd: u32, iovs: *const Iovec, n: u32, out: *mut u32) -> i32;
    #[link_name = "fd_pread"]
    fn raw_fd_pread(fd: u32, iovs: *const Iovec, n: u32, offset: u64, out: *mut u32) -> i32;
    #[link_name = "fd_pwrite"]
    fn raw_fd_pwrite(fd: u32, iovs: *const Iovec, n: u32, offset: u64, out: *mut u32) -> i32;
    #[link_name = "fd_seek"]
    fn raw_fd_seek(fd: u32, offset: i64, whence: u32, out: *mut u64) -> i32;
    #[link_name = "fd_tell"]
    fn raw_fd_tell(fd: u32, out: *mut u64) -> i32;
    #[link_name = "fd_close"]
    fn raw_fd_close(fd: u32) -> i32;
    #[link_name = "fd_filestat_get"]
    fn raw_fd_filestat_get(fd: u32, out: *mut u8) -> i32;
    #[link_name = "fd_filestat_set_size"]
    fn raw_fd_filestat_set_size(fd: u32, size: u64) -> i32;
    #[link_name = "fd_filestat_set_times"]
    fn raw_fd_filestat_set_times(fd: u32, atim: u64, mtim: u64, fst: u32) -> i32;
    #[link_name = "fd_allocate"]
    fn raw_fd_allocate(fd: u32, offset: u64, len: u64) -> i32;
    #[link_name = "fd_fdstat_get"]
    fn raw_fd_fdstat_get(fd: u32, out: *mut u8) -> i32;
    #[link_name = "fd_fdstat_set_flags"]
    fn raw_fd_fdstat_set_flags(fd: u32, flags: u32) -> i32;
    #[link_name = "fd_fdstat_set_rights"]
    fn raw_fd_fdstat_set_rights(fd: u32, base: u64, inheriting: u64) -> i32;
    #[link_name = "fd_renumber"]
    fn raw_fd_renumber(from: u32, to: u32) -> i32;
    #[link_name = "fd_readdir"]
    fn raw_fd_readdir(fd: u32, buf: *mut u8, len: u32, cookie: u64, used: *mut u32) -> i32;
    #[link_name = "fd_sync"]
    fn raw_fd_sync(fd: u32) -> i32;
    #[link_name = "fd_datasync"]
    fn raw_fd_datasync(fd: u32) -> i32;
    #[link_name = "fd_advise"]
    fn raw_fd_advise(fd: u32, offset: u64, len: u64, advice: u32) -> i32;
}

#[repr(C)]
struct Iovec {
    buf: *const u8,
    len: usize,
}

/// `oflags`: create the file.
pub const O_CREAT: u32 = 1;
/// `oflags`: fail unless a directory.
pub const O_DIRECTORY: u32 = 2;
/// `oflags`: fail if it exists.
pub const O_EXCL: u32 = 4;
/// `oflags`: truncate.
pub const O_TRUNC: u32 = 8;
/// `fdflags`: append.
pub const FD_APPEND: u32 = 1;
/// `fdflags`: non-blocking.
pub const FD_NONBLOCK: u32 = 4;
/// `fdflags`: synchronous writes.
pub const FD_SYNC: u32 = 16;
/// `lookupflags`: follow symlinks.
pub const FOLLOW: u32 = 1;
/// Every right.
pub const ALL: u64 = u64::MAX >> 35;
/// Only `fd_read` (and `fd_seek`, `fd_tell`).
pub const READ_ONLY: u64 = 2 | 4 | 32;

/// A file's metadata, without the fields that differ between runs.
#[derive(Debug, Clone, Copy)]
pub struct Filestat {
    /// The file type code.
    pub filetype: u8,
    /// Hard links.
    pub nlink: u64,
    /// Bytes.
    pub size: u64,
    /// Access time, ns.
    pub atim: u64,
    /// Modification time, ns.
    pub mtim: u64,
}

impl Filestat {
    fn from(raw: &[u8; 64]) -> Self {
        let word = |at: usize| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(&raw[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        Self {
            filetype: raw[16],
            nlink: word(24),
            size: word(32),
            atim: word(40),
            mtim: word(48),
        }
    }
}

impl std::fmt::Display for Filestat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A directory's size and link count depend on the host's file system.
        if self.filetype == 3 {
            write!(f, "type=3")
        } else {
            write!(
                f,
                "type={} nlink={} size={}",
                self.filetype, self.nlink, self.size
            )
        }
    }
}

/// An fd's status.
#[derive(Debug, Clone, Copy)]
pub struct Fdstat {
    /// The file type code.
    pub filetype: u8,
    /// Its fdflags.
    pub flags: u16,
    /// Base rights.
    pub base: u64,
    /// Inheriting rights.
    pub inheriting: u64,
}

/// The guest path of preopen `fd`, if it is one.
pub fn prestat_name(fd: u32) -> Option<String> {
    let mut prestat = [0u32; 2];
    if unsafe { raw_prestat_get(fd, prestat.as_mut_ptr()) } != 0 || prestat[0] != 0 {
        return None;
    }
    let mut name = vec![0u8; prestat[1] as usize];
    if unsafe { raw_prestat_dir_name(fd, name.as_mut_ptr(), prestat[1]) } != 0 {
        return None;
    }
    String::from_utf8(name).ok()
}

/// `fd_prestat_dir_name` into a buffer of `len` bytes.
pub fn prestat_dir_name(fd: u32, len: usize) -> Result<String, u16> {
    let mut buf = vec![0u8; len];
    check(unsafe { raw_prestat_dir_name(fd, buf.as_mut_ptr(), len as u32) })?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// `path_readlink` into a buffer of `len` bytes: the bytes it says it used.
pub fn readlink_into(dir: u32, path: &str, len: usize) -> Result<String, u16> {
    let mut buf = vec![0u8; len];
    let mut used = 0;
    check(unsafe {
        raw_path_readlink(
            dir,
            path.as_ptr(),
            path.len() as u32,
            buf.as_mut_ptr(),
            len as u32,
            &mut used,
        )
    })?;
    Ok(format!(
        "used={used} {:?}",
        String::from_utf8_lossy(&buf[..(used as usize).min(len)])
    ))
}

/// `fd_read` into buffers of the given sizes: the bytes read.
pub fn read_many(fd: u32, sizes: &[usize]) -> Result<u32, u16> {
    let mut bufs: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![0u8; n]).collect();
    let iovs: Vec<Iovec> = bufs
        .iter_mut()
        .map(|b| Iovec {
            buf: b.as_mut_ptr(),
            len: b.len(),
        })
        .collect();
    let mut n = 0;
    check(unsafe { raw_fd_read_many(fd, iovs.as_ptr(), iovs.len() as u32, &mut n) })?;
    Ok(n)
}

/// `path_open`.
pub fn open(
    dir: u32,
    follow: u32,
    path: &str,
    oflags: u32,
    rights: u64,
    fdflags: u32,
) -> Result<u32, u16> {
    let mut fd = 0;
    check(unsafe {
        raw_path_open(
            dir,
            follow,
            path.as_ptr(),
            path.len() as u32,
            oflags,
            rights,
            rights,
            fdflags,
            &mut fd,
        )
    })?;
    Ok(fd)
}

/// `path_symlink`.
pub fn symlink(target: &str, dir: u32, path: &str) -> Result<(), u16> {
    check(unsafe {
        raw_path_symlink(
            target.as_ptr(),
            target.len() as u32,
            dir,
            path.as_ptr(),
            path.len() as u32,
        )
    })
}

/// `path_readlink`.
pub fn readlink(dir: u32, path: &str) -> Result<String, u16> {
    let mut buf = [0u8; 256];
    let mut used = 0;
    check(unsafe {
        raw_path_readlink(
            dir,
            path.as_ptr(),
            path.len() as u32,
            buf.as_mut_ptr(),
            256,
            &mut used,
        )
    })?;
    Ok(String::from_utf8_lossy(&buf[..used as usize]).into_owned())
}

/// `path_rename`.
pub fn rename(dir: u32, old: &str, new_dir: u32, new: &str) -> Result<(), u16> {
    check(unsafe {
        raw_path_rename(
            dir,
            old.as_ptr(),
            old.len() as u32,
            new_dir,
            new.as_ptr(),
            new.len() as u32,
        )
    })
}

/// `path_link`.
pub fn link(dir: u32, flags: u32, old: &str, new_dir: u32, new: &str) -> Result<(), u16> {
    check(unsafe {
        raw_path_link(
            dir,
            flags,
            old.as_ptr(),
            old.len() as u32,
            new_dir,
            new.as_ptr(),
            new.len() as u32,
        )
    })
}

/// `path_unlink_file`.
pub fn unlink(dir: u32, path: &str) -> Result<(), u16> {
    check(unsafe { raw_path_unlink_file(dir, path.as_ptr(), path.len() as u32) })
}

/// `path_remove_directory`.
pub fn rmdir(dir: u32, path: &str) -> Result<(), u16> {
    check(unsafe { raw_path_remove_directory(dir, path.as_ptr(), path.len() as u32) })
}

/// `path_create_directory`.
pub fn mkdir(dir: u32, path: &str) -> Result<(), u16> {
    check(unsafe { raw_path_create_directory(dir, path.as_ptr(), path.len() as u32) })
}

/// `path_filestat_get`.
pub fn stat(dir: u32, follow: u32, path: &str) -> Result<Filestat, u16> {
    let mut raw = [0u8; 64];
    check(unsafe {
        raw_path_filestat_get(
            dir,
            follow,
            path.as_ptr(),
            path.len() as u32,
            raw.as_mut_ptr(),
        )
    })?;
    Ok(Filestat::from(&raw))
}

/// `path_filestat_set_times`.
pub fn set_times_at(
    dir: u32,
    follow: u32,
    path: &str,
    atim: u64,
    mtim: u64,
    fst: u32,
) -> Result<(), u16> {
    check(unsafe {
        raw_path_filestat_set_times(
            dir,
            follow,
            path.as_ptr(),
            path.len() as u32,
            atim,
            mtim,
            fst,
        )
    })
}

/// `fd_read` into one buffer.
pub fn read(fd: u32, len: usize) -> Result<Vec<u8>, u16> {
    let mut buf = vec![0u8; len];
    let iov = Iovec {
        buf: buf.as_mut_ptr(),
        len,
    };
    let mut n = 0;
    check(unsafe { raw_fd_read(fd, &iov, 1, &mut n) })?;
    buf.truncate(n as usize);
    Ok(buf)
}

/// `fd_write` of one buffer.
pub fn write(fd: u32, data: &[u8]) -> Result<u32, u16> {
    let iov = Iovec {
        buf: data.as_ptr(),
        len: data.len(),
    };
    let mut n = 0;
    check(unsafe { raw_fd_write(fd, &iov, 1, &mut n) })?;
    Ok(n)
}

/// `fd_pread` into one buffer.
pub fn pread(fd: u32, len: usize, offset: u64) -> Result<Vec<u8>, u16> {
    let mut buf = vec![0u8; len];
    let iov = Iovec {
        buf: buf.as_mut_ptr(),
        len,
    };
    let mut n = 0;
    check(unsafe { raw_fd_pread(fd, &iov, 1, offset, &mut n) })?;
    buf.truncate(n as usize);
    Ok(buf)
}

/// `fd_pwrite` of one buffer.
pub fn pwrite(fd: u32, data: &[u8], offset: u64) -> Result<u32, u16> {
    let iov = Iovec {
        buf: data.as_ptr(),
        len: data.len(),
    };
    let mut n = 0;
    check(unsafe { raw_fd_pwrite(fd, &iov, 1, offset, &mut n) })?;
    Ok(n)
}

/// `fd_seek`; whence 0 set, 1 cur, 2 end.
pub fn seek(fd: u32, offset: i64, whence: u32) -> Result<u64, u16> {
    let mut at = 0;
    check(unsafe { raw_fd_seek(fd, offset, whence, &mut at) })?;
    Ok(at)
}

/// `fd_tell`.
pub fn tell(fd: u32) -> Result<u64, u16> {
    let mut at = 0;
    check(unsafe { raw_fd_tell(fd, &mut at) })?;
    Ok(at)
}

/// `fd_close`.
pub fn close(fd: u32) -> Result<(), u16> {
    check(unsafe { raw_fd_close(fd) })
}

/// `fd_filestat_get`.
pub fn fstat(fd: u32) -> Result<Filestat, u16> {
    let mut raw = [0u8; 64];
    check(unsafe { raw_fd_filestat_get(fd, raw.as_mut_ptr()) })?;
    Ok(Filestat::from(&raw))
}

/// `fd_filestat_set_size`.
pub fn set_size(fd: u32, size: u64) -> Result<(), u16> {
    check(unsafe { raw_fd_filestat_set_size(fd, size) })
}

/// `fd_filestat_set_times`.
pub fn set_times(fd: u32, atim: u64, mtim: u64, fst: u32) -> Result<(), u16> {
    check(unsafe { raw_fd_filestat_set_times(fd, atim, mtim, fst) })
}

/// `fd_allocate`.
pub fn allocate(fd: u32, offset: u64, len: u64) -> Result<(), u16> {
    check(unsafe { raw_fd_allocate(fd, offset, len) })
}

/// `fd_fdstat_get`.
pub fn fdstat(fd: u32) -> Result<Fdstat, u16> {
    let mut raw = [0u8; 24];
    check(unsafe { raw_fd_fdstat_get(fd, raw.as_mut_ptr()) })?;
    let word = |at: usize| {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&raw[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    Ok(Fdstat {
        filetype: raw[0],
        flags: u16::from_le_bytes([raw[2], raw[3]]),
        base: word(8),
        inheriting: word(16),
    })
}

/// `fd_fdstat_set_flags`.
pub fn set_flags(fd: u32, flags: u32) -> Result<(), u16> {
    check(unsafe { raw_fd_fdstat_set_flags(fd, flags) })
}

/// `fd_fdstat_set_rights`.
pub fn set_rights(fd: u32, base: u64, inheriting: u64) -> Result<(), u16> {
    check(unsafe { raw_fd_fdstat_set_rights(fd, base, inheriting) })
}

/// `fd_renumber`.
pub fn renumber(from: u32, to: u32) -> Result<(), u16> {
    check(unsafe { raw_fd_renumber(from, to) })
}

/// `fd_readdir` into `buf` from `cookie`; the bytes used.
pub fn readdir(fd: u32, buf: &mut [u8], cookie: u64) -> Result<usize, u16> {
    let mut used = 0;
    check(unsafe { raw_fd_readdir(fd, buf.as_mut_ptr(), buf.len() as u32, cookie, &mut used) })?;
    Ok(used as usize)
}

/// `fd_sync`.
pub fn sync(fd: u32) -> Result<(), u16> {
    check(unsafe { raw_fd_sync(fd) })
}

/// `fd_datasync`.
pub fn datasync(fd: u32) -> Result<(), u16> {
    check(unsafe { raw_fd_datasync(fd) })
}

/// `fd_advise`.
pub fn advise(fd: u32, offset: u64, len: u64, advice: u32) -> Result<(), u16> {
    check(unsafe { raw_fd_advise(fd, offset, len, advice) })
}
