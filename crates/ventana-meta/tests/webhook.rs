//! The webhook adapter over HTTP against a real nats-server: handshake, signatures, limits,
//! malformed bodies, and exactly-once publishing of Meta's retries.

mod common;

use common::{Adapter, fixture, sign};
use reqwest::StatusCode;
use ventana_bus::client::read_stream;
use ventana_tests::nats::NatsServer;
use ventana_wire::subjects::IN_STREAM;

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
    assert!(read_stream(&js, IN_STREAM, None).await.unwrap().is_empty());

    // Every fixture, signed: published with the normalised events' ids, in order; Meta's
    // retry of the same webhook adds nothing.
    let mut expected = Vec::new();
    for name in [
        "whatsapp-messages",
        "whatsapp-statuses",
        "whatsapp-calls",
        "messenger-messages",
        "messenger-echoes-deliveries-reads",
        "messenger-feed-comment",
        "instagram-messages",
        "instagram-comments",
    ] {
        let body = fixture(name);
        let events = ventana_meta::normalise::normalise(&body, "acme").unwrap();
        expected.extend(events.iter().map(|e| e.id.clone()));
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
