//! ventana's sled layout. One tree, keys by prefix, so that everything one consumer batch
//! produced — states, deadline and window-end index entries, outbox rows and the checkpoint
//! — is written by one atomic `apply_batch`:
//!
//! | key | value |
//! |---|---|
//! | `v` | layout version (one byte) |
//! | `c` | checkpoint: the last applied `VENTANA_IN` stream sequence (u64 BE) |
//! | `s` + token | conversation state (`ventana_wire::codec`: format byte + bincode) |
//! | `d` + instant + token | a conversation's next deadline (due-timer index) |
//! | `w` + instant + token | a conversation's current window end (`expiring` index) |
//! | `o` + position | an outbox chunk: the rows of one commit from the previous chunk's key up to this position (each: position, subject, output id, payload) |
//! | `l` + sequence | a bad input the DLQ refused to store even by reference: its reason |
//!
//! Instants are stored as big-endian with the sign bit flipped, so byte order is time order.
//!
//! Outbox rows are stored in chunks of a few KiB rather than one key each: a batch of 2 000
//! events has over a thousand outputs, each inserted and later removed, and sled's cost is
//! per key (README, "Performance"). A
//! chunk is removed when all its rows are; which rows are left is kept in memory
//! ([`Store::remove_outbox`]), so after a crash a chunk comes back whole and its rows
//! already published are skipped by their partition's mark, as a row left by a crash
//! between publishing and deleting always was.
//! sled is blocking: callers run these methods off the async executor.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use thiserror::Error;
use ventana_core::{Conversation, ConversationToken, Policy, Timestamp};
use ventana_wire::codec::{CodecError, decode_state, encode_state};

/// Bumped whenever the key layout or the state format ([`ventana_wire::codec::STATE_FORMAT`])
/// changes, so that a directory of a newer version is refused at start with the way out
/// (rebuild from the log) rather than failing on its first state. Layout 2: state format 2
/// (memory bounded by count, docs/rules.md §1.4 point 4). Layout 3: outbox rows in chunks.
/// Layout 4: states written in format 3 (varint integers), format-2 states still read. A
/// layout-2 or layout-3 directory is upgraded in place as it opens.
pub const LAYOUT_VERSION: u8 = 4;
/// The layout whose outbox rows [`Store::open`] moves into chunks (one key per row).
const ROWS_ONE_BY_ONE: u8 = 2;
/// The layout whose states are all in format 2: read as they are, so only the version moves.
const FIXED_WIDTH_STATES: u8 = 3;

const VERSION: &[u8] = b"v";
const CHECKPOINT: &[u8] = b"c";
const STATE: u8 = b's';
const DEADLINE: u8 = b'd';
const WINDOW_END: u8 = b'w';
const OUTBOX: u8 = b'o';
const DLQ_REFUSED: u8 = b'l';

/// The size past which an outbox chunk takes no more rows. sled rewrites a whole leaf (up
/// to 17 keys) when it consolidates it, and writes one of over ~128 KiB to a file of its own.
const CHUNK_BYTES: usize = 6 * 1024;

#[derive(Debug, Error)]
pub enum StoreError {
    /// The data directory was written by another layout: refuse to start rather than misread.
    #[error(
        "the data directory {path} has store layout {found}; this ventana uses layout {LAYOUT_VERSION}: rebuild it from the log (`ventana rebuild`) or use a new directory"
    )]
    Incompatible { path: String, found: u8 },
    /// sled failed (disk full, corruption, I/O): the service stops; nothing is acked.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// A stored state cannot be read.
    #[error("stored state of {token}: {source}")]
    State { token: String, source: CodecError },
    /// A stored row is malformed.
    #[error("corrupt store row: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The index entries a conversation state has: its next deadline and its window end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Indexed {
    pub deadline: Option<Timestamp>,
    pub window_ends_at: Option<Timestamp>,
}

impl Indexed {
    pub fn of(conversation: &Conversation, policy: &Policy) -> Self {
        Self {
            deadline: conversation.next_deadline(policy),
            window_ends_at: conversation.view().window_ends_at,
        }
    }
}

/// An output waiting to be published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    pub subject: String,
    /// The output id: `Nats-Msg-Id`.
    pub id: String,
    /// Shared, not copied, when it is published.
    pub payload: bytes::Bytes,
}

impl OutboxRow {
    /// Appends the row at `position` to a chunk.
    fn encode_into(&self, position: u64, chunk: &mut Vec<u8>) {
        chunk.extend_from_slice(&position.to_be_bytes());
        for part in [
            self.subject.as_bytes(),
            self.id.as_bytes(),
            &self.payload[..],
        ] {
            chunk.extend_from_slice(&(part.len() as u32).to_be_bytes());
            chunk.extend_from_slice(part);
        }
    }

