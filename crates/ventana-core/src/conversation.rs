//! One conversation's facts, the state derived from them, `decide` and `evolve`.
//!
//! The conversation keeps facts (when the customer last wrote, when the business last
//! answered, comments, holds, ...) and derives its state and window from them and the
//! instant asked about (docs/rules.md §1.2). Time only moves forward: before an event is applied,
//! every deadline up to its decision time fires in order, each as if a `tick` at that
//! instant had been applied (§1.3).

use std::borrow::Cow;
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use crate::decision::{Acceptance, MessagingType, Reason, Rejection, Verdict};
use crate::effect::{Alarm, Cause, Effect, EffectKind};
use crate::event::{
    DeliveryStatus, Event, EventBody, MessageKind, Origin, Outbound, PlatformErrorClass, Sender,
    Status, Tag,
};
use crate::key::{Channel, ConversationKey};
use crate::memory::{Messages, SeenIds, push_bounded};
use crate::policy::{ChannelPolicy, Policy, Rate};
use crate::time::Timestamp;
use crate::view::{State, View, Window};

/// What became of an event handed to [`Conversation::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// R14: the same id was applied within [`crate::DEDUPE_HORIZON`]; nothing changed.
    Duplicate,
}

/// An event that must not be folded (README "Events": a decision time and the clock skew).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// `occurred_at` lies more than `max_clock_skew` after the decision time.
    ClockSkew {
        occurred_at: Timestamp,
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

/// The facts of one conversation. Serialisable as is: a snapshot restored and fed the rest
/// of a log gives the same outputs as the whole log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    key: ConversationKey,
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
    /// R11: the last [`crate::MEMORY`] comments and their one private reply each, oldest
    /// first, however old.
    comments: VecDeque<Comment>,
    /// R11: messages held until the customer accepts.
    holds: Vec<Hold>,
    /// R9: tagged messages sent (or echoed outside the standard window), as far back and as
    /// many as the policy's rates can ask about.
    tag_sends: Vec<(Tag, Timestamp)>,
    /// R14: the ids of the events applied within the dedupe horizon.
    seen: SeenIds,
    /// R13: the outbound messages delivery statuses may refer to.
    messages: Messages,
    /// The last published view.
    published: View,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stretch {
    /// `occurred_at` of the first unanswered customer message.
    since: Timestamp,
    alarmed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Comment {
    id: String,
    at: Timestamp,
    used: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Hold {
    message_id: String,
    until: Timestamp,
}

/// What may be sent now (a snapshot's `allowed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Allowed {
    Message,
    HumanAgent,
    Template,
    PrivateReply,
    CommentReply,
    Tag(Tag),
}

impl Allowed {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::HumanAgent => "human_agent",
            Self::Template => "template",
            Self::PrivateReply => "private_reply",
            Self::CommentReply => "comment_reply",
            Self::Tag(tag) => tag.as_str(),
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "message" => Some(Self::Message),
            "human_agent" => Some(Self::HumanAgent),
            "template" => Some(Self::Template),
            "private_reply" => Some(Self::PrivateReply),
            "comment_reply" => Some(Self::CommentReply),
            _ => Tag::parse(text).map(Self::Tag),
        }
    }
}

/// A conversation as seen from outside at an instant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub conversation: ConversationKey,
    pub at: Option<Timestamp>,
    pub view: View,
    pub last_customer_at: Option<Timestamp>,
    pub allowed: Vec<Allowed>,
    pub events: u64,
    pub last_event_id: Option<String>,
}

fn hash_id(id: &str) -> u128 {
    xxh3_128(id.as_bytes())
}

fn accept(
    messaging_type: MessagingType,
    tag: Option<Tag>,
    window_ends_at: Option<Timestamp>,
) -> Verdict {
    Verdict::Accepted(Acceptance {
        messaging_type,
        tag,
        comment_id: None,
        window_ends_at,
    })
}

fn reject(reason: Reason, closed_at: Option<Timestamp>) -> Verdict {
    Verdict::Rejected(Rejection {
        reason,
        closed_at,
        cut_by_platform: false,
    })
}

impl Conversation {
    pub fn new(key: ConversationKey) -> Self {
        Self {
            key,
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
            comments: VecDeque::new(),
            holds: Vec::new(),
            tag_sends: Vec::new(),
            seen: SeenIds::default(),
            messages: Messages::default(),
            published: View::default(),
        }
    }

