//! The binary form of a conversation state (what the store keeps): one format-version byte,
//! then bincode. The only place that knows bincode.
//!
//! Format 3 writes integers as varints (lengths, counters and enum variants take a byte
//! where format 2 took four or eight); the id hashes and instants keep their fixed width
//! (`ventana-core`, `fixed.rs`). Format 2 (fixed-width integers, bincode's legacy
//! configuration) is still read, so a store written by an earlier version opens as it is and
//! its states move to format 3 as they are next written.

use bincode::Options;
use thiserror::Error;
use ventana_core::Conversation;

/// The format [`encode_state`] writes; bumped whenever the layout of [`Conversation`]
/// changes incompatibly.
pub const STATE_FORMAT: u8 = 3;

/// The earlier format [`decode_state`] still reads: the same fields, fixed-width integers.
pub const FIXED_WIDTH_FORMAT: u8 = 2;

/// A stored state that cannot be read.
#[derive(Debug, Error)]
pub enum CodecError {
    /// Written by another version of ventana: refuse rather than misread.
    #[error(
        "conversation state has format {found}, this ventana reads formats {FIXED_WIDTH_FORMAT} and {STATE_FORMAT}"
    )]
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

/// Format 3's bincode configuration: varint integers, little-endian, nothing after the state.
fn varint() -> impl Options {
    bincode::DefaultOptions::new()
}

/// A conversation's state as the store keeps it.
pub fn encode_state(conversation: &Conversation) -> Vec<u8> {
    let mut bytes = vec![STATE_FORMAT];
    varint()
        .serialize_into(&mut bytes, conversation)
        .expect("a conversation always serialises");
    bytes
}

/// Reads what [`encode_state`] wrote, or a state in the earlier format 2.
pub fn decode_state(bytes: &[u8]) -> Result<Conversation, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&STATE_FORMAT, rest)) => Ok(varint().deserialize(rest)?),
        Some((&FIXED_WIDTH_FORMAT, rest)) => Ok(bincode::deserialize(rest)?),
        Some((&found, _)) => Err(CodecError::Version { found }),
    }
}
