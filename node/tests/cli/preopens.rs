//! What a task is given (DESIGN §6, §9): exactly the user's preopens, in
//! order, from fd 3; in a batch `/input` and `/output` after them; the same
//! through a daemon as with `--local`; guest `/` read-only or read-write;
//! clear refusals of preopens that cannot work.

use crate::{Daemon, Sandbox, assert_code, module, text};

/// A host tree with `existing.txt` and `output/keep.txt`.
fn tree(sb: &Sandbox, name: &str) -> String {
    let dir = sb.path(name);
    std::fs::create_dir_all(dir.join("output")).expect("tree");
    std::fs::write(dir.join("existing.txt"), "old").expect("existing file");
    std::fs::write(dir.join("output/keep.txt"), "kept").expect("nested file");
    dir.display().to_string()
}

/// `corral RUN preopens.wasm FLAGS…` (RUN: `run --local …` or `--data-dir
/// D run …`): its output.
fn run(sb: &Sandbox, how: &[&str], flags: &[&str]) -> std::process::Output {
    let guest = module("preopens");
    let mut args: Vec<&str> = how.to_vec();
    args.push(&guest);
    args.extend(flags);
    sb.corral(&args)
}

/// The preopen listings of a single task and of a batch's task, and what a
/// task writing at `/` brings back, run as `daemon` says.
fn check_listings(sb: &Sandbox, daemon: &[&str], tag: &str) {
    let a = tree(sb, &format!("a-{tag}"));
    let b = tree(sb, &format!("b-{tag}"));
    let inputs = sb.path(&format!("in-{tag}"));
    std::fs::create_dir_all(&inputs).expect("inputs");
    std::fs::write(inputs.join("one.txt"), "1").expect("input");
    let inputs = inputs.display().to_string();
    let root_ro = format!("{a}::/:ro");

    // (a) One pass-through task sees only what it was given: no /output.
    let out = run(sb, daemon, &[]);
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), "", "{tag}: no preopens at all");
    let out = run(sb, daemon, &["--dir", &root_ro]);
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), "3 /\n", "{tag}");
    // In the user's order, nested paths allowed (as `wasmtime run` does).
    let data = format!("{b}::/data");
    let out = run(sb, daemon, &["--dir", &root_ro, "--dir", &data]);
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), "3 /\n4 /data\n", "{tag}");
    let out = run(sb, daemon, &["--dir", &data, "--dir", &root_ro]);
    assert_eq!(text(&out.stdout), "3 /data\n4 /\n", "{tag}");
    // Without a batch, /output is the user's to use.
    let output = format!("{b}::/output");
    let out = run(sb, daemon, &["--dir", &output]);
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), "3 /output\n", "{tag}");

    // (b) A batch: the user's first, then /input, then /output.
    let out_dir = format!("out-{tag}-b");
    let out = run(
        sb,
        daemon,
        &["--tasks", "2", "--out", &out_dir, "--dir", &data],
    );
    assert_code(&out, 0);
    for task in ["0", "1"] {
        let listing =
            std::fs::read_to_string(sb.path(&out_dir).join(task).join("stdout")).expect("stdout");
        assert_eq!(listing, "3 /data\n4 /output\n", "{tag} task {task}");
    }
    let out_dir = format!("out-{tag}-i");
    let out = run(
        sb,
        daemon,
        &["--inputs", &inputs, "--out", &out_dir, "--dir", &root_ro],
    );
    assert_code(&out, 0);
    let listing = std::fs::read_to_string(sb.path(&out_dir).join("0/stdout")).expect("stdout");
    assert_eq!(listing, "3 /\n4 /input\n5 /output\n", "{tag}");

    // (d) rw at `/`: a new file and a changed one come back under
    // files/<guest path>; the host tree is left as it was. A file written
    // at one guest path through both `/` (straight through fd 3, not as
    // the libc would) and the batch's /output comes back once, from
    // /output, the longest matching preopen.
    let out_dir = format!("out-{tag}-rw");
    let root_rw = format!("{a}::/:rw");
    let out = run(
        sb,
        daemon,
        &[
            "--out",
            &out_dir,
            "--dir",
            &root_rw,
            "--",
            "/new.txt=new",
            "/existing.txt=changed",
            "@3:output/x.txt=through fd 3",
            "/output/x.txt=through /output",
        ],
    );
    assert_code(&out, 0);
    let files = sb.path(&out_dir).join("0/files");
    assert_eq!(
        std::fs::read_to_string(files.join("new.txt")).expect("new.txt came back"),
        "new",
        "{tag}"
    );
    assert_eq!(
        std::fs::read_to_string(files.join("existing.txt")).expect("existing.txt came back"),
        "changed",
        "{tag}"
    );
    assert_eq!(
        std::fs::read_to_string(files.join("output/x.txt")).expect("x.txt came back"),
        "through /output",
        "{tag}"
    );
    assert_eq!(
        std::fs::read_to_string(sb.path(&format!("a-{tag}/existing.txt"))).expect("host"),
        "old",
        "{tag}: the host tree is not changed"
    );
    assert_eq!(
        std::fs::read_to_string(sb.path(&out_dir).join("0/stdout")).expect("stdout"),
        "3 /\n4 /output\n",
        "{tag}"
    );

    // (e) A relative guest name (`wasmtime run --dir X`): preopened as
    // given; its files come back under files/<name>.
    let out_dir = format!("out-{tag}-rel");
    let named = format!("{b}::fs-tests.dir:rw");
    let out = run(
        sb,
        daemon,
        &["--out", &out_dir, "--dir", &named, "--", "@3:new.txt=rel"],
    );
    assert_code(&out, 0);
    assert_eq!(
        std::fs::read_to_string(sb.path(&out_dir).join("0/files/fs-tests.dir/new.txt"))
            .expect("new.txt came back"),
        "rel",
        "{tag}"
    );
}

