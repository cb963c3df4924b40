//! A job resolved from the command line and checked: the module, the per-task
//! arguments, the environment, the directories and the limits.

use std::path::{Component, Path, PathBuf};

pub use super::module::{PlanModule, load_module};
use crate::runtime::{EngineChoice, Limits};
use crate::usage::UsageError;

/// Most tasks one job may have.
pub const MAX_TASKS: u32 = 1_000_000;
/// Most arguments, and most bytes of all arguments together, per task.
const MAX_ARGS: usize = 4096;
const MAX_ARG_BYTES: usize = 1024 * 1024;
/// Most environment variables, and most bytes of them together.
const MAX_ENV: usize = 1024;
const MAX_ENV_BYTES: usize = 1024 * 1024;

// Where the guest finds its output directory and its inputs: part of the
// protocol, since the worker lays them out as the submitter planned.
use corral_protocol::manifest::preopen_key;
pub use corral_protocol::manifest::{GUEST_INPUT, GUEST_OUTPUT};
/// The default guest path of `--dir`.
pub const GUEST_DATA: &str = "/data";

/// What the tasks of a job iterate over.
#[derive(Clone, Debug)]
pub enum Tasks {
    /// `--tasks N` (or a single task).
    Count(u32),
    /// `--inputs DIR`: one task per file, in name order.
    Inputs {
        /// The directory.
        dir: PathBuf,
        /// File names, sorted.
        files: Vec<String>,
    },
}

/// A `--dir HOST[::GUEST][:ro|:rw]` mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirMount {
    /// The host directory.
    pub host: PathBuf,
    /// Where the guest sees it.
    pub guest: String,
    /// `rw`: each task gets a private copy whose changes come back.
    pub writable: bool,
}

/// A checked job, ready to run.
#[derive(Clone, Debug)]
pub struct JobPlan {
    /// The module.
    pub module: PlanModule,
    /// The module's name, argv[0] of every task.
    pub module_name: String,
    /// The argument template (`{task}`, `{input}`).
    pub args: Vec<String>,
    /// Exactly the guest's environment.
    pub env: Vec<(String, String)>,
    /// The tasks.
    pub tasks: Tasks,
    /// Shipped directories.
    pub dirs: Vec<DirMount>,
    /// Per-task limits.
    pub limits: Limits,
    /// The engine asked for.
    pub engine: EngineChoice,
    /// A batch (`--tasks`, `--inputs` or `--out`): each task also gets
    /// `/input` (with inputs) and a writable `/output`, after `dirs`. A
    /// single pass-through task gets only `dirs`.
    pub batch: bool,
}

impl JobPlan {
    /// Number of tasks.
    pub fn task_count(&self) -> u32 {
        match &self.tasks {
            Tasks::Count(n) => *n,
            Tasks::Inputs { files, .. } => u32::try_from(files.len()).unwrap_or(u32::MAX),
        }
    }

    /// The input file name of task `index`, if the job has inputs.
    pub fn input_name(&self, index: u32) -> Option<&str> {
        match &self.tasks {
            Tasks::Count(_) => None,
            Tasks::Inputs { files, .. } => files.get(index as usize).map(String::as_str),
        }
    }

    /// argv of task `index`: the module name, then the template with
    /// `{task}` and `{input}` replaced.
    pub fn task_argv(&self, index: u32) -> Vec<String> {
        let input = self
            .input_name(index)
            .map(|name| format!("{GUEST_INPUT}/{name}"));
        let mut argv = Vec::with_capacity(self.args.len() + 1);
        argv.push(self.module_name.clone());
        argv.extend(corral_protocol::manifest::render_args(
            &self.args,
            index,
            input.as_deref(),
        ));
        argv
    }
}

/// Lists the regular files of an `--inputs` directory, sorted by name.
pub fn list_inputs(dir: &Path) -> Result<Vec<String>, UsageError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| UsageError(format!("cannot read --inputs {}: {e}", dir.display())))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| UsageError(format!("cannot read --inputs {}: {e}", dir.display())))?;
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false)
            || std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file());
        if !is_file {
            continue;
        }
        let name = entry.file_name().into_string().map_err(|name| {
            UsageError(format!(
                "input file name {name:?} in {} is not valid UTF-8",
                dir.display()
            ))
        })?;
        files.push(name);
    }
    if files.is_empty() {
        return Err(UsageError(format!(
            "--inputs {} holds no files",
            dir.display()
        )));
    }
    if files.len() > MAX_TASKS as usize {
        return Err(UsageError(format!(
            "--inputs {} holds {} files; at most {MAX_TASKS} tasks per job",
            dir.display(),
            files.len()
        )));
    }
    files.sort();
    Ok(files)
}

