//! The live pipeline, measured in one run against one nats-server (targets in README "Performance"):
//!
//! (a) a bare pipe: a plain async-nats program that pull-consumes each event, publishes one
//!     output of the same size per event with pipelined acks, and acks its input;
//! (b) ventanad end to end on the same backlog: fold + sled commit per batch + every output
//!     acked on VENTANA_OUT; then b/a, and the CPU seconds ventanad and nats-server spent;
//! (c) `check` request-reply latency at 1 000 requests/s;
//! (d) restart time of ventanad with 1 M conversations in sled;
//! (e) ventanad's peak RSS.
//!
//! Run: `cargo bench -p ventana-tests --bench pipeline` (EVENTS=500000 by default).

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use ventana_bus::client::publish_events;
use ventana_bus::now;
use ventana_core::{Conversation, Event, Policy};
use ventana_notifier::Fold;
use ventana_store::{Commit, Indexed, Store};
use ventana_tests::bench::{cpu_seconds, peak_rss_mib, ticks_per_second};
use ventana_tests::nats::NatsServer;
use ventana_tests::service::{caught_up, outputs_len, spawn_ventanad_with};
use ventana_tests::traffic::key;
use ventana_wire::subjects::{API_CHECK, input_subject};
use ventana_wire::{event_to_json, parse_event};

