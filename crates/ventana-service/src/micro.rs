//! ventanad's side of the NATS services framework ("micro" protocol, version 1): discovery on
//! `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` (for all services, by name, and by id),
//! endpoints in the queue group `q`, and per-endpoint statistics.
//!
//! An error is answered as the framework says, with the `Nats-Service-Error` and
//! `Nats-Service-Error-Code` headers, and counted in `num_errors` / `last_error`; its body
//! stays ventana's JSON error, which names the code clients act on. async-nats' own service
//! answers an error with an empty body, so the protocol is spoken here, with async-nats'
//! types for its JSON.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use async_nats::service::{Info, PingResponse, Stats, endpoint};
use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tracing::warn;

/// The queue group every endpoint joins, as the framework's clients expect.
const QUEUE_GROUP: &str = "q";

/// One endpoint: its name, subject and what `$SRV.INFO` says of it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub name: String,
    pub subject: String,
    pub metadata: HashMap<String, String>,
}

/// What a request is answered: a body, and, for an error, its code and description (sent in
/// the framework's headers).
#[derive(Debug)]
pub struct Answer {
    pub body: Bytes,
    pub error: Option<(u16, String)>,
}

/// Metadata read as each `$SRV.INFO` is answered (what changes while the service runs).
pub struct LiveMetadata(pub Box<dyn Fn() -> HashMap<String, String> + Send + Sync>);

impl std::fmt::Debug for LiveMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveMetadata")
    }
}

/// A running service: answers discovery until `shutdown`, and counts what its endpoints
/// answer.
#[derive(Debug)]
pub struct Service {
    client: async_nats::Client,
    info: Info,
    live: LiveMetadata,
    started: time::OffsetDateTime,
    stats: Mutex<Vec<endpoint::Stats>>,
}

/// A request to one of the service's endpoints (by its index in the list given to
/// [`Service::start`]).
#[derive(Debug)]
pub struct Request {
    pub endpoint: usize,
    pub message: Message,
    received: Instant,
}

