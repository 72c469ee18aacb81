//! Graph API access tokens per channel: one app often serves many pages, WhatsApp phone
//! numbers and Instagram accounts, each with its own token. The file, one channel a line
//! (`#` starts a comment):
//!
//! ```text
//! # channel id (page, phone number or Instagram account id)   access token
//! 1139012345        EAAG...page-token
//! 106540352242922   EAAG...system-user-token
//! ```
//!
//! A channel not in the file is sent with the default token (`--graph-token`, or
//! `--instagram-token` for Instagram). Tokens never appear in errors, logs or `Debug`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;

/// The access token of each channel id.
#[derive(Clone, Default)]
pub struct ChannelTokens {
    tokens: HashMap<String, String>,
}

impl std::fmt::Debug for ChannelTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelTokens")
            .field("channels", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

impl ChannelTokens {
    /// Reads the tokens file (see the module's doc).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the channel tokens file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in the channel tokens file {}", path.display()))
    }

    /// Reads the tokens file's text. Errors name the line, never a token.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut tokens = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let number = number + 1;
            let words: Vec<&str> = line.split_whitespace().collect();
            let [channel, token] = words[..] else {
                anyhow::bail!("line {number}: a channel id and its access token, nothing else");
            };
            crate::graph::check_platform_id("channel id", channel)
                .map_err(|problem| anyhow::anyhow!("line {number}: {problem}"))?;
            anyhow::ensure!(
                tokens
                    .insert(channel.to_owned(), token.to_owned())
                    .is_none(),
                "line {number}: channel {channel} has a token already"
            );
        }
        Ok(Self { tokens })
    }

    /// The token of `channel_id`, if the file names one.
    pub fn get(&self, channel_id: &str) -> Option<&String> {
        self.tokens.get(channel_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_has_its_token_and_bad_lines_are_refused_quietly() {
        let tokens = ChannelTokens::parse("# pages\n111 tok-a\n\n222 tok-b # whatsapp\n").unwrap();
        assert_eq!(tokens.get("111").unwrap(), "tok-a");
        assert_eq!(tokens.get("222").unwrap(), "tok-b");
        assert!(tokens.get("333").is_none());
        assert!(!format!("{tokens:?}").contains("tok-"));
        for (text, says) in [
            ("111", "a channel id and its access token"),
            ("111 tok-a extra", "nothing else"),
            ("../x tok-a", "not a Meta id"),
            ("111 tok-a\n111 tok-c", "has a token already"),
        ] {
            let error = format!("{:#}", ChannelTokens::parse(text).unwrap_err());
            assert!(error.contains(says), "{text}: {error}");
            assert!(!error.contains("tok-"), "{error}");
        }
    }
}
