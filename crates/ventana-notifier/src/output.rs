//! The output events ventana publishes (README "Events").

use ventana_core::{
    ConversationKey, MessagingType, PlatformError, Reason, State, Tag, Timestamp, Window,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// Deterministic from the conversation, the cause and the position among that cause's
    /// outputs: the same log always gives the same ids.
    pub id: String,
    pub conversation: ConversationKey,
    pub occurred_at: Timestamp,
    /// The input event id, or `tick:<instant>`.
    pub caused_by: String,
    pub body: OutputBody,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputBody {
    StateChanged {
        from: State,
        to: State,
        window: Window,
        window_ends_at: Option<Timestamp>,
        session: u32,
    },
    OutboundAccepted {
        message_id: String,
        messaging_type: MessagingType,
        tag: Option<Tag>,
        comment_id: Option<String>,
        window_ends_at: Option<Timestamp>,
    },
    OutboundHeld {
        message_id: String,
        until: Timestamp,
    },
    DeliveryFailed {
        message_id: String,
        source: Source,
        reason: Reason,
        detail: String,
        suggestion: Suggestion,
        error: Option<PlatformError>,
    },
    AutoReply {
        trigger: Trigger,
        reply_by: Option<Timestamp>,
    },
    WindowClosing {
        closes_at: Timestamp,
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
    Accepted { message_id: &'a str },
    /// `outbound_held` (R11): waiting for the customer, at the latest until `until`.
    Held {
        message_id: &'a str,
        until: Timestamp,
    },
    /// `delivery_failed`: not delivered, refused by ventana's rules or reported by the
    /// platform.
    NotDelivered {
        message_id: &'a str,
        source: Source,
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
    SendTemplate,
    WaitForCustomer,
    UseHumanAgent,
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
    ConversationOpened,
    AgentDelayed,
    WindowClosing,
}

ventana_core::text_enum!(
    Trigger {
        ConversationOpened => "conversation_opened",
        AgentDelayed => "agent_delayed",
        WindowClosing => "window_closing",
    }
);
