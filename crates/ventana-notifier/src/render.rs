//! Turns the core's effects into outputs: reasons into sentences and suggestions, alarms
//! into warnings and auto-reply requests behind their guards (docs/rules.md §1.3).

use std::sync::Arc;

use ventana_core::{
    Alarm, Cause, Channel, ConversationKey, ConversationToken, Effect, EffectKind, Event,
    EventBody, MessageKind, Outbound, PlatformErrorClass, Policy, Reason, Rejection, Rule, State,
    Verdict, Window, base32_lowercase,
};
use xxhash_rust::xxh3::xxh3_128;

use crate::output::{Output, OutputBody, Source, Suggestion, Trigger};

/// Appends the outputs of `effects` (all of one conversation, whose key is `key` and token
/// `token`) to `out`, in the order of docs/rules.md §1.3 within each cause. `event` is the
/// input event the non-tick effects came from.
pub fn render(
    key: &Arc<ConversationKey>,
    token: ConversationToken,
    event: Option<&Event>,
    effects: &[Effect<'_>],
    policy: &Policy,
    out: &mut Vec<Output>,
) {
    debug_assert_eq!(token, key.token(), "the token is the key's");
    // Printed once per call, for the first cause with outputs.
    let mut printed_token = None;
    for group in effects.chunk_by(|a, b| a.cause == b.cause) {
        let cause = group[0].cause;
        let first = out.len();
        let outbound = match (cause, event) {
            (
                Cause::Event(_),
                Some(Event {
                    body: EventBody::OutboundMessage(o),
                    ..
                }),
            ) => Some(o),
            _ => None,
        };
        for effect in group {
            bodies(key, outbound, effect, policy, |body| {
                out.push(Output {
                    id: String::new(),
                    conversation: Arc::clone(key),
                    occurred_at: effect.at,
                    caused_by: String::new(),
                    body,
                })
            });
        }
        if out.len() == first {
            continue;
        }
        out[first..].sort_by_key(|o| o.body.rank());
        let caused_by = match cause {
            Cause::Event(id) => id.to_owned(),
            Cause::Tick(at) => format!("tick:{at}"),
        };
        // The ids hash `<token> 0 <cause> 0 <position>`: the part before the position once.
        let token_text = printed_token.get_or_insert_with(|| base32_lowercase(token.as_u128()));
        let mut hashed = Vec::with_capacity(token_text.len() + caused_by.len() + 10);
        hashed.extend_from_slice(token_text);
        hashed.push(0);
        hashed.extend_from_slice(caused_by.as_bytes());
        hashed.push(0);
        let prefix = hashed.len();
        for (index, output) in out[first..].iter_mut().enumerate() {
            hashed.truncate(prefix);
            hashed.extend_from_slice(&(index as u64).to_le_bytes());
            output.id = output_id(token_text, &hashed);
        }
        if let Some((last, others)) = out[first..].split_last_mut() {
            for output in others {
                output.caused_by.clone_from(&caused_by);
            }
            last.caused_by = caused_by;
        }
    }
}

/// `<conversation token>-<26 base32 characters of the hash of the cause and position>`.
fn output_id(token: &[u8; 26], hashed: &[u8]) -> String {
    let hash = base32_lowercase(xxh3_128(hashed));
    let mut id = Vec::with_capacity(token.len() + 1 + hash.len());
    id.extend_from_slice(token);
    id.push(b'-');
    id.extend_from_slice(&hash);
    String::from_utf8(id).expect("base32 is ASCII")
}

/// The output bodies of one effect, in no particular order, each handed to `emit`.
fn bodies(
    key: &ConversationKey,
    outbound: Option<&Outbound>,
    effect: &Effect<'_>,
    policy: &Policy,
    mut emit: impl FnMut(OutputBody),
) {
    match &effect.kind {
        EffectKind::Decided {
            message_id,
            verdict,
        } => emit(match verdict {
            Verdict::Accepted(a) => OutputBody::OutboundAccepted {
                message_id: message_id.to_string(),
                messaging_type: a.messaging_type,
                tag: a.tag,
                comment_id: a.comment_id.clone(),
                window_ends_at: a.window_ends_at,
            },
            Verdict::Held { until } => OutputBody::OutboundHeld {
                message_id: message_id.to_string(),
                until: *until,
            },
            Verdict::Rejected(rejection) => OutputBody::DeliveryFailed {
                message_id: message_id.to_string(),
                source: Source::Policy,
                reason: rejection.reason,
                detail: policy_detail(key, outbound, rejection, policy),
                suggestion: suggestion(&key.channel, rejection.reason, policy),
                error: None,
            },
        }),
        EffectKind::HoldExpired { message_id, until } => emit(OutputBody::DeliveryFailed {
            message_id: message_id.clone(),
            source: Source::Policy,
            reason: Reason::HoldExpired,
            detail: format!(
                "{}: the customer did not accept the conversation before the held message's private-reply allowance closed at {until}.",
                Rule::R11
            ),
            suggestion: suggestion(&key.channel, Reason::HoldExpired, policy),
            error: None,
        }),
        EffectKind::PlatformFailure {
            message_id,
            error,
            class,
            window_closed_at,
        } => {
            let code = error.map_or_else(|| "none".to_owned(), |e| e.code.to_string());
            let (reason, detail) = match (class, window_closed_at) {
                (PlatformErrorClass::WindowClosed, Some(at)) => (
                    Reason::WindowExpired,
                    format!(
                        "{}: the platform reported the messaging window closed (error {code}), so the window is treated as closed at {at}, the message's decision time.",
                        Rule::R13
                    ),
                ),
                (PlatformErrorClass::RecipientUnavailable, _) => (
                    Reason::RecipientUnavailable,
                    format!(
                        "{}: the platform reported the recipient unavailable (error {code}); the conversation is unchanged.",
                        Rule::R13
                    ),
                ),
                _ => (
                    Reason::PlatformError,
                    format!(
                        "{}: the platform reported the message failed (error {code}).",
                        Rule::R13
                    ),
                ),
            };
            emit(OutputBody::DeliveryFailed {
                message_id: message_id.to_string(),
                source: Source::Platform,
                reason,
                detail,
                suggestion: if reason == Reason::WindowExpired {
                    suggestion(&key.channel, reason, policy)
                } else {
                    Suggestion::None
                },
                error: error.cloned(),
            })
        }
        EffectKind::StateChanged { from, to } => emit(OutputBody::StateChanged {
            from: from.state,
            to: to.state,
            window: to.window,
            window_ends_at: to.window_ends_at,
            session: to.session,
        }),
        EffectKind::SessionOpened { view } => {
            // Only where an automated greeting could go out (§1.4 point 10).
            let automation_may_send = matches!(
                view.window,
                Window::Standard | Window::Unrestricted | Window::PrivateReply
            );
            if policy.notifier.greet_on_open && automation_may_send {
                emit(OutputBody::AutoReply {
                    trigger: Trigger::ConversationOpened,
                    reply_by: view.window_ends_at,
                });
            }
        }
        EffectKind::Alarm {
            alarm: Alarm::AgentDelay,
            view,
            closes_at,
        } => {
            let waiting = view.state == State::Open
                && matches!(view.window, Window::Standard | Window::Unrestricted);
            if waiting {
                emit(OutputBody::AutoReply {
                    trigger: Trigger::AgentDelayed,
                    reply_by: *closes_at,
                });
            }
        }
        EffectKind::Alarm {
            alarm: Alarm::WindowClosing,
            view,
            closes_at,
        } => {
            let waiting = matches!(view.state, State::Open | State::AwaitingCustomer);
            let Some(closes_at) = closes_at.filter(|_| waiting && view.window == Window::Standard)
            else {
                return;
            };
            emit(OutputBody::WindowClosing {
                closes_at,
                customer_waiting: view.state == State::Open,
            });
            if policy.notifier.remind_customer {
                emit(OutputBody::AutoReply {
                    trigger: Trigger::WindowClosing,
                    reply_by: Some(closes_at),
                });
            }
        }
    }
}

/// Where a template could still reach the customer.
fn templates_reach(channel: &Channel, policy: &Policy) -> bool {
    match channel {
        Channel::WhatsApp => true,
        Channel::Messenger => policy.messenger.utility_templates,
        _ => false,
    }
}

/// What the agent can do instead (docs/rules.md §1.3).
pub fn suggestion(channel: &Channel, reason: Reason, policy: &Policy) -> Suggestion {
    match reason {
        Reason::HumanAgentRequiresHuman => Suggestion::UseHumanAgent,
        Reason::RecipientUnavailable | Reason::PlatformError => Suggestion::None,
        Reason::TemplateNotSupported => Suggestion::WaitForCustomer,
        _ if templates_reach(channel, policy) => Suggestion::SendTemplate,
        _ => Suggestion::WaitForCustomer,
    }
}

fn closed(at: Option<ventana_core::Timestamp>) -> String {
    at.map_or_else(String::new, |at| format!(" closed at {at}"))
}

/// One English sentence naming the rule and, when there is one, the instant the window closed.
fn policy_detail(
    key: &ConversationKey,
    outbound: Option<&Outbound>,
    rejection: &Rejection,
    policy: &Policy,
) -> String {
    let channel = &key.channel;
    let ch = policy.channel(channel);
    let standard = ch.map_or_else(String::new, |c| c.standard_window.to_string());
    let extension = ch.map_or_else(String::new, |c| c.human_agent_window.to_string());
    let tag = outbound
        .and_then(|o| o.tag)
        .map_or("(none)", |t| t.as_str());
    let comment = outbound
        .and_then(|o| o.comment_id.as_deref())
        .unwrap_or("(none)");
    let at = rejection.closed_at;
    match rejection.reason {
        Reason::NoCustomerMessage => match outbound.map(|o| (o.kind, o.comment_id.as_deref())) {
            Some((_, Some(comment))) => format!(
                "{}/{}: there is no customer comment {comment} in this conversation to send a private reply to.",
                Rule::R1,
                Rule::R11
            ),
            Some((MessageKind::PrivateReply, None)) => format!(
                "{}/{}: a private reply answers one customer comment, and this one names no comment (`comment_id`).",
                Rule::R1,
                Rule::R11
            ),
            _ => format!(
                "{}: the customer has never written in this conversation, and only the customer can start it.",
                Rule::R1
            ),
        },
        Reason::WindowExpired => match at {
            Some(at) if rejection.cut_by_platform => format!(
                "{}/{}: the platform reported the messaging window closed, so it counts as closed at {at} (when the refused message was decided), and no other window is open on {channel}.",
                Rule::R4,
                Rule::R13
            ),
            Some(at) => format!(
                "{}: the {standard} standard window from the customer's last message closed at {at}, and no other window is open on {channel}.",
                Rule::R4
            ),
            None => format!("{}: no messaging window is open on {channel}.", Rule::R4),
        },
        Reason::ExtendedWindowExpired => format!(
            "{}: the {extension} human-agent extension after the customer's last message{} (the {standard} standard window before it too), and only a new customer message reopens the conversation.",
            Rule::R7,
            closed(at)
        ),
        Reason::HumanAgentRequiresHuman => format!(
            "{}: the {standard} standard window{}, and only a human agent may answer in the {extension} human-agent extension.",
            Rule::R7,
            closed(at)
        ),
        Reason::TagNotAllowed => format!(
            "{}: the tag {tag} is not allowed on {channel} at this time, and the {standard} standard window{}.",
            Rule::R8,
            match at {
                Some(at) => format!(" closed at {at}"),
                None => " is not open".to_owned(),
            }
        ),
        Reason::TagRateLimited => {
            format!(
                "{}: the rate limit of the {tag} tag on {channel} is reached for this conversation.",
                Rule::R9
            )
        }
        Reason::TemplateNotSupported => {
            format!(
                "{}/{}: templates cannot be sent on {channel} under the current policy.",
                Rule::R6,
                Rule::R8
            )
        }
        Reason::PrivateReplyUsed => {
            format!(
                "{}: the one private reply allowed for comment {comment} has already been sent.",
                Rule::R11
            )
        }
        Reason::PrivateReplyExpired => format!(
            "{}: the private-reply allowance for comment {comment}{}.",
            Rule::R11,
            closed(at)
        ),
        Reason::AwaitingCustomerAcceptance => format!(
            "{}: the private reply to the customer's comment has been used, and further messages are not delivered until the customer writes a direct message.",
            Rule::R11
        ),
        Reason::HoldExpired => format!(
            "{}: the customer did not accept the conversation before the private-reply allowance{}.",
            Rule::R11,
            closed(at)
        ),
        Reason::ConversationClosed => format!(
            "{}: the conversation is closed, and only templates and public comment replies may be sent until the customer writes again.",
            Rule::R5
        ),
        Reason::RecipientUnavailable | Reason::PlatformError => {
            format!(
                "{}: the platform refused the message ({}).",
                Rule::R13,
                rejection.reason.as_str()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use ventana_core::{Origin, Sender, Tag, Timestamp};

    use super::*;

    /// The rules a detail cites: `R4: ...` or `R4/R13: ...`.
    fn cited(detail: &str) -> Vec<Rule> {
        let (rules, _) = detail
            .split_once(": ")
            .expect("a detail starts with its rules");
        rules
            .split('/')
            .map(|rule| Rule::parse(rule).unwrap_or_else(|| panic!("{rule:?} is no rule")))
            .collect()
    }

    #[test]
    fn every_policy_detail_cites_the_rule_of_its_reason() {
        let policy = Policy::default();
        let at = Timestamp::from_unix_seconds(1_700_000_000);
        let outbound = |kind, comment_id: Option<&str>| Outbound {
            sender: Sender::Agent,
            kind,
            tag: Some(Tag::AccountUpdate),
            comment_id: comment_id.map(str::to_owned),
            origin: Origin::Request,
        };
        let outbounds = [
            None,
            Some(outbound(MessageKind::Message, None)),
            Some(outbound(MessageKind::PrivateReply, None)),
            Some(outbound(MessageKind::PrivateReply, Some("c-1"))),
        ];
        let channels = [
            Channel::WhatsApp,
            Channel::Messenger,
            Channel::Custom("sms".into()),
        ];
        let mut checked = 0;
        for &reason in Reason::ALL {
            for channel in &channels {
                let key = ConversationKey::new(channel.clone(), "acme", "page", "contact");
                for outbound in &outbounds {
                    for (closed_at, cut_by_platform) in
                        [(None, false), (Some(at), false), (Some(at), true)]
                    {
                        let rejection = Rejection {
                            reason,
                            closed_at,
                            cut_by_platform,
                        };
                        let detail = policy_detail(&key, outbound.as_ref(), &rejection, &policy);
                        assert!(
                            cited(&detail).contains(&reason.rule()),
                            "{reason:?} is refused under {} but its detail cites otherwise: {detail}",
                            reason.rule()
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, Reason::ALL.len() * 3 * 4 * 3);
    }
}
