//! Several ventanad instances on one NATS (the `ventanad` binary, each with its own store):
//! every one folds the log and answers the API; the 16 input partitions are shared out among
//! them, and each partition's outputs are published by its owner. When an owner is killed
//! (kill -9), paused (SIGSTOP) or stopped (SIGTERM), the others take its partitions over,
//! and VENTANA_OUT still equals a replay of VENTANA_IN: nothing lost, twice or out of order,
//! and nothing stored of a partition but by the instance whose fence was last. A rolling
//! restart of three instances, then a fourth joining (and getting its fair share) while the
//! others leave, loses nothing either.

use std::time::{Duration, Instant};

use serde_json::json;
use ventana_core::{Event, Policy};
use ventana_tests::instances::{
    Instance, PARTITIONS, assert_only_fence_holders_stored, last_on_fence, last_sequence,
    marks_alone, near_the_end, outputs_from, owned_by, shared_fairly,
};
use ventana_tests::nats::NatsServer;
use ventana_tests::service::{assert_outputs_replay_the_log, eventually, publish_live};
use ventana_wire::subjects::API_STATE;

/// Live traffic: 500 conversations, stamped as they are published.
fn traffic(events: usize, seed: u64) -> Vec<Event> {
    ventana_tests::traffic::build_log(&ventana_tests::traffic::seeded_steps(seed, events, 500, 1))
}

