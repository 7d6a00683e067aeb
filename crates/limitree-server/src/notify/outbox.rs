//! The outbox: every accepted notification is recorded here *before* the 202,
//! and marked done once delivered or dead-lettered, so neither a restart nor a
//! crash loses one (what is not done is sent again on start).
//!
//! [`Outbox`] is the seam: [`FileOutbox`] is the implementation for the memory
//! store (a journal in the data dir); `RedisOutbox` (feature `redis`) keeps
//! them in a Redis stream for the Redis store, where several instances share
//! the queue and use [`Outbox::upkeep`] to take over what a dead one left.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use limitree::Micros;
use limitree::store::BoxFuture;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::tally::Saved;

/// What a queued notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Posted by a client.
    Message,
    /// A suppression digest the relay wrote.
    Digest,
}

/// One notification on its way to Slack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique id (UUIDv4), returned in the 202.
    pub id: String,
    /// Message or digest.
    pub kind: Kind,
    /// The tree it was decided in.
    pub tree: String,
    /// Its category (picks the route).
    pub category: String,
    /// The Slack body (`text`, and `blocks` / `attachments` as the client sent them).
    pub payload: serde_json::Value,
    /// The id of the HTTP request that caused it, for the delivery's log lines.
    pub request_id: Option<String>,
    /// When it was accepted (µs since the epoch).
    pub accepted_at: Micros,
}

/// A notification that will not be delivered, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// When it was given up (µs since the epoch).
    pub dead_at: Micros,
    /// Slack's answer (`invalid_payload`, `no_service`, …) or what failed.
    pub reason: String,
    /// The webhook's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Delivery attempts made.
    pub attempts: u32,
    /// The webhook's label (never its URL).
    pub webhook: String,
    /// The notification.
    pub notification: Notification,
}

/// The outbox failed; the notification was not accepted.
#[derive(Debug, thiserror::Error)]
#[error("the outbox at {path} failed: {source}")]
pub struct OutboxError {
    path: String,
    #[source]
    source: io::Error,
}

impl OutboxError {
    /// An error of the outbox at `path` (a directory, or a Redis key).
    pub fn new(path: impl Into<String>, source: io::Error) -> OutboxError {
        OutboxError {
            path: path.into(),
            source,
        }
    }
}

/// Durable record of accepted notifications.
pub trait Outbox: Send + Sync + fmt::Debug {
    /// Records `n` durably; the relay answers 202 only after this returns `Ok`.
    fn append(&self, n: Notification) -> BoxFuture<'_, Result<(), OutboxError>>;
    /// `id` is finished: delivered, or dead-lettered.
    fn done(&self, id: String) -> BoxFuture<'_, Result<(), OutboxError>>;
    /// Keeps `letter` for people to look at (and marks nothing done: call `done` after).
    fn dead_letter(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), OutboxError>>;
    /// Every notification appended and not done, oldest first (read on start).
    fn pending(&self) -> Vec<Notification>;
    /// Keeps the digest tallies at shutdown (they are counts of *suppressed*
    /// notifications, so an outbox may keep them less strictly than accepted ones).
    fn save_digests(&self, tallies: Vec<Saved>) -> BoxFuture<'_, Result<(), OutboxError>>;
    /// The tallies the last run saved, removed from storage.
    fn take_digests(&self) -> Vec<Saved>;

    /// For an outbox shared by several instances: how often the relay calls
    /// [`Outbox::upkeep`] (`None`, the default: never).
    fn upkeep_every(&self) -> Option<Duration> {
        None
    }
    /// Keeps this instance's claim on what it holds alive and, when
    /// `take_over`, returns the notifications it took over from instances
    /// that stopped (to deliver them as if read at start).
    fn upkeep(&self, take_over: bool) -> BoxFuture<'_, Result<Vec<Notification>, OutboxError>> {
        let _ = take_over;
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Delivery has stopped for good (the relay calls it once its workers
    /// have ended): what is still pending may go to other instances now.
    fn release(&self) -> BoxFuture<'_, Result<(), OutboxError>> {
        Box::pin(async { Ok(()) })
    }
}

/// One journal line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    Add(Notification),
    Done(String),
}

