//! fd_readdir: a whole listing, the same listing read through a small buffer
//! resuming from cookies, resuming from the middle, past the end, on a file.

use conformance::sys::{self, ALL, O_CREAT, O_DIRECTORY};
use conformance::{preopen, show};

/// One entry: next cookie, name, type.
type Entry = (u64, String, u8);

/// Parses the complete entries in `buf`; the bool says the buffer was full.
fn parse(buf: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at + 24 <= buf.len() {
        let word = |i: usize| {
            let mut b = [0; 8];
            b.copy_from_slice(&buf[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let next = word(at);
        let len =
            u32::from_le_bytes([buf[at + 16], buf[at + 17], buf[at + 18], buf[at + 19]]) as usize;
        let kind = buf[at + 20];
        if at + 24 + len > buf.len() {
            break;
        }
        let name = String::from_utf8_lossy(&buf[at + 24..at + 24 + len]).into_owned();
        entries.push((next, name, kind));
        at += 24 + len;
    }
    entries
}

fn listing(entries: &[Entry]) -> String {
    let mut names: Vec<String> = entries.iter().map(|(_, n, k)| format!("{n}:{k}")).collect();
    names.sort();
    names.join(" ")
}

/// Reads the whole directory through a buffer of `size` bytes, resuming
/// from the cookie of the last complete entry, as wasi-libc does.
fn read_all(fd: u32, size: usize) -> Result<(Vec<Entry>, usize), u16> {
    let mut all = Vec::new();
    let mut cookie = 0;
    let mut calls = 0;
    loop {
        let mut buf = vec![0u8; size];
        let used = sys::readdir(fd, &mut buf, cookie)?;
        calls += 1;
        let entries = parse(&buf[..used]);
        let Some(last) = entries.last() else {
            return Ok((all, calls));
        };
        cookie = last.0;
        all.extend(entries);
        if used < size || calls > 100 {
            return Ok((all, calls));
        }
    }
}

fn main() {
    let d = preopen("/sandbox");
    show("mkdir r", sys::mkdir(d, "r"));
    for name in ["a", "bb", "ccc", "a-much-longer-file-name-than-the-others"] {
        let made = sys::open(d, 0, &format!("r/{name}"), O_CREAT, ALL, 0).and_then(sys::close);
        show(&format!("create r/{name}"), made);
    }
    show("mkdir r/sub", sys::mkdir(d, "r/sub"));
    show("symlink r/link -> a", sys::symlink("a", d, "r/link"));
    let rights = sys::fdstat(d).map(|s| s.base).unwrap_or(0);
    let fd = match sys::open(d, 0, "r", O_DIRECTORY, rights, 0) {
        Ok(fd) => fd,
        Err(e) => return show::<()>("open r", Err(e)),
    };

    let whole = read_all(fd, 4096);
    show(
        "listing",
        whole.as_ref().map(|(e, _)| listing(e)).map_err(|e| *e),
    );
    show(
        "entries",
        whole.as_ref().map(|(e, _)| e.len()).map_err(|e| *e),
    );
    for size in [24, 40, 64, 100] {
        let small = read_all(fd, size);
        let same = match (&whole, &small) {
            (Ok((a, _)), Ok((b, _))) => listing(a) == listing(b),
            _ => false,
        };
        show(&format!("buffer {size}: same listing"), small.map(|_| same));
    }
    // A buffer too small for any entry: the host fills it with a partial entry.
    let mut tiny = [0u8; 10];
    show("buffer 10: bytes used", sys::readdir(fd, &mut tiny, 0));

    if let Ok((entries, _)) = &whole {
        if entries.len() >= 2 {
            let mut buf = vec![0u8; 4096];
            let after = sys::readdir(fd, &mut buf, entries[1].0).map(|used| parse(&buf[..used]));
            let rest = listing(&entries[2..]);
            show("resume after two: rest", after.map(|e| listing(&e) == rest));
        }
        let last = entries.last().map(|e| e.0).unwrap_or(0);
        let mut buf = vec![0u8; 4096];
        show(
            "resume from last cookie: bytes",
            sys::readdir(fd, &mut buf, last),
        );
        show(
            "resume from cookie 1000: bytes",
            sys::readdir(fd, &mut buf, 1000),
        );
        let dots: Vec<&str> = entries
            .iter()
            .filter(|e| e.1.starts_with('.'))
            .map(|e| e.1.as_str())
            .collect();
        show("dot entries", Ok::<_, u16>(dots.join(" ")));
    }
    show("unlink r/bb", sys::unlink(d, "r/bb"));
    show("after unlink", read_all(fd, 4096).map(|(e, _)| listing(&e)));
    show("close r", sys::close(fd));

    let Ok(file) = sys::open(d, 0, "r/a", 0, ALL, 0) else {
        return println!("open r/a: failed");
    };
    let mut buf = vec![0u8; 256];
    show("readdir on a file", sys::readdir(file, &mut buf, 0));
    show("readdir on a closed fd", sys::readdir(1000, &mut buf, 0));
    show(
        "readdir on the preopen",
        read_all(d, 4096).map(|(e, _)| listing(&e)),
    );
}
