//! What a conversation remembers, and how it forgets (docs/rules.md §1.4 point 4).
//!
//! Memory is bounded by count, never by age, wherever a rule may need a fact however old:
//! the last [`MEMORY`] outbound messages (for their delivery statuses, R13) and the last
//! [`MEMORY`] comments (for their one private reply, R11). Only event-id dedupe (R14) is
//! bounded by age, as the rule says: ids are remembered for [`DEDUPE_HORIZON`].

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use crate::event::Status;
use crate::time::{Span, Timestamp};

/// R14: how long an event id is remembered for dedupe.
pub const DEDUPE_HORIZON: Span = Span::from_days(7);

/// How many outbound messages, and how many comments, a conversation remembers at least.
pub const MEMORY: usize = 64;

/// Appends `item`, dropping the oldest items beyond [`MEMORY`].
pub(crate) fn push_bounded<T>(items: &mut VecDeque<T>, item: T) {
    items.push_back(item);
    while items.len() > MEMORY {
        items.pop_front();
    }
}

/// The 128-bit hash an id is remembered by (an event's for dedupe, an outbound message's
/// for its statuses). Serialised as the number, or as its sixteen bytes in a binary format
/// (`fixed.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct IdHash(u128);

impl IdHash {
    pub(crate) fn of(id: &str) -> Self {
        Self(xxh3_128(id.as_bytes()))
    }
}

crate::fixed::fixed_width_serde!(IdHash, u128);

/// R14: the ids (128-bit hashes) of the events applied within [`DEDUPE_HORIZON`].
///
/// Lookups are logarithmic, so a conversation with a very long log stays linear to fold.
/// Entries past the horizon are ignored at once and swept out in bulk — when the map has
/// grown by a quarter since the last sweep, or a horizon after it — so each event costs
/// amortised O(log n) and the map holds at most about 1.25 times the ids of one horizon.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SeenIds {
    /// Id hash → the decision time it was applied at.
    ids: BTreeMap<IdHash, Timestamp>,
    /// How many ids the last sweep kept.
    kept: u32,
    swept_at: Option<Timestamp>,
}

impl SeenIds {
    #[cfg(test)]
    fn contains(&self, id: IdHash, now: Timestamp) -> bool {
        self.ids
            .get(&id)
            .is_some_and(|at| now.since(*at) < DEDUPE_HORIZON)
    }

    /// Records `id` as applied at `now`, unless it was applied within the horizon: then
    /// nothing changes and the answer is false. One search of the tree serves both.
    pub(crate) fn first_time(&mut self, id: IdHash, now: Timestamp) -> bool {
        match self.ids.entry(id) {
            Entry::Occupied(mut seen) => {
                if now.since(*seen.get()) < DEDUPE_HORIZON {
                    return false;
                }
                seen.insert(now);
            }
            Entry::Vacant(slot) => {
                slot.insert(now);
            }
        }
        let kept = self.kept as usize;
        let grown = self.ids.len() > kept + kept / 4 + 16;
        let stale = self
            .swept_at
            .is_none_or(|at| now.since(at) >= DEDUPE_HORIZON);
        if grown || stale {
            self.ids.retain(|_, at| now.since(*at) < DEDUPE_HORIZON);
            self.kept = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
            self.swept_at = Some(now);
        }
        true
    }
}

/// An outbound message a delivery status may refer to (R13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Message {
    /// The message id's hash.
    pub(crate) id: IdHash,
    /// When ventana decided it (or saw its echo, or released it from a hold); for a message
    /// ventana never decided, when the first status for it came (§1.4 point 5).
    pub(crate) at: Timestamp,
    /// The furthest status the platform reported.
    pub(crate) status: Option<Status>,
    /// ventana rejected it (or its hold expired): its `delivery_failed` is published, and a
    /// platform `failed` for it (sent anyway, outside ventana) publishes no second one.
    pub(crate) rejected: bool,
}

/// The outbound messages a conversation remembers: the last [`MEMORY`] decided or echoed,
/// and, apart (so that statuses for strangers cannot push them out), the last [`MEMORY`]
/// known only from their statuses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Messages {
    decided: VecDeque<Message>,
    undecided: VecDeque<Message>,
}

impl Messages {
    /// Records that message `id` was decided (or echoed, or released) at `at`, and whether
    /// that decision was a rejection.
    pub(crate) fn decided(&mut self, id: IdHash, at: Timestamp, rejected: bool) {
        let earlier = take(&mut self.decided, id).or_else(|| take(&mut self.undecided, id));
        let status = earlier.and_then(|m| m.status);
        push_bounded(
            &mut self.decided,
            Message {
                id,
                at,
                status,
                rejected,
            },
        );
    }

    /// The record a delivery status for `id` updates: made, as first seen at `now`, for a
    /// message ventana never decided.
    pub(crate) fn reported(&mut self, id: IdHash, now: Timestamp) -> &mut Message {
        if let Some(i) = self.decided.iter().position(|m| m.id == id) {
            return &mut self.decided[i];
        }
        match self.undecided.iter().position(|m| m.id == id) {
            Some(i) => &mut self.undecided[i],
            None => {
                push_bounded(
                    &mut self.undecided,
                    Message {
                        id,
                        at: now,
                        status: None,
                        rejected: false,
                    },
                );
                self.undecided.back_mut().expect("just pushed")
            }
        }
    }
}

fn take(messages: &mut VecDeque<Message>, id: IdHash) -> Option<Message> {
    let i = messages.iter().position(|m| m.id == id)?;
    messages.remove(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timestamp = Timestamp::from_unix_seconds(1_772_445_600);

    /// An id hash given by its number.
    fn id(n: u128) -> IdHash {
        IdHash(n)
    }

    #[test]
    fn seen_ids_expire_after_the_horizon_and_are_swept() {
        let mut seen = SeenIds::default();
        assert!(seen.first_time(id(1), T));
        assert!(
            !seen.first_time(id(1), T.plus(Span::from_days(1))),
            "a duplicate"
        );
        assert!(seen.contains(id(1), T.plus(DEDUPE_HORIZON).minus(Span::from_nanos(1))));
        assert!(!seen.contains(id(1), T.plus(DEDUPE_HORIZON)));
        for n in 2..1_000 {
            seen.first_time(
                id(n),
                T.plus(DEDUPE_HORIZON).plus(Span::from_seconds(n as i64)),
            );
        }
        assert!(!seen.ids.contains_key(&id(1)), "swept");
        assert!(seen.contains(id(999), T.plus(DEDUPE_HORIZON).plus(Span::from_days(1))));
    }

    #[test]
    fn messages_keep_the_last_64_decided_however_many_strangers_are_reported() {
        let mut messages = Messages::default();
        for n in 0..100 {
            messages.decided(id(n), T, false);
        }
        for n in 1_000..2_000 {
            messages.reported(id(n), T);
        }
        assert_eq!(messages.decided.len(), MEMORY);
        assert_eq!(messages.decided.front().map(|m| m.id), Some(id(36)));
        assert_eq!(messages.undecided.len(), MEMORY);
        // Deciding a message known from a status keeps the status it had.
        messages.reported(id(5_000), T).status = Some(Status::Delivered);
        messages.decided(id(5_000), T.plus(Span::from_seconds(1)), false);
        assert_eq!(
            messages.reported(id(5_000), T).status,
            Some(Status::Delivered)
        );
    }
}
