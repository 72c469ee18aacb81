//! Input events: what channel adapters, agents, the platform and the service's own clock
//! report. Message text never enters ventana: events carry metadata only.

use serde::{Deserialize, Serialize};

use crate::key::{Channel, ConversationKey};
use crate::time::Timestamp;

/// One input event, as logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique per event (the platform's message id where there is one): the dedupe key.
    pub id: String,
    /// When it happened, by the platform's clock.
    pub occurred_at: Timestamp,
    /// When the log received it (the JetStream timestamp in the live service).
    pub logged_at: Option<Timestamp>,
    /// The conversation it belongs to.
    pub conversation: ConversationKey,
    /// What happened.
    pub body: EventBody,
}

impl Event {
    /// The instant the event is decided at: `logged_at` when present, else `occurred_at`.
    pub fn decision_time(&self) -> Timestamp {
        self.logged_at.unwrap_or(self.occurred_at)
    }
}

/// The kinds of input event, each with its own fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventBody {
    /// The customer wrote a direct message (text, media, call, story reply: any inbound).
    CustomerMessage,
    /// The customer commented publicly on a post of the business.
    CustomerComment {
        /// The platform's id of the comment (what a private reply answers).
        comment_id: String,
    },
    /// The business sends (or, for echoes, has sent) a message. Its `id` is the message id.
    OutboundMessage(Outbound),
    /// The platform reports what became of a message.
    DeliveryStatus(DeliveryStatus),
    /// An operator closed the conversation (R5).
    ConversationClosed {
        /// Who closed it (an operator id, metadata only).
        by: Option<String>,
    },
    /// An operator reopened a closed conversation (R5).
    ConversationReopened {
        /// Who reopened it.
        by: Option<String>,
    },
    /// A deadline the service's clock saw pass; written by the service, accepted in files.
    Tick {
        /// The deadline's instant.
        at: Timestamp,
    },
}

impl EventBody {
    /// The `type` name of the event in JSON and logs.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::CustomerMessage => "customer_message",
            Self::CustomerComment { .. } => "customer_comment",
            Self::OutboundMessage(_) => "outbound_message",
            Self::DeliveryStatus(_) => "delivery_status",
            Self::ConversationClosed { .. } => "conversation_closed",
            Self::ConversationReopened { .. } => "conversation_reopened",
            Self::Tick { .. } => "tick",
        }
    }
}

/// An outbound message's metadata: who sends what, how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbound {
    /// A human agent or automation (R7 lets only humans use the extension).
    pub sender: Sender,
    /// Free-form message, template, private reply or public comment reply.
    pub kind: MessageKind,
    /// The message tag asked for, if any (R7, R8).
    pub tag: Option<Tag>,
    /// The comment a private reply or public comment reply answers.
    pub comment_id: Option<String>,
    /// Asked of ventana, or an echo of a message sent elsewhere (R15).
    pub origin: Origin,
}

impl Outbound {
    /// Why this message could never be sent on `channel`, whatever the conversation's state.
    /// The request-reply API and the send gateway refuse such a request before it is logged
    /// (docs/rules.md §1.4 point 14); one that reaches the log anyway is decided like any other.
    pub fn unsendable_on(&self, channel: &Channel) -> Option<Unsendable> {
        Unsendable::of(self.kind, self.comment_id.is_some(), channel)
    }
}

/// An outbound message no conversation state could let out (see [`Outbound::unsendable_on`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsendable {
    /// A `private_reply` without the `comment_id` it answers.
    PrivateReplyWithoutComment,
    /// A `comment_reply` without the `comment_id` it is posted under.
    CommentReplyWithoutComment,
    /// A private or public comment reply on WhatsApp, which has no comments.
    NoComments,
}

impl Unsendable {
    /// Why a message of `kind`, naming a comment or not, could never be sent on `channel`.
    pub fn of(kind: MessageKind, names_a_comment: bool, channel: &Channel) -> Option<Self> {
        let answers_a_comment =
            matches!(kind, MessageKind::PrivateReply | MessageKind::CommentReply);
        if answers_a_comment && *channel == Channel::WhatsApp {
            return Some(Self::NoComments);
        }
        match (kind, names_a_comment) {
            (MessageKind::PrivateReply, false) => Some(Self::PrivateReplyWithoutComment),
            (MessageKind::CommentReply, false) => Some(Self::CommentReplyWithoutComment),
            _ => None,
        }
    }
}