    /// A row as layout 2 stored it, one key each: subject and id with their lengths, then
    /// the payload.
    fn decode_layout_2(bytes: &[u8]) -> Result<Self> {
        let mut rest = bytes;
        let subject = text(length_prefixed(&mut rest)?)?;
        let id = text(length_prefixed(&mut rest)?)?;
        Ok(Self {
            subject,
            id,
            payload: bytes::Bytes::copy_from_slice(rest),
        })
    }
}

fn corrupt_outbox() -> StoreError {
    StoreError::Corrupt("outbox chunk".into())
}

/// The next length-prefixed part of `rest`.
fn length_prefixed<'b>(rest: &mut &'b [u8]) -> Result<&'b [u8]> {
    let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(corrupt_outbox)?;
    let len = u32::from_be_bytes(*len) as usize;
    let (part, tail) = tail.split_at_checked(len).ok_or_else(corrupt_outbox)?;
    *rest = tail;
    Ok(part)
}

fn text(bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| corrupt_outbox())
}

/// The rows of a chunk: each row's position, with the row decoded when `wanted(position)`.
fn chunk_rows(
    mut chunk: &[u8],
    mut wanted: impl FnMut(u64) -> bool,
) -> impl Iterator<Item = Result<(u64, Option<OutboxRow>)>> {
    std::iter::from_fn(move || {
        if chunk.is_empty() {
            return None;
        }
        let row = (|| {
            let (position, rest) = chunk.split_first_chunk::<8>().ok_or_else(corrupt_outbox)?;
            let position = u64::from_be_bytes(*position);
            chunk = rest;
            let subject = length_prefixed(&mut chunk)?;
            let id = length_prefixed(&mut chunk)?;
            let payload = length_prefixed(&mut chunk)?;
            if !wanted(position) {
                return Ok((position, None));
            }
            Ok((
                position,
                Some(OutboxRow {
                    subject: text(subject)?,
                    id: text(id)?,
                    payload: bytes::Bytes::copy_from_slice(payload),
                }),
            ))
        })();
        if row.is_err() {
            chunk = &[];
        }
        Some(row)
    })
}

fn outbox_key(position: u64) -> [u8; 9] {
    let mut key = [OUTBOX; 9];
    key[1..].copy_from_slice(&position.to_be_bytes());
    key
}

fn outbox_position(key: &[u8]) -> Result<u64> {
    key.get(1..)
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt("outbox key".into()))
}

/// Outbox rows being built into chunks, in position order.
#[derive(Debug, Default)]
struct Chunks {
    /// Each chunk's positions and bytes.
    chunks: Vec<(Vec<u64>, Vec<u8>)>,
}

impl Chunks {
    fn push(&mut self, position: u64, row: &OutboxRow) {
        match self.chunks.last_mut() {
            Some((positions, bytes)) if bytes.len() < CHUNK_BYTES => {
                debug_assert!(positions.last().is_some_and(|last| *last < position));
                positions.push(position);
                row.encode_into(position, bytes);
            }
            _ => {
                let mut bytes = Vec::with_capacity(CHUNK_BYTES + 512);
                row.encode_into(position, &mut bytes);
                self.chunks.push((vec![position], bytes));
            }
        }
    }

    /// Adds the chunks to `batch`, each keyed by its last position, and to `unpublished`.
    fn write(self, batch: &mut sled::Batch, unpublished: &mut Unpublished) {
        for (positions, bytes) in self.chunks {
            let last = *positions.last().expect("a chunk has a row");
            batch.insert(&outbox_key(last), bytes);
            unpublished
                .chunks
                .insert(last, positions.into_iter().collect());
        }
    }
}

/// Moves layout 2's outbox rows (a key each) into chunks and marks the store with the
/// current layout, in one atomic batch.
fn chunk_layout_2_rows(tree: &sled::Tree) -> Result<()> {
    let mut batch = sled::Batch::default();
    let mut chunks = Chunks::default();
    for entry in tree.scan_prefix([OUTBOX]) {
        let (key, row) = entry?;
        chunks.push(outbox_position(&key)?, &OutboxRow::decode_layout_2(&row)?);
        batch.remove(key);
    }
    // Opening reads the chunks' rows again.
    chunks.write(&mut batch, &mut Unpublished::default());
    batch.insert(VERSION, &[LAYOUT_VERSION][..]);
    tree.apply_batch(batch)?;
    Ok(())
}

/// The outbox rows not removed yet, by chunk. A chunk's key is at or after its last row's
/// position (its last row's when written; an erasure may take that row out) and before the
/// next chunk's first, so the first chunk keyed at or after a position is the one that may
/// hold it.
#[derive(Debug, Default)]
struct Unpublished {
    chunks: BTreeMap<u64, BTreeSet<u64>>,
}

impl Unpublished {
    /// The chunk that holds the row at `position`, if it is not removed yet.
    fn chunk_of(&mut self, position: u64) -> Option<(u64, &mut BTreeSet<u64>)> {
        let (key, rows) = self.chunks.range_mut(position..).next()?;
        rows.contains(&position).then_some((*key, rows))
    }

