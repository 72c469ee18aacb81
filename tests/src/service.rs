//! Running ventanad in-process for a test, the way the binary does: `run(config, shutdown)`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use ventana_service::config::{Config, NatsOptions};

use crate::nats::free_port;

/// Windows short enough that deadlines pass while a test runs.
pub const FAST_POLICY: &str = r#"
[channels.whatsapp]
standard_window = "1s"
[channels.messenger]
standard_window = "1s"
human_agent_window = "2s"
private_reply_window = "2s"
hold_until_accepted = true
[channels.instagram]
standard_window = "1s"
human_agent_window = "2s"
private_reply_window = "2s"
[notifier]
agent_delay = "300ms"
window_closing = "500ms"
remind_customer = true
greet_on_open = true
"#;

pub fn config(nats_url: &str, data: &Path, policy: Option<PathBuf>) -> Config {
    Config {
        nats: NatsOptions {
            url: nats_url.to_owned(),
            ..Default::default()
        },
        instance: "test".to_owned(),
        data: data.to_owned(),
        policy,
        cache_mb: 64,
        // Small, so that tests with many conversations fold both from memory and from sled.
        states_cached: 64,
        partitions: 16,
        replicas: 1,
        in_duplicate_window: Duration::from_secs(600),
        out_duplicate_window: Duration::from_secs(7200),
        batch: 1000,
        send_timeout: Duration::from_secs(5),
        protobuf_outputs: false,
        http: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    }
}

/// Writes `text` as a policy file in `dir`.
pub fn policy_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[derive(Debug)]
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

pub fn start(config: Config) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(ventana_service::run(config, async move {
        let _ = stopped.await;
    }));
    Running {
        stop: Some(stop),
        task,
    }
}

impl Running {
    /// Asks for a graceful stop and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await?
    }
}

/// Asks ventanad's API: the reply to `body` on `subject`, as JSON.
pub async fn api_request(
    client: &async_nats::Client,
    subject: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let reply = client
        .request(subject.to_owned(), body.to_string().into())
        .await
        .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

/// Polls `condition` until it holds, failing the test after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many messages `stream` holds.
pub async fn stream_len(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut stream) => stream.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// How many outputs VENTANA_OUT holds (its messages on `ventana.out.>`; not the fences and
/// marks the instances publish beside them); 0 when the server cannot say.
pub async fn outputs_len(js: &async_nats::jetstream::Context) -> u64 {
    use futures::TryStreamExt;
    // The stream's messages less its fences and marks, from one answer of the server: a
    // consumer filtered on the outputs would make the server count them subject by subject
    // (one subject per conversation) each time it is asked.
    let Ok(stream) = js.get_stream(ventana_wire::subjects::OUT_STREAM).await else {
        return 0;
    };
    let Ok(mut fences) = stream
        .info_with_subjects(ventana_wire::subjects::FENCE_SUBJECTS)
        .await
    else {
        return 0;
    };
    let messages = fences.info.state.messages;
    let mut marks = 0;
    loop {
        match fences.try_next().await {
            Ok(Some((_, count))) => marks += count as u64,
            Ok(None) => return messages.saturating_sub(marks),
            Err(_) => return 0,
        }
    }
}

/// Whether every ventanad instance's consumer has folded and acked everything in VENTANA_IN
/// (and there is one).
pub async fn caught_up(js: &async_nats::jetstream::Context) -> bool {
    use futures::TryStreamExt;
    let Ok(stream) = js.get_stream(ventana_wire::subjects::IN_STREAM).await else {
        return false;
    };
    let Ok(consumers) = stream.consumers().try_collect::<Vec<_>>().await else {
        return false;
    };
    let prefix = format!("{}-", ventana_wire::subjects::CONSUMER);
    let mut instances = consumers
        .iter()
        .filter(|c| c.name.starts_with(&prefix))
        .peekable();
    instances.peek().is_some()
        && instances.all(|info| info.num_pending == 0 && info.num_ack_pending == 0)
}

/// The `ventanad` binary of this build profile, brought up to date once per process (a
/// no-op when cargo already built it), so a test never runs a stale binary.
pub fn ventanad_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target/<profile>/deps/<test>");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = std::process::Command::new(cargo);
            build.args([
                "build",
                "--quiet",
                "-p",
                "ventana-service",
                "--bin",
                "ventanad",
            ]);
            if dir.ends_with("release") {
                build.arg("--release");
            }
            let status = build.status().unwrap();
            assert!(status.success(), "building ventanad failed");
            dir.join("ventanad")
        })
        .clone()
}

/// Starts the `ventanad` binary as its own process.
pub fn spawn_ventanad(nats_url: &str, data: &Path) -> std::process::Child {
    spawn_ventanad_with(nats_url, data, &[])
}

