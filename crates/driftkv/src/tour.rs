//! `driftkv tour`: the same story as the demo, told in-process and instantly: the real
//! protocol core on three nodes of `core::local` (a FIFO network, time advanced by hand). No
//! sockets, no files, so it also runs as a test of the whole story.

use std::io::Write;

use bytes::Bytes;
use driftkv_causal::{ConflictMode, VersionVector};
use driftkv_core::local::LocalCluster;
use driftkv_core::{BucketProps, Input};
use driftkv_wire::{Key, Quorum, Reply, Request};

fn show(reply: &Reply) -> String {
    match reply {
        Reply::Values { values, .. } if values.len() == 1 => {
            format!("{:?}", String::from_utf8_lossy(&values[0]))
        }
        Reply::Values { values, .. } => {
            let v: Vec<String> = values
                .iter()
                .map(|b| format!("{:?}", String::from_utf8_lossy(b)))
                .collect();
            format!("{} siblings: [{}]", values.len(), v.join(", "))
        }
        Reply::NotFound { .. } => "not found".into(),
        Reply::Written { .. } => "written".into(),
        Reply::Counter { value } => value.to_string(),
        Reply::Error { message, .. } => format!("error: {message}"),
        other => format!("{other:?}"),
    }
}

fn copies(c: &mut LocalCluster, key: &str) -> String {
    c.copies(key)
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "n{}={}",
                i + 1,
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.join("|")
                }
            )
        })
        .collect::<Vec<_>>()
        .join("  ")
}

/// Nodes in the tour's cluster: n1, n2 and n3.
const NODE_COUNT: usize = 3;
/// Where n1, n2 and n3 sit in the cluster.
const N1: usize = 0;
const N2: usize = 1;
const N3: usize = 2;
/// Time advanced once n3 is back: enough for n1 to hand it the hint it kept.
const HANDOFF_TICK_MS: u64 = 100;
/// Clock advance between the two LWW writes, so that the second carries the later timestamp.
const LWW_WRITE_GAP_MS: u64 = 3;
/// Increments sent through each node in step 5.
const INCREMENTS_PER_NODE: usize = 10;

/// Runs the tour, writing the narration to `out`.
pub fn run(out: &mut dyn Write) -> anyhow::Result<()> {
    let mut c = LocalCluster::new(NODE_COUNT, |cfg| {
        cfg.buckets.insert(
            Bytes::from("lww"),
            BucketProps {
                mode: ConflictMode::Lww,
                ..Default::default()
            },
        );
    });
    writeln!(
        out,
        "driftkv demo: three nodes (n1, n2, n3), every key on N=3 replicas.\n"
    )?;
    stale_read_then_replication(&mut c, out)?;
    hinted_handoff(&mut c, out)?;
    siblings_resolved(&mut c, out)?;
    lww_loses_a_write(&mut c, out)?;
    counter_converges(&mut c, out)
}

/// A blind write (no context) of `key` in the default bucket.
fn blind_put(key: &str, value: &str, w: Quorum) -> Request {
    Request::Put {
        key: Key::default_bucket(key.to_string()),
        value: Some(Bytes::from(value.to_string())),
        context: VersionVector::new(),
        expires_ms: None,
        w,
    }
}

/// Step 1: n1 acknowledges a W=1 write before the other replicas have it; delivering the
/// replication messages brings them level.
fn stale_read_then_replication(c: &mut LocalCluster, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(out, "1. Asynchronous replication and a stale read")?;
    c.step(
        N1,
        Input::Request {
            client: 1,
            request: blind_put("name", "Alice", Quorum::One),
        },
    );
    writeln!(
        out,
        "   PUT name=Alice on n1 with W=1 is acknowledged at once."
    )?;
    writeln!(
        out,
        "   Copies right after the acknowledgement: {}",
        copies(c, "name")
    )?;
    writeln!(
        out,
        "   A read with R=1 served by n2 or n3 now would miss the write: a stale read."
    )?;
    let messages = c.queue.len();
    c.deliver_all();
    writeln!(
        out,
        "   After {messages} replication messages are delivered: {}\n",
        copies(c, "name")
    )?;
    Ok(())
}

/// Step 2: a W=quorum write succeeds with n3 down; n1 keeps a hint and hands it over once
/// n3 is back.
fn hinted_handoff(c: &mut LocalCluster, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "2. A node goes down; writes go on; it catches up through hinted handoff"
    )?;
    c.set_up(N3, false);
    let reply = c.request(N1, blind_put("cart", "book", Quorum::Quorum));
    writeln!(
        out,
        "   n3 down. PUT cart=book with W=quorum: {}",
        show(&reply)
    )?;
    writeln!(
        out,
        "   Copies: {}   (n1 keeps a hint for n3)",
        copies(c, "cart")
    )?;
    c.set_up(N3, true);
    c.tick(HANDOFF_TICK_MS);
    writeln!(out, "   n3 back; one tick later: {}\n", copies(c, "cart"))?;
    Ok(())
}

