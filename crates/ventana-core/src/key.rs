//! Conversation keys and their stable token.

use std::fmt;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

/// The channel a conversation runs on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Channel {
    /// WhatsApp Business (Cloud API): 24 h, templates, no extension (R6).
    WhatsApp,
    /// Facebook Messenger, with the page's comments (R7, R8, R10, R11).
    Messenger,
    /// Instagram Direct, with the account's comments (R7, R10, R11).
    Instagram,
    /// `custom:<name>`: a channel of the operator's own, with no window (unrestricted).
    Custom(String),
}

impl Channel {
    /// Reads `whatsapp`, `messenger`, `instagram` or `custom:<name>` (name not empty).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "whatsapp" => Some(Self::WhatsApp),
            "messenger" => Some(Self::Messenger),
            "instagram" => Some(Self::Instagram),
            _ => match text.strip_prefix("custom:") {
                Some(name) if !name.is_empty() => Some(Self::Custom(name.to_owned())),
                _ => None,
            },
        }
    }

    /// True for the channels where public comments and private replies exist.
    pub fn has_comments(&self) -> bool {
        matches!(self, Self::Messenger | Self::Instagram)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WhatsApp => f.write_str("whatsapp"),
            Self::Messenger => f.write_str("messenger"),
            Self::Instagram => f.write_str("instagram"),
            Self::Custom(name) => write!(f, "custom:{name}"),
        }
    }
}

/// Identifies one conversation: a contact on one business account of one channel.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConversationKey {
    /// The channel.
    pub channel: Channel,
    /// The business account (tenant) the conversation belongs to.
    pub account: String,
    /// The business's own id on the channel: phone number id, page id, Instagram account id.
    pub channel_id: String,
    /// The customer's id on the channel.
    pub contact_id: String,
}

/// A stable, subject-safe name for a conversation: 26 lowercase base32 characters of a
/// 128-bit hash of the key. The same key gives the same token in every version and process.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConversationToken(u128);

impl ConversationKey {
    /// A key from its four parts.
    pub fn new(
        channel: Channel,
        account: impl Into<String>,
        channel_id: impl Into<String>,
        contact_id: impl Into<String>,
    ) -> Self {
        Self {
            channel,
            account: account.into(),
            channel_id: channel_id.into(),
            contact_id: contact_id.into(),
        }
    }

    /// The key's token. Fields are joined with a separator no field may contain
    /// ambiguously (each is length-prefixed), so distinct keys never share an input.
    pub fn token(&self) -> ConversationToken {
        let (prefix, name) = match &self.channel {
            Channel::WhatsApp => ("whatsapp", ""),
            Channel::Messenger => ("messenger", ""),
            Channel::Instagram => ("instagram", ""),
            Channel::Custom(name) => ("custom:", name.as_str()),
        };
        let parts = [&self.account, &self.channel_id, &self.contact_id];
        let len = 32 + prefix.len() + name.len() + parts.iter().map(|p| p.len()).sum::<usize>();
        // One-shot hashing of the joined input equals streaming it, and skips the streaming
        // state's buffer; almost every key fits on the stack.
        let mut stack = [0u8; 256];
        let mut heap = Vec::new();
        let input: &mut [u8] = if len <= stack.len() {
            &mut stack[..len]
        } else {
            heap.resize(len, 0);
            &mut heap
        };
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            input[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&((prefix.len() + name.len()) as u64).to_le_bytes());
        put(prefix.as_bytes());
        put(name.as_bytes());
        for part in parts {
            put(&(part.len() as u64).to_le_bytes());
            put(part.as_bytes());
        }
        ConversationToken(xxh3_128(input))
    }
}

impl fmt::Display for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.channel, self.account, self.channel_id, self.contact_id
        )
    }
}

impl ConversationToken {
    /// The partition (`0..count`) the conversation's input subject falls into.
    pub fn partition(self, count: u32) -> u32 {
        (self.0 % u128::from(count.max(1))) as u32
    }

    /// The hash itself (for compact storage).
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// The token of a hash read back from [`ConversationToken::as_u128`].
    pub fn from_u128(value: u128) -> Self {
        Self(value)
    }

