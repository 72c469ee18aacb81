//! Several ventanad instances on one NATS (the `ventanad` binary, each with its own store):
//! every one folds the log and answers the API, the one holding the lease publishes. When it
//! is killed (kill -9), paused (SIGSTOP) or stopped (SIGTERM), another takes over, and
//! VENTANA_OUT still equals a replay of VENTANA_IN: nothing lost, twice or out of order.
//! A paused holder, resumed after the takeover, stores nothing. A rolling restart of three
//! instances, then a fourth joining while the others leave, loses nothing either.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use ventana_core::{Event, Policy};
use ventana_tests::nats::NatsServer;
use ventana_tests::service::{
    assert_outputs_replay_the_log, eventually, publish_live, spawn_ventanad_with,
};
use ventana_wire::subjects::{
    API_STATE, CONSUMER, IN_STREAM, INSTANCE_HEADER, LEASE_BUCKET, OUT_STREAM, OUT_SUBJECTS,
    OUTPUTS_FENCE,
};

/// One ventanad instance: its name, store and process.
struct Instance {
    name: &'static str,
    data: PathBuf,
    process: Option<Child>,
}

impl Instance {
    fn start(url: &str, dir: &Path, name: &'static str) -> Self {
        let mut instance = Self {
            name,
            data: dir.join(name),
            process: None,
        };
        instance.restart(url);
        instance
    }

    fn restart(&mut self, url: &str) {
        self.process = Some(spawn_ventanad_with(
            url,
            &self.data,
            &["--instance", self.name],
        ));
    }

    fn signal(&self, signal: &str) {
        let pid = self.process.as_ref().unwrap().id().to_string();
        let sent = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// kill -9, and reaped.
    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().unwrap();
            process.wait().unwrap();
        }
    }

    /// SIGTERM, and its exit status.
    fn stop(&mut self) -> bool {
        self.signal("-TERM");
        self.process.take().unwrap().wait().unwrap().success()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.process.is_some() {
            let _ = self.signal_quietly();
            self.kill();
        }
    }
}

impl Instance {
    fn signal_quietly(&self) -> std::io::Result<()> {
        // A paused process must be resumed before it can be reaped.
        let pid = self.process.as_ref().map(|p| p.id().to_string());
        if let Some(pid) = pid {
            std::process::Command::new("kill")
                .args(["-CONT", &pid])
                .status()?;
        }
        Ok(())
    }
}

/// The instance holding the lease now.
async fn holder(js: &async_nats::jetstream::Context) -> Option<String> {
    let bucket = js.get_key_value(LEASE_BUCKET).await.ok()?;
    let entry = bucket.entry("outputs").await.ok()??;
    (entry.operation == async_nats::jetstream::kv::Operation::Put)
        .then(|| String::from_utf8_lossy(&entry.value).into_owned())
}

/// The instance that published VENTANA_OUT's last output.
async fn last_publisher(js: &async_nats::jetstream::Context) -> Option<String> {
    let stream = js.get_stream(OUT_STREAM).await.ok()?;
    let last = stream
        .get_last_raw_message_by_subject(OUT_SUBJECTS)
        .await
        .ok()?;
    last.headers
        .get(INSTANCE_HEADER)
        .map(|v| v.as_str().to_owned())
}

/// The VENTANA_OUT sequence of the last output.
async fn last_output(js: &async_nats::jetstream::Context) -> u64 {
    match js.get_stream(OUT_STREAM).await {
        Ok(stream) => stream
            .get_last_raw_message_by_subject(OUT_SUBJECTS)
            .await
            .map_or(0, |m| m.sequence),
        Err(_) => 0,
    }
}

/// Live traffic: 500 conversations, stamped as they are published.
fn traffic(events: usize, seed: u64) -> Vec<Event> {
    ventana_tests::traffic::build_log(&ventana_tests::traffic::seeded_steps(seed, events, 500, 1))
}

/// Two instances, `a` and `b`, on their own nats-server, one holding the lease, and live
/// traffic flowing to them at 1 000 events/s.
struct Pair {
    nats: NatsServer,
    dir: tempfile::TempDir,
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    instances: [Instance; 2],
    publisher: tokio::task::JoinHandle<()>,
}

