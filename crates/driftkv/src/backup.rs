//! `driftkv backup`, `driftkv restore` and `driftkv remove`: operating a cluster from outside.
//!
//! A backup is a coverage read of the whole cluster: for each partition, every replica that is
//! up is asked for its records (`GET /admin/dump`), page by page from the same position, and
//! their copies of each key are merged here (a join, so what any replica holds is kept: every
//! sibling with its context, counter totals, set dots, map fields, tombstones). A replica's
//! page may stop early; the round is cut at the earliest place a replica stopped, so no key is
//! written before every replica's copy of it was seen.
//!
//! The file: [`BACKUP_MAGIC`], the format version byte, then records, each a 4-byte
//! big-endian length and an encoded `(key, stored record)`, and a zero length at the end (a
//! file without it is incomplete and refused).
//!
//! A restore sends the records in batches to one node (`POST /admin/restore`), which merges
//! each into every replica: newer state survives it, and restoring twice changes nothing.

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use driftkv_causal::ConflictMode;
use driftkv_wire::backup::{
    BACKUP_FORMAT_VERSION, BACKUP_MAGIC, DumpPage, Record, decode_page, decode_record,
    encode_batch, encode_record,
};
use driftkv_wire::{Key, Object};
use serde_json::Value;

use crate::client::{Credentials, admin_post, client_waiting, fail};

/// How long one request of a backup or restore may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Records asked for per dump page.
const PAGE_RECORDS: usize = 1000;
/// A restore batch is sent once it holds this many bytes of records, or
/// [`BATCH_RECORDS_MAX`] records.
const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
const BATCH_RECORDS_MAX: usize = 500;
/// Times a batch is sent to a node that answers it is busy (503) before the restore gives up.
const BATCH_TRIES: u32 = 8;
/// The longest record a backup file may hold (a record past it is a damaged file).
const RECORD_BYTES_MAX: u32 = 256 * 1024 * 1024;

#[derive(Args)]
pub struct BackupArgs {
    /// A node's HTTP address (`https://...` for a node with TLS); every member's address is
    /// learned from it.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    node: String,
    /// The file to write (written beside it first, then renamed: never half a backup).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    credentials: Credentials,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// A backup file written by `driftkv backup`.
    file: PathBuf,
    /// The node that merges the records into the cluster.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    node: String,
    /// Write quorum of each restored key: one, quorum, all or a number (default: the bucket's).
    #[arg(short, long)]
    w: Option<String>,
    #[command(flatten)]
    credentials: Credentials,
}

#[derive(Args)]
pub struct RemoveArgs {
    /// The id of the member to remove; it must be down.
    id: String,
    /// Any other member's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    node: String,
    #[command(flatten)]
    credentials: Credentials,
}

