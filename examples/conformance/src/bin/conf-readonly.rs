//! A read-only preopen (`/ro`, holding `file` = "data" and `dir/inner`):
//! reading works, and every way of changing it fails with the errno
//! wasmtime gives, while `/sandbox` stays writable.

use conformance::sys::{self, ALL, FOLLOW, O_CREAT, O_DIRECTORY, O_TRUNC, READ_ONLY};
use conformance::{preopen, show};

fn main() {
    let ro = preopen("/ro");
    let rw = preopen("/sandbox");
    let fdstat = |fd: u32| {
        sys::fdstat(fd).map(|s| {
            format!(
                "type={} flags={} base={:#x} inheriting={:#x}",
                s.filetype, s.flags, s.base, s.inheriting
            )
        })
    };
    show("fdstat /ro", fdstat(ro));
    show("fdstat /sandbox", fdstat(rw));
    show("stat file", sys::stat(ro, 0, "file"));
    show("stat dir", sys::stat(ro, 0, "dir"));
    match sys::open(ro, 0, "file", 0, READ_ONLY, 0) {
        Ok(fd) => {
            show(
                "read file",
                sys::read(fd, 16).map(|b| String::from_utf8_lossy(&b).into_owned()),
            );
            show("fdstat file", fdstat(fd));
            show("write file (read-only fd)", sys::write(fd, b"x"));
            show("set_size file", sys::set_size(fd, 0));
            show("set_times file", sys::set_times(fd, 5, 5, 1 | 4));
            show("allocate file", sys::allocate(fd, 0, 10));
            show("set_flags append", sys::set_flags(fd, 1));
            show("close", sys::close(fd));
        }
        Err(e) => show::<()>("open file read-only", Err(e)),
    }
    show(
        "open file for writing",
        sys::open(ro, 0, "file", 0, ALL, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show(
        "open file O_TRUNC",
        sys::open(ro, 0, "file", O_TRUNC, READ_ONLY, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show(
        "open file append",
        sys::open(ro, 0, "file", 0, READ_ONLY, 1).map(|fd| sys::close(fd).is_ok()),
    );
    show(
        "create new",
        sys::open(ro, 0, "new", O_CREAT, ALL, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show(
        "create new read-only",
        sys::open(ro, 0, "new", O_CREAT, READ_ONLY, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show(
        "open missing",
        sys::open(ro, 0, "missing", 0, READ_ONLY, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show("mkdir", sys::mkdir(ro, "newdir"));
    show("unlink file", sys::unlink(ro, "file"));
    show("rmdir dir (not empty)", sys::rmdir(ro, "dir"));
    show("rename file -> moved", sys::rename(ro, "file", ro, "moved"));
    show(
        "rename file -> /sandbox",
        sys::rename(ro, "file", rw, "stolen"),
    );
    show("rename /sandbox -> /ro", sys::rename(rw, "x", ro, "x"));
    show("symlink", sys::symlink("file", ro, "link"));
    show(
        "link file -> /sandbox",
        sys::link(ro, 0, "file", rw, "hard"),
    );
    show("link file -> /ro", sys::link(ro, 0, "file", ro, "hard"));
    let made = sys::open(rw, 0, "mine", O_CREAT, ALL, 0).and_then(sys::close);
    show("create /sandbox/mine", made);
    show(
        "link /sandbox/mine -> /ro",
        sys::link(rw, 0, "mine", ro, "mine"),
    );
    show(
        "rename /sandbox/mine -> /ro",
        sys::rename(rw, "mine", ro, "mine"),
    );
    show(
        "path set_times",
        sys::set_times_at(ro, 0, "file", 5, 5, 1 | 4),
    );
    show("readlink file", sys::readlink(ro, "file"));
    show(
        "stat dir/inner (follow)",
        sys::stat(ro, FOLLOW, "dir/inner"),
    );
    let rights = sys::fdstat(ro).map(|s| s.base).unwrap_or(0);
    match sys::open(ro, 0, "dir", O_DIRECTORY, rights, 0) {
        Ok(dir) => {
            show("fdstat dir", fdstat(dir));
            show(
                "create in dir",
                sys::open(dir, 0, "x", O_CREAT, ALL, 0).map(|fd| sys::close(fd).is_ok()),
            );
            show("unlink dir/inner", sys::unlink(dir, "inner"));
            let mut buf = vec![0u8; 1024];
            show(
                "readdir dir",
                sys::readdir(dir, &mut buf, 0).map(|used| used > 0),
            );
            show("close", sys::close(dir));
        }
        Err(e) => show::<()>("open dir", Err(e)),
    }
    // The writable one still is.
    show(
        "create in /sandbox",
        sys::open(rw, 0, "ok", O_CREAT, ALL, 0).and_then(|fd| sys::write(fd, b"fine")),
    );
}
