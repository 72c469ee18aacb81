//! The `ventana-sim` binary: JSONL that replays, and live traffic into a real nats-server that
//! ventanad (in-process, real sled) folds entirely, retries dropped once by JetStream.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use ventana_bus::client::{logged_events, read_stream};
use ventana_sim::{Mix, simulate};
use ventana_tests::service::{Live, caught_up, eventually, live, stream_len};
use ventana_wire::subjects::{DLQ_STREAM, IN_STREAM};

fn sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ventana-sim"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn writes_the_same_valid_traffic_for_the_same_seed() {
    let first = sim(&["--output", "-", "--events", "2000", "--seed", "5"]);
    assert!(first.status.success(), "{first:?}");
    let again = sim(&["--output", "-", "--events", "2000", "--seed", "5"]);
    assert_eq!(first.stdout, again.stdout, "reproducible");
    let other = sim(&["--output", "-", "--events", "2000", "--seed", "6"]);
    assert_ne!(first.stdout, other.stdout);
    let text = String::from_utf8(first.stdout).unwrap();
    let events: Vec<_> = text
        .lines()
        .map(|line| ventana_wire::parse_event(line).unwrap())
        .collect();
    let expected = simulate(&Mix {
        seed: 5,
        events: 2000,
        conversations: 1000,
        days: 7,
        duplicate_percent: 2,
        custom_channel: false,
    });
    assert_eq!(events, expected);

    let refused = sim(&["--clock", "simulated", "--events", "10"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("publishing is real time"),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_live_traffic_that_ventanad_folds_without_a_dead_letter() {
    let Live {
        nats,
        service: ventanad,
        js,
        ..
    } = live(None).await;

    let url = nats.url();
    let output = tokio::task::spawn_blocking(move || {
        sim(&[
            "--events",
            "3000",
            "--seed",
            "9",
            "--duplicates",
            "5",
            "--max",
            "--run",
            "t1",
            "--nats",
            &url,
        ])
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let generated = simulate(&Mix {
        seed: 9,
        events: 3000,
        conversations: 1000,
        days: 7,
        duplicate_percent: 5,
        custom_channel: false,
    });
    let unique: HashSet<&str> = generated.iter().map(|e| e.id.as_str()).collect();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.starts_with(&format!(
            "published {} events ({} new, {} duplicates dropped by JetStream)",
            generated.len(),
            unique.len(),
            generated.len() - unique.len()
        )),
        "{stdout}"
    );

    eventually(
        "ventanad to fold everything",
        Duration::from_secs(30),
        || caught_up(&js),
    )
    .await;
    let logged: Vec<String> = logged_events(&read_stream(&js, IN_STREAM, None).await.unwrap())
        .into_iter()
        .map(|e| e.id)
        .filter(|id| id.starts_with("t1.0-"))
        .collect();
    let expected: Vec<String> = {
        let mut seen = HashSet::new();
        generated
            .iter()
            .filter(|e| seen.insert(e.id.clone()))
            .map(|e| format!("t1.0-{}", e.id))
            .collect()
    };
    assert_eq!(logged, expected, "each event once, in order");
    assert_eq!(stream_len(&js, DLQ_STREAM).await, 0, "all valid");
    ventanad.stop().await.unwrap();
}
