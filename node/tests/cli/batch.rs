//! Batches: the OUT layout, job.json, --inputs, --dir, --env and exit codes.

use crate::{Sandbox, assert_code, examples_dir, job_json, module, text};

#[test]
fn a_batch_writes_the_documented_layout_and_job_json() {
    let sb = Sandbox::new();
    let out_dir = sb.path("out");
    let out = sb.corral(&[
        "run",
        "--local",
        &module("testkit"),
        "--tasks",
        "3",
        "--out",
        "out",
        "--",
        "write",
        "/output/t{task}/result.txt",
        "task {task}",
    ]);
    assert_code(&out, 0);
    for i in 0..3 {
        let task = out_dir.join(i.to_string());
        assert_eq!(
            std::fs::read_to_string(task.join("stdout")).expect("stdout"),
            "ok\n"
        );
        assert_eq!(std::fs::read(task.join("stderr")).expect("stderr"), b"");
        assert_eq!(
            std::fs::read_to_string(task.join(format!("files/output/t{i}/result.txt")))
                .expect("output file"),
            format!("task {i}")
        );
    }
    let job = job_json(&out_dir);
    assert_eq!(job["state"], "completed");
    assert_eq!(job["tasks_total"], 3);
    assert_eq!(job["tasks_done"], 3);
    assert_eq!(job["tasks_failed"], 0);
    assert_eq!(job["id"].as_str().map(str::len), Some(32));
    let task = &job["tasks"][1];
    assert_eq!(task["index"], 1);
    assert_eq!(task["state"], "done");
    assert_eq!(task["exit_code"], 0);
    assert_eq!(task["reason"], "exit");
    assert_eq!(task["attempts"], 1);
    assert_eq!(task["arch"], std::env::consts::ARCH);
    assert!(task["peer"].is_string() && task["engine"].is_string());
    assert!(task["duration_ms"].is_u64());
    assert_eq!(task["stdout_sha256"], sha256_hex(b"ok\n"));
    assert_eq!(task["files"][0]["path"], "/output/t1/result.txt");
}

fn sha256_hex(bytes: &[u8]) -> String {
    corral_protocol::hash::ContentHash::of(bytes).to_hex()
}

