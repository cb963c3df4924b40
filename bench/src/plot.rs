//! The picture of docs/BENCHMARKS.md: every figure against its goal, as
//! "how far from the goal" on one log scale, so a glance tells which goals
//! are met and by how much.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use crate::Figure;

/// Measured ÷ goal for "≤" goals, goal ÷ measured for "≥" goals: at most 1
/// means the goal is met. None for figures without a goal or a value.
pub(crate) fn goal_share(f: &Figure) -> Option<f64> {
    let measured = f.ratio.or(f.value)?;
    let (at_most, bound) = if let Some(b) = f.goal.strip_prefix("<=") {
        (true, b)
    } else if let Some(b) = f.goal.strip_prefix(">=") {
        (false, b)
    } else {
        return None;
    };
    let bound: f64 = bound.trim().parse().ok()?;
    if bound <= 0.0 || measured <= 0.0 || !measured.is_finite() {
        return None;
    }
    Some(if at_most {
        measured / bound
    } else {
        bound / measured
    })
}

/// Draws the bars into an SVG at `out`.
pub(crate) fn draw(figures: &[Figure], out: &Path) -> anyhow::Result<()> {
    let rows: Vec<(&Figure, f64)> = figures
        .iter()
        .filter_map(|f| goal_share(f).map(|s| (f, s)))
        .collect();
    anyhow::ensure!(!rows.is_empty(), "no figure has both a value and a goal");
    let (low, high) = (1e-3_f64, 100.0_f64);
    let height = 80 + 34 * rows.len() as u32;
    let root = SVGBackend::new(out, (900, height)).into_drawing_area();
    root.fill(&WHITE).context("draw")?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Each figure against its goal (left of 1 = goal met)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(190)
        .build_cartesian_2d((low..high).log_scale(), 0.0..rows.len() as f64)
        .context("chart")?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("measured ÷ goal (\"at most\" goals) or goal ÷ measured (\"at least\" goals), log scale")
        .draw()
        .context("mesh")?;
    for (i, (f, share)) in rows.iter().enumerate() {
        let y = (rows.len() - 1 - i) as f64;
        let colour = if *share <= 1.0 {
            RGBColor(46, 139, 87)
        } else {
            RGBColor(200, 60, 50)
        };
        let end = share.clamp(low, high);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(low, y + 0.2), (end, y + 0.8)],
                colour.filled(),
            )))
            .context("bar")?;
        let shown = f.ratio.or(f.value).unwrap_or_default();
        chart
            .draw_series(std::iter::once(Text::new(
                format!(
                    "{} (goal {})",
                    trim(shown),
                    f.goal.replace("<=", "≤").replace(">=", "≥")
                ),
                (end * 1.08, y + 0.65),
                ("sans-serif", 13),
            )))
            .context("label")?;
        // The name sits left of the plot, level with its bar.
        let (_, row) = chart.backend_coord(&(low, y + 0.5));
        root.draw(&Text::new(f.name.clone(), (12, row - 6), ("monospace", 13)))
            .context("name")?;
    }
    chart
        .draw_series(LineSeries::new(
            [(1.0, 0.0), (1.0, rows.len() as f64)],
            BLACK.stroke_width(2),
        ))
        .context("goal line")?;
    root.present().context("write the SVG")?;
    Ok(())
}

fn trim(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(value: f64, ratio: Option<f64>, goal: &str) -> Figure {
        Figure {
            value: Some(value),
            ratio,
            ..Figure::new("x", "u", goal)
        }
    }

    #[test]
    fn shares_follow_the_goal_direction() {
        assert_eq!(goal_share(&fig(2.0, None, "<= 1")), Some(2.0));
        assert_eq!(goal_share(&fig(2000.0, None, ">= 10000")), Some(5.0));
        // A ratio figure is judged by its ratio, not its seconds.
        assert_eq!(goal_share(&fig(9.0, Some(0.5), "<= 1.0")), Some(0.5));
        assert_eq!(goal_share(&fig(1.0, None, "-")), None);
        assert_eq!(goal_share(&fig(0.0, None, ">= 5")), None);
    }

    #[test]
    fn the_svg_names_every_figure_with_a_goal() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("b.svg");
        let mut a = fig(0.5, None, "<= 1");
        a.name = "fast_thing".into();
        let mut b = fig(3.0, None, ">= 10");
        b.name = "slow_thing".into();
        draw(&[a, b, fig(1.0, None, "-")], &out).expect("draws");
        let svg = std::fs::read_to_string(&out).expect("written");
        assert!(
            svg.contains("fast_thing") && svg.contains("slow_thing"),
            "{svg}"
        );
        assert!(draw(&[fig(1.0, None, "-")], &dir.path().join("c.svg")).is_err());
    }
}