    /// Removes the row at `position`; the key of its chunk when that has no row left (and
    /// is forgotten).
    fn remove(&mut self, position: u64) -> Option<u64> {
        let (key, rows) = self.chunk_of(position)?;
        rows.remove(&position);
        if rows.is_empty() {
            self.chunks.remove(&key);
            return Some(key);
        }
        None
    }
}

fn instant_bytes(t: Timestamp) -> [u8; 8] {
    ((t.unix_nanos() as u64) ^ (1 << 63)).to_be_bytes()
}

fn instant_from(bytes: &[u8]) -> Timestamp {
    let raw = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
    Timestamp::from_unix_nanos((raw ^ (1 << 63)) as i64)
}

fn token_bytes(token: ConversationToken) -> [u8; 16] {
    token.as_u128().to_be_bytes()
}

fn token_from(bytes: &[u8]) -> ConversationToken {
    ConversationToken::from_u128(u128::from_be_bytes(
        bytes[..16].try_into().expect("16 bytes"),
    ))
}

fn state_key(token: ConversationToken) -> Vec<u8> {
    let mut key = vec![STATE];
    key.extend_from_slice(&token_bytes(token));
    key
}

fn timed_key(prefix: u8, at: Timestamp, token: ConversationToken) -> Vec<u8> {
    let mut key = vec![prefix];
    key.extend_from_slice(&instant_bytes(at));
    key.extend_from_slice(&token_bytes(token));
    key
}

/// A key and its value, or `None` to remove the key.
type Write = (Vec<u8>, Option<Vec<u8>>);

/// The writes that store `conversation` and move its index entries from `before` to
/// `after`: a key and its value, or `None` to remove the key.
fn state_writes(
    conversation: &Conversation,
    before: Indexed,
    after: Indexed,
    mut write: impl FnMut(Vec<u8>, Option<Vec<u8>>),
) {
    let token = conversation.key().token();
    write(state_key(token), Some(encode_state(conversation)));
    index_writes(token, before, after, write);
}

/// The writes that move the index entries of the conversation `token` from `before` to
/// `after`.
fn index_writes(
    token: ConversationToken,
    before: Indexed,
    after: Indexed,
    mut write: impl FnMut(Vec<u8>, Option<Vec<u8>>),
) {
    for (prefix, before, after) in [
        (DEADLINE, before.deadline, after.deadline),
        (WINDOW_END, before.window_ends_at, after.window_ends_at),
    ] {
        if before != after {
            if let Some(at) = before {
                write(timed_key(prefix, at, token), None);
            }
            if let Some(at) = after {
                write(timed_key(prefix, at, token), Some(Vec::new()));
            }
        }
    }
}

/// Everything one consumer batch produced, written atomically by [`Store::commit`].
#[derive(Debug, Default)]
pub struct Commit {
    batch: sled::Batch,
    checkpoint: Option<u64>,
    outbox: Chunks,
}

impl Commit {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `conversation`, moving its index entries from `before` to `after`.
    pub fn put_state(&mut self, conversation: &Conversation, before: Indexed, after: Indexed) {
        state_writes(conversation, before, after, |key, value| match value {
            Some(value) => self.batch.insert(key, value),
            None => self.batch.remove(key),
        });
    }

    /// Queues an output for publishing at `position`, which orders the outbox: each above
    /// the last one pushed, and above those of every earlier commit.
    pub fn push_outbox(&mut self, position: u64, row: &OutboxRow) {
        self.outbox.push(position, row);
    }

    /// Remembers that the bad input at `sequence` (its `reason`) could not be copied to the
    /// DLQ: it stays in the input log, and [`Store::dlq_refused`] lists it.
    pub fn dlq_refused(&mut self, sequence: u64, reason: &str) {
        let mut key = vec![DLQ_REFUSED];
        key.extend_from_slice(&sequence.to_be_bytes());
        self.batch.insert(key, reason.as_bytes());
    }

    /// The last input stream sequence this commit covers.
    pub fn checkpoint(&mut self, sequence: u64) {
        self.checkpoint = Some(sequence);
    }
}

/// What the store keeps of one conversation, found by [`Store::find`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Erasure {
    /// Whether it has a state.
    pub state: bool,
    /// Input events the state had folded.
    pub events: u64,
    /// Timer and window-end index entries.
    pub timers: usize,
    /// Unpublished outputs.
    pub outbox: usize,
    keys: Vec<Vec<u8>>,
    /// The positions of its unpublished outputs.
    rows: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    unpublished: Arc<Mutex<Unpublished>>,
}

