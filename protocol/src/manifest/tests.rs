//! The manifest's tests: a valid sample, argument rendering, every bound.

use super::*;

/// A valid manifest for tests.
pub(crate) fn sample(submitter: PeerKey) -> JobManifest {
    JobManifest {
        version: crate::PROTOCOL_VERSION,
        job: JobId::from_bytes([1; 16]),
        submitter,
        module_hash: ContentHash::of(b"module"),
        module_size: 1234,
        args: vec!["tile".into(), "{task}".into(), "16".into()],
        env: BTreeMap::from([("LANG".to_string(), "C".to_string())]),
        dirs: vec![DirSpec {
            guest_path: "/data".into(),
            tree_hash: ContentHash::of(b"tree"),
            writable: false,
        }],
        tasks: TaskSet::Count(16),
        limits: Limits::default(),
        engine: EngineReq::Any,
        redundancy: 1,
        created_ms: 1_700_000_000_000,
        expires_ms: 1_700_000_000_000 + 3_600_000,
        nonce: Nonce([9; 16]),
        stdin: None,
        output: true,
    }
}

#[test]
fn a_sample_manifest_is_valid() {
    assert_eq!(sample(PeerKey::from_bytes([2; 32])).validate(), Ok(()));
}

#[test]
fn preopens_at_the_root_and_the_batch_paths_are_judged_by_the_job() {
    let mut m = sample(PeerKey::from_bytes([2; 32]));
    m.dirs[0].guest_path = "/".into();
    assert_eq!(m.validate(), Ok(()), "guest / is a preopen like any other");
    m.dirs.push(DirSpec {
        guest_path: "/data".into(),
        ..m.dirs[0].clone()
    });
    assert_eq!(m.validate(), Ok(()), "nested guest paths are allowed");
    // A single task without /output may have the user's own there, and
    // /input is nobody's in a job without inputs.
    m.output = false;
    m.dirs[1].guest_path = "/output".into();
    assert_eq!(m.validate(), Ok(()));
    m.dirs[1].guest_path = "/input".into();
    assert_eq!(m.validate(), Ok(()));
    m.output = true;
    assert_eq!(m.validate(), Ok(()));
}

#[test]
fn relative_guest_names_are_preopens_as_wasmtime_gives_them() {
    let mut m = sample(PeerKey::from_bytes([2; 32]));
    for name in ["data", ".", "fs-tests.dir", "a/b", "./x"] {
        m.dirs[0].guest_path = name.into();
        assert_eq!(m.validate(), Ok(()), "{name}");
    }
    assert_eq!(preopen_key("."), "/");
    assert_eq!(preopen_key("fs-tests.dir"), "/fs-tests.dir");
    assert_eq!(preopen_key("./a/./b/"), "/a/b");
    assert_eq!(preopen_key("/data"), "/data");
}

#[test]
fn args_are_rendered_per_task() {
    let mut m = sample(PeerKey::from_bytes([2; 32]));
    assert_eq!(m.task_args(3), vec!["tile", "3", "16"]);
    m.args = vec!["{input}".into(), "x{task}y".into()];
    m.tasks = TaskSet::Inputs(vec![InputSpec {
        name: "a.txt".into(),
        hash: ContentHash::of(b"a"),
        size: 1,
    }]);
    assert_eq!(m.task_args(0), vec!["/input/a.txt", "x0y"]);
}

#[test]
fn each_bound_is_enforced_and_named() {
    let base = sample(PeerKey::from_bytes([2; 32]));
    type Mutation = Box<dyn Fn(&mut JobManifest)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("version", Box::new(|m| m.version = 99)),
        ("module_size", Box::new(|m| m.module_size = 0)),
        ("args", Box::new(|m| m.args = vec!["a\0b".into()])),
        (
            "args",
            Box::new(|m| m.args = vec![String::new(); MAX_ARGS + 1]),
        ),
        (
            "env",
            Box::new(|m| {
                m.env.insert("A=B".into(), "x".into());
            }),
        ),
        (
            "dirs",
            Box::new(|m| m.dirs[0].guest_path = "../data".into()),
        ),
        ("dirs", Box::new(|m| m.dirs[0].guest_path = "a/../b".into())),
        ("dirs", Box::new(|m| m.dirs[0].guest_path = String::new())),
        ("dirs", Box::new(|m| m.dirs[0].guest_path = "a\0b".into())),
        (
            "dirs",
            Box::new(|m| m.dirs[0].guest_path = "a".repeat(MAX_PATH_BYTES + 1)),
        ),
        (
            "dirs",
            Box::new(|m| {
                m.dirs[0].guest_path = "data".into();
                m.dirs.push(DirSpec {
                    guest_path: "/data".into(),
                    ..m.dirs[0].clone()
                });
            }),
        ),
        (
            "dirs",
            Box::new(|m| m.dirs[0].guest_path = "/a/../etc".into()),
        ),
        (
            "dirs",
            Box::new(|m| m.dirs[0].guest_path = "/output".into()),
        ),
        (
            "dirs",
            Box::new(|m| {
                m.dirs.push(m.dirs[0].clone());
            }),
        ),
        ("dirs", Box::new(|m| m.dirs[0].guest_path = "/a/".into())),
        ("dirs", Box::new(|m| m.dirs[0].guest_path = "//".into())),
        (
            "dirs",
            Box::new(|m| {
                m.tasks = TaskSet::Inputs(vec![InputSpec {
                    name: "a".into(),
                    hash: ContentHash::of(b""),
                    size: 0,
                }]);
                m.dirs[0].guest_path = "/input".into();
            }),
        ),
        (
            "output",
            Box::new(|m| {
                m.output = false;
                m.tasks = TaskSet::Inputs(vec![InputSpec {
                    name: "a".into(),
                    hash: ContentHash::of(b""),
                    size: 0,
                }]);
            }),
        ),
        ("tasks", Box::new(|m| m.tasks = TaskSet::Count(0))),
        (
            "tasks",
            Box::new(|m| m.tasks = TaskSet::Count(MAX_TASKS + 1)),
        ),
        (
            "tasks",
            Box::new(|m| {
                m.tasks = TaskSet::Inputs(vec![InputSpec {
                    name: "../x".into(),
                    hash: ContentHash::of(b""),
                    size: 0,
                }])
            }),
        ),
        ("limits.timeout_ms", Box::new(|m| m.limits.timeout_ms = 0)),
        (
            "limits.memory_bytes",
            Box::new(|m| m.limits.memory_bytes = MAX_MEMORY_BYTES + 1),
        ),
        (
            "limits.output_bytes",
            Box::new(|m| m.limits.output_bytes = 0),
        ),
        ("redundancy", Box::new(|m| m.redundancy = 0)),
        ("expires_ms", Box::new(|m| m.expires_ms = m.created_ms)),
        (
            "expires_ms",
            Box::new(|m| m.expires_ms = m.created_ms + MAX_LIFETIME_MS + 1),
        ),
    ];
    for (field, mutate) in cases {
        let mut m = base.clone();
        mutate(&mut m);
        let err = m.validate().expect_err(field);
        assert_eq!(err.field, field, "{err}");
    }
}
