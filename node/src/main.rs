//! `corral`: the daemon and command line of the corral compute mesh. The
//! binary is thin: parse, run the command, turn the result into an exit code.

use std::process::ExitCode;

use clap::Parser;
use corral_node::cli::{Cli, Command};
use corral_node::cmd::mesh;
use corral_node::control::Request;
use corral_node::{cmd, demo};

/// Exit code for usage errors (bad flags, unreadable module, bad --dir).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cmd::run::run(cli.data_dir, args),
        Command::Demo(args) => demo::run(cli.data_dir, args),
        Command::Init { name } => mesh::init(cli.data_dir, name),
        Command::Invite { expires } => mesh::invite(cli.data_dir, expires),
        Command::Join {
            token,
            token_file,
            name,
        } => mesh::TokenSource::from_args(token, token_file)
            .and_then(|source| mesh::join(cli.data_dir, &source, name)),
        Command::Up(args) => mesh::up(cli.data_dir, args),
        Command::Status { json } => mesh::query(cli.data_dir, Request::Status, json),
        Command::Peers { json } => mesh::query(cli.data_dir, Request::Peers, json),
        Command::Trust { command } => mesh::trust(cli.data_dir, command),
        Command::Leave => mesh::leave(cli.data_dir),
        Command::Bench { json } => mesh::bench(cli.data_dir, json),
        Command::Jobs { json } => cmd::jobs::jobs(cli.data_dir, json),
        Command::Job { id, json } => cmd::jobs::job(cli.data_dir, &id, json),
        Command::Results { id, out } => cmd::jobs::results(cli.data_dir, &id, &out),
        Command::Cancel { id } => cmd::jobs::cancel(cli.data_dir, &id),
        Command::Publish {
            reference,
            module,
            description,
        } => cmd::modules::publish(cli.data_dir, &reference, &module, &description),
        Command::Modules { json } => cmd::modules::list(cli.data_dir, json),
        Command::Serve(args) => cmd::serve::serve(cli.data_dir, args),
        Command::Dashboard { url: _ } => cmd::dashboard::url(cli.data_dir),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("corral: error: {error:#}");
            match error.downcast_ref::<cmd::UsageError>() {
                Some(_) => ExitCode::from(EXIT_USAGE),
                None => ExitCode::FAILURE,
            }
        }
    }
}
