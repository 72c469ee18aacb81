//! The Graph API calls that deliver an accepted message: which endpoint, and the request
//! that carries ventana's decision (`messaging_type`, `tag`, `recipient.comment_id`) around
//! the caller's message content, which is passed through untouched. Pure: no I/O here.

use serde_json::{Map, Value, json};
use ventana_core::{Channel, ConversationKey, MessagingType, PlatformError, Tag, Unsendable};

/// One call to make: `POST {graph_url}/{path}` with `body`.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphCall {
    pub path: String,
    pub body: Value,
}

/// What ventana decided for an accepted message.
#[derive(Debug, Clone, Copy)]
pub struct Accepted<'a> {
    pub messaging_type: MessagingType,
    pub tag: Option<Tag>,
    pub comment_id: Option<&'a str>,
}

/// Why a message cannot be sent through the Graph API at all (checked before ventana is
/// asked, so no acceptance is logged for a message that cannot go out): a channel that is
/// not Meta's, or what no channel state could let out (`ventana_core::Unsendable`, the
/// check ventanad's API makes too).
pub fn unsendable(key: &ConversationKey, kind: &str, names_a_comment: bool) -> Option<String> {
    if let Channel::Custom(name) = &key.channel {
        return Some(format!(
            "custom:{name} is not a Meta channel; ventana-meta sends to whatsapp, messenger and instagram"
        ));
    }
    let kind = ventana_core::MessageKind::parse(kind)?;
    Unsendable::of(kind, names_a_comment, &key.channel).map(|why| why.to_string())
}

/// Checks an id that becomes a segment of a Graph API path (a page, phone number or
/// Instagram account id, a comment id): Meta's ids are letters, digits, `_`, `.`, `-` and
/// `=`, at most 512 bytes, and never `.` or `..` (which would climb out of the API version).
pub fn check_platform_id(field: &str, id: &str) -> Result<(), String> {
    let alphabet = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '=');
    if id.is_empty() || id.len() > ventana_core::MAX_ID_BYTES {
        return Err(format!(
            "`{field}` must be 1 to {} bytes",
            ventana_core::MAX_ID_BYTES
        ));
    }
    if !id.chars().all(alphabet) || id.chars().all(|c| c == '.') {
        return Err(format!(
            "`{field}` is not a Meta id (letters, digits, `_`, `.`, `-`, `=`)"
        ));
    }
    Ok(())
}

/// `id` as one path segment: checked by [`check_platform_id`], and percent-encoded past the
/// unreserved characters all the same, so nothing in it can act as a path.
fn segment(field: &str, id: &str) -> Result<String, String> {
    check_platform_id(field, id)?;
    let mut encoded = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(encoded)
}

