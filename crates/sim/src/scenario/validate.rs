//! Validation: everything a run relies on, checked section by section, each error naming the
//! field at fault. The sections are checked in a fixed order, so a scenario with several
//! problems is always refused for the same one.

use driftkv_core::Durability;
use driftkv_wire::Quorum;

use super::{
    DURATION_MAX_MS, FAULTS_MAX, Fault, KEYS_MAX, MAP_FIELDS_MAX, MembershipMode, NODES_MAX,
    OPS_RATE_MAX_PER_S, Popularity, Scenario, T_GRID_MAX,
};

/// A clock drifts by less than this many parts per million either way (a drift of -1e6 ppm
/// would stop it).
const DRIFT_PPM_MAX: f64 = 500_000.0;
/// Visibility trials one run may make in all (points of the grid times trials per point).
const TRIALS_MAX: u64 = 1_000_000;
/// Measured versions one trial may write (k-staleness up to this `k`).
const VERSIONS_MAX: u32 = 16;

/// `Ok` if `ok`, else the error `what`.
fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what.to_string()) }
}

impl Scenario {
    /// Checks everything a run relies on, naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_cluster()?;
        self.validate_phases()?;
        self.validate_delays()?;
        self.validate_probabilities()?;
        self.validate_named_nodes()?;
        self.validate_faults()?;
        self.validate_workload()?;
        self.validate_visibility()
    }

    /// Nodes, replicas, quorums, durability, partitions, ticks and timeouts.
    fn validate_cluster(&self) -> Result<(), String> {
        check(
            (1..=NODES_MAX).contains(&self.nodes),
            &format!("nodes must be 1..={NODES_MAX}"),
        )?;
        check(
            (1..=driftkv_ring::N_MAX).contains(&self.n),
            &format!("n must be at least 1 and at most {}", driftkv_ring::N_MAX),
        )?;
        let n_eff = self.n.min(self.nodes);
        for (name, level) in [("r", &self.r), ("w", &self.w)] {
            let q = Quorum::parse(level).map_err(|e| format!("{name}: {e}"))?;
            q.resolve(n_eff, Quorum::Quorum)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        self.durability
            .parse::<Durability>()
            .map_err(|e| format!("durability: {e}"))?;
        check(
            (1..=driftkv_ring::PARTITIONS_MAX).contains(&self.partitions),
            &format!("partitions must be 1..={}", driftkv_ring::PARTITIONS_MAX),
        )?;
        check(self.tick_ms >= 1, "tick_ms must be at least 1")?;
        check(
            self.request_timeout_ms >= self.tick_ms,
            "request_timeout_ms must be at least tick_ms",
        )?;
        check(
            self.client_timeout_ms >= 1,
            "client_timeout_ms must be >= 1",
        )
    }

    /// The traffic phase and the settle phase after it.
    fn validate_phases(&self) -> Result<(), String> {
        check(
            (1..=DURATION_MAX_MS).contains(&self.duration_ms),
            "duration_ms must be given (1 ms to 24 h of traffic)",
        )?;
        check(
            self.settle.poll_ms >= 1 && self.settle.max_ms >= self.settle.poll_ms,
            "settle.poll_ms must be >= 1 and settle.max_ms >= poll_ms",
        )
    }

    /// Every delay distribution, and the anti-entropy interval.
    fn validate_delays(&self) -> Result<(), String> {
        for (name, d) in [
            ("delays.write", &self.delays.write),
            ("delays.ack", &self.delays.ack),
            ("delays.read_request", &self.delays.read_request),
            ("delays.read_response", &self.delays.read_response),
            ("delays.client", &self.delays.client),
            ("delays.disk_sync", &self.delays.disk_sync),
            ("delays.inter_region", &self.delays.inter_region),
            ("network.reorder_delay", &self.network.reorder_delay),
            ("chaos.fault_ms", &self.chaos.fault_ms),
        ] {
            d.validate().map_err(|e| format!("{name}: {e}"))?;
        }
        if let Some(g) = &self.delays.gossip {
            g.validate().map_err(|e| format!("delays.gossip: {e}"))?;
        }
        if let Some(g) = &self.delays.anti_entropy {
            g.validate()
                .map_err(|e| format!("delays.anti_entropy: {e}"))?;
        }
        check(
            self.anti_entropy_interval_ms >= 1,
            "anti_entropy_interval_ms must be at least 1",
        )
    }

    /// The network's chances (and the workload's blind writes'), each in [0, 1].
    fn validate_probabilities(&self) -> Result<(), String> {
        for (name, p) in [
            ("network.loss", self.network.loss),
            ("network.duplicate", self.network.duplicate),
            ("network.reorder", self.network.reorder),
            ("workload.blind_writes", self.workload.blind_writes),
        ] {
            check(
                (0.0..=1.0).contains(&p),
                &format!("{name} is a probability in [0, 1]"),
            )?;
        }
        check(
            self.network.loss < 1.0,
            "network.loss of 1 would never deliver anything",
        )
    }

    /// `Ok` if `name` is one of the scenario's nodes, else an error naming `field`.
    fn known(&self, name: &str, field: &str) -> Result<(), String> {
        self.node_index(name).map(|_| ()).ok_or_else(|| {
            format!(
                "{field}: no node named {name:?} (nodes are n1..n{})",
                self.nodes
            )
        })
    }

    /// Regions and clocks name existing nodes; clocks and the random skew are in range.
    fn validate_named_nodes(&self) -> Result<(), String> {
        for name in self.regions.keys() {
            self.known(name, "regions")?;
        }
        for (name, c) in &self.clocks {
            self.known(name, "clocks")?;
            check(
                c.offset_ms.is_finite() && c.drift_ppm.is_finite() && c.drift_ppm > -DRIFT_PPM_MAX,
                &format!("clocks: offset_ms must be finite and drift_ppm above -{DRIFT_PPM_MAX}"),
            )?;
        }
        check(
            self.clock_skew.offset_ms_max >= 0.0
                && (0.0..DRIFT_PPM_MAX).contains(&self.clock_skew.drift_ppm_max),
            &format!("clock_skew: offset_ms_max >= 0, drift_ppm_max in [0, {DRIFT_PPM_MAX})"),
        )
    }

    /// Every scheduled fault, then the joins and leaves among them as a whole.
    fn validate_faults(&self) -> Result<(), String> {
        check(
            self.faults.len() <= FAULTS_MAX,
            &format!("at most {FAULTS_MAX} faults"),
        )?;
        for (i, f) in self.faults.iter().enumerate() {
            self.validate_fault(f, &format!("faults[{i}]"))?;
        }
        self.validate_membership_changes()
    }

    /// One scheduled fault (`at` names it): exactly one kind, a window within traffic, known
    /// nodes, and what its kind needs.
    fn validate_fault(&self, f: &Fault, at: &str) -> Result<(), String> {
        let kinds = [
            f.split.is_some(),
            f.cut.is_some(),
            f.crash.is_some(),
            f.loss.is_some(),
            f.join.is_some(),
            f.leave.is_some(),
            f.disk.is_some(),
        ];
        check(
            kinds.iter().filter(|k| **k).count() == 1,
            &format!("{at}: give exactly one of split, cut, crash, loss, join, leave, disk"),
        )?;
        self.validate_disk_fault(f, at)?;
        if let Some(until) = f.until_ms {
            check(
                until > f.at_ms,
                &format!("{at}: until_ms must be after at_ms"),
            )?;
        }
        check(
            f.at_ms < self.duration_ms,
            &format!("{at}: at_ms must be within the traffic phase"),
        )?;
        for group in f.split.iter().flatten() {
            for name in group {
                self.known(name, at)?;
            }
        }
        for [a, b] in f.cut.iter().flatten() {
            self.known(a, at)?;
            self.known(b, at)?;
        }
        if let Some(name) = &f.crash {
            self.known(name, at)?;
        }
        if let Some(p) = f.loss {
            check(
                (0.0..1.0).contains(&p),
                &format!("{at}: loss is a probability in [0, 1)"),
            )?;
        }
        for name in f.join.iter().chain(&f.leave) {
            self.known(name, at)?;
            check(
                self.membership == MembershipMode::Gossip,
                &format!(
                    "{at}: join and leave need membership = \"gossip\" (the static mode sets every member by hand)"
                ),
            )?;
            check(
                f.until_ms.is_none(),
                &format!("{at}: a join or leave has no until_ms (it is for good)"),
            )?;
        }
        Ok(())
    }

    /// The workload: its rate, keys, popularity, mix and the lists it draws from.
    fn validate_workload(&self) -> Result<(), String> {
        let wl = &self.workload;
        check(
            wl.rate_per_s >= 0.0 && wl.rate_per_s <= OPS_RATE_MAX_PER_S,
            &format!("workload.rate_per_s must be in [0, {OPS_RATE_MAX_PER_S}]"),
        )?;
        check(
            (1..=KEYS_MAX).contains(&wl.keys),
            &format!("workload.keys must be 1..={KEYS_MAX}"),
        )?;
        if let Popularity::Zipf(s) = wl.popularity {
            check(
                s.is_finite() && s > 0.0,
                "workload.popularity zipf exponent must be > 0",
            )?;
        }
        let m = &wl.mix;
        let mut weights = vec![
            m.get,
            m.put,
            m.counter_add,
            m.counter_get,
            m.set_add,
            m.set_remove,
            m.set_get,
        ];
        weights.extend(m.data_type_weights().iter().map(|(_, w)| *w));
        check(
            weights.iter().all(|w| w.is_finite() && *w >= 0.0),
            "workload.mix weights must be >= 0",
        )?;
        check(
            wl.rate_per_s == 0.0 || weights.iter().sum::<f64>() > 0.0,
            "workload.mix needs a positive weight",
        )?;
        check(
            !wl.register_modes.is_empty(),
            "workload.register_modes needs at least one mode",
        )?;
        check(wl.set_members >= 1, "workload.set_members must be >= 1")?;
        check(
            (1..=MAP_FIELDS_MAX).contains(&wl.map_fields),
            &format!("workload.map_fields must be 1..={MAP_FIELDS_MAX}"),
        )?;
        check(
            wl.ttl_ms.min_ms >= 1
                && wl.ttl_ms.min_ms <= wl.ttl_ms.max_ms
                && wl.ttl_ms.max_ms <= DURATION_MAX_MS,
            &format!("workload.ttl_ms needs 1 <= min_ms <= max_ms <= {DURATION_MAX_MS}"),
        )?;
        check(
            wl.nx_gap_ms.min_ms <= wl.nx_gap_ms.max_ms && wl.nx_gap_ms.max_ms <= DURATION_MAX_MS,
            &format!("workload.nx_gap_ms needs min_ms <= max_ms <= {DURATION_MAX_MS}"),
        )?;
        check(
            !wl.counter_deltas.is_empty(),
            "workload.counter_deltas needs at least one delta",
        )
    }

    /// The t-visibility grid and its trials.
    fn validate_visibility(&self) -> Result<(), String> {
        let v = &self.visibility;
        check(
            v.t_ms.len() <= T_GRID_MAX,
            &format!("visibility.t_ms has at most {T_GRID_MAX} points"),
        )?;
        check(
            v.t_ms.iter().all(|t| t.is_finite() && *t >= 0.0),
            "visibility.t_ms values must be >= 0",
        )?;
        check(
            v.t_ms.windows(2).all(|w| w[0] < w[1]),
            "visibility.t_ms must be increasing",
        )?;
        check(
            (v.t_ms.len() as u64) * (v.trials as u64) <= TRIALS_MAX,
            &format!("visibility: at most {TRIALS_MAX} trials in all"),
        )?;
        check(
            (1..=VERSIONS_MAX).contains(&v.versions),
            &format!("visibility.versions must be 1..={VERSIONS_MAX}"),
        )?;
        check(
            v.version_gap_ms.is_finite() && v.version_gap_ms >= 0.0,
            "visibility.version_gap_ms must be >= 0",
        )?;
        check(
            v.t_ms.len() <= u16::MAX as usize,
            "visibility.t_ms has too many points",
        )?;
        check(
            v.published
                .iter()
                .all(|p| p.t_ms.is_finite() && p.t_ms >= 0.0 && (0.0..=1.0).contains(&p.p)),
            "visibility.published: t_ms must be >= 0 and p within 0..=1",
        )?;
        let mut regions: Vec<&String> = self.regions.values().collect();
        regions.sort();
        regions.dedup();
        check(
            !v.replicas_in_distinct_regions
                || (regions.len() >= self.n.min(self.nodes) && self.regions.len() == self.nodes),
            "visibility.replicas_in_distinct_regions needs every node in [regions], and at least n regions",
        )
    }

    /// A disk fault names a node and at least one chance; the chances belong to disk faults.
    fn validate_disk_fault(&self, f: &Fault, at: &str) -> Result<(), String> {
        let chances = [("sync_fail", f.sync_fail), ("write_fail", f.write_fail)];
        let Some(name) = &f.disk else {
            return check(
                chances.iter().all(|(_, p)| p.is_none()),
                &format!("{at}: sync_fail and write_fail belong to a disk fault"),
            );
        };
        check(
            self.node_index(name).is_some(),
            &format!("{at}: no node named {name:?}"),
        )?;
        check(
            chances.iter().any(|(_, p)| p.is_some()),
            &format!("{at}: a disk fault gives sync_fail, write_fail or both"),
        )?;
        for (field, p) in chances {
            if let Some(p) = p {
                check(
                    (0.0..=1.0).contains(&p),
                    &format!("{at}: {field} is a probability in [0, 1]"),
                )?;
            }
        }
        Ok(())
    }

    /// Joins and leaves in time order: each node joins at most once and leaves at most once,
    /// only while a member, and at least one member is left at every moment.
    fn validate_membership_changes(&self) -> Result<(), String> {
        let mut changes: Vec<(u64, bool, &str)> = Vec::new();
        for f in &self.faults {
            if let Some(name) = &f.join {
                changes.push((f.at_ms, true, name));
            }
            if let Some(name) = &f.leave {
                changes.push((f.at_ms, false, name));
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        // At one instant joins go first, so a join and a leave at the same time are refused
        // only when they name the same node.
        changes.sort_by_key(|&(at, join, _)| (at, !join));
        let mut member: Vec<bool> = self
            .node_names()
            .iter()
            .map(|n| self.initial_member(n))
            .collect();
        let mut joined_at: Vec<Option<u64>> = vec![None; self.nodes];
        let mut left = vec![false; self.nodes];
        if !member.iter().any(|m| *m) {
            return Err(
                "faults: every node joins later; at least one must be a member from the start"
                    .into(),
            );
        }
        for (at, join, name) in changes {
            let i = self.node_index(name).expect("checked");
            if join {
                if joined_at[i].is_some() {
                    return Err(format!("faults: {name} joins twice"));
                }
                joined_at[i] = Some(at);
                member[i] = true;
            } else {
                if left[i] {
                    return Err(format!("faults: {name} leaves twice"));
                }
                if !member[i] || joined_at[i] == Some(at) {
                    return Err(format!(
                        "faults: {name} leaves at {at} ms but is not a member then (it joins later, or at the same time)"
                    ));
                }
                left[i] = true;
                member[i] = false;
                if !member.iter().any(|m| *m) {
                    return Err(format!(
                        "faults: when {name} leaves at {at} ms no member would be left"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::Scenario;

    #[test]
    fn bad_scenarios_name_the_problem() {
        let err = |text: &str| Scenario::from_toml(text).unwrap_err().to_string();
        assert!(err("").contains("duration_ms"));
        assert!(err("duration_ms = 10\nr = \"most\"").contains("r:"));
        assert!(err("duration_ms = 10\nw = \"4\"").contains("w:"));
        assert!(err("duration_ms = 10\nbogus = 1").contains("unknown field"));
        assert!(err("duration_ms = 10\n[[faults]]\nat_ms = 1\ncrash = \"n9\"").contains("n9"));
        assert!(
            err("duration_ms = 10\n[[faults]]\nat_ms = 1\ncrash = \"n1\"\nloss = 0.5")
                .contains("exactly one")
        );
        assert!(err("duration_ms = 10\n[network]\nloss = 1.0").contains("loss"));
        let change = |kind: &str, name: &str| {
            format!("duration_ms = 10\nnodes = 3\n[[faults]]\nat_ms = 1\n{kind} = \"{name}\"\n")
        };
        assert!(err(&change("join", "n4")).contains("n4"));
        assert!(err(&change("leave", "n7")).contains("n7"));
        assert!(
            err(&format!(
                "membership = \"static\"\n{}",
                change("join", "n3")
            ))
            .contains("gossip")
        );
        assert!(err(&format!("{}until_ms = 5\n", change("leave", "n1"))).contains("until_ms"));
        let twice = format!(
            "{}[[faults]]\nat_ms = 2\nleave = \"n1\"\n",
            change("leave", "n1")
        );
        assert!(err(&twice).contains("leaves twice"));
        let early = format!(
            "{}[[faults]]\nat_ms = 2\njoin = \"n3\"\n",
            change("leave", "n3")
        );
        assert!(err(&early).contains("not a member"));
        let all = "duration_ms = 10\nnodes = 1\n[[faults]]\nat_ms = 1\nleave = \"n1\"\n";
        assert!(err(all).contains("no member"));
        let workload = |line: &str| format!("duration_ms = 10\n[workload]\n{line}\n");
        assert!(err(&workload("ttl_ms = { min_ms = 0, max_ms = 5 }")).contains("ttl_ms"));
        assert!(err(&workload("ttl_ms = { min_ms = 9, max_ms = 5 }")).contains("ttl_ms"));
        assert!(err(&workload("nx_gap_ms = { min_ms = 9, max_ms = 5 }")).contains("nx_gap_ms"));
        assert!(err(&workload("map_fields = 0")).contains("map_fields"));
        assert!(err(&workload("mix = { get = 0, put = 0, map_get = -1 }")).contains("mix"));
        let only_maps = workload("mix = { get = 0, put = 0, map_increment = 1 }");
        assert!(
            Scenario::from_toml(&only_maps)
                .unwrap()
                .workload
                .mix
                .has_maps()
        );
        let ok = format!(
            "{}[[faults]]\nat_ms = 5\nleave = \"n1\"\n",
            change("join", "n3")
        );
        let s = Scenario::from_toml(&ok).unwrap();
        assert!(s.membership_changes());
        assert!(s.initial_member("n1") && !s.initial_member("n3"));
    }

    /// Messages built from named limits read as they always have.
    #[test]
    fn limits_read_in_the_messages_as_numbers() {
        let err = |text: &str| Scenario::from_toml(text).unwrap_err().to_string();
        let cases = [
            ("n = 17", "n must be at least 1 and at most 16"),
            ("partitions = 5000", "partitions must be 1..=4096"),
            (
                "[clocks.n1]\ndrift_ppm = -600000.0",
                "drift_ppm above -500000",
            ),
            (
                "[clock_skew]\ndrift_ppm_max = 500000.0",
                "drift_ppm_max in [0, 500000)",
            ),
            (
                "[visibility]\ntrials = 200000",
                "visibility: at most 1000000 trials in all",
            ),
        ];
        for (field, message) in cases {
            let e = err(&format!("duration_ms = 10\n{field}"));
            assert!(e.ends_with(message), "{field}: {e}");
        }
    }
}
