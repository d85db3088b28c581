//! The comparison table of an R/W sweep: per (R, W), t-visibility at a few points, stale
//! reads, tail latencies, availability and whether the checks passed.

use std::collections::BTreeSet;
use std::fmt::Write;

use driftkv_wire::Quorum;

use super::Report;

/// One row of an R/W sweep.
pub struct SweepRow {
    pub r: String,
    pub w: String,
    pub report: Report,
}

/// The t-visibility points a sweep table shows (the closest grid points to these).
pub const SWEEP_T_MS: [f64; 4] = [0.0, 5.0, 20.0, 100.0];

/// A comparison table of an R/W sweep, as text.
pub fn sweep_table(n: usize, rows: &[SweepRow]) -> String {
    let mut s = String::new();
    let Some(first) = rows.first() else {
        return s;
    };
    let shown = shown_points(&first.report);
    let _ = writeln!(s, "N = {n}");
    let _ = writeln!(s, "{}", header(&first.report, &shown));
    for row in rows {
        let _ = writeln!(s, "{}", row_line(row, n, &shown));
    }
    s
}

/// The indices of the t-visibility grid points closest to `SWEEP_T_MS`, once each, in order.
fn shown_points(report: &Report) -> Vec<usize> {
    SWEEP_T_MS
        .iter()
        .filter_map(|want| {
            report
                .t_visibility
                .iter()
                .enumerate()
                .min_by(|a, b| (a.1.t_ms - want).abs().total_cmp(&(b.1.t_ms - want).abs()))
                .map(|(i, _)| i)
        })
        .collect::<BTreeSet<usize>>()
        .into_iter()
        .collect()
}

fn header(report: &Report, shown: &[usize]) -> String {
    let mut header = format!("{:>3} {:>3} {:>6} ", "R", "W", "R+W>N");
    for &i in shown {
        header += &format!("{:>9}", format!("P@{}ms", report.t_visibility[i].t_ms));
    }
    header += &format!(
        " {:>8} {:>10} {:>10} {:>10} {:>8} {:>7}",
        "stale", "read p99", "write p99", "window p99", "avail", "checks"
    );
    header
}

fn row_line(row: &SweepRow, n: usize, shown: &[usize]) -> String {
    let rep = &row.report;
    let strict = level_count(&row.r, n) + level_count(&row.w, n) > n;
    let mut line = format!(
        "{:>3} {:>3} {:>6} ",
        row.r,
        row.w,
        if strict { "yes" } else { "no" }
    );
    for &i in shown {
        let p = rep.t_visibility.get(i).and_then(|p| p.probability);
        line += &format!("{:>9}", p.map_or("n/a".into(), |v| format!("{v:.4}")));
    }
    line += &format!(
        " {:>8.4} {:>10} {:>10} {:>10} {:>8.4} {:>7}",
        rep.stale_read_ratio,
        rep.read_latency_ms.p99,
        rep.write_latency_ms.p99,
        rep.inconsistency_window_ms.p99,
        rep.write_availability,
        if rep.passed() { "pass" } else { "FAIL" }
    );
    line
}

/// How many replicas a quorum level names out of `n` (0 if it names none).
fn level_count(level: &str, n: usize) -> usize {
    Quorum::parse(level)
        .ok()
        .and_then(|q| q.resolve(n, Quorum::Quorum).ok())
        .unwrap_or(0)
}
