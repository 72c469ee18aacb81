//! Channel policies as data (README "Configuration: the policy file" lists every default). Queried with `now`; never read a clock.

use serde::{Deserialize, Serialize};

use crate::event::Tag;
use crate::key::Channel;
use crate::time::{Span, Timestamp};

/// Everything the rules need to know about the operator's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// An event whose `occurred_at` is more than this after its decision time is invalid.
    pub max_clock_skew: Span,
    /// WhatsApp's rules.
    pub whatsapp: ChannelPolicy,
    /// Messenger's rules.
    pub messenger: ChannelPolicy,
    /// Instagram Direct's rules.
    pub instagram: ChannelPolicy,
    /// When ventana asks for auto-replies and warnings.
    pub notifier: NotifierPolicy,
}

/// The rules of one Meta channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelPolicy {
    /// R2: how long after the customer's last message free-form messages are allowed.
    pub standard_window: Span,
    /// R7: how long after the customer's last message a human agent may still answer with the
    /// `human_agent` tag. Zero (or not longer than the standard window) turns it off.
    pub human_agent_window: Span,
    /// R6/R8: whether templates may be sent (always on WhatsApp).
    pub utility_templates: bool,
    /// R11: how long after a comment its one private reply may be sent; zero = none.
    pub private_reply_window: Span,
    /// R11: hold further DMs until the customer accepts, instead of rejecting them.
    pub hold_until_accepted: bool,
    /// R8: tags allowed outside the standard window, with their validity and rate.
    pub tags: Vec<TagPolicy>,
    /// R9: an optional rate limit on `human_agent` messages.
    pub human_agent_rate: Option<Rate>,
}

/// R8: one message tag allowed outside the standard window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagPolicy {
    /// The tag.
    pub tag: Tag,
    /// It is refused before this instant, if set.
    pub valid_from: Option<Timestamp>,
    /// It is refused from this instant on, if set (Meta retires tags on a date).
    pub valid_until: Option<Timestamp>,
    /// R9: its optional rate.
    pub rate: Option<Rate>,
}

/// R9: at most `count` messages per rolling `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// How many messages.
    pub count: u32,
    /// The rolling period they are counted over.
    pub per: Span,
}

/// R12 and the operator warnings of §1.3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifierPolicy {
    /// Ask for an `agent_delayed` auto-reply once the customer has waited this long; zero = off.
    pub agent_delay: Span,
    /// Warn this long before a standard window closes; zero = off.
    pub window_closing: Span,
    /// Also ask for a `window_closing` auto-reply to the customer.
    pub remind_customer: bool,
    /// Ask for a `conversation_opened` auto-reply on every new session.
    pub greet_on_open: bool,
}

/// Meta's reported deprecation of the Messenger message tags other than `human_agent`.
pub const TAG_DEPRECATION: Timestamp = Timestamp::from_unix_seconds(1_777_248_000); // 2026-04-27T00:00:00Z

impl Default for Policy {
    fn default() -> Self {
        let tag = |tag| TagPolicy {
            tag,
            valid_from: None,
            valid_until: Some(TAG_DEPRECATION),
            rate: None,
        };
        Self {
            max_clock_skew: Span::from_minutes(5),
            whatsapp: ChannelPolicy {
                standard_window: Span::from_hours(24),
                human_agent_window: Span::ZERO,
                utility_templates: true,
                private_reply_window: Span::ZERO,
                hold_until_accepted: false,
                tags: Vec::new(),
                human_agent_rate: None,
            },
            messenger: ChannelPolicy {
                standard_window: Span::from_hours(24),
                human_agent_window: Span::from_days(7),
                utility_templates: true,
                private_reply_window: Span::from_days(7),
                hold_until_accepted: false,
                tags: vec![
                    tag(Tag::AccountUpdate),
                    tag(Tag::ConfirmedEventUpdate),
                    tag(Tag::PostPurchaseUpdate),
                ],
                human_agent_rate: None,
            },
            instagram: ChannelPolicy {
                standard_window: Span::from_hours(24),
                human_agent_window: Span::from_days(7),
                utility_templates: false,
                private_reply_window: Span::from_days(7),
                hold_until_accepted: false,
                tags: Vec::new(),
                human_agent_rate: None,
            },
            notifier: NotifierPolicy {
                agent_delay: Span::from_minutes(15),
                window_closing: Span::from_hours(1),
                remind_customer: false,
                greet_on_open: false,
            },
        }
    }
}

impl Policy {
    /// The rules of a channel; `None` for `custom:*` channels, which have no window.
    pub fn channel(&self, channel: &Channel) -> Option<&ChannelPolicy> {
        match channel {
            Channel::WhatsApp => Some(&self.whatsapp),
            Channel::Messenger => Some(&self.messenger),
            Channel::Instagram => Some(&self.instagram),
            Channel::Custom(_) => None,
        }
    }

    /// The rules of `channel`, to change (`None` for custom channels).
    pub fn channel_mut(&mut self, channel: &Channel) -> Option<&mut ChannelPolicy> {
        match channel {
            Channel::WhatsApp => Some(&mut self.whatsapp),
            Channel::Messenger => Some(&mut self.messenger),
            Channel::Instagram => Some(&mut self.instagram),
            Channel::Custom(_) => None,
        }
    }
}

impl ChannelPolicy {
    /// R7: the human-agent extension is on when it reaches past the standard window.
    pub fn extension_on(&self) -> bool {
        self.human_agent_window > self.standard_window
    }

    /// R9: how many of `tag`'s latest sends, and how far back, a rate check can need: the
    /// largest count and the longest period of the rates set for it (the extension's rate
    /// for `human_agent`). `None` when no rate limits it.
    pub fn rate_memory(&self, tag: Tag) -> Option<Rate> {
        let rates = self
            .tags
            .iter()
            .filter(|p| p.tag == tag)
            .filter_map(|p| p.rate)
            .chain(self.human_agent_rate.filter(|_| tag == Tag::HumanAgent));
        rates.reduce(|a, b| Rate {
            count: a.count.max(b.count),
            per: a.per.max(b.per),
        })
    }

    /// R8: the policy of `tag` when it is listed and valid at `t`.
    pub fn valid_tag(&self, tag: Tag, t: Timestamp) -> Option<&TagPolicy> {
        self.tags.iter().find(|p| {
            p.tag == tag
                && p.valid_from.is_none_or(|from| from <= t)
                && p.valid_until.is_none_or(|until| t < until)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deprecation_instant_is_the_documented_one() {
        assert_eq!(TAG_DEPRECATION.to_string(), "2026-04-27T00:00:00Z");
    }

    #[test]
    fn tags_are_valid_until_their_end_exclusive() {
        let messenger = Policy::default().messenger;
        let before = Timestamp::parse_rfc3339("2026-04-26T23:59:59Z").unwrap();
        assert!(messenger.valid_tag(Tag::AccountUpdate, before).is_some());
        assert!(
            messenger
                .valid_tag(Tag::AccountUpdate, TAG_DEPRECATION)
                .is_none()
        );
        assert!(messenger.valid_tag(Tag::HumanAgent, before).is_none());
    }
}
