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
//! | `o` + sequence | an outbox row: subject, output id, payload |
//! | `l` + sequence | a bad input the DLQ refused to store even by reference: its reason |
//!
//! Instants are stored as big-endian with the sign bit flipped, so byte order is time order.
//! sled is blocking: callers run these methods off the async executor.
#![forbid(unsafe_code)]

use std::path::Path;

use thiserror::Error;
use ventana_core::{Conversation, ConversationToken, Policy, Timestamp};
use ventana_wire::codec::{CodecError, decode_state, encode_state};

/// Bumped whenever the key layout or the state format ([`ventana_wire::codec::STATE_FORMAT`])
/// changes incompatibly, so that a directory of another version is refused at start with
/// the way out (rebuild from the log) rather than failing on its first state. Layout 2:
/// state format 2 (memory bounded by count, docs/rules.md §1.4 point 4).
pub const LAYOUT_VERSION: u8 = 2;

const VERSION: &[u8] = b"v";
const CHECKPOINT: &[u8] = b"c";
const STATE: u8 = b's';
const DEADLINE: u8 = b'd';
const WINDOW_END: u8 = b'w';
const OUTBOX: u8 = b'o';
const DLQ_REFUSED: u8 = b'l';

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
    pub payload: Vec<u8>,
}

impl OutboxRow {
    fn encode(&self) -> Vec<u8> {
        let mut bytes =
            Vec::with_capacity(8 + self.subject.len() + self.id.len() + self.payload.len());
        for part in [self.subject.as_bytes(), self.id.as_bytes()] {
            bytes.extend_from_slice(&(part.len() as u32).to_be_bytes());
            bytes.extend_from_slice(part);
        }
        bytes.extend_from_slice(&self.payload);
        bytes
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = || StoreError::Corrupt("outbox row".into());
        let mut rest = bytes;
        let mut part = || -> Result<String> {
            let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
            let len = u32::from_be_bytes(*len) as usize;
            let (text, tail) = tail.split_at_checked(len).ok_or_else(corrupt)?;
            rest = tail;
            String::from_utf8(text.to_vec()).map_err(|_| corrupt())
        };
        let subject = part()?;
        let id = part()?;
        Ok(Self {
            subject,
            id,
            payload: rest.to_vec(),
        })
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

    /// Queues an output for publishing; `sequence` orders the outbox.
    pub fn push_outbox(&mut self, sequence: u64, row: &OutboxRow) {
        let mut key = vec![OUTBOX];
        key.extend_from_slice(&sequence.to_be_bytes());
        self.batch.insert(key, row.encode());
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
}

#[derive(Clone, Debug)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
}

impl Store {
    /// Opens (or creates) the store in `path` with a page cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let tree = db.open_tree("ventana")?;
        match tree.get(VERSION)? {
            Some(found) if found.as_ref() == [LAYOUT_VERSION] => {}
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
        Ok(Self { db, tree })
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
        self.tree.apply_batch(commit.batch)?;
        Ok(())
    }

    /// Stores conversations (each with its index entries as stored and as they are now) with
    /// plain inserts, not atomically: for a projection built offline, which nothing reads
    /// before it is complete. A write inside sled's atomic batch costs more than a plain
    /// insert, and one batch of a whole rebuild held sled's memory until it ended (README,
    /// "Performance": Rebuild).
    pub fn put_states<'c>(
        &self,
        states: impl IntoIterator<Item = (&'c Conversation, Indexed, Indexed)>,
    ) -> Result<()> {
        for (conversation, before, after) in states {
            let mut outcome = Ok(None);
            state_writes(conversation, before, after, |key, value| {
                if outcome.is_ok() {
                    outcome = match value {
                        Some(value) => self.tree.insert(key, value),
                        None => self.tree.remove(key),
                    };
                }
            });
            outcome?;
        }
        Ok(())
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
            None => vec![OUTBOX],
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(after) => {
                let mut key = vec![OUTBOX];
                key.extend_from_slice(&(after + 1).to_be_bytes());
                key
            }
        };
        let mut rows = Vec::new();
        for entry in self.tree.range(start..[OUTBOX + 1].to_vec()).take(limit) {
            let (key, value) = entry?;
            let sequence = u64::from_be_bytes(
                key[1..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("outbox key".into()))?,
            );
            rows.push((sequence, OutboxRow::decode(&value)?));
        }
        Ok(rows)
    }

    /// Removes published outbox rows.
    pub fn remove_outbox(&self, sequences: &[u64]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for sequence in sequences {
            let mut key = vec![OUTBOX];
            key.extend_from_slice(&sequence.to_be_bytes());
            batch.remove(key);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// How many outputs wait to be published.
    pub fn outbox_len(&self) -> usize {
        self.tree.scan_prefix([OUTBOX]).count()
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
        for entry in self.tree.scan_prefix([OUTBOX]) {
            let (key, value) = entry?;
            if OutboxRow::decode(&value)?.subject.ends_with(&suffix) {
                erasure.outbox += 1;
                erasure.keys.push(key.to_vec());
            }
        }
        Ok(erasure)
    }

    /// Removes what [`Store::find`] found, durably.
    pub fn erase(&self, erasure: &Erasure) -> Result<()> {
        let mut batch = sled::Batch::default();
        for key in &erasure.keys {
            batch.remove(key.as_slice());
        }
        self.tree.apply_batch(batch)?;
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
                payload: b"{}".to_vec(),
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
        assert_eq!(rows[0].1.payload, b"{}");

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
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("ventana")
                .unwrap()
                .insert(VERSION, &[99u8][..])
                .unwrap();
            db.flush().unwrap();
        }
        let error = Store::open(dir.path(), 1 << 20).unwrap_err().to_string();
        assert!(
            error.contains("layout 99") && error.contains("rebuild"),
            "{error}"
        );
    }
}
