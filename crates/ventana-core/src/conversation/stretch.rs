//! R12's `agent_delay`: the stretch of time a customer has been waiting for an answer.

use serde::{Deserialize, Serialize};

use crate::time::{Span, Timestamp};

/// An unanswered stretch: the customer wrote at `since` and nobody answered yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Stretch {
    /// `occurred_at` of the first unanswered customer message.
    since: Timestamp,
    /// The `agent_delay` alarm of this stretch has fired.
    alarmed: bool,
}

impl Stretch {
    /// A stretch starting at `since`, its alarm still to come.
    pub(super) fn since(since: Timestamp) -> Self {
        Self {
            since,
            alarmed: false,
        }
    }

    /// When its alarm is due after `delay` (none once fired, or with no delay set).
    pub(super) fn alarm_at(&self, delay: Span) -> Option<Timestamp> {
        (!self.alarmed && !delay.is_zero()).then(|| self.since.plus(delay))
    }

    /// Its alarm fired.
    pub(super) fn alarmed(&mut self) {
        self.alarmed = true;
    }
}