    /// Reads a token printed by `Display`.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 26 {
            return None;
        }
        let bytes = data_encoding::BASE32_NOPAD
            .decode(text.to_ascii_uppercase().as_bytes())
            .ok()?;
        Some(Self(u128::from_be_bytes(bytes.try_into().ok()?)))
    }
}

/// A 128-bit hash as 26 lowercase base32 characters (RFC 4648's alphabet, big-endian,
/// without padding): how tokens (and the output ids made from them) print. Written on the
/// stack: printing allocates nothing. Every output prints two of them, so the 128 bits are
/// cut here into three 40-bit groups of eight characters and a last byte of two: 131
/// instructions, where a general-purpose encoder took 385 (README, "Performance").
pub fn base32_lowercase(hash: u128) -> [u8; 26] {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut text = [0u8; 26];
    let (groups, last) = text.split_at_mut(24);
    for (index, chars) in groups.chunks_exact_mut(8).enumerate() {
        // Bits 127..88, 87..48, 47..8 of the hash, as the low 40 bits.
        let bits = (hash >> (88 - 40 * index)) as u64;
        for (position, char) in chars.iter_mut().enumerate() {
            *char = ALPHABET[((bits >> (35 - 5 * position)) & 31) as usize];
        }
    }
    let byte = hash as u8;
    last[0] = ALPHABET[usize::from(byte >> 3)];
    last[1] = ALPHABET[usize::from(byte & 7) << 2];
    text
}

impl fmt::Display for ConversationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = base32_lowercase(self.0);
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ConversationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConversationToken({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(contact: &str) -> ConversationKey {
        ConversationKey::new(Channel::WhatsApp, "acme", "15550001111", contact)
    }

    #[test]
    fn base32_prints_as_rfc_4648_lowercase() {
        // xorshift: many hashes, every bit pattern in every position.
        let mut state = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834_u128;
        for _ in 0..20_000 {
            state ^= state << 35;
            state ^= state >> 59;
            state ^= state << 17;
            for hash in [state, state >> 64, state << 64, u128::MAX, 0] {
                let general = data_encoding::BASE32_NOPAD
                    .encode(&hash.to_be_bytes())
                    .to_ascii_lowercase();
                assert_eq!(base32_lowercase(hash), general.as_bytes(), "{hash:x}");
            }
        }
    }

    #[test]
    fn token_is_stable_and_round_trips() {
        let token = key("4915112345678").token();
        // Pinned: a change here would move every conversation to another subject.
        assert_eq!(token.to_string(), "67voorwjpv6xi6djl47ec34ote");
        assert_eq!(token.to_string().len(), 26);
        assert_eq!(ConversationToken::parse(&token.to_string()), Some(token));
        assert!(token.partition(16) < 16);
    }

    #[test]
    fn long_keys_hash_as_short_ones_do() {
        // Keys past the stack buffer take the heap path; both hash the same joined input.
        let long = "x".repeat(600);
        let key = ConversationKey::new(Channel::Custom("sms".into()), "acme", &long, "c");
        let mut streamed = xxhash_rust::xxh3::Xxh3Default::new();
        for part in [b"sms".len() + 7, 4, long.len(), 1].iter().zip([
            "custom:sms",
            "acme",
            long.as_str(),
            "c",
        ]) {
            streamed.update(&(*part.0 as u64).to_le_bytes());
            streamed.update(part.1.as_bytes());
        }
        assert_eq!(key.token().as_u128(), streamed.digest128());
    }

    #[test]
    fn distinct_keys_have_distinct_tokens() {
        assert_ne!(key("1").token(), key("2").token());
        let a = ConversationKey::new(Channel::WhatsApp, "ab", "c", "d");
        let b = ConversationKey::new(Channel::WhatsApp, "a", "bc", "d");
        assert_ne!(a.token(), b.token());
    }

    #[test]
    fn channels_parse_and_print() {
        for text in ["whatsapp", "messenger", "instagram", "custom:sms"] {
            assert_eq!(Channel::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Channel::parse("custom:"), None);
        assert_eq!(Channel::parse("telegram"), None);
    }
}
