//! What a service in any language needs from ventana: where a conversation's events go
//! (documented, resolvable, described in `$SRV.INFO`), and a wrong partition refused.

use std::time::Duration;

use serde_json::{Value, json};
use ventana_bus::client::{logged_event, read_stream};
use ventana_core::{Channel, ConversationKey};
use ventana_tests::service::{Live, api_request, caught_up, eventually, live};
use ventana_wire::subjects::{
    API_CHECK, API_DECISION, API_EXPIRING, API_RESOLVE, API_SEND, API_STATE, DLQ_STREAM,
    ERROR_HEADER, IN_STREAM, REASON_HEADER, input_subject,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_find_where_events_go_and_a_wrong_partition_is_refused() {
    let Live {
        nats: _nats,
        dir: _dir,
        service,
        client,
        js,
    } = live(None).await;

    // $SRV.INFO says how subjects are made, and what each endpoint takes.
    let info = client
        .request("$SRV.INFO.ventana".to_owned(), "".into())
        .await
        .unwrap();
    let info: Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["metadata"]["partitions"], "16", "{info}");
    assert_eq!(
        info["metadata"]["input_subject"],
        "ventana.in.<partition>.<token>"
    );
    let endpoints: Vec<&str> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(
                e["metadata"]["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{e}"
            );
            e["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(endpoints.len(), 6, "{endpoints:?}");
    for name in ["state", "check", "send", "expiring", "resolve", "decision"] {
        assert!(endpoints.contains(&name), "{name}: {endpoints:?}");
    }

    // resolve and state give the token the code computes.
    let key = ConversationKey::new(Channel::WhatsApp, "acme", "1555", "4915");
    let conversation = json!({"channel": "whatsapp", "account": "acme", "channel_id": "1555", "contact_id": "4915"});
    let resolved = api_request(&client, API_RESOLVE, json!({"conversation": conversation})).await;
    let token = key.token();
    assert_eq!(resolved["token"], token.to_string().as_str(), "{resolved}");
    assert_eq!(resolved["partition"], token.partition(16));
    assert_eq!(resolved["partitions"], 16);
    assert_eq!(resolved["subject"], input_subject(&key, 16).as_str());
    let by_token = api_request(&client, API_RESOLVE, json!({"token": token.to_string()})).await;
    assert_eq!(by_token, resolved);
    let state = api_request(&client, API_STATE, json!({"conversation": conversation})).await;
    assert_eq!(state["token"], token.to_string().as_str(), "{state}");

    // The right token on the wrong partition goes to the DLQ, saying so; the right one is
    // folded.
    let right = token.partition(16);
    let wrong = (right + 1) % 16;
    let event = |id: &str| {
        json!({"id": id, "type": "customer_message", "occurred_at": ventana_bus::now().to_string(),
               "conversation": conversation})
        .to_string()
    };
    for (partition, id) in [(wrong, "c-wrong"), (right, "c-right")] {
        js.publish(format!("ventana.in.{partition}.{token}"), event(id).into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    eventually("both handled", Duration::from_secs(10), || caught_up(&js)).await;
    let dead = read_stream(&js, DLQ_STREAM, None).await.unwrap();
    assert_eq!(dead.len(), 1);
    let copy = js
        .get_stream(DLQ_STREAM)
        .await
        .unwrap()
        .get_raw_message(dead[0].sequence)
        .await
        .unwrap();
    let header = |name: &str| copy.headers.get(name).unwrap().as_str().to_owned();
    assert_eq!(header(REASON_HEADER), "invalid_field");
    assert!(
        header(ERROR_HEADER).contains(&format!(
            "partition {wrong}, but the conversation's partition is {right} of 16"
        )),
        "{}",
        header(ERROR_HEADER)
    );
    let state = api_request(&client, API_STATE, json!({"token": token.to_string()})).await;
    assert_eq!(
        (state["events"].clone(), state["last_event_id"].clone()),
        (json!(1), json!("c-right"))
    );
    // Every reader of the log skips it as ventanad did.
    let logged = read_stream(&js, IN_STREAM, None).await.unwrap();
    let readable: Vec<String> = logged
        .iter()
        .filter_map(|m| logged_event(m, Some(16)).ok())
        .map(|e| e.id)
        .collect();
    assert_eq!(readable, ["c-right"]);

    // A check without an id gets one derived from the question.
    let ask = |kind: &str| {
        api_request(
            &client,
            API_CHECK,
            json!({"conversation": conversation, "sender": "agent", "kind": kind}),
        )
    };
    let (message, again, template) = (
        ask("message").await,
        ask("message").await,
        ask("template").await,
    );
    assert_eq!(message["id"], again["id"]);
    assert_ne!(message["id"], template["id"], "{message} {template}");

    // `expiring` says which field is wrong.
    for (request, field) in [
        (json!({"limit": -5}), "`limit`"),
        (json!({"limit": 5000}), "`limit`"),
        (json!({"within": "-1h"}), "`within`"),
        (json!({"cursor": 7}), "`cursor`"),
    ] {
        let answer = api_request(&client, API_EXPIRING, request.clone()).await;
        assert_eq!(
            answer["error"]["code"], "bad_request",
            "{request}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{request}: {message}");
    }
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partition_count_is_fixed_when_the_stream_is_made() {
    let Live {
        nats, dir, service, ..
    } = live(None).await;
    service.stop().await.unwrap();
    let mut config = ventana_tests::service::config(&nats.url(), &dir.path().join("data"), None);
    config.partitions = 8;
    let refused = ventana_service::run(config, std::future::pending()).await;
    let error = format!("{:#}", refused.unwrap_err());
    assert!(
        error.contains("VENTANA_IN was created with 16 partitions")
            && error.contains("--partitions 16"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_events_are_read_by_their_common_content_types() {
    let Live {
        nats: _nats,
        dir: _dir,
        service,
        client,
        js,
    } = live(None).await;
    let types = [
        "application/protobuf",
        "application/x-protobuf",
        "Application/X-Protobuf; proto=ventana.v1.InputEvent",
    ];
    for (n, content_type) in types.iter().enumerate() {
        let key = ConversationKey::new(Channel::Messenger, "acme", "page-1", format!("psid-{n}"));
        let event = ventana_core::Event {
            id: format!("m-{n}"),
            occurred_at: ventana_bus::now(),
            logged_at: None,
            conversation: key.clone(),
            body: ventana_core::EventBody::CustomerMessage,
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Content-Type", *content_type);
        js.publish_with_headers(
            input_subject(&key, 16),
            headers,
            ventana_wire::proto::encode_event(&event).into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    eventually("all folded", Duration::from_secs(10), || caught_up(&js)).await;
    assert!(read_stream(&js, DLQ_STREAM, None).await.unwrap().is_empty());
    for (n, content_type) in types.iter().enumerate() {
        let state = api_request(
            &client,
            API_STATE,
            json!({"conversation": {"channel": "messenger", "account": "acme", "channel_id": "page-1", "contact_id": format!("psid-{n}")}}),
        )
        .await;
        assert_eq!(state["state"], "open", "{content_type}: {state}");
    }
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_of_a_send_get_its_decision() {
    let Live {
        nats: _nats,
        dir: _dir,
        service,
        client,
        js,
    } = live(None).await;
    let conversation =
        json!({"channel": "whatsapp", "account": "acme", "channel_id": "1555", "contact_id": "77"});
    let customer = json!({"id": "c-1", "type": "customer_message", "occurred_at": ventana_bus::now().to_string(), "conversation": conversation});
    let key = ConversationKey::new(Channel::WhatsApp, "acme", "1555", "77");
    js.publish(input_subject(&key, 16), customer.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    eventually("the customer folded", Duration::from_secs(10), || {
        caught_up(&js)
    })
    .await;

    // Five concurrent sends of one message: every caller gets the one decision.
    let send =
        json!({"id": "r-1", "conversation": conversation, "sender": "agent", "kind": "message"});
    let answers =
        futures::future::join_all((0..5).map(|_| api_request(&client, API_SEND, send.clone())))
            .await;
    assert_eq!(answers[0]["type"], "outbound_accepted", "{answers:?}");
    for answer in &answers {
        assert_eq!(answer, &answers[0], "{answers:?}");
    }
    // A retry long after, and `decision` for a caller who lost it, get it too.
    assert_eq!(
        api_request(&client, API_SEND, send.clone()).await,
        answers[0]
    );
    let lost = api_request(
        &client,
        API_DECISION,
        json!({"token": key.token().to_string(), "id": "r-1"}),
    )
    .await;
    assert_eq!(lost, answers[0]);
    let unknown = api_request(
        &client,
        API_DECISION,
        json!({"conversation": conversation, "id": "nope"}),
    )
    .await;
    assert_eq!(unknown["error"]["code"], "not_found", "{unknown}");

    // A send from the future is refused at once, as `check` refuses it; nothing is logged.
    let before = ventana_tests::service::stream_len(&js, IN_STREAM).await;
    let future = ventana_core::Timestamp::from_unix_nanos(
        ventana_bus::now().unix_nanos() + 3_600 * 1_000_000_000,
    );
    let early = json!({"id": "r-2", "occurred_at": future.to_string(), "conversation": conversation, "sender": "agent", "kind": "message"});
    let refused = api_request(&client, API_SEND, early).await;
    assert_eq!(refused["error"]["code"], "bad_request", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("occurred_at"),
        "{refused}"
    );
    assert_eq!(
        ventana_tests::service::stream_len(&js, IN_STREAM).await,
        before
    );
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_follow_the_services_framework_and_are_counted() {
    let Live {
        nats: _nats,
        dir: _dir,
        service: _service,
        client,
        js: _js,
    } = live(None).await;
    let srv = |subject: &'static str| {
        let client = client.clone();
        async move {
            let reply = client.request(subject.to_owned(), "".into()).await.unwrap();
            serde_json::from_slice::<Value>(&reply.payload).unwrap()
        }
    };
    let ping = srv("$SRV.PING").await;
    assert_eq!(ping["type"], "io.nats.micro.v1.ping_response", "{ping}");
    assert_eq!(ping["name"], "ventana");
    let id = ping["id"].as_str().unwrap().to_owned();
    let info = srv("$SRV.INFO.ventana").await;
    assert_eq!(info["id"], id.as_str());
    assert!(
        info["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["queue_group"] == "q" && e["metadata"]["request"].is_string()),
        "{info}"
    );

    // Twenty failing requests of three kinds, and two that succeed.
    let failures = [
        (API_STATE, "not json", 400, "bad_request"),
        (
            API_STATE,
            r#"{"token": "aaaaaaaaaaaaaaaaaaaaaaaaaa"}"#,
            404,
            "not_found",
        ),
        (API_EXPIRING, r#"{"limit": -5}"#, 400, "bad_request"),
    ];
    for round in 0..20 {
        let (subject, body, code, name) = failures[round % failures.len()];
        let reply = client
            .request(subject.to_owned(), body.to_owned().into())
            .await
            .unwrap();
        let headers = reply.headers.expect("error headers");
        assert_eq!(
            headers.get("Nats-Service-Error-Code").unwrap().as_str(),
            code.to_string(),
            "{subject} {body}"
        );
        let description = headers.get("Nats-Service-Error").unwrap().as_str();
        let error: Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(error["error"]["code"], name, "{error}");
        assert_eq!(error["error"]["message"], description);
    }
    for _ in 0..2 {
        let reply = client
            .request(API_EXPIRING.to_owned(), "{}".into())
            .await
            .unwrap();
        assert!(reply.headers.is_none(), "a success has no error headers");
    }

    let stats = srv("$SRV.STATS.ventana").await;
    assert_eq!(stats["type"], "io.nats.micro.v1.stats_response", "{stats}");
    let endpoint = |name: &str| {
        stats["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap()
            .clone()
    };
    let (state, expiring) = (endpoint("state"), endpoint("expiring"));
    // Rounds 0, 1, 3, 4, ... go to state (14 of 20), rounds 2, 5, ... to expiring (6).
    assert_eq!(
        (state["num_requests"].clone(), state["num_errors"].clone()),
        (json!(14), json!(14)),
        "{state}"
    );
    assert_eq!(
        (
            expiring["num_requests"].clone(),
            expiring["num_errors"].clone()
        ),
        (json!(8), json!(6)),
        "{expiring}"
    );
    assert!(
        expiring["last_error"].as_str().unwrap().starts_with("400:"),
        "{expiring}"
    );
    let by_id = client
        .request(format!("$SRV.STATS.ventana.{id}"), "".into())
        .await
        .unwrap();
    let by_id: Value = serde_json::from_slice(&by_id.payload).unwrap();
    assert_eq!(by_id["id"], id.as_str());
}
