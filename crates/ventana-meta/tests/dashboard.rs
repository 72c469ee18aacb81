//! `deploy/grafana/ventana.json` queries only metrics that ventanad and ventana-meta expose.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Adapter;
use ventana_tests::nats::NatsServer;
use ventana_tests::service::eventually;

/// The metric names `/metrics` text declares, with the names samples of each take
/// (counters `_total`, histograms `_bucket`, `_sum`, `_count`).
fn exposed(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        for suffix in suffixes {
            names.insert(format!("{name}{suffix}"));
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_exists() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = ventana_tests::service::config(&nats.url(), &dir.path().join("data"), None);
    let ventanad_http = config.http;
    let ventanad = ventana_tests::service::start(config);
    let adapter = Adapter::start(common::config(&nats, None)).await;
    let http = reqwest::Client::new();
    let metrics = |url: String| {
        let http = http.clone();
        async move {
            match http.get(url).send().await {
                Ok(response) if response.status().is_success() => response.text().await.ok(),
                _ => None,
            }
        }
    };
    // Labelled metrics show once they have a value: a little of everything.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let ventanad_url = format!("http://{ventanad_http}/metrics");
    eventually("ventanad's streams", Duration::from_secs(20), || async {
        js.get_stream(ventana_wire::subjects::IN_STREAM)
            .await
            .is_ok()
    })
    .await;
    let body = common::fixture("whatsapp-messages");
    adapter.post(body.clone(), Some(common::sign(&body))).await;
    let (status, _) = adapter
        .send(
            serde_json::json!({"id": "d-1", "conversation": {"channel": "whatsapp",
            "channel_id": "1", "contact_id": "2"}, "sender": "agent", "kind": "message",
            "message": {"type": "text"}}),
        )
        .await;
    assert_eq!(
        status,
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
        "no Graph token"
    );
    let agent = serde_json::json!({"id": "d-2", "type": "outbound_message", "sender": "agent",
        "kind": "message", "occurred_at": ventana_bus::now().to_string(),
        "conversation": {"channel": "whatsapp", "account": "acme", "channel_id": "1", "contact_id": "3"}});
    let event = ventana_wire::parse_event(&agent.to_string()).unwrap();
    ventana_bus::client::publish_events(&js, &[event], 16)
        .await
        .unwrap();
    js.publish("ventana.in.0.not-a-token", "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut names = BTreeSet::new();
    eventually("every labelled metric", Duration::from_secs(20), || async {
        let (Some(ventanad), Some(meta)) = (
            metrics(ventanad_url.clone()).await,
            metrics(format!("{}/metrics", adapter.base)).await,
        ) else {
            return false;
        };
        let text = ventanad + &meta;
        [
            "ventana_decisions",
            "ventana_dlq ",
            "ventana_meta_sends",
            "ventana_meta_items",
        ]
        .iter()
        .all(|family| text.contains(&format!("# TYPE {family}")))
    })
    .await;
    names.extend(exposed(&metrics(ventanad_url).await.unwrap()));
    names.extend(exposed(
        &metrics(format!("{}/metrics", adapter.base)).await.unwrap(),
    ));

    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/ventana.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            for (start, _) in expr.match_indices("ventana_") {
                let name: String = expr[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                queried.insert(name);
            }
        }
    }
    assert!(queried.len() >= 15, "{queried:?}");
    let missing: Vec<&String> = queried.difference(&names).collect();
    assert!(
        missing.is_empty(),
        "queried but not exposed: {missing:?} (exposed: {names:?})"
    );
    // What the issue asked to see is there.
    for wanted in [
        "ventana_decisions_total",
        "ventana_consumer_lag",
        "ventana_outbox_depth",
        "ventana_batch_seconds_bucket",
        "ventana_meta_webhooks_total",
        "ventana_partitions_owned",
    ] {
        assert!(queried.contains(wanted), "{wanted}");
    }
    adapter.stop().await;
    ventanad.stop().await.unwrap();
}