/// Step 3: two blind writes through different nodes become siblings; a write carrying the
/// read's context replaces both.
fn siblings_resolved(c: &mut LocalCluster, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "3. Concurrent writes become siblings; a write with the read context resolves them"
    )?;
    c.request(N1, blind_put("color", "red", Quorum::All));
    c.request(N2, blind_put("color", "blue", Quorum::All));
    let read = c.get(N3, "color", Quorum::All);
    writeln!(
        out,
        "   Blind writes red (via n1) and blue (via n2); GET on n3: {}",
        show(&read)
    )?;
    let context = match &read {
        Reply::Values { context, .. } => context.clone(),
        _ => VersionVector::new(),
    };
    writeln!(out, "   Its causal context (version vector): {context:?}")?;
    let resolve = Request::Put {
        key: Key::default_bucket("color"),
        value: Some(Bytes::from("purple")),
        context,
        expires_ms: None,
        w: Quorum::All,
    };
    c.request(N2, resolve);
    writeln!(
        out,
        "   PUT purple with that context; GET: {}\n",
        show(&c.get(N1, "color", Quorum::All))
    )?;
    Ok(())
}

/// The key of step 4, in the `lww` bucket.
fn lww_color() -> Key {
    Key::new(Bytes::from("lww"), Bytes::from("color"))
}

/// Step 4: the same concurrent writes under last-write-wins: one survives, the other's
/// copies are discarded.
fn lww_loses_a_write(c: &mut LocalCluster, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(out, "4. The same under last-write-wins loses a write")?;
    write_lww_across_a_cut(c);
    let read = c.request(
        N3,
        Request::Get {
            key: lww_color(),
            r: Quorum::All,
        },
    );
    c.deliver_all();
    let lost: u64 = c.nodes.iter().map(|n| n.stats().lww_discarded).sum();
    writeln!(
        out,
        "   red and blue written concurrently (network cut); GET: {}",
        show(&read)
    )?;
    writeln!(
        out,
        "   The later timestamp won; {lost} replica copies of the other write were discarded.\n"
    )?;
    Ok(())
}

/// "red" written on n1 alone, then "blue" a little later on n2 alone (each write's
/// replication dropped), then the network restored: two concurrent LWW writes.
fn write_lww_across_a_cut(c: &mut LocalCluster) {
    let lww = |value: &str| Request::Put {
        key: lww_color(),
        value: Some(Bytes::from(value.to_string())),
        context: VersionVector::new(),
        expires_ms: None,
        w: Quorum::One,
    };
    let saved = c.up.clone();
    c.up = vec![true, false, false];
    c.step(
        N1,
        Input::Request {
            client: 2,
            request: lww("red"),
        },
    );
    c.queue.clear();
    c.now_ms += LWW_WRITE_GAP_MS;
    c.up = vec![false, true, false];
    c.step(
        N2,
        Input::Request {
            client: 3,
            request: lww("blue"),
        },
    );
    c.queue.clear();
    c.up = saved;
}

/// Step 5: counter increments through every node; each node reads their sum.
fn counter_converges(c: &mut LocalCluster, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "5. A counter incremented through all three nodes converges to the sum"
    )?;
    let key = Key::default_bucket("hits");
    for i in 0..NODE_COUNT {
        for _ in 0..INCREMENTS_PER_NODE {
            c.request(
                i,
                Request::CounterAdd {
                    key: key.clone(),
                    delta: 1,
                    w: Quorum::One,
                },
            );
        }
    }
    let values: Vec<String> = (0..NODE_COUNT)
        .map(|i| {
            show(&c.request(
                i,
                Request::CounterGet {
                    key: key.clone(),
                    r: Quorum::One,
                },
            ))
        })
        .collect();
    writeln!(
        out,
        "   {INCREMENTS_PER_NODE} increments on each node; read on each: {}",
        values.join(", ")
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_tells_the_whole_story() {
        let mut out = Vec::new();
        super::run(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("n1=Alice  n2=-  n3=-"),
            "the stale moment is shown:\n{text}"
        );
        assert!(text.contains("n1=Alice  n2=Alice  n3=Alice"), "{text}");
        assert!(
            text.contains("n3 back; one tick later: n1=book  n2=book  n3=book"),
            "{text}"
        );
        assert!(text.contains("2 siblings"), "{text}");
        assert!(text.contains("GET: \"purple\""), "{text}");
        assert!(text.contains("GET: \"blue\""), "{text}");
        assert!(text.contains("30, 30, 30"), "{text}");
    }
}
