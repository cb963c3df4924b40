//! Invite tokens kept off the command line (`corral join -`, `--token-file`)
//! and the hostile ones: expired, edited, oversize, of the old format.

use std::os::unix::fs::PermissionsExt;

use crate::{Sandbox, assert_code, text};

/// `out` was refused as a usage error naming `what`, and `data` holds no
/// identity.
#[track_caller]
fn refused(sb: &Sandbox, out: &std::process::Output, what: &str, data: &str) {
    assert_code(out, 2);
    assert!(text(&out.stderr).contains(what), "{}", text(&out.stderr));
    assert!(!sb.path(data).join("node.key").exists(), "{data} joined");
}

#[test]
fn join_reads_the_token_from_stdin_or_a_file() {
    let sb = Sandbox::new();
    let token = sb.mesh_and_token("laptop", &[]);
    let swarm = std::fs::read(sb.path("a/swarm.key")).expect("swarm.key");

    let out = sb.corral_with_stdin(
        &["--data-dir", "b", "join", "-", "--name", "pi"],
        format!("{token}\n").as_bytes(),
    );
    assert_code(&out, 0);
    assert_eq!(
        std::fs::read(sb.path("b/swarm.key")).ok(),
        Some(swarm.clone())
    );

    let file = sb.path("token");
    std::fs::write(&file, format!("\n{token}\n")).expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let path = file.display().to_string();
    let out = sb.corral(&["--data-dir", "c", "join", "--token-file", &path]);
    assert_code(&out, 0);
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(sb.path("c/swarm.key")).ok(), Some(swarm));

    // A file others can read still works, with a warning saying why not.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = sb.corral(&["--data-dir", "d", "join", "--token-file", &path]);
    assert_code(&out, 0);
    assert!(
        text(&out.stderr).contains("readable by other users"),
        "{}",
        text(&out.stderr)
    );

    // Neither a token nor a file: a usage error, not a wait.
    assert_code(&sb.corral(&["--data-dir", "e", "join"]), 2);
}

#[test]
fn an_expired_token_is_refused() {
    let sb = Sandbox::new();
    let token = sb.mesh_and_token("laptop", &["--expires", "1s"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = sb.corral_with_stdin(&["--data-dir", "b", "join", "-"], token.as_bytes());
    refused(&sb, &out, "expired", "b");
    // And one cannot ask for a token that lasts for ever.
    let out = sb.corral(&["--data-dir", "a", "invite", "--expires", "400days"]);
    assert_code(&out, 2);
    assert!(
        text(&out.stderr).contains("--expires"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_edited_token_is_refused_as_tampered() {
    let sb = Sandbox::new();
    let token = sb.mesh_and_token("laptop", &[]);
    // The inviter's name, `laptop`, is in the token's signed bytes; change
    // one letter (`laPtop`) and keep the length.
    let edited = token.replacen(&hex::encode("laptop"), &hex::encode("laPtop"), 1);
    assert_ne!(edited, token, "the name is in the token");
    let out = sb.corral_with_stdin(&["--data-dir", "b", "join", "-"], edited.as_bytes());
    refused(&sb, &out, "tampered", "b");
}

#[test]
fn oversize_or_old_input_is_refused() {
    let sb = Sandbox::new();
    let token = sb.mesh_and_token("laptop", &[]);
    let huge = format!("{token}{}", " ".repeat(20 * 1024));
    let out = sb.corral_with_stdin(&["--data-dir", "b", "join", "-"], huge.as_bytes());
    refused(&sb, &out, "stdin holds more than 16384 bytes", "b");

    let file = sb.path("huge");
    std::fs::write(&file, "a".repeat(1024 * 1024)).expect("write");
    let path = file.display().to_string();
    let out = sb.corral(&["--data-dir", "b", "join", "--token-file", &path]);
    refused(&sb, &out, "more than 16384 bytes", "b");

    let out = sb.corral(&["--data-dir", "b", "join", "--token-file", "no-such-file"]);
    refused(&sb, &out, "no-such-file", "b");

    let out = sb.corral_with_stdin(&["--data-dir", "b", "join", "-"], b"corral1a4006d00\n");
    refused(&sb, &out, "older format", "b");
}
