//! The output events ventana publishes (docs/events.md).

use std::sync::Arc;

use ventana_core::{
    ConversationKey, MessagingType, PlatformError, Reason, State, Tag, Timestamp, Window,
};

/// One event ventana publishes on `ventana.out.<type>.<conversation>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// Deterministic from the conversation, the cause and the position among that cause's
    /// outputs: the same log always gives the same ids.
    pub id: String,
    /// The conversation it is about.
    pub conversation: Arc<ConversationKey>,
    /// The instant it happened at: the cause's decision time, or a deadline.
    pub occurred_at: Timestamp,
    /// The input event id, or `tick:<instant>`.
    pub caused_by: String,
    /// What it says.
    pub body: OutputBody,
}

/// The six kinds of output, each with its fields (docs/events.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputBody {
    /// The conversation's state, window or window end changed.
    StateChanged {
        /// The state before.
        from: State,
        /// The state now.
        to: State,
        /// The window now.
        window: Window,
        /// When that window ends.
        window_ends_at: Option<Timestamp>,
        /// The session now.
        session: u32,
    },
    /// An outbound message may be sent, and how.
    OutboundAccepted {
        /// The message.
        message_id: String,
        /// How to send it.
        messaging_type: MessagingType,
        /// The tag to send it with.
        tag: Option<Tag>,
        /// The comment it answers.
        comment_id: Option<String>,
        /// The end of the window it was accepted under.
        window_ends_at: Option<Timestamp>,
    },
    /// R11: an outbound message waits for the customer to accept the conversation.
    OutboundHeld {
        /// The message.
        message_id: String,
        /// When it fails if the customer has not written by then.
        until: Timestamp,
    },
    /// An outbound message is not delivered: refused by the rules or reported by the
    /// platform.
    DeliveryFailed {
        /// The message.
        message_id: String,
        /// Who refused it.
        source: Source,
        /// Why.
        reason: Reason,
        /// One sentence for the agent, citing the rule.
        detail: String,
        /// What the agent can do instead.
        suggestion: Suggestion,
        /// The platform's error, for platform reports that gave one.
        error: Option<PlatformError>,
    },
    /// R12: ventana asks the automation service for an automatic message.
    AutoReply {
        /// Why.
        trigger: Trigger,
        /// Until when it can still be sent (the window's end).
        reply_by: Option<Timestamp>,
    },
    /// R12: the standard window closes soon.
    WindowClosing {
        /// When it closes.
        closes_at: Timestamp,
        /// Whether the customer's last message is unanswered.
        customer_waiting: bool,
    },
}

impl OutputBody {
    /// Every `type` name, in the order of the variants.
    pub const TYPES: [&'static str; 6] = [
        "state_changed",
        "outbound_accepted",
        "outbound_held",
        "delivery_failed",
        "auto_reply",
        "window_closing",
    ];

    /// The `type` name in JSON and the subject (`ventana.out.<type>.<conv>`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::StateChanged { .. } => "state_changed",
            Self::OutboundAccepted { .. } => "outbound_accepted",
            Self::OutboundHeld { .. } => "outbound_held",
            Self::DeliveryFailed { .. } => "delivery_failed",
            Self::AutoReply { .. } => "auto_reply",
            Self::WindowClosing { .. } => "window_closing",
        }
    }

    /// The order of outputs of one cause: decision, `state_changed`, `window_closing`,
    /// `auto_reply` (docs/rules.md §1.3).
    pub(crate) fn rank(&self) -> u8 {
        match self {
            Self::OutboundAccepted { .. }
            | Self::OutboundHeld { .. }
            | Self::DeliveryFailed { .. } => 0,
            Self::StateChanged { .. } => 1,
            Self::WindowClosing { .. } => 2,
            Self::AutoReply { .. } => 3,
        }
    }
}

/// What a decision output says about one outbound message: the one answer to "did this
/// output decide a message, which, and how" (ventanad's API and metrics, the gateway, the
/// CLI's tools all ask it here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decided<'a> {
    /// `outbound_accepted`: send it as the output says.
    Accepted {
        /// The message.
        message_id: &'a str,
    },
    /// `outbound_held` (R11): waiting for the customer, at the latest until `until`.
    Held {
        /// The message.
        message_id: &'a str,
        /// The end of its hold.
        until: Timestamp,
    },
    /// `delivery_failed`: not delivered, refused by ventana's rules or reported by the
    /// platform.
    NotDelivered {
        /// The message.
        message_id: &'a str,
        /// Who refused it.
        source: Source,
        /// Why.
        reason: Reason,
    },
}

impl Decided<'_> {
    /// The message decided.
    pub fn message_id(&self) -> &str {
        match self {
            Self::Accepted { message_id }
            | Self::Held { message_id, .. }
            | Self::NotDelivered { message_id, .. } => message_id,
        }
    }

    /// Decided by ventana's rules (not a platform's report of a failure).
    pub fn by_policy(&self) -> bool {
        !matches!(
            self,
            Self::NotDelivered {
                source: Source::Platform,
                ..
            }
        )
    }
}

impl OutputBody {
    /// What this output decided, if it is a decision (`outbound_accepted`, `outbound_held`,
    /// `delivery_failed`).
    pub fn decision(&self) -> Option<Decided<'_>> {
        match self {
            Self::OutboundAccepted { message_id, .. } => Some(Decided::Accepted { message_id }),
            Self::OutboundHeld { message_id, until } => Some(Decided::Held {
                message_id,
                until: *until,
            }),
            Self::DeliveryFailed {
                message_id,
                source,
                reason,
                ..
            } => Some(Decided::NotDelivered {
                message_id,
                source: *source,
                reason: *reason,
            }),
            Self::StateChanged { .. } | Self::AutoReply { .. } | Self::WindowClosing { .. } => None,
        }
    }
}

/// Who refused a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// ventana's rules.
    Policy,
    /// The platform's delivery report.
    Platform,
}

ventana_core::text_enum!(
    Source {
        Policy => "policy",
        Platform => "platform",
    }
);

/// What an agent can do instead of a refused message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suggestion {
    /// Send an approved template instead (WhatsApp, Messenger utility templates).
    SendTemplate,
    /// Wait until the customer writes again: that opens a new window.
    WaitForCustomer,
    /// Have a human agent answer with the `human_agent` tag (R7).
    UseHumanAgent,
    /// Nothing can be sent now.
    None,
}

ventana_core::text_enum!(
    Suggestion {
        SendTemplate => "send_template",
        WaitForCustomer => "wait_for_customer",
        UseHumanAgent => "use_human_agent",
        None => "none",
    }
);

/// Why ventana asks for an automatic message (R12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// A new session started (when the policy asks for a greeting).
    ConversationOpened,
    /// The customer has waited `agent_delay` without an answer.
    AgentDelayed,
    /// The window closes soon and the customer is waiting (when the policy asks).
    WindowClosing,
}

ventana_core::text_enum!(
    Trigger {
        ConversationOpened => "conversation_opened",
        AgentDelayed => "agent_delayed",
        WindowClosing => "window_closing",
    }
);
