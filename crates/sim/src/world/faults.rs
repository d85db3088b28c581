//! Faults: the scenario's scheduled ones and the chaos ones drawn from the seed, planned at the
//! start; then cuts, loss, crashes (and restarts from the store) and disk faults as they begin
//! and heal. Joins and leaves are planned here too, and happen in `membership`.

use driftkv_core::StoreFaults;
use driftkv_core::store::PPM;

use super::Sim;
use super::nodes::Life;
use super::time::{US_PER_MS, us};
use crate::rng::Rng;
use crate::scenario::{Fault, Scenario};

/// A fault with its window, nodes resolved to indices.
#[derive(Clone, Debug)]
pub struct PlannedFault {
    pub at_us: u64,
    pub until_us: u64,
    pub kind: FaultKind,
    pub label: String,
}

#[derive(Clone, Debug)]
pub enum FaultKind {
    /// Directed links (from, to) cut.
    Cut(Vec<(usize, usize)>),
    Crash(usize),
    Loss(f64),
    /// The node boots and joins the cluster (for good: no end).
    Join(usize),
    /// The node is told to leave (for good: no end).
    Leave(usize),
    /// The node's disk fails now and then during the window.
    Disk(usize, StoreFaults),
}

impl FaultKind {
    /// A join or a leave: it has a start and no end.
    pub fn is_membership_change(&self) -> bool {
        matches!(self, FaultKind::Join(_) | FaultKind::Leave(_))
    }
}

/// The run's faults.
pub(super) struct Faults {
    /// Every fault, the scenario's first, then the chaos ones.
    pub(super) planned: Vec<PlannedFault>,
    /// Faults are in force: false once traffic stopped and everything healed.
    pub(super) active: bool,
}

impl Faults {
    pub(super) fn new(planned: Vec<PlannedFault>) -> Faults {
        Faults {
            planned,
            active: true,
        }
    }
}

/// Resolves the scenario's faults and draws the chaos ones from the seed.
pub(super) fn plan(sc: &Scenario, n: usize, t0_us: u64) -> Vec<PlannedFault> {
    let mut planned = Vec::new();
    for f in &sc.faults {
        let until_ms = f.until_ms.unwrap_or(sc.duration_ms).min(sc.duration_ms);
        let (kind, label) = scheduled(sc, f, n, planned.len());
        planned.push(PlannedFault {
            at_us: t0_us + f.at_ms * US_PER_MS,
            until_us: t0_us + until_ms * US_PER_MS,
            kind,
            label,
        });
    }
    plan_chaos(sc, n, t0_us, &mut planned);
    planned
}

/// One of the scenario's faults, resolved: the `index`-th planned.
fn scheduled(sc: &Scenario, f: &Fault, n: usize, index: usize) -> (FaultKind, String) {
    let idx = |name: &String| sc.node_index(name).expect("validated");
    if let Some(groups) = &f.split {
        let mut group_of = vec![groups.len(); n];
        for (g, names) in groups.iter().enumerate() {
            for name in names {
                group_of[idx(name)] = g;
            }
        }
        let links = links_between(n, |a, b| group_of[a] != group_of[b]);
        let text: Vec<String> = groups.iter().map(|g| g.join(",")).collect();
        (FaultKind::Cut(links), format!("split {}", text.join(" | ")))
    } else if let Some(cut) = &f.cut {
        let mut links = Vec::new();
        for [a, b] in cut {
            links.push((idx(a), idx(b)));
            if !f.one_way {
                links.push((idx(b), idx(a)));
            }
        }
        let text: Vec<String> = cut
            .iter()
            .map(|[a, b]| format!("{a}{}{b}", if f.one_way { "->" } else { "<->" }))
            .collect();
        (FaultKind::Cut(links), format!("cut {}", text.join(" ")))
    } else if let Some(name) = &f.crash {
        (FaultKind::Crash(idx(name)), format!("crash {name}"))
    } else if let Some(name) = &f.join {
        (FaultKind::Join(idx(name)), format!("{name} joins"))
    } else if let Some(name) = &f.leave {
        (FaultKind::Leave(idx(name)), format!("{name} leaves"))
    } else if let Some(name) = &f.disk {
        let faults = disk_faults(sc, f, index);
        (
            FaultKind::Disk(idx(name), faults),
            format!("{name}'s disk fails"),
        )
    } else {
        let p = f.loss.expect("validated: one kind");
        (FaultKind::Loss(p), format!("loss {p}"))
    }
}

/// Every directed link `(a, b)` among `n` nodes that `cut` picks, in order.
fn links_between(n: usize, cut: impl Fn(usize, usize) -> bool) -> Vec<(usize, usize)> {
    let mut links = Vec::new();
    for a in 0..n {
        for b in 0..n {
            if cut(a, b) {
                links.push((a, b));
            }
        }
    }
    links
}

/// The store faults of the `index`-th planned fault, a disk fault: its chances in parts per
/// million, and a seed of its own.
fn disk_faults(sc: &Scenario, f: &Fault, index: usize) -> StoreFaults {
    let ppm = |p: Option<f64>| (p.unwrap_or(0.0) * f64::from(PPM)).round() as u32;
    StoreFaults {
        sync_fail_ppm: ppm(f.sync_fail),
        write_fail_ppm: ppm(f.write_fail),
        seed: Rng::stream(sc.seed, &format!("disk {index}")).next_u64(),
        ..StoreFaults::default()
    }
}

