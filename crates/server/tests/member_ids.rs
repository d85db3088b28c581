//! Node ids are interned per thread (the server's threads each make their own): an id made on
//! another thread is another allocation of the same name, and must find the same member. The
//! membership table looks an id up by its allocation first; this holds it to the name as well.

use driftkv_core::GossipConfig;
use driftkv_core::membership::{Membership, Remembered};
use driftkv_ring::NodeId;

#[test]
fn a_member_is_found_by_an_id_made_on_another_thread() {
    let remembered = |id: &str| Remembered {
        id: NodeId::from(id),
        listen: format!("{id}:1"),
        http: format!("{id}:2"),
        generation: 1,
        leaving: false,
    };
    let table = Membership::new(
        NodeId::from("a"),
        "a:1".into(),
        "a:2".into(),
        1,
        GossipConfig::default(),
        Vec::new(),
        vec![remembered("b"), remembered("c")],
    );
    let here = NodeId::from("c");
    let there = std::thread::spawn(|| NodeId::from("c"))
        .join()
        .expect("the thread makes an id");
    assert_eq!(here, there);
    assert!(!here.same_allocation(&there), "each thread interns its own");
    assert!(table.state(&here).is_some());
    assert_eq!(table.state(&there), table.state(&here));
    let stranger = std::thread::spawn(|| NodeId::from("d"))
        .join()
        .expect("the thread makes an id");
    assert_eq!(table.state(&stranger), None);
}
