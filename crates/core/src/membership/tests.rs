//! Unit and property tests of the membership state machine.

use super::*;

fn member(id: &str) -> Membership {
    Membership::new(
        NodeId::from(id),
        format!("{id}:1"),
        format!("{id}:2"),
        1,
        GossipConfig::default(),
        vec!["seed:1".into()],
        Vec::new(),
    )
}

/// Node `id` started again (generation 2) remembering `remembered`: `(id, leaving)` each.
fn restarted(id: &str, remembered: &[(&str, bool)]) -> Membership {
    let remembered = remembered
        .iter()
        .map(|&(r, leaving)| Remembered {
            id: NodeId::from(r),
            listen: format!("{r}:1"),
            http: format!("{r}:2"),
            generation: 1,
            leaving,
        })
        .collect();
    Membership::new(
        NodeId::from(id),
        format!("{id}:1"),
        format!("{id}:2"),
        2,
        GossipConfig::default(),
        Vec::new(),
        remembered,
    )
}

fn digests(m: &Message) -> Vec<MemberDigest> {
    match m {
        Message::Gossip { members } => members.to_vec(),
        other => panic!("not gossip: {other:?}"),
    }
}

fn states(m: &Membership) -> Vec<(String, MemberState)> {
    m.view()
        .into_iter()
        .map(|i| (i.id.as_str().to_string(), i.state))
        .collect()
}

#[test]
fn a_lonely_node_gossips_to_its_seeds_and_learns_the_cluster_from_the_answer() {
    let mut a = member("a");
    let mut b = member("b");
    let (_, to, seeds, msg) = a.tick(0);
    assert!(to.is_empty());
    assert_eq!(seeds, ["seed:1"]);
    let (change, answer) = b.on_gossip(&NodeId::from("a"), &digests(&msg.unwrap()), 0);
    assert!(change.members);
    let answer = answer.expect("a new member gets an answer");
    let (change, again) = a.on_gossip(&NodeId::from("b"), &digests(&answer), 1);
    assert!(change.members);
    assert!(again.is_some(), "b was new to a: a answers once");
    assert_eq!(
        states(&a),
        [("a".into(), MemberState::Up), ("b".into(), MemberState::Up)]
    );
    let (_, to, seeds, _) = a.tick(1_000);
    assert_eq!(to, [NodeId::from("b")]);
    assert!(seeds.is_empty(), "seeds only while no peer is up");
}

#[test]
fn silence_makes_a_member_suspect_then_down_and_a_restart_brings_it_back() {
    let mut a = member("a");
    let mut b = member("b");
    let (_, _, _, msg) = b.tick(0);
    a.on_gossip(&NodeId::from("b"), &digests(&msg.unwrap()), 0);
    let cfg = GossipConfig::default();
    a.tick(cfg.suspect_after_ms);
    assert_eq!(states(&a)[1].1, MemberState::Suspect);
    a.tick(cfg.down_after_ms);
    assert_eq!(states(&a)[1].1, MemberState::Down);
    // An old heartbeat relayed by a third node does not revive it...
    a.on_gossip(
        &NodeId::from("c"),
        &digests(&msg_of(&mut b)),
        cfg.down_after_ms + 1,
    );
    a.tick(cfg.down_after_ms + 2);
    assert_eq!(states(&a)[1].1, MemberState::Down);
    // ...a restart (a new generation) does.
    let mut b2 = Membership::new(
        NodeId::from("b"),
        "b:1".into(),
        "b:2".into(),
        2,
        cfg.clone(),
        Vec::new(),
        Vec::new(),
    );
    let (_, _, _, msg) = b2.tick(cfg.down_after_ms + 10);
    let (change, _) = a.on_gossip(
        &NodeId::from("c"),
        &digests(&msg.unwrap()),
        cfg.down_after_ms + 10,
    );
    assert!(change.states && change.persist);
    assert_eq!(states(&a)[1].1, MemberState::Up);
}

fn msg_of(m: &mut Membership) -> Message {
    m.gossip()
}