#[test]
fn a_failed_task_makes_the_batch_exit_1_and_is_recorded() {
    let sb = Sandbox::new();
    let out = sb.corral(&[
        "run",
        "--local",
        &module("testkit"),
        "--tasks",
        "3",
        "--out",
        "out",
        "--",
        "exit",
        "{task}",
    ]);
    assert_code(&out, 1);
    let job = job_json(&sb.path("out"));
    assert_eq!(job["state"], "failed");
    assert_eq!(job["tasks_done"], 1);
    assert_eq!(job["tasks_failed"], 2);
    assert_eq!(job["tasks"][2]["exit_code"], 2);
    assert_eq!(job["tasks"][2]["state"], "failed");
    assert!(
        text(&out.stderr).contains("task 2 failed: exited with 2"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn limits_in_a_batch_are_recorded_per_task_with_their_reason() {
    let sb = Sandbox::new();
    let out = sb.corral(&[
        "run",
        "--local",
        &module("testkit"),
        "--tasks",
        "1",
        "--out",
        "out",
        "--timeout",
        "200ms",
        "--",
        "loop",
    ]);
    assert_code(&out, 1);
    let job = job_json(&sb.path("out"));
    assert_eq!(job["tasks"][0]["reason"], "timeout");
    assert!(job["tasks"][0]["exit_code"].is_null());
}

#[test]
fn inputs_become_one_task_each_at_slash_input() {
    let sb = Sandbox::new();
    let inputs = examples_dir().join("wordfreq/inputs");
    let names: Vec<String> = {
        let mut n: Vec<String> = std::fs::read_dir(&inputs)
            .expect("inputs")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    let out = sb.corral(&[
        "run",
        "--local",
        &module("testkit"),
        "--inputs",
        &inputs.display().to_string(),
        "--out",
        "out",
        "--",
        "read",
        "{input}",
    ]);
    assert_code(&out, 0);
    let job = job_json(&sb.path("out"));
    assert_eq!(job["tasks_total"], names.len());
    for (i, name) in names.iter().enumerate() {
        assert_eq!(job["tasks"][i]["input"], name.as_str());
        let got = std::fs::read(sb.path(&format!("out/{i}/stdout"))).expect("stdout");
        let want = std::fs::read(inputs.join(name)).expect("input");
        assert_eq!(got, want, "task {i} should have read {name}");
    }
}

#[test]
fn a_task_filling_its_disk_is_stopped_and_recorded_as_disk_limit() {
    let sb = Sandbox::new();
    for engine in ["jit", "interp"] {
        let dir = format!("out-{engine}");
        let out = sb.corral(&[
            "run",
            "--local",
            "--engine",
            engine,
            &module("diskfill"),
            "--out",
            &dir,
            "--disk",
            "4MiB",
            "--",
            "bytes",
            "/output",
        ]);
        assert_code(&out, 1);
        let job = job_json(&sb.path(&dir));
        assert_eq!(job["tasks"][0]["reason"], "disk_limit", "{engine}");
        let kept: u64 = walkdir::WalkDir::new(sb.path(&dir))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_name() == "fill")
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        assert!(kept <= 4 << 20, "{engine}: {kept} bytes came back");
    }
    // Without --out a single task (which has no /output: it writes in
    // the read-write tree it was given) says why, like the other limits.
    let scratch = sb.path("scratch");
    std::fs::create_dir_all(&scratch).expect("mkdir");
    let scratch = format!("{}::/scratch:rw", scratch.display());
    let out = sb.corral(&[
        "run",
        "--local",
        &module("diskfill"),
        "--dir",
        &scratch,
        "--files",
        "5",
        "--",
        "files",
        "/scratch",
    ]);
    assert_code(&out, 125);
    assert!(
        text(&out.stderr).contains("--files"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn read_write_dirs_are_private_per_task_and_changes_come_back() {
    let sb = Sandbox::new();
    let shared = sb.path("shared");
    std::fs::create_dir_all(shared.join("sub")).expect("mkdir");
    std::fs::write(shared.join("sub/seed.txt"), "seed").expect("write");
    let spec = format!("{}::/work:rw", shared.display());
    let out = sb.corral(&[
        "run",
        "--local",
        &module("testkit"),
        "--tasks",
        "2",
        "--out",
        "out",
        "--dir",
        &spec,
        "--",
        "write",
        "/work/sub/seed.txt",
        "changed by {task}",
    ]);
    assert_code(&out, 0);
    for i in 0..2 {
        assert_eq!(
            std::fs::read_to_string(sb.path(&format!("out/{i}/files/work/sub/seed.txt")))
                .expect("changed file came back"),
            format!("changed by {i}")
        );
    }
    assert_eq!(
        std::fs::read_to_string(shared.join("sub/seed.txt")).expect("host"),
        "seed"
    );

    // Read-only (the default): the same write fails and the host is untouched.
    let ro = format!("{}::/work", shared.display());
    let out = sb.corral(&[
        "run",
        "--local",
        &module("testkit"),
        "--out",
        "out2",
        "--dir",
        &ro,
        "--",
        "write",
        "/work/sub/seed.txt",
        "nope",
    ]);
    assert_code(&out, 1);
    assert_eq!(
        std::fs::read_to_string(shared.join("sub/seed.txt")).expect("host"),
        "seed"
    );
}

#[test]
fn env_is_exactly_the_given_variables() {
    let sb = Sandbox::new();
    let out = sb.corral(&[
        "run",
        "--local",
        &module("testkit"),
        "--env",
        "ZED=last",
        "--env",
        "ALPHA=a=b",
        "--",
        "env",
    ]);
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), "ALPHA=a=b\nZED=last\n");
}

#[test]
fn out_never_clobbers_a_directory_that_is_not_a_job() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path("precious")).expect("mkdir");
    std::fs::write(sb.path("precious/thesis.tex"), "years of work").expect("write");
    let out = sb.corral(&[
        "run",
        "--local",
        &module("testkit"),
        "--out",
        "precious",
        "--",
        "args",
    ]);
    assert_code(&out, 2);
    assert!(sb.path("precious/thesis.tex").exists());
}

#[test]
fn the_demo_renders_and_stitches_a_picture() {
    let sb = Sandbox::new();
    let out = sb.corral(&["demo", "--out", "demo", "--tasks", "4", "--no-wait"]);
    assert_code(&out, 0);
    let png = std::fs::read(sb.path("demo/mandelbrot.png")).expect("picture");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height, big-endian, at bytes 16..24.
    assert_eq!(
        u32::from_be_bytes(png[16..20].try_into().expect("4 bytes")),
        1024
    );
    assert_eq!(
        u32::from_be_bytes(png[20..24].try_into().expect("4 bytes")),
        768
    );
    // Every tile ran somewhere on the demo's mesh: the per-device lines add
    // up to the tiles asked for.
    let stdout = text(&out.stdout);
    let tiles: u32 = stdout
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_suffix(" tiles")?
                .rsplit(' ')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .sum();
    assert_eq!(tiles, 4, "{stdout}");
    assert!(stdout.contains("laptop"), "{stdout}");
}
