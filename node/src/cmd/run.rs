//! `corral run`: resolve the arguments into a [`JobPlan`], then run it as one
//! pass-through task or as a batch writing OUT (DESIGN §9).

use std::path::PathBuf;
use std::process::ExitCode;

use corral_protocol::receipt::TaskStatus;

use super::{EXIT_TRAP, UsageError};
use crate::blobs::FileHashes;
use crate::cli::RunArgs;
use crate::config::DataDir;
use crate::job::local;
use crate::job::module::PlanModule;
use crate::job::outdir::OutDir;
use crate::job::plan::{self, JobPlan, MAX_TASKS, Tasks};
use crate::job::report::TaskRunState;
use crate::runtime::{Compiled, Limits, Runtime, RuntimeError};

/// Runs `corral run`.
pub fn run(data_dir: Option<PathBuf>, mut args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.verify == Some(0)
        || args
            .verify
            .is_some_and(|k| k > corral_protocol::manifest::MAX_REDUNDANCY)
    {
        return Err(UsageError(format!(
            "--verify K: K must be 1 to {}",
            corral_protocol::manifest::MAX_REDUNDANCY
        ))
        .into());
    }
    // A published module by name: resolved (and its blob fetched) first,
    // then run as any module from its blob, named as published.
    let named = match super::modules::as_reference(&args.module)? {
        Some(want) => {
            let dir = DataDir::resolve(data_dir.clone())?;
            let text = args.module.to_string_lossy().into_owned();
            let named = super::modules::resolve_named(dir.root(), &want, &text)?;
            eprintln!(
                "corral: {text} is {}@{} ({})",
                named.name,
                named.version,
                named.module.short()
            );
            args.module = named.path.clone();
            Some(named)
        }
        None => None,
    };
    let plan_of = |args: &RunArgs, memo: Option<&mut FileHashes>| {
        resolve(args, memo).map(|mut plan| {
            if let Some(named) = &named {
                plan.module_name = named.name.clone();
            }
            plan
        })
    };
    if !args.local {
        let data_dir = DataDir::resolve(data_dir)?;
        let mut memo = FileHashes::open(data_dir.root());
        let plan = plan_of(&args, Some(&mut memo))?;
        return super::submit::run_remote(data_dir.root(), &args, &plan, &mut memo);
    }
    if args.verify.is_some() {
        return Err(UsageError(
            "--verify compares devices of a mesh; it cannot be used with --local".into(),
        )
        .into());
    }
    if args.detach {
        return Err(UsageError(
            "--detach hands the job to a daemon; it cannot be used with --local".into(),
        )
        .into());
    }
    let plan = plan_of(&args, None)?;
    let data_dir = DataDir::resolve(data_dir)?;
    let runtime = Runtime::new(Some(data_dir.module_cache()))?;
    let compiled = compile(&runtime, &plan)?;

    if !plan.batch {
        let outcome = local::run_single(&runtime, &compiled, &plan)?;
        return Ok(match outcome.status {
            // POSIX keeps the low 8 bits of an exit status.
            TaskStatus::Exited { code } => ExitCode::from((code & 0xff) as u8),
            status => {
                eprintln!("corral: {}", describe(&status, &plan.limits));
                ExitCode::from(EXIT_TRAP)
            }
        });
    }

    let out_path = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("corral-out"));
    let out = OutDir::create(&out_path)?;
    let parallel = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let report = local::run_batch(&runtime, &compiled, &plan, &out, parallel)?;
    for task in report
        .tasks
        .iter()
        .filter(|t| t.state != TaskRunState::Done)
    {
        let why = match (&task.exit_code, &task.message) {
            (Some(code), _) => format!("exited with {code}"),
            (None, Some(message)) => format!("{}: {message}", task.reason),
            (None, None) => task.reason.clone(),
        };
        eprintln!("corral: task {} failed: {why}", task.index);
    }
    let engines: Vec<&str> = {
        let mut e: Vec<&str> = report.tasks.iter().map(|t| t.engine.as_str()).collect();
        e.sort_unstable();
        e.dedup();
        e
    };
    eprintln!(
        "corral: job {}: {} task(s), {} done, {} failed in {:.2}s on {} ({}) → {}",
        report.id,
        report.tasks_total,
        report.tasks_done,
        report.tasks_failed,
        report.duration_ms as f64 / 1000.0,
        local::device_name(),
        engines.join(", "),
        out.root().display()
    );
    Ok(if report.tasks_failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Checks the arguments and builds the plan. With the remembered hashes
/// of the data dir a job goes to, the module is read only if its hash is
/// not remembered there (the daemon's store may hold it already).
pub fn resolve(args: &RunArgs, memo: Option<&mut FileHashes>) -> anyhow::Result<JobPlan> {
    let module = match memo {
        Some(memo) => PlanModule::locate(&args.module, memo)?,
        None => PlanModule::read(plan::load_module(&args.module)?),
    };
    let module_name = args
        .module
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "module.wasm".into());
    plan::check_args(&args.args)?;
    let tasks = match (&args.tasks, &args.inputs) {
        (Some(0), _) => return Err(UsageError("--tasks must be at least 1".into()).into()),
        (Some(n), _) if *n > MAX_TASKS => {
            return Err(
                UsageError(format!("--tasks {n}: at most {MAX_TASKS} tasks per job")).into(),
            );
        }
        (Some(n), None) => Tasks::Count(*n),
        (None, Some(dir)) => Tasks::Inputs {
            dir: dir.clone(),
            files: plan::list_inputs(dir)?,
        },
        (None, None) => Tasks::Count(1),
        (Some(_), Some(_)) => {
            return Err(UsageError("--tasks and --inputs cannot be used together".into()).into());
        }
    };
    let dirs = args
        .dirs
        .iter()
        .map(|spec| plan::parse_dir(spec))
        .collect::<Result<Vec<_>, _>>()?;
    let batch = args.tasks.is_some() || args.inputs.is_some() || args.out.is_some();
    plan::check_mounts(&dirs, batch, matches!(tasks, Tasks::Inputs { .. }))?;
    Ok(JobPlan {
        module,
        module_name,
        args: args.args.clone(),
        env: plan::parse_env(&args.env)?,
        tasks,
        dirs,
        limits: Limits {
            timeout: args.timeout,
            memory_bytes: args.memory,
            output_bytes: args.output_limit,
            disk_bytes: args.disk,
            files: args.files,
        },
        engine: args.engine,
        batch,
    })
}

