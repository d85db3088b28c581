//! The report's SVG plots: t-visibility, the latency and inconsistency-window CDFs, and the
//! t-visibility curves of an R/W sweep.

use super::{Report, SweepRow, TPoint};
use crate::svg::{Chart, Series, cdf, render};

/// Colours for series, in order (the matplotlib "tab10" palette).
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

const BLUE: &str = PALETTE[0];
const GREEN: &str = PALETTE[2];
const RED: &str = PALETTE[3];

/// Probabilities are plotted from 0 to 1, as are CDFs.
const PROBABILITY_MAX: f64 = 1.0;

const T_VISIBILITY_X_LABEL: &str = "t: ms after the write was acknowledged (log scale)";
const T_VISIBILITY_Y_LABEL: &str = "P(read returns the write)";

/// The grid points of a t-visibility curve that have a probability (some trial completed).
fn t_visibility_points(t_visibility: &[TPoint]) -> Vec<(f64, f64)> {
    t_visibility
        .iter()
        .filter_map(|p| p.probability.map(|v| (p.t_ms, v)))
        .collect()
}

impl Report {
    /// `(file name, SVG)` for each plot.
    pub fn plots(&self) -> Vec<(String, String)> {
        vec![
            ("t_visibility.svg".to_string(), self.t_visibility_plot()),
            ("latency_cdf.svg".to_string(), self.latency_plot()),
            (
                "inconsistency_window_cdf.svg".to_string(),
                self.window_plot(),
            ),
        ]
    }

    fn t_visibility_plot(&self) -> String {
        let (n, r, w) = (self.cluster.n, &self.cluster.r, &self.cluster.w);
        render(&Chart {
            title: format!("t-visibility: N={n} R={r} W={w}"),
            x_label: T_VISIBILITY_X_LABEL.into(),
            y_label: T_VISIBILITY_Y_LABEL.into(),
            y_max: PROBABILITY_MAX,
            series: vec![Series {
                name: format!("R={r} W={w}"),
                color: BLUE,
                points: t_visibility_points(&self.t_visibility),
            }],
        })
    }

    fn latency_plot(&self) -> String {
        render(&Chart {
            title: "client latency".into(),
            x_label: "ms (log scale)".into(),
            y_label: "fraction of operations".into(),
            y_max: PROBABILITY_MAX,
            series: vec![
                Series {
                    name: "reads".into(),
                    color: BLUE,
                    points: cdf(&self.samples.read_latency_ms),
                },
                Series {
                    name: "writes".into(),
                    color: RED,
                    points: cdf(&self.samples.write_latency_ms),
                },
            ],
        })
    }

    fn window_plot(&self) -> String {
        render(&Chart {
            title: "inconsistency window per acknowledged write".into(),
            x_label: "ms from acknowledgement until every replica holds it (log scale)".into(),
            y_label: "fraction of writes".into(),
            y_max: PROBABILITY_MAX,
            series: vec![Series {
                name: "writes".into(),
                color: GREEN,
                points: cdf(&self.samples.windows_ms),
            }],
        })
    }
}

/// One t-visibility curve per R/W pair of a sweep.
pub fn sweep_plot(rows: &[SweepRow]) -> String {
    let series = rows
        .iter()
        .enumerate()
        .map(|(i, row)| Series {
            name: format!("R={} W={}", row.r, row.w),
            color: PALETTE[i % PALETTE.len()],
            points: t_visibility_points(&row.report.t_visibility),
        })
        .collect();
    render(&Chart {
        title: format!(
            "t-visibility by R and W (N={})",
            rows.first().map_or(0, |r| r.report.cluster.n)
        ),
        x_label: T_VISIBILITY_X_LABEL.into(),
        y_label: T_VISIBILITY_Y_LABEL.into(),
        y_max: PROBABILITY_MAX,
        series,
    })
}