/// Parses `--env K=V` values.
pub fn parse_env(values: &[String]) -> Result<Vec<(String, String)>, UsageError> {
    if values.len() > MAX_ENV {
        return Err(UsageError(format!(
            "{} --env values; at most {MAX_ENV}",
            values.len()
        )));
    }
    let mut total = 0;
    let mut env: Vec<(String, String)> = Vec::with_capacity(values.len());
    for value in values {
        let (key, val) = value
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--env {value:?} is not K=V")))?;
        if key.is_empty() || value.contains('\0') {
            return Err(UsageError(format!(
                "--env {value:?}: the name must be non-empty and neither may hold NUL"
            )));
        }
        total += value.len();
        if let Some(slot) = env.iter_mut().find(|(k, _)| k == key) {
            slot.1 = val.to_string();
        } else {
            env.push((key.to_string(), val.to_string()));
        }
    }
    if total > MAX_ENV_BYTES {
        return Err(UsageError(format!(
            "--env values total {total} bytes; at most {MAX_ENV_BYTES}"
        )));
    }
    Ok(env)
}

/// Checks the argument template.
pub fn check_args(args: &[String]) -> Result<(), UsageError> {
    let total: usize = args.iter().map(String::len).sum();
    if args.len() > MAX_ARGS || total > MAX_ARG_BYTES {
        return Err(UsageError(format!(
            "{} arguments of {total} bytes; at most {MAX_ARGS} arguments and {MAX_ARG_BYTES} bytes",
            args.len()
        )));
    }
    if args.iter().any(|a| a.contains('\0')) {
        return Err(UsageError("an argument holds a NUL byte".into()));
    }
    Ok(())
}

/// Parses `HOST[::GUEST][:ro|:rw]`.
pub fn parse_dir(spec: &str) -> Result<DirMount, UsageError> {
    let (rest, writable) = if let Some(rest) = spec.strip_suffix(":rw") {
        (rest, true)
    } else if let Some(rest) = spec.strip_suffix(":ro") {
        (rest, false)
    } else {
        (spec, false)
    };
    let (host, guest) = match rest.split_once("::") {
        Some((host, guest)) => (host, guest),
        None => (rest, GUEST_DATA),
    };
    if host.is_empty() {
        return Err(UsageError(format!(
            "--dir {spec:?}: no host directory; the form is HOST[::GUEST][:ro|:rw]"
        )));
    }
    let guest =
        check_guest_path(guest).map_err(|why| UsageError(format!("--dir {spec:?}: {why}")))?;
    let host = PathBuf::from(host);
    if !host.is_dir() {
        return Err(UsageError(format!(
            "--dir {spec:?}: {} is not a directory",
            host.display()
        )));
    }
    Ok(DirMount {
        host,
        guest,
        writable,
    })
}

/// A guest name is what `wasmtime run --dir HOST::GUEST` takes: an absolute
/// path, plain (no `..`, no `.`; `/` itself is a tree at the guest's root;
/// a trailing `/` is dropped), or a relative name such as `data`, `.` or
/// `fs-tests.dir`, kept as given (the guest's libc matches it as written),
/// bounded, without NUL, empty or `..` parts.
fn check_guest_path(guest: &str) -> Result<String, String> {
    let path = Path::new(guest);
    if !path.is_absolute() {
        return match corral_protocol::manifest::check_preopen_name(guest) {
            Ok(()) => Ok(guest.to_string()),
            Err(_) if guest.split('/').any(|part| part == "..") => Err(format!(
                "guest name {guest:?} may not contain `..` (e.g. data, ., or /data)"
            )),
            Err(why) => Err(format!("guest name {guest:?} {why}")),
        };
    }
    // `Path::components` hides `.` in the middle and repeated slashes.
    if guest.split('/').any(|part| part == "." || part == "..") {
        return Err(format!("guest path {guest:?} may not contain `.` or `..`"));
    }
    let mut parts = Vec::new();
    for part in path.components() {
        match part {
            Component::RootDir => {}
            Component::Normal(name) => parts.push(name.to_str().unwrap_or_default()),
            _ => return Err(format!("guest path {guest:?} may not contain `.` or `..`")),
        }
    }
    let clean = format!("/{}", parts.join("/"));
    corral_protocol::manifest::check_guest_path(&clean)
        .map_err(|why| format!("guest path {guest:?}: {why}"))?;
    Ok(clean)
}

