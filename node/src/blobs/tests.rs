//! Tests of the blob store: storing by hash, bounded chunks, trees, and
//! corrupt blobs found and removed.

use super::*;

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
