//! ventanad against a real nats-server and a real sled store.

use std::time::Duration;

use serde_json::{Value, json};
use ventana_bus::client::{publish_events, read_stream};
use ventana_bus::now;
use ventana_core::{Event, Policy, Span, Timestamp};
use ventana_tests::service::{
    FAST_POLICY, Live, Settled, api_request, caught_up, eventually, example, live, publish_live,
    published_outputs, settle, stream_len,
};
use ventana_tests::traffic::{build_log, seeded_steps};
use ventana_wire::subjects::{API_CHECK, API_EXPIRING, API_SEND, API_STATE, DLQ_STREAM, IN_STREAM};
use ventana_wire::{parse_event, parse_policy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_outputs_equal_a_replay_of_the_live_log() {
    let policy = parse_policy(FAST_POLICY).unwrap();
    let Live {
        nats: _nats,
        dir: _dir,
        service,
        client: _client,
        js,
    } = live(Some(FAST_POLICY)).await;

    let mut events: Vec<Event> = ["whatsapp", "messenger", "instagram-comment"]
        .iter()
        .flat_map(|n| example(n))
        .collect();
    events.extend(build_log(&seeded_steps(3, 10_000, 300, 1)));
    publish_live(&js, &events, 4_000).await;
    let Settled {
        logged,
        outputs: expected,
        ..
    } = settle(&js, &policy, Duration::from_secs(30)).await;
    let ticks = logged.iter().filter(|e| e.id.starts_with("tick:")).count();
    assert!(
        ticks > 100,
        "deadlines passed while the test ran, and were logged: {ticks}"
    );
    let published = published_outputs(&js).await;
    assert!(expected.len() > 5_000, "{} outputs", expected.len());
    let differing = expected.iter().zip(&published).position(|(a, b)| a != b);
    assert_eq!(differing, None, "first difference at output {differing:?}");
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_goes_to_the_dlq_and_valid_traffic_flows() {
    let Live {
        nats: _nats,
        dir: _dir,
        service,
        client: _client,
        js,
    } = live(None).await;

    let valid = build_log(&seeded_steps(5, 2_000, 50, 1));
    let mut acks = Vec::new();
    let junk = [
        "not json at all".to_owned(),
        r#"{"id":"x","type":"fax","occurred_at":"2026-03-02T10:00:00Z","conversation":{"channel":"whatsapp","account":"a","channel_id":"b","contact_id":"c"}}"#.to_owned(),
        r#"{"type":"customer_message"}"#.to_owned(),
        "x".repeat(70 * 1024),
    ];
    for i in 0..1000 {
        let payload = junk[i % junk.len()].clone();
        acks.push(
            js.publish(
                format!("ventana.in.{}.{}", i % 16, "aaaaaaaaaaaaaaaaaaaaaaaaaa"),
                payload.into(),
            )
            .await
            .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let at = now();
    let valid: Vec<Event> = valid
        .into_iter()
        .map(|mut e| {
            e.occurred_at = at;
            e
        })
        .collect();
    let (as_protobuf, as_json) = valid.split_at(500);
    // protobuf is accepted too (Content-Type: application/protobuf).
    for event in as_protobuf {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.id.as_str());
        headers.insert("Content-Type", "application/protobuf");
        let subject = ventana_wire::subjects::input_subject(&event.conversation, 16);
        js.publish_with_headers(
            subject,
            headers,
            ventana_wire::proto::encode_event(event).into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    publish_events(&js, as_json, 16).await.unwrap();
    eventually(
        "ventanad to fold everything",
        Duration::from_secs(30),
        || caught_up(&js),
    )
    .await;

    let dlq = read_stream(&js, DLQ_STREAM, None).await.unwrap();
    assert_eq!(dlq.len(), 1000);
    let mut reasons = std::collections::BTreeMap::new();
    for message in &dlq {
        *reasons.entry(message.subject.clone()).or_insert(0) += 1;
    }
    assert_eq!(
        reasons.get("ventana.dlq.undecodable"),
        Some(&250),
        "{reasons:?}"
    );
    assert_eq!(
        reasons.get("ventana.dlq.unknown_type"),
        Some(&250),
        "{reasons:?}"
    );
    assert_eq!(
        reasons.get("ventana.dlq.missing_field"),
        Some(&250),
        "{reasons:?}"
    );
    assert_eq!(
        reasons.get("ventana.dlq.oversize"),
        Some(&250),
        "{reasons:?}"
    );

    // Valid traffic, protobuf included: exactly what a replay of the valid events gives.
    let settled = settle(&js, &Policy::default(), Duration::from_secs(30)).await;
    assert_eq!(settled.logged.len(), 2_000);
    let expected = settled.outputs;
    assert_eq!(published_outputs(&js).await[..expected.len()], expected[..]);
    service.stop().await.unwrap();
}

fn contact_id(conversation: &Value) -> &Value {
    &conversation["conversation"]["contact_id"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_state_check_send_and_expiring() {
    let Live {
        nats: _nats,
        dir: _dir,
        service,
        client,
        js,
    } = live(None).await;
    eventually("the API", Duration::from_secs(10), || async {
        client
            .request("$SRV.PING.ventana".to_owned(), "".into())
            .await
            .is_ok()
    })
    .await;

    let conversation = |contact: &str| json!({"channel": "whatsapp", "account": "acme", "channel_id": "1", "contact_id": contact});
    // Nobody wrote yet: state none, a message would be refused, nothing is logged by check.
    let state = api_request(
        &client,
        API_STATE,
        json!({"conversation": conversation("a")}),
    )
    .await;
    assert_eq!(state["state"], "none");
    let verdict = api_request(
        &client,
        API_CHECK,
        json!({"conversation": conversation("a"), "sender": "agent", "kind": "message"}),
    )
    .await;
    assert_eq!(verdict["type"], "delivery_failed");
    assert_eq!(verdict["reason"], "no_customer_message");
    assert_eq!(
        stream_len(&js, IN_STREAM).await,
        0,
        "check has no side effect"
    );

    // Customers write, at staggered times in the last hours.
    let at = now();
    let customers: Vec<Event> = (0..5)
        .map(|i| {
            let line = json!({"id": format!("c{i}"), "type": "customer_message",
                "occurred_at": at.minus(Span::from_hours(23 - i)).to_string(), "conversation": conversation(&format!("k{i}"))});
            parse_event(&line.to_string()).unwrap()
        })
        .collect();
    // Late by hours: allowed (only the future is limited by the clock skew).
    publish_events(&js, &customers, 16).await.unwrap();
    eventually("the customers folded", Duration::from_secs(10), || {
        caught_up(&js)
    })
    .await;

    let state_of = |contact: &str| {
        api_request(
            &client,
            API_STATE,
            json!({"conversation": conversation(contact)}),
        )
    };
    let send = |id: &str, contact: &str| {
        api_request(
            &client,
            API_SEND,
            json!({"id": id, "conversation": conversation(contact), "sender": "agent", "kind": "message"}),
        )
    };
    assert_eq!(state_of("k0").await["state"], "open");
    let sent = send("m1", "k0").await;
    assert_eq!(sent["type"], "outbound_accepted", "{sent}");
    assert_eq!(sent["messaging_type"], "response");
    assert_eq!(state_of("k0").await["state"], "awaiting_customer");
    // A retry of a decided message gets that decision, not an error.
    let again = send("m1", "k0").await;
    assert_eq!(again, sent, "the same decision");
    let refused = send("m2", "a").await;
    assert_eq!(refused["reason"], "no_customer_message", "{refused}");

    // Soonest first, paginated.
    let page = api_request(&client, API_EXPIRING, json!({"within": "3h", "limit": 2})).await;
    let page_field = |page: &Value, field: fn(&Value) -> &Value| -> Vec<String> {
        page["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| field(c).as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(page_field(&page, contact_id), ["k0", "k1"]);
    let rest = api_request(
        &client,
        API_EXPIRING,
        json!({"within": "3h", "limit": 2, "cursor": page["next_cursor"]}),
    )
    .await;
    assert_eq!(page_field(&rest, contact_id), ["k2"]);
    let closes: Vec<Timestamp> = page_field(&page, |c| &c["closes_at"])
        .iter()
        .map(|t| Timestamp::parse_rfc3339(t).unwrap())
        .collect();
    assert!(closes[0] <= closes[1]);

    let error = api_request(&client, API_STATE, json!({"nothing": 1})).await;
    assert_eq!(error["error"]["code"], "bad_request");

    // What can never be sent is refused up front by check and send, and nothing is logged.
    let logged = stream_len(&js, IN_STREAM).await;
    let instagram =
        json!({"channel": "instagram", "account": "acme", "channel_id": "1", "contact_id": "k0"});
    for (subject, request_body, problem) in [
        (
            API_CHECK,
            json!({"conversation": instagram, "sender": "agent", "kind": "private_reply"}),
            "comment_id",
        ),
        (
            API_SEND,
            json!({"id": "p1", "conversation": instagram, "sender": "agent", "kind": "private_reply"}),
            "comment_id",
        ),
        (
            API_CHECK,
            json!({"conversation": conversation("k0"), "sender": "agent", "kind": "comment_reply", "comment_id": "c1"}),
            "WhatsApp has no comments",
        ),
        (
            API_SEND,
            json!({"id": "r1", "conversation": conversation("k0"), "sender": "agent", "kind": "private_reply", "comment_id": "c1"}),
            "WhatsApp has no comments",
        ),
    ] {
        let error = api_request(&client, subject, request_body).await;
        assert_eq!(error["error"]["code"], "bad_request", "{subject}: {error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(problem), "{subject}: {message}");
    }
    assert_eq!(stream_len(&js, IN_STREAM).await, logged, "nothing logged");
    service.stop().await.unwrap();
}
