//! A job's files shipped to the daemon's store (DESIGN §3): a file's hash
//! remembered between runs is never taken for a changed file's, and a
//! stored copy gone bad (found by the daemon) is written again, so the
//! task always reads the user's bytes.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::{Daemon, Sandbox, assert_code, module, text};

/// Writes `bytes` to `path` with modification time `mtime`.
fn write_at(path: &Path, bytes: &[u8], mtime: SystemTime) {
    std::fs::write(path, bytes).expect("write");
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(mtime))
        .expect("set mtime");
}

/// What the task prints of `/data/notes.txt`, shipped from `tree`.
fn read_notes(sb: &Sandbox, tree: &Path) -> String {
    let testkit = module("testkit");
    let data = format!("{}::/data", tree.display());
    let out = sb.corral(&[
        "--data-dir",
        "a",
        "run",
        &testkit,
        "--dir",
        &data,
        "--",
        "read",
        "/data/notes.txt",
    ]);
    assert_code(&out, 0);
    text(&out.stdout)
}

#[test]
fn a_changed_file_and_a_stored_copy_gone_bad_are_both_shipped_anew() {
    let sb = Sandbox::new();
    sb.mesh_and_token("one", &[]);
    let daemon = Daemon(sb.daemon("a", &["--share", "always"], &["--slots", "1"], &[]));
    let tree = sb.path("tree");
    std::fs::create_dir_all(&tree).expect("tree");
    let notes = tree.join("notes.txt");
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    write_at(&notes, b"first version", an_hour_ago);
    // Settled (its change time two seconds past): its hash is remembered.
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(read_notes(&sb, &tree), "first version");
    assert_eq!(read_notes(&sb, &tree), "first version");

    // Rewritten to the same size, its old modification time put back.
    write_at(&notes, b"other version", an_hour_ago);
    assert_eq!(read_notes(&sb, &tree), "other version");

    // The stored copy torn while the daemon is down (a power cut): the
    // restarted daemon finds it when asked, and the CLI writes it again.
    drop(daemon);
    let blob = corral_protocol::hash::ContentHash::of(b"other version").to_hex();
    let stored = sb.path("a").join("blobs").join(&blob[..2]).join(&blob);
    std::fs::remove_file(&stored).expect("the copy is stored");
    std::fs::write(&stored, b"other vErsion").expect("tear");
    let _daemon = Daemon(sb.daemon("a", &["--share", "always"], &["--slots", "1"], &[]));
    assert_eq!(read_notes(&sb, &tree), "other version");
}

#[test]
fn the_daemon_says_which_blobs_it_lacks_and_refuses_to_be_asked_too_many() {
    let sb = Sandbox::new();
    sb.mesh_and_token("one", &[]);
    let _daemon = Daemon(sb.daemon("a", &["--share", "always"], &["--slots", "1"], &[]));
    // The module is stored by a run; a hash nothing has is lacking.
    assert_code(
        &sb.corral(&[
            "--data-dir",
            "a",
            "run",
            &module("testkit"),
            "--",
            "exit",
            "0",
        ]),
        0,
    );
    let testkit =
        corral_protocol::hash::ContentHash::of(&std::fs::read(module("testkit")).expect("testkit"));
    let unknown = corral_protocol::hash::ContentHash::of(b"nothing has this");
    let answer = sb.control(
        "a",
        &serde_json::json!({"v": 1, "cmd": "lacking", "blobs": [testkit, unknown]}),
    );
    assert_eq!(
        answer["data"]["lacking"],
        serde_json::json!([unknown]),
        "{answer}"
    );

    // Too many at once: refused, naming the bound; the daemon goes on.
    let many = vec![unknown; 16_385];
    let answer = sb.control(
        "a",
        &serde_json::json!({"v": 1, "cmd": "lacking", "blobs": many}),
    );
    let why = &answer["error"];
    assert_eq!(answer["ok"], false, "answered, not refused: {why}");
    assert_eq!(answer["code"], "bad_request", "{why}");
    assert!(
        why.as_str()
            .is_some_and(|e| e.contains("16385 blobs") && e.contains("at most 16384")),
        "{why}"
    );
    assert_eq!(sb.status("a")["running"], 0);
}