/// Starts the `ventanad` binary with extra arguments.
pub fn spawn_ventanad_with(nats_url: &str, data: &Path, extra: &[&str]) -> std::process::Child {
    std::process::Command::new(ventanad_binary())
        .args([
            "--nats",
            nats_url,
            "--http",
            &format!("127.0.0.1:{}", free_port()),
            "--data",
        ])
        .arg(data)
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("VENTANAD_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ventanad starts")
}

/// The snapshots of every conversation in the store at `data` (ventanad stopped), as JSON
/// lines in the order of `Fold::snapshots`, to compare with a replay.
pub fn stored_snapshots(data: &std::path::Path) -> Vec<String> {
    let store = ventana_store::Store::open(data, 16 << 20).unwrap();
    let policy = ventana_core::Policy::default();
    let mut snapshots: Vec<_> = store
        .conversations()
        .map(|c| c.unwrap().snapshot(&policy))
        .collect();
    snapshots.sort_by_key(|s| {
        (
            s.conversation.channel.to_string(),
            s.conversation.account.clone(),
            s.conversation.channel_id.clone(),
            s.conversation.contact_id.clone(),
        )
    });
    snapshots
        .iter()
        .map(ventana_wire::snapshot_to_json)
        .collect()
}

/// A running ventanad (in-process) on its own nats-server, with a client.
#[derive(Debug)]
pub struct Live {
    pub nats: crate::nats::NatsServer,
    pub dir: tempfile::TempDir,
    pub service: Running,
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
}

/// Starts nats-server and ventanad (with `policy`, a TOML text, if given) and waits until
/// ventanad answers its API, which it serves once its streams and consumer are declared.
pub async fn live(policy: Option<&str>) -> Live {
    live_with(policy, |_| {}).await
}

/// [`live`], with the configuration changed by `change` first.
pub async fn live_with(policy: Option<&str>, change: impl FnOnce(&mut Config)) -> Live {
    let nats = crate::nats::NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy.map(|text| policy_file(dir.path(), text));
    let mut config = config(&nats.url(), &dir.path().join("data"), policy);
    change(&mut config);
    let service = start(config);
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let ping = format!("$SRV.PING.{}", ventana_wire::subjects::SERVICE_NAME);
    eventually("ventanad's API", Duration::from_secs(10), || async {
        client.request(ping.clone(), "".into()).await.is_ok()
    })
    .await;
    Live {
        nats,
        dir,
        service,
        client,
        js,
    }
}

/// Every output on VENTANA_OUT, in outbox order (the log's), after checking that each
/// conversation's outputs are stored in that order; messages of another publisher last.
pub async fn published_outputs(js: &async_nats::jetstream::Context) -> Vec<String> {
    let messages = ventana_bus::client::read_stream(
        js,
        ventana_wire::subjects::OUT_STREAM,
        Some(ventana_wire::subjects::OUT_SUBJECTS.to_owned()),
    )
    .await
    .unwrap();
    // Partitions are published side by side, each in order: every conversation's outputs
    // must come in outbox order, and in that order they are the log's.
    let mut last: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for message in &messages {
        if let Some(position) = message.position {
            let conversation = message.subject.rsplit('.').next().unwrap_or("");
            if let Some(before) = last.insert(conversation, position) {
                assert!(
                    before < position,
                    "conversation {conversation}: output at position {position} stored after {before}"
                );
            }
        }
    }
    let mut ordered: Vec<&ventana_bus::client::Stored> = messages.iter().collect();
    ordered.sort_by_key(|m| m.position.unwrap_or(u64::MAX));
    ordered
        .into_iter()
        .map(|m| String::from_utf8(m.payload.to_vec()).unwrap())
        .collect()
}

/// Waits until VENTANA_OUT_PROTOBUF has a copy of every output on VENTANA_OUT, and checks
/// them: each the same output as protobuf, in the same order, on the matching subject,
/// naming its original's sequence. Returns how many there are.
pub async fn assert_protobuf_copies(js: &async_nats::jetstream::Context) -> usize {
    use ventana_bus::client::read_stream;
    use ventana_wire::subjects::{
        OUT_PROTOBUF_STREAM, OUT_SEQUENCE_HEADER, OUT_STREAM, OUT_SUBJECTS,
    };
    let outputs = read_stream(js, OUT_STREAM, Some(OUT_SUBJECTS.to_owned()))
        .await
        .unwrap();
    eventually(
        "every output copied as protobuf",
        Duration::from_secs(60),
        || async { stream_len(js, OUT_PROTOBUF_STREAM).await >= outputs.len() as u64 },
    )
    .await;
    let copies = read_stream(js, OUT_PROTOBUF_STREAM, None).await.unwrap();
    assert_eq!(
        copies.len(),
        outputs.len(),
        "one copy per output, none twice"
    );
    for (copy, output) in copies.iter().zip(&outputs) {
        assert!(copy.protobuf, "Content-Type: application/protobuf");
        let json = ventana_wire::parse_output(std::str::from_utf8(&output.payload).unwrap());
        assert_eq!(
            ventana_wire::proto::decode_output(&copy.payload).unwrap(),
            json.unwrap(),
            "copy {} of output {}",
            copy.sequence,
            output.sequence
        );
        assert_eq!(
            copy.subject,
            format!(
                "ventana.pb.{}",
                output.subject.strip_prefix("ventana.").unwrap()
            )
        );
    }
    if let (Some(copy), Some(output)) = (copies.last(), outputs.last()) {
        let raw = js
            .get_stream(OUT_PROTOBUF_STREAM)
            .await
            .unwrap()
            .get_raw_message(copy.sequence)
            .await
            .unwrap();
        assert_eq!(
            raw.headers.get(OUT_SEQUENCE_HEADER).unwrap().as_str(),
            output.sequence.to_string()
        );
    }
    copies.len()
}

