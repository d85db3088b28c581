//! `driftkv sim --compare`: each scenario beside two variants of itself, the other write path
//! (what the forward hop of Dynamo's and Riak's path costs, or saves) and the healing machinery
//! (read repair, hinted handoff, anti-entropy) switched the other way; a table of t-visibility
//! with any published figures, and one picture of every scenario's curves.

use std::fmt::Write;

use driftkv_core::WritePath;
use serde::Serialize;

use super::plots::{PALETTE, published_series};
use super::{Report, TPoint};
use crate::scenario::{Published, Scenario};
use crate::svg::{Chart, grid, render};

/// One run of a comparison: a scenario's variant and its report.
pub struct CompareRow {
    pub scenario: String,
    pub variant: String,
    pub report: Report,
}

/// The variants `--compare` runs of `sc`: as written, with the other write path, and with the
/// healing machinery the other way (all three on when all were off in the scenario, all off
/// when any was on).
pub fn compare_variants(sc: &Scenario) -> Vec<(String, Scenario)> {
    let healing = sc.read_repair || sc.hinted_handoff || sc.anti_entropy;
    // Short names, so a chart's legend holds them; the table's foot spells them out.
    let describe = |s: &Scenario| {
        let path = match s.write_path {
            WritePath::Direct => "direct",
            WritePath::Replica => "replica",
        };
        let heal = match (s.read_repair, s.hinted_handoff, s.anti_entropy) {
            (false, false, false) => "no heal".to_string(),
            (true, true, true) => "healing".to_string(),
            (rr, hh, ae) => [(rr, "rr"), (hh, "hints"), (ae, "aae")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, name)| *name)
                .collect::<Vec<_>>()
                .join("+"),
        };
        format!("{path}, {heal}")
    };
    let mut other_path = sc.clone();
    other_path.write_path = match sc.write_path {
        WritePath::Direct => WritePath::Replica,
        WritePath::Replica => WritePath::Direct,
    };
    let mut healed = sc.clone();
    (
        healed.read_repair,
        healed.hinted_handoff,
        healed.anti_entropy,
    ) = (!healing, !healing, !healing);
    [sc.clone(), other_path, healed]
        .into_iter()
        .map(|s| (describe(&s), s))
        .collect()
}

/// The table: per scenario, t-visibility of each variant at every grid point, and the
/// published figures on a line of their own.
pub fn compare_table(rows: &[CompareRow]) -> String {
    let mut s = String::new();
    let mut last = None;
    for row in rows {
        let rep = &row.report;
        if last != Some(&row.scenario) {
            last = Some(&row.scenario);
            let _ = writeln!(s, "\n{} (seed {})", row.scenario, rep.seed);
            let mut header = format!("  {:<20}", "P(fresh read) at t");
            for p in &rep.t_visibility {
                header += &format!("{:>9}", format!("{}ms", p.t_ms));
            }
            let _ = writeln!(s, "{header}");
            if !rep.published.is_empty() {
                let mut line = format!("  {:<20}", "published");
                for p in &rep.t_visibility {
                    let published = rep.published.iter().find(|q| q.t_ms == p.t_ms);
                    line += &format!(
                        "{:>9}",
                        published.map_or(String::new(), |q| format!("{:.3}", q.p))
                    );
                }
                let _ = writeln!(s, "{line}");
            }
        }
        let mut line = format!("  {:<20}", row.variant);
        for p in &rep.t_visibility {
            line += &format!(
                "{:>9}",
                p.probability.map_or("n/a".into(), |v| format!("{v:.4}"))
            );
        }
        if !rep.passed() {
            line += "  (checks FAILED)";
        }
        let _ = writeln!(s, "{line}");
    }
    s.push_str(COMPARE_KEY);
    s
}

/// What the variants' names mean, under the table.
const COMPARE_KEY: &str = "
direct: the coordinator stamps each lww write and sends it to all N replicas, answering after W
  (Cassandra's path, the PBS model's); replica: a node that is not a replica forwards the write
  to one, which applies it and sends it on (Dynamo's and Riak's path: one hop more).
no heal: read repair, hinted handoff and anti-entropy off (the PBS model); healing: all three on
  (rr, hints, aae name the ones on when only some are).
";

/// One chart per scenario, its variants' curves and the published figures.
pub fn compare_plot(rows: &[CompareRow]) -> String {
    let mut charts: Vec<Chart> = Vec::new();
    let mut last: Option<&str> = None;
    for row in rows {
        if last != Some(row.scenario.as_str()) {
            last = Some(&row.scenario);
            let rep = &row.report;
            let mut series = Vec::new();
            if !rep.published.is_empty() {
                series.push(published_series(&rep.published));
            }
            charts.push(Chart {
                title: format!(
                    "{}: N={} R={} W={}",
                    row.scenario, rep.cluster.n, rep.cluster.r, rep.cluster.w
                ),
                x_label: "t: ms after the write was acknowledged (log scale)".into(),
                y_label: "P(read returns the write)".into(),
                y_max: 1.0,
                series,
            });
        }
        let chart = charts.last_mut().expect("pushed above");
        let curves = chart.series.iter().filter(|s| !s.markers_only).count();
        let color = PALETTE[curves % PALETTE.len()];
        let mut curve = row.report.t_visibility_series(row.variant.clone(), color);
        curve.truncate(1);
        chart.series.extend(curve);
    }
    match charts.len() {
        1 => render(&charts[0]),
        _ => grid(&charts, 2),
    }
}

/// The comparison as JSON: per scenario and variant, its settings and its t-visibility.
pub fn compare_json(rows: &[CompareRow]) -> String {
    #[derive(Serialize)]
    struct Entry<'a> {
        scenario: &'a str,
        variant: &'a str,
        seed: u64,
        write_path: &'a str,
        read_repair: bool,
        hinted_handoff: bool,
        anti_entropy: bool,
        t_visibility: &'a [TPoint],
        #[serde(skip_serializing_if = "<[Published]>::is_empty")]
        published: &'a [Published],
        checks_passed: bool,
    }
    let entries: Vec<Entry> = rows
        .iter()
        .map(|row| {
            let c = &row.report.cluster;
            Entry {
                scenario: &row.scenario,
                variant: &row.variant,
                seed: row.report.seed,
                write_path: &c.write_path,
                read_repair: c.read_repair,
                hinted_handoff: c.hinted_handoff,
                anti_entropy: c.anti_entropy,
                t_visibility: &row.report.t_visibility,
                published: &row.report.published,
                checks_passed: row.report.passed(),
            }
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&entries).expect("always serializes");
    s.push('\n');
    s
}
