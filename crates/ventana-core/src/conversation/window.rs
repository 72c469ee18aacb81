//! The derived state (docs/rules.md §1.2): state, window and window end, computed from the
//! facts and the instant asked about, never stored.

use super::Conversation;
use crate::policy::{ChannelPolicy, Policy};
use crate::time::Timestamp;
use crate::view::{State, View, Window};

impl Conversation {
    /// The customer's last message is later than the business's last answer.
    pub(super) fn is_unanswered(&self) -> bool {
        match (self.last_customer_at, self.last_answer_at) {
            (Some(customer), Some(answer)) => customer > answer,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Rule::R13: a window error from the platform ends the windows of customer messages up
    /// to it.
    pub(super) fn cut(&self) -> Option<Timestamp> {
        match (self.window_cut_at, self.last_customer_at) {
            (Some(cut), Some(last)) if last <= cut => Some(cut),
            _ => None,
        }
    }

    /// Rule::R2: the standard window's end (Rule::R3: only the customer moves it).
    pub(super) fn standard_end(&self, ch: &ChannelPolicy) -> Option<Timestamp> {
        let end = self.last_customer_at?.plus(ch.standard_window);
        Some(self.cut().map_or(end, |cut| cut.min(end)))
    }

    /// Rule::R7: the human-agent extension's end, where the channel has one.
    pub(super) fn extension_end(&self, ch: &ChannelPolicy) -> Option<Timestamp> {
        if !ch.extension_on() {
            return None;
        }
        let end = self.last_customer_at?.plus(ch.human_agent_window);
        Some(self.cut().map_or(end, |cut| cut.min(end)))
    }

    /// The state and window at `t` (not before the clock).
    pub fn view_at(&self, t: Timestamp, policy: &Policy) -> View {
        let session = self.session;
        let view = |state, window, window_ends_at| View {
            state,
            window,
            window_ends_at,
            session,
        };
        if !self.active {
            return view(State::None, Window::None, None);
        }
        if self.closed {
            return view(State::Closed, Window::None, None);
        }
        let waiting = if self.is_unanswered() {
            State::Open
        } else {
            State::AwaitingCustomer
        };
        let Some(ch) = policy.channel(&self.key.channel) else {
            return view(waiting, Window::Unrestricted, None);
        };
        if let Some(end) = self.standard_end(ch).filter(|end| t < *end) {
            return view(waiting, Window::Standard, Some(end));
        }
        if let Some(end) = self.extension_end(ch).filter(|end| t < *end) {
            return view(State::ExtendedWindow, Window::HumanAgent, Some(end));
        }
        // Rule::R11: the private-reply band.
        if let Some(end) = self.comments.latest_end(ch, t, true) {
            return view(State::Open, Window::PrivateReply, Some(end));
        }
        if let Some(end) = self.comments.latest_end(ch, t, false) {
            return view(State::AwaitingCustomer, Window::PrivateReply, Some(end));
        }
        view(State::Expired, Window::None, None)
    }
}