async fn bare_pipe(js: &jetstream::Context, events: &[Event]) -> f64 {
    for (name, subjects) in [("BENCH_IN", "bench.in.>"), ("BENCH_OUT", "bench.out.>")] {
        js.create_or_update_stream(stream::Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    for chunk in events.chunks(5_000) {
        let mut acks = Vec::new();
        for event in chunk {
            let subject =
                input_subject(&event.conversation, 16).replacen("ventana.in", "bench.in", 1);
            acks.push(
                js.publish(subject, event_to_json(event).into())
                    .await
                    .unwrap(),
            );
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
    let consumer = js
        .get_stream("BENCH_IN")
        .await
        .unwrap()
        .create_consumer(pull::Config {
            durable_name: Some("bench".into()),
            ack_policy: jetstream::consumer::AckPolicy::All,
            max_ack_pending: 100_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let started = Instant::now();
    let mut chunks = consumer
        .stream()
        .max_messages_per_batch(1000)
        .messages()
        .await
        .unwrap()
        .ready_chunks(1000);
    let mut done = 0;
    while done < events.len() {
        let chunk = chunks.next().await.unwrap();
        let mut acks = Vec::with_capacity(chunk.len());
        let mut last = None;
        for message in chunk {
            let message = message.unwrap();
            acks.push(
                js.publish("bench.out.x", message.payload.clone())
                    .await
                    .unwrap(),
            );
            last = Some(message);
            done += 1;
        }
        for ack in acks {
            ack.await.unwrap();
        }
        last.unwrap().ack().await.unwrap();
    }
    events.len() as f64 / started.elapsed().as_secs_f64()
}

async fn wait_for<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !condition().await {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

async fn api_ready(client: &async_nats::Client) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(200),
            client.request("$SRV.PING.ventana".to_owned(), "".into())
        )
        .await,
        Ok(Ok(_))
    )
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; there is nothing to list here.
    }
    let count = ventana_tests::bench::env_count("EVENTS", 500_000);
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let events: Vec<Event> = ventana_tests::bench::backlog_stamped_now(9, count, 100_000);
    // The instant (d)'s conversations are written at.
    let at = now();
    println!(
        "backlog: {count} events over 100 000 conversations, {:.0} bytes each on average",
        events.iter().map(|e| event_to_json(e).len()).sum::<usize>() as f64 / count as f64
    );

    // (a)
    let bare = bare_pipe(&js, &events).await;
    println!("(a) bare pipe: {bare:.0} events/s");

    // (b) the same backlog, published before ventanad starts.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Declare the streams as ventanad would, then publish the backlog.
    ventana_bus::streams::declare_streams(&js, &Default::default())
        .await
        .unwrap();
    for chunk in events.chunks(5_000) {
        publish_events(&js, chunk, 16).await.unwrap();
    }
    let mut fold = Fold::new(Policy::default());
    let mut expected = Vec::new();
    for event in &events {
        let _ = fold.apply(event, &mut expected);
    }
    ventana_tests::service::ventanad_binary(); // built before the clock starts
    let ticks = ticks_per_second();
    let nats_pid = nats.pid().unwrap();
    let nats_before = cpu_seconds(nats_pid, ticks);
    let started = Instant::now();
    let mut ventanad = spawn_ventanad_with(&nats.url(), &data, &["--batch", "2000"]);
    assert!(
        expected.len() > count / 2,
        "the expected outputs were computed"
    );
    let finished = wait_for(Duration::from_secs(900), || async {
        caught_up(&js).await && outputs_len(&js).await >= expected.len() as u64
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(finished, "ventanad did not finish the backlog");
    let end_to_end = count as f64 / elapsed;
    println!(
        "(b) ventanad end to end: {end_to_end:.0} events/s ({} outputs, {elapsed:.1} s including start-up)",
        expected.len()
    );
    println!("    b/a = {:.2}", end_to_end / bare);
    // CPU time moves less than wall time with the machine's other load: the work itself.
    let ventanad_cpu = cpu_seconds(ventanad.id(), ticks);
    println!(
        "    CPU for (b): ventanad {ventanad_cpu:.1} s ({:.1} µs per event), nats-server {:.1} s",
        ventanad_cpu / count as f64 * 1e6,
        cpu_seconds(nats_pid, ticks) - nats_before
    );

    // (c) check at 1 000 requests/s for 5 s.
    let request = serde_json::json!({"conversation": {"channel": "whatsapp", "account": "acme", "channel_id": "page-0", "contact_id": "contact-0"}, "sender": "agent", "kind": "message"}).to_string();
    let mut pace = tokio::time::interval(Duration::from_millis(1));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut pending = Vec::with_capacity(5_000);
    for _ in 0..5_000 {
        pace.tick().await;
        let client = client.clone();
        let body = request.clone();
        pending.push(tokio::spawn(async move {
            let sent = Instant::now();
            let reply = client
                .request(API_CHECK.to_owned(), body.into())
                .await
                .unwrap();
            assert!(
                parse_event(&String::from_utf8_lossy(&reply.payload)).is_err(),
                "a decision, not an event"
            );
            sent.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(pending.len());
    for task in pending {
        latencies.push(task.await.unwrap());
    }
    latencies.sort();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "(c) check at 1 000 req/s: p50 {:?}, p99 {:?}, max {:?}",
        percentile(0.50),
        percentile(0.99),
        latencies.last().unwrap()
    );
    println!(
        "(e) ventanad peak RSS after (b) and (c): {:.0} MiB (sled cache 256 MiB)",
        peak_rss_mib(ventanad.id())
    );
    // (f) a restart after the run: stopped with SIGTERM (ventanad has sled snapshot its
    // store as it stops), then started again on the same store.
    let stopping = Instant::now();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &ventanad.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    assert!(ventanad.wait().unwrap().success(), "ventanad stops cleanly");
    let stopped = stopping.elapsed();
    let starting = Instant::now();
    let mut ventanad = spawn_ventanad_with(&nats.url(), &data, &["--batch", "2000"]);
    let ready = wait_for(Duration::from_secs(120), || api_ready(&client)).await;
    assert!(ready, "ventanad did not come up again");
    println!(
        "(f) restart after (b) and (c): stopped with SIGTERM in {:.2} s, ready again in {:.2} s",
        stopped.as_secs_f64(),
        starting.elapsed().as_secs_f64()
    );
    ventanad.kill().unwrap();
    ventanad.wait().unwrap();

    // (d) restart with 1 M conversations in sled.
    let big = dir.path().join("big");
    {
        let store = Store::open(&big, 64 << 20).unwrap();
        let policy = Policy::default();
        let customer = parse_event(&format!(
            r#"{{"id":"c","type":"customer_message","occurred_at":"{at}","conversation":{{"channel":"whatsapp","account":"acme","channel_id":"x","contact_id":"0"}}}}"#
        ))
        .unwrap();
        for start in (0..1_000_000u32).step_by(10_000) {
            let mut commit = Commit::new();
            for n in start..start + 10_000 {
                let mut event = customer.clone();
                event.conversation = key(n);
                let mut conversation = Conversation::new(event.conversation.clone());
                conversation.apply(&event, &policy, &mut Vec::new());
                commit.put_state(
                    &conversation,
                    Indexed::default(),
                    Indexed::of(&conversation, &policy),
                );
            }
            store.commit(commit).unwrap();
        }
        store.flush().unwrap();
        println!(
            "    store with 1 000 000 conversations: {:.0} MiB on disk",
            store.size_on_disk().unwrap() as f64 / 1048576.0
        );
    }
    ventana_tests::service::ventanad_binary();
    // sled 0.34 writes its page-table snapshot only when it opens a store, so the first start
    // after the million states were written replays all of sled's log (as a start after a
    // crash replays what was written since the previous start); a second start has the
    // snapshot the first one wrote.
    for (label, start) in [
        ("first start after the states were written", "d"),
        ("started again (kill -9 of the first)", "d'"),
    ] {
        let started = Instant::now();
        let mut restarted = spawn_ventanad_with(&nats.url(), &big, &[]);
        let ready = wait_for(Duration::from_secs(120), || api_ready(&client)).await;
        assert!(ready, "ventanad did not come up");
        println!(
            "({start}) restart with 1 000 000 conversations, {label}: ready (answering the API) in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        println!(
            "    ventanad peak RSS with 1 000 000 conversations: {:.0} MiB",
            peak_rss_mib(restarted.id())
        );
        restarted.kill().unwrap();
        restarted.wait().unwrap();
    }
}
