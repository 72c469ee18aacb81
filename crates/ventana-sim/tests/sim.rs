//! The `ventana-sim` binary: JSONL that replays, and live traffic into a real nats-server that
//! ventanad (in-process, real sled) folds entirely, retries dropped once by JetStream.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use ventana_bus::client::{logged_events, read_stream};
use ventana_sim::{Mix, simulate};
use ventana_tests::service::{Live, caught_up, eventually, live, stream_len};
use ventana_wire::subjects::{DLQ_STREAM, IN_STREAM};

fn sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ventana-sim"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn writes_the_same_valid_traffic_for_the_same_seed() {
    let first = sim(&["--output", "-", "--events", "2000", "--seed", "5"]);
    assert!(first.status.success(), "{first:?}");
    let again = sim(&["--output", "-", "--events", "2000", "--seed", "5"]);
    assert_eq!(first.stdout, again.stdout, "reproducible");
    let other = sim(&["--output", "-", "--events", "2000", "--seed", "6"]);
    assert_ne!(first.stdout, other.stdout);
    let text = String::from_utf8(first.stdout).unwrap();
    let events: Vec<_> = text
        .lines()
        .map(|line| ventana_wire::parse_event(line).unwrap())
        .collect();
    let expected = simulate(&Mix {
        seed: 5,
        events: 2000,
        conversations: 1000,
        days: 7,
        duplicate_percent: 2,
        custom_channel: false,
    });
    assert_eq!(events, expected);

    let refused = sim(&["--clock", "simulated", "--events", "10"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("publishing is real time"),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_live_traffic_that_ventanad_folds_without_a_dead_letter() {
    let Live {
        nats,
        service: ventanad,
        js,
        ..
    } = live(None).await;

    let url = nats.url();
    let output = tokio::task::spawn_blocking(move || {
        sim(&[
            "--events",
            "3000",
            "--seed",
            "9",
            "--duplicates",
            "5",
            "--max",
            "--run",
            "t1",
            "--nats",
            &url,
        ])
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let generated = simulate(&Mix {
        seed: 9,
        events: 3000,
        conversations: 1000,
        days: 7,
        duplicate_percent: 5,
        custom_channel: false,
    });
    let unique: HashSet<&str> = generated.iter().map(|e| e.id.as_str()).collect();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.starts_with(&format!(
            "published {} events ({} new, {} duplicates dropped by JetStream)",
            generated.len(),
            unique.len(),
            generated.len() - unique.len()
        )),
        "{stdout}"
    );

    eventually(
        "ventanad to fold everything",
        Duration::from_secs(30),
        || caught_up(&js),
    )
    .await;
    let logged: Vec<String> = logged_events(&read_stream(&js, IN_STREAM, None).await.unwrap())
        .into_iter()
        .map(|e| e.id)
        .filter(|id| id.starts_with("t1.0-"))
        .collect();
    let expected: Vec<String> = {
        let mut seen = HashSet::new();
        generated
            .iter()
            .filter(|e| seen.insert(e.id.clone()))
            .map(|e| format!("t1.0-{}", e.id))
            .collect()
    };
    assert_eq!(logged, expected, "each event once, in order");
    assert_eq!(stream_len(&js, DLQ_STREAM).await, 0, "all valid");
    ventanad.stop().await.unwrap();
}

#[test]
fn every_channel_gets_only_what_its_platform_allows() {
    use std::collections::HashMap;
    use ventana_core::{Channel, EventBody, MessageKind, Tag};
    let events = simulate(&Mix {
        seed: 3,
        events: 50_000,
        conversations: 2_000,
        days: 7,
        duplicate_percent: 0,
        custom_channel: false,
    });
    let mut closed: HashMap<String, bool> = HashMap::new();
    let mut comments: HashMap<String, Vec<String>> = HashMap::new();
    let mut seen = HashMap::<&str, usize>::new();
    for event in &events {
        let key = event.conversation.to_string();
        let channel = &event.conversation.channel;
        match &event.body {
            EventBody::CustomerComment { comment_id } => {
                assert_ne!(*channel, Channel::WhatsApp, "a WhatsApp comment: {event:?}");
                comments
                    .entry(key.clone())
                    .or_default()
                    .push(comment_id.clone());
                closed.insert(key, false);
                *seen.entry("comment").or_default() += 1;
            }
            EventBody::CustomerMessage => {
                closed.insert(key, false);
            }
            EventBody::OutboundMessage(out) => {
                if matches!(
                    out.kind,
                    MessageKind::PrivateReply | MessageKind::CommentReply
                ) {
                    assert_ne!(*channel, Channel::WhatsApp, "{event:?}");
                    let comment = out.comment_id.as_ref().expect("a reply names its comment");
                    assert!(
                        comments.get(&key).is_some_and(|c| c.contains(comment)),
                        "a reply to a comment the customer never made: {event:?}"
                    );
                    *seen.entry("reply").or_default() += 1;
                }
                match channel {
                    Channel::WhatsApp => assert_eq!(out.tag, None, "{event:?}"),
                    Channel::Instagram => {
                        assert_ne!(out.kind, MessageKind::Template, "{event:?}");
                        assert!(out.tag.is_none_or(|t| t == Tag::HumanAgent), "{event:?}");
                    }
                    _ => {
                        if out.tag.is_some_and(|t| t != Tag::HumanAgent) {
                            *seen.entry("messenger tag").or_default() += 1;
                        }
                    }
                }
            }
            EventBody::ConversationClosed { .. } => {
                assert!(
                    !closed.get(&key).copied().unwrap_or(false),
                    "closed twice: {event:?}"
                );
                closed.insert(key, true);
                *seen.entry("closed").or_default() += 1;
            }
            EventBody::ConversationReopened { .. } => {
                assert!(
                    closed.get(&key).copied().unwrap_or(false),
                    "reopened while open: {event:?}"
                );
                closed.insert(key, false);
                *seen.entry("reopened").or_default() += 1;
            }
            _ => {}
        }
    }
    // Every kind still happens where it may.
    for kind in ["comment", "reply", "messenger tag", "closed", "reopened"] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 10,
            "{kind}: {seen:?}"
        );
    }
}
