//! The policy file (README, "Configuration: the policy file"): TOML, every key optional, unknown keys refused so a typo
//! never silently falls back to a default.

use serde::Deserialize;
use thiserror::Error;
use ventana_core::{ChannelPolicy, Policy, Rate, Span, Tag, TagPolicy, Timestamp};

/// A policy file that cannot be used; the service and the CLI refuse to start with it.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// Not TOML, or a key ventana does not know.
    #[error("invalid policy file: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value ventana cannot use.
    #[error("invalid policy: `{key}`: {problem}")]
    Invalid {
        /// The key, as a path (`channels.messenger.tags[0].valid_until`).
        key: String,
        /// What is wrong with its value.
        problem: String,
    },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    max_clock_skew: Option<String>,
    #[serde(default)]
    channels: RawChannels,
    #[serde(default)]
    notifier: RawNotifier,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawChannels {
    whatsapp: Option<RawChannel>,
    messenger: Option<RawChannel>,
    instagram: Option<RawChannel>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    standard_window: Option<String>,
    human_agent_window: Option<String>,
    utility_templates: Option<bool>,
    private_reply_window: Option<String>,
    hold_until_accepted: Option<bool>,
    tags: Option<Vec<RawTag>>,
    human_agent_rate: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTag {
    name: String,
    valid_from: Option<String>,
    valid_until: Option<String>,
    rate: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNotifier {
    agent_delay: Option<String>,
    window_closing: Option<String>,
    remind_customer: Option<bool>,
    greet_on_open: Option<bool>,
}

fn invalid(key: &str, problem: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

/// Reads a duration such as `24h`, `7d`, `90m` or `0s`.
pub fn parse_span(text: &str) -> Result<Span, String> {
    let duration = humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))?;
    i64::try_from(duration.as_nanos())
        .map(Span::from_nanos)
        .map_err(|_| format!("{text:?} is too long"))
}

fn span(text: Option<String>, key: &str, default: Span) -> Result<Span, PolicyError> {
    text.map_or(Ok(default), |t| parse_span(&t).map_err(|e| invalid(key, e)))
}

fn instant(text: Option<String>, key: &str) -> Result<Option<Timestamp>, PolicyError> {
    text.map(|t| Timestamp::parse_rfc3339(&t).map_err(|e| invalid(key, e.to_string())))
        .transpose()
}

/// Reads a rate such as `1/24h`: at most N messages per rolling period.
fn rate(text: Option<String>, key: &str) -> Result<Option<Rate>, PolicyError> {
    let Some(text) = text else { return Ok(None) };
    let problem = || {
        invalid(
            key,
            format!("{text:?} is not of the form N/PERIOD, e.g. \"1/24h\""),
        )
    };
    let (count, per) = text.split_once('/').ok_or_else(problem)?;
    let count: u32 = count.trim().parse().map_err(|_| problem())?;
    let per = parse_span(per.trim()).map_err(|e| invalid(key, e))?;
    if count == 0 || per.is_zero() {
        return Err(invalid(key, "count and period must be positive"));
    }
    Ok(Some(Rate { count, per }))
}

fn channel(
    raw: Option<RawChannel>,
    name: &str,
    mut policy: ChannelPolicy,
) -> Result<ChannelPolicy, PolicyError> {
    let Some(raw) = raw else { return Ok(policy) };
    let key = |field: &str| format!("channels.{name}.{field}");
    policy.standard_window = span(
        raw.standard_window,
        &key("standard_window"),
        policy.standard_window,
    )?;
    if policy.standard_window.is_zero() || policy.standard_window < Span::ZERO {
        return Err(invalid(&key("standard_window"), "must be longer than 0s"));
    }
    policy.human_agent_window = span(
        raw.human_agent_window,
        &key("human_agent_window"),
        policy.human_agent_window,
    )?;
    if !policy.human_agent_window.is_zero() && !policy.extension_on() {
        return Err(invalid(
            &key("human_agent_window"),
            "must be \"0s\" (off) or longer than standard_window",
        ));
    }
    policy.utility_templates = raw.utility_templates.unwrap_or(policy.utility_templates);
    policy.private_reply_window = span(
        raw.private_reply_window,
        &key("private_reply_window"),
        policy.private_reply_window,
    )?;
    policy.hold_until_accepted = raw
        .hold_until_accepted
        .unwrap_or(policy.hold_until_accepted);
    policy.human_agent_rate = rate(raw.human_agent_rate, &key("human_agent_rate"))?;
    if let Some(tags) = raw.tags {
        policy.tags = tags
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let key = |field: &str| format!("channels.{name}.tags[{i}].{field}");
                let tag = Tag::parse(&t.name)
                    .filter(|tag| *tag != Tag::HumanAgent)
                    .ok_or_else(|| {
                        invalid(
                            &key("name"),
                            format!(
                                "{:?} is not one of account_update, confirmed_event_update, post_purchase_update (human_agent is configured by human_agent_window)",
                                t.name
                            ),
                        )
                    })?;
                let valid_from = instant(t.valid_from, &key("valid_from"))?;
                let valid_until = instant(t.valid_until, &key("valid_until"))?;
                if let (Some(from), Some(until)) = (valid_from, valid_until) {
                    if from >= until {
                        return Err(invalid(&key("valid_until"), "must be after valid_from"));
                    }
                }
                Ok(TagPolicy {
                    tag,
                    valid_from,
                    valid_until,
                    rate: rate(t.rate, &key("rate"))?,
                })
            })
            .collect::<Result<_, _>>()?;
    }
    Ok(policy)
}

