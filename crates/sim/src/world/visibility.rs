//! The PBS t-visibility probes: trials spread evenly over the traffic phase, each writing a
//! first version of a fresh key, then the measured version over it, then reading it exactly
//! `t` after the measured write was acknowledged.

use bytes::Bytes;
use driftkv_causal::{ConflictMode, VersionVector};
use driftkv_core::WritePath;
use driftkv_wire::{Key, Reply, Request};

use super::Sim;
use super::arrivals::numbered;
use super::clients::{ClientOp, Stage};
use super::events::Event;
use super::time::{US_PER_MS, us};
use crate::history::{KeyKind, Outcome};

/// Names drawn for a trial's key before settling for one whose replicas share a region.
const PROBE_KEY_DRAWS_MAX: usize = 1_000;

/// One t-visibility trial: a first version of a fresh key, given time to reach every replica;
/// then the measured write of a second version over it; then one read, exactly `t` after the
/// second write was acknowledged. Stale means the read returned the first version (or nothing).
pub struct Trial {
    pub t_index: usize,
    pub key: usize,
    /// The measured (second) version's value.
    pub value: Bytes,
    /// The context the first version's write returned: the second write replaces it.
    pub context: Option<VersionVector>,
    /// `Some(true)`: the read returned the second version.
    pub fresh: Option<bool>,
}

impl Sim<'_> {
    /// When trial `trial` starts (`None`: there is no such trial). Trials start early enough
    /// that their measured write falls in the traffic phase.
    pub(super) fn probe_start_at(&self, trial: usize) -> Option<u64> {
        let v = &self.sc.visibility;
        let total = v.t_ms.len() * v.trials as usize;
        if trial >= total {
            return None;
        }
        let duration_us = (self.sc.duration_ms * US_PER_MS) as f64;
        let span_us = (duration_us - (v.setup_gap_ms * US_PER_MS) as f64).max(duration_us / 2.0);
        let spacing = span_us / total as f64;
        Some(self.time.t0_us + (spacing * (trial as f64 + 0.5)) as u64)
    }

    /// Trial `trial` starts (and schedules the next one's start): its first version is written.
    pub(super) fn on_probe_start(&mut self, trial: usize) {
        if let Some(at) = self.probe_start_at(trial + 1) {
            self.schedule(at, Event::ProbeStart(trial + 1));
        }
        let t_len = self.sc.visibility.t_ms.len();
        // Probes are lww writes when they measure the direct path (see `Scenario::write_path`).
        let mode = match self.sc.write_path {
            WritePath::Direct => ConflictMode::Lww,
            WritePath::Replica => ConflictMode::Siblings,
        };
        let slot = self.slot_for(KeyKind::Probe(mode), self.probe_key_name(trial));
        let trials = &mut self.clients.trials;
        trials.push(Trial {
            t_index: trial % t_len,
            key: slot,
            value: Bytes::from(numbered("p", trial as u64, "b")),
            context: None,
            fresh: None,
        });
        debug_assert_eq!(trials.len(), trial + 1, "trials start in order");
        let Some(node) = self.choose_node(slot) else {
            return;
        };
        let first = Bytes::from(numbered("p", trial as u64, "a"));
        let stage = Stage::ProbeSetup(trial);
        self.send_put(node, slot, first, VersionVector::new(), stage, None, None);
    }

    /// The key of trial `trial`: `t<trial>`, or (with `replicas_in_distinct_regions`) the
    /// first of `t<trial>`, `t<trial>.1`, `t<trial>.2`, ... whose replicas are in as many
    /// regions as there are replicas (validation made sure the regions allow it; the ring
    /// spreads keys evenly, so a few draws do).
    fn probe_key_name(&self, trial: usize) -> String {
        let first = numbered("t", trial as u64, "");
        if !self.sc.visibility.replicas_in_distinct_regions {
            return first;
        }
        let spread = |name: &str| {
            let key = Key::new(Bytes::from_static(b"probes"), name.to_string());
            let primaries = self.primaries_of(&key);
            let mut regions: Vec<Option<&String>> = primaries
                .iter()
                .map(|&i| self.sc.regions.get(&format!("n{}", i + 1)))
                .collect();
            regions.sort();
            regions.dedup();
            regions.len() == primaries.len()
        };
        (0..PROBE_KEY_DRAWS_MAX)
            .map(|draw| match draw {
                0 => first.clone(),
                d => format!("{first}.{d}"),
            })
            .find(|name| spread(name))
            .unwrap_or(first)
    }

    /// The measured write of trial `trial`, over its first version.
    pub(super) fn on_probe_write(&mut self, trial: usize) {
        self.clients.scheduled_work -= 1;
        let slot = self.clients.trials[trial].key;
        let Some(node) = self.choose_node(slot) else {
            return;
        };
        let value = self.clients.trials[trial].value.clone();
        let context = self.clients.trials[trial]
            .context
            .clone()
            .unwrap_or_default();
        self.send_put(
            node,
            slot,
            value,
            context,
            Stage::ProbeWrite(trial),
            None,
            None,
        );
    }

    /// The one read of trial `trial`.
    pub(super) fn on_probe_read(&mut self, trial: usize) {
        self.clients.scheduled_work -= 1;
        let slot = self.clients.trials[trial].key;
        let Some(node) = self.choose_node(slot) else {
            return;
        };
        let key = self.oracle.hist.keys[slot].key.clone();
        let op = ClientOp::new(Stage::ProbeRead(trial), slot, node, self.time.now_us);
        let r = self.clients.r;
        self.issue(node, Request::Get { key, r }, op);
    }

    /// The first version's write answered: once acknowledged, the measured write follows
    /// after the setup gap.
    pub(super) fn probe_setup_replied(&mut self, trial: usize, op: &ClientOp, reply: &Reply) {
        let context = match reply {
            Reply::Written { context } => Some(context.clone()),
            _ => None,
        };
        if let Some(h) = op.hist {
            let outcome = match context {
                Some(_) => Outcome::Acked,
                None => Outcome::Failed(format!("{reply:?}")),
            };
            self.set_outcome(h, outcome);
        }
        if let Some(context) = context {
            self.clients.trials[trial].context = Some(context);
            let at = self.time.after_ms(self.sc.visibility.setup_gap_ms);
            self.clients.scheduled_work += 1;
            self.schedule(at, Event::ProbeWrite(trial));
        }
    }

    /// The measured write answered: once acknowledged, the read follows `t` later.
    pub(super) fn probe_write_replied(&mut self, trial: usize, op: &ClientOp, reply: &Reply) {
        let acked = matches!(reply, Reply::Written { .. });
        if let Some(h) = op.hist {
            let outcome = if acked {
                Outcome::Acked
            } else {
                Outcome::Failed(format!("{reply:?}"))
            };
            self.set_outcome(h, outcome);
        }
        if acked {
            let t_ms = self.sc.visibility.t_ms[self.clients.trials[trial].t_index];
            self.clients.scheduled_work += 1;
            self.schedule(self.time.now_us + us(t_ms), Event::ProbeRead(trial));
        }
    }

    /// The trial's read answered: fresh if it returned the measured version.
    pub(super) fn probe_read_replied(&mut self, trial: usize, reply: &Reply) {
        let fresh = match reply {
            Reply::Values { values, .. } => {
                Some(values.contains(&self.clients.trials[trial].value))
            }
            Reply::NotFound { .. } => Some(false),
            _ => None,
        };
        self.clients.trials[trial].fresh = fresh;
    }
}
