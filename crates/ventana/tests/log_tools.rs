//! The replay tooling against the live log, through the real binary: replay --from-stream,
//! export/import, explain (terminal and HTML, the page checked in headless Chromium),
//! rebuild, verify, what-if, erase, and a read that fails. Real nats-servers and sled;
//! ventanad in-process.

mod common;

use common::{text, ventana};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use ventana_bus::client::{publish_events, read_stream};
use ventana_bus::now;
use ventana_core::{Event, Policy};
use ventana_store::Store;
use ventana_tests::service::{
    Live, Settled, example, live, policy_file, publish_live, published_outputs, settle,
};
use ventana_tests::traffic::{build_log, seeded_steps};
use ventana_wire::subjects::{IN_STREAM, OUT_STREAM};
use ventana_wire::{parse_event, parse_policy};

fn lines(output: &Output) -> Vec<String> {
    text(&output.stdout).lines().map(str::to_owned).collect()
}

/// An event of `conversation` happening now.
fn now_event(json: &str) -> Event {
    let mut event = parse_event(json).unwrap();
    event.occurred_at = now();
    event
}

const MESSENGER: &str = r#""conversation":{"channel":"messenger","account":"acme","channel_id":"page-1","contact_id":"psid-1"}"#;
const WHATSAPP: &str = r#""conversation":{"channel":"whatsapp","account":"acme","channel_id":"1555","contact_id":"4915"}"#;

/// A policy other than the defaults (so `--policy` matters) with windows that stay open
/// while a test runs.
const STEADY_POLICY: &str = r#"
[channels.messenger]
standard_window = "1h"
hold_until_accepted = true
[notifier]
agent_delay = "30m"
greet_on_open = true
"#;

