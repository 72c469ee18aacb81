//! Time (docs/rules.md §1.3): the deadlines a conversation has, as data. One function,
//! [`Conversation::each_deadline`], lists them; the next one to come and what fires at an
//! instant are both read from it.

use super::Conversation;
use super::memory::IdHash;
use crate::effect::{Alarm, Cause, Effect, EffectKind};
use crate::policy::Policy;
use crate::time::Timestamp;

/// Something due at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Deadline {
    /// Rule::R2: the standard window ends.
    StandardEnd,
    /// Rule::R7: the human-agent extension ends.
    ExtensionEnd,
    /// Rule::R12: the `window_closing` warning before the standard window ends at
    /// `closes_at`.
    WindowClosing { closes_at: Timestamp },
    /// Rule::R12: the customer has waited `agent_delay` for an answer.
    AgentDelay,
    /// Rule::R11: a comment's private-reply allowance ends.
    AllowanceEnd,
    /// Rule::R11: a held message's hold runs out.
    HoldExpiry,
}

impl Conversation {
    /// Hands `visit` every deadline this conversation has, in no particular order (past
    /// ones included). A channel without a policy (`custom:*`) has only the agent-delay
    /// alarm (§1.4 point 2). Every event asks for the next deadline: handing them over in
    /// plain loops folds 1.2 times as fast as an iterator chaining them did (README,
    /// "Performance").
    fn each_deadline(&self, policy: &Policy, mut visit: impl FnMut(Timestamp, Deadline)) {
        if let Some(at) = self
            .stretch
            .and_then(|s| s.alarm_at(policy.notifier.agent_delay))
        {
            visit(at, Deadline::AgentDelay);
        }
        let Some(ch) = policy.channel(&self.key.channel) else {
            return;
        };
        if let Some(end) = self.standard_end(ch) {
            visit(end, Deadline::StandardEnd);
            let warning = policy.notifier.window_closing;
            if !warning.is_zero() && self.closing_alarm_for != Some(end) {
                visit(
                    end.minus(warning),
                    Deadline::WindowClosing { closes_at: end },
                );
            }
        }
        if let Some(end) = self.extension_end(ch) {
            visit(end, Deadline::ExtensionEnd);
        }
        for comment in self.comments.iter() {
            visit(comment.allowance_end(ch), Deadline::AllowanceEnd);
        }
        for hold in self.holds.iter() {
            visit(hold.until, Deadline::HoldExpiry);
        }
    }

    /// The earliest deadline strictly after the clock, if any.
    pub fn next_deadline(&self, policy: &Policy) -> Option<Timestamp> {
        let clock = self.clock?;
        let mut next: Option<Timestamp> = None;
        self.each_deadline(policy, |at, _| {
            if at > clock && next.is_none_or(|n| at < n) {
                next = Some(at);
            }
        });
        next
    }

    /// Fires every deadline up to and including `to`, in time order, then sets the clock to
    /// `to` (if later).
    pub fn advance<'e>(&mut self, to: Timestamp, policy: &Policy, effects: &mut Vec<Effect<'e>>) {
        while let Some(deadline) = self.next_deadline(policy).filter(|d| *d <= to) {
            self.clock = Some(deadline);
            self.fire(deadline, policy, effects);
        }
        self.clock = Some(self.clock.map_or(to, |clock| clock.max(to)));
    }

    /// Everything due at `d`, as one `tick` at `d`: holds run out, the view changes, then
    /// the alarms.
    fn fire<'e>(&mut self, d: Timestamp, policy: &Policy, effects: &mut Vec<Effect<'e>>) {
        let cause = Cause::Tick(d);
        let (mut closing_alarm, mut agent_alarm) = (None, false);
        self.each_deadline(policy, |at, deadline| match deadline {
            Deadline::WindowClosing { closes_at } if at == d => closing_alarm = Some(closes_at),
            Deadline::AgentDelay if at == d => agent_alarm = true,
            // Their effect is the view they change (and the holds below).
            _ => {}
        });
        for hold in self.holds.expire(d) {
            // A hold that expired is a rejected message.
            self.messages.decided(IdHash::of(&hold.message_id), d, true);
            effects.push(Effect {
                cause,
                at: d,
                kind: EffectKind::HoldExpired {
                    message_id: hold.message_id,
                    until: hold.until,
                },
            });
        }
        self.publish(cause, d, policy, effects);
        if let Some(end) = closing_alarm {
            self.closing_alarm_for = Some(end);
            effects.push(Effect {
                cause,
                at: d,
                kind: EffectKind::Alarm {
                    alarm: Alarm::WindowClosing,
                    view: self.published,
                    closes_at: Some(end),
                },
            });
        }
        if agent_alarm {
            if let Some(stretch) = self.stretch.as_mut() {
                stretch.alarmed();
            }
            let closes_at = policy
                .channel(&self.key.channel)
                .and_then(|ch| self.standard_end(ch));
            effects.push(Effect {
                cause,
                at: d,
                kind: EffectKind::Alarm {
                    alarm: Alarm::AgentDelay,
                    view: self.published,
                    closes_at,
                },
            });
        }
    }
}
