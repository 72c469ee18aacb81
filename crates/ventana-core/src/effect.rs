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
    /// The input event with this id.
    Event(&'e str),
    /// The deadline at this instant (a logged `tick`, or one fired before an event).
    Tick(Timestamp),
}

/// One thing folding did, with its cause and instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effect<'e> {
    /// What caused it.
    pub cause: Cause<'e>,
    /// The instant it happened at: the event's (advanced) decision time, or the deadline.
    pub at: Timestamp,
    /// What happened.
    pub kind: EffectKind<'e>,
}

/// The things folding can do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EffectKind<'e> {
    /// An outbound message was decided (or a held one released).
    Decided {
        /// The outbound message's id.
        message_id: Cow<'e, str>,
        /// What was decided.
        verdict: Verdict,
    },
    /// R11: a held message was not accepted by the customer in time.
    HoldExpired {
        /// The held message's id.
        message_id: String,
        /// The end of its hold.
        until: Timestamp,
    },
    /// R13: the platform reported a message failed.
    PlatformFailure {
        /// The failed message's id.
        message_id: &'e str,
        /// The platform's error, where it gave one.
        error: Option<&'e PlatformError>,
        /// What the error means for the conversation.
        class: PlatformErrorClass,
        /// For window errors: the instant the platform closed the window at.
        window_closed_at: Option<Timestamp>,
    },
    /// The state, window or window end changed.
    StateChanged {
        /// The view before.
        from: View,
        /// The view after.
        to: View,
    },
    /// Customer activity started a new session (`view.session` is the new one).
    SessionOpened {
        /// The conversation's view once the session opened.
        view: View,
    },
    /// A notifier alarm came due; the notifier applies its guards to `view`.
    Alarm {
        /// Which alarm.
        alarm: Alarm,
        /// The conversation's view at the alarm's instant.
        view: View,
        /// The end of the standard window the alarm is about (`None` on unrestricted
        /// channels, which have none).
        closes_at: Option<Timestamp>,
    },
}

/// The notifier's alarms (R12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alarm {
    /// The customer has waited `agent_delay` since their first unanswered message.
    AgentDelay,
    /// The standard window closes in `window_closing`.
    WindowClosing,
}
