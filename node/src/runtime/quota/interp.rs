//! The disk quota for the interpreter: wasi-common (under wasmi_wasi) has
//! no hook for it, so each writable preopen is wrapped, and with it every
//! file and subdirectory opened from it. Creates and writes are charged
//! before they are performed; a refused one traps.

use std::any::Any;
use std::io::{IoSlice, IoSliceMut, SeekFrom};
use std::path::PathBuf;

use wasmi_wasi::wasi_common::dir::{OpenResult, ReaddirCursor, ReaddirEntity, WasiDir};
use wasmi_wasi::wasi_common::file::{Advice, FdFlags, FileType, Filestat, OFlags, WasiFile};
use wasmi_wasi::wasi_common::{Error, SystemTimeSpec};

use super::{Exceeded, Quota, growth};

/// A writable directory whose growth is charged to a run's quota.
pub(crate) struct QuotaDir {
    inner: Box<dyn WasiDir>,
    quota: Quota,
}

impl QuotaDir {
    /// Wraps a writable preopen.
    pub(crate) fn new(inner: Box<dyn WasiDir>, quota: Quota) -> Self {
        Self { inner, quota }
    }
}

fn trap(_: Exceeded) -> Error {
    Error::trap(anyhow::Error::msg(super::DISK_LIMIT))
}

/// The directory a wrapped one stands for: wasi-common's own `rename` and
/// `hard_link` accept only their own type as the other directory.
fn unwrap_dir(dir: &dyn WasiDir) -> &dyn WasiDir {
    match dir.as_any().downcast_ref::<QuotaDir>() {
        Some(wrapped) => &*wrapped.inner,
        None => dir,
    }
}

impl QuotaDir {
    /// Runs a call that creates one entry, charged first and given back if
    /// it failed.
    async fn creating<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        self.quota.charge_file().map_err(trap)?;
        let result = call.await;
        if result.is_err() {
            self.quota.credit_file();
        }
        result
    }
}

#[async_trait::async_trait]
impl WasiDir for QuotaDir {
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
        let before = self
            .inner
            .get_path_filestat(path, symlink_follow)
            .await
            .ok();
        let open = self
            .inner
            .open_file(symlink_follow, path, oflags, read, write, fdflags);
        let opened = if oflags.contains(OFlags::CREATE) && before.is_none() {
            self.creating(open).await?
        } else {
            let opened = open.await?;
            if let Some(stat) = before.filter(|_| oflags.contains(OFlags::TRUNCATE)) {
                self.quota.credit_bytes(stat.size);
            }
            opened
        };
        let quota = self.quota.clone();
        Ok(match opened {
            OpenResult::File(inner) => OpenResult::File(Box::new(QuotaFile { inner, quota })),
            OpenResult::Dir(inner) => OpenResult::Dir(Box::new(QuotaDir { inner, quota })),
        })
    }

    async fn create_dir(&self, path: &str) -> Result<(), Error> {
        self.creating(self.inner.create_dir(path)).await
    }

    async fn readdir(
        &self,
        cursor: ReaddirCursor,
    ) -> Result<Box<dyn Iterator<Item = Result<ReaddirEntity, Error>> + Send>, Error> {
        self.inner.readdir(cursor).await
    }

    async fn symlink(&self, old_path: &str, new_path: &str) -> Result<(), Error> {
        self.creating(self.inner.symlink(old_path, new_path)).await
    }

    async fn remove_dir(&self, path: &str) -> Result<(), Error> {
        self.inner.remove_dir(path).await?;
        self.quota.credit_file();
        Ok(())
    }

    async fn unlink_file(&self, path: &str) -> Result<(), Error> {
        let stat = self.inner.get_path_filestat(path, false).await.ok();
        self.inner.unlink_file(path).await?;
        self.quota.credit_file();
        // A file with another link keeps its bytes.
        if let Some(stat) = stat.filter(|s| s.nlink <= 1) {
            self.quota.credit_bytes(stat.size);
        }
        Ok(())
    }

    async fn read_link(&self, path: &str) -> Result<PathBuf, Error> {
        self.inner.read_link(path).await
    }

    async fn get_filestat(&self) -> Result<Filestat, Error> {
        self.inner.get_filestat().await
    }

    async fn get_path_filestat(
        &self,
        path: &str,
        follow_symlinks: bool,
    ) -> Result<Filestat, Error> {
        self.inner.get_path_filestat(path, follow_symlinks).await
    }

    async fn rename(
        &self,
        path: &str,
        dest_dir: &dyn WasiDir,
        dest_path: &str,
    ) -> Result<(), Error> {
        self.inner
            .rename(path, unwrap_dir(dest_dir), dest_path)
            .await
    }

    async fn hard_link(
        &self,
        path: &str,
        target_dir: &dyn WasiDir,
        target_path: &str,
    ) -> Result<(), Error> {
        self.creating(
            self.inner
                .hard_link(path, unwrap_dir(target_dir), target_path),
        )
        .await
    }

    async fn set_times(
        &self,
        path: &str,
        atime: Option<SystemTimeSpec>,
        mtime: Option<SystemTimeSpec>,
        follow_symlinks: bool,
    ) -> Result<(), Error> {
        self.inner
            .set_times(path, atime, mtime, follow_symlinks)
            .await
    }
}