    pub fn key(&self) -> &ConversationKey {
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

    // ----- derived state (§1.2) -----

    fn is_unanswered(&self) -> bool {
        match (self.last_customer_at, self.last_answer_at) {
            (Some(customer), Some(answer)) => customer > answer,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// R13: a window error from the platform ends the windows of customer messages up to it.
    fn cut(&self) -> Option<Timestamp> {
        match (self.window_cut_at, self.last_customer_at) {
            (Some(cut), Some(last)) if last <= cut => Some(cut),
            _ => None,
        }
    }

    fn standard_end(&self, ch: &ChannelPolicy) -> Option<Timestamp> {
        let end = self.last_customer_at?.plus(ch.standard_window);
        Some(self.cut().map_or(end, |cut| cut.min(end)))
    }

    fn extension_end(&self, ch: &ChannelPolicy) -> Option<Timestamp> {
        if !ch.extension_on() {
            return None;
        }
        let end = self.last_customer_at?.plus(ch.human_agent_window);
        Some(self.cut().map_or(end, |cut| cut.min(end)))
    }

    fn allowance_end(comment: &Comment, ch: &ChannelPolicy) -> Timestamp {
        comment.at.plus(ch.private_reply_window)
    }

    /// Comments whose private-reply allowance is in force at `t`.
    fn allowances<'a>(
        &'a self,
        ch: &'a ChannelPolicy,
        t: Timestamp,
    ) -> impl Iterator<Item = &'a Comment> + 'a {
        self.comments
            .iter()
            .filter(move |c| t < Self::allowance_end(c, ch))
    }

    /// R11 (§1.1 step 5.5): the allowance a free-form DM at `t` becomes the private reply of.
    fn oldest_unused<'a>(&'a self, ch: &'a ChannelPolicy, t: Timestamp) -> Option<&'a Comment> {
        self.allowances(ch, t)
            .filter(|c| !c.used)
            .min_by_key(|c| c.at)
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
        let unused_end = self
            .allowances(ch, t)
            .filter(|c| !c.used)
            .map(|c| Self::allowance_end(c, ch))
            .max();
        if let Some(end) = unused_end {
            return view(State::Open, Window::PrivateReply, Some(end));
        }
        if let Some(end) = self
            .allowances(ch, t)
            .map(|c| Self::allowance_end(c, ch))
            .max()
        {
            return view(State::AwaitingCustomer, Window::PrivateReply, Some(end));
        }
        view(State::Expired, Window::None, None)
    }

    // ----- decide (§1.1) -----

    /// The verdict on `out` at `t`, without changing anything.
    pub fn decide(&self, out: &Outbound, t: Timestamp, policy: &Policy) -> Verdict {
        if out.kind == MessageKind::CommentReply {
            return Verdict::Accepted(Acceptance {
                messaging_type: MessagingType::CommentReply,
                tag: None,
                comment_id: out.comment_id.clone(),
                window_ends_at: None,
            });
        }
        if self.active && self.closed && out.kind != MessageKind::Template {
            return reject(Reason::ConversationClosed, None);
        }
        let ch = policy.channel(&self.key.channel);
        match out.kind {
            MessageKind::Template => match (&self.key.channel, ch) {
                (Channel::WhatsApp, _) => accept(MessagingType::Template, None, None),
                (Channel::Messenger, Some(ch)) if ch.utility_templates => {
                    accept(MessagingType::Template, None, None)
                }
                _ => reject(Reason::TemplateNotSupported, None),
            },
            MessageKind::PrivateReply => self.decide_private_reply(out, t, ch),
            MessageKind::Message | MessageKind::CommentReply => self.decide_free_form(out, t, ch),
        }
    }

    fn decide_private_reply(
        &self,
        out: &Outbound,
        t: Timestamp,
        ch: Option<&ChannelPolicy>,
    ) -> Verdict {
        let comment = out
            .comment_id
            .as_deref()
            .and_then(|id| self.comments.iter().find(|c| c.id == id));
        let (Some(comment), Some(ch)) = (comment, ch) else {
            return reject(Reason::NoCustomerMessage, None);
        };
        let end = Self::allowance_end(comment, ch);
        if comment.used {
            reject(Reason::PrivateReplyUsed, None)
        } else if t >= end {
            reject(Reason::PrivateReplyExpired, Some(end))
        } else {
            Verdict::Accepted(Acceptance {
                messaging_type: MessagingType::PrivateReply,
                tag: None,
                comment_id: Some(comment.id.clone()),
                window_ends_at: Some(end),
            })
        }
    }

    fn decide_free_form(
        &self,
        out: &Outbound,
        t: Timestamp,
        ch: Option<&ChannelPolicy>,
    ) -> Verdict {
        // 5.1
        if !self.active {
            return reject(Reason::NoCustomerMessage, None);
        }
        let Some(ch) = ch else {
            return accept(MessagingType::Response, None, None);
        };
        // 5.2
        let standard_end = self.standard_end(ch);
        if let Some(end) = standard_end.filter(|end| t < *end) {
            return accept(MessagingType::Response, None, Some(end));
        }
        // 5.3: automation may use the extension only with another tag valid under R8
        // (§1.4 point 7); anything else it asks for needs a human.
        let other_tag = out.tag.filter(|tag| *tag != Tag::HumanAgent);
        if let Some(end) = self.extension_end(ch).filter(|end| t < *end) {
            let valid_other_tag = other_tag.is_some_and(|tag| ch.valid_tag(tag, t).is_some());
            match (out.sender, other_tag) {
                (Sender::Agent, None) => {
                    return self
                        .rate_limited(Tag::HumanAgent, ch.human_agent_rate, t)
                        .unwrap_or(accept(
                            MessagingType::MessageTag,
                            Some(Tag::HumanAgent),
                            Some(end),
                        ));
                }
                (Sender::Automation, _) if !valid_other_tag => {
                    return reject(Reason::HumanAgentRequiresHuman, standard_end);
                }
                _ => {}
            }
        }
        // 5.4
        if let Some(tag) = other_tag {
            return match ch.valid_tag(tag, t) {
                Some(policy) => self.rate_limited(tag, policy.rate, t).unwrap_or(accept(
                    MessagingType::MessageTag,
                    Some(tag),
                    None,
                )),
                None => reject(Reason::TagNotAllowed, standard_end),
            };
        }
        // 5.5
        if let Some(comment) = self.oldest_unused(ch, t) {
            return Verdict::Accepted(Acceptance {
                messaging_type: MessagingType::PrivateReply,
                tag: None,
                comment_id: Some(comment.id.clone()),
                window_ends_at: Some(Self::allowance_end(comment, ch)),
            });
        }
        // 5.6
        let used_end = self
            .allowances(ch, t)
            .map(|c| Self::allowance_end(c, ch))
            .max();
        if let Some(until) = used_end {
            return if ch.hold_until_accepted {
                Verdict::Held { until }
            } else {
                reject(Reason::AwaitingCustomerAcceptance, None)
            };
        }
        // 5.7: `extended_window_expired` only when an extension period really existed,
        // not when a platform window error cut both windows inside the first 24 h (§1.4
        // point 8).
        let cut_by_platform = self.cut().is_some();
        let (reason, closed_at) = match (self.extension_end(ch), standard_end) {
            (Some(extension), Some(standard)) if extension > standard => {
                (Reason::ExtendedWindowExpired, Some(extension))
            }
            _ => (Reason::WindowExpired, standard_end),
        };
        Verdict::Rejected(Rejection {
            reason,
            closed_at,
            cut_by_platform,
        })
    }

    /// R9: `Some(rejection)` when `tag` has been sent `rate.count` times in the last `rate.per`.
    fn rate_limited(&self, tag: Tag, rate: Option<Rate>, t: Timestamp) -> Option<Verdict> {
        let rate = rate?;
        let recent = self
            .tag_sends
            .iter()
            .filter(|(sent, at)| *sent == tag && t.since(*at) < rate.per)
            .count();
        (recent >= rate.count as usize).then(|| reject(Reason::TagRateLimited, None))
    }

    /// What may be sent at the clock (a snapshot's `allowed`).
    pub fn allowed(&self, policy: &Policy) -> Vec<Allowed> {
        let Some(t) = self.clock else {
            return Vec::new();
        };
        let probe = |sender, kind, tag| Outbound {
            sender,
            kind,
            tag,
            comment_id: None,
            origin: Origin::Request,
        };
        let accepted_as = |out: &Outbound| match self.decide(out, t, policy) {
            Verdict::Accepted(a) => Some(a),
            _ => None,
        };
        let mut allowed = Vec::new();
        // What a DM would become is listed as that (§1.4 point 9): in the private-reply
        // band it is `private_reply`, below, not `message`.
        if accepted_as(&probe(Sender::Agent, MessageKind::Message, None))
            .is_some_and(|a| a.messaging_type == MessagingType::Response)
        {
            allowed.push(Allowed::Message);
        }
        if accepted_as(&probe(
            Sender::Agent,
            MessageKind::Message,
            Some(Tag::HumanAgent),
        ))
        .is_some_and(|a| a.tag == Some(Tag::HumanAgent))
        {
            allowed.push(Allowed::HumanAgent);
        }
        if accepted_as(&probe(Sender::Automation, MessageKind::Template, None)).is_some() {
            allowed.push(Allowed::Template);
        }
        if let Some(ch) = policy.channel(&self.key.channel) {
            if !self.closed && self.allowances(ch, t).any(|c| !c.used) {
                allowed.push(Allowed::PrivateReply);
            }
        }
        if self.key.channel.has_comments() {
            allowed.push(Allowed::CommentReply);
        }
        if let Some(ch) = policy.channel(&self.key.channel) {
            for tag_policy in &ch.tags {
                let tag = Some(tag_policy.tag);
                if accepted_as(&probe(Sender::Automation, MessageKind::Message, tag))
                    .is_some_and(|a| a.tag == tag)
                {
                    allowed.push(Allowed::Tag(tag_policy.tag));
                }
            }
        }
        allowed
    }

    pub fn snapshot(&self, policy: &Policy) -> Snapshot {
        Snapshot {
            conversation: self.key.clone(),
            at: self.clock,
            view: self.published,
            last_customer_at: self.last_customer_at,
            allowed: self.allowed(policy),
            events: self.events,
            last_event_id: (!self.last_event_id.is_empty()).then(|| self.last_event_id.clone()),
        }
    }

    // ----- time (§1.3) -----

    /// The instant the `agent_delay` alarm of the current unanswered stretch is due, on every
    /// channel, unrestricted ones included (§1.4 point 2).
    fn agent_alarm(&self, policy: &Policy) -> Option<Timestamp> {
        let delay = policy.notifier.agent_delay;
        self.stretch
            .filter(|s| !s.alarmed && !delay.is_zero())
            .map(|s| s.since.plus(delay))
    }

    /// The earliest deadline strictly after the clock, if any.
    pub fn next_deadline(&self, policy: &Policy) -> Option<Timestamp> {
        let clock = self.clock?;
        let agent_alarm = self.agent_alarm(policy);
        let Some(ch) = policy.channel(&self.key.channel) else {
            return agent_alarm.filter(|d| *d > clock);
        };
        let window_closing = policy.notifier.window_closing;
        let standard_end = self.standard_end(ch);
        let closing_alarm = standard_end
            .filter(|end| !window_closing.is_zero() && self.closing_alarm_for != Some(*end))
            .map(|end| end.minus(window_closing));
        [
            standard_end,
            self.extension_end(ch),
            closing_alarm,
            agent_alarm,
        ]
        .into_iter()
        .flatten()
        .chain(self.comments.iter().map(|c| Self::allowance_end(c, ch)))
        .chain(self.holds.iter().map(|h| h.until))
        .filter(|d| *d > clock)
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

    /// Everything due at deadline `d`, as one `tick` at `d`.
    fn fire<'e>(&mut self, d: Timestamp, policy: &Policy, effects: &mut Vec<Effect<'e>>) {
        let cause = Cause::Tick(d);
        let mut i = 0;
        while i < self.holds.len() {
            if self.holds[i].until <= d {
                let hold = self.holds.remove(i);
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
            } else {
                i += 1;
            }
        }
        self.publish(cause, d, policy, effects);
        let standard_end = policy
            .channel(&self.key.channel)
            .and_then(|ch| self.standard_end(ch));
        let window_closing = policy.notifier.window_closing;
        if let Some(end) = standard_end {
            if !window_closing.is_zero()
                && self.closing_alarm_for != Some(end)
                && end.minus(window_closing) == d
            {
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
        }
        if self.agent_alarm(policy) == Some(d) {
            if let Some(stretch) = self.stretch.as_mut() {
                stretch.alarmed = true;
            }
            effects.push(Effect {
                cause,
                at: d,
                kind: EffectKind::Alarm {
                    alarm: Alarm::AgentDelay,
                    view: self.published,
                    closes_at: standard_end,
                },
            });
        }
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

    // ----- evolve -----

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
        let id = hash_id(&event.id);
        // R14, literally: a duplicate changes nothing, not even the clock (§1.4 point 12).
        if !is_tick && self.seen.contains(id, now) {
            return Applied::Duplicate;
        }
        self.advance(now, policy, effects);
        if is_tick {
            return Applied::Applied;
        }
        self.seen.insert(id, now);
        self.forget_tag_sends(now, policy);
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
                // A comment reported again is the same comment: its allowance, used or not,
                // stays as it was (§1.4 point 4).
                if !self.comments.iter().any(|c| &c.id == comment_id) {
                    push_bounded(
                        &mut self.comments,
                        Comment {
                            id: comment_id.clone(),
                            at: event.occurred_at,
                            used: false,
                        },
                    );
                }
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
        Applied::Applied
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
            if let (Some(end), false) = (standard_end, self.holds.is_empty()) {
                for hold in std::mem::take(&mut self.holds) {
                    self.record_answer(hash_id(&hold.message_id), now);
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
            self.stretch = Some(Stretch {
                since: event.occurred_at,
                alarmed: false,
            });
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
                .map(|since| Stretch {
                    since,
                    alarmed: false,
                });
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
    fn record_answer(&mut self, message: u128, now: Timestamp) {
        self.last_answer_at = Some(now);
        if !self.is_unanswered() {
            self.stretch = None;
        }
        self.messages.decided(message, now, false);
    }

    fn use_allowance(&mut self, comment_id: Option<&str>) {
        if let Some(comment) =
            comment_id.and_then(|id| self.comments.iter_mut().find(|c| c.id == id))
        {
            comment.used = true;
        }
    }

    /// R9: remembers a tagged send, as many and as long as the policy's rates can ask about.
    fn record_tag_send(&mut self, tag: Tag, now: Timestamp, policy: &Policy) {
        let Some(memory) = policy
            .channel(&self.key.channel)
            .and_then(|ch| ch.rate_memory(tag))
        else {
            return;
        };
        self.tag_sends.push((tag, now));
        let kept = self.tag_sends.iter().filter(|(t, _)| *t == tag).count();
        if kept > memory.count as usize {
            if let Some(oldest) = self.tag_sends.iter().position(|(t, _)| *t == tag) {
                self.tag_sends.remove(oldest);
            }
        }
    }

    fn record_verdict(
        &mut self,
        id: u128,
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
                    self.use_allowance(acceptance.comment_id.as_deref());
                }
                if let Some(tag) = acceptance.tag {
                    self.record_tag_send(tag, now, policy);
                }
            }
            Verdict::Held { until } => {
                self.messages.decided(id, now, false);
                self.holds.push(Hold {
                    message_id: message_id.to_owned(),
                    until: *until,
                });
            }
            Verdict::Rejected(_) => self.messages.decided(id, now, true),
        }
    }

    /// R15: an echo is an outbound fact in every respect but the decision (§1.4 point 6):
    /// it answers the customer, a free-form DM while only a private-reply allowance is in
    /// force uses that allowance, and a tagged one outside the standard window counts
    /// toward the tag's rate.
    fn record_echo(&mut self, id: u128, out: &Outbound, now: Timestamp, policy: &Policy) {
        if out.kind == MessageKind::CommentReply {
            return;
        }
        let ch = policy.channel(&self.key.channel);
        let in_private_reply_band = self.view_at(now, policy).window == Window::PrivateReply;
        let outside_standard =
            ch.is_some_and(|ch| self.standard_end(ch).is_none_or(|end| now >= end));
        self.record_answer(id, now);
        match out.kind {
            MessageKind::PrivateReply => self.use_allowance(out.comment_id.as_deref()),
            MessageKind::Message if in_private_reply_band && out.tag.is_none() => {
                let oldest = ch
                    .and_then(|ch| self.oldest_unused(ch, now))
                    .map(|c| c.id.clone());
                self.use_allowance(oldest.as_deref());
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
        let message = self.messages.reported(hash_id(&report.message_id), now);
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
        self.holds.retain(|h| h.message_id != report.message_id);
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

    /// R9: drops the tagged sends no rate of their tag can ask about any more.
    fn forget_tag_sends(&mut self, now: Timestamp, policy: &Policy) {
        if self.tag_sends.is_empty() {
            return;
        }
        let ch = policy.channel(&self.key.channel);
        self.tag_sends.retain(|(tag, at)| {
            ch.and_then(|ch| ch.rate_memory(*tag))
                .is_some_and(|memory| now.since(*at) < memory.per)
        });
    }
}
