//! The data-type workload (TTLs, maps, deletes of every type, NX races): the shipped scenario
//! passes and reports its checks and measurements, replays byte for byte, leaves scenarios
//! without those operations as they were, and each of its checkers fails on a history broken
//! the way it guards against.

use std::path::Path;

use driftkv_sim::check::{DELETES_CHECK, EXPIRY_CHECK, MAPS_CHECK, PASS, run_checks};
use driftkv_sim::history::{ExpiringRead, KeyKind, MapOp, Outcome};
use driftkv_sim::world::{Outcomes, Sim};
use driftkv_sim::{Scenario, run};
use driftkv_wire::{Object, ObjectKind};

const NEW_CHECKS: [&str; 3] = [MAPS_CHECK, EXPIRY_CHECK, DELETES_CHECK];

fn shipped(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    Scenario::from_toml_at(&text, &path, &mut |p| std::fs::read_to_string(p)).unwrap()
}

fn data_types(seed: u64) -> Scenario {
    let mut s = shipped("data_types.toml");
    s.seed = seed;
    s
}

/// A run's outcomes, before the checks (so a test can break them first).
fn outcomes(s: &Scenario) -> Outcomes {
    Sim::new(s).run(&mut |_| {})
}

fn verdict(s: &Scenario, o: &Outcomes, check: &str) -> String {
    run_checks(s, o).checks[check].clone()
}

#[test]
fn the_data_types_scenario_passes_its_checks_and_measures_nx_races() {
    for seed in 1..=3 {
        let s = data_types(seed);
        let report = run(&s);
        assert!(report.passed(), "seed {seed}: {:#?}", report.failures());
        for check in NEW_CHECKS {
            assert_eq!(report.checks.get(check).map(String::as_str), Some(PASS));
        }
        let d = report
            .data_types
            .clone()
            .expect("the data-type figures are reported");
        assert!(
            d.ttl_writes_acknowledged > 0 && d.reads_of_expiring_values > 0,
            "{d:?}"
        );
        assert!(d.map_fields_valued > 0, "some map fields are valued: {d:?}");
        assert!(
            d.complete_deletes > 0 && d.counters_with_deletes_judged > 0,
            "{d:?}"
        );
        assert!(
            d.nx_races_answered > 0 && d.nx_races_answered <= d.nx_races,
            "{d:?}"
        );
        assert!(d.nx_double_success <= d.nx_races_answered);
        assert!((0.0..=1.0).contains(&d.nx_double_success_rate));
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert!(json["data_types"]["nx_double_success_rate"].is_number());
        let text = report.to_text();
        assert!(text.contains("set if not exists"), "{text}");
        for kind in ["put_ttl", "map_increment", "delete_counter", "set_nx"] {
            assert!(report.ops[kind].issued > 0, "{kind} was issued");
        }
    }
}

#[test]
fn the_data_types_scenario_replays_byte_for_byte() {
    let s = data_types(11);
    assert_eq!(run(&s).to_json(), run(&s).to_json());
}

#[test]
fn scenarios_without_data_type_operations_report_none_of_them() {
    let mut s = shipped("chaos.toml");
    s.duration_ms = 1_000;
    let report = run(&s);
    for check in NEW_CHECKS {
        assert!(!report.checks.contains_key(check), "{check}");
    }
    assert!(report.data_types.is_none());
    assert!(!report.to_json().contains("data_types"));
    // Settings that only data-type operations use change nothing while their weights are 0.
    let mut tuned = s.clone();
    tuned.workload.map_fields = 9;
    tuned.workload.ttl_ms.max_ms = 12_345;
    assert_eq!(run(&tuned).to_json(), report.to_json());
}

#[test]
fn a_map_that_lost_its_fields_fails_the_map_check() {
    let s = data_types(1);
    let mut o = outcomes(&s);
    assert_eq!(verdict(&s, &o, MAPS_CHECK), PASS);
    // Every map's fields vanish from every primary, its context kept: the adds no remove saw
    // are gone.
    let mut broken = 0;
    for slot in 0..o.hist.keys.len() {
        if o.hist.keys[slot].kind != KeyKind::Map {
            continue;
        }
        if let Some(Object::Map(map)) = &mut o.final_objects[slot] {
            broken += usize::from(map.clear());
        }
        for (_, copy) in &mut o.end_copies[slot] {
            if let Some(Object::Map(map)) = copy {
                map.clear();
            }
        }
    }
    assert!(broken > 0);
    let v = verdict(&s, &o, MAPS_CHECK);
    assert!(v.starts_with("FAIL (seed 1)"), "{v}");
    assert!(v.contains("is missing"), "{v}");
}

#[test]
fn primaries_holding_different_maps_fail_the_map_check() {
    let s = data_types(2);
    let mut o = outcomes(&s);
    let slot = (0..o.hist.keys.len())
        .find(|&k| {
            o.hist.keys[k].kind == KeyKind::Map
                && matches!(&o.final_objects[k], Some(Object::Map(m)) if !m.is_empty())
        })
        .expect("a map with fields");
    o.end_copies[slot][0].1 = Some(Object::empty(ObjectKind::Map));
    let v = verdict(&s, &o, MAPS_CHECK);
    assert!(v.contains("hold different maps"), "{v}");
}

