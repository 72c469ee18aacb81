//! The live commands, through the real binary, against a real nats-server and ventanad.

mod common;

use common::{text, ventana};

use std::time::Duration;

use ventana_tests::service::{Live, caught_up, eventually, live};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_state_check_and_tail_work_against_the_live_service() {
    let Live {
        nats,
        dir: _dir,
        service,
        client: _client,
        js,
    } = live(None).await;
    let url = nats.url();

    let published = ventana(&["import", "examples/messenger.jsonl", "--nats", &url]);
    assert!(published.status.success(), "{}", text(&published.stderr));
    assert!(
        text(&published.stderr).contains("published 9 events (9 new"),
        "{}",
        text(&published.stderr)
    );
    // `publish` is an alias.
    let again = ventana(&["publish", "examples/messenger.jsonl", "--nats", &url]);
    assert!(
        text(&again.stderr).contains("(0 new, 9 already in the log)"),
        "{}",
        text(&again.stderr)
    );
    eventually("the events folded", Duration::from_secs(10), || {
        caught_up(&js)
    })
    .await;

    // The example is from March 2026: long expired by now; only a template may go.
    let state = ventana(&["state", "messenger/acme/page-100/psid-7001", "--nats", &url]);
    assert!(state.status.success(), "{}", text(&state.stderr));
    let snapshot: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    assert_eq!(snapshot["state"], "expired");
    assert_eq!(snapshot["events"], 9);
    assert_eq!(
        snapshot["allowed"],
        serde_json::json!(["template", "comment_reply"])
    );

    let check = ventana(&[
        "check",
        "messenger/acme/page-100/psid-7001",
        "--sender",
        "agent",
        "--nats",
        &url,
    ]);
    let verdict: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(verdict["reason"], "extended_window_expired");
    assert_eq!(verdict["suggestion"], "send_template");

    let bad = ventana(&["state", "not-a-conversation", "--nats", &url]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("CHANNEL/ACCOUNT/CHANNEL_ID/CONTACT_ID"),
        "{}",
        text(&bad.stderr)
    );

    // tail --from-start prints what was published; stop it once it has.
    let mut tail = tokio::process::Command::new(env!("CARGO_BIN_EXE_ventana"))
        .args([
            "tail",
            "--from-start",
            "--json",
            "--type",
            "delivery_failed",
            "--nats",
            &url,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(tail.stdout.take().unwrap()));
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let output: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(output["type"], "delivery_failed");
    tail.kill().await.unwrap();
    service.stop().await.unwrap();
}

#[test]
fn dev_starts_nats_ventanad_and_the_demo_feed_then_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = ventana_tests::nats::free_port();
    let output = ventana(&[
        "dev",
        "--data",
        dir.path().to_str().unwrap(),
        "--port",
        "0",
        "--http",
        &format!("127.0.0.1:{port}"),
        "--for-seconds",
        "4",
    ]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("ventana dev is running")
            && stdout.contains("cargo run -q -p ventana -- tail"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("stopped"), "{stdout}");
    // ventanad's store was written.
    assert!(dir.path().join("ventana").exists());
}
