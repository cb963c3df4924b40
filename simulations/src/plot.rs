//! `corral-sim plot`: makespan over the oracle per policy and scenario, as
//! grouped bars in an SVG.

use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::prelude::*;

/// Reads the CSV files and draws the chart.
pub fn draw(csv: &[PathBuf], out: &Path) -> anyhow::Result<()> {
    // (scenario, policy, makespan_over_oracle), in file order.
    let mut rows: Vec<(String, String, f64)> = Vec::new();
    for path in csv {
        let mut r = csv::Reader::from_path(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let headers = r.headers()?.clone();
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .with_context(|| format!("{}: no {name} column", path.display()))
        };
        let (s, p, m) = (
            col("scenario")?,
            col("policy")?,
            col("makespan_over_oracle")?,
        );
        for (line, record) in r.records().enumerate() {
            let record = record.with_context(|| format!("{}: row {}", path.display(), line + 2))?;
            let value: f64 = record[m].parse().with_context(|| {
                format!(
                    "{}: row {}: makespan_over_oracle is not a number",
                    path.display(),
                    line + 2
                )
            })?;
            anyhow::ensure!(
                value.is_finite() && value >= 0.0,
                "{}: row {}: makespan_over_oracle {value} out of range",
                path.display(),
                line + 2
            );
            rows.push((record[s].to_string(), record[p].to_string(), value));
        }
    }
    anyhow::ensure!(!rows.is_empty(), "the CSV files hold no rows");
    let mut scenarios: Vec<String> = Vec::new();
    let mut policies: Vec<String> = Vec::new();
    for (s, p, _) in &rows {
        if !scenarios.contains(s) {
            scenarios.push(s.clone());
        }
        if !policies.contains(p) {
            policies.push(p.clone());
        }
    }
    let top = rows.iter().map(|r| r.2).fold(1.0, f64::max) * 1.15;
    let width = (160 + scenarios.len() * (policies.len() * 36 + 40)).max(640) as u32;
    let root = SVGBackend::new(out, (width, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let groups = scenarios.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "makespan ÷ oracle lower bound (lower is better; 1.0 = oracle)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..groups, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("makespan / oracle")
        .draw()?;
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    let bar = 0.8 / policies.len() as f64;
    for (pi, policy) in policies.iter().enumerate() {
        let color = palette[pi % palette.len()];
        let bars: Vec<Rectangle<(f64, f64)>> = rows
            .iter()
            .filter(|r| &r.1 == policy)
            .filter_map(|(s, _, v)| {
                let g = scenarios.iter().position(|x| x == s)? as f64;
                let x0 = g + 0.1 + bar * pi as f64;
                Some(Rectangle::new(
                    [(x0, 0.0), (x0 + bar * 0.9, *v)],
                    color.filled(),
                ))
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(policy.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart.draw_series(scenarios.iter().enumerate().map(|(g, s)| {
        Text::new(
            s.clone(),
            (g as f64 + 0.35, -top * 0.06),
            ("sans-serif", 13),
        )
    }))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperMiddle)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;
    root.present()
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}