/// A file opened from a wrapped directory: its growth is charged.
struct QuotaFile {
    inner: Box<dyn WasiFile>,
    quota: Quota,
}

impl QuotaFile {
    /// Charges a write of `len` bytes at `at` (the cursor when `None`),
    /// runs it, and gives back what a short write did not add.
    async fn write(
        &self,
        at: Option<u64>,
        len: u64,
        call: impl std::future::Future<Output = Result<u64, Error>>,
    ) -> Result<u64, Error> {
        let size = self.inner.get_filestat().await?.size;
        let start = match at {
            Some(offset) => offset,
            None if self.inner.get_fdflags().await?.contains(FdFlags::APPEND) => size,
            None => self.inner.seek(SeekFrom::Current(0)).await?,
        };
        let charged = growth(size, start, len);
        self.quota.charge_bytes(charged).map_err(trap)?;
        let result = call.await;
        let added = match &result {
            Ok(written) => growth(size, start, *written),
            Err(_) => 0,
        };
        self.quota.credit_bytes(charged - added.min(charged));
        result
    }
}

fn total(bufs: &[IoSlice<'_>]) -> u64 {
    bufs.iter().map(|b| b.len() as u64).sum()
}

#[async_trait::async_trait]
impl WasiFile for QuotaFile {
    fn as_any(&self) -> &dyn Any {
        self
    }

    async fn get_filetype(&self) -> Result<FileType, Error> {
        self.inner.get_filetype().await
    }

    fn pollable(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.inner.pollable()
    }

    fn isatty(&self) -> bool {
        self.inner.isatty()
    }

    async fn datasync(&self) -> Result<(), Error> {
        self.inner.datasync().await
    }

    async fn sync(&self) -> Result<(), Error> {
        self.inner.sync().await
    }

    async fn get_fdflags(&self) -> Result<FdFlags, Error> {
        self.inner.get_fdflags().await
    }

    async fn set_fdflags(&mut self, flags: FdFlags) -> Result<(), Error> {
        self.inner.set_fdflags(flags).await
    }

    async fn get_filestat(&self) -> Result<Filestat, Error> {
        self.inner.get_filestat().await
    }

    async fn set_filestat_size(&self, size: u64) -> Result<(), Error> {
        let before = self.inner.get_filestat().await?.size;
        if size > before {
            self.quota.charge_bytes(size - before).map_err(trap)?;
        }
        let result = self.inner.set_filestat_size(size).await;
        match (&result, size > before) {
            (Err(_), true) => self.quota.credit_bytes(size - before),
            (Ok(()), false) => self.quota.credit_bytes(before - size),
            _ => {}
        }
        result
    }

    async fn advise(&self, offset: u64, len: u64, advice: Advice) -> Result<(), Error> {
        self.inner.advise(offset, len, advice).await
    }

    async fn set_times(
        &self,
        atime: Option<SystemTimeSpec>,
        mtime: Option<SystemTimeSpec>,
    ) -> Result<(), Error> {
        self.inner.set_times(atime, mtime).await
    }

    async fn read_vectored<'a>(&self, bufs: &mut [IoSliceMut<'a>]) -> Result<u64, Error> {
        self.inner.read_vectored(bufs).await
    }

    async fn read_vectored_at<'a>(
        &self,
        bufs: &mut [IoSliceMut<'a>],
        offset: u64,
    ) -> Result<u64, Error> {
        self.inner.read_vectored_at(bufs, offset).await
    }

    async fn write_vectored<'a>(&self, bufs: &[IoSlice<'a>]) -> Result<u64, Error> {
        self.write(None, total(bufs), self.inner.write_vectored(bufs))
            .await
    }

    async fn write_vectored_at<'a>(&self, bufs: &[IoSlice<'a>], offset: u64) -> Result<u64, Error> {
        self.write(
            Some(offset),
            total(bufs),
            self.inner.write_vectored_at(bufs, offset),
        )
        .await
    }

    async fn seek(&self, pos: SeekFrom) -> Result<u64, Error> {
        self.inner.seek(pos).await
    }

    async fn peek(&self, buf: &mut [u8]) -> Result<u64, Error> {
        self.inner.peek(buf).await
    }

    fn num_ready_bytes(&self) -> Result<u64, Error> {
        self.inner.num_ready_bytes()
    }

    async fn readable(&self) -> Result<(), Error> {
        self.inner.readable().await
    }

    async fn writable(&self) -> Result<(), Error> {
        self.inner.writable().await
    }
}
