//! The command line as DESIGN §9 describes it, parsed by clap. Parsing only:
//! each command resolves its arguments into a configuration in `cmd/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::runtime::EngineChoice;
use crate::units::{parse_duration, parse_size};

/// corral — offload batch jobs to the idle devices of your home or edge site.
#[derive(Debug, Parser)]
#[command(name = "corral", version, about, propagate_version = true)]
pub struct Cli {
    /// Where this node keeps its state (keys, store, caches).
    #[arg(long, global = true, env = "CORRAL_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// corral's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a WebAssembly (WASI preview 1) module as one task or as a batch.
    ///
    /// One task without --out behaves like running the module directly: stdin
    /// is forwarded, stdout and stderr stream back, and corral exits with the
    /// module's exit code (125 when it trapped or hit a limit). With --tasks,
    /// --inputs or --out it is a batch: each task's stdout, stderr and output
    /// files land in OUT/<task>/, and the exit code is 0 only if every task
    /// exited 0.
    Run(RunArgs),
    /// Run the bundled example (a Mandelbrot picture rendered as a batch of
    /// tiles, then stitched) with no set-up.
    Demo(DemoArgs),
    /// Create a new identity and a new private mesh on this device.
    Init {
        /// This device's name in the mesh (default: the host name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Print a join token for another device (only the token goes to stdout).
    Invite {
        /// How long the token stays valid (at most 30 days).
        #[arg(long, value_name = "DURATION", default_value = "24h",
              value_parser = crate::cmd::token::parse_validity)]
        expires: Duration,
    },
    /// Join the mesh of an invite token; trusts the inviter as a job submitter.
    Join {
        /// The token printed by `corral invite`, or `-` to read it from stdin
        /// (keeps it out of shell history and the process list).
        #[arg(required_unless_present = "token_file", conflicts_with = "token_file")]
        token: Option<String>,
        /// Read the token from this file.
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
        /// This device's name in the mesh (default: the host name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Run the daemon in the foreground (SIGTERM or `corral leave` stops it
    /// gracefully).
    Up(UpArgs),
    /// This node: id, name, arch, engines, addresses, peers, tasks.
    Status {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// The other devices of the mesh, as this node sees them.
    Peers {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// The job submitters this node accepts.
    Trust {
        /// What to do.
        #[command(subcommand)]
        command: TrustCommand,
    },
    /// Leave the mesh: say goodbye to peers and stop the daemon.
    Leave,
    /// The jobs this device coordinates, newest first.
    Jobs {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// One job: its state and every task's.
    Job {
        /// The job id.
        id: String,
        /// Print one JSON document (the same as OUT/job.json).
        #[arg(long)]
        json: bool,
    },
    /// Write a job's results to a directory, as `corral run --out` does.
    Results {
        /// The job id.
        id: String,
        /// Where to write them.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Stop a job: no more tasks start; running ones are told to stop.
    Cancel {
        /// The job id.
        id: String,
    },
    /// The live page of the local daemon: prints its URL (with its login
    /// token when the page is on an address other than loopback).
    Dashboard {
        /// Print the page's URL (the only thing it does for now).
        #[arg(long)]
        url: bool,
    },
    /// Calibrate the engines of this device.
    Bench {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Publish a module by name: sign a record of NAME@VERSION for it with
    /// this node's key and spread it to the mesh; the module stays on this
    /// device, where others fetch it. Prints the reference.
    Publish {
        /// The name and version, e.g. thumbnailer@1.2.0 (strict semver).
        #[arg(value_name = "NAME@VERSION")]
        reference: String,
        /// The module (a `.wasm` file built for wasm32-wasip1).
        #[arg(value_name = "MODULE")]
        module: PathBuf,
        /// What it does, for people: one line of printable text.
        #[arg(long, value_name = "TEXT", default_value = "")]
        description: String,
    },
    /// The named modules this device knows (run one with `corral run NAME`).
    Modules {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// An HTTP front door: each request runs as one task on the mesh,
    /// CGI-style (WAGI). Needs the local daemon (`corral up`).
    Serve(ServeArgs),
}

/// `corral serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen, e.g. 127.0.0.1:8080 or 0.0.0.0:8080 (port 0: any).
    #[arg(long, value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// A route, repeatable: PATH=NAME[@VERSION], an exact path (/md) or a
    /// prefix (/api/*); NAME@VERSION resolves among the published modules
    /// signed by a trusted key, as `corral run NAME` does. A route may set
    /// its own limits after it, over the flags below:
    /// '/thumb=thumbnailer@1;timeout=5s;memory=128MiB;max-body=8MiB;max-output=4MiB'.
    #[arg(long = "route", value_name = "PATH=NAME[@VERSION][;LIMIT=VALUE…]", required = true,
          value_parser = crate::serve::route::parse_route)]
    pub routes: Vec<crate::serve::route::RouteSpec>,
    /// Time limit of each request's task (a route's own `timeout` wins).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Memory limit of each request's task.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub memory: u64,
    /// Largest request body (larger: 413, nothing runs).
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_size)]
    pub max_body: u64,
    /// Largest response a module may write (its stdout).
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub max_output: u64,
    /// Most requests in flight at once (more: 503 with Retry-After).
    #[arg(long, value_name = "N", default_value = "16")]
    pub concurrency: usize,
    /// How long a request may wait for a free device besides its time
    /// limit before it is answered 503.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub queue_timeout: Duration,
    /// How often each route's NAME@VERSION is resolved again (a newer
    /// matching version serves the next requests).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub refresh: Duration,
}

/// `corral trust`.
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust a submitter's key (64 hex digits, as `corral status --json` shows as `key`).
    Add {
        /// The key.
        key: String,
        /// A name for people.
        #[arg(long)]
        name: Option<String>,
    },
    /// Stop trusting a key.
    Remove {
        /// The key.
        key: String,
    },
    /// List trusted keys.
    List {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

/// `corral up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Listen on this multiaddr (repeatable; default /ip4/0.0.0.0/tcp/0).
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub listen: Vec<libp2p::Multiaddr>,
    /// Dial this peer at start, for networks without multicast (repeatable).
    #[arg(long = "peer", value_name = "MULTIADDR")]
    pub peers: Vec<libp2p::Multiaddr>,
    /// Engines offered to the mesh.
    #[arg(long, value_enum, default_value = "auto")]
    pub engine: EngineChoice,
    /// Task slots (default: the number of cores).
    #[arg(long)]
    pub slots: Option<u16>,
    /// When to accept work from the mesh.
    #[arg(long, value_enum, default_value = "idle")]
    pub share: crate::capacity::Share,
    /// With `--share idle`: how long tasks already running may go on once
    /// the owner is back; what is left then is handed back to its
    /// coordinator and runs elsewhere.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Do not announce or browse with mDNS.
    #[arg(long)]
    pub no_mdns: bool,
    /// Most memory all of the mesh's tasks together may use here, e.g. 2GiB
    /// (default: whatever is free).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<u64>,
    /// Most disk the blob store (modules, inputs, results), the laid-out
    /// trees, the work dirs and the compiled modules may take together,
    /// e.g. 500MiB. Swept every minute, least recently used first; never
    /// what a job this device coordinates or runs needs, nor anything used
    /// in the last 10 minutes.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "2GiB")]
    pub cache_size: u64,
    /// Also serve as the mesh's relay: members that cannot reach each other
    /// (behind NATs) connect through this device. Run it on a device the
    /// others can reach.
    #[arg(long)]
    pub relay: bool,
    /// An address others reach this device at, beyond its own (a forwarded
    /// port on a router); a relay hands it out (repeatable).
    #[arg(long = "external", value_name = "MULTIADDR")]
    pub external: Vec<libp2p::Multiaddr>,
    /// Reserve an address at this relay, e.g.
    /// /ip4/203.0.113.5/tcp/4001/p2p/12D3…: members that cannot reach this
    /// device dial it there (repeatable, at most 4).
    #[arg(long = "relay-addr", value_name = "MULTIADDR", value_parser = crate::net::relay::parse_relay_addr)]
    pub relay_addrs: Vec<libp2p::Multiaddr>,
    /// Serve the live page here (an address other than loopback needs the
    /// login token `corral dashboard --url` prints).
    #[arg(long, value_name = "ADDR", default_value = crate::http::DEFAULT_ADDR,
          conflicts_with = "no_http")]
    pub http: std::net::SocketAddr,
    /// Serve no page.
    #[arg(long)]
    pub no_http: bool,
}

