//! ventana-meta in-process for a test, on a free port, against a real nats-server; signed
//! webhooks and HTTP helpers.
#![allow(dead_code)] // each test file uses its own part

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use sha2::Sha256;
use ventana_bus::NatsOptions;
use ventana_tests::nats::{NatsServer, free_port};

pub const SECRET: &str = "app-secret";
pub const GRAPH_TOKEN: &str = "graph-token";
/// The token of `helpdesk` in `fixtures/send-clients.txt` (may send from every channel).
pub const HELPDESK: &str = "test-helpdesk-token-0123456789abcdef";
/// The token of `page-bot` in `fixtures/send-clients.txt` (may send from page 1139012345).
pub const PAGE_BOT: &str = "test-page-bot-token-0123456789abcdef";

pub fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!(
        "sha256={}",
        data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
    )
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/fixtures/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The names of every `fixtures/NAME.json`, sorted.
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(format!("{}/fixtures", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .filter_map(|entry| {
                let name = entry.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".json").map(str::to_owned)
            })
            .collect();
    names.sort();
    names
}

/// The configuration a test runs ventana-meta with (`graph_url`: the stand-in Graph API).
pub fn config(nats: &NatsServer, graph_url: Option<String>) -> ventana_meta::Config {
    ventana_meta::Config {
        listen: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        app_secret: SECRET.into(),
        verify_token: "verify-me".into(),
        graph_token: graph_url.is_some().then(|| GRAPH_TOKEN.into()),
        instagram_graph_url: graph_url
            .clone()
            .unwrap_or_else(|| ventana_meta::server::INSTAGRAM_GRAPH_URL.into()),
        instagram_token: None,
        channel_tokens: None,
        send_clients: Some(
            format!("{}/fixtures/send-clients.txt", env!("CARGO_MANIFEST_DIR")).into(),
        ),
        graph_url: graph_url.unwrap_or_else(|| ventana_meta::server::GRAPH_URL.into()),
        graph_timeout: Duration::from_secs(5),
        decide_timeout: Duration::from_secs(5),
        account: "acme".into(),
        partitions: 16,
        replicas: 1,
        max_body: 64 * 1024,
        max_connections: 64,
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(20),
        nats: NatsOptions {
            url: nats.url(),
            ..Default::default()
        },
    }
}

/// ventanad's streams declared on `nats`, without ventanad: what is published stays there.
pub async fn streams_only(nats: &NatsServer) -> async_nats::jetstream::Context {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    ventana_bus::streams::declare_streams(&js, &Default::default())
        .await
        .unwrap();
    js
}

pub struct Adapter {
    pub base: String,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Adapter {
    /// Starts ventana-meta and waits until `/healthz` answers.
    pub async fn start(config: ventana_meta::Config) -> Self {
        let base = format!("http://{}", config.listen);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(ventana_meta::run(config, async move {
            let _ = stopped.await;
        }));
        let adapter = Self {
            base,
            http: reqwest::Client::new(),
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

    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        match self.http.get(format!("{}{path}", self.base)).send().await {
            Ok(response) => (response.status(), response.text().await.unwrap()),
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, String::new()),
        }
    }

    /// Posts a webhook body with `signature` as `X-Hub-Signature-256`.
    pub async fn post(&self, body: Vec<u8>, signature: Option<String>) -> (StatusCode, String) {
        let mut request = self
            .http
            .post(format!("{}/webhook", self.base))
            .header("content-type", "application/json");
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        let response = request.body(body).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// Posts a correctly signed webhook and expects Meta's 200.
    pub async fn webhook(&self, body: serde_json::Value) {
        let body = body.to_string().into_bytes();
        let signature = sign(&body);
        let (status, text) = self.post(body, Some(signature)).await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::OK, "EVENT_RECEIVED\n")
        );
    }

    /// `POST /v1/messages` as the `helpdesk` client.
    pub async fn send(&self, request: serde_json::Value) -> (StatusCode, serde_json::Value) {
        self.send_as(Some(HELPDESK), request).await
    }

    /// `POST /v1/messages` with `token` as the bearer token (none: no `Authorization`).
    pub async fn send_as(
        &self,
        token: Option<&str>,
        request: serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        let mut post = self
            .http
            .post(format!("{}/v1/messages", self.base))
            .json(&request);
        if let Some(token) = token {
            post = post.bearer_auth(token);
        }
        let response = post.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}
