//! R11: comments with their one private reply each, and the messages held until the
//! customer accepts the conversation.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::memory::push_bounded;
use crate::policy::ChannelPolicy;
use crate::time::Timestamp;

/// A customer comment and whether its private reply was used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Comment {
    pub(super) id: String,
    pub(super) at: Timestamp,
    pub(super) used: bool,
}

impl Comment {
    /// When its private-reply allowance ends.
    pub(super) fn allowance_end(&self, ch: &ChannelPolicy) -> Timestamp {
        self.at.plus(ch.private_reply_window)
    }
}

/// The last [`crate::MEMORY`] comments, oldest first, however old.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Comments(VecDeque<Comment>);

impl Comments {
    /// A comment seen for the first time (§1.4 point 4: a comment reported again is the
    /// same comment, its allowance as it was).
    pub(super) fn record(&mut self, id: &str, at: Timestamp) {
        if !self.0.iter().any(|c| c.id == id) {
            push_bounded(
                &mut self.0,
                Comment {
                    id: id.to_owned(),
                    at,
                    used: false,
                },
            );
        }
    }

    pub(super) fn find(&self, id: &str) -> Option<&Comment> {
        self.0.iter().find(|c| c.id == id)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Comment> {
        self.0.iter()
    }

    /// Comments whose private-reply allowance is in force at `t`.
    pub(super) fn in_force<'a>(
        &'a self,
        ch: &'a ChannelPolicy,
        t: Timestamp,
    ) -> impl Iterator<Item = &'a Comment> + 'a {
        self.0.iter().filter(move |c| t < c.allowance_end(ch))
    }

    /// The end of the latest allowance in force at `t` (`unused_only`: of one not yet used).
    pub(super) fn latest_end(
        &self,
        ch: &ChannelPolicy,
        t: Timestamp,
        unused_only: bool,
    ) -> Option<Timestamp> {
        self.in_force(ch, t)
            .filter(|c| !(unused_only && c.used))
            .map(|c| c.allowance_end(ch))
            .max()
    }

    /// §1.1 step 5.5: the allowance a free-form DM at `t` becomes the private reply of.
    pub(super) fn oldest_unused<'a>(
        &'a self,
        ch: &'a ChannelPolicy,
        t: Timestamp,
    ) -> Option<&'a Comment> {
        self.in_force(ch, t)
            .filter(|c| !c.used)
            .min_by_key(|c| c.at)
    }

    /// The private reply to `comment_id` went out.
    pub(super) fn use_allowance(&mut self, comment_id: Option<&str>) {
        if let Some(comment) = comment_id.and_then(|id| self.0.iter_mut().find(|c| c.id == id)) {
            comment.used = true;
        }
    }
}

/// A message held until the customer accepts, at the latest until `until`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Hold {
    pub(super) message_id: String,
    pub(super) until: Timestamp,
}

/// The messages held (R11 with `hold_until_accepted`), in the order they were held.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Holds(Vec<Hold>);

impl Holds {
    pub(super) fn hold(&mut self, message_id: &str, until: Timestamp) {
        self.0.push(Hold {
            message_id: message_id.to_owned(),
            until,
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Hold> {
        self.0.iter()
    }

    /// The customer accepted: every held message goes, in order.
    pub(super) fn release(&mut self) -> Vec<Hold> {
        std::mem::take(&mut self.0)
    }

    /// The holds that ran out at or before `t`, in order.
    pub(super) fn expire(&mut self, t: Timestamp) -> Vec<Hold> {
        let (expired, kept) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|h| h.until <= t);
        self.0 = kept;
        expired
    }

    /// A held message that failed on the platform is no longer held.
    pub(super) fn forget(&mut self, message_id: &str) {
        self.0.retain(|h| h.message_id != message_id);
    }
}
