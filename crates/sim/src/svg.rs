//! Hand-written SVG line charts: no font library, no system dependency, byte-identical for the
//! same data (numbers are printed with fixed precision).

use std::fmt::Write;

/// One line on a chart.
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
    /// Drawn as hollow squares without a line (figures to compare against, not a curve).
    pub markers_only: bool,
}

/// A chart whose x axis is `log10(1 + x)` (so 0 fits and milliseconds from 0.1 to 10 000 all
/// show) and whose y axis is linear over `[0, y_max]`.
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub y_max: f64,
    pub series: Vec<Series>,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 160.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// Points drawn per series at most (a CDF of a million samples is summarised).
pub const POINTS_MAX: usize = 400;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn fx(x: f64) -> f64 {
    (1.0 + x.max(0.0)).log10()
}

/// Tick values 0, 1, 2, 5, 10, 20, 50, ... up to `max`.
fn x_ticks(max: f64) -> Vec<f64> {
    let mut ticks = vec![0.0];
    let mut decade = 1.0;
    while decade <= max * 1.0001 && ticks.len() < 40 {
        for m in [1.0, 2.0, 5.0] {
            let t = decade * m;
            if t <= max * 1.0001 {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
}

fn label(v: f64) -> String {
    if v >= 1000.0 && v % 1000.0 == 0.0 {
        format!("{}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v}")
    } else {
        format!("{v:.1}")
    }
}

pub fn render(chart: &Chart) -> String {
    let x_max = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0_f64, f64::max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + fx(x) / fx(x_max) * plot_w;
    let sy = |y: f64| TOP + plot_h - (y / chart.y_max).clamp(0.0, 1.0) * plot_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        escape(&chart.title)
    );
    // Grid and ticks.
    for t in x_ticks(x_max) {
        let x = sx(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.2}" y1="{TOP}" x2="{x:.2}" y2="{:.2}" stroke="#e4e4e4"/><text x="{x:.2}" y="{:.2}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0,
            label(t)
        );
    }
    for i in 0..=5 {
        let v = chart.y_max * i as f64 / 5.0;
        let y = sy(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.2}" x2="{:.2}" y2="{y:.2}" stroke="#e4e4e4"/><text x="{:.2}" y="{:.2}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            if chart.y_max <= 1.0 {
                format!("{v:.1}")
            } else {
                label(v)
            }
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.2}" y="{:.2}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 18.0,
        escape(&chart.x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.2}" text-anchor="middle" transform="rotate(-90 18 {:.2})">{}</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(&chart.y_label)
    );
    // Lines and legend.
    for (i, series) in chart.series.iter().enumerate() {
        if series.markers_only {
            for (x, y) in &series.points {
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.2}" y="{:.2}" width="9" height="9" fill="none" stroke="{}" stroke-width="2"/>"#,
                    sx(*x) - 4.5,
                    sy(*y) - 4.5,
                    series.color
                );
            }
        } else if !series.points.is_empty() {
            let path: Vec<String> = series
                .points
                .iter()
                .map(|(x, y)| format!("{:.2},{:.2}", sx(*x), sy(*y)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
                series.color,
                path.join(" ")
            );
            if series.points.len() <= 40 {
                for (x, y) in &series.points {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{:.2}" cy="{:.2}" r="3" fill="{}"/>"#,
                        sx(*x),
                        sy(*y),
                        series.color
                    );
                }
            }
        }
        let ly = TOP + 10.0 + 20.0 * i as f64;
        let lx = LEFT + plot_w + 12.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.2}" y1="{ly:.2}" x2="{:.2}" y2="{ly:.2}" stroke="{}" stroke-width="3"/><text x="{:.2}" y="{:.2}">{}</text>"#,
            lx + 18.0,
            series.color,
            lx + 24.0,
            ly + 4.0,
            escape(&series.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Several charts in one picture, `columns` to a row, each as [`render`] draws it.
pub fn grid(charts: &[Chart], columns: usize) -> String {
    let columns = columns.clamp(1, charts.len().max(1));
    let rows = charts.len().div_ceil(columns).max(1);
    let (width, height) = (WIDTH * columns as f64, HEIGHT * rows as f64);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">"#
    );
    for (i, chart) in charts.iter().enumerate() {
        let (x, y) = (WIDTH * (i % columns) as f64, HEIGHT * (i / columns) as f64);
        let one = render(chart);
        let placed = one.replacen("<svg ", &format!(r#"<svg x="{x}" y="{y}" "#), 1);
        s.push_str(&placed);
    }
    s.push_str("</svg>\n");
    s
}

/// An empirical CDF of `samples`, summarised to at most [`POINTS_MAX`] points.
pub fn cdf(samples: &[f64]) -> Vec<(f64, f64)> {
    if samples.is_empty() {
        return Vec::new();
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    let steps = (POINTS_MAX - 1).min(n);
    // Starts at 0 at the smallest sample, so the curve rises from the axis.
    std::iter::once((sorted[0], 0.0))
        .chain((1..=steps).map(|k| {
            let idx = (k * n).div_ceil(steps) - 1;
            (sorted[idx], (idx + 1) as f64 / n as f64)
        }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_well_formed_svg_with_its_series_and_escaped_text() {
        let svg = render(&Chart {
            title: "P(read sees write) <t>".into(),
            x_label: "t (ms)".into(),
            y_label: "probability".into(),
            y_max: 1.0,
            series: vec![Series {
                name: "R=1 W=1".into(),
                color: "#1f77b4",
                points: vec![(0.0, 0.5), (10.0, 0.9), (100.0, 1.0)],
                markers_only: false,
            }],
        });
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("&lt;t&gt;"));
        assert!(svg.contains("<polyline"));
        assert_eq!(svg.matches("<circle").count(), 3);
    }

    #[test]
    fn cdf_ends_at_one_and_is_bounded_in_points() {
        let samples: Vec<f64> = (0..10_000).map(|i| i as f64).collect();
        let c = cdf(&samples);
        assert_eq!(c.len(), POINTS_MAX);
        assert_eq!(c[0], (0.0, 0.0));
        assert_eq!(c.last().unwrap(), &(9_999.0, 1.0));
        assert!(c.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }
}
