//! The verdict on one outbound message (docs/rules.md §1.1). Rejections are values, not errors.

use serde::{Deserialize, Serialize};

use crate::event::Tag;
use crate::time::Timestamp;

/// What ventana decided for one outbound message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// It may be sent now, as the [`Acceptance`] says.
    Accepted(Acceptance),
    /// R11: kept until the customer accepts the conversation, or failed at `until`.
    Held {
        /// When the hold fails with [`Reason::HoldExpired`] if the customer has not written.
        until: Timestamp,
    },
    /// It must not be sent: the platform would not deliver it.
    Rejected(Rejection),
}

/// How an accepted message must be sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    /// How the platform must be asked to send it.
    pub messaging_type: MessagingType,
    /// The message tag to send it with (R7's `human_agent`, or an R8 tag).
    pub tag: Option<Tag>,
    /// The comment a private or public reply answers.
    pub comment_id: Option<String>,
    /// The end of the window the message was accepted under; `None` for templates, comment
    /// replies, tags outside a window and unrestricted channels.
    pub window_ends_at: Option<Timestamp>,
}

/// How an accepted message is sent to the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessagingType {
    /// A reply inside the customer's 24-hour window, untagged (R2).
    Response,
    /// Outside the 24 hours, with a message tag (R7, R8).
    MessageTag,
    /// A pre-approved template (R6, R8).
    Template,
    /// The one private reply to a comment (R11).
    PrivateReply,
    /// A public reply under a comment (R10).
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

/// Why a message was refused, and since when it could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The refusal's reason, as published in `delivery_failed`.
    pub reason: Reason,
    /// When the window that would have allowed the message closed, where there was one.
    pub closed_at: Option<Timestamp>,
    /// R13: `closed_at` is where a platform window error cut the window, not its end.
    pub cut_by_platform: bool,
}

/// Why a message is not delivered (policy decisions and platform reports). Each variant
/// names the rule it is refused under, as [`Reason::rule`] answers; a platform's report is
/// R13 whatever its reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Reason {
    /// R1: the customer never wrote (or the named comment is unknown): nothing free-form
    /// may start a conversation.
    NoCustomerMessage,
    /// R4: the 24 hours since the customer's last message have passed, and no extension,
    /// tag or private-reply allowance is in force.
    WindowExpired,
    /// R7: the human-agent extension (7 days after the customer's last message) existed
    /// and has passed too.
    ExtendedWindowExpired,
    /// R7: only a human agent may use the extension; automation must wait for the customer
    /// or use another valid tag.
    HumanAgentRequiresHuman,
    /// R8: the tag is not valid on this channel, or no longer valid under the policy.
    TagNotAllowed,
    /// R9: the policy's rate for this tag, or for the extension, is used up for now.
    TagRateLimited,
    /// R8: the channel takes no templates (Instagram, custom channels, Messenger without
    /// utility templates).
    TemplateNotSupported,
    /// R11: the comment's one private reply has already been sent.
    PrivateReplyUsed,
    /// R11: more than 7 days have passed since the comment.
    PrivateReplyExpired,
    /// R11: the private reply went out and the customer has not answered it yet; further
    /// direct messages wait for them.
    AwaitingCustomerAcceptance,
    /// R11: a held message's wait ended without the customer writing.
    HoldExpired,
    /// R5: an operator closed the conversation; only templates and public comment replies
    /// go out until the customer is active again.
    ConversationClosed,
    /// R13: the platform reported the recipient cannot be reached now (WhatsApp 551); the
    /// window is unchanged.
    RecipientUnavailable,
    /// R13: the platform refused the message for another reason (its code is in the event).
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