/// The call that delivers `content` (the Graph API message content: for WhatsApp the fields
/// after `to`, e.g. `{"type": "text", "text": {...}}`; for Messenger and Instagram the
/// `message` object; for public comment replies the reply's fields, e.g. `{"message": ...}`).
pub fn graph_call(
    key: &ConversationKey,
    acceptance: Accepted<'_>,
    content: Value,
) -> Result<GraphCall, String> {
    let comment = || {
        segment(
            "comment_id",
            acceptance
                .comment_id
                .ok_or_else(|| "the decision names no comment".to_owned())?,
        )
    };
    let sender = || segment("conversation.channel_id", &key.channel_id);
    match key.channel {
        Channel::WhatsApp => {
            let Value::Object(fields) = content else {
                return Err("`message` must be an object such as {\"type\": \"text\", \"text\": {\"body\": \"...\"}}".into());
            };
            let mut body = Map::new();
            body.insert("messaging_product".into(), "whatsapp".into());
            body.insert("recipient_type".into(), "individual".into());
            // A phone number goes in `to`; a business-scoped user id (a customer known only
            // by username) in `recipient`.
            let field = if key.contact_id.bytes().all(|b| b.is_ascii_digit()) {
                "to"
            } else {
                "recipient"
            };
            body.insert(field.into(), key.contact_id.as_str().into());
            for (name, value) in fields {
                // The content never chooses who receives it (`to` would win over `recipient`).
                if !matches!(name.as_str(), "to" | "recipient") {
                    body.entry(name).or_insert(value);
                }
            }
            Ok(GraphCall {
                path: format!("{}/messages", sender()?),
                body: Value::Object(body),
            })
        }
        Channel::Messenger | Channel::Instagram => {
            let recipient = json!({"id": key.contact_id});
            let body = match acceptance.messaging_type {
                MessagingType::CommentReply => {
                    let edge = if key.channel == Channel::Instagram {
                        "replies"
                    } else {
                        "comments"
                    };
                    return Ok(GraphCall {
                        path: format!("{}/{edge}", comment()?),
                        body: content,
                    });
                }
                MessagingType::PrivateReply => {
                    let comment_id = acceptance
                        .comment_id
                        .ok_or_else(|| "the decision names no comment".to_owned())?;
                    json!({"recipient": {"comment_id": comment_id}, "message": content})
                }
                MessagingType::Response => {
                    json!({"recipient": recipient, "messaging_type": "RESPONSE", "message": content})
                }
                MessagingType::MessageTag => {
                    let tag = acceptance
                        .tag
                        .ok_or_else(|| "a tagged acceptance without a tag".to_owned())?;
                    json!({"recipient": recipient, "messaging_type": "MESSAGE_TAG",
                           "tag": tag.as_str().to_ascii_uppercase(), "message": content})
                }
                MessagingType::Template => {
                    json!({"recipient": recipient, "messaging_type": "UTILITY", "message": content})
                }
            };
            Ok(GraphCall {
                path: format!("{}/messages", sender()?),
                body,
            })
        }
        Channel::Custom(_) => Err(unsendable(key, "message", false).unwrap_or_default()),
    }
}

/// The message content of a template (the Graph API's template object: name, language,
/// components): WhatsApp `{"type": "template", "template": ...}`, Messenger's utility
/// message `{"template": ...}`. Instagram has none.
pub fn template_content(channel: &Channel, template: Value) -> Option<Value> {
    match channel {
        Channel::WhatsApp => Some(json!({"type": "template", "template": template})),
        Channel::Messenger => Some(json!({"template": template})),
        _ => None,
    }
}

/// The platform's id of a message the Graph API accepted: `messages[0].id` (WhatsApp),
/// `message_id` (Messenger, Instagram), `id` (comment replies).
pub fn platform_message_id(response: &Value) -> Option<&str> {
    response
        .pointer("/messages/0/id")
        .or_else(|| response.get("message_id"))
        .or_else(|| response.get("id"))
        .and_then(Value::as_str)
}

