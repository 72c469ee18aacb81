//! The webhook adapter over HTTP against a real nats-server: handshake, signatures, limits,
//! malformed bodies, and exactly-once publishing of Meta's retries.

mod common;

use common::{Adapter, fixture, sign};
use reqwest::StatusCode;
use ventana_bus::client::read_stream;
use ventana_tests::nats::NatsServer;
use ventana_wire::subjects::{DLQ_STREAM, IN_STREAM};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_are_published_once_and_everything_else_is_refused() {
    let nats = NatsServer::start();
    let js = common::streams_only(&nats).await;
    let adapter = Adapter::start(common::config(&nats, None)).await;

    // Subscription handshake.
    let ok = adapter
        .get("/webhook?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444")
        .await;
    assert_eq!(ok, (StatusCode::OK, "1158201444".to_owned()));
    let wrong = adapter
        .get("/webhook?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1")
        .await;
    assert_eq!(wrong.0, StatusCode::FORBIDDEN);

    // Unsigned, wrongly signed, oversize, malformed: refused, nothing published.
    let body = fixture("whatsapp-statuses");
    assert_eq!(
        adapter.post(body.clone(), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let forged = sign(b"another body");
    assert_eq!(
        adapter.post(body.clone(), Some(forged)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        adapter.post(body.clone(), Some("sha256=zz".into())).await.0,
        StatusCode::UNAUTHORIZED
    );
    let huge = vec![b' '; 100 * 1024];
    assert_eq!(
        adapter.post(huge.clone(), Some(sign(&huge))).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let garbage = b"{\"object\":".to_vec();
    let (status, reason) = adapter.post(garbage.clone(), Some(sign(&garbage))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reason.starts_with("not JSON"), "{reason}");
    for not_a_webhook in [
        &b"[1, 2]"[..],
        br#"{"object": "page"}"#,
        br#"{"entry": []}"#,
    ] {
        let (status, reason) = adapter
            .post(not_a_webhook.to_vec(), Some(sign(not_a_webhook)))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reason}");
        assert!(reason.contains("not a Meta webhook"), "{reason}");
    }
    assert!(read_stream(&js, IN_STREAM, None).await.unwrap().is_empty());

    // Every fixture, signed: published with the normalised events' ids, in order (each id
    // once: Meta's retry of the same webhook, or the same status in two fixtures, adds
    // nothing).
    let mut expected: Vec<String> = Vec::new();
    for name in common::fixture_names() {
        let body = fixture(&name);
        let items = ventana_meta::normalise::normalise(&body, "acme").unwrap();
        for event in ventana_meta::normalise::events(&items) {
            if !expected.contains(&event.id) {
                expected.push(event.id);
            }
        }
        for _attempt in 0..2 {
            let (status, text) = adapter.post(body.clone(), Some(sign(&body))).await;
            assert_eq!(
                (status, text.as_str()),
                (StatusCode::OK, "EVENT_RECEIVED\n"),
                "{name}"
            );
        }
    }
    let logged = read_stream(&js, IN_STREAM, None).await.unwrap();
    let ids: Vec<String> = ventana_bus::client::logged_events(&logged)
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        ids, expected,
        "each event once, valid for ventanad, in webhook order"
    );
    adapter.stop().await;
}

/// Reads until the server closes the connection; false if it is still open after `limit`.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 1024];
    let reading = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // an answer (408, say): read on until the close
            }
        }
    };
    tokio::time::timeout(limit, reading).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_slow_and_many_clients_cannot_hold_the_adapter() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    let nats = NatsServer::start();
    let _js = common::streams_only(&nats).await;
    let mut config = common::config(&nats, None);
    config.request_timeout = Duration::from_secs(2);
    let address = config.listen;
    let max_connections = config.max_connections;
    let adapter = Adapter::start(config).await;

    // Every connection the adapter serves, held open by clients that send nothing.
    let mut idle = Vec::new();
    for _ in 0..max_connections {
        idle.push(TcpStream::connect(address).await.unwrap());
    }
    // A webhook still gets through: idle connections are closed and their places freed.
    let body = fixture("whatsapp-statuses");
    let (status, _) = adapter.post(body.clone(), Some(sign(&body))).await;
    assert_eq!(status, StatusCode::OK);
    for stream in &mut idle {
        assert!(
            closed_within(stream, Duration::from_secs(5)).await,
            "an idle connection stays open"
        );
    }

    // Headers trickling in, a byte more before the idle limit each time: cut at the header
    // limit all the same.
    let mut slow = TcpStream::connect(address).await.unwrap();
    slow.write_all(b"POST /webhook HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let trickle = async {
        for _ in 0..20 {
            if slow.write_all(b"x-a: 1\r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    trickle.await;
    assert!(
        closed_within(&mut slow, Duration::from_secs(1)).await,
        "slow headers are cut"
    );

    // A body trickling in: 408 at the request limit.
    let mut slow_body = TcpStream::connect(address).await.unwrap();
    slow_body
        .write_all(b"POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read_answer = async {
        use tokio::io::AsyncReadExt;
        let mut buffer = [0u8; 256];
        loop {
            tokio::select! {
                read = slow_body.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => answer.extend_from_slice(&buffer[..n]),
                },
                () = tokio::time::sleep(Duration::from_millis(300)) => {
                    if slow_body.write_all(b" ").await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_answer)
        .await
        .expect("the slow body is answered");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    adapter.stop().await;
}

/// The metric line `name{labels}` of `/metrics`, as a number (0 when absent).
async fn metric(adapter: &Adapter, line: &str) -> u64 {
    let (_, text) = adapter.get("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_nobody_understands_cost_nothing_beside_them() {
    let nats = NatsServer::start();
    let js = common::streams_only(&nats).await;
    let adapter = Adapter::start(common::config(&nats, None)).await;

    // One valid message beside an unknown action, a message without its id, a change
    // without a value, an unknown field, an ignored field and an empty entry: 200, and the
    // valid message is published. A retry adds nothing anywhere.
    let body = fixture("messenger-mixed-batch");
    for _attempt in 0..2 {
        let (status, text) = adapter.post(body.clone(), Some(sign(&body))).await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::OK, "EVENT_RECEIVED\n")
        );
    }
    let logged = read_stream(&js, IN_STREAM, None).await.unwrap();
    let ids: Vec<String> = ventana_bus::client::logged_events(&logged)
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["m_mixed_valid_1"]);

    // What could not be understood is in the DLQ: where it sat and why, never its content.
    let dead = read_stream(&js, DLQ_STREAM, None).await.unwrap();
    let copies: Vec<(String, serde_json::Value)> = dead
        .iter()
        .map(|m| {
            let text = std::str::from_utf8(&m.payload).unwrap();
            assert!(!text.contains("SECRET-TEXT"), "{text}");
            (m.subject.clone(), serde_json::from_str(text).unwrap())
        })
        .collect();
    let outline: Vec<(&str, &str, &str)> = copies
        .iter()
        .map(|(subject, copy)| {
            (
                subject.as_str(),
                copy["field"].as_str().unwrap(),
                copy["type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outline,
        [
            (
                "ventana.dlq.webhook_unsupported",
                "messaging",
                "brand_new_action"
            ),
            ("ventana.dlq.webhook_malformed", "messaging", "message"),
            ("ventana.dlq.webhook_malformed", "feed", ""),
            (
                "ventana.dlq.webhook_unsupported",
                "page_upcoming_change",
                ""
            ),
            ("ventana.dlq.webhook_unsupported", "entry", ""),
        ]
    );
    assert_eq!(copies[1].1["problem"], "message.mid");
    assert_eq!(copies[1].1["object"], "page");

    // Counted by outcome, each attempt.
    for (outcome, count) in [
        ("published", 2),
        ("ignored", 2),
        ("unsupported", 6),
        ("malformed", 4),
    ] {
        assert_eq!(
            metric(
                &adapter,
                &format!("ventana_meta_items_total{{outcome=\"{outcome}\"}}")
            )
            .await,
            count,
            "{outcome}"
        );
    }
    adapter.stop().await;
}

/// A WhatsApp webhook of one message from a customer named by phone number, BSUID or both.
fn whatsapp_from(id: &str, phone: Option<&str>, user_id: Option<&str>) -> Vec<u8> {
    let mut message = serde_json::json!({"id": id, "timestamp": "1749416383", "type": "text",
        "text": {"body": "SECRET-TEXT"}});
    if let Some(phone) = phone {
        message["from"] = phone.into();
    }
    if let Some(user_id) = user_id {
        message["from_user_id"] = user_id.into();
    }
    serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
        "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "messages": [message]}}]}]})
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_customers_keep_one_contact_across_phone_numbers_and_usernames() {
    let nats = NatsServer::start();
    let js = common::streams_only(&nats).await;
    let config = common::config(&nats, None);
    let adapter = Adapter::start(config.clone()).await;
    let (kai, kai_bsuid) = ("4915100000001", "DE.1502576394655843");
    let (lee, lee_bsuid) = ("4915100000002", "DE.ENT.11815799212886844830");
    let steps = [
        // Kai wrote before BSUIDs, then with both ids, then by username only.
        ("w1", Some(kai), None),
        ("w2", Some(kai), Some(kai_bsuid)),
        ("w3", None, Some(kai_bsuid)),
        // Lee came by username first, then shared the phone number, then the phone alone.
        ("w4", None, Some(lee_bsuid)),
        ("w5", Some(lee), Some(lee_bsuid)),
        ("w6", Some(lee), None),
    ];
    let mut adapter = Some(adapter);
    for (index, (id, phone, user_id)) in steps.into_iter().enumerate() {
        if index == 3 {
            // A restarted adapter (an empty cache) reads the same records.
            adapter.take().unwrap().stop().await;
            adapter = Some(Adapter::start(config.clone()).await);
        }
        let body = whatsapp_from(id, phone, user_id);
        let (status, _) = adapter
            .as_ref()
            .unwrap()
            .post(body.clone(), Some(sign(&body)))
            .await;
        assert_eq!(status, StatusCode::OK, "{id}");
    }
    let logged = read_stream(&js, IN_STREAM, None).await.unwrap();
    let contacts: Vec<(String, String)> = ventana_bus::client::logged_events(&logged)
        .into_iter()
        .map(|e| (e.id, e.conversation.contact_id))
        .collect();
    let expect = |id: &str, contact: &str| (id.to_owned(), contact.to_owned());
    assert_eq!(
        contacts,
        [
            expect("w1", kai),
            expect("w2", kai),
            expect("w3", kai),
            expect("w4", lee_bsuid),
            expect("w5", lee_bsuid),
            expect("w6", lee_bsuid),
        ]
    );
    // The records hold digests, never the ids.
    let records = read_stream(&js, "KV_VENTANA_META_CONTACTS", None)
        .await
        .unwrap();
    assert!(!records.is_empty());
    for record in &records {
        assert!(
            !record.subject.contains("4915100000001"),
            "{}",
            record.subject
        );
        assert!(
            !record.subject.contains("1502576394655843"),
            "{}",
            record.subject
        );
    }
    adapter.unwrap().stop().await;
}
