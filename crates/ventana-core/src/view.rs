//! What a conversation looks like from outside at an instant: its state and window.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// The conversation states of docs/rules.md §1.2, plus `None` for a conversation with no customer
/// activity yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    /// No customer activity yet: nothing free-form may be sent (R1).
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
    /// A state customer activity starts a new session from.
    pub fn is_dormant(self) -> bool {
        matches!(self, Self::None | Self::Expired | Self::Closed)
    }
}

crate::text_enum!(
    State {
        None => "none",
        Open => "open",
        AwaitingCustomer => "awaiting_customer",
        ExtendedWindow => "extended_window",
        Expired => "expired",
        Closed => "closed",
    }
);

/// Which window the conversation is in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Window {
    /// No window is open.
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

crate::text_enum!(
    Window {
        None => "none",
        Standard => "standard",
        HumanAgent => "human_agent",
        PrivateReply => "private_reply",
        Unrestricted => "unrestricted",
    }
);

/// The published face of a conversation: every change of it is a `state_changed`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct View {
    /// The conversation's state.
    pub state: State,
    /// The window it is in.
    pub window: Window,
    /// When that window ends (`None` when there is none, or it never ends).
    pub window_ends_at: Option<Timestamp>,
    /// Counts the times customer activity woke the conversation (0 before the first).
    pub session: u32,
}