/// A Graph API error response (`{"error": {"code", "error_subcode", "message"}}`) as a
/// platform error ventana understands (R13 classifies window errors by code and subcode).
pub fn graph_error(response: &Value) -> Option<PlatformError> {
    let error = response.get("error")?;
    Some(PlatformError {
        code: error.get("code")?.as_i64()?,
        subcode: error.get("error_subcode").and_then(Value::as_i64),
        title: error
            .get("message")
            .and_then(Value::as_str)
            .map(|m| m.chars().take(200).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(channel: Channel) -> ConversationKey {
        ConversationKey::new(channel, "acme", "PAGE", "PSID")
    }

    fn accepted(messaging_type: MessagingType, tag: Option<Tag>) -> Accepted<'static> {
        Accepted {
            messaging_type,
            tag,
            comment_id: Some("C1"),
        }
    }

    #[test]
    fn messenger_calls_carry_the_decision_around_the_content() {
        let content = json!({"text": "hi"});
        let call = |t, tag, channel| graph_call(&key(channel), accepted(t, tag), content.clone());
        assert_eq!(
            call(MessagingType::Response, None, Channel::Messenger).unwrap(),
            GraphCall {
                path: "PAGE/messages".into(),
                body: json!({"recipient": {"id": "PSID"}, "messaging_type": "RESPONSE", "message": {"text": "hi"}}),
            }
        );
        assert_eq!(
            call(
                MessagingType::MessageTag,
                Some(Tag::HumanAgent),
                Channel::Instagram
            )
            .unwrap()
            .body,
            json!({"recipient": {"id": "PSID"}, "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT", "message": {"text": "hi"}})
        );
        assert_eq!(
            call(MessagingType::PrivateReply, None, Channel::Messenger)
                .unwrap()
                .body,
            json!({"recipient": {"comment_id": "C1"}, "message": {"text": "hi"}})
        );
        assert_eq!(
            call(MessagingType::CommentReply, None, Channel::Instagram)
                .unwrap()
                .path,
            "C1/replies"
        );
        assert_eq!(
            call(MessagingType::CommentReply, None, Channel::Messenger)
                .unwrap()
                .path,
            "C1/comments"
        );
        assert_eq!(
            call(MessagingType::Template, None, Channel::Messenger)
                .unwrap()
                .body["messaging_type"],
            "UTILITY"
        );
    }

    #[test]
    fn whatsapp_calls_address_the_contact_whatever_the_content_says() {
        let call = graph_call(
            &key(Channel::WhatsApp),
            accepted(MessagingType::Response, None),
            json!({"type": "text", "text": {"body": "hi"}, "to": "someone else"}),
        )
        .unwrap();
        assert_eq!(call.path, "PAGE/messages");
        assert_eq!(
            call.body,
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "recipient": "PSID", "type": "text", "text": {"body": "hi"}})
        );
        // A phone number is `to`; a business-scoped user id `recipient`: content naming the
        // other one changes nothing.
        for (contact, field) in [
            ("16505551234", "to"),
            ("US.13491208655302741918", "recipient"),
        ] {
            let key = ConversationKey::new(Channel::WhatsApp, "acme", "PAGE", contact);
            let call = graph_call(
                &key,
                accepted(MessagingType::Response, None),
                json!({"type": "text", "text": {"body": "hi"}, "to": "1", "recipient": "US.2"}),
            )
            .unwrap();
            assert_eq!(call.body[field], contact);
            let other = if field == "to" { "recipient" } else { "to" };
            assert!(call.body.get(other).is_none(), "{contact}: {}", call.body);
        }
        assert!(
            graph_call(
                &key(Channel::WhatsApp),
                accepted(MessagingType::Response, None),
                json!("hi")
            )
            .is_err()
        );
        assert!(unsendable(&key(Channel::WhatsApp), "private_reply", true).is_some());
        assert!(unsendable(&key(Channel::Custom("sms".into())), "message", false).is_some());
        assert!(unsendable(&key(Channel::Messenger), "private_reply", true).is_none());
        assert!(unsendable(&key(Channel::Messenger), "comment_reply", false).is_some());
    }

    #[test]
    fn graph_responses_give_ids_and_errors() {
        assert_eq!(
            platform_message_id(
                &json!({"messaging_product": "whatsapp", "messages": [{"id": "wamid.X"}]})
            ),
            Some("wamid.X")
        );
        assert_eq!(
            platform_message_id(&json!({"recipient_id": "1", "message_id": "m_1"})),
            Some("m_1")
        );
        let error = graph_error(
            &json!({"error": {"message": "(#10) This message is sent outside of allowed window.",
            "type": "OAuthException", "code": 10, "error_subcode": 2018278, "fbtrace_id": "x"}}),
        )
        .unwrap();
        assert_eq!((error.code, error.subcode), (10, Some(2_018_278)));
        assert_eq!(
            error.class(&Channel::Messenger),
            ventana_core::PlatformErrorClass::WindowClosed
        );
        assert_eq!(graph_error(&json!({"id": "1"})), None);
    }

    #[test]
    fn only_meta_ids_become_path_segments() {
        for id in ["104882345", "17841400000000_178", "aGVsbG8=", "a-b.c"] {
            assert_eq!(check_platform_id("comment_id", id), Ok(()), "{id}");
        }
        for id in [
            "", ".", "..", "...", "../x", "%2e%2e", "a/b", "a?b", "a#b", "a b", "a\nb", "é",
        ] {
            assert!(check_platform_id("comment_id", id).is_err(), "{id:?}");
        }
        assert!(check_platform_id("comment_id", &"1".repeat(513)).is_err());
        // Past the check, `=` is percent-encoded all the same.
        assert_eq!(segment("comment_id", "aGVsbG8=").unwrap(), "aGVsbG8%3D");
        let mut key = key(Channel::Messenger);
        key.channel_id = "..".into();
        assert!(graph_call(&key, accepted(MessagingType::Response, None), json!({})).is_err());
    }
}