/// `corral run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The module to run: a `.wasm` file built for wasm32-wasip1, or a
    /// published module by name (`NAME`, `NAME@1.2.3`, `NAME@^1.2`): the
    /// newest matching version signed by a trusted key.
    #[arg(value_name = "MODULE")]
    pub module: PathBuf,

    /// Run N tasks; `{task}` in ARGS becomes 0..N-1.
    #[arg(long, value_name = "N", conflicts_with = "inputs")]
    pub tasks: Option<u32>,

    /// Run one task per file in DIR; the file is at /input/<name> and `{input}`
    /// in ARGS becomes that path.
    #[arg(long, value_name = "DIR")]
    pub inputs: Option<PathBuf>,

    /// Write each task's stdout, stderr and files to DIR/<task>/ and the job
    /// summary to DIR/job.json.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Ship a directory with the job: HOST[::GUEST][:ro|:rw] (GUEST defaults to
    /// /data and may be relative, e.g. `.` or `data`, as `wasmtime run --dir`
    /// names it; ro is the default; with rw each task gets a private copy and
    /// the files it creates or changes come back in OUT/<task>/files/).
    #[arg(long = "dir", value_name = "SPEC")]
    pub dirs: Vec<String>,

    /// An environment variable for the guest, K=V; the guest sees exactly the
    /// variables given and nothing else.
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,

    /// Wall-clock limit per task, e.g. 30s, 5m, 1h30m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    pub timeout: Duration,

    /// Memory limit per task, e.g. 256MiB, 1GiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "1GiB")]
    pub memory: u64,

    /// Most bytes kept of each task's stdout and of its stderr; a task that
    /// writes more is stopped with the reason `output_limit`.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "16MiB")]
    pub output_limit: u64,

    /// Most bytes each task may add to its writable directories (--dir rw
    /// and /output), e.g. 100MiB; a task that tries to write more is stopped
    /// with the reason `disk_limit`. At most 1TiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_disk, default_value = "1GiB")]
    pub disk: u64,

    /// Most files, directories and links each task may create; more ends
    /// it with the reason `disk_limit`.
    #[arg(long, value_name = "N", value_parser = parse_files, default_value = "10000")]
    pub files: u64,

    /// The engine: auto (JIT where the CPU has one), jit or interp.
    #[arg(long, value_enum, default_value = "auto", value_name = "ENGINE")]
    pub engine: EngineChoice,

    /// Run each task on K devices and compare their outputs (needs the mesh).
    #[arg(long, value_name = "K")]
    pub verify: Option<u8>,

    /// Run in this process with no daemon: a plain WASI runner.
    #[arg(long)]
    pub local: bool,

    /// Submit and print the job id instead of waiting (needs the mesh).
    #[arg(long)]
    pub detach: bool,

    /// Parallel tasks for --local (default: the number of cores).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,

    /// Arguments for the module; `{task}` and `{input}` are replaced per task.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// `corral demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the tiles and the picture.
    #[arg(long, value_name = "DIR", default_value = "corral-demo")]
    pub out: PathBuf,

    /// Number of tiles (tasks).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub tasks: u32,

    /// The engine: auto, jit or interp.
    #[arg(long, value_enum, default_value = "auto", value_name = "ENGINE")]
    pub engine: EngineChoice,

    /// Exit when the picture is written, instead of keeping the mesh (and
    /// its live page) up until Enter.
    #[arg(long)]
    pub no_wait: bool,
}

