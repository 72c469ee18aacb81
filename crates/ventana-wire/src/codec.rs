//! The binary form of a conversation state (what the store keeps): one format-version byte,
//! then bincode. The only place that knows bincode.

use thiserror::Error;
use ventana_core::Conversation;

/// Bumped whenever the layout of [`Conversation`] changes incompatibly.
pub const STATE_FORMAT: u8 = 2;

/// A stored state that cannot be read.
#[derive(Debug, Error)]
pub enum CodecError {
    /// Written by another version of ventana: refuse rather than misread.
    #[error("conversation state has format {found}, this ventana reads format {STATE_FORMAT}")]
    Version {
        /// The format byte found.
        found: u8,
    },
    /// No bytes at all.
    #[error("conversation state is empty")]
    Empty,
    /// The format byte is right but the rest does not decode.
    #[error("corrupt conversation state: {0}")]
    Corrupt(#[from] bincode::Error),
}

/// A conversation's state as the store keeps it.
pub fn encode_state(conversation: &Conversation) -> Vec<u8> {
    let mut bytes = vec![STATE_FORMAT];
    bincode::serialize_into(&mut bytes, conversation).expect("a conversation always serialises");
    bytes
}

/// Reads what [`encode_state`] wrote.
pub fn decode_state(bytes: &[u8]) -> Result<Conversation, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&STATE_FORMAT, rest)) => Ok(bincode::deserialize(rest)?),
        Some((&found, _)) => Err(CodecError::Version { found }),
    }
}
