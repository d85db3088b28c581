//! Real crashes: a child process writes to a `FjallStore`, reports each acknowledged write on
//! stdout, and is SIGKILLed mid-stream; the parent reopens the directory and checks that every
//! acknowledged write (puts and deletes) survived.
//!
//! The child is this very test binary, re-executed with `CHILD_ENV` set so that the otherwise
//! empty test `child_writer_entry_point` becomes the writer. Everything is bounded: the child
//! stops by itself after `MAX_WRITES` operations or `CHILD_LIFETIME`, and the parent polls with
//! a deadline instead of sleeping.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use driftkv_storage::{Durability, FjallStore, Store};

/// Set (to `<durability>:<round>:<dir>`) only in the child.
const CHILD_ENV: &str = "DRIFTKV_STORAGE_CRASH_CHILD";
const MAX_WRITES: u32 = 200_000;
const CHILD_LIFETIME: Duration = Duration::from_secs(60);
/// How long the parent waits for the acknowledgements it wants, then for the child to die.
const PARENT_DEADLINE: Duration = Duration::from_secs(60);
/// Kill points, one per round; each round crashes the directory the previous rounds crashed.
const KILL_AFTER_ACKS: [usize; 3] = [25, 300, 1500];
/// Under `GroupCommit` the child syncs (and then acknowledges) every this many operations.
const GROUP: u32 = 8;

fn key(round: usize, i: u32) -> Vec<u8> {
    format!("r{round}/{i:07}").into_bytes()
}

fn value(round: usize, i: u32) -> Vec<u8> {
    // Long enough that a torn journal record is a real possibility at the kill.
    format!("value {round}/{i} {}", "x".repeat(200)).into_bytes()
}

fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::EveryWrite => "every-write",
        Durability::GroupCommit => "group-commit",
        Durability::None => "none",
    }
}

/// The child's side. A no-op in a normal test run.
#[test]
fn child_writer_entry_point() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.splitn(3, ':');
    let (Some(durability), Some(round), Some(dir)) = (parts.next(), parts.next(), parts.next())
    else {
        panic!("bad {CHILD_ENV}: {spec:?}")
    };
    let durability: Durability = durability.parse().expect("durability");
    let round: usize = round.parse().expect("round");
    write_until_killed(Path::new(dir), durability, round);
}

/// Writes keys `0..`, deleting key `i - 5` after every tenth put, and prints `ACK PUT i` /
/// `ACK DEL i` only once the operation is durable under the policy.
fn write_until_killed(dir: &Path, durability: Durability, round: usize) {
    let mut store = FjallStore::open(dir, durability).expect("child: open");
    // Straight to the process's stdout, not through the test harness's capture of `print!`.
    let mut out = std::io::stdout().lock();
    // libtest may have printed "test name ... " without a newline; start acknowledgements on a
    // fresh line.
    writeln!(out).expect("child: stdout");
    let started = Instant::now();
    let mut unacked: Vec<String> = Vec::new();
    for i in 0..MAX_WRITES {
        if started.elapsed() > CHILD_LIFETIME {
            break;
        }
        store
            .put(&key(round, i), &value(round, i))
            .expect("child: put");
        unacked.push(format!("ACK PUT {i}"));
        if i % 10 == 9 {
            // Announced before it is issued: once issued, the delete may survive the crash
            // even unacknowledged, and the parent must then accept the key as gone.
            writeln!(out, "INTENT DEL {}", i - 5).expect("child: stdout");
            out.flush().expect("child: flush");
            store.delete(&key(round, i - 5)).expect("child: delete");
            unacked.push(format!("ACK DEL {}", i - 5));
        }
        let acknowledge = match durability {
            Durability::GroupCommit => {
                if i % GROUP == GROUP - 1 {
                    store.sync().expect("child: sync");
                    true
                } else {
                    false
                }
            }
            // EveryWrite: durable on return. None: acknowledged as written; only the
            // `a_process_crash_loses_nothing_under_none` test uses it.
            Durability::EveryWrite | Durability::None => true,
        };
        if acknowledge {
            for line in unacked.drain(..) {
                writeln!(out, "{line}").expect("child: stdout");
            }
            out.flush().expect("child: flush");
        }
    }
}

/// Kills the child if the parent panics first, so no writer outlives the test.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Default)]
struct Acked {
    puts: BTreeSet<u32>,
    deletes: BTreeSet<u32>,
    /// Deletes the child announced (and so may have issued), acknowledged or not.
    issued_deletes: BTreeSet<u32>,
}

impl Acked {
    fn count(&self) -> usize {
        self.puts.len() + self.deletes.len()
    }

