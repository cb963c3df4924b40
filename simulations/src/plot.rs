//! `corral-sim plot`: makespan over the oracle per policy and scenario, as
//! grouped bars on a logarithmic axis in a self-contained SVG.
//!
//! The ratios span 1.0 (corral, often) to ~26 (random at 10,000 devices):
//! on a linear axis the interesting end vanishes, so the axis is log10 with
//! ticks at 1, 2, 5, 10, 20, 50, … and every bar rises from 1× (the oracle)
//! with its value written on it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One bar: a policy's makespan over the oracle on one scenario.
struct Bar {
    scenario: String,
    policy: String,
    value: f64,
}

/// The axis never goes below this or above `CEILING`; a ratio outside is
/// drawn clipped at the edge, its label still giving the true value.
const FLOOR: f64 = 0.01;
/// See `FLOOR`.
const CEILING: f64 = 1e6;
/// A bar at (or within a hair of) 1× is still drawn this many pixels tall,
/// so it does not vanish into the baseline.
const MIN_BAR_PX: i32 = 2;
/// The chart's height, in pixels.
const HEIGHT: u32 = 440;
/// The legend's column, right of the plot, in pixels.
const LEGEND_WIDTH: u32 = 150;
/// One colour per policy, in the CSV's order.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Reads the CSV files and draws the chart.
pub fn draw(csv: &[PathBuf], out: &Path) -> anyhow::Result<()> {
    let svg = render(&read(csv)?)?;
    std::fs::write(out, svg).with_context(|| format!("cannot write {}", out.display()))
}

/// The bars in file order.
fn read(csv: &[PathBuf]) -> anyhow::Result<Vec<Bar>> {
    let mut bars = Vec::new();
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
            bars.push(Bar {
                scenario: record[s].to_string(),
                policy: record[p].to_string(),
                value,
            });
        }
    }
    anyhow::ensure!(!bars.is_empty(), "the CSV files hold no rows");
    Ok(bars)
}

/// `m`×10^`k`, as exact as f64 allows (10^k is exact for |k| ≤ 22).
fn decade(m: f64, k: i32) -> f64 {
    if k >= 0 {
        m * 10f64.powi(k)
    } else {
        m / 10f64.powi(-k)
    }
}

/// The values `m`×10^k for each `m` in `ms` from `lo` to `hi` inclusive.
fn ladder(ms: &[f64], lo: f64, hi: f64) -> Vec<f64> {
    let near = |a: f64, b: f64| a >= b * (1.0 - 1e-9);
    let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    (k0..=k1)
        .flat_map(|k| ms.iter().map(move |m| decade(*m, k)))
        .filter(|v| near(*v, lo) && near(hi, *v))
        .collect()
}

/// The labelled ticks: 1, 2, 5, 10, 20, 50, … (and 0.5, 0.2, … under 1×).
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    ladder(&[1.0, 2.0, 5.0], lo, hi)
}

/// The axis from the oracle (1×) to the first tick at or above the largest
/// ratio plus room for its label, and at least to 2×. Ratios are makespan
/// over a lower bound, so ≥ 1 in theory; one under 1 (a bound that was not
/// one) extends the axis down to the tick at or under it, no lower than
/// `FLOOR`, and its bar hangs down from 1×. A ratio of 0 or less (the
/// reader refuses negatives) has no logarithm: it takes no part in the
/// axis and gets no bar, only its label on the baseline (see `render`).
fn axis(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let drawable = values.filter(|v| v.is_finite() && *v > 0.0);
    let lo = drawable.clone().fold(1.0, f64::min).max(FLOOR);
    let hi = (drawable.fold(1.0, f64::max) * 1.25).clamp(2.0, CEILING);
    let floor = ticks(FLOOR, 1.0)
        .into_iter()
        .rfind(|t| *t <= lo * (1.0 + 1e-9))
        .unwrap_or(FLOOR);
    let top = ticks(hi, hi * 10.0).first().copied().unwrap_or(CEILING);
    (floor, top)
}

/// A tick's label: "1", "20", "0.5", "0.05".
fn tick_label(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        let digits = (-v.log10() - 1e-9).ceil().max(1.0) as usize;
        format!("{v:.digits$}")
    }
}

/// A bar's label, as the README's table writes ratios.
fn value_label(v: f64) -> String {
    match v {
        v if v <= 0.0 => "0".to_string(),
        v if v < FLOOR => format!("<{FLOOR}"),
        v if v < 10.0 => format!("{v:.2}"),
        v => format!("{v:.1}"),
    }
}

