//! End to end: signed webhooks into ventana-meta → VENTANA_IN → ventanad (in-process, real
//! nats-server, real sled) → sends through the gateway, delivered to a local HTTP server
//! standing in for Meta's Graph API (the one part that cannot be reached from here).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus, Uri};
use common::{Adapter, GRAPH_TOKEN};
use reqwest::StatusCode;
use serde_json::{Value, json};
use ventana_bus::client::read_stream;
use ventana_tests::nats::{NatsServer, USERS, free_port};
use ventana_tests::service::{Live, eventually, live, published_outputs};
use ventana_wire::subjects::{API_STATE, DLQ_STREAM, IN_STREAM, OUT_STREAM};

/// Message content only Meta may see: it must not reach a stream.
const PRIVATE_TEXT: &str = "my card ends in 4242";

/// A request the stand-in Graph API received.
#[derive(Clone, Debug)]
struct Call {
    path: String,
    authorization: String,
    body: Value,
}

#[derive(Clone, Default)]
struct Graph {
    calls: Arc<Mutex<Vec<Call>>>,
}

/// Meta's answers: a message id, or for the recipient `REFUSE` the Messenger window error.
async fn graph_api(
    State(graph): State<Graph>,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (AxumStatus, Json<Value>) {
    let mut calls = graph.calls.lock().unwrap();
    calls.push(Call {
        path: uri.path().to_owned(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: body.clone(),
    });
    let n = calls.len();
    if body.pointer("/recipient/id") == Some(&json!("REFUSE")) {
        return (
            AxumStatus::BAD_REQUEST,
            Json(
                json!({"error": {"message": "(#10) This message is sent outside of allowed window.",
                "type": "OAuthException", "code": 10, "error_subcode": 2018278, "fbtrace_id": "A1"}}),
            ),
        );
    }
    let answer = if body.get("messaging_product").is_some() {
        json!({"messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": body["to"]}],
               "messages": [{"id": format!("wamid.HBgLMTU1NTAwMDA{n}==")}]})
    } else {
        json!({"recipient_id": body.pointer("/recipient/id"), "message_id": format!("m_AbC-{n}")})
    };
    (AxumStatus::OK, Json(answer))
}

impl Graph {
    async fn start() -> (Self, String) {
        Self::start_on(free_port()).await
    }

    async fn start_on(port: u16) -> (Self, String) {
        let graph = Self::default();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let url = format!("http://{}/v23.0", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(graph_api)
            .with_state(graph.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (graph, url)
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

const PHONE: &str = "106540352242922";
const PAGE: &str = "1139012345";
const IG_ACCOUNT: &str = "17841405793187218";

fn whatsapp_message(from: &str, id: &str, at: i64) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE},
        "contacts": [{"profile": {"name": "Kai"}, "wa_id": from}],
        "messages": [{"from": from, "id": id, "timestamp": at.to_string(), "type": "text",
                      "text": {"body": "hello"}}]}}]}]})
}

