//! What a conversation looks like from outside at an instant: its state and window.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// The conversation states of docs/rules.md §1.2, plus `None` for a conversation with no customer
/// activity yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    #[default]
    None,
    /// A window is open and the customer is waiting for an answer.
    Open,
    /// A window is open and the business has answered.
    AwaitingCustomer,
    /// Only the human-agent extension is open (Messenger, Instagram).
    ExtendedWindow,
    /// No window is open: free-form messages are not delivered.
    Expired,
    /// The operator closed the conversation after the customer's last activity.
    Closed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Open => "open",
            Self::AwaitingCustomer => "awaiting_customer",
            Self::ExtendedWindow => "extended_window",
            Self::Expired => "expired",
            Self::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::None,
            Self::Open,
            Self::AwaitingCustomer,
            Self::ExtendedWindow,
            Self::Expired,
            Self::Closed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// A state customer activity starts a new session from.
    pub fn is_dormant(self) -> bool {
        matches!(self, Self::None | Self::Expired | Self::Closed)
    }
}

/// Which window the conversation is in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Window {
    #[default]
    None,
    /// 24 h (by default) from the customer's last message.
    Standard,
    /// The human-agent extension (7 d by default) after the standard window.
    HumanAgent,
    /// Only a comment's one private reply may be sent (or has been).
    PrivateReply,
    /// `custom:*` channels: no window at all.
    Unrestricted,
}

impl Window {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Standard => "standard",
            Self::HumanAgent => "human_agent",
            Self::PrivateReply => "private_reply",
            Self::Unrestricted => "unrestricted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::None,
            Self::Standard,
            Self::HumanAgent,
            Self::PrivateReply,
            Self::Unrestricted,
        ]
        .into_iter()
        .find(|w| w.as_str() == text)
    }
}

/// The published face of a conversation: every change of it is a `state_changed`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct View {
    pub state: State,
    pub window: Window,
    pub window_ends_at: Option<Timestamp>,
    pub session: u32,
}
