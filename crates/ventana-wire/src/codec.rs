//! The binary form of a conversation state (what the store keeps): one format-version byte,
//! then bincode. The only place that knows bincode.

use thiserror::Error;
use ventana_core::Conversation;

/// Bumped whenever the layout of [`Conversation`] changes incompatibly.
pub const STATE_FORMAT: u8 = 2;

#[derive(Debug, Error)]
pub enum CodecError {
    /// Written by another version of ventana: refuse rather than misread.
    #[error("conversation state has format {found}, this ventana reads format {STATE_FORMAT}")]
    Version { found: u8 },
    #[error("conversation state is empty")]
    Empty,
    #[error("corrupt conversation state: {0}")]
    Corrupt(#[from] bincode::Error),
}

pub fn encode_state(conversation: &Conversation) -> Vec<u8> {
    let mut bytes = vec![STATE_FORMAT];
    bincode::serialize_into(&mut bytes, conversation).expect("a conversation always serialises");
    bytes
}

pub fn decode_state(bytes: &[u8]) -> Result<Conversation, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&STATE_FORMAT, rest)) => Ok(bincode::deserialize(rest)?),
        Some((&found, _)) => Err(CodecError::Version { found }),
    }
}