/// Parses `--disk`: a positive size no larger than a peer would accept.
pub fn parse_disk(text: &str) -> Result<u64, String> {
    let max = corral_protocol::manifest::MAX_DISK_BYTES;
    match parse_size(text)? {
        size if size > max => Err(format!(
            "`{text}` is more than the largest disk limit, {}",
            bytesize::ByteSize::b(max).display().iec()
        )),
        size => Ok(size),
    }
}

/// Parses `--files`: a count in 1..=1000000.
pub fn parse_files(text: &str) -> Result<u64, String> {
    let max = corral_protocol::manifest::MAX_FILES;
    match text.trim().parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("`{text}` is not a number of files in 1..={max}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_size("256MiB"), Ok(256 * 1024 * 1024));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn disk_limits_are_positive_and_bounded() {
        assert_eq!(parse_disk("4MiB"), Ok(4 << 20));
        assert_eq!(parse_disk("1TiB"), Ok(1 << 40));
        assert!(parse_disk("0").is_err());
        assert!(parse_disk("2TB").is_err());
        assert!(parse_disk("plenty").is_err());
        assert_eq!(parse_files("10"), Ok(10));
        assert!(parse_files("0").is_err());
        assert!(parse_files("1000001").is_err());
        assert!(parse_files("-3").is_err());
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
