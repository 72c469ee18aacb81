//! The pure heart of ventana: conversation keys, input events, the five states, windows,
//! channel policies as data, the decision procedure and the fold (docs/rules.md §1).
//!
//! Nothing here performs I/O, spawns tasks or reads a clock: time is always an argument,
//! and what happened comes out as [`Effect`] values.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod conversation;
mod decision;
mod effect;
mod event;
mod fixed;
mod ids;
mod key;
mod policy;
mod rule;
mod text;
mod time;
mod view;

pub use conversation::memory::{DEDUPE_HORIZON, MEMORY};
pub use conversation::{Allowed, Applied, Conversation, Invalid, Snapshot, validate};
pub use decision::{Acceptance, MessagingType, Reason, Rejection, Verdict};
pub use effect::{Alarm, Cause, Effect, EffectKind};
pub use event::{
    DeliveryStatus, Event, EventBody, MessageKind, Origin, Outbound, PlatformError,
    PlatformErrorClass, Sender, Status, Tag, Unsendable,
};
pub use ids::{BadId, IdProblem, MAX_ID_BYTES, TICK_ID_PREFIX, check_id, check_name, tick_id};
pub use key::{Channel, ConversationKey, ConversationToken, base32_lowercase};
pub use policy::{ChannelPolicy, NotifierPolicy, Policy, Rate, TAG_DEPRECATION, TagPolicy};
pub use rule::Rule;
pub use time::{Span, Timestamp, TimestampError};
pub use view::{State, View, Window};