#[test]
fn a_node_that_lost_its_data_outgrows_its_old_life() {
    let mut a = member("a");
    let mut b = member("b");
    // b lives a while; a learns its heartbeat.
    let mut last = None;
    for t in 0..20 {
        last = b.tick(t * 1_000).3;
    }
    a.on_gossip(&NodeId::from("b"), &digests(&last.unwrap()), 20_000);
    // b comes back with its data wiped: generation 1 again, heartbeat from zero.
    let mut b2 = member("b");
    let (_, _, _, fresh) = b2.tick(21_000);
    a.on_gossip(&NodeId::from("b"), &digests(&fresh.unwrap()), 21_000);
    // a's answer tells b2 about its old life; b2 outgrows it, and a takes the news.
    let (_, answer) = a.on_gossip(&NodeId::from("b"), &[], 21_001);
    let old = answer
        .map(|m| digests(&m))
        .unwrap_or_else(|| digests(&a.gossip()));
    let (change, _) = b2.on_gossip(&NodeId::from("a"), &old, 21_002);
    assert!(change.persist);
    let (_, _, _, next) = b2.tick(22_000);
    a.tick(40_000); // long silence: b is down on a
    let (change, _) = a.on_gossip(&NodeId::from("b"), &digests(&next.unwrap()), 40_001);
    assert!(change.states, "the new life is news");
    assert_eq!(states(&a)[1].1, MemberState::Up);
}

#[test]
fn remembered_members_start_down_until_heard() {
    let a = Membership::new(
        NodeId::from("a"),
        "a:1".into(),
        "a:2".into(),
        3,
        GossipConfig::default(),
        Vec::new(),
        vec![Remembered {
            id: NodeId::from("b"),
            listen: "b:1".into(),
            http: "b:2".into(),
            generation: 7,
            leaving: false,
        }],
    );
    assert_eq!(states(&a)[1].1, MemberState::Down);
    assert_eq!(a.address(&NodeId::from("b")), Some("b:1"));
}

fn digest(id: &str, heartbeat: u64) -> MemberDigest {
    MemberDigest {
        id: NodeId::from(id),
        listen: format!("{id}:1").into(),
        http: format!("{id}:2").into(),
        generation: 1,
        heartbeat,
        leaving: false,
    }
}

/// a knows b (heard directly at time 0) and c.
fn trio() -> Membership {
    let mut a = member("a");
    a.on_gossip(&NodeId::from("b"), &[digest("b", 1)], 0);
    a.on_gossip(&NodeId::from("c"), &[digest("c", 1)], 0);
    a
}

fn leaving(m: &Membership, id: &str) -> bool {
    m.view()
        .iter()
        .any(|i| i.id.as_str() == id && i.state == MemberState::Leaving)
}

#[test]
fn another_member_cannot_declare_a_live_member_leaving_or_restarted() {
    let mut a = trio();
    let mut lie = digest("b", 5);
    lie.leaving = true;
    let (change, _) = a.on_gossip(&NodeId::from("c"), &[lie.clone()], 100);
    assert!(!change.members && !leaving(&a, "b"), "c spoke for b");
    let mut restart = digest("b", 0);
    restart.generation = 2;
    a.on_gossip(&NodeId::from("c"), &[restart], 100);
    assert_eq!(a.remembered()[1].generation, 1, "c restarted b");
    // b itself is believed.
    let (change, _) = a.on_gossip(&NodeId::from("b"), &[lie], 200);
    assert!(change.members && leaving(&a, "b"));
}

#[test]
fn a_member_that_went_silent_is_learned_leaving_by_relay() {
    let mut a = trio();
    let mut left = digest("b", 5);
    left.leaving = true;
    let later = GossipConfig::default().down_after_ms + 1;
    let (change, _) = a.on_gossip(&NodeId::from("c"), &[left], later);
    assert!(change.members && leaving(&a, "b"));
}

#[test]
fn absurd_generations_and_heartbeats_are_ignored_from_anyone() {
    let mut a = trio();
    for (generation, heartbeat) in [(u64::MAX, 0), (GENERATION_MAX + 1, 1), (1, u64::MAX)] {
        let mut d = digest("b", heartbeat);
        d.generation = generation;
        d.leaving = true;
        let (change, _) = a.on_gossip(&NodeId::from("b"), &[d], 100);
        assert!(
            !change.members && !leaving(&a, "b"),
            "{generation} {heartbeat}"
        );
        // Claims about this node's own life too: it must not be pushed to overflow.
        let mut me = digest("a", heartbeat);
        me.generation = generation;
        a.on_gossip(&NodeId::from("c"), &[me], 100);
        assert!(a.remembered()[0].generation <= GENERATION_MAX + 1);
    }
    // A relayed heartbeat far ahead is not believed; the member's own is.
    let (change, _) = a.on_gossip(&NodeId::from("c"), &[digest("b", 1 << 30)], 100);
    assert!(!change.states && a.peers.get(&NodeId::from("b")).unwrap().heartbeat == 1);
    a.on_gossip(&NodeId::from("b"), &[digest("b", 1 << 30)], 100);
    assert_eq!(a.peers.get(&NodeId::from("b")).unwrap().heartbeat, 1 << 30);
}

