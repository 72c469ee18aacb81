//! ventana-meta under load, on this machine (clients, adapter, nats-server and ventanad share
//! it):
//!
//! 1. webhook events/s accepted: signed webhooks (WhatsApp messages and statuses, Messenger
//!    messages and deliveries) posted by concurrent clients; verified, normalised, sent ids
//!    looked up, each event published to a real nats-server (file storage) before the 200;
//! 2. sends/s through the gateway: each send claimed in KV, logged and decided by ventanad
//!    (in-process, real sled), delivered to a local stand-in Graph API, its outcome recorded.
//!
//! Run: `cargo bench -p ventana-meta --bench webhooks` (WEBHOOKS=20000, SENDS=5000,
//! CONCURRENCY=64).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use serde_json::{Value, json};
use ventana_tests::nats::NatsServer;

fn percentile(latencies: &mut [Duration], q: f64) -> f64 {
    latencies.sort();
    latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Webhook `n`, as Meta would send it, with ids of its own.
fn webhook(n: usize, now: i64) -> Value {
    let contact = format!("49151{:07}", n % 5_000);
    let whatsapp = |value: Value| {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
            "changes": [{"field": "messages", "value": value}]}]})
    };
    let metadata =
        json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"});
    let messenger = |item: Value| json!({"object": "page", "entry": [{"id": "1139012345", "time": now * 1000, "messaging": [item]}]});
    match n % 4 {
        0 => whatsapp(
            json!({"messaging_product": "whatsapp", "metadata": metadata,
            "contacts": [{"profile": {"name": "Kai"}, "wa_id": contact}],
            "messages": [{"from": contact, "id": format!("wamid.bench{n}"), "timestamp": now.to_string(),
                          "type": "text", "text": {"body": "Where is my order?"}}]}),
        ),
        1 => {
            let statuses: Vec<Value> = ["sent", "delivered", "read"]
                .iter()
                .map(|status| {
                    json!({"id": format!("wamid.out{n}"), "status": status,
                    "timestamp": now.to_string(), "recipient_id": contact})
                })
                .collect();
            whatsapp(
                json!({"messaging_product": "whatsapp", "metadata": metadata, "statuses": statuses}),
            )
        }
        2 => messenger(
            json!({"sender": {"id": contact}, "recipient": {"id": "1139012345"},
            "timestamp": now * 1000, "message": {"mid": format!("m_bench{n}"), "text": "Hi"}}),
        ),
        _ => messenger(
            json!({"sender": {"id": contact}, "recipient": {"id": "1139012345"},
            "timestamp": now * 1000,
            "delivery": {"mids": [format!("m_out{n}a"), format!("m_out{n}b")], "watermark": now * 1000}}),
        ),
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; there is nothing to list here.
    }
    let webhooks = env("WEBHOOKS", 20_000);
    let concurrency = env("CONCURRENCY", 64);
    let nats = NatsServer::start();
    let js = common::streams_only(&nats).await;
    let adapter = common::Adapter::start(common::config(&nats, None)).await;

    let now = ventana_bus::now().unix_nanos() / 1_000_000_000;
    let bodies: Vec<(Vec<u8>, String, usize)> = (0..webhooks)
        .map(|n| {
            let body = webhook(n, now as i64).to_string().into_bytes();
            let items = ventana_meta::normalise::normalise(&body, "acme").unwrap();
            let events = ventana_meta::normalise::events(&items).len();
            let signature = common::sign(&body);
            (body, signature, events)
        })
        .collect();
    let events: usize = bodies.iter().map(|(_, _, e)| e).sum();
    let bytes: usize = bodies.iter().map(|(b, _, _)| b.len()).sum();
    println!(
        "{webhooks} signed webhooks ({events} events, {:.0} bytes each on average), {concurrency} concurrent clients",
        bytes as f64 / webhooks as f64
    );

    let started = Instant::now();
    let mut latencies: Vec<Duration> = futures::stream::iter(bodies)
        .map(|(body, signature, _)| {
            let adapter = &adapter;
            async move {
                let sent = Instant::now();
                let (status, _) = adapter.post(body, Some(signature)).await;
                assert_eq!(status, reqwest::StatusCode::OK);
                sent.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "accepted: {:.0} webhooks/s, {:.0} events/s ({elapsed:.2} s); latency p50 {:.2} ms, p99 {:.2} ms",
        webhooks as f64 / elapsed,
        events as f64 / elapsed,
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.99)
    );
    let logged = ventana_tests::service::stream_len(&js, ventana_wire::subjects::IN_STREAM).await;
    assert_eq!(logged as usize, events, "every event logged once");
    adapter.stop().await;

    sends(env("SENDS", 5_000), concurrency).await;
}

/// Phase 2: sends through the gateway to a stand-in Graph API, decided by ventanad.
async fn sends(sends: usize, concurrency: usize) {
    let ventana_tests::service::Live {
        nats,
        service: ventanad,
        js,
        ..
    } = ventana_tests::service::live(None).await;
    let counter = Arc::new(AtomicU64::new(0));
    let graph = axum::Router::new().fallback({
        let counter = counter.clone();
        move || async move {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            axum::Json(json!({"recipient_id": "x", "message_id": format!("m_bench{n}")}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let graph_url = format!("http://{}/v23.0", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, graph).await });
    let adapter = common::Adapter::start(common::config(&nats, Some(graph_url))).await;

    // Every conversation has a customer who just wrote.
    let at = ventana_bus::now();
    let conversation = |n: usize| {
        ventana_core::ConversationKey::new(
            ventana_core::Channel::Messenger,
            "acme",
            "1139012345",
            format!("psid-{n}"),
        )
    };
    let customers: Vec<ventana_core::Event> = (0..sends)
        .map(|n| ventana_core::Event {
            id: format!("m_customer{n}"),
            occurred_at: at,
            logged_at: None,
            conversation: conversation(n),
            body: ventana_core::EventBody::CustomerMessage,
        })
        .collect();
    ventana_bus::client::publish_events(&js, &customers, 16)
        .await
        .unwrap();
    ventana_tests::service::eventually("ventanad to fold", Duration::from_secs(60), || {
        ventana_tests::service::caught_up(&js)
    })
    .await;

    let started = Instant::now();
    let mut latencies: Vec<Duration> = futures::stream::iter(0..sends)
        .map(|n| {
            let adapter = &adapter;
            async move {
                let sent = Instant::now();
                let (status, answer) = adapter
                    .send(
                        json!({"id": format!("reply-{n}"), "sender": "agent", "kind": "message",
                        "conversation": {"channel": "messenger", "channel_id": "1139012345",
                                         "contact_id": format!("psid-{n}")},
                        "message": {"text": "On its way."}}),
                    )
                    .await;
                assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
                sent.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(
        counter.load(Ordering::Relaxed) as usize,
        sends,
        "each sent once"
    );
    println!(
        "gateway: {sends} sends (decided by ventanad, delivered to a stand-in Graph API), {concurrency} concurrent clients: {:.0} sends/s; latency p50 {:.2} ms, p99 {:.2} ms",
        sends as f64 / elapsed,
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.99)
    );
    adapter.stop().await;
    ventanad.stop().await.unwrap();
}