/// Reads and validates a policy file; every absent key keeps its default.
pub fn parse_policy(text: &str) -> Result<Policy, PolicyError> {
    let raw: RawPolicy = toml::from_str(text)?;
    let defaults = Policy::default();
    let notifier = raw.notifier;
    let mut policy = Policy {
        max_clock_skew: span(
            raw.max_clock_skew,
            "max_clock_skew",
            defaults.max_clock_skew,
        )?,
        whatsapp: channel(raw.channels.whatsapp, "whatsapp", defaults.whatsapp)?,
        messenger: channel(raw.channels.messenger, "messenger", defaults.messenger)?,
        instagram: channel(raw.channels.instagram, "instagram", defaults.instagram)?,
        notifier: defaults.notifier,
    };
    policy.notifier.agent_delay = span(
        notifier.agent_delay,
        "notifier.agent_delay",
        policy.notifier.agent_delay,
    )?;
    policy.notifier.window_closing = span(
        notifier.window_closing,
        "notifier.window_closing",
        policy.notifier.window_closing,
    )?;
    policy.notifier.remind_customer = notifier
        .remind_customer
        .unwrap_or(policy.notifier.remind_customer);
    policy.notifier.greet_on_open = notifier
        .greet_on_open
        .unwrap_or(policy.notifier.greet_on_open);
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_default_policy() {
        assert_eq!(parse_policy("").unwrap(), Policy::default());
    }

    #[test]
    fn the_design_example_is_the_default_policy() {
        let text = r#"
max_clock_skew = "5m"
[channels.whatsapp]
standard_window = "24h"
[channels.messenger]
standard_window = "24h"
human_agent_window = "7d"
utility_templates = true
private_reply_window = "7d"
hold_until_accepted = false
tags = [
  { name = "account_update",         valid_until = "2026-04-27T00:00:00Z" },
  { name = "confirmed_event_update", valid_until = "2026-04-27T00:00:00Z" },
  { name = "post_purchase_update",   valid_until = "2026-04-27T00:00:00Z" },
]
[channels.instagram]
standard_window = "24h"
human_agent_window = "7d"
private_reply_window = "7d"
hold_until_accepted = false
[notifier]
agent_delay = "15m"
window_closing = "1h"
remind_customer = false
greet_on_open = false
"#;
        assert_eq!(parse_policy(text).unwrap(), Policy::default());
    }

    #[test]
    fn rates_and_switches_are_read() {
        let policy = parse_policy(
            "[channels.messenger]\nhuman_agent_window = \"0s\"\nhuman_agent_rate = \"1/24h\"\ntags = [{ name = \"account_update\", rate = \"2/1d\" }]",
        )
        .unwrap();
        assert!(!policy.messenger.extension_on());
        assert_eq!(
            policy.messenger.human_agent_rate,
            Some(Rate {
                count: 1,
                per: Span::from_hours(24)
            })
        );
        assert_eq!(
            policy.messenger.tags[0].rate,
            Some(Rate {
                count: 2,
                per: Span::from_days(1)
            })
        );
        assert_eq!(policy.messenger.tags[0].valid_until, None);
    }

    #[test]
    fn mistakes_name_the_key() {
        let cases = [
            (
                "[channels.whatsapp]\nstandard_windw = \"24h\"",
                "standard_windw",
            ),
            (
                "[channels.messenger]\nhuman_agent_window = \"12h\"",
                "channels.messenger.human_agent_window",
            ),
            ("[notifier]\nagent_delay = \"soon\"", "notifier.agent_delay"),
            (
                "[channels.messenger]\ntags = [{ name = \"promo\" }]",
                "channels.messenger.tags[0].name",
            ),
            (
                "[channels.messenger]\nhuman_agent_rate = \"often\"",
                "channels.messenger.human_agent_rate",
            ),
            ("[channels.telegram]\nstandard_window = \"1h\"", "telegram"),
        ];
        for (text, key) in cases {
            let error = parse_policy(text).unwrap_err().to_string();
            assert!(error.contains(key), "{error:?} should name {key}");
        }
    }
}
