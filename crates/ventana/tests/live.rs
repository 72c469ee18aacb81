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
    // The example is from March 2026: the live service decides it now, and says so.
    assert!(
        text(&published.stderr).contains("warning: the newest event happened at")
            && text(&published.stderr).contains("--shift-to-now"),
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
    assert_eq!(check.status.code(), Some(3), "would not be delivered: 3");
    let template = ventana(&[
        "check",
        "messenger/acme/page-100/psid-7001",
        "--sender",
        "automation",
        "--kind",
        "template",
        "--nats",
        &url,
    ]);
    let verdict: serde_json::Value = serde_json::from_slice(&template.stdout).unwrap();
    assert_eq!(verdict["type"], "outbound_accepted");
    assert_eq!(template.status.code(), Some(0), "would be delivered: 0");

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

    // status: one instance, everything folded, the streams and the policy.
    let status = ventana(&["status", "--json", "--nats", &url]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let instances = report["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "{report}");
    assert_eq!(
        (
            instances[0]["requests"].clone(),
            instances[0]["errors"].clone()
        ),
        (serde_json::json!(3), serde_json::json!(0)),
        "a state and two checks: {report}"
    );
    assert_eq!(report["partitions"], 16);
    assert_eq!(
        report["owners"],
        serde_json::json!(vec!["test"; 16]),
        "a single instance owns every partition"
    );
    assert_eq!(report["consumers"][0]["instance"], "test");
    assert_eq!(report["consumers"][0]["pending"], 0);
    assert_eq!(report["consumers"][0]["folded_through"], 9);
    assert_eq!(report["streams"][0]["name"], "VENTANA_IN");
    assert_eq!(report["streams"][0]["messages"], 9);
    assert!(report["streams"][1]["messages"].as_u64().unwrap() > 0);
    assert!(
        report["streams"][3].is_null(),
        "no protobuf outputs asked for"
    );
    assert_eq!(report["policy"]["digest"], "defaults");
    let people = ventana(&["status", "--nats", &url]);
    assert!(people.status.success());
    let printed = text(&people.stdout);
    for expected in [
        "ventanad: 1 instance(s)",
        "partitions: 16",
        "publishing: test owns 16 partition(s): 0-15",
        "folding: test through sequence 9, 0 waiting",
        "policy: revision",
        "VENTANA_IN",
        "VENTANA_OUT_PROTOBUF   absent",
    ] {
        assert!(printed.contains(expected), "{expected}:\n{printed}");
    }

    service.stop().await.unwrap();
    let alone = ventana(&["status", "--nats", &url]);
    assert_eq!(alone.status.code(), Some(1), "no ventanad answers");
    assert!(text(&alone.stdout).contains("ventanad: none answered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_shift_to_now_plays_a_file_on_todays_timeline() {
    let Live {
        nats,
        dir: _dir,
        service,
        client: _client,
        js,
    } = live(None).await;
    let url = nats.url();
    for (args, says) in [
        (vec!["--speed", "0"], "at least 1"),
        (vec!["--speed", "2"], "--shift-to-now"),
    ] {
        let mut all = vec!["import", "examples/whatsapp.jsonl", "--nats", &url];
        all.extend(args);
        let refused = ventana(&all);
        assert_eq!(refused.status.code(), Some(2), "{all:?}");
        assert!(
            text(&refused.stderr).contains(says),
            "{}",
            text(&refused.stderr)
        );
    }

    // Two days of the file in under two seconds: the first event now, the gaps divided.
    let speed = 100_000;
    let before = ventana_bus::now();
    let played = ventana(&[
        "import",
        "examples/whatsapp.jsonl",
        "--shift-to-now",
        "--speed",
        &speed.to_string(),
        "--nats",
        &url,
    ]);
    let after = ventana_bus::now();
    assert!(played.status.success(), "{}", text(&played.stderr));
    assert!(
        !text(&played.stderr).contains("warning"),
        "{}",
        text(&played.stderr)
    );
    // A line per event as it is published, its instant to the second.
    let lines: Vec<String> = text(&played.stderr)
        .lines()
        .filter(|l| l.starts_with("20"))
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 9, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| &l[10..11] == " " && &l[19..21] == "  "),
        "{lines:?}"
    );
    let original: Vec<ventana_core::Event> = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/whatsapp.jsonl"
    ))
    .unwrap()
    .lines()
    .map(|line| ventana_wire::parse_event(line).unwrap())
    .collect();
    let logged = ventana_bus::client::logged_events(
        &ventana_bus::client::read_stream(&js, ventana_wire::subjects::IN_STREAM, None)
            .await
            .unwrap(),
    );
    let ids =
        |events: &[ventana_core::Event]| events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&logged), ids(&original), "every event, in file order");
    let first = logged[0].occurred_at;
    assert!(
        before <= first && first <= after,
        "the first event happened now"
    );
    for (played, was) in logged.iter().zip(&original) {
        let gap = played.occurred_at.unix_nanos() - first.unix_nanos();
        let was_gap = was.occurred_at.unix_nanos() - original[0].occurred_at.unix_nanos();
        assert!(
            (gap - was_gap / speed).abs() <= 1_000,
            "{}: {gap} ns after the first, in the file {was_gap} ns",
            played.id
        );
    }
    eventually("the events folded", Duration::from_secs(10), || {
        caught_up(&js)
    })
    .await;
    // Decided now, on the new timeline: the last agent message answers a customer who
    // wrote "five minutes" (3 ms) before.
    let state = ventana(&[
        "state",
        "whatsapp/acme/15550001111/4915112345678",
        "--nats",
        &url,
    ]);
    let snapshot: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    assert_eq!(snapshot["state"], "awaiting_customer", "{snapshot}");
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
            && stdout.contains("cargo run -q -p ventana -- tail")
            && stdout.contains("import --shift-to-now"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("stopped"), "{stdout}");
    // ventanad's store was written.
    assert!(dir.path().join("ventana").exists());
}