impl Service {
    /// Subscribes the discovery subjects and the endpoints; returns the service and its
    /// endpoints' requests.
    pub async fn start(
        client: async_nats::Client,
        name: &str,
        description: &str,
        metadata: HashMap<String, String>,
        live: LiveMetadata,
        endpoints: Vec<Endpoint>,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<(
        std::sync::Arc<Self>,
        impl Stream<Item = Request> + Unpin + use<>,
    )> {
        let id = nuid::next().to_string();
        let mut requests = Vec::new();
        for (index, endpoint) in endpoints.iter().enumerate() {
            let subscription = client
                .queue_subscribe(endpoint.subject.clone(), QUEUE_GROUP.to_owned())
                .await
                .map_err(|e| anyhow::anyhow!("cannot serve {}: {e}", endpoint.subject))?;
            requests.push(subscription.map(move |message| Request {
                endpoint: index,
                message,
                received: Instant::now(),
            }));
        }
        let mut discovery = Vec::new();
        for verb in ["PING", "INFO", "STATS"] {
            for subject in [
                format!("$SRV.{verb}"),
                format!("$SRV.{verb}.{name}"),
                format!("$SRV.{verb}.{name}.{id}"),
            ] {
                let subscription = client
                    .subscribe(subject.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot subscribe {subject}: {e}"))?;
                discovery.push(subscription.map(move |message| (verb, message)));
            }
        }
        let service = std::sync::Arc::new(Self {
            client,
            live,
            info: Info {
                kind: "io.nats.micro.v1.info_response".to_owned(),
                name: name.to_owned(),
                id,
                description: description.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                metadata,
                endpoints: endpoints
                    .iter()
                    .map(|e| endpoint::Info {
                        name: e.name.clone(),
                        subject: e.subject.clone(),
                        queue_group: QUEUE_GROUP.to_owned(),
                        metadata: e.metadata.clone(),
                    })
                    .collect(),
            },
            started: time::OffsetDateTime::now_utc(),
            stats: Mutex::new(
                endpoints
                    .iter()
                    .map(|e| endpoint::Stats {
                        name: e.name.clone(),
                        subject: e.subject.clone(),
                        queue_group: QUEUE_GROUP.to_owned(),
                        ..endpoint::Stats::default()
                    })
                    .collect(),
            ),
        });
        tokio::spawn(
            service
                .clone()
                .discover(futures::stream::select_all(discovery), shutdown.clone()),
        );
        let requests =
            futures::stream::select_all(requests).take_until(Box::pin(wait_for_stop(shutdown)));
        Ok((service, requests))
    }

    /// Answers `$SRV` requests until `shutdown` (dropping the subscriptions ends them).
    async fn discover(
        self: std::sync::Arc<Self>,
        mut requests: impl Stream<Item = (&'static str, Message)> + Unpin,
        shutdown: watch::Receiver<bool>,
    ) {
        let stop = wait_for_stop(shutdown);
        tokio::pin!(stop);
        loop {
            let (verb, message) = tokio::select! {
                request = requests.next() => match request {
                    Some(request) => request,
                    None => return,
                },
                () = &mut stop => return,
            };
            let Some(reply) = message.reply else { continue };
            let body = match verb {
                "PING" => serde_json::to_vec(&self.ping()),
                "INFO" => {
                    let mut info = self.info.clone();
                    info.metadata.extend((self.live.0)());
                    serde_json::to_vec(&info)
                }
                _ => serde_json::to_vec(&self.stats()),
            };
            match body {
                Ok(body) => {
                    if let Err(error) = self.client.publish(reply, body.into()).await {
                        warn!(%error, "cannot answer a $SRV request");
                    }
                }
                Err(error) => warn!(%error, "cannot encode a $SRV reply"),
            }
        }
    }

    fn ping(&self) -> PingResponse {
        PingResponse {
            kind: "io.nats.micro.v1.ping_response".to_owned(),
            name: self.info.name.clone(),
            id: self.info.id.clone(),
            version: self.info.version.clone(),
            metadata: self.info.metadata.clone(),
        }
    }

    /// What `$SRV.STATS` answers.
    pub fn stats(&self) -> Stats {
        Stats {
            kind: "io.nats.micro.v1.stats_response".to_owned(),
            name: self.info.name.clone(),
            id: self.info.id.clone(),
            version: self.info.version.clone(),
            started: self.started,
            endpoints: self.stats.lock().expect("stats lock").clone(),
        }
    }

    /// Sends `answer` to the request's reply subject (nothing without one) and counts it.
    pub async fn answer(&self, request: &Request, answer: Answer) {
        let Some(reply) = request.message.reply.clone() else {
            return;
        };
        let published = match &answer.error {
            None => self.client.publish(reply, answer.body).await,
            Some((code, description)) => {
                let mut headers = HeaderMap::new();
                headers.insert("Nats-Service-Error", description.as_str());
                headers.insert("Nats-Service-Error-Code", code.to_string().as_str());
                self.client
                    .publish_with_headers(reply, headers, answer.body)
                    .await
            }
        };
        if let Err(error) = published {
            warn!(%error, "cannot answer a request");
        }
        let mut stats = self.stats.lock().expect("stats lock");
        let Some(stats) = stats.get_mut(request.endpoint) else {
            return;
        };
        stats.requests += 1;
        stats.processing_time += request.received.elapsed();
        stats.average_processing_time = std::time::Duration::from_nanos(
            (stats.processing_time.as_nanos() / stats.requests as u128) as u64,
        );
        if let Some((code, description)) = answer.error {
            stats.errors += 1;
            stats.last_error = Some(async_nats::service::error::Error {
                code: code.into(),
                status: description,
            });
        }
    }
}

/// Resolves when `shutdown` says stop (or its sender is gone).
async fn wait_for_stop(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
