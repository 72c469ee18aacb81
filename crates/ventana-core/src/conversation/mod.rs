//! One conversation: its facts, and how an event changes them (docs/rules.md §1.3).
//!
//! The conversation keeps facts (when the customer last wrote, when the business last
//! answered, comments, holds, ...) and derives its state and window from them and the
//! instant asked about (§1.2, `window.rs`). Time only moves forward: before an event is
//! applied, every deadline up to its decision time fires in order, each as if a `tick` at
//! that instant had been applied (`deadlines.rs`). Each piece of sub-state is a type of its
//! own: `memory.rs` (dedupe and the messages statuses refer to), `comments.rs` (private
//! replies and holds, Rule::R11), `rates.rs` (Rule::R9), `stretch.rs` (the agent-delay
//! alarm); `decide.rs` is the decision procedure (§1.1) and `snapshot.rs` what may be sent.
//!
//! The fields are encoded by bincode in declaration order (`ventana-wire::codec`); the
//! sub-state types are transparent wrappers or keep their fields' order, so a state written
//! in format 2 (the same fields, fixed-width integers) still reads.

mod comments;
mod deadlines;
mod decide;
pub(crate) mod memory;
mod rates;
mod snapshot;
mod stretch;
mod validate;
mod window;

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use self::comments::{Comments, Holds};
use self::decide::accept;
use self::memory::{IdHash, Messages, SeenIds};
use self::rates::TagSends;
pub use self::snapshot::{Allowed, Snapshot};
use self::stretch::Stretch;
pub use self::validate::{Invalid, validate};
use crate::decision::{MessagingType, Verdict};
use crate::effect::{Cause, Effect, EffectKind};
use crate::event::{
    DeliveryStatus, Event, EventBody, MessageKind, Origin, Outbound, PlatformErrorClass, Status,
    Tag,
};
use crate::key::ConversationKey;
use crate::policy::Policy;
use crate::time::Timestamp;
use crate::view::{View, Window};

/// What became of an event handed to [`Conversation::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Folded: time passed to its decision time and the event was applied.
    New,
    /// Rule::R14: the same id was applied within [`crate::DEDUPE_HORIZON`]; nothing changed.
    Duplicate,
}

/// The facts of one conversation. Serialisable as is: a snapshot restored and fed the rest
/// of a log gives the same outputs as the whole log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Shared with every output rendered for it: an output takes a reference, not a copy of
    /// the key's strings. (Serialised as the key itself.)
    key: Arc<ConversationKey>,
    /// The latest decision time seen; never goes back.
    clock: Option<Timestamp>,
    session: u32,
    /// Input events applied (duplicates and ticks not counted).
    events: u64,
    last_event_id: String,
    /// R2: the latest `occurred_at` of a customer direct message.
    last_customer_at: Option<Timestamp>,
    /// Whether any customer activity (message or comment) was ever seen.
    active: bool,
    /// Decision time of the last accepted or echoed outbound message (not comment replies).
    last_answer_at: Option<Timestamp>,
    /// R5: closed by the operator after the last customer activity.
    closed: bool,
    /// R13: the platform ended the window at this instant, for customer messages up to it.
    window_cut_at: Option<Timestamp>,
    /// The unanswered stretch the `agent_delay` alarm watches.
    stretch: Option<Stretch>,
    /// The standard window end whose `window_closing` alarm has fired.
    closing_alarm_for: Option<Timestamp>,
    /// Rule::R11: the last [`crate::MEMORY`] comments and their one private reply each,
    /// oldest first, however old.
    comments: Comments,
    /// Rule::R11: messages held until the customer accepts.
    holds: Holds,
    /// Rule::R9: tagged messages sent (or echoed outside the standard window), as far back
    /// and as many as the policy's rates can ask about.
    tag_sends: TagSends,
    /// R14: the ids of the events applied within the dedupe horizon.
    seen: SeenIds,
    /// R13: the outbound messages delivery statuses may refer to.
    messages: Messages,
    /// The last published view.
    published: View,
}

impl Conversation {
    /// A conversation that has seen nothing yet.
    pub fn new(key: ConversationKey) -> Self {
        Self {
            key: Arc::new(key),
            clock: None,
            session: 0,
            events: 0,
            last_event_id: String::new(),
            last_customer_at: None,
            active: false,
            last_answer_at: None,
            closed: false,
            window_cut_at: None,
            stretch: None,
            closing_alarm_for: None,
            comments: Comments::default(),
            holds: Holds::default(),
            tag_sends: TagSends::default(),
            seen: SeenIds::default(),
            messages: Messages::default(),
            published: View::default(),
        }
    }

    /// Which conversation this is.
    pub fn key(&self) -> &ConversationKey {
        &self.key
    }

    /// The key as shared with this conversation's outputs.
    pub fn shared_key(&self) -> &Arc<ConversationKey> {
        &self.key
    }

    /// The latest decision time this conversation has seen.
    pub fn clock(&self) -> Option<Timestamp> {
        self.clock
    }

