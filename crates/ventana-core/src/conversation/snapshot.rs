//! A conversation as seen from outside: its view, and what may be sent now.

use serde::{Deserialize, Serialize};

use super::Conversation;
use crate::decision::{MessagingType, Verdict};
use crate::event::{MessageKind, Origin, Outbound, Sender, Tag};
use crate::key::ConversationKey;
use crate::policy::Policy;
use crate::time::Timestamp;
use crate::view::View;

/// What may be sent now (a snapshot's `allowed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Allowed {
    /// A free-form message inside the 24 hours (R2).
    Message,
    /// A human agent's message with the `human_agent` tag (R7).
    HumanAgent,
    /// A template (R6, R8).
    Template,
    /// A comment's one private reply (R11).
    PrivateReply,
    /// A public comment reply (R10).
    CommentReply,
    /// A message with this tag (R8).
    Tag(Tag),
}

impl Allowed {
    /// The name in a snapshot's `allowed` list (a tag by its own name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::HumanAgent => "human_agent",
            Self::Template => "template",
            Self::PrivateReply => "private_reply",
            Self::CommentReply => "comment_reply",
            Self::Tag(tag) => tag.as_str(),
        }
    }

    /// Reads a name [`Allowed::as_str`] wrote.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "message" => Some(Self::Message),
            "human_agent" => Some(Self::HumanAgent),
            "template" => Some(Self::Template),
            "private_reply" => Some(Self::PrivateReply),
            "comment_reply" => Some(Self::CommentReply),
            _ => Tag::parse(text).map(Self::Tag),
        }
    }
}

/// A conversation as seen from outside at an instant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Which conversation.
    pub conversation: ConversationKey,
    /// The instant it shows (the conversation's clock, or the instant asked about).
    pub at: Option<Timestamp>,
    /// Its state and window.
    pub view: View,
    /// When the customer last wrote, by the platform's clock.
    pub last_customer_at: Option<Timestamp>,
    /// What may be sent at `at`.
    pub allowed: Vec<Allowed>,
    /// How many events it has folded.
    pub events: u64,
    /// The id of the last event folded.
    pub last_event_id: Option<String>,
}

impl Conversation {
    /// What may be sent at the clock (a snapshot's `allowed`).
    pub fn allowed(&self, policy: &Policy) -> Vec<Allowed> {
        let Some(t) = self.clock else {
            return Vec::new();
        };
        let probe = |sender, kind, tag| Outbound {
            sender,
            kind,
            tag,
            comment_id: None,
            origin: Origin::Request,
        };
        let accepted_as = |out: &Outbound| match self.decide(out, t, policy) {
            Verdict::Accepted(a) => Some(a),
            _ => None,
        };
        let mut allowed = Vec::new();
        // What a DM would become is listed as that (§1.4 point 9): in the private-reply
        // band it is `private_reply`, below, not `message`.
        if accepted_as(&probe(Sender::Agent, MessageKind::Message, None))
            .is_some_and(|a| a.messaging_type == MessagingType::Response)
        {
            allowed.push(Allowed::Message);
        }
        if accepted_as(&probe(
            Sender::Agent,
            MessageKind::Message,
            Some(Tag::HumanAgent),
        ))
        .is_some_and(|a| a.tag == Some(Tag::HumanAgent))
        {
            allowed.push(Allowed::HumanAgent);
        }
        if accepted_as(&probe(Sender::Automation, MessageKind::Template, None)).is_some() {
            allowed.push(Allowed::Template);
        }
        if let Some(ch) = policy.channel(&self.key.channel) {
            if !self.closed && self.comments.in_force(ch, t).any(|c| !c.used) {
                allowed.push(Allowed::PrivateReply);
            }
        }
        if self.key.channel.has_comments() {
            allowed.push(Allowed::CommentReply);
        }
        if let Some(ch) = policy.channel(&self.key.channel) {
            for tag_policy in &ch.tags {
                let tag = Some(tag_policy.tag);
                if accepted_as(&probe(Sender::Automation, MessageKind::Message, tag))
                    .is_some_and(|a| a.tag == tag)
                {
                    allowed.push(Allowed::Tag(tag_policy.tag));
                }
            }
        }
        allowed
    }

    /// The conversation as seen from outside at its own clock.
    pub fn snapshot(&self, policy: &Policy) -> Snapshot {
        Snapshot {
            conversation: ConversationKey::clone(&self.key),
            at: self.clock,
            view: self.published,
            last_customer_at: self.last_customer_at,
            allowed: self.allowed(policy),
            events: self.events,
            last_event_id: (!self.last_event_id.is_empty()).then(|| self.last_event_id.clone()),
        }
    }
}
