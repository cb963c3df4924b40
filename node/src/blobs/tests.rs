//! Tests of the blob store: storing by hash, bounded chunks, trees, and
//! corrupt blobs found and removed.

use super::*;

#[test]
fn an_unsynced_blob_is_stored_as_any_and_checked_in_another_process() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::open(tmp.path()).expect("open");
    let hash = store.put_bytes_unsynced(b"a request body").expect("put");
    assert_eq!(hash, ContentHash::of(b"a request body"));
    assert_eq!(store.read(&hash, 100).expect("read"), b"a request body");
    // Torn by a power cut: another process (a fresh store) finds it
    // corrupt and removes it.
    let path = store.path(&hash);
    let mut perms = std::fs::metadata(&path).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).expect("writable");
    std::fs::write(&path, b"a request bod?").expect("tear");
    let other = BlobStore::open(tmp.path()).expect("open");
    assert!(!other.is_intact(&hash));
    assert!(!path.exists());
}

#[test]
fn blobs_are_stored_by_hash_and_chunks_are_bounded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::open(tmp.path()).expect("open");
    let hash = store.put_bytes(b"hello blob").expect("put");
    assert!(store.has(&hash));
    assert_eq!(store.read(&hash, 100).expect("read"), b"hello blob");
    assert!(store.read(&hash, 3).is_err(), "the limit holds");
    match store.chunk(&BlobRequest {
        hash,
        offset: 6,
        len: 100,
    }) {
        BlobResponse::Chunk {
            total,
            offset,
            bytes,
        } => {
            assert_eq!((total, offset, bytes.as_slice()), (10, 6, &b"blob"[..]));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.chunk(&BlobRequest {
            hash,
            offset: 11,
            len: 1
        }),
        BlobResponse::Invalid
    );
    assert_eq!(
        store.chunk(&BlobRequest {
            hash: ContentHash::of(b"nope"),
            offset: 0,
            len: 1
        }),
        BlobResponse::NotFound
    );
}

#[test]
fn a_blob_with_the_wrong_contents_is_not_stored() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::open(tmp.path()).expect("open");
    let mut writer = store.writer().expect("writer");
    writer.write(b"evil").expect("write");
    let wanted = ContentHash::of(b"good");
    let err = writer.commit(&store, &wanted).expect_err("mismatch");
    assert!(err.to_string().contains("wrong contents"), "{err}");
    assert!(!store.has(&wanted));
}

#[test]
fn trees_round_trip_through_the_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::write(src.join("a.txt"), "A").expect("write");
    std::fs::write(src.join("sub/b.txt"), "B").expect("write");
    let store = BlobStore::open(&tmp.path().join("data")).expect("open");
    let tree = store.put_tree(&src).expect("put tree");
    let listing = store.listing(&tree).expect("listing");
    assert_eq!(
        listing
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>(),
        ["a.txt", "sub/b.txt"]
    );
    let dest = tmp.path().join("dest");
    store.materialize(&tree, &dest, true).expect("materialize");
    assert_eq!(
        std::fs::read_to_string(dest.join("sub/b.txt")).expect("read"),
        "B"
    );
    std::fs::write(dest.join("a.txt"), "changed").expect("a writable copy is writable");
    assert_eq!(store.read(&listing.files[0].hash, 10).expect("blob"), b"A");
}

/// Plants `bytes` under blob `hash`'s name, as a power cut (or a bad disk)
/// could leave them, behind the store's back.
fn plant(store: &BlobStore, hash: &ContentHash, bytes: &[u8]) {
    let path = store.path(hash);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(&path, bytes).expect("plant");
}

#[test]
fn a_zero_length_blob_under_a_real_name_is_not_here_and_is_stored_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::open(tmp.path()).expect("open");
    let hash = ContentHash::of(b"the module's bytes");
    plant(&store, &hash, b"");
    assert!(!store.has(&hash), "a zero-length file is not the blob");
    assert!(store.read(&hash, 100).is_err());
    assert!(!store.path(&hash).exists(), "and it is removed");
    assert_eq!(store.put_bytes(b"the module's bytes").expect("put"), hash);
    assert_eq!(store.read(&hash, 100).expect("read"), b"the module's bytes");
    // The empty blob itself is a blob like any other.
    let empty = store.put_bytes(b"").expect("put empty");
    assert!(store.has(&empty));
    assert_eq!(store.read(&empty, 0).expect("read empty"), b"");
}

