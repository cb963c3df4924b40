//! One task without --out behaves like running the module directly.

use crate::{Sandbox, assert_code, module, text};

#[test]
fn stdin_stdout_and_the_exit_code_pass_through() {
    let sb = Sandbox::new();
    let tk = module("testkit");
    for engine in ["jit", "interp"] {
        let out = sb.corral_with_stdin(
            &["run", "--local", "--engine", engine, &tk, "--", "stdin"],
            b"piped through\n",
        );
        assert_code(&out, 0);
        assert_eq!(text(&out.stdout), "piped through\n", "{engine}");

        let out = sb.corral(&["run", "--local", "--engine", engine, &tk, "--", "exit", "3"]);
        assert_code(&out, 3);

        let out = sb.corral(&[
            "run",
            "--local",
            "--engine",
            engine,
            &tk,
            "--",
            "stderr",
            "to stderr",
        ]);
        assert_code(&out, 0);
        assert_eq!(text(&out.stderr).trim_end(), "to stderr", "{engine}");
    }
}

#[test]
fn traps_and_limits_exit_125_with_the_reason() {
    let sb = Sandbox::new();
    let tk = module("testkit");
    for engine in ["jit", "interp"] {
        for (args, needle) in [
            (vec!["--timeout", "300ms", "--", "loop"], "time limit"),
            (vec!["--memory", "32MiB", "--", "alloc"], "more memory"),
            (vec!["--output-limit", "64KiB", "--", "flood"], "more than"),
            (vec!["--", "trap"], "trapped"),
            (vec!["--", "recurse"], "trapped"),
        ] {
            let mut full = vec!["run", "--local", "--engine", engine, &tk];
            full.extend(args.iter().copied());
            let out = sb.corral(&full);
            assert_code(&out, 125);
            assert!(
                text(&out.stderr).contains(needle),
                "{engine} {args:?}: {}",
                text(&out.stderr)
            );
        }
    }
}

#[test]
fn usage_errors_exit_2_and_say_what_is_wrong() {
    let sb = Sandbox::new();
    let tk = module("testkit");
    std::fs::write(sb.path("not.wasm"), "(module)").expect("write");
    let not_wasm = sb.path("not.wasm").display().to_string();
    for (args, needle) in [
        (vec!["run", "--local", "missing.wasm"], "cannot read module"),
        (
            vec!["run", "--local", &not_wasm],
            "not a WebAssembly module",
        ),
        (vec!["run", "--local", &tk, "--tasks", "0"], "at least 1"),
        (
            vec!["run", "--local", &tk, "--dir", "/no/such/dir"],
            "not a directory",
        ),
        (
            // A relative guest name is allowed (as `wasmtime run --dir`
            // gives one); one climbing out with `..` is not.
            vec!["run", "--local", &tk, "--dir", ".::a/../b"],
            "`..`",
        ),
        (vec!["run", "--local", &tk, "--env", "NOVALUE"], "K=V"),
        (
            vec!["run", "--local", &tk, "--timeout", "soon"],
            "not a duration",
        ),
        (
            vec!["run", "--local", &tk, "--memory", "lots"],
            "not a size",
        ),
        (
            vec!["run", "--local", &tk, "--disk", "0"],
            "for '--disk <SIZE>': `0` is zero",
        ),
        (
            vec!["run", "--local", &tk, "--disk", "2TB"],
            "for '--disk <SIZE>': `2TB` is more than the largest disk limit, 1.0 TiB",
        ),
        (
            vec!["run", "--local", &tk, "--disk", "plenty"],
            "for '--disk <SIZE>': `plenty` is not a size",
        ),
        (
            vec!["run", "--local", &tk, "--files", "0"],
            "for '--files <N>': `0` is not a number of files",
        ),
        (vec!["run", &tk], "--local"),
    ] {
        let out = sb.corral(&args);
        assert_code(&out, 2);
        assert!(
            text(&out.stderr).contains(needle),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn files_written_without_out_are_reported_as_discarded() {
    let sb = Sandbox::new();
    let scratch = sb.path("scratch");
    std::fs::create_dir(&scratch).expect("scratch");
    let dir = format!("{}::/scratch:rw", scratch.display());
    let tk = module("testkit");
    let out = sb.corral(&[
        "run",
        "--local",
        &tk,
        "--dir",
        &dir,
        "--",
        "write",
        "/scratch/x.txt",
        "x",
    ]);
    assert_code(&out, 0);
    assert!(text(&out.stderr).contains("--out"), "{}", text(&out.stderr));
    assert!(
        !scratch.join("x.txt").exists(),
        "the host tree is left alone"
    );
    // One pass-through task has no /output: only what it was given.
    let out = sb.corral(&["run", "--local", &tk, "--", "write", "/output/x.txt", "x"]);
    assert_code(&out, 1);
}

/// A device with little address space (a 1 GiB Pi, a service under
/// `LimitAS=`): the JIT must bounds-check memories instead of reserving
/// 4 GiB plus guards for each, or every instantiation fails.
#[test]
fn the_jit_runs_under_a_small_address_space_limit() {
    let Ok(out) = std::process::Command::new("prlimit")
        .arg(format!("--as={}", 2u64 << 30))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_corral"))
        .args(["run", "--local", "--engine", "jit", &module("primes")])
        .args(["--", "0", "1", "100000"])
        .output()
    else {
        eprintln!("\n!!! SKIPPING: prlimit (util-linux) is missing !!!\n");
        return;
    };
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), "task 0/1: 9592 primes in [0, 100000)\n");
}