/// Detection runs only when a crossing is due, yet states change at exactly the ticks
/// they would if every tick walked the table.
#[test]
fn failure_detection_changes_states_at_the_same_ticks_as_a_full_walk() {
    let mut a = member("a");
    a.on_gossip(&NodeId::from("b"), &[digest("b", 1), digest("c", 1)], 0);
    let mut changes = Vec::new();
    for now in (0..12_000).step_by(10) {
        if now == 5_000 {
            // b is heard again (through gossip from c): it is up, its clock starts anew.
            a.on_gossip(&NodeId::from("c"), &[digest("b", 2)], now);
        }
        let (change, ..) = a.tick(now);
        if change.states {
            changes.push((now, states(&a)));
        }
    }
    // Member `i` of the view (0 is a, 1 is b, 2 is c) as the change at tick `t` left it.
    let state_at = |t: u64, i: usize| {
        changes
            .iter()
            .find(|(now, _)| *now == t)
            .map(|(_, st)| st[i].1)
    };
    let b_at = |t| state_at(t, 1);
    let c_at = |t| state_at(t, 2);
    assert_eq!(b_at(1_500), Some(MemberState::Suspect));
    assert_eq!(b_at(3_000), Some(MemberState::Down));
    assert_eq!(b_at(6_500), Some(MemberState::Suspect));
    assert_eq!(b_at(8_000), Some(MemberState::Down));
    // c was heard at 0 (as a digest) and directly at 5,000.
    assert_eq!(c_at(6_500), Some(MemberState::Suspect));
    assert_eq!(c_at(8_000), Some(MemberState::Down));
    let times: Vec<u64> = changes.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        times,
        [1_500, 3_000, 6_500, 8_000],
        "no change at any other tick"
    );
}

/// Gossip in id order takes the one-walk path; the same gossip shuffled takes lookups:
/// both end in the same table.
#[test]
fn gossip_in_any_order_merges_the_same() {
    let sorted: Vec<MemberDigest> = (0..30)
        .map(|i| digest(&format!("p{i:02}"), i + 1))
        .collect();
    let mut shuffled = sorted.clone();
    shuffled.reverse();
    shuffled.swap(3, 17);
    let mut x = member("a");
    let mut y = member("a");
    x.on_gossip(&NodeId::from("p00"), &sorted[..10], 0);
    y.on_gossip(&NodeId::from("p00"), &sorted[..10], 0);
    let (cx, _) = x.on_gossip(&NodeId::from("p01"), &sorted, 5);
    let (cy, _) = y.on_gossip(&NodeId::from("p01"), &shuffled, 5);
    assert_eq!(cx, cy);
    assert_eq!(x.view(), y.view());
    assert_eq!(x.remembered(), y.remembered());
    assert_eq!(x.count(), 31);
    // The borrowed record encodes as the owned one (what a restart reads back).
    let owned = driftkv_wire::encode(1, &x.remembered());
    assert_eq!(driftkv_wire::encode(1, &x.remembered_refs()), owned);
    let back: Vec<Remembered> = driftkv_wire::decode(1, &owned).unwrap();
    assert_eq!(back, x.remembered());
}

