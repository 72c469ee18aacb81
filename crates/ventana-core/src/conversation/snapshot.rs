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
    Message,
    HumanAgent,
    Template,
    PrivateReply,
    CommentReply,
    Tag(Tag),
}

impl Allowed {
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
    pub conversation: ConversationKey,
    pub at: Option<Timestamp>,
    pub view: View,
    pub last_customer_at: Option<Timestamp>,
    pub allowed: Vec<Allowed>,
    pub events: u64,
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

    pub fn snapshot(&self, policy: &Policy) -> Snapshot {
        Snapshot {
            conversation: self.key.clone(),
            at: self.clock,
            view: self.published,
            last_customer_at: self.last_customer_at,
            allowed: self.allowed(policy),
            events: self.events,
            last_event_id: (!self.last_event_id.is_empty()).then(|| self.last_event_id.clone()),
        }
    }
}