#[test]
fn a_blob_with_the_wrong_bytes_under_a_real_name_is_never_used() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let hash = ContentHash::of(b"the module's bytes");
    {
        let store = BlobStore::open(tmp.path()).expect("open");
        plant(&store, &hash, b"the wrong bytes!!!");
    }
    // The next run (a fresh process's store) finds it.
    let store = BlobStore::open(tmp.path()).expect("open");
    let err = store
        .read(&hash, 100)
        .expect_err("the wrong bytes are not read");
    assert!(err.to_string().contains("not here"), "{err}");
    assert!(
        matches!(
            store.chunk(&BlobRequest {
                hash,
                offset: 0,
                len: 10
            }),
            BlobResponse::NotFound
        ),
        "nor served to a peer"
    );
    // Stored again, the right bytes replace them.
    plant(&store, &hash, b"the wrong bytes!!!");
    assert_eq!(store.put_bytes(b"the module's bytes").expect("put"), hash);
    assert_eq!(store.read(&hash, 100).expect("read"), b"the module's bytes");
}

#[test]
fn a_blob_changed_after_it_was_checked_is_not_here() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::open(tmp.path()).expect("open");
    let hash = store.put_bytes(b"twelve bytes").expect("put");
    assert!(store.known_intact(&hash), "this process wrote it");
    let path = store.path(&hash);
    std::fs::remove_file(&path).expect("rm");
    std::fs::write(&path, b"short").expect("write");
    assert!(!store.has(&hash), "not the length it was written at");
    assert!(!path.exists());
}

#[test]
fn a_blob_removed_behind_the_stores_back_is_noticed_within_the_recheck() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::open(tmp.path()).expect("open");
    let hash = store.put_bytes(b"twelve bytes").expect("put");
    let other = store.put_bytes(b"other bytes").expect("put");
    assert!(store.known_intact_lately(&hash), "this process wrote it");
    std::fs::remove_file(store.path(&hash)).expect("rm");
    assert!(
        !store.known_intact(&hash),
        "the plain check looks every time"
    );
    let mut waited = std::time::Duration::ZERO;
    while store.known_intact_lately(&hash) {
        assert!(waited <= intact::RECHECK_EVERY, "still taken to be there");
        std::thread::sleep(std::time::Duration::from_millis(50));
        waited += std::time::Duration::from_millis(50);
    }
    assert!(
        store.known_intact_lately(&other),
        "found again, at its length"
    );
    // The sweep's own removals are known at once.
    let now = std::time::SystemTime::now();
    used(&store.path(&other), now, 3600);
    let swept = store.sweep(None, &Default::default(), 1, now);
    assert!(swept.removed > 0, "{swept:?}");
    assert!(!store.known_intact_lately(&other));
}

/// Sets when `path` was last used, `ago` before `now`.
fn used(path: &Path, now: std::time::SystemTime, ago: u64) {
    let file = File::open(path).expect("open");
    file.set_modified(now - std::time::Duration::from_secs(ago))
        .expect("set mtime");
}

#[test]
fn the_sweep_removes_the_least_recently_used_until_under_the_bound() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::open(tmp.path()).expect("open");
    let now = std::time::SystemTime::now();
    let old = store.put_bytes(&[1u8; 1000]).expect("put");
    let middle = store.put_bytes(&[2u8; 1000]).expect("put");
    let young = store.put_bytes(&[3u8; 1000]).expect("put");
    used(&store.path(&old), now, 3 * 3600);
    used(&store.path(&middle), now, 2 * 3600);
    used(&store.path(&young), now, 3600);
    let compiled = tmp.path().join("cache/modules");
    std::fs::create_dir_all(&compiled).expect("mkdir");
    let cwasm = compiled.join(format!("{}-wasmtime-x86_64-00.cwasm", old.to_hex()));
    std::fs::write(&cwasm, [0u8; 500]).expect("write");
    used(&cwasm, now, 4 * 3600);
    // Under the bound: nothing goes.
    let swept = store.sweep(Some(&compiled), &Default::default(), 10_000, now);
    assert_eq!((swept.before, swept.removed), (3500, 0), "{swept:?}");
    // 2000 bytes allowed: the compiled module and the oldest blob go.
    let swept = store.sweep(Some(&compiled), &Default::default(), 2000, now);
    assert_eq!((swept.after, swept.removed), (2000, 2), "{swept:?}");
    assert!(!cwasm.exists());
    assert!(!store.has(&old));
    assert!(store.has(&middle) && store.has(&young));
}

#[test]
fn the_sweep_never_removes_a_pinned_or_recently_used_blob() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::open(tmp.path()).expect("open");
    let now = std::time::SystemTime::now();
    let pinned = store.put_bytes(&[1u8; 1000]).expect("put");
    let tree_src = tmp.path().join("src");
    std::fs::create_dir_all(&tree_src).expect("mkdir");
    std::fs::write(tree_src.join("f"), [4u8; 1000]).expect("write");
    let tree = store.put_tree(&tree_src).expect("tree");
    let in_tree = store.listing(&tree).expect("listing").files[0].hash;
    let loose = store.put_bytes(&[2u8; 1000]).expect("put");
    let recent = store.put_bytes(&[3u8; 1000]).expect("put");
    for (hash, ago) in [
        (pinned, 5 * 3600),
        (tree, 5 * 3600),
        (in_tree, 5 * 3600),
        (loose, 3600),
        (recent, 60),
    ] {
        used(&store.path(&hash), now, ago);
    }
    let pins = [pinned, tree].into_iter().collect();
    // A bound nothing can meet: only the loose old blob may go.
    let swept = store.sweep(None, &pins, 1, now);
    assert_eq!(swept.removed, 1, "{swept:?}");
    assert!(!store.has(&loose));
    assert!(store.has(&pinned), "a live job's blob stays");
    assert!(
        store.has(&tree) && store.has(&in_tree),
        "its tree's files too"
    );
    assert!(store.has(&recent), "what was just used stays");
}

