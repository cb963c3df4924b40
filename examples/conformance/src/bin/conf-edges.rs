//! Corners: preopens closed, renumbered and named into small buffers;
//! readlink into a small buffer; empty paths; odd open flags; calls on
//! stdio and directories that make no sense there; scattered reads.

use conformance::sys::{self, ALL, O_CREAT, O_DIRECTORY, O_EXCL, O_TRUNC, READ_ONLY};
use conformance::{preopen, show};

fn main() {
    let d = preopen("/sandbox");
    let ro = preopen("/ro");
    show("prestat_dir_name (exact)", sys::prestat_dir_name(d, 8));
    show("prestat_dir_name (too small)", sys::prestat_dir_name(d, 3));
    show(
        "prestat_dir_name (larger)",
        sys::prestat_dir_name(d, 12).map(|s| s.trim_end_matches('\0').to_owned()),
    );
    show("prestat_dir_name stdout", sys::prestat_dir_name(1, 8));

    show(
        "symlink l -> a-long-target",
        sys::symlink("a-long-target", d, "l"),
    );
    show("readlink into 4 bytes", sys::readlink_into(d, "l", 4));
    show("readlink into 0 bytes", sys::readlink_into(d, "l", 0));
    show("readlink into 64 bytes", sys::readlink_into(d, "l", 64));

    show("mkdir empty path", sys::mkdir(d, ""));
    show("unlink empty path", sys::unlink(d, ""));
    show("rmdir empty path", sys::rmdir(d, ""));
    show("stat empty path", sys::stat(d, 0, ""));
    show("stat .", sys::stat(d, 0, "."));
    show("symlink empty target", sys::symlink("", d, "empty"));
    show("rename . -> x", sys::rename(d, ".", d, "x"));
    show("rename x -> .", sys::rename(d, "l", d, "."));
    show("link . -> x", sys::link(d, 0, ".", d, "x"));

    show(
        "open . O_CREAT|O_EXCL",
        sys::open(d, 0, ".", O_CREAT | O_EXCL, READ_ONLY, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show(
        "open . O_TRUNC",
        sys::open(d, 0, ".", O_TRUNC, READ_ONLY, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show(
        "open new O_CREAT|O_DIRECTORY",
        sys::open(d, 0, "nd", O_CREAT | O_DIRECTORY, READ_ONLY, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show("stat nd", sys::stat(d, 0, "nd"));
    show(
        "open . O_DIRECTORY without rights",
        sys::open(d, 0, ".", O_DIRECTORY, 0, 0).map(|fd| sys::close(fd).is_ok()),
    );

    // Scattered reads.
    if let Ok(f) = sys::open(d, 0, "f", O_CREAT, ALL, 0) {
        show("write", sys::write(f, b"0123456789"));
        show("seek 0", sys::seek(f, 0, 0));
        show("read into 3+0+4", sys::read_many(f, &[3, 0, 4]));
        show("read into no buffers", sys::read_many(f, &[]));
        show("write nothing", sys::write(f, b""));
        show("sync dir", sys::sync(d));
        show("datasync dir", sys::datasync(d));
        show("set_flags dir", sys::set_flags(d, 0));
        show("set_size dir", sys::set_size(d, 0));
        show(
            "set_times dir",
            sys::set_times(d, 0, 0, 2 | 8).map(|()| "now"),
        );
        show("advise dir", sys::advise(d, 0, 0, 0));
        show("allocate dir", sys::allocate(d, 0, 1));
        show("tell dir", sys::tell(d));
        show("read dir", sys::read(d, 1).map(|b| b.len()));
        show("write dir", sys::write(d, b"x"));
        show("set_times stdout", sys::set_times(1, 0, 0, 2 | 8));
        show("sync stdout", sys::sync(1));
        show("advise stdout", sys::advise(1, 0, 0, 0));
        let mut buf = vec![0u8; 64];
        show("readdir stdout", sys::readdir(1, &mut buf, 0));

        // Renumber onto and from preopens.
        show("renumber f -> ro (a preopen)", sys::renumber(f, ro));
        show(
            "prestat of the old preopen fd",
            sys::prestat_dir_name(ro, 3),
        );
        show(
            "read through it",
            sys::pread(ro, 4, 0).map(|b| String::from_utf8_lossy(&b).into_owned()),
        );
    }
    // A directory that is not a preopen.
    show("mkdir sub", sys::mkdir(d, "sub"));
    let rights = sys::fdstat(d).map(|s| s.base).unwrap_or(0);
    if let Ok(sub) = sys::open(d, 0, "sub", O_DIRECTORY, rights | READ_ONLY, 0) {
        show(
            "set_times sub",
            sys::set_times(sub, 0, 0, 2 | 8).map(|()| "now"),
        );
        show("set_times sub (values)", sys::set_times(sub, 5, 5, 1 | 4));
        show("sync sub", sys::sync(sub));
        show("prestat_dir_name sub", sys::prestat_dir_name(sub, 8));
        show(
            "open sub/x O_TRUNC (missing)",
            sys::open(sub, 0, "x", O_TRUNC, READ_ONLY, 0).map(|fd| sys::close(fd).is_ok()),
        );
        show(
            "open .. from sub O_TRUNC",
            sys::open(sub, 0, "..", O_TRUNC, READ_ONLY, 0).map(|fd| sys::close(fd).is_ok()),
        );
    }
    show(
        "open sub O_TRUNC",
        sys::open(d, 0, "sub", O_TRUNC, READ_ONLY, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show(
        "open sub/ O_TRUNC|O_DIRECTORY",
        sys::open(d, 0, "sub/", O_TRUNC | O_DIRECTORY, READ_ONLY, 0)
            .map(|fd| sys::close(fd).is_ok()),
    );
    show("datasync stdout", sys::datasync(1));
    show("sync stdin", sys::sync(0));
    show("prestat_dir_name 50 (closed)", sys::prestat_dir_name(50, 8));

    // Rights asked for at open, and changed later.
    let fdstat = |fd: u32| {
        sys::fdstat(fd).map(|s| {
            format!(
                "flags={} base={:#x} inheriting={:#x}",
                s.flags, s.base, s.inheriting
            )
        })
    };
    let made = sys::open(d, 0, "r", O_CREAT, ALL, 0).and_then(|fd| {
        sys::write(fd, b"rights")?;
        sys::close(fd)
    });
    show("create r", made);
    show(
        "open r O_TRUNC read-only",
        sys::open(d, 0, "r", O_TRUNC, READ_ONLY, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show("size of r after", sys::stat(d, 0, "r").map(|s| s.size));
    const FD_READ: u64 = 2;
    if let Ok(fd) = sys::open(d, 0, "r", 0, FD_READ, 0) {
        show("fdstat (fd_read only)", fdstat(fd));
        show("seek without the right", sys::seek(fd, 1, 0));
        show("tell without the right", sys::tell(fd));
        show("stat without the right", sys::fstat(fd).map(|s| s.size));
        show("set_rights to fd_read", sys::set_rights(fd, FD_READ, 0));
        show("set_rights to more", sys::set_rights(fd, ALL, ALL));
        show("fdstat after", fdstat(fd));
        show("close", sys::close(fd));
    }
    let refilled = sys::open(d, 0, "r", 0, ALL, 0).and_then(|fd| {
        sys::write(fd, b"again")?;
        sys::close(fd)
    });
    show("refill r", refilled);
    if let Ok(fd) = sys::open(d, 0, "r", 0, 0, 0) {
        show("fdstat (no rights)", fdstat(fd));
        show("write with no rights", sys::write(fd, b"x"));
        show("read with no rights", sys::read(fd, 2).map(|b| b.len()));
        show("close", sys::close(fd));
    }
    show(
        "open r DSYNC",
        sys::open(d, 0, "r", 0, ALL, 2).map(|fd| sys::close(fd).is_ok()),
    );
    show(
        "open r SYNC",
        sys::open(d, 0, "r", 0, ALL, 16).map(|fd| sys::close(fd).is_ok()),
    );
    show(
        "open r RSYNC",
        sys::open(d, 0, "r", 0, ALL, 8).map(|fd| sys::close(fd).is_ok()),
    );
    show(
        "open r NONBLOCK",
        sys::open(d, 0, "r", 0, ALL, 4).map(|fd| {
            let f = fdstat(fd);
            let _ = sys::close(fd);
            f.unwrap_or_default()
        }),
    );
    show("set_rights stdout", sys::set_rights(1, 0, 0));
    show("set_rights closed", sys::set_rights(77, 0, 0));
    show("set_rights preopen", sys::set_rights(d, 0, 0));
    // Whether a closed fd's number is given out again.
    let first = sys::open(d, 0, "r", 0, READ_ONLY, 0);
    let reused = first.and_then(|a| {
        sys::close(a)?;
        let b = sys::open(d, 0, "r", 0, READ_ONLY, 0)?;
        sys::close(b)?;
        Ok(a == b)
    });
    show("fd number reused after close", reused);

    // Between two writable preopens.
    let other = preopen("/sandbox2");
    let made = sys::open(d, 0, "moving", O_CREAT, ALL, 0).and_then(|fd| {
        sys::write(fd, b"moved")?;
        sys::close(fd)
    });
    show("create moving", made);
    show(
        "link moving -> /sandbox2/linked",
        sys::link(d, 0, "moving", other, "linked"),
    );
    show(
        "rename moving -> /sandbox2/moved",
        sys::rename(d, "moving", other, "moved"),
    );
    show("stat /sandbox2/moved", sys::stat(other, 0, "moved"));
    show("rename it back", sys::rename(other, "moved", d, "back"));

    // Renumber a preopen onto an open fd; close a preopen.
    if let Ok(g) = sys::open(d, 0, "g", O_CREAT, ALL, 0) {
        show("renumber sandbox -> g", sys::renumber(d, g));
        show("prestat g", sys::prestat_dir_name(g, 8));
        show("stat f through g", sys::stat(g, 0, "f"));
        show("stat through the old fd", sys::stat(d, 0, "f"));
        show("close g (a preopen)", sys::close(g));
        show("stat through closed", sys::stat(g, 0, "f"));
    }
}
