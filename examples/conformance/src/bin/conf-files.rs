//! Open files: seek and tell, append, pread/pwrite, truncation, fd_allocate,
//! filestat and set-times, fdstat flags and rights, fd_renumber, sync and
//! advise, closing twice.

use conformance::sys::{
    self, ALL, FD_APPEND, FD_NONBLOCK, FD_SYNC, O_CREAT, O_DIRECTORY, O_TRUNC, READ_ONLY,
};
use conformance::{preopen, show};

const ATIM: u32 = 1;
const ATIM_NOW: u32 = 2;
const MTIM: u32 = 4;
const MTIM_NOW: u32 = 8;
const WHEN: u64 = 1_000_000_000_123_456_789;

fn text(bytes: Result<Vec<u8>, u16>) -> Result<String, u16> {
    bytes.map(|b| format!("{:?}", String::from_utf8_lossy(&b)))
}

fn main() {
    let d = preopen("/sandbox");
    let Ok(f) = sys::open(d, 0, "f", O_CREAT | O_TRUNC, ALL, 0) else {
        println!("open f: failed");
        return;
    };

    // Seek and tell.
    show("write hello world", sys::write(f, b"hello world"));
    show("tell", sys::tell(f));
    show("seek set 0", sys::seek(f, 0, 0));
    show("seek cur 6", sys::seek(f, 6, 1));
    show("read 5", text(sys::read(f, 5)));
    show("read at eof", text(sys::read(f, 5)));
    show("seek end -2", sys::seek(f, -2, 2));
    show("seek set -1", sys::seek(f, -1, 0));
    show("seek cur -100", sys::seek(f, -100, 1));
    show("tell after bad seeks", sys::tell(f));
    show("seek set 20", sys::seek(f, 20, 0));
    show("write x past end", sys::write(f, b"x"));
    show("stat f (hole)", sys::fstat(f));
    show("pread hole", text(sys::pread(f, 12, 10)));

    // pread/pwrite leave the position alone.
    show("seek set 3", sys::seek(f, 3, 0));
    show("pread 5 at 6", text(sys::pread(f, 5, 6)));
    show("pwrite HELLO at 0", sys::pwrite(f, b"HELLO", 0));
    show("tell after pread/pwrite", sys::tell(f));
    show("pread at 100 (past end)", text(sys::pread(f, 5, 100)));
    show("pwrite at 30 (past end)", sys::pwrite(f, b"!", 30));
    show("stat f", sys::fstat(f));

    // Truncation.
    show("set_size 5", sys::set_size(f, 5));
    show("pread all", text(sys::pread(f, 64, 0)));
    show("set_size 8", sys::set_size(f, 8));
    show("pread grown", text(sys::pread(f, 64, 0)));
    show("tell after truncation", sys::tell(f));

    // fd_allocate.
    show("allocate 0..100", sys::allocate(f, 0, 100));
    show("stat after allocate", sys::fstat(f));

    // Times.
    show(
        "set_times atim+mtim",
        sys::set_times(f, WHEN, WHEN + 1, ATIM | MTIM),
    );
    show(
        "times read back",
        sys::fstat(f).map(|s| format!("atim={} mtim={}", s.atim, s.mtim)),
    );
    show("set_times mtim only", sys::set_times(f, 0, WHEN + 2, MTIM));
    show(
        "times read back",
        sys::fstat(f).map(|s| format!("atim={} mtim={}", s.atim, s.mtim)),
    );
    show(
        "set_times atim and atim_now",
        sys::set_times(f, WHEN, 0, ATIM | ATIM_NOW),
    );
    show(
        "set_times mtim and mtim_now",
        sys::set_times(f, 0, WHEN, MTIM | MTIM_NOW),
    );
    show(
        "set_times now",
        sys::set_times(f, 0, 0, ATIM_NOW | MTIM_NOW)
            .map(|()| sys::fstat(f).map(|s| s.mtim > WHEN).unwrap_or(false)),
    );
    show(
        "path set_times",
        sys::set_times_at(d, 0, "f", WHEN, WHEN, ATIM | MTIM),
    );
    show(
        "times read back",
        sys::stat(d, 0, "f").map(|s| format!("atim={} mtim={}", s.atim, s.mtim)),
    );
    show(
        "path set_times missing",
        sys::set_times_at(d, 0, "missing", WHEN, WHEN, ATIM | MTIM),
    );
    show("symlink lf -> f", sys::symlink("f", d, "lf"));
    show(
        "path set_times lf (follow)",
        sys::set_times_at(d, 1, "lf", WHEN + 5, WHEN + 5, ATIM | MTIM),
    );
    show(
        "times of f",
        sys::stat(d, 0, "f").map(|s| format!("atim={} mtim={}", s.atim, s.mtim)),
    );

    // fdstat flags and rights.
    let fdstat = |fd: u32| {
        sys::fdstat(fd).map(|s| {
            format!(
                "type={} flags={} base={:#x} inheriting={:#x}",
                s.filetype, s.flags, s.base, s.inheriting
            )
        })
    };
    show("fdstat f", fdstat(f));
    show("fdstat preopen", fdstat(d));
    show("set_flags append", sys::set_flags(f, FD_APPEND));
    show("fdstat f (append)", fdstat(f));
    show("seek set 0", sys::seek(f, 0, 0));
    show("write in append mode", sys::write(f, b"tail"));
    show("tell", sys::tell(f));
    show("pwrite at 0 in append mode", sys::pwrite(f, b"P", 0));
    show("contents", text(sys::pread(f, 64, 0)));
    show("set_flags none", sys::set_flags(f, 0));
    show("set_flags nonblock", sys::set_flags(f, FD_NONBLOCK));
    show("set_flags sync", sys::set_flags(f, FD_SYNC));
    show("fdstat f (after)", fdstat(f));
    show("set_flags on bad fd", sys::set_flags(99, 0));
    show("sync", sys::sync(f));
    show("datasync", sys::datasync(f));
    show("advise normal", sys::advise(f, 0, 10, 0));

    // Append from open.
    match sys::open(d, 0, "f", 0, ALL, FD_APPEND) {
        Ok(g) => {
            show("fdstat append open", fdstat(g));
            show("tell on open", sys::tell(g));
            show("write appended", sys::write(g, b"+"));
            show("tell after append", sys::tell(g));
            show("close", sys::close(g));
        }
        Err(e) => show::<()>("open append", Err(e)),
    }

    // Rights: a read-only fd.
    match sys::open(d, 0, "f", 0, READ_ONLY, 0) {
        Ok(r) => {
            show("fdstat read-only", fdstat(r));
            show("write on read-only", sys::write(r, b"no"));
            show("pwrite on read-only", sys::pwrite(r, b"no", 0));
            show("set_size on read-only", sys::set_size(r, 0));
            show("read on read-only", text(sys::read(r, 4)));
            show("close", sys::close(r));
        }
        Err(e) => show::<()>("open read-only", Err(e)),
    }

    // A directory fd.
    let dir_rights = sys::fdstat(d).map(|s| s.base).unwrap_or(0);
    match sys::open(d, 0, ".", O_DIRECTORY, dir_rights, 0) {
        Ok(dir) => {
            show("fdstat dir", fdstat(dir));
            show("stat dir", sys::fstat(dir));
            show("read dir", text(sys::read(dir, 4)));
            show("write dir", sys::write(dir, b"x"));
            show("seek dir", sys::seek(dir, 0, 0));
            show("set_size dir", sys::set_size(dir, 0));
            show("close", sys::close(dir));
        }
        Err(e) => show::<()>("open dir", Err(e)),
    }

    // A directory opened as wasi-libc opens one (with fd_read among its rights).
    match sys::open(d, 0, ".", O_DIRECTORY, dir_rights | READ_ONLY, 0) {
        Ok(dir) => {
            show("fdstat dir opened for reading", fdstat(dir));
            show("close", sys::close(dir));
        }
        Err(e) => show::<()>("open dir for reading", Err(e)),
    }

    // Renumber.
    let Ok(g) = sys::open(d, 0, "g", O_CREAT, ALL, 0) else {
        println!("open g: failed");
        return;
    };
    show("write g", sys::write(g, b"G"));
    show("renumber f -> g", sys::renumber(f, g));
    show("fdstat f after renumber", sys::fdstat(f).map(|_| ()));
    show("pread g (was f)", text(sys::pread(g, 3, 0)));
    show("renumber g -> g", sys::renumber(g, g));
    show("renumber g -> 77 (not open)", sys::renumber(g, 77));
    show("renumber 77 -> g", sys::renumber(77, g));
    show("close g", sys::close(g));
    show("close g again", sys::close(g));
    show("close 1000", sys::close(1000));
    show("read closed", text(sys::read(g, 1)));
    show("stat closed", sys::fstat(g));
}