/// The outbox in a directory: `outbox.jsonl`, an append-only journal of
/// `{"add": …}` and `{"done": id}` lines, and `dead-letters.jsonl`.
///
/// Each line is written with one `write` call before the call returns, so a
/// killed process loses nothing it acknowledged (the page cache outlives it);
/// with `fsync` the line also survives a power cut. fsyncs are group commits:
/// a call writes its line under the journal lock, then waits for an fsync that
/// started after its write; calls that arrive while one fsync runs share the
/// next, so many concurrent appends cost one fsync, not one each. A torn last line can only
/// be one that was never acknowledged, and is skipped on start. The journal
/// is rewritten with only the pending notifications on start and whenever
/// finished ones dominate it.
#[derive(Debug, Clone)]
pub struct FileOutbox {
    inner: Arc<Mutex<Journal>>,
    /// Lines known durable (the `written` count the last fsync covered). Held
    /// while an fsync runs, so callers queue behind it and share the next one.
    synced: Arc<Mutex<u64>>,
}

#[derive(Debug)]
struct Journal {
    dir: PathBuf,
    file: File,
    fsync: bool,
    /// Pending notifications by append sequence (the order to resend them in).
    live: BTreeMap<u64, Notification>,
    seq_of: HashMap<String, u64>,
    next_seq: u64,
    /// Lines in the journal file now.
    lines: usize,
    /// Lines written since open (across rewrites): the group-commit clock.
    written: u64,
    /// The journal file, shared with fsyncs that run outside the journal lock.
    sync_file: Arc<File>,
}

/// Journal lines before a rewrite is considered.
const COMPACT_MIN_LINES: usize = 4096;