#[test]
fn local_tasks_see_exactly_the_preopens_given_in_order() {
    let sb = Sandbox::new();
    for engine in ["jit", "interp"] {
        check_listings(&sb, &["run", "--local", "--engine", engine], engine);
    }
}

#[test]
fn tasks_through_a_daemon_see_the_same_preopens_as_local_ones() {
    let sb = Sandbox::new();
    sb.mesh_of_two("one", "two");
    let _a = Daemon(sb.daemon("a", &["--share", "always"], &["--slots", "2"], &[]));
    check_listings(&sb, &["--data-dir", "a", "run"], "mesh");
}

#[test]
fn preopens_that_cannot_work_are_refused_naming_the_flag() {
    let sb = Sandbox::new();
    let a = tree(&sb, "a");
    let b = tree(&sb, "b");
    let inputs = sb.path("in");
    std::fs::create_dir_all(&inputs).expect("inputs");
    std::fs::write(inputs.join("one.txt"), "1").expect("input");
    let inputs = inputs.display().to_string();
    let missing = sb.path("no-such-dir").display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--dir".into(),
                format!("{a}::/x"),
                "--dir".into(),
                format!("{b}::/x/"),
            ],
            "two --dir",
        ),
        (
            vec![
                "--dir".into(),
                format!("{a}::/"),
                "--dir".into(),
                format!("{b}::/:rw"),
            ],
            "two --dir",
        ),
        (
            vec![
                "--tasks".into(),
                "2".into(),
                "--dir".into(),
                format!("{a}::/output"),
            ],
            "/output",
        ),
        (
            vec![
                "--out".into(),
                "o".into(),
                "--dir".into(),
                format!("{a}::/output"),
            ],
            "/output",
        ),
        (
            vec![
                "--inputs".into(),
                inputs.clone(),
                "--dir".into(),
                format!("{a}::/input"),
            ],
            "/input",
        ),
        (vec!["--dir".into(), format!("{a}::/a/../b")], "`..`"),
        (vec!["--dir".into(), format!("{a}::../b")], "`..`"),
        (vec!["--dir".into(), format!("{a}::")], "empty"),
        (
            vec![
                "--dir".into(),
                format!("{a}::data"),
                "--dir".into(),
                format!("{b}::data/"),
            ],
            "two --dir",
        ),
        (vec!["--dir".into(), missing], "not a directory"),
    ];
    for (flags, needle) in cases {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let out = run(&sb, &["run", "--local"], &flags);
        assert_code(&out, 2);
        let err = text(&out.stderr);
        assert!(
            err.contains("--dir") && err.contains(needle),
            "{flags:?}: {err}"
        );
    }
}

/// Relative guest names, as `wasmtime run --dir X` (guest `X`) and `--dir
/// .` give them: preopened under the name as given, on both engines; what a
/// task writes in a relative rw tree comes back under files/<name>.
#[test]
fn relative_guest_names_are_preopened_as_given() {
    let sb = Sandbox::new();
    let a = tree(&sb, "a");
    let b = tree(&sb, "b");
    for engine in ["jit", "interp"] {
        let local = ["run", "--local", "--engine", engine];
        let dot = format!("{b}::.");
        let named = format!("{a}::fs-tests.dir:rw");
        let out = run(&sb, &local, &["--dir", &named, "--dir", &dot]);
        assert_code(&out, 0);
        assert_eq!(text(&out.stdout), "3 fs-tests.dir\n4 .\n", "{engine}");

        let out_dir = format!("out-rel-{engine}");
        let out = run(
            &sb,
            &local,
            &["--out", &out_dir, "--dir", &named, "--", "@3:new.txt=rel"],
        );
        assert_code(&out, 0);
        let task = sb.path(&out_dir).join("0");
        assert_eq!(
            std::fs::read_to_string(task.join("stdout")).expect("stdout"),
            "3 fs-tests.dir\n4 /output\n",
            "{engine}"
        );
        assert_eq!(
            std::fs::read_to_string(task.join("files/fs-tests.dir/new.txt")).expect("came back"),
            "rel",
            "{engine}"
        );
    }
}