/// Draws the bars as an SVG document.
fn render(bars: &[Bar]) -> anyhow::Result<String> {
    let mut scenarios: Vec<&str> = Vec::new();
    let mut policies: Vec<&str> = Vec::new();
    for b in bars {
        if !scenarios.contains(&b.scenario.as_str()) {
            scenarios.push(&b.scenario);
        }
        if !policies.contains(&b.policy.as_str()) {
            policies.push(&b.policy);
        }
    }
    let (floor, top) = axis(bars.iter().map(|b| b.value));
    // Over more than three decades 1-2-5 labels crowd: label the decades.
    let (labelled, minor) = if top / floor > 1000.0 {
        (ladder(&[1.0], floor, top), ladder(&[2.0, 5.0], floor, top))
    } else {
        let minor = ladder(&[3.0, 4.0, 6.0, 7.0, 8.0, 9.0], floor, top);
        (ticks(floor, top), minor)
    };
    let groups = scenarios.len() as f64;
    let plot_width = (160 + scenarios.len() * (policies.len() * 36 + 40)).max(640) as u32;
    let width = plot_width + LEGEND_WIDTH;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let body = root.titled(
            "makespan ÷ oracle lower bound, log scale (lower is better; 1 = the oracle)",
            ("sans-serif", 18),
        )?;
        let (plot, legend) = body.split_horizontally(plot_width);
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(
                0.0..groups,
                (floor..top)
                    .log_scale()
                    .with_key_points(labelled)
                    .with_light_points(minor),
            )?;
        let tick = |y: &f64| tick_label(*y);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_label_formatter(&tick)
            .y_desc("makespan ÷ oracle (log scale)")
            .draw()?;
        // The oracle's line, which is the x axis unless a ratio is under 1.
        chart.draw_series(LineSeries::new([(0.0, 1.0), (groups, 1.0)], BLACK))?;

        let above = Pos::new(HPos::Center, VPos::Bottom);
        let below = Pos::new(HPos::Center, VPos::Top);
        let font = |size: u32, pos: Pos| TextStyle::from(("sans-serif", size).into_font()).pos(pos);
        for (g, name) in scenarios.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(g as f64 + 0.5, floor));
            root.draw(&Text::new(name.to_string(), (x, y + 8), font(14, below)))?;
        }
        // Bars in pixels, so a ratio of 1.00 still shows `MIN_BAR_PX`.
        let width = 0.8 / policies.len() as f64;
        for b in bars {
            let (Some(g), Some(p)) = (
                scenarios.iter().position(|s| *s == b.scenario),
                policies.iter().position(|p| *p == b.policy),
            ) else {
                continue;
            };
            let x0 = g as f64 + 0.1 + width * p as f64;
            let (left, base) = chart.backend_coord(&(x0, 1.0));
            let right = chart.backend_coord(&(x0 + width * 0.9, 1.0)).0;
            let centre = (left + right) / 2;
            let label = value_label(b.value);
            if b.value.is_nan() || b.value <= 0.0 {
                root.draw(&Text::new(label, (centre, base - 3), font(11, above)))?;
                continue;
            }
            let end = chart.backend_coord(&(x0, b.value.clamp(floor, top))).1;
            let color = PALETTE[p % PALETTE.len()];
            let (end, at) = if b.value >= 1.0 {
                let end = end.min(base - MIN_BAR_PX);
                (end, Text::new(label, (centre, end - 3), font(11, above)))
            } else {
                let end = end.max(base + MIN_BAR_PX);
                (end, Text::new(label, (centre, end + 3), font(11, below)))
            };
            root.draw(&Rectangle::new(
                [(left, base), (right, end)],
                color.filled(),
            ))?;
            root.draw(&at)?;
        }

        let middle = Pos::new(HPos::Left, VPos::Center);
        for (i, policy) in policies.iter().enumerate() {
            let y = 60 + 24 * i as i32;
            let color = PALETTE[i % PALETTE.len()];
            legend.draw(&Rectangle::new([(8, y - 7), (22, y + 7)], color.filled()))?;
            legend.draw(&Text::new(policy.to_string(), (30, y), font(14, middle)))?;
        }
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The colours `draw` gives the first four policies, in CSV order.
    const FILLS: [&str; 4] = ["#1F77B4", "#FF7F0E", "#2CA02C", "#D62728"];

    /// Draws one scenario whose four policies score `values`, through the
    /// CSV file and the SVG file as `corral-sim plot` does.
    fn plot(values: [f64; 4]) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let csv = dir.path().join("in.csv");
        let mut text = String::from("scenario,policy,makespan_over_oracle\n");
        for (i, v) in values.iter().enumerate() {
            text.push_str(&format!("s,p{i},{v}\n"));
        }
        std::fs::write(&csv, text).expect("write csv");
        let svg = dir.path().join("out.svg");
        draw(&[csv], &svg).expect("draw");
        std::fs::read_to_string(&svg).expect("read svg")
    }

    /// The value of `name="…"` in one SVG tag.
    fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        let len = tag[start..].find('"')?;
        Some(&tag[start..start + len])
    }

    /// The bar filled with `fill`, as (top, height) in pixels: a rectangle
    /// of that colour wider than the legend's swatch, if there is one.
    fn bar(svg: &str, fill: &str) -> Option<(f64, f64)> {
        let px = |tag: &str, name: &str| -> f64 {
            attr(tag, name)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no numeric {name} in {tag}"))
        };
        svg.split("<rect")
            .skip(1)
            .filter_map(|t| t.split("/>").next())
            .filter(|t| attr(t, "fill") == Some(fill) && px(t, "width") > 20.0)
            .map(|t| (px(t, "y"), px(t, "height")))
            .next()
    }

    /// The height in pixels of the bar filled with `fill`.
    fn bar_height(svg: &str, fill: &str) -> f64 {
        bar(svg, fill)
            .unwrap_or_else(|| panic!("no bar filled {fill}"))
            .1
    }

    /// Every text drawn, trimmed.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split("</text>").next()?.trim()))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn bars_rise_from_the_oracle_in_log_proportion() {
        let values = [1.1, 2.0, 5.0, 26.0];
        let svg = plot(values);
        let heights: Vec<f64> = FILLS.iter().map(|f| bar_height(&svg, f)).collect();
        let tallest = heights[3];
        assert!(tallest > 100.0, "the 26× bar is only {tallest} px");
        // On a log axis from 1× each bar is as tall as log(value), so
        // its height over the 26× bar's is log(v)/log(26): 0.029 for 1.1
        // (linear from 0: 0.042), 0.21 for 2 (0.077), 0.49 for 5 (0.19).
        // One pixel of rounding either way is allowed.
        for (v, h) in values.iter().zip(&heights) {
            let want = tallest * v.ln() / 26f64.ln();
            assert!(
                (h - want).abs() <= 1.5,
                "the {v}× bar is {h} px, want {want:.1} px (log scale, 26× = {tallest} px)"
            );
        }
        assert!(heights[0] >= 3.0, "the 1.1× bar is invisible");
        let labels = texts(&svg);
        for tick in ["1", "2", "5", "10", "20"] {
            assert!(
                labels.iter().any(|t| t == tick),
                "no tick labelled {tick} in {labels:?}"
            );
        }
        assert!(
            labels.iter().any(|t| t.contains("log scale")),
            "the axis does not say it is logarithmic: {labels:?}"
        );
    }

    #[test]
    fn ratios_under_the_oracle_hang_below_it_and_zero_is_labelled() {
        let svg = plot([0.5, 0.0, 1.0, 4.0]);
        let (low_top, low) = bar(&svg, FILLS[0]).expect("the 0.5× bar");
        let (high_top, high) = bar(&svg, FILLS[3]).expect("the 4× bar");
        // 0.5 is as far under 1 as 2 is over it: half of 4's height, and
        // it hangs from the baseline the 4× bar stands on.
        assert!((low_top - (high_top + high)).abs() <= 1.0, "{svg}");
        assert!(
            (low - high / 2.0).abs() <= 1.5,
            "0.5×: {low} px, 4×: {high} px"
        );
        assert!(bar(&svg, FILLS[1]).is_none(), "a bar drawn for 0");
        assert_eq!(bar_height(&svg, FILLS[2]), f64::from(MIN_BAR_PX));
        let labels = texts(&svg);
        for label in ["0.5", "1", "2", "0", "0.50", "1.00", "4.00"] {
            assert!(
                labels.iter().any(|t| t == label),
                "no {label} in {labels:?}"
            );
        }
    }

    #[test]
    fn the_axis_ends_on_1_2_5_ticks_around_the_ratios() {
        let axis_of = |v: &[f64]| axis(v.iter().copied());
        assert_eq!(axis_of(&[1.1, 26.0]), (1.0, 50.0));
        assert_eq!(axis_of(&[1.0, 1.05]), (1.0, 2.0));
        assert_eq!(axis_of(&[1.08, 14.4]), (1.0, 20.0));
        assert_eq!(axis_of(&[0.3, 4.0]), (0.2, 5.0));
        assert_eq!(axis_of(&[0.0, 3.0]), (1.0, 5.0));
        assert_eq!(axis_of(&[1e-5, 1e9]), (FLOOR, CEILING));
        assert_eq!(ticks(1.0, 50.0), [1.0, 2.0, 5.0, 10.0, 20.0, 50.0]);
        let labels: Vec<String> = ticks(0.01, 1.0).into_iter().map(tick_label).collect();
        assert_eq!(labels, ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1"]);
        assert_eq!(value_label(1.0753), "1.08");
        assert_eq!(value_label(26.003), "26.0");
    }

    #[test]
    fn the_svg_is_deterministic_and_self_contained() {
        let first = plot([1.1, 2.0, 5.0, 26.0]);
        assert_eq!(first, plot([1.1, 2.0, 5.0, 26.0]));
        assert!(first.starts_with("<svg"));
        for outside in ["href", "<image", "url(", "@import"] {
            assert!(
                !first.contains(outside),
                "the SVG refers outside: {outside}"
            );
        }
    }
}