impl Store {
    /// Opens (or creates) the store in `path` with a page cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        Self::on(db, path)
    }

    /// The store in an open sled `db` (of `path`, for errors): its layout checked (an older
    /// one upgraded: a layout-2 outbox moved into chunks) and its unpublished rows read.
    fn on(db: sled::Db, path: &Path) -> Result<Self> {
        let tree = db.open_tree("ventana")?;
        match tree.get(VERSION)? {
            Some(found) if found.as_ref() == [LAYOUT_VERSION] => {}
            Some(found) if found.as_ref() == [ROWS_ONE_BY_ONE] => {
                chunk_layout_2_rows(&tree)?;
                db.flush()?;
            }
            Some(found) if found.as_ref() == [FIXED_WIDTH_STATES] => {
                tree.insert(VERSION, &[LAYOUT_VERSION][..])?;
                db.flush()?;
            }
            Some(found) => {
                return Err(StoreError::Incompatible {
                    path: path.display().to_string(),
                    found: found.first().copied().unwrap_or(0),
                });
            }
            None if tree.is_empty() => {
                tree.insert(VERSION, &[LAYOUT_VERSION][..])?;
                db.flush()?;
            }
            None => {
                return Err(StoreError::Incompatible {
                    path: path.display().to_string(),
                    found: 0,
                });
            }
        }
        let mut unpublished = Unpublished::default();
        for entry in tree.scan_prefix([OUTBOX]) {
            let (key, chunk) = entry?;
            let rows = chunk_rows(&chunk, |_| false)
                .map(|row| row.map(|(position, _)| position))
                .collect::<Result<BTreeSet<u64>>>()?;
            unpublished.chunks.insert(outbox_position(&key)?, rows);
        }
        Ok(Self {
            db,
            tree,
            unpublished: Arc::new(Mutex::new(unpublished)),
        })
    }

    fn unpublished(&self) -> std::sync::MutexGuard<'_, Unpublished> {
        // Every change to it is complete when it is made: one that panicked left it whole.
        self.unpublished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens the store in `path` once more and closes it (no other handle may be open).
    /// sled 0.34 writes the snapshot of its page table only when it opens a store, and
    /// opening replays everything written since the last snapshot; ventanad does this as it
    /// stops, so that its next start finds a fresh snapshot instead of this run's writes.
    pub fn snapshot(path: &Path) -> Result<()> {
        sled::Config::new()
            .path(path)
            .cache_capacity(16 << 20)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        Ok(())
    }

    /// The bad inputs the DLQ refused to store (see [`Commit::dlq_refused`]): stream sequence
    /// in `VENTANA_IN` and reason, oldest first.
    pub fn dlq_refused(&self) -> Result<Vec<(u64, String)>> {
        self.tree
            .scan_prefix([DLQ_REFUSED])
            .map(|row| {
                let (key, reason) = row?;
                let sequence = key
                    .get(1..)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| StoreError::Corrupt("a DLQ-refused key".into()))?;
                Ok((sequence, String::from_utf8_lossy(&reason).into_owned()))
            })
            .collect()
    }

    /// The last applied input stream sequence (0 when none).
    pub fn checkpoint(&self) -> Result<u64> {
        Ok(self
            .tree
            .get(CHECKPOINT)?
            .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])))
            .unwrap_or(0))
    }

    pub fn load(&self, token: ConversationToken) -> Result<Option<Conversation>> {
        self.tree
            .get(state_key(token))?
            .map(|bytes| {
                decode_state(&bytes).map_err(|source| StoreError::State {
                    token: token.to_string(),
                    source,
                })
            })
            .transpose()
    }

    /// Writes a commit atomically (not yet durable: see [`Store::flush`]).
    pub fn commit(&self, mut commit: Commit) -> Result<()> {
        if let Some(sequence) = commit.checkpoint {
            commit.batch.insert(CHECKPOINT, &sequence.to_be_bytes()[..]);
        }
        // Known as unpublished before they are stored: a reader finds no row it ignores.
        commit
            .outbox
            .write(&mut commit.batch, &mut self.unpublished());
        self.tree.apply_batch(commit.batch)?;
        Ok(())
    }

    /// Stores conversations (each with its index entries as stored and as they are now) with
    /// plain inserts, not atomically: for a projection built offline, which nothing reads
    /// before it is complete. A write inside sled's atomic batch costs more than a plain
    /// insert, and one batch of a whole rebuild held sled's memory until it ended (README,
    /// "Performance": Rebuild). The states are encoded on a thread of their own while this
    /// one inserts what is encoded: the states in the order given (in token order, each
    /// insert lands beside the one before), then every index entry, sorted by key (every
    /// key of one call is distinct: each holds its conversation's token).
    pub fn put_states<'c>(
        &self,
        states: impl IntoIterator<Item = (&'c Conversation, Indexed, Indexed), IntoIter: Send>,
    ) -> Result<()> {
        const CHUNK: usize = 1024;
        let states = states.into_iter();
        let (encoded, chunks) = std::sync::mpsc::sync_channel::<Vec<Write>>(4);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut chunk = Vec::with_capacity(CHUNK);
                let mut index = Vec::new();
                for (conversation, before, after) in states {
                    let token = conversation.key().token();
                    chunk.push((state_key(token), Some(encode_state(conversation))));
                    index_writes(token, before, after, |key, value| index.push((key, value)));
                    if chunk.len() >= CHUNK {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                        if encoded.send(full).is_err() {
                            return;
                        }
                    }
                }
                if encoded.send(chunk).is_err() {
                    return;
                }
                index.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                let mut index = index.into_iter();
                loop {
                    let part: Vec<Write> = index.by_ref().take(CHUNK).collect();
                    if part.is_empty() || encoded.send(part).is_err() {
                        return;
                    }
                }
            });
            for chunk in chunks {
                for (key, value) in chunk {
                    match value {
                        Some(value) => self.tree.insert(key, value)?,
                        None => self.tree.remove(key)?,
                    };
                }
            }
            Ok(())
        })
    }

    /// Sets the checkpoint (the last applied input stream sequence) on its own.
    pub fn set_checkpoint(&self, sequence: u64) -> Result<()> {
        self.tree.insert(CHECKPOINT, &sequence.to_be_bytes()[..])?;
        Ok(())
    }

    /// Makes everything committed so far durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Conversations whose next deadline is at or before `now`, soonest first.
    pub fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<(Timestamp, ConversationToken)>> {
        self.timed(DEADLINE, None, Some(now), limit)
    }

    /// The earliest deadline of any conversation.
    pub fn next_due(&self) -> Result<Option<Timestamp>> {
        Ok(self
            .timed(DEADLINE, None, None, 1)?
            .first()
            .map(|(at, _)| *at))
    }

    /// Conversations whose window ends after `after` (exclusive; a pagination cursor of
    /// (instant, token)) and at or before `until`, soonest first.
    pub fn expiring(
        &self,
        after: (Timestamp, Option<ConversationToken>),
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<(Timestamp, ConversationToken)>> {
        self.timed(WINDOW_END, Some(after), Some(until), limit)
    }

    fn timed(
        &self,
        prefix: u8,
        after: Option<(Timestamp, Option<ConversationToken>)>,
        until: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<(Timestamp, ConversationToken)>> {
        let start = match after {
            Some((at, Some(token))) => {
                let mut key = timed_key(prefix, at, token);
                key.push(0); // strictly after this entry
                key
            }
            Some((at, None)) => {
                let mut key = vec![prefix];
                key.extend_from_slice(&instant_bytes(at));
                key
            }
            None => vec![prefix],
        };
        let mut found = Vec::new();
        for entry in self.tree.range(start..vec![prefix + 1]) {
            let (key, _) = entry?;
            if key.len() != 25 {
                return Err(StoreError::Corrupt(format!(
                    "index key of {} bytes",
                    key.len()
                )));
            }
            let at = instant_from(&key[1..9]);
            if until.is_some_and(|until| at > until) || found.len() >= limit {
                break;
            }
            found.push((at, token_from(&key[9..25])));
        }
        Ok(found)
    }

    /// Up to `limit` outbox rows, oldest first.
    pub fn outbox(&self, limit: usize) -> Result<Vec<(u64, OutboxRow)>> {
        self.outbox_after(None, limit)
    }

    /// Up to `limit` outbox rows after position `after` (from the first without it), oldest
    /// first.
    pub fn outbox_after(&self, after: Option<u64>, limit: usize) -> Result<Vec<(u64, OutboxRow)>> {
        let start = match after {
            None => 0,
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(after) => after + 1,
        };
        let mut rows = Vec::new();
        for entry in self
            .tree
            .range(outbox_key(start).to_vec()..vec![OUTBOX + 1])
        {
            let (key, chunk) = entry?;
            let left = self
                .unpublished()
                .chunks
                .get(&outbox_position(&key)?)
                .cloned()
                .unwrap_or_default();
            for row in chunk_rows(&chunk, |position| {
                position >= start && left.contains(&position)
            }) {
                if let (position, Some(row)) = row? {
                    rows.push((position, row));
                    if rows.len() >= limit {
                        return Ok(rows);
                    }
                }
            }
        }
        Ok(rows)
    }

    /// Removes published outbox rows (again and unknown ones are no-ops): a chunk goes when
    /// its last row does.
    pub fn remove_outbox(&self, positions: &[u64]) -> Result<()> {
        let emptied: Vec<u64> = {
            let mut unpublished = self.unpublished();
            positions
                .iter()
                .filter_map(|position| unpublished.remove(*position))
                .collect()
        };
        if !emptied.is_empty() {
            let mut batch = sled::Batch::default();
            for key in emptied {
                batch.remove(&outbox_key(key));
            }
            self.tree.apply_batch(batch)?;
        }
        Ok(())
    }

    /// How many outputs wait to be published.
    pub fn outbox_len(&self) -> usize {
        self.unpublished().chunks.values().map(BTreeSet::len).sum()
    }

    /// Every stored conversation, in token order.
    pub fn conversations(&self) -> impl Iterator<Item = Result<Conversation>> + '_ {
        self.tree.scan_prefix([STATE]).map(|entry| {
            let (key, value) = entry?;
            decode_state(&value).map_err(|source| StoreError::State {
                token: token_from(&key[1..]).to_string(),
                source,
            })
        })
    }

    /// Everything the store keeps of one conversation: its state, its timer and window-end
    /// index entries, and its unpublished outputs (for a privacy erasure).
    pub fn find(&self, token: ConversationToken) -> Result<Erasure> {
        let mut erasure = Erasure::default();
        let state = state_key(token);
        if let Some(bytes) = self.tree.get(&state)? {
            erasure.events = decode_state(&bytes)
                .map_err(|source| StoreError::State {
                    token: token.to_string(),
                    source,
                })?
                .snapshot(&ventana_core::Policy::default())
                .events;
            erasure.state = true;
            erasure.keys.push(state);
        }
        let own = token_bytes(token);
        for prefix in [DEADLINE, WINDOW_END] {
            for entry in self.tree.scan_prefix([prefix]) {
                let (key, _) = entry?;
                if key.get(9..25) == Some(&own[..]) {
                    erasure.timers += 1;
                    erasure.keys.push(key.to_vec());
                }
            }
        }
        let suffix = format!(".{token}");
        for (position, row) in self.outbox_after(None, usize::MAX)? {
            if row.subject.ends_with(&suffix) {
                erasure.outbox += 1;
                erasure.rows.push(position);
            }
        }
        Ok(erasure)
    }

    /// Removes what [`Store::find`] found, durably. The chunks holding its outputs are
    /// written again with the other rows they have left.
    pub fn erase(&self, erasure: &Erasure) -> Result<()> {
        let mut batch = sled::Batch::default();
        for key in &erasure.keys {
            batch.remove(key.as_slice());
        }
        let erased: BTreeSet<u64> = erasure.rows.iter().copied().collect();
        let mut unpublished = self.unpublished();
        let chunks: BTreeSet<u64> = erased
            .iter()
            .filter_map(|position| unpublished.chunk_of(*position).map(|(key, _)| key))
            .collect();
        for key in chunks {
            let left = &unpublished.chunks[&key];
            let mut rewritten = Vec::new();
            if let Some(chunk) = self.tree.get(outbox_key(key))? {
                let kept = |position| left.contains(&position) && !erased.contains(&position);
                for row in chunk_rows(&chunk, kept) {
                    if let (position, Some(row)) = row? {
                        row.encode_into(position, &mut rewritten);
                    }
                }
            }
            if rewritten.is_empty() {
                batch.remove(&outbox_key(key));
            } else {
                batch.insert(&outbox_key(key), rewritten);
            }
        }
        self.tree.apply_batch(batch)?;
        for position in erased {
            unpublished.remove(position);
        }
        drop(unpublished);
        self.flush()
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ventana_core::{Channel, ConversationKey};

    fn key(n: u32) -> ConversationKey {
        ConversationKey::new(Channel::WhatsApp, "acme", "1", n.to_string())
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(1_772_445_600 + seconds)
    }

    #[test]
    fn a_commit_is_read_back_and_indexes_move() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.checkpoint().unwrap(), 0);
        let conversation = Conversation::new(key(1));
        let token = key(1).token();
        let first = Indexed {
            deadline: Some(at(100)),
            window_ends_at: Some(at(200)),
        };
        let mut commit = Commit::new();
        commit.put_state(&conversation, Indexed::default(), first);
        commit.push_outbox(
            7,
            &OutboxRow {
                subject: "s".into(),
                id: "i".into(),
                payload: bytes::Bytes::from_static(b"{}"),
            },
        );
        commit.checkpoint(42);
        store.commit(commit).unwrap();
        assert_eq!(store.checkpoint().unwrap(), 42);
        assert_eq!(store.load(token).unwrap(), Some(conversation.clone()));
        assert_eq!(store.due(at(99), 10).unwrap(), vec![]);
        assert_eq!(store.due(at(100), 10).unwrap(), vec![(at(100), token)]);
        assert_eq!(
            store.expiring((at(0), None), at(300), 10).unwrap(),
            vec![(at(200), token)]
        );
        let rows = store.outbox(10).unwrap();
        assert_eq!(rows[0].0, 7);
        assert_eq!(rows[0].1.payload, &b"{}"[..]);

        let second = Indexed {
            deadline: Some(at(150)),
            window_ends_at: None,
        };
        let mut commit = Commit::new();
        commit.put_state(&conversation, first, second);
        store.commit(commit).unwrap();
        assert_eq!(store.next_due().unwrap(), Some(at(150)));
        assert_eq!(store.expiring((at(0), None), at(300), 10).unwrap(), vec![]);
        assert_eq!(store.outbox_after(Some(6), 10).unwrap().len(), 1);
        assert!(store.outbox_after(Some(7), 10).unwrap().is_empty());
        store.remove_outbox(&[7]).unwrap();
        assert_eq!(store.outbox_len(), 0);
    }

    #[test]
    fn plain_writes_store_what_a_commit_stores() {
        let (atomic, plain) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (atomic, plain) = (
            Store::open(atomic.path(), 1 << 20).unwrap(),
            Store::open(plain.path(), 1 << 20).unwrap(),
        );
        let conversations: Vec<Conversation> = (0..3).map(|n| Conversation::new(key(n))).collect();
        let moves = [
            (
                Indexed::default(),
                Indexed {
                    deadline: Some(at(10)),
                    window_ends_at: Some(at(20)),
                },
            ),
            (
                Indexed {
                    deadline: Some(at(10)),
                    window_ends_at: Some(at(20)),
                },
                Indexed {
                    deadline: Some(at(30)),
                    window_ends_at: None,
                },
            ),
        ];
        for (before, after) in moves {
            let mut commit = Commit::new();
            for conversation in &conversations {
                commit.put_state(conversation, before, after);
            }
            commit.checkpoint(9);
            atomic.commit(commit).unwrap();
            plain
                .put_states(conversations.iter().map(|c| (c, before, after)))
                .unwrap();
            plain.set_checkpoint(9).unwrap();
        }
        for store in [&atomic, &plain] {
            assert_eq!(store.checkpoint().unwrap(), 9);
            assert_eq!(store.due(at(100), 10).unwrap().len(), 3);
            assert_eq!(store.next_due().unwrap(), Some(at(30)));
            assert!(
                store
                    .expiring((at(0), None), at(100), 10)
                    .unwrap()
                    .is_empty()
            );
        }
        let rows = |store: &Store| -> Vec<(sled::IVec, sled::IVec)> {
            store.tree.iter().map(|row| row.unwrap()).collect()
        };
        assert_eq!(rows(&atomic), rows(&plain));
    }

    fn row(n: u64, token: ConversationToken) -> OutboxRow {
        OutboxRow {
            subject: format!("ventana.out.state_changed.{token}"),
            id: format!("out-{n}"),
            payload: format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(300)).into(),
        }
    }

    /// Commits rows `0..count` of conversation 1 (even) and 2 (odd), `per_commit` at a time,
    /// at positions 10, 20, ...; returns what was pushed.
    fn commit_rows(store: &Store, count: u64, per_commit: u64) -> Vec<(u64, OutboxRow)> {
        let mut pushed = Vec::new();
        for first in (0..count).step_by(per_commit as usize) {
            let mut commit = Commit::new();
            for n in first..(first + per_commit).min(count) {
                let row = row(n, key(1 + (n % 2) as u32).token());
                commit.push_outbox(10 * (n + 1), &row);
                pushed.push((10 * (n + 1), row));
            }
            store.commit(commit).unwrap();
        }
        pushed
    }

    /// The store as opening its directory again finds it (without reopening the directory:
    /// sled releases its lock on it a moment after the last handle is dropped).
    fn reopened(store: Store) -> Store {
        let Store { db, .. } = store;
        Store::on(db, Path::new("reopened")).unwrap()
    }

    fn chunk_keys(store: &Store) -> usize {
        store.tree.scan_prefix([OUTBOX]).count()
    }

    #[test]
    fn outbox_rows_are_stored_in_chunks_and_read_back_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let pushed = commit_rows(&store, 100, 40);
        let chunks = chunk_keys(&store);
        assert!((5..=20).contains(&chunks), "{chunks} chunks for 100 rows");
        assert_eq!(store.outbox(1000).unwrap(), pushed);
        assert_eq!(store.outbox_len(), 100);
        // From any position, in pages, without a row twice or left out.
        for after in [None, Some(5), Some(10), Some(155), Some(999), Some(1000)] {
            let mut read = Vec::new();
            let mut cursor = after;
            loop {
                let page = store.outbox_after(cursor, 7).unwrap();
                let Some(last) = page.last() else { break };
                cursor = Some(last.0);
                read.extend(page);
            }
            let expected: Vec<_> = pushed
                .iter()
                .filter(|(position, _)| after.is_none_or(|after| *position > after))
                .cloned()
                .collect();
            assert_eq!(read, expected, "after {after:?}");
        }
        // A removed row is gone at once; its chunk when its last row is.
        let (first_half, second_half) = pushed.split_at(50);
        let positions =
            |rows: &[(u64, OutboxRow)]| rows.iter().map(|(p, _)| *p).collect::<Vec<_>>();
        store.remove_outbox(&positions(first_half)).unwrap();
        store.remove_outbox(&positions(first_half)).unwrap();
        store.remove_outbox(&[1, 15, u64::MAX]).unwrap();
        assert_eq!(store.outbox(1000).unwrap(), second_half);
        assert_eq!(store.outbox_len(), 50);
        let left = chunk_keys(&store);
        assert!(left < chunks && left > 0, "{left} of {chunks} chunks left");
        // Reopened, a chunk partly removed comes back whole (those rows are published:
        // their partition's mark skips them); the chunks removed stay removed.
        let store = reopened(store);
        let back = store.outbox(1000).unwrap();
        assert_eq!(back[back.len() - 50..], *second_half);
        assert!(back.len() < 50 + 20, "{} rows back", back.len());
        store.remove_outbox(&positions(&back)).unwrap();
        assert_eq!(chunk_keys(&store), 0);
        assert_eq!(store.outbox_len(), 0);
    }

    #[test]
    fn a_layout_2_outbox_is_moved_into_chunks_as_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<(u64, OutboxRow)> =
            (0..60).map(|n| (100 + n, row(n, key(3).token()))).collect();
        let db = sled::open(dir.path()).unwrap();
        {
            let tree = db.open_tree("ventana").unwrap();
            tree.insert(VERSION, &[2u8][..]).unwrap();
            tree.insert(CHECKPOINT, &7u64.to_be_bytes()[..]).unwrap();
            for (position, row) in &rows {
                // Layout 2: subject and id with their lengths, then the payload.
                let mut value = Vec::new();
                for part in [row.subject.as_bytes(), row.id.as_bytes()] {
                    value.extend_from_slice(&(part.len() as u32).to_be_bytes());
                    value.extend_from_slice(part);
                }
                value.extend_from_slice(&row.payload);
                tree.insert(outbox_key(*position), value).unwrap();
            }
        }
        let store = Store::on(db, dir.path()).unwrap();
        assert_eq!(store.tree.get(VERSION).unwrap().unwrap(), [LAYOUT_VERSION]);
        assert_eq!(store.checkpoint().unwrap(), 7);
        assert_eq!(store.outbox(1000).unwrap(), rows);
        assert!(chunk_keys(&store) < 10, "{} chunks", chunk_keys(&store));
    }

    #[test]
    fn a_layout_3_store_is_upgraded_as_it_opens_and_reads_its_format_2_states() {
        // A state as layout 3 stored it (format 2): the first of the samples the state
        // codec's test reads.
        let hex = include_str!("../../../tests/tests/data/state-format-2.hex")
            .lines()
            .next()
            .unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let conversation = decode_state(&bytes).unwrap();
        let token = conversation.key().token();
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        {
            let tree = db.open_tree("ventana").unwrap();
            tree.insert(VERSION, &[3u8][..]).unwrap();
            tree.insert(state_key(token), bytes).unwrap();
        }
        let store = Store::on(db, dir.path()).unwrap();
        assert_eq!(store.tree.get(VERSION).unwrap().unwrap(), [LAYOUT_VERSION]);
        assert_eq!(store.load(token).unwrap(), Some(conversation));
    }

    #[test]
    fn erasing_a_conversation_rewrites_the_chunks_its_outputs_share() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let pushed = commit_rows(&store, 40, 40);
        let (one, two) = (key(1).token(), key(2).token());
        let found = store.find(one).unwrap();
        assert_eq!((found.state, found.outbox), (false, 20));
        store.erase(&found).unwrap();
        let others: Vec<_> = pushed
            .iter()
            .filter(|(_, row)| row.subject.ends_with(&two.to_string()))
            .cloned()
            .collect();
        assert_eq!(store.outbox(1000).unwrap(), others);
        let store = reopened(store);
        assert_eq!(store.outbox(1000).unwrap(), others);
        assert_eq!(store.find(one).unwrap().outbox, 0);
        assert_eq!(store.find(two).unwrap().outbox, 20);
    }

    #[test]
    fn instants_before_1970_sort_first() {
        assert!(
            instant_bytes(Timestamp::from_unix_seconds(-5))
                < instant_bytes(Timestamp::from_unix_seconds(5))
        );
    }

    #[test]
    fn pagination_continues_after_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let mut commit = Commit::new();
        for n in 0..5 {
            let indexed = Indexed {
                deadline: None,
                window_ends_at: Some(at(100)),
            };
            commit.put_state(&Conversation::new(key(n)), Indexed::default(), indexed);
        }
        store.commit(commit).unwrap();
        let page = store.expiring((at(0), None), at(1000), 3).unwrap();
        assert_eq!(page.len(), 3);
        let rest = store
            .expiring((page[2].0, Some(page[2].1)), at(1000), 3)
            .unwrap();
        assert_eq!(rest.len(), 2);
        assert!(rest.iter().all(|entry| !page.contains(entry)));
    }

    #[test]
    fn another_layout_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("ventana")
            .unwrap()
            .insert(VERSION, &[99u8][..])
            .unwrap();
        let error = Store::on(db, dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("layout 99") && error.contains("rebuild"),
            "{error}"
        );
    }
}
