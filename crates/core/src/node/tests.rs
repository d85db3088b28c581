//! Unit tests of the node that need its private parts.

/// A test entry is its own deadline, and of class its value modulo 3 (the test moves a
/// deadline later by 3, keeping its class).
impl super::WindowEntry for u64 {
    fn due_ms(&self) -> u64 {
        *self
    }
    fn class(&self) -> u8 {
        (*self % 3) as u8
    }
}

proptest::proptest! {
    /// The window of requests answers as a map of ids would, whatever the order of entries
    /// and removals (fresh ids in order, and ids put back after being taken out).
    #[test]
    fn the_request_window_is_a_map_of_ids(
        steps in proptest::collection::vec((0u8..4, 0u64..40), 0..200),
    ) {
        let mut window: super::Window<u64> = Default::default();
        let mut now = 0u64;
        let mut model = std::collections::BTreeMap::new();
        let mut next = 5u64;
        for (op, pick) in steps {
            match op {
                0 => {
                    next += pick % 3;
                    window.insert(next, next * 10);
                    model.insert(next, next * 10);
                    next += 1;
                }
                1 => {
                    let req = 5 + pick;
                    proptest::prop_assert_eq!(window.remove(&req), model.remove(&req));
                }
                2 => {
                    // Put back an id at or below the newest.
                    let req = 5 + pick.min(next.saturating_sub(6));
                    window.insert(req, pick);
                    model.insert(req, pick);
                }
                _ => {
                    let req = pick * 2;
                    proptest::prop_assert_eq!(window.get(&req), model.get(&req));
                    if let Some(v) = window.get_mut(&req) {
                        *v += 3;
                        *model.get_mut(&req).expect("the model has it too") += 3;
                    }
                }
            }
            proptest::prop_assert_eq!(window.len(), model.len());
            let listed: Vec<(u64, u64)> = window.iter().map(|(r, v)| (r, *v)).collect();
            let want: Vec<(u64, u64)> = model.iter().map(|(r, v)| (*r, *v)).collect();
            proptest::prop_assert_eq!(listed, want);
            // The clock moves on; what is due is what the model says (the values are the
            // deadlines here, moved later by the increments above).
            now += pick % 7;
            let due: Vec<u64> = model.iter().filter(|(_, v)| **v <= now).map(|(r, _)| *r).collect();
            proptest::prop_assert_eq!(window.due(now), due);
            for class in 0..3u8 {
                let listed: Vec<u64> = window.of_class(class).copied().collect();
                let want: Vec<u64> = model.values().copied().filter(|v| (v % 3) as u8 == class).collect();
                proptest::prop_assert_eq!(window.count_of(class), want.len());
                proptest::prop_assert_eq!(listed, want);
            }
        }
    }
}
