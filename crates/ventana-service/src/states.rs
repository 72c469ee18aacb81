//! Decoded conversation states in memory, in front of sled.
//!
//! Loading a state from sled (a tree search, then decoding) costs far more than folding an
//! event into it, and support traffic comes back to the same conversations within minutes.
//! So the consumer keeps the states it has just committed here, the least recently folded
//! dropped first, and reads them back from here before sled; the API reads here first too.
//!
//! Only the consumer puts states in, and only states it has committed to sled; it takes a
//! state out while folding it. So a state read here is always the one sled holds: a batch
//! that fails to commit leaves the states it took out of the cache, to be read from sled
//! again.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;
use ventana_core::{Conversation, ConversationToken};

#[derive(Debug)]
pub struct States {
    /// `None` when the cache is turned off (`--states-cached 0`).
    cached: Option<Mutex<LruCache<ConversationToken, Conversation>>>,
}

impl States {
    /// Keeps at most `capacity` states (none when 0).
    pub fn new(capacity: usize) -> Self {
        Self {
            cached: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        }
    }

    fn cached(
        &self,
    ) -> Option<std::sync::MutexGuard<'_, LruCache<ConversationToken, Conversation>>> {
        // A panic while holding the lock cannot leave a half-updated state behind: every
        // operation below is one call on the map.
        self.cached
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Takes the state out to fold it (it comes back with [`States::committed`]).
    pub fn take(&self, token: ConversationToken) -> Option<Conversation> {
        self.cached()?.pop(&token)
    }

    /// A copy of the state, for a reader.
    pub fn get(&self, token: ConversationToken) -> Option<Conversation> {
        self.cached()?.get(&token).cloned()
    }

    /// States just committed to sled.
    pub fn committed(&self, states: impl IntoIterator<Item = Conversation>) {
        if let Some(mut cached) = self.cached() {
            for conversation in states {
                cached.put(conversation.key().token(), conversation);
            }
        }
    }

    /// How many states are held.
    #[allow(clippy::len_without_is_empty)] // a gauge's figure, not a collection
    pub fn len(&self) -> usize {
        self.cached().map_or(0, |c| c.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ventana_core::{Channel, ConversationKey};

    fn conversation(n: u32) -> Conversation {
        Conversation::new(ConversationKey::new(
            Channel::WhatsApp,
            "acme",
            "phone",
            n.to_string(),
        ))
    }

    #[test]
    fn holds_what_was_committed_up_to_its_capacity_and_hands_it_out_once_to_fold() {
        let states = States::new(2);
        states.committed((0..3).map(conversation));
        assert_eq!(states.len(), 2);
        let token = |n| conversation(n).key().token();
        assert_eq!(
            states.get(token(0)),
            None,
            "the least recently committed went first"
        );
        assert_eq!(states.get(token(2)), Some(conversation(2)));
        assert_eq!(states.take(token(1)), Some(conversation(1)));
        assert_eq!(
            states.get(token(1)),
            None,
            "taken to fold: read from sled meanwhile"
        );
        let off = States::new(0);
        off.committed([conversation(0)]);
        assert_eq!((off.len(), off.get(token(0))), (0, None));
    }
}
