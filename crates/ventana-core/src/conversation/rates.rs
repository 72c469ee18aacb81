//! R9: the tagged messages sent, as many and as long as the policy's rates can ask about.

use serde::{Deserialize, Serialize};

use crate::event::Tag;
use crate::policy::{ChannelPolicy, Rate};
use crate::time::Timestamp;

/// Tagged messages sent (or echoed outside the standard window), oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct TagSends(Vec<(Tag, Timestamp)>);

impl TagSends {
    /// `rate.count` messages with `tag` were sent in the `rate.per` before `t`.
    pub(super) fn limited(&self, tag: Tag, rate: Rate, t: Timestamp) -> bool {
        let recent = self
            .0
            .iter()
            .filter(|(sent, at)| *sent == tag && t.since(*at) < rate.per)
            .count();
        recent >= rate.count as usize
    }

    /// Remembers a send of `tag` at `now`, if a rate of `ch` can ask about it.
    pub(super) fn record(&mut self, tag: Tag, now: Timestamp, ch: Option<&ChannelPolicy>) {
        let Some(memory) = ch.and_then(|ch| ch.rate_memory(tag)) else {
            return;
        };
        self.0.push((tag, now));
        let kept = self.0.iter().filter(|(t, _)| *t == tag).count();
        if kept > memory.count as usize {
            if let Some(oldest) = self.0.iter().position(|(t, _)| *t == tag) {
                self.0.remove(oldest);
            }
        }
    }

    /// Drops the sends no rate of their tag can ask about any more.
    pub(super) fn forget(&mut self, now: Timestamp, ch: Option<&ChannelPolicy>) {
        if self.0.is_empty() {
            return;
        }
        self.0.retain(|(tag, at)| {
            ch.and_then(|ch| ch.rate_memory(*tag))
                .is_some_and(|memory| now.since(*at) < memory.per)
        });
    }
}
