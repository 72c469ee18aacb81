//! The example Python client (tests/clients/python, nats-py and protobuf) against a real
//! ventanad: it computes subjects from the documented derivation, publishes JSON and
//! protobuf events, asks every endpoint and reads both output streams with durable
//! consumers. Its environment comes from `scripts/python-client` (`./scripts/test` sets
//! `VENTANA_PYTHON`).

use std::path::Path;

use serde_json::Value;
use ventana_core::{Channel, ConversationKey};
use ventana_tests::service::{Live, assert_protobuf_copies, live_with, published_outputs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_publishes_asks_and_reads_outputs() {
    let python = std::env::var("VENTANA_PYTHON").expect(
        "VENTANA_PYTHON: the example Python client's interpreter (run ./scripts/test, or set it to the output of ./scripts/python-client)",
    );
    let Live {
        nats,
        dir: _dir,
        service: _service,
        client: _client,
        js,
    } = live_with(None, |config| config.protobuf_outputs = true).await;
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let generated = Path::new(&python)
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("gen");
    let run = tokio::process::Command::new(&python)
        .arg(repository.join("tests/clients/python/ventana_client.py"))
        .args(["--nats", &nats.url(), "--run-id", "ci"])
        .env("PYTHONPATH", generated)
        .output()
        .await
        .expect("the Python client runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    println!("{stdout}");
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();

    // What it computed is what ventana computes.
    let mut tokens: Vec<String> = [Channel::WhatsApp, Channel::Messenger]
        .into_iter()
        .map(|channel| {
            let channel_id = if channel == Channel::WhatsApp {
                "15550001111"
            } else {
                "page-100"
            };
            ConversationKey::new(channel, "acme", channel_id, "py-ci")
                .token()
                .to_string()
        })
        .collect();
    tokens.sort();
    assert_eq!(report["tokens"], serde_json::json!(tokens));
    assert_eq!(report["partitions"], 16);
    // It read the outputs ventanad published, in both encodings.
    let outputs = published_outputs(&js).await;
    let decision = report["decision"].as_str().unwrap();
    assert!(
        outputs.iter().any(|o| o.contains(decision)),
        "{decision} on VENTANA_OUT"
    );
    for id in report["opened"].as_array().unwrap() {
        assert!(outputs.iter().any(|o| o.contains(id.as_str().unwrap())));
    }
    let copied = report["protobuf_outputs"].as_array().unwrap();
    assert!(copied.iter().any(|id| id == decision), "{report}");
    assert_protobuf_copies(&js).await;
}