#[test]
fn a_second_dev_or_a_bad_policy_is_refused_before_anything_starts() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("first");
    let http = format!("127.0.0.1:{}", ventana_tests::nats::free_port());
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_ventana"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args([
            "dev",
            "--data",
            data.to_str().unwrap(),
            "--port",
            "0",
            "--http",
            &http,
        ])
        .args(["--rate", "0", "--for-seconds", "120"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(first.stdout.take().unwrap()).lines();
    let announced = lines.next().unwrap().unwrap();
    assert_eq!(announced, "ventana dev is running");

    let other_data = dir.path().join("second");
    let other_http = format!("127.0.0.1:{}", ventana_tests::nats::free_port());
    let bad_policy = dir.path().join("bad.toml");
    std::fs::write(
        &bad_policy,
        "[channels.whatsapp]\nstandard_window = \"soon\"\n",
    )
    .unwrap();
    for (args, says) in [
        // The same data directory: its store is locked by the first.
        (
            vec!["--data", data.to_str().unwrap(), "--http", &other_http],
            "--data",
        ),
        // Another directory, the same HTTP address.
        (
            vec!["--data", other_data.to_str().unwrap(), "--http", &http],
            "--http",
        ),
        // A policy that does not parse.
        (
            vec![
                "--data",
                other_data.to_str().unwrap(),
                "--http",
                &other_http,
                "--policy",
                bad_policy.to_str().unwrap(),
            ],
            "standard_window",
        ),
    ] {
        let mut all = vec!["dev", "--port", "0", "--rate", "0", "--for-seconds", "5"];
        all.extend(args);
        let second = ventana(&all);
        let stderr = text(&second.stderr);
        assert_eq!(second.status.code(), Some(1), "{all:?}: {stderr}");
        assert!(text(&second.stdout).is_empty(), "{all:?} announced itself");
        assert_eq!(stderr.lines().count(), 1, "{all:?}: {stderr}");
        assert!(stderr.contains(says), "{all:?}: {stderr}");
    }
    assert!(!other_data.join("nats").exists(), "nothing was started");

    // SIGTERM stops the first one cleanly (its nats-server with it).
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(first.wait().unwrap().success());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert_eq!(rest.last().map(String::as_str), Some("stopped"), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tools_fold_the_live_log_with_the_policy_ventanad_published() {
    let policy = "[channels.whatsapp]\nstandard_window = \"2m\"\n";
    let Live {
        nats,
        dir,
        service,
        client: _client,
        js,
    } = live(Some(policy)).await;
    let url = nats.url();
    let at = ventana_bus::now();
    let key = "whatsapp/acme/15550001111/4915100000077";
    let event = format!(
        r#"{{"id":"wamid.p1","type":"customer_message","occurred_at":"{at}","conversation":{{"channel":"whatsapp","account":"acme","channel_id":"15550001111","contact_id":"4915100000077"}}}}"#
    );
    let file = dir.path().join("one.jsonl");
    std::fs::write(&file, event + "\n").unwrap();
    let imported = ventana(&["import", file.to_str().unwrap(), "--nats", &url]);
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    eventually("the event folded", Duration::from_secs(10), || {
        caught_up(&js)
    })
    .await;
    let two_minutes_later =
        ventana_core::Timestamp::from_unix_nanos(at.unix_nanos() + 120 * 1_000_000_000).to_string();
    let shown = format!(
        "{} {}",
        &two_minutes_later[..10],
        &two_minutes_later[11..19]
    );
    let said = format!(
        "policy: ventanad's (VENTANA_POLICY revision 1, sha256 {}",
        ventana_bus::policy::digest(policy)
    );

    let explained = ventana(&["explain", key, "--nats", &url, "--color", "never"]);
    let out = text(&explained.stdout);
    assert!(explained.status.success(), "{}", text(&explained.stderr));
    assert!(out.contains(&said), "{out}");
    assert!(out.contains(&format!("standard until {shown}")), "{out}");

    let replayed = ventana(&["replay", "--from-stream", "--snapshots", "--nats", &url]);
    assert!(replayed.status.success(), "{}", text(&replayed.stderr));
    assert!(
        text(&replayed.stderr).contains(&said),
        "{}",
        text(&replayed.stderr)
    );
    let snapshot: serde_json::Value = text(&replayed.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|o| o["type"] == "snapshot")
        .unwrap();
    assert_eq!(
        snapshot["window_ends_at"],
        two_minutes_later.as_str(),
        "{snapshot}"
    );

    // --policy wins, and is named.
    let defaults = dir.path().join("defaults.toml");
    std::fs::write(&defaults, "").unwrap();
    let explained = ventana(&[
        "explain",
        key,
        "--nats",
        &url,
        "--policy",
        defaults.to_str().unwrap(),
    ]);
    let out = text(&explained.stdout);
    assert!(
        out.contains(&format!("policy: {}", defaults.display())),
        "{out}"
    );
    assert!(!out.contains(&format!("standard until {shown}")), "{out}");
    service.stop().await.unwrap();
}

/// `ventana status --json` on the cluster `dev --cluster` printed: who owns each partition.
fn cluster_owners(urls: &str) -> Vec<String> {
    let status = ventana(&[
        "status",
        "--json",
        "--nats",
        urls,
        "--nats-user",
        "ventanad",
        "--nats-password",
        "dev",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
    report["owners"]
        .as_array()
        .map(|owners| {
            owners
                .iter()
                .map(|o| o.as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_cluster_shows_a_failover_and_stops_everything() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let http = ventana_tests::nats::free_port();
    let mut dev = std::process::Command::new(env!("CARGO_BIN_EXE_ventana"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args(["dev", "--cluster", "--port", "0", "--rate", "50"])
        .arg("--data")
        .arg(dir.path())
        .args([
            "--http",
            &format!("127.0.0.1:{http}"),
            "--for-seconds",
            "120",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(dev.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let end = line.starts_with("Ctrl-C stops everything");
        printed.push(line);
        if end {
            break;
        }
    }
    let printed = printed.join("\n");
    assert!(
        printed.starts_with("ventana dev --cluster is running"),
        "{printed}"
    );
    let urls = printed
        .split_whitespace()
        .skip_while(|word| *word != "--nats")
        .nth(1)
        .unwrap()
        .to_owned();
    assert_eq!(urls.split(',').count(), 3, "three NATS nodes: {printed}");
    let victim = printed
        .split("kill -9 ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    // The reader goes on in the background, so dev never blocks on a full pipe.
    let (said, hear) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = said.send(line);
        }
    });

    let split = |owners: &[String]| {
        ["dev-1", "dev-2"]
            .iter()
            .all(|name| owners.iter().filter(|o| o == name).count() == 8)
    };
    eventually(
        "the partitions shared 8 and 8",
        Duration::from_secs(60),
        || {
            let owners = cluster_owners(&urls);
            async move { split(&owners) }
        },
    )
    .await;
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &victim])
            .status()
            .unwrap()
            .success()
    );
    eventually(
        "dev-2 owning every partition",
        Duration::from_secs(30),
        || {
            let owners = cluster_owners(&urls);
            async move { owners.len() == 16 && owners.iter().all(|o| o == "dev-2") }
        },
    )
    .await;
    // dev starts it again, and it takes its share back.
    eventually("dev-1 sharing again", Duration::from_secs(60), || {
        let owners = cluster_owners(&urls);
        async move { split(&owners) }
    })
    .await;
    let told: Vec<String> = hear.try_iter().collect();
    assert!(
        told.iter().any(|l| l.starts_with("ventanad dev-1 stopped"))
            && told
                .iter()
                .any(|l| l.starts_with("ventanad dev-1 started again")),
        "{told:?}"
    );

    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &dev.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(dev.wait().unwrap().success(), "dev stops cleanly");
    let last = hear.recv_timeout(Duration::from_secs(5));
    assert_eq!(last.as_deref().ok(), Some("stopped"));
    // Nothing it started is left running: the nodes' and instances' ports are free again.
    for url in urls.split(',') {
        let address = url.trim_start_matches("nats://");
        assert!(
            std::net::TcpStream::connect(address).is_err(),
            "{address} still answers"
        );
    }
    assert!(std::net::TcpStream::connect(("127.0.0.1", http)).is_err());
}
