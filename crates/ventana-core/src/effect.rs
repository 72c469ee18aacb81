//! What folding one event (or one deadline) did: plain values for the notifier and the
//! service to turn into published outputs.

use std::borrow::Cow;

use crate::decision::Verdict;
use crate::event::{PlatformError, PlatformErrorClass};
use crate::time::Timestamp;
use crate::view::View;

/// What an effect was caused by: an input event, or a deadline passing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause<'e> {
    Event(&'e str),
    Tick(Timestamp),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effect<'e> {
    pub cause: Cause<'e>,
    /// The instant it happened at: the event's (advanced) decision time, or the deadline.
    pub at: Timestamp,
    pub kind: EffectKind<'e>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EffectKind<'e> {
    /// An outbound message was decided (or a held one released).
    Decided {
        message_id: Cow<'e, str>,
        verdict: Verdict,
    },
    /// R11: a held message was not accepted by the customer in time.
    HoldExpired {
        message_id: String,
        until: Timestamp,
    },
    /// R13: the platform reported a message failed.
    PlatformFailure {
        message_id: &'e str,
        error: Option<&'e PlatformError>,
        class: PlatformErrorClass,
        /// For window errors: the instant the platform closed the window at.
        window_closed_at: Option<Timestamp>,
    },
    StateChanged {
        from: View,
        to: View,
    },
    /// Customer activity started a new session (`view.session` is the new one).
    SessionOpened {
        view: View,
    },
    /// A notifier alarm came due; the notifier applies its guards to `view`.
    Alarm {
        alarm: Alarm,
        view: View,
        /// The end of the standard window the alarm is about (`None` on unrestricted
        /// channels, which have none).
        closes_at: Option<Timestamp>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alarm {
    /// The customer has waited `agent_delay` since their first unanswered message.
    AgentDelay,
    /// The standard window closes in `window_closing`.
    WindowClosing,
}