/// A cluster far larger than the fanout: each node sends to a few members per round, and
/// hears of the rest only through gossip relayed by others. Every member must still be up
/// in every view (a moment of suspicion aside), round after round, long past the time
/// silence makes a member down.
#[test]
fn every_member_of_a_large_cluster_sees_every_other_up() {
    let cfg = GossipConfig::default();
    let ids: Vec<String> = (0..200).map(|i| format!("m{i:03}")).collect();
    let mut nodes: Vec<Membership> = ids
        .iter()
        .map(|id| {
            let id = id.as_str();
            let (listen, http) = (format!("{id}:1"), format!("{id}:2"));
            Membership::new(
                NodeId::from(id),
                listen,
                http,
                1,
                cfg.clone(),
                vec![],
                vec![],
            )
        })
        .collect();
    // Everyone knows everyone to begin with (as after a first exchange).
    let all: Vec<MemberDigest> = ids.iter().map(|id| digest(id, 0)).collect();
    for node in &mut nodes {
        node.on_gossip(&NodeId::from(ids[0].as_str()), &all, 0);
    }
    let index = |id: &NodeId| ids.iter().position(|i| i == id.as_str()).unwrap();
    let rounds = 3 * cfg.down_after_ms / cfg.interval_ms;
    let (mut suspect_moments, mut looks, mut busiest) = (0, 0, 0);
    for round in 1..=rounds {
        let now = round * cfg.interval_ms;
        let mut sent = Vec::new();
        for (from, node) in nodes.iter_mut().enumerate() {
            let (_, to, _, message) = node.tick(now);
            let members = digests(&message.expect("a round is due"));
            sent.extend(to.into_iter().map(|to| (from, index(&to), members.clone())));
        }
        let mut received = vec![0usize; ids.len()];
        for (from, to, members) in sent {
            received[to] += 1;
            let from = NodeId::from(ids[from].as_str());
            nodes[to].on_gossip(&from, &members, now + 1);
        }
        busiest = busiest.max(*received.iter().max().unwrap());
        for node in &mut nodes {
            node.tick(now + 2);
        }
        if now >= cfg.down_after_ms {
            for (i, node) in nodes.iter().enumerate() {
                for m in node.view() {
                    match m.state {
                        MemberState::Up => {}
                        // Push gossip to a few peers a round reaches everyone in about
                        // log(n) rounds, sometimes more: a member may be suspect for a
                        // moment in a view, rarely.
                        MemberState::Suspect => suspect_moments += 1,
                        other => panic!("{} at {now} ms sees {} {other:?}", ids[i], m.id),
                    }
                }
            }
            looks += ids.len() * ids.len();
        }
    }
    assert!(
        suspect_moments * 1_000 < looks,
        "{suspect_moments} suspect members in {looks} looks"
    );
    // Sends are spread: a round brings each member a few gossips, never the whole
    // cluster's (every node starting its walk at the first member sent 199 to each of 4).
    assert!(
        busiest <= 4 * cfg.fanout,
        "a member got {busiest} gossips in one round"
    );
}

/// A round sends the table as it is, whether it rewrote the last round's list in place
/// (nobody held it any more) or built a new one; a list a message still holds is never
/// changed under it.
#[test]
fn each_round_sends_the_table_and_never_changes_a_list_in_flight() {
    let cfg = GossipConfig::default();
    let mut a = member("a");
    a.on_gossip(&NodeId::from("b"), &[digest("b", 1), digest("c", 1)], 0);
    let list = |m: &Message| match m {
        Message::Gossip { members } => members.clone(),
        other => panic!("not gossip: {other:?}"),
    };
    let round = |a: &mut Membership, now: &mut u64| {
        *now += cfg.interval_ms;
        let (_, _, _, message) = a.tick(*now);
        let members = list(&message.expect("a round is due"));
        assert_eq!(members.to_vec(), a.digests(), "the table as it is");
        members
    };
    let mut now = 0;
    let held = round(&mut a, &mut now);
    let snapshot = held.to_vec();
    let second = round(&mut a, &mut now);
    assert_eq!(held.to_vec(), snapshot, "a list in flight is left alone");
    assert!(!Arc::ptr_eq(&held, &second));
    let at = Arc::as_ptr(&second);
    drop((held, second));
    let third = round(&mut a, &mut now);
    assert_eq!(Arc::as_ptr(&third), at, "the last list, rewritten in place");
    drop(third);
    // A new member, then a member at a new address: the list follows.
    a.on_gossip(&NodeId::from("b"), &[digest("d", 1)], now);
    round(&mut a, &mut now);
    let mut moved = digest("c", 5);
    moved.listen = "c:9".into();
    a.on_gossip(&NodeId::from("b"), &[moved], now);
    let members = round(&mut a, &mut now);
    assert!(
        members
            .iter()
            .any(|d| d.id.as_str() == "c" && &*d.listen == "c:9")
    );
}