impl FileOutbox {
    /// Opens (creating) the outbox in `dir`, reads what is pending and rewrites
    /// the journal to just that.
    pub fn open(dir: &Path, fsync: bool) -> Result<FileOutbox, OutboxError> {
        let err = |source| OutboxError {
            path: dir.display().to_string(),
            source,
        };
        fs::create_dir_all(dir).map_err(err)?;
        let path = dir.join("outbox.jsonl");
        let mut live = BTreeMap::new();
        let mut seq_of = HashMap::new();
        let mut next_seq = 0;
        match File::open(&path) {
            Ok(file) => {
                for (number, line) in BufReader::new(file).lines().enumerate() {
                    let line = line.map_err(err)?;
                    match serde_json::from_str::<Record>(&line) {
                        Ok(Record::Add(n)) => {
                            seq_of.insert(n.id.clone(), next_seq);
                            live.insert(next_seq, n);
                            next_seq += 1;
                        }
                        Ok(Record::Done(id)) => {
                            if let Some(seq) = seq_of.remove(&id) {
                                live.remove(&seq);
                            }
                        }
                        Err(e) => tracing::warn!(
                            line = number + 1,
                            error = %e,
                            "skipping an unreadable outbox line (a write cut short by a crash)"
                        ),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let file = rewrite(dir, live.values(), fsync).map_err(err)?;
        let sync_file = Arc::new(file.try_clone().map_err(err)?);
        Ok(FileOutbox {
            inner: Arc::new(Mutex::new(Journal {
                dir: dir.to_owned(),
                file,
                fsync,
                lines: live.len(),
                live,
                seq_of,
                next_seq,
                written: 0,
                sync_file,
            })),
            synced: Arc::new(Mutex::new(0)),
        })
    }

    /// Runs `f` on the journal off the async threads, then (with `fsync`)
    /// returns only once an fsync has covered every line written so far.
    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Journal) -> io::Result<T> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, OutboxError>> {
        let inner = Arc::clone(&self.inner);
        let synced = Arc::clone(&self.synced);
        Box::pin(async move {
            let task = tokio::task::spawn_blocking(move || {
                let mut journal = inner.lock();
                let dir = journal.dir.display().to_string();
                let fail = |source| OutboxError {
                    path: dir.clone(),
                    source,
                };
                let value = f(&mut journal).map_err(fail)?;
                let (fsync, ticket) = (journal.fsync, journal.written);
                drop(journal);
                if fsync {
                    sync_through(&inner, &synced, ticket).map_err(fail)?;
                }
                Ok(value)
            });
            match task.await {
                Ok(result) => result,
                Err(e) => Err(OutboxError {
                    path: String::new(),
                    source: io::Error::other(e.to_string()),
                }),
            }
        })
    }
}

/// Returns once the lines up to `ticket` are durable: if an fsync since they
/// were written has already covered them, at once; otherwise after one fsync
/// that covers every line written by now (this caller's and those of everyone
/// who queued behind the previous fsync).
fn sync_through(journal: &Mutex<Journal>, synced: &Mutex<u64>, ticket: u64) -> io::Result<()> {
    let mut durable = synced.lock();
    if *durable >= ticket {
        return Ok(());
    }
    let (upto, file) = {
        let j = journal.lock();
        (j.written, Arc::clone(&j.sync_file))
    };
    file.sync_data()?;
    *durable = upto;
    Ok(())
}

impl Journal {
    /// Appends one line (one `write` call); the caller's fsync comes after the
    /// journal lock is released (see [`sync_through`]).
    fn write_line(&mut self, record: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.lines += 1;
        self.written += 1;
        Ok(())
    }

    /// A rewrite fsyncs the new journal itself (with `fsync`), so lines written
    /// to the old file need no further fsync: their effect is in the new one.
    fn compact_if_worth_it(&mut self) -> io::Result<()> {
        if self.lines >= COMPACT_MIN_LINES && self.lines > 4 * self.live.len() {
            self.file = rewrite(&self.dir, self.live.values(), self.fsync)?;
            self.sync_file = Arc::new(self.file.try_clone()?);
            self.lines = self.live.len();
        }
        Ok(())
    }
}

/// Writes `pending` to a fresh journal and renames it over the old one (so a
/// crash mid-rewrite leaves one whole journal or the other); returns it open
/// for appending.
fn rewrite<'a>(
    dir: &Path,
    pending: impl Iterator<Item = &'a Notification>,
    fsync: bool,
) -> io::Result<File> {
    let path = dir.join("outbox.jsonl");
    let tmp = dir.join("outbox.jsonl.tmp");
    {
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        for n in pending {
            serde_json::to_writer(&mut out, &Record::Add(n.clone())).map_err(io::Error::other)?;
            out.write_all(b"\n")?;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        if fsync {
            file.sync_all()?;
        }
    }
    fs::rename(&tmp, &path)?;
    if fsync {
        File::open(dir)?.sync_all()?;
    }
    OpenOptions::new().append(true).open(&path)
}

impl Outbox for FileOutbox {
    fn append(&self, n: Notification) -> BoxFuture<'_, Result<(), OutboxError>> {
        self.blocking(move |j| {
            j.write_line(&Record::Add(n.clone()))?;
            let seq = j.next_seq;
            j.next_seq += 1;
            j.seq_of.insert(n.id.clone(), seq);
            j.live.insert(seq, n);
            Ok(())
        })
    }

    fn done(&self, id: String) -> BoxFuture<'_, Result<(), OutboxError>> {
        self.blocking(move |j| {
            let Some(seq) = j.seq_of.remove(&id) else {
                return Ok(());
            };
            j.live.remove(&seq);
            j.write_line(&Record::Done(id))?;
            j.compact_if_worth_it()
        })
    }

    fn dead_letter(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), OutboxError>> {
        self.blocking(move |j| {
            let mut line = serde_json::to_vec(&letter).map_err(io::Error::other)?;
            line.push(b'\n');
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(j.dir.join("dead-letters.jsonl"))?;
            file.write_all(&line)?;
            if j.fsync {
                file.sync_data()?;
            }
            Ok(())
        })
    }

    fn pending(&self) -> Vec<Notification> {
        self.inner.lock().live.values().cloned().collect()
    }

    /// `digests.json`, written whole (temp file + rename) at shutdown.
    fn save_digests(&self, tallies: Vec<Saved>) -> BoxFuture<'_, Result<(), OutboxError>> {
        self.blocking(move |j| {
            if tallies.is_empty() {
                return Ok(());
            }
            let tmp = j.dir.join("digests.json.tmp");
            fs::write(
                &tmp,
                serde_json::to_vec(&tallies).map_err(io::Error::other)?,
            )?;
            fs::rename(&tmp, j.dir.join("digests.json"))
        })
    }

