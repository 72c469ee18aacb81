//! The webhook adapter over HTTP against a real nats-server: handshake, signatures, limits,
//! malformed bodies, and exactly-once publishing of Meta's retries.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use sha2::Sha256;
use ventana_service::client::read_stream;
use ventana_service::config::NatsOptions;
use ventana_tests::nats::{NatsServer, free_port};
use ventana_wire::subjects::IN_STREAM;

const SECRET: &str = "app-secret";

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!(
        "sha256={}",
        data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
    )
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/fixtures/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

struct Adapter {
    base: String,
    http: Client<HttpConnector, Body>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Adapter {
    async fn start(nats: &NatsServer) -> Self {
        let scratch = tempfile::tempdir().unwrap();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let config = ventana_tests::service::config(&nats.url(), scratch.path(), None);
        ventana_service::nats::declare(&js, &config, 0)
            .await
            .unwrap();
        let port = free_port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(ventana_meta::run(
            ventana_meta::Config {
                listen: format!("127.0.0.1:{port}").parse().unwrap(),
                app_secret: SECRET.into(),
                verify_token: "verify-me".into(),
                account: "acme".into(),
                partitions: 16,
                max_body: 64 * 1024,
                nats: NatsOptions {
                    url: nats.url(),
                    ..Default::default()
                },
            },
            async move {
                let _ = stopped.await;
            },
        ));
        let adapter = Self {
            base: format!("http://127.0.0.1:{port}"),
            http: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
            stop: Some(stop),
            task,
        };
        ventana_tests::service::eventually(
            "the adapter to listen",
            Duration::from_secs(10),
            || async { adapter.get("/healthz").await.0 == StatusCode::OK },
        )
        .await;
        adapter
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, String) {
        let response = self.http.request(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let request = Request::get(format!("{}{path}", self.base))
            .body(Body::empty())
            .unwrap();
        match self.http.request(request).await {
            Ok(response) => {
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8_lossy(&body).into_owned())
            }
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, String::new()),
        }
    }

    async fn post(&self, body: Vec<u8>, signature: Option<String>) -> (StatusCode, String) {
        let mut request = Request::post(format!("{}/webhook", self.base))
            .header("content-type", "application/json");
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_are_published_once_and_everything_else_is_refused() {
    let nats = NatsServer::start();
    let adapter = Adapter::start(&nats).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);

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
    let ids: Vec<String> = ventana_service::client::logged_events(&logged)
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        ids, expected,
        "each event once, valid for ventanad, in webhook order"
    );
    adapter.stop().await;
}
