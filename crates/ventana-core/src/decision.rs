//! The verdict on one outbound message (docs/rules.md §1.1). Rejections are values, not errors.

use serde::{Deserialize, Serialize};

use crate::event::Tag;
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Accepted(Acceptance),
    /// R11: kept until the customer accepts the conversation, or failed at `until`.
    Held {
        until: Timestamp,
    },
    Rejected(Rejection),
}

/// How an accepted message must be sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    pub messaging_type: MessagingType,
    pub tag: Option<Tag>,
    pub comment_id: Option<String>,
    /// The end of the window the message was accepted under; `None` for templates, comment
    /// replies, tags outside a window and unrestricted channels.
    pub window_ends_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessagingType {
    Response,
    MessageTag,
    Template,
    PrivateReply,
    CommentReply,
}

impl MessagingType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Response => "response",
            Self::MessageTag => "message_tag",
            Self::Template => "template",
            Self::PrivateReply => "private_reply",
            Self::CommentReply => "comment_reply",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Response,
            Self::MessageTag,
            Self::Template,
            Self::PrivateReply,
            Self::CommentReply,
        ]
        .into_iter()
        .find(|m| m.as_str() == text)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub reason: Reason,
    /// When the window that would have allowed the message closed, where there was one.
    pub closed_at: Option<Timestamp>,
    /// R13: `closed_at` is where a platform window error cut the window, not its end.
    pub cut_by_platform: bool,
}

/// Why a message is not delivered (policy decisions and platform reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Reason {
    NoCustomerMessage,
    WindowExpired,
    ExtendedWindowExpired,
    HumanAgentRequiresHuman,
    TagNotAllowed,
    TagRateLimited,
    TemplateNotSupported,
    PrivateReplyUsed,
    PrivateReplyExpired,
    AwaitingCustomerAcceptance,
    HoldExpired,
    ConversationClosed,
    RecipientUnavailable,
    PlatformError,
}

impl Reason {
    pub const ALL: [Reason; 14] = [
        Reason::NoCustomerMessage,
        Reason::WindowExpired,
        Reason::ExtendedWindowExpired,
        Reason::HumanAgentRequiresHuman,
        Reason::TagNotAllowed,
        Reason::TagRateLimited,
        Reason::TemplateNotSupported,
        Reason::PrivateReplyUsed,
        Reason::PrivateReplyExpired,
        Reason::AwaitingCustomerAcceptance,
        Reason::HoldExpired,
        Reason::ConversationClosed,
        Reason::RecipientUnavailable,
        Reason::PlatformError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoCustomerMessage => "no_customer_message",
            Self::WindowExpired => "window_expired",
            Self::ExtendedWindowExpired => "extended_window_expired",
            Self::HumanAgentRequiresHuman => "human_agent_requires_human",
            Self::TagNotAllowed => "tag_not_allowed",
            Self::TagRateLimited => "tag_rate_limited",
            Self::TemplateNotSupported => "template_not_supported",
            Self::PrivateReplyUsed => "private_reply_used",
            Self::PrivateReplyExpired => "private_reply_expired",
            Self::AwaitingCustomerAcceptance => "awaiting_customer_acceptance",
            Self::HoldExpired => "hold_expired",
            Self::ConversationClosed => "conversation_closed",
            Self::RecipientUnavailable => "recipient_unavailable",
            Self::PlatformError => "platform_error",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}