    fn record(&mut self, line: &str) {
        if let Some(n) = line.strip_prefix("INTENT DEL ") {
            let n = n.parse().unwrap_or_else(|_| panic!("bad intent {line:?}"));
            self.issued_deletes.insert(n);
            return;
        }
        let Some(rest) = line.strip_prefix("ACK ") else {
            return;
        };
        let (set, n) = match rest.split_once(' ') {
            Some(("PUT", n)) => (&mut self.puts, n),
            Some(("DEL", n)) => (&mut self.deletes, n),
            _ => panic!("unexpected line from the child: {line:?}"),
        };
        set.insert(n.parse().unwrap_or_else(|_| panic!("bad ack {line:?}")));
    }
}

/// One round: spawn the writer on `dir`, SIGKILL it after `kill_after` acknowledgements, and
/// return every acknowledgement it printed before dying.
fn crash_round(dir: &Path, durability: Durability, round: usize, kill_after: usize) -> Acked {
    let exe = std::env::current_exe().expect("current_exe");
    let spec = format!("{}:{round}:{}", durability_name(durability), dir.display());
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "child_writer_entry_point",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the writer");
    let stdout = child.stdout.take().expect("child stdout");
    let mut child = Reaper(child);

    // A reader thread turns the blocking pipe into a channel the parent can poll with a deadline.
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + PARENT_DEADLINE;
    let mut acked = Acked::default();
    while acked.count() < kill_after {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => acked.record(&line),
            Err(RecvTimeoutError::Timeout) => panic!(
                "{durability:?}: only {} acks within {PARENT_DEADLINE:?}",
                acked.count()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = child.0.wait();
                panic!(
                    "{durability:?}: the writer exited before the kill, after {} acks: {status:?}",
                    acked.count()
                )
            }
        }
    }

    // SIGKILL on unix: no destructors, no final journal sync, whatever write was in flight.
    child.0.kill().expect("kill the writer");
    let status = child.0.wait().expect("reap the writer");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "the writer should die by SIGKILL: {status:?}"
        );
    }
    #[cfg(not(unix))]
    assert!(!status.success());

    // The writer is dead, so the pipe reaches end of file once the reader has drained it.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => acked.record(&line),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("the writer's stdout did not close"),
        }
    }
    reader.join().expect("reader thread");
    acked
}

/// Reopens `dir` and checks every acknowledged write of every round so far.
fn check_acknowledged(dir: &Path, durability: Durability, rounds: &[Acked]) {
    let store = FjallStore::open(dir, durability).expect("reopen after the crash");
    for (round, acked) in rounds.iter().enumerate() {
        for &i in &acked.puts {
            let got = store.get(&key(round, i)).expect("get");
            if acked.deletes.contains(&i) {
                assert_eq!(
                    got, None,
                    "{durability:?} round {round}: acknowledged delete of {i} was lost"
                );
            } else if acked.issued_deletes.contains(&i) {
                // Issued but unacknowledged: the delete may or may not have survived.
                assert!(
                    got.is_none() || got == Some(value(round, i)),
                    "{durability:?} round {round}: key {i} holds a value never written"
                );
            } else {
                assert_eq!(
                    got,
                    Some(value(round, i)),
                    "{durability:?} round {round}: acknowledged put of {i} was lost"
                );
            }
        }
        // Scans agree with point reads after recovery, too.
        let live = store
            .scan(format!("r{round}/").as_bytes(), None, usize::MAX)
            .expect("scan");
        let live: BTreeSet<Vec<u8>> = live.into_iter().map(|(k, _)| k).collect();
        for &i in acked.puts.difference(&acked.issued_deletes) {
            assert!(
                live.contains(&key(round, i)),
                "{durability:?} round {round}: key {i} missing from scan"
            );
        }
    }
}

fn crash_and_recover(durability: Durability) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rounds = Vec::new();
    for (round, kill_after) in KILL_AFTER_ACKS.into_iter().enumerate() {
        let acked = crash_round(dir.path(), durability, round, kill_after);
        eprintln!(
            "{durability:?} round {round}: {} puts, {} deletes acknowledged before SIGKILL",
            acked.puts.len(),
            acked.deletes.len()
        );
        rounds.push(acked);
        check_acknowledged(dir.path(), durability, &rounds);
    }
}

#[test]
fn every_write_survives_sigkill() {
    crash_and_recover(Durability::EveryWrite);
}

#[test]
fn group_commit_survives_sigkill_after_sync() {
    crash_and_recover(Durability::GroupCommit);
}

/// Under `None` nothing is fsynced, but fjall hands every write to the OS before returning,
/// so a process crash (as opposed to a power cut, which this test cannot stage) loses nothing
/// either. Pinned here because the node's docs can then say exactly what `None` risks.
#[test]
fn a_process_crash_loses_nothing_under_none() {
    crash_and_recover(Durability::None);
}