/// Draws the chaos faults from the seed's "chaos" stream: crashes of random nodes, then splits
/// isolating a random minority, each at a random time during traffic.
fn plan_chaos(sc: &Scenario, n: usize, t0_us: u64, planned: &mut Vec<PlannedFault>) {
    let end_ms = sc.duration_ms;
    let mut rng = Rng::stream(sc.seed, "chaos");
    let window = |rng: &mut Rng| {
        let at_ms = rng.unit() * end_ms as f64;
        let len_ms = sc.chaos.fault_ms.sample(rng).max(1.0);
        let until_ms = (at_ms + len_ms).min(end_ms as f64);
        (us(at_ms), us(until_ms))
    };
    let mut push = |(at, until): (u64, u64), kind, label| {
        planned.push(PlannedFault {
            at_us: t0_us + at,
            until_us: t0_us + until.max(at + 1),
            kind,
            label,
        });
    };
    for _ in 0..sc.chaos.crashes {
        let node = rng.index(n);
        let label = format!("crash n{} (chaos)", node + 1);
        push(window(&mut rng), FaultKind::Crash(node), label);
    }
    for _ in 0..sc.chaos.splits {
        if n < 2 {
            break;
        }
        let size = 1 + rng.index(((n - 1) / 2).max(1));
        let mut members: Vec<usize> = (0..n).collect();
        for i in 0..size {
            let j = i + rng.index(n - i);
            members.swap(i, j);
        }
        let minority = &members[..size];
        let links = links_between(n, |a, b| minority.contains(&a) != minority.contains(&b));
        let names: Vec<String> = minority.iter().map(|i| format!("n{}", i + 1)).collect();
        let label = format!("split off {} (chaos)", names.join(","));
        push(window(&mut rng), FaultKind::Cut(links), label);
    }
}

impl Sim<'_> {
    /// Fault `f` begins (`start`) or heals.
    pub(super) fn on_fault(&mut self, f: usize, start: bool) {
        if !self.faults.active {
            return; // everything healed when traffic stopped
        }
        let fault = self.faults.planned[f].clone();
        match &fault.kind {
            FaultKind::Cut(links) => self.net.cut_links(links, start),
            FaultKind::Loss(p) => self.net.change_loss(*p, start),
            FaultKind::Join(node) => self.on_join(*node, start),
            FaultKind::Leave(node) => self.on_leave(*node, start),
            FaultKind::Disk(node, faults) => {
                let faults = if start {
                    faults.clone()
                } else {
                    StoreFaults::default()
                };
                self.nodes[*node].store.set_faults(faults);
            }
            FaultKind::Crash(node) => self.on_crash_fault(*node, start),
        }
        if !matches!(
            fault.kind,
            FaultKind::Crash(_) | FaultKind::Join(_) | FaultKind::Leave(_)
        ) {
            let what = if start { "begins" } else { "heals" };
            self.note(format!("{} {what}", fault.label));
        }
    }

    /// A crash fault on `node` begins or ends: crash faults may overlap, and the node restarts
    /// when the last one ends.
    fn on_crash_fault(&mut self, node: usize, start: bool) {
        if start {
            self.nodes[node].crash_depth += 1;
            if self.is_up(node) {
                self.crash(node);
            }
        } else {
            let depth = &mut self.nodes[node].crash_depth;
            *depth = depth.saturating_sub(1);
            if *depth == 0 {
                self.restart(node);
            }
        }
    }

    /// Node `i` crashes: its store loses what was not synced, and with it the coordinations
    /// the oracle recorded since; its life ends.
    fn crash(&mut self, i: usize) {
        let sn = &mut self.nodes[i];
        if let Some(node) = sn.node.take() {
            self.retired.add(node.stats());
        }
        sn.store.crash();
        for (h, index) in std::mem::take(&mut sn.unsynced) {
            self.oracle.hist.void_coordination(h, index);
        }
        let sn = &mut self.nodes[i];
        sn.epoch += 1;
        sn.syncing = false;
        sn.driver.clear();
        sn.forget_reads();
        let name = sn.name.to_string();
        self.note(format!("{name} crashed"));
    }

    /// Node `i` comes back from its store, unless it is up, not a member yet, or gone.
    fn restart(&mut self, i: usize) {
        if self.is_up(i) || matches!(self.nodes[i].life, Life::Waiting | Life::Gone) {
            return;
        }
        self.boot(i);
        let incarnation = self.nodes[i].live_incarnation();
        let name = self.nodes[i].name.to_string();
        self.note(format!(
            "{name} restarted from its store (incarnation {incarnation})"
        ));
    }

    /// Traffic stopped: every fault heals at once and every crashed node restarts.
    pub(super) fn heal_everything(&mut self) {
        self.faults.active = false;
        self.net.heal();
        self.note("traffic stops; every fault heals".into());
        for i in 0..self.nodes.len() {
            self.nodes[i].crash_depth = 0;
            self.restart(i);
        }
    }
}
