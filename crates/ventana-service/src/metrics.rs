//! Prometheus metrics of ventanad.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub events_folded: Counter,
    pub duplicates: Counter,
    pub decisions: Family<ReasonLabel, Counter>,
    pub dlq: Family<ReasonLabel, Counter>,
    pub dlq_refused: Counter,
    pub outputs_published: Counter,
    pub outbox_resyncs: Counter,
    pub protobuf_outputs: Counter,
    pub partitions_owned: Gauge,
    pub lease_renewals: Counter,
    pub takeovers: Counter,
    pub handoffs: Counter,
    pub fenced: Counter,
    pub outbox_depth: Gauge,
    pub states_cached: Gauge,
    pub consumer_lag: Gauge,
    pub batch_seconds: Histogram,
    pub ticks_logged: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ventana");
        let metrics = Self {
            events_folded: Counter::default(),
            duplicates: Counter::default(),
            decisions: Family::default(),
            dlq: Family::default(),
            dlq_refused: Counter::default(),
            outputs_published: Counter::default(),
            outbox_resyncs: Counter::default(),
            protobuf_outputs: Counter::default(),
            partitions_owned: Gauge::default(),
            lease_renewals: Counter::default(),
            takeovers: Counter::default(),
            handoffs: Counter::default(),
            fenced: Counter::default(),
            outbox_depth: Gauge::default(),
            states_cached: Gauge::default(),
            consumer_lag: Gauge::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            ticks_logged: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events_folded",
            "Input events folded",
            metrics.events_folded.clone(),
        );
        registry.register(
            "duplicates",
            "Input events dropped as duplicates (R14)",
            metrics.duplicates.clone(),
        );
        registry.register(
            "decisions",
            "Outbound decisions by reason (accepted, held, or the delivery_failed reason)",
            metrics.decisions.clone(),
        );
        registry.register(
            "dlq",
            "Bad input copied to the DLQ, by reason",
            metrics.dlq.clone(),
        );
        registry.register(
            "dlq_refused",
            "Bad input the DLQ refused to store even by reference (left in VENTANA_IN, listed in the store)",
            metrics.dlq_refused.clone(),
        );
        registry.register(
            "outputs_published",
            "Outputs published to VENTANA_OUT",
            metrics.outputs_published.clone(),
        );
        registry.register(
            "protobuf_outputs",
            "Outputs copied as protobuf to VENTANA_OUT_PROTOBUF (with --protobuf-outputs)",
            metrics.protobuf_outputs.clone(),
        );
        registry.register(
            "partitions_owned",
            "Input partitions whose outputs and ticks this instance publishes now (it folds all of them)",
            metrics.partitions_owned.clone(),
        );
        registry.register(
            "lease_renewals",
            "Renewals of partition leases by this instance",
            metrics.lease_renewals.clone(),
        );
        registry.register(
            "takeovers",
            "Partitions this instance took (fenced and began publishing)",
            metrics.takeovers.clone(),
        );
        registry.register(
            "handoffs",
            "Partitions this instance handed over (to an instance joining, or as it stopped)",
            metrics.handoffs.clone(),
        );
        registry.register(
            "fenced",
            "Times the server refused this instance's outputs of a partition because another had fenced it (it let the partition go)",
            metrics.fenced.clone(),
        );
        registry.register(
            "outbox_resyncs",
            "Batches of outputs refused for holding one the stream had already (they went on one by one)",
            metrics.outbox_resyncs.clone(),
        );
        registry.register(
            "outbox_depth",
            "Outputs waiting in the outbox",
            metrics.outbox_depth.clone(),
        );
        registry.register(
            "states_cached",
            "Conversation states held decoded in memory in front of sled (--states-cached)",
            metrics.states_cached.clone(),
        );
        registry.register(
            "consumer_lag",
            "Input events not yet delivered to ventanad",
            metrics.consumer_lag.clone(),
        );
        registry.register(
            "batch_seconds",
            "Time to fold, persist and ack one batch",
            metrics.batch_seconds.clone(),
        );
        registry.register(
            "ticks_logged",
            "Deadline ticks logged to VENTANA_IN",
            metrics.ticks_logged.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    pub fn reason(&self, family: &Family<ReasonLabel, Counter>, reason: &str) {
        family
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String");
        text
    }
}