async fn pair(events: usize, seed: u64) -> Pair {
    let nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let instances = [
        Instance::start(&url, dir.path(), "a"),
        Instance::start(&url, dir.path(), "b"),
    ];
    eventually("a holder", Duration::from_secs(30), || async {
        holder(&js).await.is_some()
    })
    .await;
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move { publish_live(&js, &traffic(events, seed), 1_000).await })
    };
    Pair {
        nats,
        dir,
        client,
        js,
        instances,
        publisher,
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() - 1) * p / 100]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_publishing_instance_hands_the_outputs_over_without_loss() {
    let Pair {
        nats,
        dir: _dir,
        client,
        js,
        mut instances,
        publisher,
    } = pair(40_000, 3).await;
    let url = nats.url();
    let mut failovers = Vec::new();
    for _ in 0..10 {
        // Outputs flow from the holder; kill it without warning.
        let old = holder(&js).await.unwrap();
        eventually(
            "outputs from the holder",
            Duration::from_secs(30),
            || async { last_publisher(&js).await.as_deref() == Some(old.as_str()) },
        )
        .await;
        let killed = instances.iter_mut().find(|i| i.name == old).unwrap();
        killed.kill();
        let at = Instant::now();
        // The other instance answers the API meanwhile (a request the server had already
        // routed to the dead one goes unanswered: a client asks again).
        let question = json!({"conversation": {"channel": "whatsapp", "account": "acme", "channel_id": "1", "contact_id": "2"}});
        eventually("an answer from the other instance", Duration::from_secs(10), || async {
            let request = client.request(API_STATE, question.to_string().into());
            match tokio::time::timeout(Duration::from_secs(1), request).await {
                Ok(Ok(reply)) => {
                    serde_json::from_slice::<serde_json::Value>(&reply.payload).unwrap()["state"]
                        == "none"
                }
                _ => false,
            }
        })
        .await;
        eventually(
            "outputs from the new holder",
            Duration::from_secs(30),
            || async {
                last_publisher(&js)
                    .await
                    .is_some_and(|publisher| publisher != old)
            },
        )
        .await;
        failovers.push(at.elapsed());
        assert!(!publisher.is_finished(), "the traffic outlasts the kills");
        instances
            .iter_mut()
            .find(|i| i.name == old)
            .unwrap()
            .restart(&url);
    }
    publisher.await.unwrap();
    failovers.sort();
    println!(
        "failover (kill -9 of the holder to the first output of the next), {} kills: p50 {:.2} s, max {:.2} s",
        failovers.len(),
        percentile(&failovers, 50).as_secs_f64(),
        failovers.last().unwrap().as_secs_f64()
    );

    assert_outputs_replay_the_log(&js, &Policy::default(), Duration::from_secs(120)).await;
    for instance in &mut instances {
        assert!(instance.stop(), "{} stops cleanly", instance.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_stores_nothing_after_the_takeover_and_a_stop_hands_over() {
    let Pair {
        nats,
        dir: _dir,
        client: _client,
        js,
        mut instances,
        publisher,
    } = pair(20_000, 4).await;
    let url = nats.url();

    // Pause the holder past its lease; the other takes over and fences.
    let paused = holder(&js).await.unwrap();
    eventually(
        "outputs from the holder",
        Duration::from_secs(30),
        || async { last_publisher(&js).await.as_deref() == Some(paused.as_str()) },
    )
    .await;
    let index = instances.iter().position(|i| i.name == paused).unwrap();
    instances[index].signal("-STOP");
    eventually(
        "outputs from the other",
        Duration::from_secs(30),
        || async {
            last_publisher(&js)
                .await
                .is_some_and(|publisher| publisher != paused)
        },
    )
    .await;
    let fence = js
        .get_stream(OUT_STREAM)
        .await
        .unwrap()
        .get_last_raw_message_by_subject(OUTPUTS_FENCE)
        .await
        .unwrap()
        .sequence;
    // Resumed, it still holds outputs it has not published: the server refuses them.
    instances[index].signal("-CONT");

    // Then stop the new holder: the resumed one takes over at once.
    let other = 1 - index;
    eventually(
        "outputs past the resumption",
        Duration::from_secs(30),
        || async { last_output(&js).await > fence + 100 },
    )
    .await;
    let stopping = Instant::now();
    assert!(instances[other].stop(), "the holder stops cleanly");
    eventually("the handover", Duration::from_secs(30), || async {
        holder(&js).await.as_deref() == Some(paused.as_str())
    })
    .await;
    println!(
        "handover (SIGTERM of the holder to the next holding the lease): {:.2} s",
        stopping.elapsed().as_secs_f64()
    );
    let handed_over = js
        .get_stream(OUT_STREAM)
        .await
        .unwrap()
        .get_last_raw_message_by_subject(OUTPUTS_FENCE)
        .await
        .unwrap()
        .sequence;
    assert!(handed_over > fence);
    instances[other].restart(&url);
    publisher.await.unwrap();

    // Between the takeover's fence and the handover's, only the new holder stored outputs.
    let consumer = js
        .get_stream(OUT_STREAM)
        .await
        .unwrap()
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: fence + 1,
            },
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut checked = 0;
    while let Some(message) = messages.next().await {
        let message = message.unwrap();
        let sequence = message.info().unwrap().stream_sequence;
        if sequence >= handed_over {
            break;
        }
        let by = message
            .headers
            .as_ref()
            .and_then(|h| h.get(INSTANCE_HEADER))
            .map(|v| v.as_str().to_owned());
        assert_eq!(
            by.as_deref(),
            Some(instances[other].name),
            "sequence {sequence} stored from the fenced instance"
        );
        checked += 1;
    }
    assert!(checked > 100, "{checked} outputs checked");
    assert_outputs_replay_the_log(&js, &Policy::default(), Duration::from_secs(120)).await;
    for instance in &mut instances {
        assert!(instance.stop(), "{} stops cleanly", instance.name);
    }
}

/// Input events instance `name` has yet to be delivered (its consumer's pending count).
async fn pending_for(js: &async_nats::jetstream::Context, name: &str) -> Option<u64> {
    let stream = js.get_stream(IN_STREAM).await.ok()?;
    let mut consumer = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&format!(
            "{CONSUMER}-{name}"
        ))
        .await
        .ok()?;
    Some(consumer.info().await.ok()?.num_pending)
}

/// Waits until instance `name` is within a second of traffic of the log's end.
async fn near_the_end(js: &async_nats::jetstream::Context, name: &str) {
    eventually(
        &format!("{name} catching up with the log"),
        Duration::from_secs(60),
        || async { pending_for(js, name).await.is_some_and(|p| p < 1_000) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_and_a_fourth_instance_joining_lose_nothing() {
    let Pair {
        nats,
        dir,
        client: _client,
        js,
        instances,
        publisher,
    } = pair(50_000, 5).await;
    let url = nats.url();
    let [a, b] = instances;
    let mut instances = vec![a, b, Instance::start(&url, dir.path(), "c")];
    near_the_end(&js, "c").await;

    // Each instance in turn stopped, started again and caught up before the next, with
    // outputs flowing all along.
    for instance in &mut instances {
        let before = last_output(&js).await;
        assert!(instance.stop(), "{} stops cleanly", instance.name);
        instance.restart(&url);
        near_the_end(&js, instance.name).await;
        eventually(
            "outputs after the restart",
            Duration::from_secs(30),
            || async { last_output(&js).await > before + 100 },
        )
        .await;
    }
    assert!(
        !publisher.is_finished(),
        "the traffic outlasts the restarts"
    );

    // A fourth joins under traffic; then the first three leave and it carries on alone.
    instances.push(Instance::start(&url, dir.path(), "d"));
    near_the_end(&js, "d").await;
    for instance in &mut instances[..3] {
        assert!(instance.stop(), "{} stops cleanly", instance.name);
    }
    eventually("outputs from d", Duration::from_secs(30), || async {
        last_publisher(&js).await.as_deref() == Some("d")
    })
    .await;
    // Back, they catch up (a stopped instance's consumer keeps its place in the log).
    for instance in &mut instances[..3] {
        instance.restart(&url);
    }
    publisher.await.unwrap();
    assert_outputs_replay_the_log(&js, &Policy::default(), Duration::from_secs(120)).await;
    for instance in &mut instances {
        assert!(instance.stop(), "{} stops cleanly", instance.name);
    }
}
