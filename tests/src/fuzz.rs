//! Seeded, bounded mutation of valid inputs, for the fuzz tests and the fuzz bench: what an
//! attacker or a broken client would send to ventana's decoders. Every mutation is a
//! function of the seed, so a failure names the seed that reproduces it.

use ventana_sim::SplitMix;

/// Text planted in inputs; no error message, header or log line may ever repeat it.
pub const SECRET: &str = "SECRET-4111-1111";

/// Tokens that break parsers, headers and paths: JSON syntax, escapes of control
/// characters, numbers at the edges, ids ventana reserves or refuses, long and invisible
/// text, and the planted secret.
const NASTY: &[&str] = &[
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "true",
    "-1",
    "0",
    "1e999",
    "-9223372036854775809",
    "18446744073709551616",
    "9300000000",
    "\\u0000",
    "\\r\\n",
    "\\n",
    "\\u0085",
    "\\ud800",
    "\r\n",
    "\u{200b}\u{200b}\u{200b}\u{200b}",
    "tick:",
    "../",
    "%2e%2e",
    "custom:",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "\"SECRET-4111-1111\"",
    "SECRET-4111-1111",
];

/// Produces mutated copies of seed inputs.
#[derive(Debug)]
pub struct Mutator {
    rng: SplitMix,
}

impl Mutator {
    /// A mutator whose every output follows from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SplitMix::new(seed),
        }
    }

    fn below(&mut self, n: usize) -> usize {
        self.rng.below(n.max(1) as u64) as usize
    }

    /// One of `seeds`, changed by one to four mutations (or, one time in sixteen, bytes
    /// that are no input at all).
    pub fn next(&mut self, seeds: &[Vec<u8>]) -> Vec<u8> {
        if self.below(16) == 0 {
            let len = self.below(300);
            return (0..len).map(|_| self.rng.next_u64() as u8).collect();
        }
        let mut input = seeds[self.below(seeds.len())].clone();
        for _ in 0..1 + self.below(4) {
            self.mutate(&mut input);
        }
        input
    }

    fn mutate(&mut self, input: &mut Vec<u8>) {
        let at = self.below(input.len() + 1);
        match self.below(7) {
            // A byte changed.
            0 if !input.is_empty() => {
                let at = at.min(input.len() - 1);
                input[at] = self.rng.next_u64() as u8;
            }
            // A range cut out.
            1 => {
                let end = (at + self.below(16)).min(input.len());
                input.drain(at..end);
            }
            // A range repeated.
            2 => {
                let end = (at + self.below(32)).min(input.len());
                let copy = input[at..end].to_vec();
                input.splice(at..at, copy);
            }
            // A string value replaced by a nasty or a very long one.
            3 | 4 => {
                let quotes: Vec<usize> = input
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'"')
                    .map(|(i, _)| i)
                    .collect();
                if quotes.len() >= 2 {
                    let pair = self.below(quotes.len() / 2) * 2;
                    let (start, end) = (quotes[pair] + 1, quotes[pair + 1]);
                    let value = if self.below(8) == 0 {
                        "x".repeat(self.below(2_000))
                    } else {
                        NASTY[self.below(NASTY.len())].to_owned()
                    };
                    input.splice(start..end, value.into_bytes());
                }
            }
            // Truncated.
            5 => input.truncate(at),
            // A nasty token inserted anywhere.
            _ => {
                let token = NASTY[self.below(NASTY.len())].as_bytes().to_vec();
                input.splice(at..at, token);
            }
        }
    }
}

/// Valid input events (every type, JSON) to mutate.
pub fn event_seeds() -> Vec<Vec<u8>> {
    let conversation = r#""conversation":{"channel":"messenger","account":"acme","channel_id":"p1","contact_id":"c1"}"#;
    [
        r#""type":"customer_message""#,
        r#""type":"customer_comment","comment_id":"cm1""#,
        r#""type":"outbound_message","sender":"agent","kind":"message","tag":"human_agent","origin":"request""#,
        r#""type":"outbound_message","sender":"automation","kind":"private_reply","comment_id":"cm1","origin":"echo""#,
        r#""type":"delivery_status","message_id":"m1","status":"failed","error":{"code":10,"subcode":2018278,"title":"window"}"#,
        r#""type":"conversation_closed","by":"op1""#,
        r#""type":"conversation_reopened""#,
        r#""type":"tick","at":"2026-03-02T10:00:00Z""#,
    ]
    .iter()
    .enumerate()
    .map(|(n, fields)| {
        format!(
            r#"{{"id":"e{n}",{fields},"occurred_at":"2026-03-02T10:00:00Z","logged_at":"2026-03-02T10:00:01Z",{conversation}}}"#
        )
        .into_bytes()
    })
    .collect()
}

/// Valid requests of the request-reply API (`state`, `check`/`send`, `expiring`) to mutate.
pub fn api_seeds() -> Vec<Vec<u8>> {
    let conversation =
        r#"{"channel":"instagram","account":"acme","channel_id":"ig1","contact_id":"u1"}"#;
    [
        format!(r#"{{"conversation":{conversation}}}"#),
        r#"{"token":"aaaaaaaaaaaaaaaaaaaaaaaaaa"}"#.to_owned(),
        format!(
            r#"{{"id":"m1","conversation":{conversation},"sender":"agent","kind":"private_reply","comment_id":"c1","occurred_at":"2026-03-02T10:00:00Z"}}"#
        ),
        r#"{"within":"2h","limit":50,"cursor":"2026-03-02T10:00:00Z|aaaaaaaaaaaaaaaaaaaaaaaaaa"}"#
            .to_owned(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}
