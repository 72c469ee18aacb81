//! What the command line names: conversations and instants.

use anyhow::Context;
use serde_json::Value;
use ventana_core::{Channel, ConversationKey, ConversationToken, Timestamp};
pub use ventana_wire::api::ConversationRef;

/// Reads a conversation named on the command line: `channel/account/channel_id/contact_id`
/// or its 26-character token.
pub fn conversation(text: &str) -> anyhow::Result<ConversationRef> {
    if let Some(token) = ConversationToken::parse(text) {
        return Ok(ConversationRef::Token(token));
    }
    let parts: Vec<&str> = text.splitn(4, '/').collect();
    let [channel, account, channel_id, contact_id] = parts[..] else {
        anyhow::bail!(
            "a conversation is CHANNEL/ACCOUNT/CHANNEL_ID/CONTACT_ID (e.g. whatsapp/acme/15550001111/4915112345678) or its 26-character token"
        );
    };
    let channel =
        Channel::parse(channel).with_context(|| format!("unknown channel {channel:?}"))?;
    Ok(ConversationRef::Key(ConversationKey::new(
        channel, account, channel_id, contact_id,
    )))
}

/// The token of a conversation named on the command line.
pub fn conversation_token(text: &str) -> anyhow::Result<ConversationToken> {
    conversation(text).map(|c| c.token())
}

/// A conversation named on the command line as the field an API request names it with.
pub fn conversation_arg(text: &str) -> anyhow::Result<(&'static str, Value)> {
    conversation(text).map(|c| c.field())
}

/// Parses an RFC 3339 instant argument.
pub fn parse_instant(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(text).map_err(|e| e.to_string())
}