fn event(fields: &str, conversation: &str) -> Event {
    now_event(&format!(
        r#"{{{fields},"occurred_at":"2026-01-01T00:00:00Z",{conversation}}}"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_stream_and_export_reproduce_the_live_outputs() {
    // Minutes-long windows: no deadline passes (and no tick is logged) while the test reads.
    let policy = parse_policy(STEADY_POLICY).unwrap();
    let Live {
        nats,
        dir,
        service,
        client: _client,
        js,
    } = live(Some(STEADY_POLICY)).await;
    let url = nats.url();
    let policy_path = policy_file(dir.path(), STEADY_POLICY);
    let policy_arg = policy_path.to_str().unwrap();
    let mut events: Vec<Event> = example("messenger");
    events.extend(build_log(&seeded_steps(5, 3_000, 100, 1)));
    publish_live(&js, &events, 4_000).await;
    let Settled {
        outputs: expected, ..
    } = settle(&js, &policy, Duration::from_secs(30)).await;
    let published = published_outputs(&js).await;
    assert_eq!(published, expected, "ventanad's outputs are the replay's");

    // The whole stream.
    let replayed = ventana(&[
        "replay",
        "--from-stream",
        "--policy",
        policy_arg,
        "--nats",
        &url,
    ]);
    assert!(replayed.status.success(), "{}", text(&replayed.stderr));
    assert_eq!(lines(&replayed), published);

    // One conversation: only its subject is read, its outputs are the live ones.
    let key = "messenger/acme/page-100/psid-7001";
    let token = ventana::args::conversation_token(key).unwrap().to_string();
    let own: Vec<String> = published
        .iter()
        .filter(|o| o.contains(&format!(r#""id":"{token}-"#)))
        .cloned()
        .collect();
    assert!(own.len() >= 5, "the example has outputs: {own:?}");
    let one = ventana(&[
        "replay",
        "--from-stream",
        "--conversation",
        key,
        "--policy",
        policy_arg,
        "--nats",
        &url,
    ]);
    assert!(one.status.success(), "{}", text(&one.stderr));
    assert_eq!(lines(&one), own);

    // --since a sequence: everything folded, the outputs of later events printed: a suffix.
    let stored = read_stream(&js, IN_STREAM, None).await.unwrap();
    let middle = stored[stored.len() / 2].sequence.to_string();
    let since = ventana(&[
        "replay",
        "--from-stream",
        "--since",
        &middle,
        "--policy",
        policy_arg,
        "--nats",
        &url,
    ]);
    let since = lines(&since);
    assert!(!since.is_empty() && since.len() < published.len());
    let suffix = &published[published.len() - since.len()..];
    let first_difference = since.iter().zip(suffix).position(|(a, b)| a != b);
    assert_eq!(
        first_difference,
        None,
        "{:?} vs {:?}",
        first_difference.map(|i| &since[i]),
        first_difference.map(|i| &suffix[i])
    );

    // --at: the snapshots as of an instant, equal to a file replay's of the exported log.
    let exported = dir.path().join("export.jsonl");
    let export = ventana(&[
        "export",
        "--output",
        exported.to_str().unwrap(),
        "--nats",
        &url,
    ]);
    assert!(export.status.success(), "{}", text(&export.stderr));
    assert!(
        text(&export.stderr).contains(&format!("exported {} events", stored.len())),
        "{}",
        text(&export.stderr)
    );
    let from_file = ventana(&[
        "replay",
        "--input",
        exported.to_str().unwrap(),
        "--policy",
        policy_arg,
    ]);
    assert_eq!(
        lines(&from_file),
        published,
        "a replay of the export prints the live outputs"
    );
    let at = stored[15].published.to_string();
    let snapshots = ventana(&[
        "replay",
        "--from-stream",
        "--at",
        &at,
        "--policy",
        policy_arg,
        "--nats",
        &url,
    ]);
    let snapshots = lines(&snapshots);
    assert!(!snapshots.is_empty());
    assert!(
        snapshots
            .iter()
            .all(|l| l.starts_with(r#"{"type":"snapshot""#))
    );
    let file_snapshots = ventana(&[
        "replay",
        "--input",
        exported.to_str().unwrap(),
        "--at",
        &at,
        "--policy",
        policy_arg,
    ]);
    assert_eq!(lines(&file_snapshots), snapshots);
    let full_snapshots = ventana(&[
        "replay",
        "--input",
        exported.to_str().unwrap(),
        "--snapshots",
        "--policy",
        policy_arg,
    ]);
    let conversations = lines(&full_snapshots)
        .iter()
        .filter(|l| l.starts_with(r#"{"type":"snapshot""#))
        .count();
    assert!(
        snapshots.len() < conversations,
        "fewer conversations existed at {at}"
    );

    // export --conversation: just that conversation's events.
    let one_export = ventana(&["export", "--conversation", key, "--nats", &url]);
    assert_eq!(lines(&one_export).len(), example("messenger").len());
    service.stop().await.unwrap();

    // import into another deployment: every event once, however often it is imported.
    let other = live(None).await;
    let imported = ventana(&[
        "import",
        exported.to_str().unwrap(),
        "--nats",
        &other.nats.url(),
    ]);
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    let n = stored.len();
    assert!(
        text(&imported.stderr).contains(&format!("published {n} events ({n} new")),
        "{}",
        text(&imported.stderr)
    );
    let again = ventana(&[
        "import",
        exported.to_str().unwrap(),
        "--nats",
        &other.nats.url(),
    ]);
    assert!(
        text(&again.stderr).contains(&format!("(0 new, {n} already in the log)")),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        read_stream(&other.js, IN_STREAM, None).await.unwrap().len(),
        n
    );
    other.service.stop().await.unwrap();
}

/// Where chromedriver is: `VENTANA_CHROMEDRIVER` (set by ./scripts/test) or PATH.
fn chromedriver() -> PathBuf {
    std::env::var_os("VENTANA_CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join("chromedriver"))
                    .find(|p| p.is_file())
            })
        })
        .expect("chromedriver: run ./scripts/test, which installs Chromium and ChromeDriver")
}

/// A chromedriver process, stopped on drop (also when an assertion fails), and the
/// temporary directory it and Chromium write to (profile, `org.chromium.*` files), removed
/// after it: the browser leaves nothing behind in /tmp.
struct Driver(std::process::Child, tempfile::TempDir);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Opens `page` in headless Chromium; returns the session and the chromedriver process.
async fn open_in_chromium(page: &Path) -> (fantoccini::Client, Driver) {
    let port = ventana_tests::nats::free_port();
    let scratch = tempfile::tempdir().unwrap();
    let mut driver = Driver(
        Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .env("TMPDIR", scratch.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
        scratch,
    );
    let profile = driver.1.path().join("profile");
    // chromedriver says when it listens.
    let mut stdout = std::io::BufReader::new(driver.0.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("started successfully") {
        line.clear();
        let read = std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert!(read > 0, "chromedriver exited before it was ready");
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--window-size=1200,900", format!("--user-data-dir={}", profile.display())
        ]}),
    );
    let client =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
    client
        .goto(&format!("file://{}", page.display()))
        .await
        .unwrap();
    (client, driver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_says_why_a_message_was_not_delivered_in_the_terminal_and_in_chromium() {
    let Live {
        nats,
        dir,
        service,
        client: _client,
        js,
    } = live(None).await;
    let url = nats.url();
    // R1: nobody wrote yet; then the customer writes; the agent answers (R2); a template (R6).
    let events = vec![
        event(
            r#""id":"wamid.early","type":"outbound_message","sender":"agent","kind":"message""#,
            WHATSAPP,
        ),
        event(r#""id":"wamid.c1","type":"customer_message""#, WHATSAPP),
        event(
            r#""id":"wamid.a1","type":"outbound_message","sender":"agent","kind":"message""#,
            WHATSAPP,
        ),
        event(
            r#""id":"wamid.t1","type":"outbound_message","sender":"automation","kind":"template""#,
            WHATSAPP,
        ),
    ];
    publish_events(&js, &events, 16).await.unwrap();
    settle(&js, &Policy::default(), Duration::from_secs(10)).await;
    service.stop().await.unwrap();

    let key = "whatsapp/acme/1555/4915";
    let html = dir.path().join("explain.html");
    let explained = ventana(&[
        "explain",
        key,
        "--message",
        "wamid.early",
        "--color",
        "never",
        "--html",
        html.to_str().unwrap(),
        "--nats",
        &url,
    ]);
    assert!(explained.status.success(), "{}", text(&explained.stderr));
    let out = text(&explained.stdout);
    assert!(out.starts_with("whatsapp/acme/1555/4915 ("), "{out}");
    assert!(
        out.contains("message wamid.early not delivered at")
            && out.contains("no_customer_message [R1]")
            && out.contains("why: R1: the customer has never written")
            && out.contains("suggestion: send_template")
            && out.contains("state then: none"),
        "{out}"
    );
    assert!(out.contains("wamid.a1 delivered: response [R2]"), "{out}");
    assert!(out.contains("wamid.t1 delivered: template [R6]"), "{out}");
    assert!(out.contains("none -> open (standard until"), "{out}");
    assert!(!out.contains('\u{1b}'), "no colours when asked for none");
    let coloured = ventana(&["explain", key, "--color", "always", "--nats", &url]);
    assert!(
        text(&coloured.stdout).contains("\u{1b}[31m"),
        "failures in red"
    );
    let unknown = ventana(&["explain", key, "--message", "nope", "--nats", &url]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("message nope was not decided"));

    // The page, in a real browser.
    let (browser, driver) = open_in_chromium(&html).await;
    use fantoccini::Locator;
    let count = async |selector: &str| {
        browser
            .find_all(Locator::Css(selector))
            .await
            .unwrap()
            .len()
    };
    assert_eq!(count("svg#timeline").await, 1);
    assert_eq!(count("#timeline .mark.customer").await, 1);
    assert_eq!(count("#timeline .mark.business").await, 3);
    assert_eq!(count("#timeline .mark.failed").await, 1);
    assert_eq!(count("#events tbody tr").await, 4);
    assert_eq!(count("#events tbody tr.failed").await, 1);
    let bands = browser
        .find_all(Locator::Css(".band.window-standard"))
        .await
        .unwrap();
    assert_eq!(bands.len(), 1, "one standard window");
    let (_, _, width, height) = bands[0].rectangle().await.unwrap();
    assert!(
        width > 100.0 && height > 10.0,
        "the window band is drawn: {width}x{height}"
    );
    let failed = browser
        .find(Locator::Css("#timeline .mark.failed"))
        .await
        .unwrap();
    assert_eq!(
        failed.css_value("stroke").await.unwrap(),
        "rgb(214, 40, 40)"
    );
    assert_eq!(
        failed.attr("data-id").await.unwrap().as_deref(),
        Some("wamid.early")
    );
    let (failed_x, ..) = failed.rectangle().await.unwrap();
    let customer = browser
        .find(Locator::Css("#timeline .mark.customer"))
        .await
        .unwrap();
    let (customer_x, ..) = customer.rectangle().await.unwrap();
    assert!(
        failed_x < customer_x + 7.0,
        "marks are placed in time order"
    );
    assert_eq!(
        browser
            .find(Locator::Id("failures"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "1"
    );
    // --message: that message's verdict heads the page, as in the terminal.
    let verdict = browser.find(Locator::Id("verdict")).await.unwrap();
    let said = verdict.text().await.unwrap();
    assert!(
        said.starts_with("message wamid.early not delivered at")
            && said.contains("no_customer_message [R1]")
            && said.contains("suggestion: send_template"),
        "{said}"
    );
    let (_, verdict_y, ..) = verdict.rectangle().await.unwrap();
    let (_, svg_y, ..) = browser
        .find(Locator::Css("svg#timeline"))
        .await
        .unwrap()
        .rectangle()
        .await
        .unwrap();
    assert!(verdict_y < svg_y, "the verdict comes first");
    // A legend for every kind of band and mark.
    assert_eq!(count("#legend .key").await, 9);
    // Axis ticks at round instants, evenly spaced.
    let ticks = browser.find_all(Locator::Css(".axis text")).await.unwrap();
    assert!(ticks.len() >= 4, "{} ticks", ticks.len());
    let mut instants = Vec::new();
    for tick in &ticks {
        let at = tick.attr("data-at").await.unwrap().unwrap();
        let at = ventana_core::Timestamp::parse_rfc3339(&at)
            .unwrap()
            .unix_nanos();
        assert_eq!(at % 60_000_000_000, 0, "a tick on a round minute");
        instants.push(at);
    }
    let step = instants[1] - instants[0];
    assert!(instants.windows(2).all(|w| w[1] - w[0] == step));
    // The agent's three messages were decided within a second: none hides another (the
    // failure included).
    let mut boxes = Vec::new();
    for mark in browser
        .find_all(Locator::Css("#timeline .mark.business"))
        .await
        .unwrap()
    {
        boxes.push(mark.rectangle().await.unwrap());
    }
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            let apart =
                a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1;
            assert!(apart, "marks overlap: {a:?} {b:?}");
        }
    }
    // Instants stay on one line.
    for time in browser
        .find_all(Locator::Css("#events .time"))
        .await
        .unwrap()
    {
        let (.., height) = time.rectangle().await.unwrap();
        assert!(height < 25.0, "a time over two lines ({height}px)");
    }
    let screenshot = browser.screenshot().await.unwrap();
    assert!(screenshot.starts_with(b"\x89PNG") && screenshot.len() > 10_000);
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("explain.png");
    std::fs::write(&target, &screenshot).unwrap();
    browser.close().await.unwrap();
    drop(driver);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_equals_the_service_projection_and_verify_finds_a_difference() {
    let Live {
        nats,
        dir,
        service,
        client: _client,
        js,
    } = live(None).await;
    let url = nats.url();
    let events = build_log(&seeded_steps(11, 200_000, 20_000, 7));
    publish_events(&js, &events, 16).await.unwrap();
    settle(&js, &Policy::default(), Duration::from_secs(120)).await;
    service.stop().await.unwrap();
    let data = dir.path().join("data");

    let verified = ventana(&["verify", "--data", data.to_str().unwrap(), "--nats", &url]);
    assert!(
        verified.status.success(),
        "{}{}",
        text(&verified.stdout),
        text(&verified.stderr)
    );
    assert!(
        text(&verified.stdout).contains("conversations, 0 differ"),
        "{}",
        text(&verified.stdout)
    );

    let rebuilt_dir = dir.path().join("rebuilt");
    let rebuilt = ventana(&[
        "rebuild",
        "--data",
        rebuilt_dir.to_str().unwrap(),
        "--nats",
        &url,
    ]);
    assert!(rebuilt.status.success(), "{}", text(&rebuilt.stderr));
    let summary = text(&rebuilt.stdout);
    assert!(
        summary.contains("rebuilt") && summary.contains("200000 events"),
        "{summary}"
    );
    {
        let service_store = Store::open(&data, 64 << 20).unwrap();
        let rebuilt_store = Store::open(&rebuilt_dir, 64 << 20).unwrap();
        assert_eq!(
            service_store.checkpoint().unwrap(),
            rebuilt_store.checkpoint().unwrap()
        );
        let (compared, differences) =
            ventana::rebuild::compare(&service_store, &rebuilt_store, &Policy::default()).unwrap();
        assert_eq!(differences, vec![]);
        assert!(compared >= 19_000, "{compared} conversations compared");
        // Damage the service's projection: one conversation forgotten.
        let token = ventana_sim::key(7).token();
        let erasure = service_store.find(token).unwrap();
        assert!(erasure.state);
        service_store.erase(&erasure).unwrap();
    }
    // Rebuilding over an existing projection keeps the old one aside.
    let again = ventana(&[
        "rebuild",
        "--data",
        rebuilt_dir.to_str().unwrap(),
        "--nats",
        &url,
    ]);
    assert!(
        text(&again.stdout).contains("the old projection is in"),
        "{}",
        text(&again.stdout)
    );

    let damaged = ventana(&["verify", "--data", data.to_str().unwrap(), "--nats", &url]);
    assert_eq!(damaged.status.code(), Some(1), "{}", text(&damaged.stderr));
    let report = text(&damaged.stdout);
    let token = ventana_sim::key(7).token().to_string();
    assert!(
        report.contains(&format!("{token}  projection: (none)  log: ")),
        "{report}"
    );
    assert!(report.contains(", 1 differ"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_if_counts_the_decisions_another_policy_would_flip() {
    let Live {
        nats,
        dir,
        service,
        client: _client,
        js,
    } = live(None).await;
    let url = nats.url();
    // The customer wrote two days ago (the webhook arrives late): outside 24 h, inside the
    // 7-day human-agent extension.
    let mut late = event(r#""id":"m.c1","type":"customer_message""#, MESSENGER);
    late.occurred_at = now().minus(ventana_core::Span::from_days(2));
    let events = vec![
        late,
        event(
            r#""id":"m.a1","type":"outbound_message","sender":"agent","kind":"message""#,
            MESSENGER,
        ),
        event(
            r#""id":"m.b1","type":"outbound_message","sender":"automation","kind":"message""#,
            MESSENGER,
        ),
        event(r#""id":"w.c1","type":"customer_message""#, WHATSAPP),
        event(
            r#""id":"w.a1","type":"outbound_message","sender":"agent","kind":"message""#,
            WHATSAPP,
        ),
    ];
    publish_events(&js, &events, 16).await.unwrap();
    settle(&js, &Policy::default(), Duration::from_secs(10)).await;
    service.stop().await.unwrap();
    let off = dir.path().join("no-extension.toml");
    std::fs::write(&off, "[channels.messenger]\nhuman_agent_window = \"0s\"\n").unwrap();

    let report = ventana(&[
        "what-if",
        "--policy",
        off.to_str().unwrap(),
        "--json",
        "--nats",
        &url,
    ]);
    assert!(report.status.success(), "{}", text(&report.stderr));
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["decided"], 3);
    assert_eq!(
        report["delivered"],
        serde_json::json!({"current": 2, "other": 1})
    );
    assert_eq!(
        report["flipped"],
        serde_json::json!([
            {"channel": "messenger", "current": "delivered (message_tag human_agent)", "other": "not delivered (window_expired)", "messages": 1},
            {"channel": "messenger", "current": "not delivered (human_agent_requires_human)", "other": "not delivered (window_expired)", "messages": 1},
        ])
    );
    let human = ventana(&["what-if", "--policy", off.to_str().unwrap(), "--nats", &url]);
    assert!(
        text(&human.stdout).contains("3 outbound messages decided; under")
            && text(&human.stdout).contains("1 fewer delivered"),
        "{}",
        text(&human.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_removes_a_contact_from_the_log_and_the_projection_only() {
    let Live {
        nats,
        dir,
        service,
        client: _client,
        js,
    } = live(None).await;
    let url = nats.url();
    let mut events = example("whatsapp");
    events.extend(example("messenger"));
    publish_events(&js, &events, 16).await.unwrap();
    settle(&js, &Policy::default(), Duration::from_secs(10)).await;
    let outputs_before = published_outputs(&js).await.len();
    service.stop().await.unwrap();
    let data = dir.path().join("data");
    let key = "whatsapp/acme/15550001111/4915112345678";
    let token = ventana::args::conversation_token(key).unwrap();
    let whatsapp_events = example("whatsapp").len();

    let dry = ventana(&[
        "erase",
        key,
        "--data",
        data.to_str().unwrap(),
        "--nats",
        &url,
    ]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let dry = text(&dry.stdout);
    assert!(
        dry.starts_with(&format!(
            "would erase {key} ({token}): {whatsapp_events} events from VENTANA_IN"
        )) && dry.contains("(nothing removed: add --yes)"),
        "{dry}"
    );
    assert_eq!(
        read_stream(&js, IN_STREAM, None).await.unwrap().len(),
        events.len()
    );

    let erased = ventana(&[
        "erase",
        key,
        "--data",
        data.to_str().unwrap(),
        "--yes",
        "--nats",
        &url,
    ]);
    assert!(erased.status.success(), "{}", text(&erased.stderr));
    let erased = text(&erased.stdout);
    assert!(
        erased.starts_with(&format!(
            "erased {key} ({token}): {whatsapp_events} events from VENTANA_IN"
        )) && erased.contains("its state ("),
        "{erased}"
    );
    assert!(
        read_stream(&js, IN_STREAM, Some(ventana::log::input_filter(token)))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        read_stream(&js, OUT_STREAM, Some(ventana::log::output_filter(token)))
            .await
            .unwrap()
            .is_empty()
    );
    let remaining = read_stream(&js, IN_STREAM, None).await.unwrap();
    assert_eq!(
        remaining.len(),
        example("messenger").len(),
        "the other contact is kept"
    );
    assert!(published_outputs(&js).await.len() < outputs_before);
    {
        let store = Store::open(&data, 16 << 20).unwrap();
        let left = store.find(token).unwrap();
        assert!(
            !left.state && left.timers == 0 && left.outbox == 0,
            "{left:?}"
        );
        let messenger =
            ventana::args::conversation_token("messenger/acme/page-100/psid-7001").unwrap();
        assert!(store.find(messenger).unwrap().state);
    }
    // What is left is consistent: the projection equals a replay of the remaining log.
    let verified = ventana(&["verify", "--data", data.to_str().unwrap(), "--nats", &url]);
    assert!(verified.status.success(), "{}", text(&verified.stdout));
}

/// A read that fails hands its caller the reason, then the end: never a plain end, which
/// would pass for a complete log.
#[test]
fn a_read_that_fails_says_why() {
    let nats = ventana_tests::nats::NatsServer::start();
    let options = ventana_bus::NatsOptions {
        url: nats.url(),
        ..Default::default()
    };
    let log = ventana::log::LiveLog::connect(&options, "log-tools-test").unwrap();
    let mut read = log.read("NO_SUCH_STREAM", None, ventana_bus::client::Start::First);
    let error = read
        .next()
        .expect("an item: the reason")
        .expect_err("the stream does not exist");
    assert!(
        format!("{error:#}").contains("no stream NO_SUCH_STREAM"),
        "{error:#}"
    );
    assert!(read.next().is_none(), "nothing after the reason");
}