/// Rejects mounts that cannot all be preopened: two at the same guest path,
/// and, in a batch, one where the batch's own `/output` (or, with
/// `--inputs`, `/input`) goes. Nested guest paths (`/` and `/data`) are
/// allowed, as `wasmtime run` allows them: the guest's libc resolves a path
/// by the longest matching preopen.
pub fn check_mounts(dirs: &[DirMount], batch: bool, inputs: bool) -> Result<(), UsageError> {
    for (i, a) in dirs.iter().enumerate() {
        // `data` and `/data` would bring files back to one place.
        let key = preopen_key(&a.guest);
        if dirs[..i].iter().any(|b| preopen_key(&b.guest) == key) {
            return Err(UsageError(format!(
                "two --dir mounts at {}; give each its own ::GUEST path",
                a.guest
            )));
        }
        let taken = (batch && a.guest == GUEST_OUTPUT) || (inputs && a.guest == GUEST_INPUT);
        if taken {
            return Err(UsageError(format!(
                "--dir {}::{}: a batch's tasks get their own {} there, after the --dir \
                 preopens; give the directory another ::GUEST path",
                a.host.display(),
                a.guest,
                a.guest
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_specs_parse_with_defaults() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let host = tmp.path().display().to_string();
        let d = parse_dir(&host).expect("plain");
        assert_eq!((d.guest.as_str(), d.writable), ("/data", false));
        let d = parse_dir(&format!("{host}::/scratch:rw")).expect("rw");
        assert_eq!((d.guest.as_str(), d.writable), ("/scratch", true));
        let d = parse_dir(&format!("{host}::/models/:ro")).expect("ro");
        assert_eq!((d.guest.as_str(), d.writable), ("/models", false));
        let d = parse_dir(&format!("{host}::/:rw")).expect("root");
        assert_eq!((d.guest.as_str(), d.writable), ("/", true));
        let d = parse_dir(&format!("{host}:://a//b/")).expect("slashes");
        assert_eq!(d.guest, "/a/b");
        let d = parse_dir(&format!("{host}::/output")).expect("parsed; judged with the job");
        assert_eq!(d.guest, "/output"); // Relative names as `wasmtime run` gives them, kept as written.
        for name in ["data", ".", "fs-tests.dir", "a/b/", "./x"] {
            let d = parse_dir(&format!("{host}::{name}:rw")).expect(name);
            assert_eq!(d.guest, name);
        }
        for bad in ["..", "a/../b", "", "a//b"] {
            assert!(parse_dir(&format!("{host}::{bad}")).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mounts_are_judged_together_with_the_job() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let host = tmp.path().display().to_string();
        let dir = |guest: &str| parse_dir(&format!("{host}::{guest}")).expect(guest);
        // Nested paths are allowed, as `wasmtime run` allows them.
        check_mounts(&[dir("/"), dir("/data")], true, true).expect("nested");
        // A single task has no /output or /input of corral's.
        check_mounts(&[dir("/output"), dir("/input")], false, false).expect("single");
        check_mounts(&[dir("/input")], true, false).expect("no inputs");
        for (dirs, batch, inputs, needle) in [
            (vec![dir("/x"), dir("/x/")], false, false, "two --dir"),
            (vec![dir("/"), dir("/")], false, false, "two --dir"),
            (vec![dir("data"), dir("/data")], false, false, "two --dir"),
            (vec![dir("."), dir("/")], false, false, "two --dir"),
            (vec![dir("/output")], true, false, "their own /output"),
            (vec![dir("/input")], true, true, "their own /input"),
        ] {
            let err = check_mounts(&dirs, batch, inputs).expect_err(needle).0;
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn bad_dir_specs_name_the_problem() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let host = tmp.path().display().to_string();
        for (spec, needle) in [
            (format!("{host}::../data"), "`..`"),
            (format!("{host}::"), "empty"),
            (format!("{host}::/a/../b"), "`..`"),
            (format!("{host}::/a/./b"), "`..`"),
            (format!("{host}::/a/.."), "`..`"),
            ("/no/such/dir/anywhere".to_string(), "not a directory"),
            ("::/x".to_string(), "no host directory"),
        ] {
            let err = parse_dir(&spec).expect_err(&spec).0;
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }

    #[test]
    fn env_is_exactly_what_was_given() {
        let env =
            parse_env(&["A=1".into(), "B=x=y".into(), "A=2".into(), "E=".into()]).expect("valid");
        assert_eq!(
            env,
            vec![
                ("A".to_string(), "2".to_string()),
                ("B".to_string(), "x=y".to_string()),
                ("E".to_string(), String::new())
            ]
        );
        assert!(parse_env(&["NOEQUALS".into()]).is_err());
        assert!(parse_env(&["=v".into()]).is_err());
    }

    #[test]
    fn modules_are_checked_before_running() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let text = tmp.path().join("hello.wat");
        std::fs::write(&text, "(module)").expect("write");
        let err = load_module(&text).expect_err("text is not a module").0;
        assert!(err.contains("not a WebAssembly module"), "{err}");
        let err = load_module(&tmp.path().join("missing.wasm"))
            .expect_err("missing")
            .0;
        assert!(err.contains("cannot read module"), "{err}");
    }
}
