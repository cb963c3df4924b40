//! The comparison: a table for people, `--json` and CSV for tools. Every
//! simulated figure is printed with fixed precision so the same seed gives
//! the same bytes; wall-clock figures (`wall_s`, `decisions_per_s`) are kept
//! out of the CSV.

use serde::Serialize;

use crate::world::Outcome;

/// One policy's row.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Policy name.
    pub name: String,
    /// Makespan over the oracle's lower bound.
    pub makespan_over_oracle: f64,
    /// Makespan, seconds.
    pub makespan_s: f64,
    /// Mean job completion time, seconds.
    pub mean_jct_s: f64,
    /// 99th-percentile job completion time, seconds.
    pub p99_jct_s: f64,
    /// Runs started beyond one per task.
    pub tasks_rerun: u64,
    /// Tasks without a result.
    pub tasks_lost: u64,
    /// Gossip and probe bytes sent per device per second.
    pub gossip_bytes_per_device_s: f64,
    /// Placements per second of wall time spent deciding.
    pub decisions_per_s: f64,
}

/// The whole comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// What it shows.
    pub description: String,
    /// Seed.
    pub seed: u64,
    /// Devices.
    pub devices: usize,
    /// Tasks over all jobs.
    pub tasks: u64,
    /// The fluid lower bound, seconds.
    pub oracle_s: f64,
    /// The clairvoyant LPT schedule's makespan, seconds.
    pub lpt_s: f64,
    /// One row per policy.
    pub policies: Vec<Row>,
    /// Wall time of the whole run, seconds.
    pub wall_s: f64,
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Row {
    /// Summarises an outcome against the oracle.
    pub fn of(outcome: &Outcome, oracle_s: f64) -> Self {
        let mut jct = outcome.jct_s.clone();
        jct.sort_by(f64::total_cmp);
        let mean = if jct.is_empty() {
            0.0
        } else {
            jct.iter().sum::<f64>() / jct.len() as f64
        };
        Self {
            name: outcome.policy.clone(),
            makespan_over_oracle: round(outcome.makespan_s / oracle_s.max(1e-9), 4),
            makespan_s: round(outcome.makespan_s, 3),
            mean_jct_s: round(mean, 3),
            p99_jct_s: round(percentile(&jct, 99.0), 3),
            tasks_rerun: outcome.tasks_rerun,
            tasks_lost: outcome.tasks_lost,
            gossip_bytes_per_device_s: round(outcome.gossip_bytes_per_device_s, 1),
            decisions_per_s: round(
                outcome.decisions as f64 / outcome.decide_wall_s.max(1e-9),
                0,
            ),
        }
    }
}

impl Report {
    /// The table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "scenario {} (seed {}): {} devices, {} tasks; oracle {:.1} s, clairvoyant LPT {:.1} s ({:.3}× oracle)\n",
            self.scenario,
            self.seed,
            self.devices,
            self.tasks,
            self.oracle_s,
            self.lpt_s,
            self.lpt_s / self.oracle_s.max(1e-9)
        );
        if !self.description.is_empty() {
            s.push_str(&format!("  {}\n", self.description.trim()));
        }
        s.push_str(&format!(
            "{:<13} {:>9} {:>11} {:>10} {:>10} {:>8} {:>6} {:>13} {:>12}\n",
            "policy",
            "mk/oracle",
            "makespan s",
            "mean JCT s",
            "p99 JCT s",
            "re-run",
            "lost",
            "gossip B/dev/s",
            "decisions/s"
        ));
        for r in &self.policies {
            s.push_str(&format!(
                "{:<13} {:>9.3} {:>11.1} {:>10.1} {:>10.1} {:>8} {:>6} {:>13.0} {:>12.0}\n",
                r.name,
                r.makespan_over_oracle,
                r.makespan_s,
                r.mean_jct_s,
                r.p99_jct_s,
                r.tasks_rerun,
                r.tasks_lost,
                r.gossip_bytes_per_device_s,
                r.decisions_per_s
            ));
        }
        s.push_str(&format!("wall time {:.1} s\n", self.wall_s));
        s
    }

    /// CSV rows (with a header), simulated figures only.
    pub fn csv(&self) -> anyhow::Result<Vec<u8>> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "scenario",
            "seed",
            "policy",
            "makespan_over_oracle",
            "makespan_s",
            "mean_jct_s",
            "p99_jct_s",
            "tasks_rerun",
            "tasks_lost",
            "gossip_bytes_per_device_s",
        ])?;
        for r in &self.policies {
            w.write_record([
                self.scenario.clone(),
                self.seed.to_string(),
                r.name.clone(),
                format!("{:.4}", r.makespan_over_oracle),
                format!("{:.3}", r.makespan_s),
                format!("{:.3}", r.mean_jct_s),
                format!("{:.3}", r.p99_jct_s),
                r.tasks_rerun.to_string(),
                r.tasks_lost.to_string(),
                format!("{:.1}", r.gossip_bytes_per_device_s),
            ])?;
        }
        Ok(w.into_inner()?)
    }
}