/// Two instances, `a` and `b`, on their own nats-server, sharing the partitions, and live
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
        Instance::start(&url, dir.path(), "a", &[]),
        Instance::start(&url, dir.path(), "b", &[]),
    ];
    shared_fairly(&js, &["a", "b"]).await;
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
async fn killing_an_owner_hands_its_partitions_over_without_loss() {
    let Pair {
        nats: _nats,
        dir: _dir,
        client,
        js,
        mut instances,
        publisher,
    } = pair(100_000, 3).await;
    let mut failovers = Vec::new();
    for round in 0..10 {
        // Outputs flow from both; kill one without warning.
        let (victim, survivor) = if round % 2 == 0 {
            ("a", "b")
        } else {
            ("b", "a")
        };
        let partitions = owned_by(&js, victim).await;
        assert!(!partitions.is_empty(), "{victim} owns partitions");
        eventually("outputs from the victim", Duration::from_secs(30), || {
            outputs_from(&js, &partitions, victim)
        })
        .await;
        instances
            .iter_mut()
            .find(|i| i.name == victim)
            .unwrap()
            .kill();
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
            "outputs of the victim's partitions from the survivor",
            Duration::from_secs(30),
            || outputs_from(&js, &partitions, survivor),
        )
        .await;
        failovers.push(at.elapsed());
        eventually(
            "the survivor owning every partition",
            Duration::from_secs(10),
            || async { owned_by(&js, survivor).await.len() == PARTITIONS as usize },
        )
        .await;
        assert!(!publisher.is_finished(), "the traffic outlasts the kills");
        // Back, it catches up and takes its share again from the survivor.
        instances
            .iter_mut()
            .find(|i| i.name == victim)
            .unwrap()
            .restart();
        shared_fairly(&js, &["a", "b"]).await;
    }
    publisher.await.unwrap();
    failovers.sort();
    println!(
        "failover (kill -9 of an owner to the first output of its partitions from the other), {} kills: p50 {:.2} s, max {:.2} s",
        failovers.len(),
        percentile(&failovers, 50).as_secs_f64(),
        failovers.last().unwrap().as_secs_f64()
    );

    assert_outputs_replay_the_log(&js, &Policy::default(), Duration::from_secs(120)).await;
    let (checked, fences) = assert_only_fence_holders_stored(&js).await;
    assert!(
        fences >= 16 + 10 * 8,
        "{fences} fences: every partition taken, then taken over"
    );
    assert!(checked > 10_000, "{checked} outputs and marks checked");
    assert_eq!(marks_alone(&js).await, 0, "no output was sent twice");
    for instance in &mut instances {
        assert!(instance.stop(), "{} stops cleanly", instance.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_stores_nothing_after_the_takeover_and_a_stop_hands_over() {
    let Pair {
        nats: _nats,
        dir: _dir,
        client: _client,
        js,
        mut instances,
        publisher,
    } = pair(20_000, 4).await;

    // Pause an owner past its leases; the other takes its partitions over and fences them.
    let (paused, other) = (0, 1);
    let partitions = owned_by(&js, "a").await;
    eventually("outputs from a", Duration::from_secs(30), || {
        outputs_from(&js, &partitions, "a")
    })
    .await;
    instances[paused].signal("-STOP");
    eventually(
        "outputs of a's partitions from b",
        Duration::from_secs(30),
        || outputs_from(&js, &partitions, "b"),
    )
    .await;
    let fenced_at = last_sequence(&js).await;
    // Resumed, it still holds outputs it has not published: the server refuses them. It
    // then takes its share back, by handover.
    instances[paused].signal("-CONT");
    shared_fairly(&js, &["a", "b"]).await;
    eventually(
        "outputs past the resumption",
        Duration::from_secs(30),
        || async { last_sequence(&js).await > fenced_at + 100 },
    )
    .await;

    // Then stop b: a takes b's partitions at once.
    let handed = owned_by(&js, "b").await;
    let stopping = Instant::now();
    assert!(instances[other].stop(), "b stops cleanly");
    eventually("the handover", Duration::from_secs(30), || async {
        owned_by(&js, "a").await.len() == PARTITIONS as usize
    })
    .await;
    eventually(
        "a fencing b's partitions",
        Duration::from_secs(30),
        || async {
            for &partition in &handed {
                if last_on_fence(&js, partition)
                    .await
                    .is_none_or(|(_, by, _)| by != "a")
                {
                    return false;
                }
            }
            true
        },
    )
    .await;
    println!(
        "handover (SIGTERM of an owner to the other fencing its {} partitions): {:.2} s",
        handed.len(),
        stopping.elapsed().as_secs_f64()
    );
    instances[other].restart();
    publisher.await.unwrap();

    assert_outputs_replay_the_log(&js, &Policy::default(), Duration::from_secs(120)).await;
    let (checked, _) = assert_only_fence_holders_stored(&js).await;
    assert!(checked > 1_000, "{checked} outputs and marks checked");
    assert_eq!(marks_alone(&js).await, 0, "no output was sent twice");
    for instance in &mut instances {
        assert!(instance.stop(), "{} stops cleanly", instance.name);
    }
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
    let mut instances = vec![a, b, Instance::start(&url, dir.path(), "c", &[])];
    near_the_end(&js, "c").await;

    // Each instance in turn stopped, started again and caught up before the next, with
    // outputs flowing all along.
    shared_fairly(&js, &["a", "b", "c"]).await;
    for instance in &mut instances {
        let before = last_sequence(&js).await;
        assert!(instance.stop(), "{} stops cleanly", instance.name);
        instance.restart();
        near_the_end(&js, instance.name).await;
        shared_fairly(&js, &["a", "b", "c"]).await;
        eventually(
            "outputs after the restart",
            Duration::from_secs(30),
            || async { last_sequence(&js).await > before + 100 },
        )
        .await;
    }
    assert!(
        !publisher.is_finished(),
        "the traffic outlasts the restarts"
    );

    // A fourth joins under traffic and gets its share; then the first three leave and it
    // carries on alone.
    instances.push(Instance::start(&url, dir.path(), "d", &[]));
    near_the_end(&js, "d").await;
    shared_fairly(&js, &["a", "b", "c", "d"]).await;
    for instance in &mut instances[..3] {
        assert!(instance.stop(), "{} stops cleanly", instance.name);
    }
    let all: Vec<u32> = (0..PARTITIONS).collect();
    eventually(
        "d owning every partition",
        Duration::from_secs(30),
        || async { owned_by(&js, "d").await == all },
    )
    .await;
    eventually("outputs from d", Duration::from_secs(30), || {
        outputs_from(&js, &all, "d")
    })
    .await;
    // Back, they catch up (a stopped instance's consumer keeps its place in the log).
    for instance in &mut instances[..3] {
        instance.restart();
    }
    publisher.await.unwrap();
    assert_outputs_replay_the_log(&js, &Policy::default(), Duration::from_secs(120)).await;
    assert_only_fence_holders_stored(&js).await;
    assert_eq!(marks_alone(&js).await, 0, "no output was sent twice");
    for instance in &mut instances {
        assert!(instance.stop(), "{} stops cleanly", instance.name);
    }
}