#[test]
fn a_map_increment_counted_twice_fails_the_map_check() {
    let s = data_types(3);
    let mut o = outcomes(&s);
    // Claim every landed increment was of twice its delta: a field summing landed increments
    // no longer adds up.
    for op in &mut o.hist.map_ops {
        if let MapOp::Increment(_, delta) = &mut op.op {
            *delta *= 2;
        }
    }
    let v = verdict(&s, &o, MAPS_CHECK);
    assert!(v.contains("expected"), "{v}");
}

#[test]
fn a_read_of_an_expired_value_fails_the_expiry_check() {
    let s = data_types(4);
    let mut o = outcomes(&s);
    assert_eq!(verdict(&s, &o, EXPIRY_CHECK), PASS);
    let w = (0..o.hist.writes.len())
        .find(|&w| o.hist.writes[w].expires_ms.is_some())
        .expect("a write with a TTL");
    let expires_ms = o.hist.writes[w].expires_ms.unwrap();
    // Answered by a node whose clock had passed the expiry ...
    let read = ExpiringRead {
        key: o.hist.writes[w].key,
        write: w,
        expires_ms,
        node: 0,
        node_ms: expires_ms + 1,
        answered_ms: expires_ms,
    };
    o.hist.expiring_reads.push(read.clone());
    let v = verdict(&s, &o, EXPIRY_CHECK);
    assert!(v.contains("past the value's expiry"), "{v}");
    // ... or, whatever its clock said, long after the expiry plus the skew bound.
    o.hist.expiring_reads.pop();
    o.hist.expiring_reads.push(ExpiringRead {
        node_ms: expires_ms - 1,
        answered_ms: expires_ms + 10_000,
        ..read
    });
    let v = verdict(&s, &o, EXPIRY_CHECK);
    assert!(v.contains("beyond the clock skew bound"), "{v}");
}

#[test]
fn a_value_that_lost_its_expiry_fails_the_expiry_check() {
    let s = data_types(5);
    let mut o = outcomes(&s);
    // A primary's copy holds an expiring write's value as though it never expired.
    let w = (0..o.hist.writes.len())
        .find(|&w| {
            let rec = &o.hist.writes[w];
            rec.expires_ms.is_some()
                && !rec.delete
                && rec.outcome == Outcome::Acked
                && !o.end_copies[rec.key].is_empty()
        })
        .expect("an acknowledged write with a TTL");
    let rec = o.hist.writes[w].clone();
    let Object::Register(mut reg) = Object::empty(ObjectKind::Register) else {
        unreachable!()
    };
    let actor = driftkv_causal::Actor::new("n1", 0);
    reg.write(
        driftkv_causal::ConflictMode::Siblings,
        &actor,
        &driftkv_causal::VersionVector::new(),
        Some(rec.value.clone()),
        driftkv_causal::Timestamp::new(1, 0),
    )
    .unwrap();
    o.end_copies[rec.key][0].1 = Some(Object::Register(reg));
    let v = verdict(&s, &o, EXPIRY_CHECK);
    assert!(v.contains("but it was written expiring at"), "{v}");
}

#[test]
fn a_counter_that_kept_what_a_delete_took_fails_the_deletes_check() {
    let s = data_types(6);
    let mut o = outcomes(&s);
    assert_eq!(verdict(&s, &o, DELETES_CHECK), PASS);
    // Every counter a delete reset reads a thousand more than its deltas allow.
    let reset: Vec<usize> = o
        .hist
        .counter_deletes
        .iter()
        .filter(|d| d.coordinations.iter().any(|r| !r.void))
        .map(|d| d.key)
        .collect();
    assert!(!reset.is_empty());
    for slot in reset {
        for (_, copy) in &mut o.end_copies[slot] {
            let mut counter = copy
                .clone()
                .unwrap_or_else(|| Object::empty(ObjectKind::Counter));
            if let Object::Counter(c) = &mut counter {
                c.apply(&driftkv_causal::Actor::new("ghost", 0), 1_000)
                    .unwrap();
            }
            *copy = Some(counter);
        }
    }
    let v = verdict(&s, &o, DELETES_CHECK);
    assert!(
        v.starts_with("FAIL (seed 6)") && v.contains("counter"),
        "{v}"
    );
}

#[test]
fn a_key_that_outlived_a_complete_delete_fails_the_deletes_check() {
    let s = data_types(7);
    let mut o = outcomes(&s);
    // A set whose acknowledged delete saw every add keeps a member on a primary.
    let d = run_checks(&s, &o).data_types.unwrap();
    assert!(d.complete_deletes > 0);
    let mut broke = false;
    for slot in 0..o.hist.keys.len() {
        if o.hist.keys[slot].kind != KeyKind::Set {
            continue;
        }
        let cleared = o.hist.set_ops.iter().any(|op| {
            op.key == slot
                && op.clear
                && op.outcome == Outcome::Acked
                && !op.coordinations.is_empty()
        });
        let empty = match &o.final_objects[slot] {
            None => true,
            Some(Object::Set(set)) => set.is_empty(),
            Some(_) => false,
        };
        if !cleared || !empty {
            continue;
        }
        let Object::Set(mut set) = Object::empty(ObjectKind::Set) else {
            unreachable!()
        };
        set.add(
            &driftkv_causal::Actor::new("ghost", 0),
            bytes::Bytes::from_static(b"m0"),
        )
        .unwrap();
        o.end_copies[slot][0].1 = Some(Object::Set(set));
        broke = true;
    }
    assert!(broke, "seed 7 has a set emptied by a delete");
    let v = verdict(&s, &o, DELETES_CHECK);
    assert!(v.contains("saw every add of it"), "{v}");
}
