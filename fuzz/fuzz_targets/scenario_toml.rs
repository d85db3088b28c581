//! Fuzzes the simulator's scenario parser, `driftkv_sim::Scenario::from_toml_at`: TOML text,
//! serde into the scenario, then its validation. A scenario that `extends` another gets a
//! reader that refuses (the fuzzer has no files to offer), so `extends` ends in an error.
//!
//! Checked: no panic; and what validation accepts, the simulator's accessors that rely on it
//! (`quorum_r`, `quorum_w` and `durability_policy` each `expect` a validated field, node names,
//! the sweep's levels) take without panicking.
#![no_main]

use std::path::Path;

use driftkv_sim::Scenario;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut refuse = |path: &Path| -> std::io::Result<String> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("the fuzzer reads no files ({})", path.display()),
        ))
    };
    let Ok(scenario) = Scenario::from_toml_at(text, Path::new("fuzz/scenario.toml"), &mut refuse)
    else {
        return;
    };
    let _ = scenario.quorum_r();
    let _ = scenario.quorum_w();
    let _ = scenario.durability_policy();
    let names = scenario.node_names();
    assert_eq!(names.len(), scenario.nodes);
    for name in &names {
        assert!(
            scenario.node_index(name).is_some(),
            "node {name} has no index"
        );
    }
    let _ = scenario.initial_member("n1");
    let _ = scenario.membership_changes();
    let levels = driftkv_sim::sweep_levels(&scenario);
    let n = scenario.n.min(scenario.nodes);
    assert_eq!(levels.len(), n * n);
});
