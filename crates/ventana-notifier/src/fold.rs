//! The one fold shared by `ventana replay` and the live service: an event in, outputs out.

use rustc_hash::FxHashMap;
use ventana_core::{
    Applied, Conversation, ConversationKey, ConversationToken, Effect, Event, Invalid, Policy,
    Snapshot, Timestamp, validate,
};

use crate::output::Output;
use crate::render::render;

/// Folds `event` into `conversation` (whose key it must have) and appends its outputs.
/// The caller has [`validate`]d the event. `token` is the conversation's
/// ([`ConversationKey::token`]): callers have it from finding the conversation, and the
/// outputs' ids are made of it.
pub fn fold_event(
    conversation: &mut Conversation,
    token: ConversationToken,
    event: &Event,
    policy: &Policy,
    out: &mut Vec<Output>,
) -> Applied {
    let mut effects: Vec<Effect<'_>> = Vec::new();
    let applied = conversation.apply(event, policy, &mut effects);
    render(
        conversation.shared_key(),
        token,
        Some(event),
        &effects,
        policy,
        out,
    );
    applied
}

/// Fires every deadline of `conversation` (whose token is `token`) up to `to` and appends
/// the outputs.
pub fn advance_to(
    conversation: &mut Conversation,
    token: ConversationToken,
    to: Timestamp,
    policy: &Policy,
    out: &mut Vec<Output>,
) {
    let mut effects = Vec::new();
    conversation.advance(to, policy, &mut effects);
    render(
        conversation.shared_key(),
        token,
        None,
        &effects,
        policy,
        out,
    );
}

/// Every conversation of a log, folded in memory (what `ventana replay` runs).
#[derive(Debug)]
pub struct Fold {
    policy: Policy,
    /// Keyed by token: a 128-bit hash is cheaper to hash and compare than four strings.
    /// Boxed: moving a pointer, not a state, when the map grows.
    conversations: FxHashMap<ConversationToken, Box<Conversation>>,
}

impl Fold {
    /// An empty fold deciding under `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            conversations: FxHashMap::default(),
        }
    }

    /// The policy it decides under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Validates and folds one event, appending its outputs.
    pub fn apply(&mut self, event: &Event, out: &mut Vec<Output>) -> Result<Applied, Invalid> {
        validate(event, &self.policy)?;
        let token = event.conversation.token();
        let conversation = self
            .conversations
            .entry(token)
            .or_insert_with(|| Box::new(Conversation::new(event.conversation.clone())));
        Ok(fold_event(conversation, token, event, &self.policy, out))
    }

    /// Fires every deadline at or before `to` in every conversation, conversation by
    /// conversation in key order.
    pub fn advance_all(&mut self, to: Timestamp, out: &mut Vec<Output>) {
        let mut conversations: Vec<(&ConversationToken, &mut Box<Conversation>)> =
            self.conversations.iter_mut().collect();
        conversations.sort_by_cached_key(|(_, c)| sort_key(c.key()));
        for (token, conversation) in conversations {
            advance_to(conversation, *token, to, &self.policy, out);
        }
    }

    /// The conversation with `key`, if it has seen an event.
    pub fn conversation(&self, key: &ConversationKey) -> Option<&Conversation> {
        self.conversations.get(&key.token()).map(|c| &**c)
    }

    /// Every conversation, in no particular order.
    pub fn conversations(&self) -> impl Iterator<Item = &Conversation> {
        self.conversations.values().map(|c| &**c)
    }

    /// Puts a conversation (e.g. decoded from a snapshot) in place of any with its key.
    pub fn restore(&mut self, conversation: Conversation) {
        self.conversations
            .insert(conversation.key().token(), Box::new(conversation));
    }

    /// Snapshots of every conversation, sorted by conversation.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        let mut snapshots: Vec<Snapshot> = self
            .conversations
            .values()
            .map(|c| c.snapshot(&self.policy))
            .collect();
        snapshots.sort_by_cached_key(|s| sort_key(&s.conversation));
        snapshots
    }

    /// How many conversations it holds.
    pub fn len(&self) -> usize {
        self.conversations.len()
    }

    /// True before the first event.
    pub fn is_empty(&self) -> bool {
        self.conversations.is_empty()
    }
}

/// Conversations sort by their printed fields: channel, account, channel id, contact id.
fn sort_key(key: &ConversationKey) -> (String, String, String, String) {
    (
        key.channel.to_string(),
        key.account.clone(),
        key.channel_id.clone(),
        key.contact_id.clone(),
    )
}
