//! Read-only preopens for the interpreter. wasmtime-wasi enforces `FsPerms`
//! itself; wasi-common (under wasmi_wasi) has no such setting, so a `ro`
//! directory is wrapped here: every operation that could create, change,
//! rename, link or delete is refused with `EPERM`, including through files and
//! subdirectories opened from it.

use std::any::Any;
use std::io::{IoSliceMut, SeekFrom};
use std::path::PathBuf;

use wasmi_wasi::wasi_common::dir::{OpenResult, ReaddirCursor, ReaddirEntity, WasiDir};
use wasmi_wasi::wasi_common::file::{Advice, FdFlags, FileType, Filestat, OFlags, WasiFile};
use wasmi_wasi::wasi_common::{Error, ErrorExt, SystemTimeSpec};

/// A directory whose contents the guest may read but not change.
pub(crate) struct ReadOnlyDir(pub(crate) Box<dyn WasiDir>);

fn refused() -> Error {
    Error::perm()
}

#[async_trait::async_trait]
impl WasiDir for ReadOnlyDir {
    fn as_any(&self) -> &dyn Any {
        self
    }

    async fn open_file(
        &self,
        symlink_follow: bool,
        path: &str,
        oflags: OFlags,
        read: bool,
        write: bool,
        fdflags: FdFlags,
    ) -> Result<OpenResult, Error> {
        // O_TRUNC truncates even a file opened for reading, so it is refused
        // with the flags that create or write.
        if write
            || oflags.intersects(OFlags::CREATE | OFlags::EXCLUSIVE | OFlags::TRUNCATE)
            || fdflags.intersects(FdFlags::APPEND)
        {
            return Err(refused());
        }
        match self
            .0
            .open_file(symlink_follow, path, oflags, read, false, fdflags)
            .await?
        {
            OpenResult::File(file) => Ok(OpenResult::File(Box::new(ReadOnlyFile(file)))),
            OpenResult::Dir(dir) => Ok(OpenResult::Dir(Box::new(ReadOnlyDir(dir)))),
        }
    }

    async fn create_dir(&self, _path: &str) -> Result<(), Error> {
        Err(refused())
    }

    async fn readdir(
        &self,
        cursor: ReaddirCursor,
    ) -> Result<Box<dyn Iterator<Item = Result<ReaddirEntity, Error>> + Send>, Error> {
        self.0.readdir(cursor).await
    }

    async fn symlink(&self, _old_path: &str, _new_path: &str) -> Result<(), Error> {
        Err(refused())
    }

    async fn remove_dir(&self, _path: &str) -> Result<(), Error> {
        Err(refused())
    }

    async fn unlink_file(&self, _path: &str) -> Result<(), Error> {
        Err(refused())
    }

    async fn read_link(&self, path: &str) -> Result<PathBuf, Error> {
        self.0.read_link(path).await
    }

    async fn get_filestat(&self) -> Result<Filestat, Error> {
        self.0.get_filestat().await
    }

    async fn get_path_filestat(
        &self,
        path: &str,
        follow_symlinks: bool,
    ) -> Result<Filestat, Error> {
        self.0.get_path_filestat(path, follow_symlinks).await
    }

    async fn rename(
        &self,
        _path: &str,
        _dest_dir: &dyn WasiDir,
        _dest_path: &str,
    ) -> Result<(), Error> {
        Err(refused())
    }

    async fn hard_link(
        &self,
        _path: &str,
        _target_dir: &dyn WasiDir,
        _target_path: &str,
    ) -> Result<(), Error> {
        // A hard link into a writable directory would make this file writable.
        Err(refused())
    }

    async fn set_times(
        &self,
        _path: &str,
        _atime: Option<SystemTimeSpec>,
        _mtime: Option<SystemTimeSpec>,
        _follow_symlinks: bool,
    ) -> Result<(), Error> {
        Err(refused())
    }
}

/// A file opened from a read-only directory.
struct ReadOnlyFile(Box<dyn WasiFile>);

#[async_trait::async_trait]
impl WasiFile for ReadOnlyFile {
    fn as_any(&self) -> &dyn Any {
        self
    }

    async fn get_filetype(&self) -> Result<FileType, Error> {
        self.0.get_filetype().await
    }

    fn pollable(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.0.pollable()
    }

    fn isatty(&self) -> bool {
        self.0.isatty()
    }

    async fn get_fdflags(&self) -> Result<FdFlags, Error> {
        self.0.get_fdflags().await
    }

    async fn get_filestat(&self) -> Result<Filestat, Error> {
        self.0.get_filestat().await
    }

    async fn set_filestat_size(&self, _size: u64) -> Result<(), Error> {
        Err(refused())
    }

    async fn advise(&self, offset: u64, len: u64, advice: Advice) -> Result<(), Error> {
        self.0.advise(offset, len, advice).await
    }

    async fn set_times(
        &self,
        _atime: Option<SystemTimeSpec>,
        _mtime: Option<SystemTimeSpec>,
    ) -> Result<(), Error> {
        Err(refused())
    }

    async fn read_vectored<'a>(&self, bufs: &mut [IoSliceMut<'a>]) -> Result<u64, Error> {
        self.0.read_vectored(bufs).await
    }

    async fn read_vectored_at<'a>(
        &self,
        bufs: &mut [IoSliceMut<'a>],
        offset: u64,
    ) -> Result<u64, Error> {
        self.0.read_vectored_at(bufs, offset).await
    }

    async fn seek(&self, pos: SeekFrom) -> Result<u64, Error> {
        self.0.seek(pos).await
    }

    async fn peek(&self, buf: &mut [u8]) -> Result<u64, Error> {
        self.0.peek(buf).await
    }

    fn num_ready_bytes(&self) -> Result<u64, Error> {
        self.0.num_ready_bytes()
    }

    async fn readable(&self) -> Result<(), Error> {
        self.0.readable().await
    }
}
