//! What the types cannot check about an event before it is folded: clock skew.

use crate::event::Event;
use crate::policy::Policy;
use crate::time::Timestamp;

/// An event that must not be folded (docs/events.md: a decision time and the clock skew).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// `occurred_at` lies more than `max_clock_skew` after the decision time.
    ClockSkew {
        /// The event's `occurred_at`.
        occurred_at: Timestamp,
        /// The instant it is decided at.
        decision_time: Timestamp,
    },
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClockSkew {
                occurred_at,
                decision_time,
            } => write!(
                f,
                "occurred_at {occurred_at} is later than the decision time {decision_time} by more than the allowed clock skew"
            ),
        }
    }
}

impl std::error::Error for Invalid {}

/// Checks what the types cannot: clock skew. (An outbound message that could never be
/// sent is still valid input: it gets a decision like any other, §1.4 point 14.)
pub fn validate(event: &Event, policy: &Policy) -> Result<(), Invalid> {
    let decision_time = event.decision_time();
    if event.occurred_at > decision_time.plus(policy.max_clock_skew) {
        return Err(Invalid::ClockSkew {
            occurred_at: event.occurred_at,
            decision_time,
        });
    }
    Ok(())
}
