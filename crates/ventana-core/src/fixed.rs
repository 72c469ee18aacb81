//! Integers that keep their full width in binary formats.
//!
//! The state codec writes small integers compactly (a varint), which makes a random 128-bit
//! hash or an instant in nanoseconds one byte longer than its fixed width. Types holding
//! such values serialise them, for binary formats, as their little-endian bytes, and as the
//! plain number for human-readable ones (JSON), as before.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `Serialize` and `Deserialize` for a one-integer tuple struct (`$type($int)`): the number
/// in a human-readable format, its little-endian bytes in a binary one.
macro_rules! fixed_width_serde {
    ($type:ty, $int:ty) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                crate::fixed::serialize(&self.0, self.0.to_le_bytes(), serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                crate::fixed::deserialize(deserializer, <$int>::from_le_bytes).map(Self)
            }
        }
    };
}
pub(crate) use fixed_width_serde;

/// Serialises `value` as the number, or as `le_bytes` for a binary format.
pub(crate) fn serialize<S, T, const N: usize>(
    value: &T,
    le_bytes: [u8; N],
    serializer: S,
) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    T: Serialize,
    [u8; N]: Serialize,
{
    if serializer.is_human_readable() {
        value.serialize(serializer)
    } else {
        le_bytes.serialize(serializer)
    }
}

/// Reads what [`serialize`] wrote.
pub(crate) fn deserialize<'de, D, T, const N: usize>(
    deserializer: D,
    from_le_bytes: fn([u8; N]) -> T,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
    [u8; N]: Deserialize<'de>,
{
    if deserializer.is_human_readable() {
        T::deserialize(deserializer)
    } else {
        <[u8; N]>::deserialize(deserializer).map(from_le_bytes)
    }
}
