//! What an id or a name in an event may be. Ids end up in NATS headers (`Nats-Msg-Id`),
//! subjects' tokens, logs and Graph API paths, so every entry point checks them here first:
//! at most [`MAX_ID_BYTES`] bytes, no control characters (no CR or LF to end a header
//! early), and ids of the service's own ticks reserved to the service.

use std::fmt;

use crate::event::{Event, EventBody};
use crate::key::{Channel, ConversationToken};
use crate::time::Timestamp;

/// The longest id or name accepted, in bytes.
pub const MAX_ID_BYTES: usize = 512;

/// The prefix of the ids of the `tick`s the service's clock logs; no other event may use it
/// (one could otherwise suppress a conversation's real tick as a duplicate).
pub const TICK_ID_PREFIX: &str = "tick:";

/// What is wrong with an id or a name. Never carries the value itself: it may be text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdProblem {
    /// An empty id.
    Empty,
    /// Longer than [`MAX_ID_BYTES`].
    TooLong {
        /// Its length in bytes.
        bytes: usize,
    },
    /// It holds a control character (CR, LF, NUL, ...).
    ControlCharacter,
    /// An event other than a tick uses the [`TICK_ID_PREFIX`].
    ReservedPrefix,
    /// A tick's id is not [`tick_id`] of its conversation and instant.
    NotTheTicksOwn,
}

impl fmt::Display for IdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty"),
            Self::TooLong { bytes } => {
                write!(f, "{bytes} bytes long, at most {MAX_ID_BYTES} accepted")
            }
            Self::ControlCharacter => f.write_str("holds a control character"),
            Self::ReservedPrefix => write!(
                f,
                "only the service's own ticks have ids beginning with {TICK_ID_PREFIX:?}"
            ),
            Self::NotTheTicksOwn => write!(
                f,
                "a tick's id is {TICK_ID_PREFIX}<conversation token>:<its instant>"
            ),
        }
    }
}

/// An event field that failed [`Event::check_ids`], and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadId {
    /// The field's name, as in the JSON form (`id`, `conversation.contact_id`, ...).
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: IdProblem,
}

impl fmt::Display for BadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.field, self.problem)
    }
}

impl std::error::Error for BadId {}

/// The id of the `tick` for `token`'s deadline at `at`: the same deadline always gets the
/// same id, so a re-published tick is dropped as a duplicate, and a tick bound to its own
/// conversation and instant can never stand in for another (one with the id of a real
/// deadline but an earlier instant would otherwise suppress it).
pub fn tick_id(token: ConversationToken, at: Timestamp) -> String {
    format!("{TICK_ID_PREFIX}{token}:{at}")
}

/// Checks a name: at most [`MAX_ID_BYTES`] bytes and no control characters (may be empty).
pub fn check_name(text: &str) -> Result<(), IdProblem> {
    if text.len() > MAX_ID_BYTES {
        return Err(IdProblem::TooLong { bytes: text.len() });
    }
    if text.chars().any(char::is_control) {
        return Err(IdProblem::ControlCharacter);
    }
    Ok(())
}

/// Checks an id: a name that is not empty.
pub fn check_id(text: &str) -> Result<(), IdProblem> {
    if text.is_empty() {
        return Err(IdProblem::Empty);
    }
    check_name(text)
}

fn field(field: &'static str, checked: Result<(), IdProblem>) -> Result<(), BadId> {
    checked.map_err(|problem| BadId { field, problem })
}

impl Event {
    /// Checks every id and name the event carries (see the module's doc), naming the first
    /// field that fails. Every decoder of input calls it, so no event that fails it is logged
    /// by ventana's own tools or folded.
    pub fn check_ids(&self) -> Result<(), BadId> {
        field("id", check_id(&self.id))?;
        let problem = match self.body {
            EventBody::Tick { at } => (self.id != tick_id(self.conversation.token(), at))
                .then_some(IdProblem::NotTheTicksOwn),
            _ => self
                .id
                .starts_with(TICK_ID_PREFIX)
                .then_some(IdProblem::ReservedPrefix),
        };
        if let Some(problem) = problem {
            return Err(BadId {
                field: "id",
                problem,
            });
        }
        let key = &self.conversation;
        if let Channel::Custom(name) = &key.channel {
            field("conversation.channel", check_name(name))?;
        }
        field("conversation.account", check_name(&key.account))?;
        field("conversation.channel_id", check_name(&key.channel_id))?;
        field("conversation.contact_id", check_name(&key.contact_id))?;
        match &self.body {
            EventBody::CustomerComment { comment_id } => field("comment_id", check_id(comment_id))?,
            EventBody::OutboundMessage(out) => {
                if let Some(comment_id) = &out.comment_id {
                    field("comment_id", check_id(comment_id))?;
                }
            }
            EventBody::DeliveryStatus(status) => {
                field("message_id", check_id(&status.message_id))?;
                if let Some(title) = status.error.as_ref().and_then(|e| e.title.as_deref()) {
                    field("error.title", check_name(title))?;
                }
            }
            EventBody::ConversationClosed { by } | EventBody::ConversationReopened { by } => {
                if let Some(by) = by {
                    field("by", check_name(by))?;
                }
            }
            EventBody::CustomerMessage | EventBody::Tick { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_printable_and_not_empty() {
        assert_eq!(check_id("wamid.HBgL=="), Ok(()));
        assert_eq!(
            check_id("m\u{200b}1"),
            Ok(()),
            "format characters are not control"
        );
        assert_eq!(check_id(""), Err(IdProblem::Empty));
        assert_eq!(check_name(""), Ok(()));
        for bad in ["a\r\nX: 1", "a\nb", "a\0", "a\u{7f}", "a\u{85}"] {
            assert_eq!(check_id(bad), Err(IdProblem::ControlCharacter), "{bad:?}");
        }
        assert_eq!(check_id(&"x".repeat(MAX_ID_BYTES)), Ok(()));
        assert_eq!(
            check_id(&"x".repeat(MAX_ID_BYTES + 1)),
            Err(IdProblem::TooLong {
                bytes: MAX_ID_BYTES + 1
            })
        );
    }
}
