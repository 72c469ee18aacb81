//! The decision procedure (docs/rules.md §1.1): the verdict on one outbound message at an
//! instant, without changing anything. Each step names the rule it applies.

use super::Conversation;
use crate::decision::{Acceptance, MessagingType, Reason, Rejection, Verdict};
use crate::event::{MessageKind, Outbound, Sender, Tag};
use crate::key::Channel;
use crate::policy::{ChannelPolicy, Policy, Rate};
use crate::time::Timestamp;

pub(super) fn accept(
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
    /// The verdict on `out` at `t`, without changing anything.
    pub fn decide(&self, out: &Outbound, t: Timestamp, policy: &Policy) -> Verdict {
        // Rule::R10: public comment replies always go.
        if out.kind == MessageKind::CommentReply {
            return Verdict::Accepted(Acceptance {
                messaging_type: MessagingType::CommentReply,
                tag: None,
                comment_id: out.comment_id.clone(),
                window_ends_at: None,
            });
        }
        // Rule::R5: a closed conversation takes templates only.
        if self.active && self.closed && out.kind != MessageKind::Template {
            return reject(Reason::ConversationClosed, None);
        }
        let ch = policy.channel(&self.key.channel);
        match out.kind {
            // Rule::R6 (WhatsApp) and Rule::R8 (Messenger utility templates).
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

    /// Rule::R11: one private reply per comment, within its allowance.
    fn decide_private_reply(
        &self,
        out: &Outbound,
        t: Timestamp,
        ch: Option<&ChannelPolicy>,
    ) -> Verdict {
        let comment = out
            .comment_id
            .as_deref()
            .and_then(|id| self.comments.find(id));
        let (Some(comment), Some(ch)) = (comment, ch) else {
            return reject(Reason::NoCustomerMessage, None);
        };
        let end = comment.allowance_end(ch);
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
        // 5.1, Rule::R1: the customer starts.
        if !self.active {
            return reject(Reason::NoCustomerMessage, None);
        }
        let Some(ch) = ch else {
            return accept(MessagingType::Response, None, None);
        };
        // 5.2, Rule::R2: inside the standard window.
        let standard_end = self.standard_end(ch);
        if let Some(end) = standard_end.filter(|end| t < *end) {
            return accept(MessagingType::Response, None, Some(end));
        }
        // 5.3, Rule::R7: automation may use the extension only with another tag valid under
        // Rule::R8 (§1.4 point 7); anything else it asks for needs a human.
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
        // 5.4, Rule::R8: message tags outside the window.
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
        // 5.5, Rule::R11: a DM while only an allowance is in force becomes the private reply.
        if let Some(comment) = self.comments.oldest_unused(ch, t) {
            return Verdict::Accepted(Acceptance {
                messaging_type: MessagingType::PrivateReply,
                tag: None,
                comment_id: Some(comment.id.clone()),
                window_ends_at: Some(comment.allowance_end(ch)),
            });
        }
        // 5.6, Rule::R11: the allowance is used; refused, or held until the customer accepts.
        if let Some(until) = self.comments.latest_end(ch, t, false) {
            return if ch.hold_until_accepted {
                Verdict::Held { until }
            } else {
                reject(Reason::AwaitingCustomerAcceptance, None)
            };
        }
        // 5.7, Rule::R4: outside every window. `extended_window_expired` only when an
        // extension period really existed, not when a platform window error (Rule::R13)
        // cut both windows inside the first 24 h (§1.4 point 8).
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

    /// Rule::R9: `Some(rejection)` when `tag` has been sent `rate.count` times in the last
    /// `rate.per`.
    fn rate_limited(&self, tag: Tag, rate: Option<Rate>, t: Timestamp) -> Option<Verdict> {
        let rate = rate?;
        self.tag_sends
            .limited(tag, rate, t)
            .then(|| reject(Reason::TagRateLimited, None))
    }
}