/// Compiles the module once for the whole job.
pub fn compile(runtime: &Runtime, plan: &JobPlan) -> anyhow::Result<Compiled> {
    let engine = runtime
        .resolve(plan.engine)
        .map_err(|e| UsageError(e.to_string()))?;
    runtime
        .compile(engine, &plan.module.wasm()?)
        .map_err(|e| match e {
            RuntimeError::Invalid(_) | RuntimeError::NotAModule(_) => {
                anyhow::Error::from(UsageError(format!("{}: {e}", plan.module_name)))
            }
            other => anyhow::Error::from(other).context(format!(
                "cannot prepare {} for {}",
                plan.module_name,
                engine.name()
            )),
        })
}

/// One line saying why a task stopped, for a person.
pub fn describe(status: &TaskStatus, limits: &Limits) -> String {
    match status {
        TaskStatus::Exited { code } => format!("exited with {code}"),
        TaskStatus::Trapped { message } => format!("the module trapped: {message}"),
        TaskStatus::TimedOut => format!(
            "the task ran past its time limit of {} and was stopped (raise it with --timeout)",
            humantime::format_duration(limits.timeout)
        ),
        TaskStatus::MemoryLimit => format!(
            "the task needed more memory than its limit of {} (raise it with --memory)",
            bytesize::ByteSize::b(limits.memory_bytes).display().iec()
        ),
        TaskStatus::OutputLimit => format!(
            "the task wrote more than {} to stdout or stderr and was stopped (raise it with --output-limit)",
            bytesize::ByteSize::b(limits.output_bytes).display().iec()
        ),
        TaskStatus::DiskLimit => format!(
            "the task tried to add more than {} or {} files to its directories and was stopped \
             (raise it with --disk or --files)",
            bytesize::ByteSize::b(limits.disk_bytes).display().iec(),
            limits.files
        ),
    }
}