    /// The view last published (as of [`Self::clock`]).
    pub fn view(&self) -> View {
        self.published
    }

    /// Publishes the view at `t` if it changed.
    fn publish<'e>(
        &mut self,
        cause: Cause<'e>,
        t: Timestamp,
        policy: &Policy,
        effects: &mut Vec<Effect<'e>>,
    ) {
        let view = self.view_at(t, policy);
        if view != self.published {
            effects.push(Effect {
                cause,
                at: t,
                kind: EffectKind::StateChanged {
                    from: self.published,
                    to: view,
                },
            });
            self.published = view;
        }
    }

    /// Folds one event: advances to its decision time, then applies it. `effects` receives
    /// what happened, in output order per cause. The caller has [`validate`]d the event.
    pub fn apply<'e>(
        &mut self,
        event: &'e Event,
        policy: &Policy,
        effects: &mut Vec<Effect<'e>>,
    ) -> Applied {
        let now = self.clock.map_or(event.decision_time(), |clock| {
            clock.max(event.decision_time())
        });
        let is_tick = matches!(event.body, EventBody::Tick { .. });
        let id = IdHash::of(&event.id);
        // R14, literally: a duplicate changes nothing, not even the clock (§1.4 point 12).
        // Recorded before the deadlines up to `now` fire, which never read it.
        if !is_tick && !self.seen.first_time(id, now) {
            return Applied::Duplicate;
        }
        self.advance(now, policy, effects);
        if is_tick {
            return Applied::New;
        }
        self.tag_sends
            .forget(now, policy.channel(&self.key.channel));
        self.events += 1;
        self.last_event_id.clear();
        self.last_event_id.push_str(&event.id);
        let cause = Cause::Event(&event.id);
        match &event.body {
            EventBody::CustomerMessage => self.on_customer_message(event, now, policy, effects),
            EventBody::CustomerComment { comment_id } => {
                let dormant = self.published.state.is_dormant();
                self.active = true;
                self.closed = false;
                self.comments.record(comment_id, event.occurred_at);
                self.open_session_if(dormant, cause, now, policy, effects);
            }
            EventBody::OutboundMessage(out) => {
                match out.origin {
                    Origin::Echo => self.record_echo(id, out, now, policy),
                    Origin::Request => {
                        let verdict = self.decide(out, now, policy);
                        self.record_verdict(id, &event.id, &verdict, now, policy);
                        effects.push(Effect {
                            cause,
                            at: now,
                            kind: EffectKind::Decided {
                                message_id: Cow::Borrowed(&event.id),
                                verdict,
                            },
                        });
                    }
                }
                self.publish(cause, now, policy, effects);
            }
            EventBody::DeliveryStatus(status) => {
                self.on_delivery_status(status, cause, now, policy, effects)
            }
            EventBody::ConversationClosed { .. } => {
                self.closed = true;
                self.publish(cause, now, policy, effects);
            }
            EventBody::ConversationReopened { .. } => {
                self.closed = false;
                self.publish(cause, now, policy, effects);
            }
            EventBody::Tick { .. } => unreachable!("ticks return early"),
        }
        Applied::New
    }

    fn on_customer_message<'e>(
        &mut self,
        event: &'e Event,
        now: Timestamp,
        policy: &Policy,
        effects: &mut Vec<Effect<'e>>,
    ) {
        let cause = Cause::Event(&event.id);
        let dormant = self.published.state.is_dormant();
        self.active = true;
        self.closed = false;
        self.last_customer_at = Some(
            self.last_customer_at
                .map_or(event.occurred_at, |last| last.max(event.occurred_at)),
        );
        if let Some(ch) = policy.channel(&self.key.channel) {
            let standard_end = self.standard_end(ch).filter(|end| now < *end);
            // Rule::R11: the customer accepted; what was held goes as a response.
            if let (Some(end), false) = (standard_end, self.holds.is_empty()) {
                for hold in self.holds.release() {
                    self.record_answer(IdHash::of(&hold.message_id), now);
                    effects.push(Effect {
                        cause,
                        at: now,
                        kind: EffectKind::Decided {
                            message_id: Cow::Owned(hold.message_id),
                            verdict: accept(MessagingType::Response, None, Some(end)),
                        },
                    });
                }
            }
        }
        if self.is_unanswered() && self.stretch.is_none() {
            self.stretch = Some(Stretch::since(event.occurred_at));
        }
        self.open_session_if(dormant, cause, now, policy, effects);
    }

    /// Publishes the new view and, when customer activity woke a dormant conversation,
    /// starts a new session, and with it a new unanswered stretch (§1.4 point 1).
    fn open_session_if<'e>(
        &mut self,
        dormant: bool,
        cause: Cause<'e>,
        now: Timestamp,
        policy: &Policy,
        effects: &mut Vec<Effect<'e>>,
    ) {
        let opened = dormant && !self.view_at(now, policy).state.is_dormant();
        if opened {
            self.session += 1;
            self.stretch = self
                .last_customer_at
                .filter(|_| self.is_unanswered())
                .map(Stretch::since);
        }
        self.publish(cause, now, policy, effects);
        if opened {
            effects.push(Effect {
                cause,
                at: now,
                kind: EffectKind::SessionOpened {
                    view: self.published,
                },
            });
        }
    }

    /// An accepted, echoed or released message answers the customer. The unanswered stretch
    /// ends only if the customer is answered after it (§1.4 point 3): an answer decided
    /// before the customer's message (within the clock skew) leaves them waiting.
    fn record_answer(&mut self, message: IdHash, now: Timestamp) {
        self.last_answer_at = Some(now);
        if !self.is_unanswered() {
            self.stretch = None;
        }
        self.messages.decided(message, now, false);
    }

    /// Rule::R9: remembers a tagged send.
    fn record_tag_send(&mut self, tag: Tag, now: Timestamp, policy: &Policy) {
        self.tag_sends
            .record(tag, now, policy.channel(&self.key.channel));
    }

    fn record_verdict(
        &mut self,
        id: IdHash,
        message_id: &str,
        verdict: &Verdict,
        now: Timestamp,
        policy: &Policy,
    ) {
        match verdict {
            Verdict::Accepted(acceptance) => {
                if acceptance.messaging_type == MessagingType::CommentReply {
                    return;
                }
                self.record_answer(id, now);
                if acceptance.messaging_type == MessagingType::PrivateReply {
                    self.comments
                        .use_allowance(acceptance.comment_id.as_deref());
                }
                if let Some(tag) = acceptance.tag {
                    self.record_tag_send(tag, now, policy);
                }
            }
            Verdict::Held { until } => {
                self.messages.decided(id, now, false);
                self.holds.hold(message_id, *until);
            }
            Verdict::Rejected(_) => self.messages.decided(id, now, true),
        }
    }

    /// R15: an echo is an outbound fact in every respect but the decision (§1.4 point 6):
    /// it answers the customer, a free-form DM while only a private-reply allowance is in
    /// force uses that allowance, and a tagged one outside the standard window counts
    /// toward the tag's rate.
    fn record_echo(&mut self, id: IdHash, out: &Outbound, now: Timestamp, policy: &Policy) {
        if out.kind == MessageKind::CommentReply {
            return;
        }
        let ch = policy.channel(&self.key.channel);
        let in_private_reply_band = self.view_at(now, policy).window == Window::PrivateReply;
        let outside_standard =
            ch.is_some_and(|ch| self.standard_end(ch).is_none_or(|end| now >= end));
        self.record_answer(id, now);
        match out.kind {
            MessageKind::PrivateReply => self.comments.use_allowance(out.comment_id.as_deref()),
            MessageKind::Message if in_private_reply_band && out.tag.is_none() => {
                let oldest = ch
                    .and_then(|ch| self.comments.oldest_unused(ch, now))
                    .map(|c| c.id.clone());
                self.comments.use_allowance(oldest.as_deref());
            }
            _ => {}
        }
        if let Some(tag) = out.tag.filter(|_| outside_standard) {
            self.record_tag_send(tag, now, policy);
        }
    }

    fn on_delivery_status<'e>(
        &mut self,
        report: &'e DeliveryStatus,
        cause: Cause<'e>,
        now: Timestamp,
        policy: &Policy,
        effects: &mut Vec<Effect<'e>>,
    ) {
        let message = self.messages.reported(IdHash::of(&report.message_id), now);
        // Statuses only move forward; `failed` is terminal.
        if message
            .status
            .is_some_and(|current| current >= report.status)
        {
            return;
        }
        message.status = Some(report.status);
        if report.status != Status::Failed {
            return;
        }
        // R13 cuts at the message's decision (or, for one ventana never decided, at the
        // first status seen for it: §1.4 point 5), so a window that later customer activity
        // opened is never cut.
        let decided_at = message.at;
        // `failed` is terminal: a held message that failed (sent anyway) is no longer held,
        // and one ventana rejected already had its `delivery_failed`; a window error still
        // tells where the window ended.
        let already_failed = message.rejected;
        self.holds.forget(&report.message_id);
        let class = report
            .error
            .as_ref()
            .map_or(PlatformErrorClass::Other, |e| e.class(&self.key.channel));
        let window_closed_at = (class == PlatformErrorClass::WindowClosed).then_some(decided_at);
        if let Some(cut) = window_closed_at {
            self.window_cut_at = Some(self.window_cut_at.map_or(cut, |c| c.max(cut)));
        }
        if !already_failed {
            effects.push(Effect {
                cause,
                at: now,
                kind: EffectKind::PlatformFailure {
                    message_id: &report.message_id,
                    error: report.error.as_ref(),
                    class,
                    window_closed_at,
                },
            });
        }
        self.publish(cause, now, policy, effects);
    }
}
