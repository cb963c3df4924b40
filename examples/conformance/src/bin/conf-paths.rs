//! Paths: symlinks (dangling, loops), trailing slashes, rename over files and
//! directories, hard links, readlink, unlink, rmdir, and attempts to leave
//! the preopen through `..`, absolute paths and symlinks.

use conformance::sys::{self, ALL, FOLLOW, O_CREAT, O_DIRECTORY, O_EXCL};
use conformance::{preopen, show};

fn put(dir: u32, path: &str, text: &str) {
    let made = sys::open(dir, 0, path, O_CREAT, ALL, 0).and_then(|fd| {
        sys::write(fd, text.as_bytes())?;
        sys::close(fd)
    });
    if made.is_err() {
        println!("setup {path}: failed");
    }
}

fn cat(dir: u32, follow: u32, path: &str) -> Result<String, u16> {
    let fd = sys::open(dir, follow, path, 0, ALL, 0)?;
    let text = sys::read(fd, 64);
    sys::close(fd)?;
    Ok(String::from_utf8_lossy(&text?).into_owned())
}

fn main() {
    let d = preopen("/sandbox");
    show("mkdir d", sys::mkdir(d, "d"));
    put(d, "d/f", "hello");

    // Symlinks.
    show("symlink lf -> d/f", sys::symlink("d/f", d, "lf"));
    show("read lf (follow)", cat(d, FOLLOW, "lf"));
    show("read lf (nofollow)", cat(d, 0, "lf"));
    show("stat lf (nofollow)", sys::stat(d, 0, "lf"));
    show("stat lf (follow)", sys::stat(d, FOLLOW, "lf"));
    show("readlink lf", sys::readlink(d, "lf"));
    show("readlink d/f (not a link)", sys::readlink(d, "d/f"));
    show("readlink missing", sys::readlink(d, "missing"));
    show("symlink lf again", sys::symlink("d/f", d, "lf"));
    show(
        "symlink dangling -> nowhere",
        sys::symlink("nowhere", d, "dangling"),
    );
    show("read dangling", cat(d, FOLLOW, "dangling"));
    show("stat dangling (nofollow)", sys::stat(d, 0, "dangling"));
    show("stat dangling (follow)", sys::stat(d, FOLLOW, "dangling"));
    show(
        "create through dangling",
        sys::open(d, FOLLOW, "dangling", O_CREAT, ALL, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show("symlink loop1 -> loop2", sys::symlink("loop2", d, "loop1"));
    show("symlink loop2 -> loop1", sys::symlink("loop1", d, "loop2"));
    show("read loop1", cat(d, FOLLOW, "loop1"));
    show("stat loop1 (follow)", sys::stat(d, FOLLOW, "loop1"));
    show("symlink ld -> d", sys::symlink("d", d, "ld"));
    show("read ld/f", cat(d, 0, "ld/f"));
    show(
        "open ld (dir, nofollow)",
        sys::open(d, 0, "ld", O_DIRECTORY, ALL, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show("unlink lf", sys::unlink(d, "lf"));
    show("stat d/f after unlink lf", sys::stat(d, 0, "d/f"));

    // Trailing slashes.
    show("open d/f/", cat(d, FOLLOW, "d/f/"));
    show("stat d/", sys::stat(d, FOLLOW, "d/"));
    show("stat d/f/", sys::stat(d, FOLLOW, "d/f/"));
    show("mkdir t/", sys::mkdir(d, "t/"));
    show("rmdir t/", sys::rmdir(d, "t/"));
    show("unlink d/f/", sys::unlink(d, "d/f/"));
    show(
        "create n/ (O_CREAT)",
        sys::open(d, 0, "n/", O_CREAT, ALL, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show("symlink s/ -> d", sys::symlink("d", d, "s/"));
    show("stat ld/ (follow)", sys::stat(d, FOLLOW, "ld/"));
    show("stat ld/ (nofollow)", sys::stat(d, 0, "ld/"));

    // Rename.
    put(d, "a", "A");
    put(d, "b", "B");
    show("rename a -> b (over file)", sys::rename(d, "a", d, "b"));
    show("read b", cat(d, 0, "b"));
    show("stat a", sys::stat(d, 0, "a"));
    show("mkdir e1", sys::mkdir(d, "e1"));
    show("mkdir e2", sys::mkdir(d, "e2"));
    show(
        "rename b -> e1 (file over dir)",
        sys::rename(d, "b", d, "e1"),
    );
    show(
        "rename e1 -> b (dir over file)",
        sys::rename(d, "e1", d, "b"),
    );
    show(
        "rename e1 -> e2 (over empty dir)",
        sys::rename(d, "e1", d, "e2"),
    );
    show(
        "rename e2 -> d (over full dir)",
        sys::rename(d, "e2", d, "d"),
    );
    show(
        "rename d -> d/sub (into itself)",
        sys::rename(d, "d", d, "d/sub"),
    );
    show("rename missing -> x", sys::rename(d, "missing", d, "x"));
    show("rename b -> b/ ", sys::rename(d, "b", d, "b/"));
    show("rename e2/ -> e3/", sys::rename(d, "e2/", d, "e3/"));
    show(
        "rename b/ -> c (file with a slash)",
        sys::rename(d, "b/", d, "c"),
    );
    show(
        "rename b -> c/ (to a new name)",
        sys::rename(d, "b", d, "c/"),
    );
    show(
        "rename ld -> ld2/ (link to a dir)",
        sys::rename(d, "ld", d, "ld2/"),
    );
    show("rename e3 -> e4/", sys::rename(d, "e3", d, "e4/"));

    // Hard links.
    show("link d/f -> hard", sys::link(d, 0, "d/f", d, "hard"));
    show("stat hard", sys::stat(d, 0, "hard"));
    show("link d -> dl (a dir)", sys::link(d, 0, "d", d, "dl"));
    show("link d/f -> b (exists)", sys::link(d, 0, "d/f", d, "b"));
    show("link missing -> m", sys::link(d, 0, "missing", d, "m"));
    show("link ld -> hl (nofollow)", sys::link(d, 0, "ld", d, "hl"));
    show("stat hl (nofollow)", sys::stat(d, 0, "hl"));

    // Unlink, rmdir.
    show("unlink d (a dir)", sys::unlink(d, "d"));
    show("unlink missing", sys::unlink(d, "missing"));
    show("rmdir d (not empty)", sys::rmdir(d, "d"));
    show("rmdir b (a file)", sys::rmdir(d, "b"));
    show("rmdir ld (a link to a dir)", sys::rmdir(d, "ld"));
    show("rmdir .", sys::rmdir(d, "."));
    show("rmdir missing", sys::rmdir(d, "missing"));
    show("mkdir d (exists)", sys::mkdir(d, "d"));
    show("mkdir b (a file)", sys::mkdir(d, "b"));
    show(
        "open b O_EXCL",
        sys::open(d, 0, "b", O_CREAT | O_EXCL, ALL, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show(
        "open b O_DIRECTORY",
        sys::open(d, 0, "b", O_DIRECTORY, ALL, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show(
        "open missing",
        sys::open(d, 0, "missing", 0, ALL, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show(
        "open empty path",
        sys::open(d, 0, "", 0, ALL, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show(
        "open . as dir",
        sys::open(d, 0, ".", O_DIRECTORY, ALL, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show("open d/./f", cat(d, 0, "d/./f"));
    show("open d/../b", cat(d, 0, "d/../b"));

    // Leaving the preopen.
    show(
        "open ..",
        sys::open(d, 0, "..", O_DIRECTORY, ALL, 0).map(|fd| sys::close(fd).is_ok()),
    );
    show("open ../x", cat(d, 0, "../x"));
    show("open d/../../x", cat(d, 0, "d/../../x"));
    show("open /etc/passwd", cat(d, 0, "/etc/passwd"));
    show("stat /", sys::stat(d, 0, "/"));
    show("mkdir ../x", sys::mkdir(d, "../x"));
    show(
        "symlink abs -> /etc/passwd",
        sys::symlink("/etc/passwd", d, "abs"),
    );
    show("read abs", cat(d, FOLLOW, "abs"));
    show("stat abs (nofollow)", sys::stat(d, 0, "abs"));
    show("symlink up -> ..", sys::symlink("..", d, "up"));
    show("read up/x", cat(d, FOLLOW, "up/x"));
    show("stat up (follow)", sys::stat(d, FOLLOW, "up"));
    show("symlink up2 -> d/../..", sys::symlink("d/../..", d, "up2"));
    show("stat up2 (follow)", sys::stat(d, FOLLOW, "up2"));
    show("rename b -> ../b", sys::rename(d, "b", d, "../b"));
    show("link b -> ../b", sys::link(d, 0, "b", d, "../b"));
    show("unlink ../x", sys::unlink(d, "../x"));
}
