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