impl std::fmt::Display for Unsendable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::PrivateReplyWithoutComment => {
                "a private reply needs the `comment_id` of the customer comment it answers"
            }
            Self::CommentReplyWithoutComment => {
                "a comment reply needs the `comment_id` of the comment it is posted under"
            }
            Self::NoComments => {
                "WhatsApp has no comments: private and public comment replies are for Facebook and Instagram"
            }
        })
    }
}

impl std::error::Error for Unsendable {}

/// Who sends an outbound message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Sender {
    /// A human agent.
    Agent,
    /// A bot, campaign or any automatic message.
    Automation,
}

crate::text_enum!(Sender { Agent => "agent", Automation => "automation" });

/// What an outbound message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageKind {
    /// Free-form direct message.
    Message,
    /// A pre-approved template (WhatsApp, Messenger utility templates).
    Template,
    /// A direct message tied to a customer comment.
    PrivateReply,
    /// A public reply under a comment.
    CommentReply,
}

crate::text_enum!(
    MessageKind {
        Message => "message",
        Template => "template",
        PrivateReply => "private_reply",
        CommentReply => "comment_reply",
    }
);

/// Messenger message tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tag {
    /// `HUMAN_AGENT`: a human's answer within 7 days of the customer's message (R7).
    HumanAgent,
    /// `ACCOUNT_UPDATE`: a change to the customer's account (R8).
    AccountUpdate,
    /// `CONFIRMED_EVENT_UPDATE`: a reminder or update of an event they registered for (R8).
    ConfirmedEventUpdate,
    /// `POST_PURCHASE_UPDATE`: an update on a purchase they made (R8).
    PostPurchaseUpdate,
}

crate::text_enum!(
    Tag {
        HumanAgent => "human_agent",
        AccountUpdate => "account_update",
        ConfirmedEventUpdate => "confirmed_event_update",
        PostPurchaseUpdate => "post_purchase_update",
    }
);

/// Where an outbound message comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Origin {
    /// Asked of ventana: decided, then sent or refused.
    #[default]
    Request,
    /// Sent outside ventana (e.g. the native inbox) and reported back: recorded, never decided.
    Echo,
}

crate::text_enum!(Origin { Request => "request", Echo => "echo" });

/// The platform's report on one message (R13).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryStatus {
    /// The message it reports on (ventana's id where the adapter could map it).
    pub message_id: String,
    /// How far the message got.
    pub status: Status,
    /// Why it failed, for `failed` reports that say.
    pub error: Option<PlatformError>,
}

/// Delivery progress; statuses only move forward and `Failed` is terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Status {
    /// The platform accepted it.
    Sent,
    /// It reached the customer's device.
    Delivered,
    /// The customer read it.
    Read,
    /// It was not delivered.
    Failed,
}

crate::text_enum!(
    Status {
        Sent => "sent",
        Delivered => "delivered",
        Read => "read",
        Failed => "failed",
    }
);

/// An error the platform reported for a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformError {
    /// The platform's error code (e.g. 131047, 10).
    pub code: i64,
    /// Its subcode, where the platform gives one (e.g. 2018278).
    pub subcode: Option<i64>,
    /// The platform's short title of the error (never message text).
    pub title: Option<String>,
}

/// What a platform error means for the conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformErrorClass {
    /// The platform says the window is closed (WhatsApp 131047; Messenger/Instagram 10 with
    /// subcode 2018278 or 2534022): it ends the window.
    WindowClosed,
    /// WhatsApp 551: the recipient cannot be reached now; no state changes.
    RecipientUnavailable,
    /// Any other error: the message failed, the conversation is unchanged.
    Other,
}

impl PlatformError {
    /// What this error means on `channel`.
    pub fn class(&self, channel: &crate::Channel) -> PlatformErrorClass {
        use crate::Channel::*;
        match (channel, self.code, self.subcode) {
            (WhatsApp, 131_047, _) => PlatformErrorClass::WindowClosed,
            (Messenger | Instagram, 10, Some(2_018_278 | 2_534_022)) => {
                PlatformErrorClass::WindowClosed
            }
            (_, 551, _) => PlatformErrorClass::RecipientUnavailable,
            _ => PlatformErrorClass::Other,
        }
    }
}
