//! corral-sim: a deterministic discrete-event simulator that drives the real
//! `corral-scheduler` with up to 100,000 simulated devices and compares its
//! placement with baselines and an oracle on identical worlds.
//!
//! ```sh
//! corral-sim run simulations/scenarios/home.toml [--seed N] [--json] [--csv FILE]
//! corral-sim plot out.csv … --out comparison.svg
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use corral_sim::scenario::Scenario;
use corral_sim::{plot, policy, simulate};

#[derive(Parser)]
#[command(
    name = "corral-sim",
    version,
    about = "Simulates corral's scheduler against baselines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every policy on a scenario and prints the comparison.
    Run {
        /// A scenario file (simulations/scenarios/*.toml).
        scenario: PathBuf,
        /// Seed (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Print one JSON document instead of the table.
        #[arg(long)]
        json: bool,
        /// Also write the simulated figures as CSV to this file.
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
        /// Only these policies (repeatable; default: all).
        #[arg(long = "policy", value_name = "NAME")]
        policies: Vec<String>,
    },
    /// Draws CSV files written by `run --csv` as a bar chart (SVG) on a log scale: every bar rises from 1×, the oracle.
    Plot {
        /// CSV files.
        #[arg(required = true)]
        csv: Vec<PathBuf>,
        /// The SVG to write.
        #[arg(long, value_name = "FILE.svg")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corral-sim: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run {
            scenario,
            seed,
            json,
            csv,
            policies,
        } => {
            let text = std::fs::read_to_string(&scenario)
                .with_context(|| format!("cannot read {}", scenario.display()))?;
            let parsed = Scenario::parse(&text)
                .with_context(|| format!("{} is not a valid scenario", scenario.display()))?;
            let names: Vec<String> = if policies.is_empty() {
                policy::NAMES.iter().map(|s| s.to_string()).collect()
            } else {
                for p in &policies {
                    anyhow::ensure!(
                        policy::NAMES.contains(&p.as_str()),
                        "unknown policy {p:?}; known: {}",
                        policy::NAMES.join(", ")
                    );
                }
                policies
            };
            let report = simulate(&parsed, seed.unwrap_or(parsed.seed), &names);
            if let Some(path) = csv {
                std::fs::write(&path, report.csv()?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(())
        }
        Command::Plot { csv, out } => plot::draw(&csv, &out),
    }
}
