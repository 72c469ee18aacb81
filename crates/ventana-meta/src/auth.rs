//! Who may send through `/v1/messages`: the clients of a file, each with a bearer token and
//! the channel ids (pages, phone numbers, Instagram accounts) it may send from. Tokens are
//! kept as SHA-256 digests and compared in constant time, every client's every time, so
//! neither the answer's time nor its content tells how close a guess came.
//!
//! The file, one client a line (`#` starts a comment):
//!
//! ```text
//! # name      token (at least 32 characters)          channel ids it may send from, or *
//! helpdesk    2b0c7d1e9a8f4c3b5d6e7f8091a2b3c4d5e6f7   *
//! shop-bot    9f8e7d6c5b4a39281706f5e4d3c2b1a0ffeeddcc   104882345   17841400000000
//! ```

use std::path::Path;

use anyhow::Context;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The shortest token accepted: long enough that guessing is hopeless.
pub const MIN_TOKEN_CHARS: usize = 32;

/// One client of the send gateway.
#[derive(Clone)]
pub struct Client {
    /// The name logs and metrics use (never the token).
    pub name: String,
    digest: [u8; 32],
    /// The channel ids it may send from; `None`: all of the account's.
    channels: Option<Vec<String>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Whether it may send from `channel_id`.
    pub fn may_send_from(&self, channel_id: &str) -> bool {
        self.channels
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|id| id == channel_id))
    }
}

/// The clients allowed to send.
#[derive(Clone, Debug, Default)]
pub struct Clients {
    clients: Vec<Client>,
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Whether `presented` is `secret`, compared in constant time (as digests, so not even the
/// length tells).
pub fn same_secret(presented: &str, secret: &str) -> bool {
    bool::from(digest(presented.as_bytes()).ct_eq(&digest(secret.as_bytes())))
}

impl Clients {
    /// Reads the clients file (see the module's doc).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the send clients file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in the send clients file {}", path.display()))
    }

    /// Reads the clients file's text. Errors name the line, never a token.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut clients: Vec<Client> = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let number = number + 1;
            let mut words = line.split_whitespace();
            let (Some(name), Some(token)) = (words.next(), words.next()) else {
                anyhow::bail!("line {number}: a name, a token and the channel ids (or *)");
            };
            anyhow::ensure!(
                token.chars().count() >= MIN_TOKEN_CHARS,
                "line {number}: the token of {name} is shorter than {MIN_TOKEN_CHARS} characters"
            );
            let ids: Vec<String> = words.map(str::to_owned).collect();
            anyhow::ensure!(
                !ids.is_empty(),
                "line {number}: name the channel ids {name} may send from, or * for all"
            );
            let channels = (ids != ["*"]).then_some(ids);
            let client = Client {
                name: name.to_owned(),
                digest: digest(token.as_bytes()),
                channels,
            };
            anyhow::ensure!(
                clients
                    .iter()
                    .all(|c| c.name != client.name && c.digest != client.digest),
                "line {number}: the name or the token of {name} is used twice"
            );
            clients.push(client);
        }
        Ok(Self { clients })
    }

    /// No client may send.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The client whose token the request's `Authorization: Bearer <token>` carries.
    pub fn authenticate(&self, headers: &HeaderMap) -> Option<&Client> {
        let presented = headers
            .get(AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?
            .trim();
        let presented = digest(presented.as_bytes());
        // Every client is compared, whichever matches: the time taken tells nothing.
        let mut found = None;
        for client in &self.clients {
            if bool::from(client.digest.ct_eq(&presented)) {
                found = Some(client);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        headers
    }

    #[test]
    fn clients_are_found_by_token_and_scoped_to_their_channels() {
        let clients = Clients::parse(&format!(
            "# helpdesk\nhelpdesk {A} *\n\nbot {B} 111 222 # two pages\n"
        ))
        .unwrap();
        let helpdesk = clients.authenticate(&bearer(A)).unwrap();
        assert_eq!(helpdesk.name, "helpdesk");
        assert!(helpdesk.may_send_from("999"));
        let bot = clients.authenticate(&bearer(B)).unwrap();
        assert!(bot.may_send_from("222"));
        assert!(!bot.may_send_from("333"));
        assert!(clients.authenticate(&bearer(&A[1..])).is_none());
        assert!(clients.authenticate(&HeaderMap::new()).is_none());
        let mut basic = HeaderMap::new();
        basic.insert(AUTHORIZATION, format!("Basic {A}").parse().unwrap());
        assert!(clients.authenticate(&basic).is_none());
    }

    #[test]
    fn a_bad_file_is_refused_without_showing_a_token() {
        for (text, says) in [
            ("helpdesk tiny1 *", "shorter than 32"),
            (&format!("helpdesk {A}") as &str, "channel ids"),
            (&format!("a {A} *\nb {A} *"), "used twice"),
            ("lonely", "a name, a token"),
        ] {
            let error = format!("{:#}", Clients::parse(text).unwrap_err());
            assert!(error.contains(says), "{error}");
            assert!(!error.contains(A) && !error.contains("tiny1"), "{error}");
        }
    }
}