/// `events` replayed with `policy`: the outputs as printed, and the fold (for snapshots).
pub fn replay_outputs(
    policy: &ventana_core::Policy,
    events: &[ventana_core::Event],
) -> (Vec<String>, ventana_notifier::Fold) {
    let mut fold = ventana_notifier::Fold::new(policy.clone());
    let mut outputs = Vec::new();
    for event in events {
        let _ = fold.apply(event, &mut outputs);
    }
    (
        outputs.iter().map(ventana_wire::output_to_json).collect(),
        fold,
    )
}

/// The replay of what the live log holds once ventanad has caught up.
#[derive(Debug)]
pub struct Settled {
    /// VENTANA_IN as replayable events (with their JetStream timestamps).
    pub logged: Vec<ventana_core::Event>,
    /// The outputs a replay of `logged` prints.
    pub outputs: Vec<String>,
    /// The replay's fold, for snapshots.
    pub fold: ventana_notifier::Fold,
}

/// Waits until ventanad has folded everything in VENTANA_IN, replays that log with `policy`,
/// and waits until VENTANA_OUT holds at least as many outputs as the replay printed.
pub async fn settle(
    js: &async_nats::jetstream::Context,
    policy: &ventana_core::Policy,
    limit: Duration,
) -> Settled {
    eventually("ventanad to fold everything", limit, || caught_up(js)).await;
    let stored = ventana_bus::client::read_stream(js, ventana_wire::subjects::IN_STREAM, None)
        .await
        .unwrap();
    let logged = ventana_bus::client::logged_events(&stored);
    let (outputs, fold) = replay_outputs(policy, &logged);
    eventually("every output to be published", limit, || async {
        outputs_len(js).await >= outputs.len() as u64
    })
    .await;
    Settled {
        logged,
        outputs,
        fold,
    }
}

/// Waits for ventanad to fold and publish everything, then checks that VENTANA_OUT is a
/// replay of VENTANA_IN under `policy`: every output once, none lost, in order (each
/// conversation's in the stream, all of them by outbox position).
pub async fn assert_outputs_replay_the_log(
    js: &async_nats::jetstream::Context,
    policy: &ventana_core::Policy,
    limit: Duration,
) {
    let settled = settle(js, policy, limit).await;
    let live = published_outputs(js).await;
    assert_eq!(
        live.len(),
        settled.outputs.len(),
        "no output lost, none twice"
    );
    assert!(
        live == settled.outputs,
        "outputs equal the replay, in order"
    );
}

/// Publishes `events` as live traffic: each stamped with the time it is published at (a
/// few of the customer messages late), paced at about `per_second`.
pub async fn publish_live(
    js: &async_nats::jetstream::Context,
    events: &[ventana_core::Event],
    per_second: usize,
) {
    publish_live_on(js, events, per_second, 16).await;
}

/// [`publish_live`] to a `VENTANA_IN` of `partitions` partitions.
pub async fn publish_live_on(
    js: &async_nats::jetstream::Context,
    events: &[ventana_core::Event],
    per_second: usize,
    partitions: u32,
) {
    let chunk = (per_second / 20).max(1);
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    for (n, window) in events.chunks(chunk).enumerate() {
        pace.tick().await;
        let at = ventana_bus::now();
        let live: Vec<ventana_core::Event> = window
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut e = e.clone();
                let late = if (n + i) % 9 == 0 {
                    ventana_core::Span::from_millis(700)
                } else {
                    ventana_core::Span::ZERO
                };
                e.occurred_at = at.minus(late);
                e
            })
            .collect();
        ventana_bus::client::publish_events(js, &live, partitions)
            .await
            .unwrap();
    }
}

/// The events of `examples/<name>.jsonl`.
pub fn example(name: &str) -> Vec<ventana_core::Event> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/{name}.jsonl"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| ventana_wire::parse_event(l).unwrap())
        .collect()
}
