//! The rules of docs/rules.md §1.1 as values. A decision step, the sentence a rejection's
//! detail begins with and `ventana explain`'s rule column all name a rule through
//! [`Rule`], so searching for `Rule::R7` finds the code, its sentence and (in
//! `tests/tests/rules.rs`, scenarios `r7_*`) its tests.

use std::fmt;

use crate::decision::{Acceptance, MessagingType, Reason};
use crate::event::Tag;
use crate::key::Channel;

/// One of ventana's fifteen rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// The customer starts.
    R1,
    /// 24 hours from the customer's last message, by the platform's clock.
    R2,
    /// Only the customer extends a window.
    R3,
    /// Outside every window nothing is delivered.
    R4,
    /// An operator may close a conversation; the customer's activity re-opens it.
    R5,
    /// WhatsApp: 24 h, no extension, templates at any time.
    R6,
    /// Messenger and Instagram: a human agent may answer for 7 days (`human_agent`).
    R7,
    /// Messenger message tags and utility templates outside the window.
    R8,
    /// Optional rates per tag and for the extension.
    R9,
    /// Public comment replies are always allowed.
    R10,
    /// One private reply per comment within 7 days; holds until the customer accepts.
    R11,
    /// Auto-replies and warnings.
    R12,
    /// The platform's delivery reports; window errors close the window.
    R13,
    /// Duplicates change nothing.
    R14,
    /// Echoes are answers, never decided.
    R15,
}

crate::text_enum!(
    Rule {
        R1 => "R1",
        R2 => "R2",
        R3 => "R3",
        R4 => "R4",
        R5 => "R5",
        R6 => "R6",
        R7 => "R7",
        R8 => "R8",
        R9 => "R9",
        R10 => "R10",
        R11 => "R11",
        R12 => "R12",
        R13 => "R13",
        R14 => "R14",
        R15 => "R15",
    }
);

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Reason {
    /// The rule a message is refused under for this reason (a platform's report is
    /// [`Rule::R13`] whatever its reason: see `ventana-notifier`'s `Decided`).
    pub fn rule(self) -> Rule {
        match self {
            Reason::NoCustomerMessage => Rule::R1,
            Reason::WindowExpired => Rule::R4,
            Reason::ExtendedWindowExpired | Reason::HumanAgentRequiresHuman => Rule::R7,
            Reason::TagNotAllowed | Reason::TemplateNotSupported => Rule::R8,
            Reason::TagRateLimited => Rule::R9,
            Reason::PrivateReplyUsed
            | Reason::PrivateReplyExpired
            | Reason::AwaitingCustomerAcceptance
            | Reason::HoldExpired => Rule::R11,
            Reason::ConversationClosed => Rule::R5,
            Reason::RecipientUnavailable | Reason::PlatformError => Rule::R13,
        }
    }
}

impl Acceptance {
    /// The rule a message is accepted under on `channel`.
    pub fn rule(&self, channel: &Channel) -> Rule {
        match (self.messaging_type, self.tag) {
            (MessagingType::Response, _) => Rule::R2,
            (MessagingType::MessageTag, Some(Tag::HumanAgent)) => Rule::R7,
            (MessagingType::MessageTag, _) => Rule::R8,
            (MessagingType::Template, _) if *channel == Channel::WhatsApp => Rule::R6,
            (MessagingType::Template, _) => Rule::R8,
            (MessagingType::PrivateReply, _) => Rule::R11,
            (MessagingType::CommentReply, _) => Rule::R10,
        }
    }
}