/// A progress line on stderr: redrawn in place on a terminal, a line per tenth otherwise.
struct Progress {
    tty: bool,
    shown_tenth: u64,
    started: Instant,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            shown_tenth: 0,
            started: Instant::now(),
        }
    }

    fn show(&mut self, done: u64, total: u64, what: &str) {
        let tenth = done.saturating_mul(10) / total.max(1);
        if self.tty {
            let width = 30u64;
            let filled = (done.saturating_mul(width) / total.max(1)).min(width) as usize;
            eprint!(
                "\r[{}{}] {what} ({:.0} s) ",
                "#".repeat(filled),
                " ".repeat(width as usize - filled),
                self.started.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        } else if tenth > self.shown_tenth {
            self.shown_tenth = tenth;
            eprintln!("{what}");
        }
    }

    fn end(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// What `/cluster` and `/ring` say: each member's address and state, each partition's owners.
struct Topology {
    partitions: u32,
    /// (id, state, base URL)
    members: Vec<(String, String, String)>,
    owners: Vec<Vec<String>>,
}

async fn get_json(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let resp = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if !resp.status().is_success() {
        return Err(fail(resp).await.context(url.to_string()));
    }
    resp.json()
        .await
        .with_context(|| format!("{url}: not JSON"))
}

async fn topology(http: &reqwest::Client, base: &str) -> anyhow::Result<Topology> {
    let cluster = get_json(http, &format!("{base}/cluster")).await?;
    let ring = get_json(http, &format!("{base}/ring")).await?;
    let scheme = if base.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    let asked = cluster["node"].as_str().unwrap_or_default().to_string();
    let members = cluster["members"]
        .as_array()
        .context("/cluster lists no members")?
        .iter()
        .map(|m| {
            let id = m["id"].as_str().unwrap_or_default().to_string();
            let state = m["state"].as_str().unwrap_or_default().to_string();
            // The node asked is reached as the user named it; the others at the address
            // they serve HTTP on.
            let url = if id == asked {
                base.to_string()
            } else {
                format!("{scheme}://{}", m["http"].as_str().unwrap_or_default())
            };
            (id, state, url)
        })
        .collect();
    let partitions = cluster["partitions"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .context("/cluster gives no partition count")?;
    let mut owners = vec![Vec::new(); partitions as usize];
    for p in ring["partitions"]
        .as_array()
        .context("/ring lists no partitions")?
    {
        let Some(slot) = p["partition"]
            .as_u64()
            .and_then(|i| owners.get_mut(usize::try_from(i).ok()?))
        else {
            continue;
        };
        *slot = p["owners"]
            .as_array()
            .map(|o| {
                o.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
    }
    Ok(Topology {
        partitions,
        members,
        owners,
    })
}

/// Whether an address others advertise cannot be dialled (`0.0.0.0`, `[::]`).
fn unspecified(url: &str) -> bool {
    url.contains("://0.0.0.0:") || url.contains("://[::]:")
}

async fn dump_page(
    http: &reqwest::Client,
    url: &str,
    partition: u32,
    after: Option<&[u8]>,
) -> anyhow::Result<DumpPage> {
    let mut target = format!("{url}/admin/dump?partition={partition}&limit={PAGE_RECORDS}");
    if let Some(after) = after {
        target.push_str("&after=");
        target.push_str(&driftkv_wire::hex(after));
    }
    let resp = http
        .get(&target)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if !resp.status().is_success() {
        return Err(fail(resp).await);
    }
    let bytes = resp.bytes().await.context("the dump page broke off")?;
    decode_page(&bytes).map_err(|e| anyhow::anyhow!("{url}: not a dump page: {e}"))
}

pub async fn backup(a: BackupArgs) -> anyhow::Result<()> {
    let base = a.node.trim_end_matches('/').to_string();
    let http = client_waiting(&base, &a.credentials, REQUEST_TIMEOUT)?;
    let topo = topology(&http, &base).await?;
    let tmp = a.out.with_extension("partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    let mut out = BufWriter::new(file);
    out.write_all(BACKUP_MAGIC)?;
    out.write_all(&[BACKUP_FORMAT_VERSION])?;
    let (mut keys, mut bytes) = (0u64, 0u64);
    let mut progress = Progress::new();
    let mut warned: Vec<String> = Vec::new();
    for partition in 0..topo.partitions {
        let mut replicas = Vec::new();
        for owner in &topo.owners[partition as usize] {
            let Some((id, state, url)) = topo.members.iter().find(|(id, ..)| id == owner) else {
                continue;
            };
            if state != "up" {
                if !warned.contains(id) {
                    eprintln!(
                        "backup: {id} is {state}: its partitions are read from the other replicas"
                    );
                    warned.push(id.clone());
                }
                continue;
            }
            if unspecified(url) {
                bail!(
                    "member {id} serves HTTP on {url}, an address no one can dial: start it with --http HOST:PORT that others reach"
                );
            }
            replicas.push((id.clone(), url.clone()));
        }
        if replicas.is_empty() {
            bail!("partition {partition}: no replica is up, so the backup would miss its keys");
        }
        let (k, b) = backup_partition(&http, partition, &mut replicas, &mut out).await?;
        keys += k;
        bytes += b;
        progress.show(
            u64::from(partition) + 1,
            u64::from(topo.partitions),
            &format!(
                "backup: partition {}/{}, {keys} keys, {:.1} MiB",
                partition + 1,
                topo.partitions,
                bytes as f64 / (1024.0 * 1024.0)
            ),
        );
    }
    out.write_all(&0u32.to_be_bytes())?;
    let file = out.into_inner().context("cannot finish the backup file")?;
    file.sync_all().context("cannot sync the backup file")?;
    std::fs::rename(&tmp, &a.out)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), a.out.display()))?;
    progress.end();
    println!(
        "backed up {keys} keys ({bytes} bytes) of {} partitions to {}",
        topo.partitions,
        a.out.display()
    );
    Ok(())
}

/// Reads one partition from every replica in `replicas` (dropping one that fails, while
/// another is left) and writes its keys, each merged across the replicas. Returns the keys
/// and bytes written.
async fn backup_partition(
    http: &reqwest::Client,
    partition: u32,
    replicas: &mut Vec<(String, String)>,
    out: &mut impl Write,
) -> anyhow::Result<(u64, u64)> {
    let (mut keys, mut bytes) = (0u64, 0u64);
    let mut after: Option<Vec<u8>> = None;
    loop {
        let mut pages = Vec::new();
        let mut i = 0;
        while i < replicas.len() {
            let (id, url) = &replicas[i];
            match dump_page(http, url, partition, after.as_deref()).await {
                Ok(page) => {
                    pages.push(page);
                    i += 1;
                }
                Err(e) if replicas.len() > 1 => {
                    eprintln!(
                        "backup: partition {partition}: {id} failed ({e:#}); reading the other replicas"
                    );
                    replicas.remove(i);
                    // Pages already taken this round came from the same position: still good.
                }
                Err(e) => return Err(e.context(format!("partition {partition}: {id}"))),
            }
        }
        let (merged, cut) = merge_round(pages)
            .with_context(|| format!("partition {partition}: a stored record does not decode"))?;
        for (_, (key, object)) in merged {
            let record: Record = (key, Bytes::from(driftkv_wire::encode_object(&object)));
            let encoded = encode_record(&record);
            let len = u32::try_from(encoded.len()).context("a record over 4 GiB")?;
            out.write_all(&len.to_be_bytes())?;
            out.write_all(&encoded)?;
            keys += 1;
            bytes += u64::from(len) + 4;
        }
        match cut {
            Some(c) => after = Some(c),
            None => return Ok((keys, bytes)),
        }
    }
}

/// Keys of one round, every replica's pages read from the same position, merged across the
/// replicas, in stored order; and where the round is cut: past the earliest place a replica
/// stopped (its `last` with more to come), that replica has not spoken yet, so records past it
/// wait for the next round, which starts there. `None`: every replica reached the partition's
/// end.
type Merged = BTreeMap<Vec<u8>, (Key, Object)>;

fn merge_round(pages: Vec<DumpPage>) -> anyhow::Result<(Merged, Option<Vec<u8>>)> {
    let cut: Option<Vec<u8>> = pages
        .iter()
        .filter(|p| p.more)
        .filter_map(|p| p.last.as_ref().map(|l| l.to_vec()))
        .min();
    let mut merged = Merged::new();
    for page in pages {
        for (position, key, raw) in page.records {
            let position = position.to_vec();
            if cut.as_ref().is_some_and(|c| position > *c) {
                continue;
            }
            let object = driftkv_wire::decode_object(&raw)?;
            match merged.entry(position) {
                std::collections::btree_map::Entry::Occupied(mut held) => {
                    held.get_mut().1.merge(ConflictMode::Siblings, &object);
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert((key, object));
                }
            }
        }
    }
    Ok((merged, cut))
}

/// Reads a backup file's records in turn, checking its header, each length and its end.
struct BackupReader<R> {
    input: R,
    ended: bool,
}

impl<R: Read> BackupReader<R> {
    fn open(mut input: R, path: &Path) -> anyhow::Result<BackupReader<R>> {
        let mut head = vec![0u8; BACKUP_MAGIC.len() + 1];
        input
            .read_exact(&mut head)
            .ok()
            .filter(|_| head.starts_with(BACKUP_MAGIC))
            .with_context(|| format!("{} is not a driftkv backup", path.display()))?;
        let version = head[BACKUP_MAGIC.len()];
        if version != BACKUP_FORMAT_VERSION {
            bail!(
                "{} is a backup of format {version}; this build reads format {BACKUP_FORMAT_VERSION}",
                path.display()
            );
        }
        Ok(BackupReader {
            input,
            ended: false,
        })
    }

    /// The next record with its size in the file, `None` at the end marker.
    fn next_record(&mut self) -> anyhow::Result<Option<(Record, u64)>> {
        if self.ended {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        self.input
            .read_exact(&mut len)
            .context("the backup file ends early: it is incomplete")?;
        let len = u32::from_be_bytes(len);
        if len == 0 {
            self.ended = true;
            return Ok(None);
        }
        if len > RECORD_BYTES_MAX {
            bail!("the backup file is damaged: a record claims {len} bytes");
        }
        let mut bytes = vec![0u8; len as usize];
        self.input
            .read_exact(&mut bytes)
            .context("the backup file ends early: it is incomplete")?;
        let record = decode_record(&bytes)
            .map_err(|e| anyhow::anyhow!("the backup file is damaged: {e}"))?;
        Ok(Some((record, u64::from(len) + 4)))
    }
}

impl<R: Read> BackupReader<R> {
    /// After the end marker: the file must end there.
    fn check_ended(&mut self) -> anyhow::Result<()> {
        let mut more = [0u8; 1];
        match self.input.read(&mut more) {
            Ok(0) => Ok(()),
            Ok(_) => bail!("the backup file goes on past its end marker: it is damaged"),
            Err(e) => Err(anyhow::Error::new(e).context("cannot read the backup file")),
        }
    }
}

fn open_backup(path: &Path) -> anyhow::Result<BackupReader<BufReader<std::fs::File>>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    BackupReader::open(BufReader::new(file), path)
}

pub async fn restore(a: RestoreArgs) -> anyhow::Result<()> {
    // The whole file is checked before anything is sent: a damaged or cut-off backup restores
    // nothing rather than part of itself.
    let mut check = open_backup(&a.file)?;
    let (mut total, mut total_bytes) = (0u64, 0u64);
    while let Some((_, size)) = check.next_record()? {
        total += 1;
        total_bytes += size;
    }
    check.check_ended()?;
    let base = a.node.trim_end_matches('/').to_string();
    let http = client_waiting(&base, &a.credentials, REQUEST_TIMEOUT)?;
    let mut target = format!("{base}/admin/restore");
    if let Some(w) = &a.w {
        target.push_str(&format!("?w={}", driftkv_bench::http::segment(w)));
    }
    let mut reader = open_backup(&a.file)?;
    let mut progress = Progress::new();
    let (mut sent, mut sent_bytes, mut restored, mut failed) = (0u64, 0u64, 0u64, 0u64);
    let mut errors: Vec<String> = Vec::new();
    let mut batch: Vec<Record> = Vec::new();
    let mut batch_bytes = 0usize;
    loop {
        let next = reader.next_record()?;
        let last = next.is_none();
        // A record that would take the batch past its size goes in the next one (alone, if it
        // is that large): a batch stays within what the node takes.
        let full = next
            .as_ref()
            .is_some_and(|(_, size)| batch_bytes.saturating_add(*size as usize) > BATCH_BYTES_MAX);
        if !batch.is_empty() && (last || full || batch.len() >= BATCH_RECORDS_MAX) {
            let answer = send_batch(&http, &target, &batch).await?;
            sent += batch.len() as u64;
            restored += answer["restored"].as_u64().unwrap_or(0);
            failed += answer["failed"].as_u64().unwrap_or(0);
            for e in answer["errors"].as_array().into_iter().flatten() {
                if errors.len() < 10 {
                    errors.push(e.as_str().unwrap_or_default().to_string());
                }
            }
            batch.clear();
            batch_bytes = 0;
            progress.show(
                sent_bytes,
                total_bytes,
                &format!("restore: {sent}/{total} keys"),
            );
        }
        let Some((record, size)) = next else { break };
        batch_bytes = batch_bytes.saturating_add(size as usize);
        sent_bytes += size;
        batch.push(record);
    }
    progress.end();
    println!(
        "restored {restored} of {total} keys from {}",
        a.file.display()
    );
    if failed > 0 {
        for e in &errors {
            eprintln!("  {e}");
        }
        bail!("{failed} keys could not be restored (run the restore again: it is idempotent)");
    }
    Ok(())
}

/// Sends one batch; a node busy with other batches (503) is asked again, with a growing
/// pause, at most [`BATCH_TRIES`] times.
async fn send_batch(
    http: &reqwest::Client,
    target: &str,
    batch: &[Record],
) -> anyhow::Result<Value> {
    let body = Bytes::from(encode_batch(batch));
    let mut pause = Duration::from_millis(250);
    let mut tried = 1;
    loop {
        let resp = http
            .post(target)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body.clone())
            .send()
            .await
            .with_context(|| format!("cannot reach {target}"))?;
        if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE && tried < BATCH_TRIES {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(4));
            tried += 1;
            continue;
        }
        if !resp.status().is_success() {
            return Err(fail(resp).await);
        }
        return resp.json().await.context("the restore answer is not JSON");
    }
}

pub async fn remove(a: RemoveArgs) -> anyhow::Result<()> {
    let base = a.node.trim_end_matches('/');
    let http = client_waiting(base, &a.credentials, REQUEST_TIMEOUT)?;
    let path = format!("/admin/remove/{}", driftkv_bench::http::segment(&a.id));
    admin_post(&http, base, &path).await?;
    println!(
        "{} removed: its partitions go to the other members, and anti-entropy refills them",
        a.id
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: &[Record], end: bool) -> Vec<u8> {
        let mut bytes = BACKUP_MAGIC.to_vec();
        bytes.push(BACKUP_FORMAT_VERSION);
        for r in records {
            let e = encode_record(r);
            bytes.extend_from_slice(&(e.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&e);
        }
        if end {
            bytes.extend_from_slice(&0u32.to_be_bytes());
        }
        bytes
    }

    fn all(bytes: &[u8]) -> anyhow::Result<Vec<Record>> {
        let mut r = BackupReader::open(bytes, Path::new("t"))?;
        let mut out = Vec::new();
        while let Some((record, _)) = r.next_record()? {
            out.push(record);
        }
        r.check_ended()?;
        Ok(out)
    }

    /// A stored register holding `values`, each written blind by `actor`.
    fn stored(actor: &str, values: &[&str]) -> Bytes {
        let mut reg = driftkv_causal::Register::new();
        for v in values {
            reg.write(
                ConflictMode::Siblings,
                &driftkv_causal::Actor::new(actor, 1),
                &driftkv_causal::VersionVector::new(),
                Some(Bytes::from(v.to_string())),
                driftkv_causal::Timestamp::new(1, 0),
            )
            .unwrap();
        }
        Bytes::from(driftkv_wire::encode_object(&Object::Register(reg)))
    }

    fn page(records: &[(&str, &str, Bytes)], last: &str, more: bool) -> DumpPage {
        DumpPage {
            records: records
                .iter()
                .map(|(pos, k, raw)| {
                    (
                        Bytes::from(pos.to_string()),
                        Key::default_bucket(k.to_string()),
                        raw.clone(),
                    )
                })
                .collect(),
            last: Some(Bytes::from(last.to_string())),
            more,
        }
    }

    fn values(merged: &Merged) -> Vec<(String, Vec<String>)> {
        merged
            .values()
            .map(|(k, o)| {
                let Object::Register(r) = o else { panic!() };
                let mut v: Vec<String> = r
                    .values()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .collect();
                v.sort();
                (String::from_utf8_lossy(k.key()).into_owned(), v)
            })
            .collect()
    }

    #[test]
    fn a_round_is_cut_where_the_first_replica_stopped_and_copies_merge() {
        // Replica 1 stopped at "b" with more to come; replica 2 went on to "d" and the end.
        let one = page(
            &[
                ("a", "a", stored("n1", &["a1"])),
                ("b", "b", stored("n1", &["b1"])),
            ],
            "b",
            true,
        );
        let two = page(
            &[
                ("a", "a", stored("n2", &["a2"])),
                ("c", "c", stored("n2", &["c2"])),
                ("d", "d", stored("n2", &["d2"])),
            ],
            "d",
            false,
        );
        let (merged, cut) = merge_round(vec![one, two]).unwrap();
        assert_eq!(cut.as_deref(), Some(&b"b"[..]));
        // "c" and "d" wait for the next round, where replica 1 speaks about them too.
        assert_eq!(
            values(&merged),
            [
                ("a".into(), vec!["a1".to_string(), "a2".into()]),
                ("b".into(), vec!["b1".into()])
            ]
        );
        // The next round from "b": replica 1 holds a copy of "c" that replica 2 lacks.
        let one = page(&[("c", "c", stored("n1", &["c1"]))], "c", false);
        let two = page(
            &[
                ("c", "c", stored("n2", &["c2"])),
                ("d", "d", stored("n2", &["d2"])),
            ],
            "d",
            false,
        );
        let (merged, cut) = merge_round(vec![one, two]).unwrap();
        assert_eq!(cut, None, "every replica reached the end");
        assert_eq!(
            values(&merged),
            [
                ("c".into(), vec!["c1".to_string(), "c2".into()]),
                ("d".into(), vec!["d2".into()])
            ]
        );
        // A record that does not decode fails the round.
        let bad = page(&[("a", "a", Bytes::from_static(b"\x09junk"))], "a", false);
        assert!(merge_round(vec![bad]).is_err());
    }

    #[test]
    fn a_backup_file_reads_back_and_a_cut_or_foreign_one_is_refused() {
        let records = vec![
            (Key::default_bucket("a"), Bytes::from_static(b"\x02one")),
            (Key::default_bucket("b"), Bytes::from_static(b"\x02two")),
        ];
        assert_eq!(all(&file(&records, true)).unwrap(), records);
        let whole = file(&records, true);
        for cut in [whole.len() - 1, whole.len() - 4, BACKUP_MAGIC.len() + 3] {
            assert!(all(&whole[..cut]).is_err(), "cut at {cut}");
        }
        assert!(all(b"not a backup at all").is_err());
        let mut trailing = whole.clone();
        trailing.push(0);
        assert!(all(&trailing).is_err(), "bytes past the end marker");
        let mut other_version = whole.clone();
        other_version[BACKUP_MAGIC.len()] = 99;
        assert!(all(&other_version).is_err());
        let mut huge = file(&[], false);
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(
            all(&huge).is_err(),
            "a record claiming 4 GiB is refused before any allocation"
        );
    }
}