#[test]
fn a_blob_used_is_marked_used_for_the_sweep() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let now = std::time::SystemTime::now();
    let hash = {
        let store = BlobStore::open(tmp.path()).expect("open");
        let hash = store.put_bytes(&[9u8; 1000]).expect("put");
        used(&store.path(&hash), now, 5 * 3600);
        hash
    };
    // The next process uses it: it is no longer the oldest.
    let store = BlobStore::open(tmp.path()).expect("open");
    let other = store.put_bytes(&[8u8; 1000]).expect("put");
    used(&store.path(&other), now, 3600);
    assert!(store.is_intact(&hash));
    let swept = store.sweep(None, &Default::default(), 1000, now + RECENT);
    assert_eq!(swept.removed, 1, "{swept:?}");
    assert!(store.has(&hash), "the blob just used stays");
    assert!(!store.has(&other));
}

#[test]
fn files_stored_together_come_back_in_order_each_under_its_hash() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::open(&tmp.path().join("data")).expect("open");
    let contents: [&[u8]; 4] = [b"one", b"two", b"one", b""];
    let paths: Vec<PathBuf> = contents
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            let path = tmp.path().join(format!("f{i}"));
            std::fs::write(&path, bytes).expect("write");
            path
        })
        .collect();
    let stored = store
        .put_files(paths.iter().map(PathBuf::as_path))
        .expect("stored");
    assert_eq!(stored.len(), 4);
    for ((hash, size), bytes) in stored.iter().zip(contents) {
        assert_eq!(*hash, ContentHash::of(bytes));
        assert_eq!(*size, bytes.len() as u64);
        assert_eq!(store.read(hash, 10).expect("read"), bytes);
    }
    // A file that cannot be read fails the whole, naming it.
    let missing = tmp.path().join("gone");
    let err = store
        .put_files([paths[0].as_path(), missing.as_path()])
        .expect_err("a missing file");
    assert!(format!("{err:#}").contains("gone"), "{err:#}");
}

#[test]
fn bytes_stored_under_a_hash_given_are_checked_against_it_when_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::open(tmp.path()).expect("open");
    let wrong = ContentHash::of(b"other bytes");
    assert!(
        store.put_hashed(b"module bytes", wrong).is_err(),
        "stored under a hash that is not theirs"
    );
    assert!(!store.has(&wrong));
    let right = ContentHash::of(b"module bytes");
    assert_eq!(
        store.put_hashed(b"module bytes", right).expect("put"),
        right
    );
    assert_eq!(store.read(&right, 100).expect("read"), b"module bytes");
}

#[test]
fn bytes_put_again_over_a_torn_copy_of_the_same_length_replace_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::open(tmp.path()).expect("open");
    let hash = ContentHash::of(b"the module's bytes");
    plant(&store, &hash, b"the module's bytez");
    // Compared, not hashed: the copy is found wrong, removed, written again.
    assert_eq!(
        store.put_hashed(b"the module's bytes", hash).expect("put"),
        hash
    );
    let other = BlobStore::open(tmp.path()).expect("open");
    assert_eq!(other.read(&hash, 100).expect("read"), b"the module's bytes");
    // A right copy is taken as it is.
    assert_eq!(other.put_bytes(b"the module's bytes").expect("put"), hash);
}

#[test]
fn the_store_says_which_blobs_it_lacks_and_a_copy_gone_bad_is_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::open(tmp.path()).expect("open");
    let kept = store.put_bytes(b"kept as written").expect("put");
    let torn = store.put_bytes(b"a copy to tear").expect("put");
    let absent = ContentHash::of(b"never stored");
    assert_eq!(
        store.lacking(&[kept, absent, torn]).expect("ask"),
        vec![absent]
    );
    // A copy torn while no process had checked it (after a restart):
    // found when asked about, and removed so that it is written again.
    std::fs::remove_file(store.path(&torn)).expect("remove");
    plant(&store, &torn, b"a copy to teaR");
    let restarted = BlobStore::open(tmp.path()).expect("open");
    assert_eq!(restarted.lacking(&[kept, torn]).expect("ask"), vec![torn]);
    assert!(!restarted.has(&torn), "the torn copy is removed");
    assert!(restarted.is_intact(&kept));
}
