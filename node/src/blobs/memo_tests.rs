//! Tests of the remembered file hashes: used only while `stat` agrees,
//! never for a file that changed just before it was hashed, bounded, and
//! a bad memo file is an empty memo.

use std::time::{Duration, SystemTime};

use super::*;

/// Writes `bytes` to `path` with modification time `mtime`.
fn write_at(path: &Path, bytes: &[u8], mtime: SystemTime) {
    std::fs::write(path, bytes).expect("write");
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(mtime))
        .expect("set mtime");
}

#[test]
fn a_hash_is_remembered_until_the_file_changes_even_to_the_same_size_and_time() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("design.v");
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    write_at(&file, b"module counter;", an_hour_ago);
    // Its change time is now: it settles after SETTLED.
    std::thread::sleep(SETTLED + Duration::from_millis(100));
    let mut memo = FileHashes::open(tmp.path());
    let first = memo.hash(&file).expect("hash");
    assert_eq!(first, (ContentHash::of(b"module counter;"), 15));
    memo.save().expect("save");
    let mut memo = FileHashes::open(tmp.path());
    assert_eq!(memo.len(), 1, "remembered across runs");
    assert_eq!(memo.hash(&file).expect("hash"), first);
    assert!(!memo.changed, "a warm run leaves the memo file as it was");

    // Rewritten to the same size with its old modification time put
    // back: the change time still moved, so it is hashed again.
    write_at(&file, b"module cOunter;", an_hour_ago);
    assert_eq!(
        memo.hash(&file).expect("hash").0,
        ContentHash::of(b"module cOunter;"),
        "a file rewritten to the same size and time is not taken for the old one"
    );
}

#[test]
fn a_file_changed_just_before_it_is_hashed_is_not_remembered() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("input.txt");
    std::fs::write(&file, b"fresh").expect("write");
    let mut memo = FileHashes::open(tmp.path());
    assert_eq!(memo.hash(&file).expect("hash").0, ContentHash::of(b"fresh"));
    assert!(
        memo.is_empty(),
        "a write in the same clock tick could follow"
    );
    assert!(memo.hash(&tmp.path().join("missing")).is_err());
}

#[test]
fn a_bad_memo_file_is_an_empty_memo_and_bad_lines_are_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join(MEMO_FILE);
    let hash = ContentHash::of(b"x");
    let good = format!("1 2 3 4 5 6 {hash}");
    for (text, entries) in [
        ("garbage\n".to_string(), 0),
        (format!("corral file-hashes 0\n{good}\n"), 0),
        (
            format!("{HEADER}\n{good}\n1 2 3\n{good} extra\nx 2 3 4 5 6 {hash}\n"),
            1,
        ),
    ] {
        std::fs::write(&path, text).expect("write");
        assert_eq!(FileHashes::open(tmp.path()).len(), entries);
    }
    // Too big to be a memo: not read at all.
    std::fs::write(&path, format!("{HEADER}\n{good}\n")).expect("write");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(MAX_MEMO_BYTES + 1))
        .expect("grow");
    assert!(FileHashes::open(tmp.path()).is_empty());
}

#[test]
fn a_full_memo_keeps_the_files_used_most_recently() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut memo = FileHashes::open(tmp.path());
    let hash = ContentHash::of(b"x");
    for i in 0..MAX_MEMO_FILES as u64 + 10 {
        let stat = Stat {
            dev: 1,
            ino: i,
            size: 1,
            mtime_ns: 0,
            ctime_ns: 0,
        };
        memo.entries.insert(
            (1, i),
            Entry {
                stat,
                hash,
                used: i,
            },
        );
    }
    memo.changed = true;
    memo.save().expect("save");
    let memo = FileHashes::open(tmp.path());
    assert_eq!(memo.len(), MAX_MEMO_FILES);
    assert!(!memo.entries.contains_key(&(1, 9)), "the oldest went");
    assert!(memo.entries.contains_key(&(1, 10)));
}
