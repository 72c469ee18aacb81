//! Time (docs/rules.md §1.3): the deadlines a conversation has, as data. One function,
//! [`Conversation::deadlines`], lists them; the next one to come and what fires at an
//! instant are both read from it.

use super::{Conversation, hash_id};
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
    /// Every deadline this conversation has, in no particular order (past ones included).
    /// A channel without a policy (`custom:*`) has only the agent-delay alarm (§1.4
    /// point 2).
    fn deadlines<'a>(
        &'a self,
        policy: &'a Policy,
    ) -> impl Iterator<Item = (Timestamp, Deadline)> + 'a {
        let agent_delay = self
            .stretch
            .and_then(|s| s.alarm_at(policy.notifier.agent_delay))
            .map(|at| (at, Deadline::AgentDelay));
        let ch = policy.channel(&self.key.channel);
        let standard_end = ch.and_then(|ch| self.standard_end(ch));
        let warning = policy.notifier.window_closing;
        let window_closing = standard_end
            .filter(|end| !warning.is_zero() && self.closing_alarm_for != Some(*end))
            .map(|end| {
                (
                    end.minus(warning),
                    Deadline::WindowClosing { closes_at: end },
                )
            });
        let windows = [
            standard_end.map(|at| (at, Deadline::StandardEnd)),
            ch.and_then(|ch| self.extension_end(ch))
                .map(|at| (at, Deadline::ExtensionEnd)),
            window_closing,
        ];
        let comments_and_holds = ch.into_iter().flat_map(move |ch| {
            self.comments
                .iter()
                .map(move |c| (c.allowance_end(ch), Deadline::AllowanceEnd))
                .chain(self.holds.iter().map(|h| (h.until, Deadline::HoldExpiry)))
        });
        windows
            .into_iter()
            .chain([agent_delay])
            .flatten()
            .chain(comments_and_holds)
    }

    /// The earliest deadline strictly after the clock, if any.
    pub fn next_deadline(&self, policy: &Policy) -> Option<Timestamp> {
        let clock = self.clock?;
        self.deadlines(policy)
            .map(|(at, _)| at)
            .filter(|at| *at > clock)
            .min()
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
        for (at, deadline) in self.deadlines(policy) {
            match deadline {
                Deadline::WindowClosing { closes_at } if at == d => closing_alarm = Some(closes_at),
                Deadline::AgentDelay if at == d => agent_alarm = true,
                // Their effect is the view they change (and the holds below).
                _ => {}
            }
        }
        for hold in self.holds.expire(d) {
            // A hold that expired is a rejected message.
            self.messages.decided(hash_id(&hold.message_id), d, true);
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
