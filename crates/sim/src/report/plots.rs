//! The report's SVG plots: t-visibility, the latency and inconsistency-window CDFs, and the
//! t-visibility curves of an R/W sweep.

use super::{KStaleness, Report, SweepRow, TPoint};
use crate::scenario::Published;
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
        let mut plots = vec![
            ("t_visibility.svg".to_string(), self.t_visibility_plot()),
            ("latency_cdf.svg".to_string(), self.latency_plot()),
            (
                "inconsistency_window_cdf.svg".to_string(),
                self.window_plot(),
            ),
        ];
        if let Some(k) = &self.k_staleness {
            plots.push(("k_staleness.svg".to_string(), self.k_staleness_plot(k)));
        }
        plots
    }

    fn t_visibility_plot(&self) -> String {
        let (n, r, w) = (self.cluster.n, &self.cluster.r, &self.cluster.w);
        render(&Chart {
            title: format!("t-visibility: N={n} R={r} W={w}"),
            x_label: T_VISIBILITY_X_LABEL.into(),
            y_label: T_VISIBILITY_Y_LABEL.into(),
            y_max: PROBABILITY_MAX,
            series: self.t_visibility_series(format!("R={r} W={w}"), BLUE),
        })
    }

    /// The measured t-visibility curve, named `name`, and the published figures beside it.
    pub fn t_visibility_series(&self, name: String, color: &'static str) -> Vec<Series> {
        let mut series = vec![Series {
            name,
            color,
            points: t_visibility_points(&self.t_visibility),
            markers_only: false,
        }];
        if !self.published.is_empty() {
            series.push(published_series(&self.published));
        }
        series
    }

    /// One curve per `k`: the share of reads that returned one of the last `k` versions.
    fn k_staleness_plot(&self, k: &KStaleness) -> String {
        let series = (0..k.versions as usize)
            .map(|i| Series {
                name: format!("within k={}", i + 1),
                color: PALETTE[i % PALETTE.len()],
                points: k
                    .points
                    .iter()
                    .filter(|p| p.reads > 0)
                    .map(|p| (p.t_ms, p.within_k[i]))
                    .collect(),
                markers_only: false,
            })
            .collect();
        render(&Chart {
            title: format!(
                "<k, t>-staleness: the last {} versions, N={} R={} W={}",
                k.versions, self.cluster.n, self.cluster.r, self.cluster.w
            ),
            x_label: T_VISIBILITY_X_LABEL.into(),
            y_label: "P(read returns one of the last k versions)".into(),
            y_max: PROBABILITY_MAX,
            series,
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
                    markers_only: false,
                },
                Series {
                    name: "writes".into(),
                    color: RED,
                    points: cdf(&self.samples.write_latency_ms),
                    markers_only: false,
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
                markers_only: false,
            }],
        })
    }
}

/// Published figures, as hollow squares.
pub fn published_series(published: &[Published]) -> Series {
    Series {
        name: "published".into(),
        color: "#000000",
        points: published.iter().map(|p| (p.t_ms, p.p)).collect(),
        markers_only: true,
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
            markers_only: false,
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
