//! Prometheus metrics of ventana-meta (`/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Code {
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub webhooks: Family<Code, Counter>,
    pub events_published: Counter,
    pub events_duplicate: Counter,
    pub events_refused: Counter,
    pub items: Family<Outcome, Counter>,
    pub sends: Family<Outcome, Counter>,
    pub graph_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ventana_meta");
        let webhooks = Family::<Code, Counter>::default();
        let events_published = Counter::default();
        let events_duplicate = Counter::default();
        let events_refused = Counter::default();
        let items = Family::<Outcome, Counter>::default();
        let sends = Family::<Outcome, Counter>::default();
        let graph_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register(
            "webhooks",
            "Webhook requests answered, by HTTP status",
            webhooks.clone(),
        );
        registry.register(
            "events_published",
            "Input events published to VENTANA_IN (new to the stream)",
            events_published.clone(),
        );
        registry.register(
            "events_duplicate",
            "Input events JetStream dropped as duplicates (Meta's retries)",
            events_duplicate.clone(),
        );
        registry.register(
            "events_refused",
            "Webhook items whose ids ventana cannot log (over 512 bytes, control characters, `tick:`): counted malformed, the rest published",
            events_refused.clone(),
        );
        registry.register(
            "items",
            "Webhook items, by outcome (published: became events; ignored: understood, no use to ventana; unsupported, malformed: copied to the DLQ without content)",
            items.clone(),
        );
        registry.register(
            "sends",
            "Send requests, by outcome (sent, rejected, held, graph_error, unreachable, refused, unauthorized, forbidden, repeated)",
            sends.clone(),
        );
        registry.register(
            "graph_seconds",
            "Graph API request time",
            graph_seconds.clone(),
        );
        Self {
            registry,
            webhooks,
            events_published,
            events_duplicate,
            events_refused,
            items,
            sends,
            graph_seconds,
        }
    }
}

impl Metrics {
    pub fn send(&self, outcome: &'static str) {
        self.sends.get_or_create(&Outcome { outcome }).inc();
    }

    pub fn item(&self, outcome: &'static str) {
        self.items.get_or_create(&Outcome { outcome }).inc();
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String");
        text
    }
}