fn whatsapp_failed(recipient: &str, wamid: &str, at: i64, code: i64) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE},
        "statuses": [{"id": wamid, "status": "failed", "timestamp": at.to_string(),
            "recipient_id": recipient,
            "errors": [{"code": code, "title": "Re-engagement message",
                        "error_data": {"details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}}]}]}}]}]})
}

fn messenger(item: Value) -> Value {
    json!({"object": "page", "entry": [{"id": PAGE, "time": now_seconds() * 1000, "messaging": [item]}]})
}

fn messenger_message(psid: &str, mid: &str, at: i64) -> Value {
    messenger(
        json!({"sender": {"id": psid}, "recipient": {"id": PAGE}, "timestamp": at * 1000,
        "message": {"mid": mid, "text": "hello"}}),
    )
}

fn whatsapp(contact: &str) -> Value {
    json!({"channel": "whatsapp", "channel_id": PHONE, "contact_id": contact})
}

fn messenger_conversation(psid: &str) -> Value {
    json!({"channel": "messenger", "channel_id": PAGE, "contact_id": psid})
}

fn agent_message(id: &str, conversation: Value, content: Value) -> Value {
    json!({"id": id, "conversation": conversation, "sender": "agent", "kind": "message",
           "message": content})
}

/// The outputs on VENTANA_OUT about message `id`.
async fn outputs_about(js: &async_nats::jetstream::Context, id: &str) -> Vec<Value> {
    published_outputs(js)
        .await
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|o| o["message_id"] == id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_are_decided_by_ventana_and_delivered_by_the_graph_api() {
    let Live {
        nats,
        service: ventanad,
        client,
        js,
        ..
    } = live(None).await;
    let (graph, graph_url) = Graph::start().await;
    let adapter = Adapter::start(common::config(&nats, Some(graph_url))).await;
    let now = now_seconds();

    // Requests the gateway refuses before asking anybody.
    let text = json!({"type": "text", "text": {"body": PRIVATE_TEXT}});
    for (request, why) in [
        (
            json!({"id": "x", "conversation": whatsapp("1")}),
            "`message`",
        ),
        (
            json!({"conversation": whatsapp("1"), "message": {}}),
            "`id`",
        ),
        (
            json!({"id": "x", "conversation": {"channel": "custom:sms", "channel_id": "a", "contact_id": "b"}, "sender": "agent", "kind": "message", "message": {}}),
            "not a Meta channel",
        ),
        (
            json!({"id": "x", "conversation": whatsapp("1"), "sender": "agent", "kind": "private_reply", "message": {}}),
            "WhatsApp has no comments",
        ),
        (
            json!({"id": "x", "conversation": {"account": "other", "channel": "whatsapp", "channel_id": "a", "contact_id": "b"}, "message": {}}),
            "account",
        ),
        (
            json!({"id": "x", "conversation": whatsapp("1"), "sender": "agent", "kind": "message", "message": "hi"}),
            "must be an object",
        ),
        (
            json!({"id": "x", "conversation": messenger_conversation("1"), "sender": "agent", "kind": "comment_reply", "message": {}}),
            "`comment_id`",
        ),
        (
            json!({"id": "x", "conversation": whatsapp("1"), "sender": "agent", "kind": "message", "template": {}}),
            "`kind: template`",
        ),
        (
            json!({"id": "x", "conversation": {"channel": "instagram", "channel_id": "a", "contact_id": "b"}, "sender": "agent", "template": {}}),
            "no message templates",
        ),
    ] {
        let (status, answer) = adapter.send(request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{message}");
    }

    // Outside the window (the customer wrote 30 hours ago on WhatsApp): 409, never sent.
    adapter
        .webhook(whatsapp_message(
            "4915100000001",
            "wamid.old",
            now - 30 * 3600,
        ))
        .await;
    // A template may go out any time (R6): `template` is the Graph API's template object.
    let template = json!({"name": "order_update", "language": {"code": "en_US"}});
    let (status, answer) = adapter
        .send(
            json!({"id": "out-t", "conversation": whatsapp("4915100000001"),
            "sender": "automation", "template": template}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"]["messaging_type"], "template");
    let call = graph.calls().pop().unwrap();
    assert_eq!(
        (&call.body["type"], &call.body["template"], &call.body["to"]),
        (&json!("template"), &template, &json!("4915100000001"))
    );
    let (status, answer) = adapter
        .send(agent_message(
            "out-1",
            whatsapp("4915100000001"),
            text.clone(),
        ))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["reason"], "window_expired");
    assert_eq!(answer["suggestion"], "send_template");
    assert!(
        answer["detail"].as_str().unwrap().contains("24"),
        "{answer}"
    );
    assert_eq!(
        graph.calls().len(),
        1,
        "Meta is never called for a rejection"
    );
    eventually(
        "delivery_failed for out-1 on VENTANA_OUT",
        Duration::from_secs(10),
        || async {
            outputs_about(&js, "out-1")
                .await
                .iter()
                .any(|o| o["type"] == "delivery_failed" && o["reason"] == "window_expired")
        },
    )
    .await;

    // Messenger, 30 hours after the customer: a human agent is sent with HUMAN_AGENT.
    adapter
        .webhook(messenger_message("PSID-7", "m_customer", now - 30 * 3600))
        .await;
    let content = json!({"text": PRIVATE_TEXT});
    let (status, answer) = adapter
        .send(agent_message(
            "out-2",
            messenger_conversation("PSID-7"),
            content.clone(),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "sent");
    assert_eq!(answer["decision"]["tag"], "human_agent");
    let call = graph.calls().pop().unwrap();
    assert_eq!(call.path, format!("/v23.0/{PAGE}/messages"));
    assert_eq!(call.authorization, format!("Bearer {GRAPH_TOKEN}"));
    assert_eq!(
        call.body,
        json!({"recipient": {"id": "PSID-7"}, "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT", "message": content})
    );
    let sent_mid = answer["platform_message_id"].as_str().unwrap().to_owned();

    // Its echo is not logged again; its delivery report names ventana's message id.
    adapter
        .webhook(messenger(json!({"sender": {"id": PAGE}, "recipient": {"id": "PSID-7"},
            "timestamp": now * 1000, "message": {"mid": sent_mid, "is_echo": true, "app_id": 1517, "text": PRIVATE_TEXT}})))
        .await;
    adapter
        .webhook(messenger(
            json!({"sender": {"id": "PSID-7"}, "recipient": {"id": PAGE},
            "timestamp": now * 1000, "delivery": {"mids": [sent_mid], "watermark": now * 1000}}),
        ))
        .await;

    // An Instagram comment allows one private reply: a DM is sent tied to the comment.
    adapter
        .webhook(json!({"object": "instagram", "entry": [{"id": IG_ACCOUNT, "time": now,
            "changes": [{"field": "comments", "value": {"from": {"id": "IGSID-3", "username": "kai"},
                "media": {"id": "18011", "media_product_type": "FEED"}, "id": "17858893269000001",
                "text": "price?"}}]}]}))
        .await;
    let (status, answer) = adapter
        .send(agent_message(
            "out-ig",
            json!({"channel": "instagram", "channel_id": IG_ACCOUNT, "contact_id": "IGSID-3"}),
            content.clone(),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"]["messaging_type"], "private_reply");
    let call = graph.calls().pop().unwrap();
    assert_eq!(call.path, format!("/v23.0/{IG_ACCOUNT}/messages"));
    assert_eq!(
        call.body,
        json!({"recipient": {"comment_id": "17858893269000001"}, "message": content})
    );

    // Inside the window on WhatsApp: sent untagged; then Meta reports 131047 for it.
    adapter
        .webhook(whatsapp_message("4915100000002", "wamid.new", now - 60))
        .await;
    let (status, answer) = adapter
        .send(agent_message(
            "out-3",
            whatsapp("4915100000002"),
            text.clone(),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"]["messaging_type"], "response");
    let call = graph.calls().pop().unwrap();
    assert_eq!(call.path, format!("/v23.0/{PHONE}/messages"));
    assert_eq!(call.body["to"], "4915100000002");
    assert_eq!(call.body["text"]["body"], PRIVATE_TEXT);
    assert_eq!(call.body.get("tag"), None);
    let wamid = answer["platform_message_id"].as_str().unwrap().to_owned();
    adapter
        .webhook(whatsapp_failed("4915100000002", &wamid, now, 131_047))
        .await;
    eventually(
        "the platform's window error for out-3",
        Duration::from_secs(10),
        || async {
            outputs_about(&js, "out-3").await.iter().any(|o| {
                o["type"] == "delivery_failed"
                    && o["source"] == "platform"
                    && o["reason"] == "window_expired"
            })
        },
    )
    .await;
    let state = client
        .request(
            API_STATE,
            json!({"conversation": {"channel": "whatsapp", "account": "acme", "channel_id": PHONE, "contact_id": "4915100000002"}})
                .to_string()
                .into(),
        )
        .await
        .unwrap();
    let state: Value = serde_json::from_slice(&state.payload).unwrap();
    assert_eq!(
        state["state"], "expired",
        "the platform closed the window: {state}"
    );

    // The Graph API refuses a send: 502, and the refusal is logged as a platform failure.
    adapter
        .webhook(messenger_message("REFUSE", "m_customer_2", now - 60))
        .await;
    let (status, answer) = adapter
        .send(agent_message(
            "out-4",
            messenger_conversation("REFUSE"),
            content.clone(),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert_eq!(
        (
            &answer["status"],
            &answer["error"]["code"],
            &answer["error"]["logged"]
        ),
        (&json!("failed"), &json!(10), &json!(true))
    );
    eventually(
        "the Graph API's refusal of out-4 as delivery_failed",
        Duration::from_secs(10),
        || async {
            outputs_about(&js, "out-4").await.iter().any(|o| {
                o["type"] == "delivery_failed"
                    && o["source"] == "platform"
                    && o["reason"] == "window_expired"
            })
        },
    )
    .await;

    // A retry of the same message gets the same answer and sends nothing again.
    let calls = graph.calls().len();
    let (status, again) = adapter
        .send(agent_message(
            "out-2",
            messenger_conversation("PSID-7"),
            content.clone(),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        (&again["platform_message_id"], &again["repeated"]),
        (&json!(sent_mid), &json!(true))
    );
    let (status, again) = adapter
        .send(agent_message(
            "out-1",
            whatsapp("4915100000001"),
            text.clone(),
        ))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["reason"], "window_expired");
    assert_eq!(graph.calls().len(), calls);

    // What ventana logged: statuses name ventana's ids, the echo is gone, no content anywhere.
    let logged = read_stream(&js, IN_STREAM, None).await.unwrap();
    let events = ventana_bus::client::logged_events(&logged);
    assert!(!events.iter().any(|e| e.id == sent_mid), "echo dropped");
    let reports: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.body {
            ventana_core::EventBody::DeliveryStatus(s) => {
                Some((e.id.clone(), s.message_id.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        reports,
        vec![
            (format!("delivery:{sent_mid}"), "out-2".to_owned()),
            (format!("status:{wamid}:failed"), "out-3".to_owned()),
            ("graph-error:out-4".to_owned(), "out-4".to_owned()),
        ]
    );
    for stream in [IN_STREAM, OUT_STREAM] {
        for message in read_stream(&js, stream, None).await.unwrap() {
            let payload = String::from_utf8_lossy(&message.payload);
            assert!(!payload.contains(PRIVATE_TEXT), "{stream}: {payload}");
        }
    }

    let (_, metrics) = adapter.get("/metrics").await;
    for line in [
        "ventana_meta_sends_total{outcome=\"sent\"} 4",
        "ventana_meta_sends_total{outcome=\"rejected\"} 1",
        "ventana_meta_sends_total{outcome=\"graph_error\"} 1",
        "ventana_meta_sends_total{outcome=\"repeated\"} 2",
        "ventana_meta_webhooks_total{code=\"200\"} 8",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    adapter.stop().await;
    ventanad.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_graph_token_or_ventanad_nothing_is_decided() {
    let nats = NatsServer::start();
    let adapter = Adapter::start(common::config(&nats, None)).await;
    let request = agent_message("m1", whatsapp("1"), json!({"type": "text"}));
    let (status, answer) = adapter.send(request.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer["error"]["code"], "no_graph_token");
    adapter.stop().await;

    let (graph, graph_url) = Graph::start().await;
    let adapter = Adapter::start(common::config(&nats, Some(graph_url))).await;
    let (status, answer) = adapter.send(request).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ventanad is not answering")
    );
    assert!(graph.calls().is_empty());
    adapter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_channel_sends_with_its_token_and_usernames_are_reached_by_bsuid() {
    let Live {
        nats,
        service: ventanad,
        dir,
        ..
    } = live(None).await;
    let (graph, graph_url) = Graph::start().await;
    let tokens = dir.path().join("channel-tokens");
    std::fs::write(
        &tokens,
        format!("# WhatsApp number\n{PHONE} phone-number-token\n"),
    )
    .unwrap();
    let mut config = common::config(&nats, Some(graph_url));
    config.channel_tokens = Some(tokens);
    let adapter = Adapter::start(config).await;
    let now = now_seconds();

    // A customer known only by username writes; the reply goes to their BSUID
    // (`recipient`), with the number's own token.
    let bsuid = "DE.1502576394655843";
    let message = json!({"from_user_id": bsuid, "id": "wamid.U2", "timestamp": now.to_string(),
        "type": "text", "text": {"body": PRIVATE_TEXT}});
    adapter
        .webhook(
            json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
            "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"phone_number_id": PHONE}, "messages": [message]}}]}]}),
        )
        .await;
    let text = json!({"type": "text", "text": {"body": PRIVATE_TEXT}, "to": "4915100000009"});
    let (status, answer) = adapter
        .send(agent_message("u-1", whatsapp(bsuid), text))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let call = graph.calls().pop().unwrap();
    assert_eq!(call.authorization, "Bearer phone-number-token");
    assert_eq!(call.body["recipient"], bsuid);
    assert!(call.body.get("to").is_none(), "{}", call.body);

    // A page the file does not name is sent with the default token. The customer only
    // pressed Get Started: that opens the standard window all the same.
    adapter
        .webhook(messenger(
            json!({"sender": {"id": "PSID-9"}, "recipient": {"id": PAGE},
            "timestamp": now * 1000, "postback": {"title": "Get Started", "payload": "START"}}),
        ))
        .await;
    let (status, answer) = adapter
        .send(agent_message(
            "u-2",
            messenger_conversation("PSID-9"),
            json!({"text": "hi"}),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"]["messaging_type"], "response", "{answer}");
    assert_eq!(
        graph.calls().pop().unwrap().authorization,
        format!("Bearer {GRAPH_TOKEN}")
    );
    adapter.stop().await;
    ventanad.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_finish_what_a_hold_or_an_unreachable_graph_api_left() {
    let Live {
        nats,
        service: ventanad,
        js,
        ..
    } = live(Some("[channels.messenger]\nhold_until_accepted = true\n")).await;
    // The Graph API is down at first: nothing listens on its port.
    let graph_port = free_port();
    let adapter = Adapter::start(common::config(
        &nats,
        Some(format!("http://127.0.0.1:{graph_port}/v23.0")),
    ))
    .await;
    let now = now_seconds();
    let content = json!({"text": PRIVATE_TEXT});

    // Inside the window, but the Graph API cannot be reached: not sent, 502.
    adapter
        .webhook(messenger_message("PSID-1", "m_c1", now - 60))
        .await;
    let request = agent_message("r-1", messenger_conversation("PSID-1"), content.clone());
    let (status, answer) = adapter.send(request.clone()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert_eq!(answer["status"], "unsent");

    // A comment allows one private reply; the next DM is held until the customer writes.
    adapter
        .webhook(json!({"object": "page", "entry": [{"id": PAGE, "time": now, "changes": [{"field": "feed",
            "value": {"item": "comment", "verb": "add", "comment_id": "PAGE_POST_C1", "post_id": "PAGE_POST",
                      "from": {"id": "PSID-2", "name": "Kai"}, "message": "price?", "created_time": now - 60}}]}]}))
        .await;
    let first = agent_message("r-2", messenger_conversation("PSID-2"), content.clone());
    let held = agent_message("r-3", messenger_conversation("PSID-2"), content.clone());

    // The Graph API is back: the retry sends r-1 once; r-2 goes out as the private reply.
    let (graph, _) = Graph::start_on(graph_port).await;
    let (status, answer) = adapter.send(request.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (&answer["status"], &answer["repeated"]),
        (&json!("sent"), &json!(true))
    );
    let (status, answer) = adapter.send(first).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"]["messaging_type"], "private_reply");
    let (status, answer) = adapter.send(held.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["status"], "held");
    let (status, _) = adapter.send(held.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "still held: not sent");
    assert_eq!(graph.calls().len(), 2);

    // The customer writes a DM: ventana releases r-3, and the retry delivers it.
    adapter
        .webhook(messenger_message("PSID-2", "m_c2", now))
        .await;
    eventually("r-3 released", Duration::from_secs(10), || async {
        outputs_about(&js, "r-3")
            .await
            .iter()
            .any(|o| o["type"] == "outbound_accepted")
    })
    .await;
    let (status, answer) = adapter.send(held).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"]["messaging_type"], "response");
    let calls = graph.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].body["recipient"], json!({"id": "PSID-1"}));
    assert_eq!(
        calls[1].body["recipient"],
        json!({"comment_id": "PAGE_POST_C1"})
    );
    assert_eq!(
        calls[2].body,
        json!({"recipient": {"id": "PSID-2"}, "messaging_type": "RESPONSE", "message": content})
    );
    adapter.stop().await;
    ventanad.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_known_clients_send_and_only_to_meta_ids() {
    let Live {
        nats,
        service: ventanad,
        js,
        ..
    } = live(None).await;
    let (graph, graph_url) = Graph::start().await;
    let adapter = Adapter::start(common::config(&nats, Some(graph_url))).await;
    let now = now_seconds();
    adapter
        .webhook(messenger_message("psid-1", "m_in", now))
        .await;
    let request = agent_message(
        "out-1",
        messenger_conversation("psid-1"),
        json!({"text": "hi"}),
    );

    // No token, a wrong one, another scheme: 401, nothing decided or sent.
    for token in [None, Some("test-helpdesk-token-0123456789abcdeX"), Some("")] {
        let (status, answer) = adapter.send_as(token, request.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        assert_eq!(answer["error"]["code"], "unauthorized");
    }
    // A client scoped to another page: 403.
    let other_page =
        json!({"channel": "messenger", "channel_id": "2000000001", "contact_id": "psid-1"});
    let (status, answer) = adapter
        .send_as(
            Some(common::PAGE_BOT),
            agent_message("out-2", other_page, json!({"text": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");

    // Ids that would climb out of the Graph API's version, or name another path: 400.
    for comment_id in [
        "../../1139012345/feed",
        "%2e%2e",
        "..",
        ".",
        "a/b",
        "a?b",
        "a#b",
        "a b",
        "a\r\nb",
    ] {
        let (status, answer) = adapter
            .send(
                json!({"id": "out-c", "conversation": messenger_conversation("psid-1"),
                "sender": "agent", "kind": "comment_reply", "comment_id": comment_id,
                "message": {"message": "thanks"}}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{comment_id:?}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("comment_id"),
            "{answer}"
        );
    }
    for channel_id in ["..", "../v1.0/me", "%2E%2E", "1139012345/../x"] {
        let conversation =
            json!({"channel": "messenger", "channel_id": channel_id, "contact_id": "psid-1"});
        let (status, answer) = adapter
            .send(agent_message("out-p", conversation, json!({"text": "hi"})))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{channel_id:?}: {answer}");
    }
    assert!(graph.calls().is_empty(), "the Graph API was never called");
    assert!(
        outputs_about(&js, "out-c").await.is_empty()
            && outputs_about(&js, "out-1").await.is_empty(),
        "nothing refused was decided"
    );

    // The scoped client sends from its own page.
    let (status, answer) = adapter.send_as(Some(common::PAGE_BOT), request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(graph.calls().len(), 1);
    // The webhook handshake compares its token (in constant time) too.
    let handshake = |token: &str| {
        format!("/webhook?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=c123")
    };
    assert_eq!(
        adapter.get(&handshake("verify-me")).await,
        (StatusCode::OK, "c123".into())
    );
    assert_eq!(
        adapter.get(&handshake("verify-mf")).await.0,
        StatusCode::FORBIDDEN
    );
    adapter.stop().await;
    ventanad.stop().await.unwrap();
}

fn as_user(nats: &NatsServer, user: &str) -> ventana_bus::NatsOptions {
    let (_, _, password) = USERS.iter().find(|(name, _, _)| *name == user).unwrap();
    ventana_bus::NatsOptions {
        url: nats.url(),
        nats_user: Some(user.into()),
        nats_password: Some((*password).into()),
        ..Default::default()
    }
}

/// A client of `user`, and its JetStream context with a short ack timeout (a refused
/// publish is never acked).
async fn client_of(
    nats: &NatsServer,
    user: &str,
) -> (async_nats::Client, async_nats::jetstream::Context) {
    let client = ventana_bus::connect(&as_user(nats, user), user)
        .await
        .unwrap();
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(client.clone());
    (client, js)
}

/// Whether a request on `subject` is answered (a refused one never is: a second is
/// plenty to tell; an allowed one gets longer, the machine may be busy).
async fn answered(client: &async_nats::Client, subject: &str, body: Value) -> bool {
    let request = client.request(subject.to_owned(), body.to_string().into());
    matches!(
        tokio::time::timeout(Duration::from_secs(1), request).await,
        Ok(Ok(_))
    )
}

/// A request that must be answered.
async fn answers(client: &async_nats::Client, subject: &str, body: Value) -> bool {
    let request = client.request(subject.to_owned(), body.to_string().into());
    matches!(
        tokio::time::timeout(Duration::from_secs(10), request).await,
        Ok(Ok(_))
    )
}

/// Whether JetStream stored a publish of `user` on `subject`.
async fn stored(js: &async_nats::jetstream::Context, subject: &str, payload: &str) -> bool {
    match js
        .publish(subject.to_owned(), payload.to_owned().into())
        .await
    {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_nats_permissions_run_the_whole_flow_and_refuse_the_rest() {
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nats-server.conf");
    let env: Vec<(&str, &str)> = USERS.iter().map(|(_, var, pw)| (*var, *pw)).collect();
    let nats = NatsServer::start_with_config(&file, &env);
    let dir = tempfile::tempdir().unwrap();
    let policy = ventana_tests::service::policy_file(
        dir.path(),
        "[channels.messenger]\nhold_until_accepted = true\n",
    );
    let mut config =
        ventana_tests::service::config(&nats.url(), &dir.path().join("data"), Some(policy));
    config.nats = as_user(&nats, "ventanad");
    let ventanad = ventana_tests::service::start(config);
    let (api_client, _) = client_of(&nats, "api-client").await;
    let conversation = json!({"conversation": {"channel": "messenger", "account": "acme",
        "channel_id": PAGE, "contact_id": "PSID-2"}});
    eventually("ventanad's API", Duration::from_secs(20), || {
        answered(&api_client, API_STATE, conversation.clone())
    })
    .await;
    let (graph, graph_url) = Graph::start().await;
    let mut meta = common::config(&nats, Some(graph_url));
    meta.nats = as_user(&nats, "meta-adapter");
    let adapter = Adapter::start(meta).await;

    // The whole flow as meta-adapter: webhooks in, a private reply out, a DM held until
    // the customer writes, then delivered by the retry (which reads VENTANA_OUT).
    let now = now_seconds();
    let content = json!({"text": "hello"});
    adapter
        .webhook(json!({"object": "page", "entry": [{"id": PAGE, "time": now, "changes": [{"field": "feed",
            "value": {"item": "comment", "verb": "add", "comment_id": "PAGE_POST_C1", "post_id": "PAGE_POST",
                      "from": {"id": "PSID-2", "name": "Kai"}, "message": "price?", "created_time": now - 60}}]}]}))
        .await;
    let (status, answer) = adapter
        .send(agent_message(
            "r-2",
            messenger_conversation("PSID-2"),
            content.clone(),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let held = agent_message("r-3", messenger_conversation("PSID-2"), content);
    let (status, answer) = adapter.send(held.clone()).await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::ACCEPTED, &json!("held")),
        "{answer}"
    );
    adapter
        .webhook(messenger_message("PSID-2", "m_c2", now))
        .await;
    let (subscriber, subscriber_js) = client_of(&nats, "subscriber").await;
    eventually(
        "r-3 released, read by a subscriber",
        Duration::from_secs(10),
        || async {
            read_stream(&subscriber_js, OUT_STREAM, Some("ventana.out.>".to_owned()))
                .await
                .unwrap()
                .iter()
                .any(|m| {
                    let output: Value = serde_json::from_slice(&m.payload).unwrap();
                    output["type"] == "outbound_accepted" && output["message_id"] == "r-3"
                })
        },
    )
    .await;
    let (status, answer) = adapter.send(held).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(graph.calls().len(), 2);
    let (sender, _) = client_of(&nats, "sender").await;
    assert!(answers(&sender, API_STATE, conversation.clone()).await);
    // A customer known by username (its contact recorded) beside an item nobody
    // understands (copied to the DLQ).
    let bsuid_message = json!({"from_user_id": "DE.1502576394655843", "id": "wamid.U1",
        "timestamp": now.to_string(), "type": "text", "text": {"body": "hi"}});
    adapter
        .webhook(
            json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
            "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
                "metadata": {"phone_number_id": PHONE}, "messages": [bsuid_message]}},
                {"field": "brand_new_field", "value": {}}]}]}),
        )
        .await;
    let (_, ventanad_js) = client_of(&nats, "ventanad").await;
    let dead = read_stream(&ventanad_js, DLQ_STREAM, None).await.unwrap();
    assert_eq!(
        dead.iter().map(|m| m.subject.as_str()).collect::<Vec<_>>(),
        ["ventana.dlq.webhook_unsupported"]
    );

    // Everything so far folded and published: then what each user must not do, of which
    // nothing is stored or answered.
    let policy =
        ventana_wire::parse_policy("[channels.messenger]\nhold_until_accepted = true\n").unwrap();
    ventana_tests::service::settle(&ventanad_js, &policy, Duration::from_secs(20)).await;
    let out_before = ventana_tests::service::outputs_len(&ventanad_js).await;
    let in_before = ventana_tests::service::stream_len(&ventanad_js, IN_STREAM).await;
    let (adapter_client, adapter_js) = client_of(&nats, "adapter").await;
    let (_, meta_js) = client_of(&nats, "meta-adapter").await;
    let (_, api_js) = client_of(&nats, "api-client").await;
    let output_subject = "ventana.out.state_changed.aaaaaaaaaaaaaaaaaaaaaaaaaa";
    for (who, js) in [
        ("adapter", &adapter_js),
        ("meta-adapter", &meta_js),
        ("subscriber", &subscriber_js),
        ("api-client", &api_js),
    ] {
        assert!(
            !stored(js, output_subject, "forged").await,
            "{who} published an output"
        );
    }
    let input = "ventana.in.0.aaaaaaaaaaaaaaaaaaaaaaaaaa";
    for (who, js) in [("subscriber", &subscriber_js), ("api-client", &api_js)] {
        assert!(
            !stored(js, input, "{}").await,
            "{who} published an input event"
        );
    }
    let send = json!({"id": "forbidden-1", "conversation": conversation["conversation"],
        "sender": "agent", "kind": "message"});
    for (who, client) in [
        ("api-client", &api_client),
        ("adapter", &adapter_client),
        ("subscriber", &subscriber),
    ] {
        assert!(
            !answered(client, "ventana.api.v1.send", send.clone()).await,
            "{who} sent"
        );
    }
    assert!(
        !answered(&subscriber, API_STATE, conversation.clone()).await,
        "a subscriber asked"
    );
    assert!(
        read_stream(&adapter_js, OUT_STREAM, None).await.is_err(),
        "an adapter read VENTANA_OUT"
    );
    assert_eq!(
        ventana_tests::service::outputs_len(&ventanad_js).await,
        out_before
    );
    assert_eq!(
        ventana_tests::service::stream_len(&ventanad_js, IN_STREAM).await,
        in_before
    );
    // An adapter may publish input events.
    let (adapter_client, _) = client_of(&nats, "adapter").await;
    let ack = async_nats::jetstream::new(adapter_client)
        .publish(input, "{}".into())
        .await
        .unwrap()
        .await;
    assert!(ack.is_ok(), "{ack:?}");
    adapter.stop().await;
    ventanad.stop().await.unwrap();
}
