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

crate::text_enum!(
    MessagingType {
        Response => "response",
        MessageTag => "message_tag",
        Template => "template",
        PrivateReply => "private_reply",
        CommentReply => "comment_reply",
    }
);

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

crate::text_enum!(
    Reason {
        NoCustomerMessage => "no_customer_message",
        WindowExpired => "window_expired",
        ExtendedWindowExpired => "extended_window_expired",
        HumanAgentRequiresHuman => "human_agent_requires_human",
        TagNotAllowed => "tag_not_allowed",
        TagRateLimited => "tag_rate_limited",
        TemplateNotSupported => "template_not_supported",
        PrivateReplyUsed => "private_reply_used",
        PrivateReplyExpired => "private_reply_expired",
        AwaitingCustomerAcceptance => "awaiting_customer_acceptance",
        HoldExpired => "hold_expired",
        ConversationClosed => "conversation_closed",
        RecipientUnavailable => "recipient_unavailable",
        PlatformError => "platform_error",
    }
);
