//! The machine-readable contract (`docs/contract/`) cannot drift from the code: every
//! example, fixture and generated message, and a live ventanad's outputs and API replies,
//! validate against `ventana.schema.json`; its vocabularies are the code's; the AsyncAPI
//! document is valid AsyncAPI 3.0.0 and names the subjects and schemas the code uses.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use ventana_core::{Event, EventBody, Policy};
use ventana_notifier::Fold;
use ventana_tests::service::{Live, api_request, caught_up, eventually, live_with};
use ventana_wire::subjects;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read_json(path: &str) -> Value {
    let text = std::fs::read_to_string(repository().join(path)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The schemas of `docs/contract/ventana.schema.json`, by name.
struct Contract {
    document: Value,
}

impl Contract {
    fn load() -> Self {
        Self {
            document: read_json("docs/contract/ventana.schema.json"),
        }
    }

    /// A validator of the message `name` (a `$defs` entry).
    fn validator(&self, name: &str) -> jsonschema::Validator {
        assert!(
            self.document["$defs"].get(name).is_some(),
            "no schema {name}"
        );
        let mut schema = self.document.clone();
        schema["$ref"] = format!("#/$defs/{name}").into();
        jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("schema {name}: {e}"))
    }

    fn enumeration(&self, name: &str) -> Vec<String> {
        self.document["$defs"][name]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} is no enum"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }
}

#[track_caller]
fn assert_valid(validator: &jsonschema::Validator, instance: &Value, origin: &str) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{origin}: {instance}\n{errors:#?}");
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn files(dir: &str, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(repository().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no {dir}/*{suffix}");
    found
}

fn text_values<T: Copy>(all: &[T], as_str: fn(T) -> &'static str) -> Vec<String> {
    all.iter().map(|v| as_str(*v).to_owned()).collect()
}

#[test]
fn the_vocabularies_are_the_codes() {
    use ventana_core::*;
    use ventana_notifier::{Source, Suggestion, Trigger};
    let contract = Contract::load();
    let code = [
        ("Sender", text_values(Sender::ALL, Sender::as_str)),
        (
            "MessageKind",
            text_values(MessageKind::ALL, MessageKind::as_str),
        ),
        ("Tag", text_values(Tag::ALL, Tag::as_str)),
        ("Origin", text_values(Origin::ALL, Origin::as_str)),
        ("Status", text_values(Status::ALL, Status::as_str)),
        ("State", text_values(State::ALL, State::as_str)),
        ("Window", text_values(Window::ALL, Window::as_str)),
        (
            "MessagingType",
            text_values(MessagingType::ALL, MessagingType::as_str),
        ),
        ("Reason", text_values(Reason::ALL, Reason::as_str)),
        ("Source", text_values(Source::ALL, Source::as_str)),
        (
            "Suggestion",
            text_values(Suggestion::ALL, Suggestion::as_str),
        ),
        ("Trigger", text_values(Trigger::ALL, Trigger::as_str)),
        (
            "ApiErrorCode",
            text_values(
                ventana_wire::api::ApiErrorCode::ALL,
                ventana_wire::api::ApiErrorCode::as_str,
            ),
        ),
    ];
    for (name, values) in code {
        assert_eq!(contract.enumeration(name), values, "{name}");
    }
    for allowed in contract.enumeration("Allowed") {
        let parsed = ventana_core::Allowed::parse(&allowed).expect(&allowed);
        assert_eq!(parsed.as_str(), allowed);
    }
}

#[test]
fn examples_fixtures_and_generated_traffic_match_their_schemas() {
    let contract = Contract::load();
    let input = contract.validator("InputEvent");
    let output = contract.validator("OutputEvent");
    let snapshot = contract.validator("Snapshot");
    let mut input_types = BTreeSet::new();
    let mut output_types = BTreeSet::new();

    // The examples and their recorded replays, and the Meta adapter's expected events.
    let mut checked = 0;
    for path in files("examples", ".jsonl") {
        let origin = path.display().to_string();
        for value in lines(&path) {
            let kind = value["type"].as_str().unwrap().to_owned();
            let validator = if origin.ends_with(".out.jsonl") {
                if kind == "snapshot" {
                    &snapshot
                } else {
                    output_types.insert(kind);
                    &output
                }
            } else {
                input_types.insert(kind);
                &input
            };
            assert_valid(validator, &value, &origin);
            checked += 1;
        }
    }
    for path in files("crates/ventana-meta/fixtures", ".events.jsonl") {
        for value in lines(&path) {
            input_types.insert(value["type"].as_str().unwrap().to_owned());
            assert_valid(&input, &value, &path.display().to_string());
            checked += 1;
        }
    }

    // Generated traffic, its outputs and final snapshots, and a tick as ventanad logs one.
    let mut events = ventana_sim::build_log(&ventana_sim::seeded_steps(7, 20_000, 500, 9));
    let last = events.last().unwrap().clone();
    let at = last.occurred_at.plus(ventana_core::Span::from_hours(1));
    events.push(Event {
        id: ventana_core::tick_id(last.conversation.token(), at),
        occurred_at: at,
        logged_at: None,
        conversation: last.conversation.clone(),
        body: EventBody::Tick { at },
    });
    // Holding private-reply follow-ups, so that outbound_held is among the outputs.
    let mut policy = Policy::default();
    policy.instagram.hold_until_accepted = true;
    policy.messenger.hold_until_accepted = true;
    let mut fold = Fold::new(policy);
    let mut outputs = Vec::new();
    for event in &events {
        let value: Value = serde_json::from_str(&ventana_wire::event_to_json(event)).unwrap();
        input_types.insert(value["type"].as_str().unwrap().to_owned());
        assert_valid(&input, &value, "generated input");
        let _ = fold.apply(event, &mut outputs);
    }
    for each in &outputs {
        let value: Value = serde_json::from_str(&ventana_wire::output_to_json(each)).unwrap();
        output_types.insert(value["type"].as_str().unwrap().to_owned());
        assert_valid(&output, &value, "generated output");
    }
    for each in fold.snapshots() {
        let value: Value = serde_json::from_str(&ventana_wire::snapshot_to_json(&each)).unwrap();
        assert_valid(&snapshot, &value, "generated snapshot");
    }
    assert!(checked > 100, "{checked} example and fixture lines");
    assert_eq!(
        input_types.into_iter().collect::<Vec<_>>(),
        [
            "conversation_closed",
            "conversation_reopened",
            "customer_comment",
            "customer_message",
            "delivery_status",
            "outbound_message",
            "tick"
        ],
        "every input type was checked"
    );
    assert_eq!(
        output_types.len(),
        6,
        "every output type was checked: {output_types:?}"
    );

    // The schemas refuse what the code refuses or never writes.
    let example = lines(&repository().join("examples/whatsapp.jsonl"))[0].clone();
    let recorded = lines(&repository().join("examples/whatsapp.out.jsonl"))[0].clone();
    let with = |value: &Value, change: &dyn Fn(&mut Value)| {
        let mut value = value.clone();
        change(&mut value);
        value
    };
    for (validator, wrong, what) in [
        (
            &input,
            with(&example, &|v| {
                v.as_object_mut().unwrap().remove("conversation");
            }),
            "no conversation",
        ),
        (
            &input,
            with(&example, &|v| v["type"] = "customer_whisper".into()),
            "unknown type",
        ),
        (
            &input,
            with(&example, &|v| v["id"] = "a\nb".into()),
            "a control character in an id",
        ),
        (
            &input,
            with(&example, &|v| v["id"] = "x".repeat(513).into()),
            "an id over 512",
        ),
        (
            &input,
            with(&example, &|v| v["occurred_at"] = "yesterday".into()),
            "not an instant",
        ),
        (
            &input,
            with(&example, &|v| {
                v["conversation"]["channel"] = "telegram".into()
            }),
            "unknown channel",
        ),
        (
            &output,
            with(&recorded, &|v| v["text"] = "hello".into()),
            "a field outputs do not have",
        ),
        (
            &output,
            with(&recorded, &|v| {
                v.as_object_mut().unwrap().remove("session");
            }),
            "a missing field",
        ),
        (
            &output,
            with(&recorded, &|v| v["to"] = "ajar".into()),
            "an unknown state",
        ),
    ] {
        assert!(!validator.is_valid(&wrong), "accepted {what}: {wrong}");
    }
}

#[test]
fn the_asyncapi_document_is_valid_and_names_what_the_code_uses() {
    let document = read_json("docs/contract/asyncapi.json");
    let meta = read_json("tests/contract/asyncapi-3.0.0.schema.json");
    let validator = jsonschema::draft7::new(&meta).unwrap();
    assert_valid(&validator, &document, "docs/contract/asyncapi.json");
    assert_eq!(document["asyncapi"], "3.0.0");

    // Every reference resolves: inside the document, into the schemas, to the .proto.
    let schemas = read_json("docs/contract/ventana.schema.json");
    let mut references = Vec::new();
    collect_references(&document, &mut references);
    let mut named = BTreeSet::new();
    for reference in &references {
        if let Some(pointer) = reference.strip_prefix('#') {
            assert!(document.pointer(pointer).is_some(), "{reference}");
        } else if let Some(name) = reference.strip_prefix("ventana.schema.json#/$defs/") {
            assert!(schemas["$defs"].get(name).is_some(), "{reference}");
            named.insert(name.to_owned());
        } else {
            let path = repository().join("docs/contract").join(reference);
            assert!(path.exists(), "{reference}");
        }
    }
    // Every message schema (those with a title) is a payload of some message.
    let titled: BTreeSet<String> = schemas["$defs"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, schema)| schema.get("title").is_some())
        .map(|(name, _)| name.clone())
        .collect();
    assert_eq!(named, titled);

    // The channels are the code's subjects.
    let addresses: BTreeSet<String> = document["channels"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["address"].as_str().unwrap().to_owned())
        .collect();
    let token =
        ventana_core::ConversationKey::new(ventana_core::Channel::WhatsApp, "a", "b", "c").token();
    let filled = |pattern: &str| {
        pattern
            .replace("{partition}", &token.partition(16).to_string())
            .replace("{token}", &token.to_string())
            .replace("{type}", "state_changed")
            .replace("{reason}", "clock_skew")
    };
    let mut expected: BTreeSet<String> = [
        subjects::API_STATE,
        subjects::API_CHECK,
        subjects::API_SEND,
        subjects::API_DECISION,
        subjects::API_EXPIRING,
        subjects::API_RESOLVE,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    expected.extend([
        subjects::input_subject_of(token, 16),
        subjects::output_subject("state_changed", token),
        subjects::protobuf_output_subject("state_changed", token),
        subjects::dlq_subject("clock_skew"),
        subjects::partition_fence(token.partition(16)),
    ]);
    let filled: BTreeSet<String> = addresses.iter().map(|a| filled(a)).collect();
    assert_eq!(filled, expected);
}

fn collect_references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => found.push(reference.clone()),
                    _ => collect_references(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, found)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_ventanads_replies_and_outputs_match_their_schemas() {
    let contract = Contract::load();
    let Live {
        nats: _nats,
        dir: _dir,
        service: _service,
        client,
        js,
    } = live_with(None, |_| {}).await;
    let conversation = json!({"channel": "messenger", "account": "acme", "channel_id": "page-1", "contact_id": "psid-1"});
    let now = ventana_bus::now();
    let event = json!({"id": "m-c1", "type": "customer_message", "occurred_at": now.to_string(), "conversation": conversation});
    assert_valid(&contract.validator("InputEvent"), &event, "published event");
    let key = ventana_wire::json::parse_conversation(&conversation).unwrap();
    js.publish(subjects::input_subject(&key, 16), event.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    eventually("folded", std::time::Duration::from_secs(10), || {
        caught_up(&js)
    })
    .await;

    let token = key.token().to_string();
    let asks = [
        (
            subjects::API_STATE,
            "StateRequest",
            json!({"conversation": conversation}),
            "StateReply",
        ),
        (
            subjects::API_RESOLVE,
            "StateRequest",
            json!({"token": token}),
            "ResolveReply",
        ),
        (
            subjects::API_CHECK,
            "CheckRequest",
            json!({"conversation": conversation, "sender": "agent", "kind": "message"}),
            "DecisionReply",
        ),
        (
            subjects::API_CHECK,
            "CheckRequest",
            json!({"token": token, "sender": "automation", "kind": "private_reply", "comment_id": "c-9"}),
            "DecisionReply",
        ),
        (
            subjects::API_SEND,
            "SendRequest",
            json!({"id": "m-a1", "conversation": conversation, "sender": "agent", "kind": "message"}),
            "DecisionReply",
        ),
        (
            subjects::API_DECISION,
            "DecisionRequest",
            json!({"id": "m-a1", "token": token}),
            "DecisionReply",
        ),
        (
            subjects::API_EXPIRING,
            "ExpiringRequest",
            json!({"within": "25h", "limit": 10}),
            "ExpiringReply",
        ),
        (
            subjects::API_STATE,
            "StateRequest",
            json!({"token": "a".repeat(26)}),
            "ErrorReply",
        ),
        (
            subjects::API_EXPIRING,
            "ExpiringRequest",
            json!({"within": "1h 30m", "cursor": null}),
            "ExpiringReply",
        ),
    ];
    for (subject, request_schema, request, reply_schema) in asks {
        assert_valid(&contract.validator(request_schema), &request, subject);
        let reply = api_request(&client, subject, request.clone()).await;
        assert_valid(
            &contract.validator(reply_schema),
            &reply,
            &format!("{subject} {request}"),
        );
    }
    let page = api_request(&client, subjects::API_EXPIRING, json!({"within": "25h"})).await;
    assert_eq!(page["conversations"][0]["token"], token.as_str(), "{page}");
    let refused = api_request(
        &client,
        subjects::API_CHECK,
        json!({"token": token, "sender": "robot", "kind": "message"}),
    )
    .await;
    assert_valid(
        &contract.validator("ErrorReply"),
        &refused,
        "a refused check",
    );
    assert!(
        !contract
            .validator("CheckRequest")
            .is_valid(&json!({"token": token, "sender": "robot", "kind": "message"}))
    );

    // What was logged (the event published above, and the send's), and what ventanad
    // published.
    let logged = ventana_bus::client::read_stream(&js, subjects::IN_STREAM, None)
        .await
        .unwrap();
    assert_eq!(logged.len(), 2);
    for message in &logged {
        let value: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_valid(&contract.validator("InputEvent"), &value, "VENTANA_IN");
    }
    let outputs = ventana_tests::service::published_outputs(&js).await;
    assert!(outputs.len() >= 3, "{outputs:?}");
    let validator = contract.validator("OutputEvent");
    for output in &outputs {
        assert_valid(
            &validator,
            &serde_json::from_str(output).unwrap(),
            "VENTANA_OUT",
        );
    }
    // The partitions' fences and marks beside the outputs.
    let fences = ventana_bus::client::read_stream(
        &js,
        subjects::OUT_STREAM,
        Some(subjects::FENCE_SUBJECTS.to_owned()),
    )
    .await
    .unwrap();
    let (fence, mark) = (contract.validator("Fence"), contract.validator("Mark"));
    let mut marks = 0;
    for message in &fences {
        let value: Value = serde_json::from_slice(&message.payload).unwrap();
        if value.get("through").is_some() {
            marks += 1;
            assert_valid(&mark, &value, "a mark");
        } else {
            assert_valid(&fence, &value, "a fence");
        }
    }
    assert_eq!(fences.len() - marks, 16, "one fence per partition");
    assert!(marks >= 1, "the outputs' batches are marked");
}
