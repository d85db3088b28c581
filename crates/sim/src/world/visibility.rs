//! The PBS probes: trials spread evenly over the traffic phase, each writing a first version
//! of a fresh key, then the measured version(s) over it, then reading it exactly `t` after the
//! last measured write was acknowledged: t-visibility, and with several versions k-staleness.

use bytes::Bytes;
use driftkv_causal::VersionVector;
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
/// then the measured writes, each over the one before (`versions` of them, one unless the
/// scenario measures k-staleness); then one read exactly `t` after the last was acknowledged
/// (or, with `read_every_t`, one read at each `t` of the grid). A read is fresh when it
/// returns the last version; within `k` when it returns one of the last `k`.
pub struct Trial {
    /// The `t` of its one read (unused with `read_every_t`).
    pub t_index: usize,
    pub key: usize,
    /// Measured versions acknowledged so far.
    pub written: u32,
    /// The context the last acknowledged write returned: the next write replaces it.
    pub context: Option<VersionVector>,
    /// Each read that answered: its `t` (by index) and the version it returned (0: the first
    /// version or nothing; `versions`: the last), or `None` when it failed.
    pub reads: Vec<(u16, Option<u32>)>,
}

impl Sim<'_> {
    /// When trial `trial` starts (`None`: there is no such trial). Trials start early enough
    /// that their measured write falls in the traffic phase.
    pub(super) fn probe_start_at(&self, trial: usize) -> Option<u64> {
        let v = &self.sc.visibility;
        let total = v.trial_count();
        if trial >= total {
            return None;
        }
        let duration_us = (self.sc.duration_ms * US_PER_MS) as f64;
        let span_us = (duration_us - (v.setup_gap_ms * US_PER_MS) as f64).max(duration_us / 2.0);
        let spacing = span_us / total as f64;
        Some(self.time.t0_us + (spacing * (trial as f64 + 0.5)) as u64)
    }

    /// The value of trial `trial`'s measured version `version` (1-based): `p<trial>b` when a
    /// trial writes one, `p<trial>b<version>` when it writes several.
    fn probe_value(&self, trial: usize, version: u32) -> Bytes {
        let single = numbered("p", trial as u64, "b");
        Bytes::from(match self.sc.visibility.versions {
            1 => single,
            _ => format!("{single}{version}"),
        })
    }

    /// Trial `trial` starts (and schedules the next one's start): its first version is written.
    pub(super) fn on_probe_start(&mut self, trial: usize) {
        if let Some(at) = self.probe_start_at(trial + 1) {
            self.schedule(at, Event::ProbeStart(trial + 1));
        }
        let t_len = self.sc.visibility.t_ms.len();
        let mode = self.sc.probe_mode();
        let name = self.probe_key_name(trial).unwrap_or_else(|| {
            let what = format!(
                "no key name of trial {trial} in {PROBE_KEY_DRAWS_MAX} draws has its replicas in distinct regions: the trial measures another model"
            );
            self.oracle.hist.anomaly("visibility", self.time.now_us, what);
            numbered("t", trial as u64, "")
        });
        let slot = self.slot_for(KeyKind::Probe(mode), name);
        let trials = &mut self.clients.trials;
        trials.push(Trial {
            t_index: trial % t_len,
            key: slot,
            written: 0,
            context: None,
            reads: Vec::new(),
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
    /// regions as there are replicas (the ring spreads keys evenly, so a few draws do; `None`
    /// when [`PROBE_KEY_DRAWS_MAX`] did not, and the run says so).
    fn probe_key_name(&self, trial: usize) -> Option<String> {
        let first = numbered("t", trial as u64, "");
        if !self.sc.visibility.replicas_in_distinct_regions {
            return Some(first);
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
    }

    /// The next measured write of trial `trial`, over the version before it.
    pub(super) fn on_probe_write(&mut self, trial: usize) {
        self.clients.scheduled_work -= 1;
        let slot = self.clients.trials[trial].key;
        let Some(node) = self.choose_node(slot) else {
            return;
        };
        let version = self.clients.trials[trial].written + 1;
        let value = self.probe_value(trial, version);
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

    /// A read of trial `trial`, `t_index` of the grid after its last write's acknowledgement.
    pub(super) fn on_probe_read(&mut self, trial: usize, t_index: u16) {
        self.clients.scheduled_work -= 1;
        let slot = self.clients.trials[trial].key;
        let Some(node) = self.choose_node(slot) else {
            return;
        };
        let key = self.oracle.hist.keys[slot].key.clone();
        let op = ClientOp::new(
            Stage::ProbeRead(trial, t_index),
            slot,
            node,
            self.time.now_us,
        );
        let r = self.clients.r;
        self.issue(node, Request::Get { key, r }, op);
    }

    /// A trial's write answered: its outcome recorded in the history, and the context it
    /// returned when it was acknowledged.
    fn probe_write_outcome(&mut self, op: &ClientOp, reply: &Reply) -> Option<VersionVector> {
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
        context
    }

    /// The first version's write answered: once acknowledged, the measured writes follow
    /// after the setup gap.
    pub(super) fn probe_setup_replied(&mut self, trial: usize, op: &ClientOp, reply: &Reply) {
        if let Some(context) = self.probe_write_outcome(op, reply) {
            self.clients.trials[trial].context = Some(context);
            let at = self.time.after_ms(self.sc.visibility.setup_gap_ms);
            self.clients.scheduled_work += 1;
            self.schedule(at, Event::ProbeWrite(trial));
        }
    }

    /// A measured write answered: once acknowledged, the next version follows (after
    /// `version_gap_ms`), or, after the last, the reads follow `t` later.
    pub(super) fn probe_write_replied(&mut self, trial: usize, op: &ClientOp, reply: &Reply) {
        let Some(context) = self.probe_write_outcome(op, reply) else {
            return;
        };
        let v = &self.sc.visibility;
        let t = &mut self.clients.trials[trial];
        t.written += 1;
        if t.written < v.versions {
            t.context = Some(context);
            let at = self.time.now_us + us(v.version_gap_ms);
            self.clients.scheduled_work += 1;
            return self.schedule(at, Event::ProbeWrite(trial));
        }
        let reads: Vec<usize> = match v.read_every_t {
            true => (0..v.t_ms.len()).collect(),
            false => vec![t.t_index],
        };
        for t_index in reads {
            let at = self.time.now_us + us(self.sc.visibility.t_ms[t_index]);
            self.clients.scheduled_work += 1;
            let event = Event::ProbeRead {
                trial: trial as u32,
                t_index: t_index as u16,
            };
            self.schedule(at, event);
        }
    }

    /// A read of trial `trial` answered: which version it returned (the latest among its
    /// values, 0 for the first version or nothing).
    pub(super) fn probe_read_replied(&mut self, trial: usize, t_index: u16, reply: &Reply) {
        let versions = self.sc.visibility.versions;
        let returned = match reply {
            Reply::Values { values, .. } => Some(
                (1..=versions)
                    .rev()
                    .find(|&j| values.contains(&self.probe_value(trial, j)))
                    .unwrap_or(0),
            ),
            Reply::NotFound { .. } => Some(0),
            _ => None,
        };
        self.clients.trials[trial].reads.push((t_index, returned));
    }
}
