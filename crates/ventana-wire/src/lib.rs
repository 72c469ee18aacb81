//! ventana's encodings, kept at the edge: the JSON forms of events and snapshots, their
//! protobuf forms, the TOML policy file, and the binary state codec.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod codec;
mod error;
pub mod json;
pub mod policy;
pub mod proto;
pub mod subjects;

pub use error::WireError;
pub use json::{
    event_to_json, output_to_json, parse_event, parse_output, snapshot_to_json, snapshot_value,
};
pub use policy::{PolicyError, parse_policy, parse_span};