    fn take_digests(&self) -> Vec<Saved> {
        let path = self.inner.lock().dir.join("digests.json");
        let Ok(text) = fs::read(&path) else {
            return Vec::new();
        };
        let _ = fs::remove_file(&path);
        serde_json::from_slice(&text).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ignoring unreadable digest tallies");
            Vec::new()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(id: &str) -> Notification {
        Notification {
            id: id.to_owned(),
            kind: Kind::Message,
            tree: "t".to_owned(),
            category: "errors".to_owned(),
            payload: serde_json::json!({"text": id}),
            request_id: Some("r".to_owned()),
            accepted_at: 1,
        }
    }

    #[tokio::test]
    async fn pending_survives_reopen_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FileOutbox::open(dir.path(), false).unwrap();
        for id in ["a", "b", "c"] {
            outbox.append(note(id)).await.unwrap();
        }
        outbox.done("b".to_owned()).await.unwrap();
        drop(outbox);
        // A crash in the middle of a write.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join("outbox.jsonl"))
            .unwrap();
        file.write_all(b"{\"add\":{\"id\":\"d\"").unwrap();
        drop(file);

        let outbox = FileOutbox::open(dir.path(), true).unwrap();
        let ids: Vec<String> = outbox.pending().into_iter().map(|n| n.id).collect();
        assert_eq!(ids, ["a", "c"]);
        // The rewrite dropped the finished and torn lines.
        let text = fs::read_to_string(dir.path().join("outbox.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2);
    }

    /// Concurrent appends with fsync share fsyncs (group commit) and every one
    /// that returned is in the journal, across compactions too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_fsynced_appends_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FileOutbox::open(dir.path(), true).unwrap();
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..200 {
            let outbox = outbox.clone();
            calls.spawn(async move {
                let id = format!("n{i}");
                outbox.append(note(&id)).await.unwrap();
                if i % 2 == 0 {
                    outbox.done(id).await.unwrap();
                }
            });
        }
        while let Some(result) = calls.join_next().await {
            result.unwrap();
        }
        let durable = *outbox.synced.lock();
        assert_eq!(
            durable,
            outbox.inner.lock().written,
            "the last fsync covered every line"
        );
        drop(outbox);
        let reopened = FileOutbox::open(dir.path(), true).unwrap();
        let mut ids: Vec<String> = reopened.pending().into_iter().map(|n| n.id).collect();
        ids.sort();
        let mut expected: Vec<String> = (0..200)
            .filter(|i| i % 2 == 1)
            .map(|i| format!("n{i}"))
            .collect();
        expected.sort();
        assert_eq!(ids, expected);
    }

    #[tokio::test]
    async fn dead_letters_are_kept_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FileOutbox::open(dir.path(), false).unwrap();
        outbox.append(note("a")).await.unwrap();
        outbox
            .dead_letter(DeadLetter {
                dead_at: 2,
                reason: "invalid_payload".to_owned(),
                status: Some(400),
                attempts: 1,
                webhook: "default".to_owned(),
                notification: note("a"),
            })
            .await
            .unwrap();
        outbox.done("a".to_owned()).await.unwrap();
        assert!(outbox.pending().is_empty());
        let text = fs::read_to_string(dir.path().join("dead-letters.jsonl")).unwrap();
        let letter: DeadLetter = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(letter.reason, "invalid_payload");
    }

    #[tokio::test]
    async fn digest_tallies_are_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FileOutbox::open(dir.path(), false).unwrap();
        let saved = Saved {
            tree: "t".to_owned(),
            category: "errors".to_owned(),
            tally: super::super::tally::Tally {
                count: 4,
                first_at: 1,
                last_at: 2,
                samples: vec!["x".to_owned()],
                request_id: None,
            },
            due: 3,
        };
        outbox.save_digests(vec![saved.clone()]).await.unwrap();
        let outbox = FileOutbox::open(dir.path(), false).unwrap();
        assert_eq!(outbox.take_digests(), [saved]);
        assert!(outbox.take_digests().is_empty());
    }
}
