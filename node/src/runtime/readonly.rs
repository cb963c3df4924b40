//! Read-only preopens for the interpreter. wasmtime-wasi enforces `FsPerms`
//! itself; wasi-common (under wasmi_wasi) has no such setting, so a `ro`
//! directory is wrapped here: every operation that could create, change,
//! rename, link or delete is refused with `EPERM`, including through files and
//! subdirectories opened from it. The APPEND flag is let through, as
//! wasmtime does: it changes no file by itself, and the writes it would
//! steer are refused anyway.

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
        if write || oflags.intersects(OFlags::CREATE | OFlags::EXCLUSIVE | OFlags::TRUNCATE) {
            return Err(refused());
        }
        // The host opens an APPEND file for writing; the file is opened for
        // reading only and the flag set on that handle afterwards (wasmtime
        // ignores it on a directory).
        let append = fdflags.contains(FdFlags::APPEND);
        let opened = self
            .0
            .open_file(
                symlink_follow,
                path,
                oflags,
                read,
                false,
                fdflags - FdFlags::APPEND,
            )
            .await?;
        match opened {
            OpenResult::File(mut file) => {
                if append {
                    let flags = file.get_fdflags().await? | FdFlags::APPEND;
                    file.set_fdflags(flags).await?;
                }
                Ok(OpenResult::File(Box::new(ReadOnlyFile(file))))
            }
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

    async fn set_fdflags(&mut self, flags: FdFlags) -> Result<(), Error> {
        // APPEND and NONBLOCK only steer reads and writes; the writes stay
        // refused by the handle's read-only mode.
        self.0.set_fdflags(flags).await
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

#[cfg(test)]
mod tests {
    use std::io::IoSlice;

    use futures::executor::block_on;
    use wasmi_wasi::ambient_authority;
    use wasmi_wasi::wasi_common::dir::{OpenResult, WasiDir};
    use wasmi_wasi::wasi_common::file::{FdFlags, OFlags, WasiFile};

    use super::ReadOnlyDir;

    fn read_only(dir: &std::path::Path) -> ReadOnlyDir {
        let dir = wasmi_wasi::Dir::open_ambient_dir(dir, ambient_authority()).expect("open dir");
        ReadOnlyDir(Box::new(wasmi_wasi::dir::Dir::from_cap_std(dir)))
    }

    fn open(dir: &ReadOnlyDir, oflags: OFlags, write: bool, flags: FdFlags) -> Box<dyn WasiFile> {
        match block_on(dir.open_file(false, "file", oflags, true, write, flags)) {
            Ok(OpenResult::File(file)) => file,
            Ok(OpenResult::Dir(_)) => panic!("a directory"),
            Err(e) => panic!("refused: {e}"),
        }
    }

    #[test]
    fn append_is_let_through_and_writes_stay_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("file"), "data").expect("write");
        let dir = read_only(tmp.path());

        let mut file = open(&dir, OFlags::empty(), false, FdFlags::APPEND);
        let flags = block_on(file.get_fdflags()).expect("flags");
        assert!(flags.contains(FdFlags::APPEND), "{flags:?}");
        let wrote = block_on(file.write_vectored(&[IoSlice::new(b"more")]));
        assert!(wrote.is_err(), "an APPEND write went through: {wrote:?}");
        assert!(block_on(file.set_filestat_size(0)).is_err());

        block_on(file.set_fdflags(FdFlags::empty())).expect("clear APPEND");
        let flags = block_on(file.get_fdflags()).expect("flags");
        assert!(!flags.contains(FdFlags::APPEND), "{flags:?}");
        block_on(file.set_fdflags(FdFlags::APPEND)).expect("set APPEND");
        assert!(block_on(file.write_vectored(&[IoSlice::new(b"more")])).is_err());

        let mut plain = open(&dir, OFlags::empty(), false, FdFlags::empty());
        block_on(plain.set_fdflags(FdFlags::APPEND)).expect("set APPEND");
        assert!(block_on(plain.write_vectored(&[IoSlice::new(b"more")])).is_err());

        for (oflags, write) in [
            (OFlags::empty(), true),
            (OFlags::TRUNCATE, false),
            (OFlags::CREATE, false),
        ] {
            let opened =
                block_on(dir.open_file(false, "file", oflags, true, write, FdFlags::APPEND));
            assert!(opened.is_err(), "{oflags:?} write={write} opened");
        }
        let kept = std::fs::read_to_string(tmp.path().join("file")).expect("read");
        assert_eq!(kept, "data");
    }
}