#[test]
fn large_clusters_gossip_to_a_rotating_fanout() {
    let mut a = member("a");
    for i in 0..20 {
        let id = format!("p{i:02}");
        let d = MemberDigest {
            id: NodeId::from(id.as_str()),
            listen: id.as_str().into(),
            http: id.as_str().into(),
            generation: 1,
            heartbeat: 1,
            leaving: false,
        };
        a.on_gossip(&NodeId::from(id.as_str()), &[d], 0);
    }
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..5 {
        let (_, to, _, _) = a.tick(round * 1_000);
        assert_eq!(to.len(), GossipConfig::default().fanout);
        seen.extend(to);
    }
    assert_eq!(seen.len(), 20, "every peer is reached within a few rounds");
}

#[test]
fn only_a_down_member_can_be_removed_and_gossip_carries_the_removal() {
    let (mut a, mut b, mut c) = (member("a"), member("b"), member("c"));
    // All three know each other.
    for t in [0, GossipConfig::default().interval_ms] {
        for (from, msg) in [("a", a.tick(t).3), ("b", b.tick(t).3), ("c", c.tick(t).3)] {
            let d = digests(&msg.unwrap());
            for m in [&mut a, &mut b, &mut c] {
                m.on_gossip(&NodeId::from(from), &d, t);
            }
        }
    }
    let cid = NodeId::from("c");
    assert!(
        a.remove(&NodeId::from("a"))
            .unwrap_err()
            .to_string()
            .contains("this node")
    );
    assert!(
        a.remove(&NodeId::from("z"))
            .unwrap_err()
            .to_string()
            .contains("not a member")
    );
    assert!(
        a.remove(&cid).unwrap_err().to_string().contains("is up"),
        "a live member"
    );
    // c goes silent; a and b carry on and see it down.
    let cfg = GossipConfig::default();
    let later = cfg.interval_ms + cfg.down_after_ms + 10;
    let (_, _, _, from_b) = b.tick(later);
    a.tick(later);
    a.on_gossip(&NodeId::from("b"), &digests(&from_b.unwrap()), later);
    assert_eq!(a.state(&cid), Some(MemberState::Down));
    let change = a.remove(&cid).unwrap();
    assert!(change.members && change.persist);
    assert_eq!(
        a.remove(&cid).unwrap(),
        Change::default(),
        "removing twice is a no-op"
    );
    assert!(
        a.owners().all(|id| *id != cid),
        "a removed member owns nothing"
    );
    assert!(a.removed(&cid));
    // b learns it from a's gossip (it has not heard from c for as long).
    let (_, _, _, from_a) = a.tick(later + cfg.interval_ms);
    b.tick(later + cfg.interval_ms);
    let (change, _) = b.on_gossip(
        &NodeId::from("a"),
        &digests(&from_a.unwrap()),
        later + cfg.interval_ms,
    );
    assert!(change.members);
    assert!(b.owners().all(|id| *id != cid));
    assert!(b.removed(&cid));
}

#[test]
fn a_node_that_just_started_cannot_tell_a_member_is_down_and_removes_none() {
    let mut a = restarted("a", &[("b", false)]);
    assert_eq!(a.state(&NodeId::from("b")), Some(MemberState::Down));
    let err = a.remove(&NodeId::from("b")).unwrap_err().to_string();
    assert!(err.contains("not heard from b since it started"), "{err}");
}

#[test]
fn a_node_restarted_while_leaving_never_gossips_what_a_removal_looks_like() {
    let mut a = restarted("a", &[("a", true)]);
    // Gossip from a stranger is answered before a's first round.
    let mut b = member("b");
    let (_, _, _, hello) = b.tick(0);
    let (_, answer) = a.on_gossip(&NodeId::from("b"), &digests(&hello.unwrap()), 0);
    let own = digests(&answer.unwrap())
        .into_iter()
        .find(|d| d.id.as_str() == "a")
        .unwrap();
    assert!(own.leaving && own.heartbeat > 0, "{own:?}");
    b.on_gossip(&NodeId::from("a"), &digests(&a.tick(0).3.unwrap()), 0);
    assert!(!b.removed(&NodeId::from("a")));
}
