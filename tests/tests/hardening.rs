//! Hostile input against ventanad on a real nats-server and a real sled: poison messages,
//! ids that could break a header, a DLQ that refuses, requests that could never be decided.

use std::time::Duration;

use serde_json::{Value, json};
use ventana_bus::client::{publish_events, read_stream};
use ventana_bus::now;
use ventana_core::{Event, Policy};
use ventana_tests::nats::NatsServer;
use ventana_tests::service::{
    Live, api_request, caught_up, eventually, live, outputs_len, published_outputs, settle,
    stream_len,
};
use ventana_tests::traffic::{build_log, seeded_steps, stamp_live};
use ventana_wire::subjects::{self, API_SEND, DLQ_STREAM, IN_STREAM};

const CONVERSATION: &str =
    r#"{"channel":"whatsapp","account":"a","channel_id":"b","contact_id":"c"}"#;

/// The input subject of [`CONVERSATION`].
fn subject() -> String {
    let key = ventana_wire::json::parse_conversation(&serde_json::from_str(CONVERSATION).unwrap())
        .unwrap();
    subjects::input_subject(&key, 16)
}

const OCCURRED_AT: &str = "2026-03-02T10:00:00Z";

/// A customer message with its `id` (JSON) and extra `fields` (a JSON object's inside).
fn event_text(id: &str, fields: &str) -> String {
    format!(
        r#"{{"id":{id},"type":"customer_message","occurred_at":"{OCCURRED_AT}","conversation":{CONVERSATION}{fields}}}"#
    )
}

/// `count` valid events of other conversations, occurring now, with ids of their own (a
/// `seed` gives the same events every time, no other seed's ids).
fn valid_traffic(count: usize, seed: u64) -> Vec<Event> {
    let at = now();
    build_log(&seeded_steps(seed, count, 20, 1))
        .into_iter()
        .map(|e| stamp_live(e, at, &format!("s{seed}")))
        .collect()
}

/// Publishes [`valid_traffic`] after whatever came before, and waits until ventanad has
/// folded everything: nothing before it stopped the pipeline.
async fn fold_valid_traffic(
    js: &async_nats::jetstream::Context,
    count: usize,
    seed: u64,
) -> Vec<Event> {
    let valid = valid_traffic(count, seed);
    publish_events(js, &valid, 16).await.unwrap();
    eventually(
        "ventanad to fold everything",
        Duration::from_secs(30),
        || caught_up(js),
    )
    .await;
    valid
}

async fn publish_raw(js: &async_nats::jetstream::Context, payloads: Vec<Vec<u8>>) -> Vec<u64> {
    let mut sequences = Vec::new();
    for payload in payloads {
        let ack = js.publish(subject(), payload.into()).await.unwrap();
        sequences.push(ack.await.unwrap().sequence);
    }
    sequences
}

/// Every DLQ copy with its headers, in order.
async fn dlq_copies(
    js: &async_nats::jetstream::Context,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let stream = js.get_stream(DLQ_STREAM).await.unwrap();
    let count = read_stream(js, DLQ_STREAM, None).await.unwrap();
    let mut copies = Vec::new();
    for message in count {
        copies.push(stream.get_raw_message(message.sequence).await.unwrap());
    }
    copies
}

fn header<'a>(message: &'a async_nats::jetstream::message::StreamMessage, name: &str) -> &'a str {
    message
        .headers
        .get(name)
        .map(|v| v.as_str())
        .unwrap_or_else(|| panic!("no header {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dlq_and_never_stop_the_pipeline() {
    let Live {
        nats: _nats,
        dir: _dir,
        service,
        client: _client,
        js,
    } = live(None).await;

    let secret = "SECRET-BODY: my card is 4111";
    let poison = vec![
        // Just under the server's payload limit: a whole copy plus headers would not fit.
        vec![b'x'; 1_048_511],
        // A type whose escaped text alone would be a 120 KB header.
        event_text(r#""z""#, "")
            .replace("customer_message", &"\u{200b}".repeat(20_000))
            .into_bytes(),
        // Text where an instant, a number, a channel or a tag belongs.
        event_text(r#""s1""#, "")
            .replace(OCCURRED_AT, secret)
            .into_bytes(),
        format!(
            r#"{{"id":"s2","type":"delivery_status","occurred_at":"{OCCURRED_AT}","conversation":{CONVERSATION},"message_id":"m","status":"failed","error":{{"code":"{secret}"}}}}"#
        )
        .into_bytes(),
        event_text(r#""s3""#, "")
            .replace("whatsapp", secret)
            .into_bytes(),
        // An id that would end the Nats-Msg-Id header early, published past ventana's tools.
        event_text(r#""m1\r\nX: 1""#, "").into_bytes(),
        // The service's own tick ids are reserved.
        event_text(r#""tick:x""#, "").into_bytes(),
        // A tick with the id of a later deadline would suppress that deadline's own tick.
        format!(
            r#"{{"id":"tick:{}:2030-01-01T00:00:00Z","type":"tick","at":"{OCCURRED_AT}","conversation":{CONVERSATION}}}"#,
            subject().rsplit('.').next().unwrap()
        )
        .into_bytes(),
    ];
    let reasons = [
        "oversize",
        "unknown_type",
        "invalid_field",
        "undecodable",
        "invalid_field",
        "invalid_field",
        "invalid_field",
        "invalid_field",
    ];
    let sequences = publish_raw(&js, poison).await;
    // Output field names in an input event are ignored like any unknown field.
    let reused = event_text(
        r#""reuses-output-names""#,
        r#","session":"x","detail":"y","reason":1,"caused_by":[],"customer_waiting":"no""#,
    );
    publish_raw(&js, vec![reused.into_bytes()]).await;
    let valid = fold_valid_traffic(&js, 500, 7).await;

    let copies = dlq_copies(&js).await;
    let found: Vec<&str> = copies
        .iter()
        .map(|c| header(c, subjects::REASON_HEADER))
        .collect();
    assert_eq!(found, reasons);
    for (copy, sequence) in copies.iter().zip(&sequences) {
        assert_eq!(
            header(copy, subjects::DLQ_SEQUENCE_HEADER),
            sequence.to_string()
        );
        assert_eq!(header(copy, subjects::DLQ_STREAM_HEADER), IN_STREAM);
        for (name, values) in copy.headers.iter() {
            for value in values {
                assert!(
                    value.as_str().len() <= 256,
                    "{name}: {} bytes",
                    value.as_str().len()
                );
                assert!(!value.as_str().contains("SECRET"), "{name}: {value:?}");
                assert!(!value.as_str().contains('\u{200b}'), "{name}");
            }
        }
    }
    // The oversize input is kept by reference: its copy is empty and says its size.
    assert!(copies[0].payload.is_empty());
    assert_eq!(header(&copies[0], subjects::DLQ_SIZE_HEADER), "1048511");
    assert_eq!(
        copies[1].payload.len(),
        event_text(r#""z""#, "").len() - 16 + 60_000
    );
    // Errors name the field and the problem, never the value.
    assert_eq!(
        header(&copies[5], subjects::ERROR_HEADER),
        "invalid field `id`: holds a control character"
    );
    assert!(header(&copies[2], subjects::ERROR_HEADER).contains("`occurred_at`"));
    assert!(header(&copies[3], subjects::ERROR_HEADER).contains("`error.code`"));

    // Everything else was folded: exactly what a replay of the valid events gives.
    let settled = settle(&js, &Policy::default(), Duration::from_secs(30)).await;
    assert_eq!(settled.logged.len(), valid.len() + 1);
    assert!(settled.logged.iter().any(|e| e.id == "reuses-output-names"));
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_the_dlq_refuses_is_remembered_and_the_pipeline_goes_on() {
    let Live {
        nats: _nats,
        dir,
        service,
        client: _client,
        js,
    } = live(None).await;
    // No DLQ stream: every copy is refused, whole and by reference.
    js.delete_stream(DLQ_STREAM).await.unwrap();
    let sequences = publish_raw(&js, vec![b"not json".to_vec(), b"{}".to_vec()]).await;
    let valid = fold_valid_traffic(&js, 200, 8).await;
    let settled = settle(&js, &Policy::default(), Duration::from_secs(30)).await;
    assert_eq!(settled.logged.len(), valid.len());
    service.stop().await.unwrap();

    // The last of the service's tasks let go of sled's lock a moment after it stopped.
    let data = dir.path().join("data");
    let mut store = None;
    eventually("the store to be free", Duration::from_secs(10), || {
        store = ventana_store::Store::open(&data, 1 << 20).ok();
        std::future::ready(store.is_some())
    })
    .await;
    let store = store.unwrap();
    assert_eq!(
        store.dlq_refused().unwrap(),
        vec![
            (sequences[0], "undecodable".to_owned()),
            (sequences[1], "missing_field".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_could_break_a_header_are_refused_at_every_entry_point() {
    let Live {
        nats: _nats,
        dir: _dir,
        service,
        client,
        js,
    } = live(None).await;
    let conversation: Value = serde_json::from_str(CONVERSATION).unwrap();
    let long = "m".repeat(600 * 1024);
    let cases = [
        (json!("m1\r\nX: 1"), "control character"),
        (json!("m1\n"), "control character"),
        (json!(format!("tick:{}:{}", "a".repeat(26), now())), "tick:"),
        (json!(long), "at most 512"),
        (json!(""), "empty"),
    ];
    for (id, problem) in cases {
        let reply = api_request(
            &client,
            API_SEND,
            json!({"id": id, "conversation": conversation, "sender": "agent", "kind": "message"}),
        )
        .await;
        assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains(problem), "{message}");
        assert!(
            message.len() < 200,
            "the id is not echoed: {} bytes",
            message.len()
        );
    }
    // An echo is a report, not a request: refused at once rather than awaited.
    let reply = api_request(
        &client,
        API_SEND,
        json!({"id": "e1", "conversation": conversation, "sender": "agent", "kind": "message", "origin": "echo"}),
    )
    .await;
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    // ventana's own publisher refuses before building a header.
    let mut events = valid_traffic(3, 9);
    events[2].id = "m2\r\nNats-Msg-Id: other".into();
    let refused = publish_events(&js, &events, 16).await.unwrap_err();
    assert!(
        format!("{refused:#}").contains("event 3 of 3"),
        "{refused:#}"
    );
    assert_eq!(stream_len(&js, IN_STREAM).await, 0, "nothing was logged");
    service.stop().await.unwrap();
}

/// Every output on VENTANA_OUT that ventanad wrote (not another publisher's `foreign`).
async fn ventanads_outputs(js: &async_nats::jetstream::Context) -> Vec<String> {
    published_outputs(js)
        .await
        .into_iter()
        .filter(|o| o != FOREIGN)
        .collect()
}

const FOREIGN: &str = "foreign";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_publisher_on_the_output_subjects_loses_no_output() {
    let Live {
        nats,
        dir: _dir,
        service,
        client: _client,
        js,
    } = live(None).await;
    // Someone else publishes to ventana.out.> while outputs flow.
    let url = nats.url();
    let foreign = tokio::spawn(async move {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        for i in 0..300 {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("foreign-{i}").as_str());
            js.publish_with_headers("ventana.out.state_changed.x", headers, FOREIGN.into())
                .await
                .unwrap()
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let events = valid_traffic(20_000, 10);
    for chunk in events.chunks(500) {
        publish_events(&js, chunk, 16).await.unwrap();
    }
    foreign.await.unwrap();
    let settled = settle(&js, &Policy::default(), Duration::from_secs(60)).await;
    eventually(
        "every output of ventanad",
        Duration::from_secs(30),
        || async { ventanads_outputs(&js).await.len() >= settled.outputs.len() },
    )
    .await;
    assert_eq!(outputs_len(&js).await as usize, settled.outputs.len() + 300);
    let published = ventanads_outputs(&js).await;
    let differing = settled
        .outputs
        .iter()
        .zip(&published)
        .position(|(a, b)| a != b);
    assert_eq!(differing, None, "first difference at output {differing:?}");
    assert_eq!(published.len(), settled.outputs.len());
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_left_by_a_crash_is_published_once_while_new_outputs_flow() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let ventanad = Ventanad::running(&nats, &js, &data, &[]).await;
    publish_events(&js, &valid_traffic(1_000, 11), 16)
        .await
        .unwrap();
    settle(&js, &Policy::default(), Duration::from_secs(30)).await;

    // VENTANA_OUT refuses every publish: outputs pile up in the outbox.
    let mut out = js.get_stream(subjects::OUT_STREAM).await.unwrap();
    let mut refusing = out.info().await.unwrap().config.clone();
    refusing.max_messages = out.info().await.unwrap().state.messages as i64;
    refusing.discard = async_nats::jetstream::stream::DiscardPolicy::New;
    js.update_stream(refusing).await.unwrap();
    publish_events(&js, &valid_traffic(3_000, 12), 16)
        .await
        .unwrap();
    eventually(
        "ventanad to fold while outputs wait",
        Duration::from_secs(30),
        || caught_up(&js),
    )
    .await;
    ventanad.kill();
    // A backlog arrives while it is down: at restart the consumer commits new rows while the
    // outbox left behind is still being published.
    publish_events(&js, &valid_traffic(20_000, 13), 16)
        .await
        .unwrap();
    let ventanad = Ventanad::start(&nats, &data, &[]); // declares VENTANA_OUT unlimited again
    let settled = settle(&js, &Policy::default(), Duration::from_secs(60)).await;
    let published = published_outputs(&js).await;
    assert_eq!(
        published.len(),
        settled.outputs.len(),
        "each output exactly once"
    );
    let differing = settled
        .outputs
        .iter()
        .zip(&published)
        .position(|(a, b)| a != b);
    assert_eq!(differing, None, "first difference at output {differing:?}");
    ventanad.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_pages_fit_in_a_reply_however_long_the_keys() {
    let Live {
        nats: _nats,
        dir: _dir,
        service,
        client,
        js,
    } = live(None).await;
    // 1 000 conversations with 500-byte key parts, each with an open window: a page of all
    // of them would be 1.6 MB, over the 1 MiB a NATS reply may be.
    let long = |n: usize, part: &str| format!("{part}{n:04}{}", "k".repeat(492));
    let events: Vec<Event> = (0..1_000)
        .map(|n| {
            let text = format!(
                r#"{{"id":"c{n}","type":"customer_message","occurred_at":"{}","conversation":{{"channel":"whatsapp","account":"{}","channel_id":"{}","contact_id":"{}"}}}}"#,
                now(),
                long(n, "a"),
                long(n, "b"),
                long(n, "c")
            );
            ventana_wire::parse_event(&text).unwrap()
        })
        .collect();
    publish_events(&js, &events, 16).await.unwrap();
    eventually("ventanad to fold", Duration::from_secs(30), || {
        caught_up(&js)
    })
    .await;

    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = Value::Null;
    let mut pages = 0;
    loop {
        let mut request = json!({"within": "25h", "limit": 1000});
        if !cursor.is_null() {
            request["cursor"] = cursor.clone();
        }
        let reply = client
            .request(subjects::API_EXPIRING, request.to_string().into())
            .await
            .unwrap();
        assert!(
            reply.payload.len() <= 512 * 1024,
            "{} bytes",
            reply.payload.len()
        );
        let page: Value = serde_json::from_slice(&reply.payload).unwrap();
        let conversations = page["conversations"].as_array().unwrap();
        for conversation in conversations {
            assert!(seen.insert(conversation["token"].as_str().unwrap().to_owned()));
        }
        pages += 1;
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(seen.len(), 1_000);
    assert!(pages >= 4, "{pages} pages");
    service.stop().await.unwrap();
}

/// The status code of `GET /healthz` on `address` (0: not listening yet).
async fn healthz(address: std::net::SocketAddr) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
        return 0;
    };
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_turns_503_while_outputs_cannot_be_published() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = ventana_tests::service::config(&nats.url(), &dir.path().join("data"), None);
    let http = config.http;
    let service = ventana_tests::service::start(config);
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    eventually(
        "ventanad to be healthy",
        Duration::from_secs(20),
        || async { healthz(http).await == 200 },
    )
    .await;

    publish_events(&js, &valid_traffic(100, 15), 16)
        .await
        .unwrap();
    settle(&js, &Policy::default(), Duration::from_secs(30)).await;
    // VENTANA_OUT refuses every publish: the outbox holds rows it cannot move.
    let mut out = js.get_stream(subjects::OUT_STREAM).await.unwrap();
    let normal = out.info().await.unwrap().config.clone();
    let mut refusing = normal.clone();
    refusing.max_messages = out.info().await.unwrap().state.messages as i64;
    refusing.discard = async_nats::jetstream::stream::DiscardPolicy::New;
    js.update_stream(refusing).await.unwrap();
    publish_events(&js, &valid_traffic(200, 14), 16)
        .await
        .unwrap();
    let stalled = std::time::Instant::now();
    eventually("/healthz to say 503", Duration::from_secs(30), || async {
        healthz(http).await == 503
    })
    .await;
    assert!(
        stalled.elapsed() < Duration::from_secs(20),
        "503 within seconds of the stall: {:?}",
        stalled.elapsed()
    );
    // The stream takes outputs again: everything is published, and it is healthy again.
    js.update_stream(normal).await.unwrap();
    let settled = settle(&js, &Policy::default(), Duration::from_secs(30)).await;
    assert_eq!(published_outputs(&js).await, settled.outputs);
    eventually(
        "/healthz to say 200 again",
        Duration::from_secs(10),
        || async { healthz(http).await == 200 },
    )
    .await;
    service.stop().await.unwrap();
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A ventanad process, killed if a test fails before stopping it.
struct Ventanad(std::process::Child);

impl Ventanad {
    fn start(nats: &NatsServer, data: &std::path::Path, extra: &[&str]) -> Self {
        Self(ventana_tests::service::spawn_ventanad_with(
            &nats.url(),
            data,
            extra,
        ))
    }

    /// Starts it and waits until it has declared its streams.
    async fn running(
        nats: &NatsServer,
        js: &async_nats::jetstream::Context,
        data: &std::path::Path,
        extra: &[&str],
    ) -> Self {
        let ventanad = Self::start(nats, data, extra);
        eventually("the streams", Duration::from_secs(20), || async {
            js.get_stream(subjects::OUT_STREAM).await.is_ok()
        })
        .await;
        ventanad
    }

    /// Stops it the way systemd does (SIGTERM) and waits for it.
    fn terminate(mut self) {
        std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(self.0.wait().unwrap().success());
    }

    /// kill -9.
    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Ventanad {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_rolled_back_behind_its_outputs_publishes_nothing_twice() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    // A duplicate window of a second: a re-publish is not dropped by the server after it.
    let window = ["--out-duplicate-window", "1s"];
    let ventanad = Ventanad::running(&nats, &js, &data, &window).await;
    publish_events(&js, &valid_traffic(1_000, 16), 16)
        .await
        .unwrap();
    settle(&js, &Policy::default(), Duration::from_secs(30)).await;
    ventanad.terminate();
    // The store as an OS crash could leave it: older than the outputs it published.
    let older = dir.path().join("older");
    copy_dir(&data, &older);
    let ventanad = Ventanad::start(&nats, &data, &window);
    publish_events(&js, &valid_traffic(2_000, 17), 16)
        .await
        .unwrap();
    let settled = settle(&js, &Policy::default(), Duration::from_secs(30)).await;
    ventanad.terminate();
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::rename(&older, &data).unwrap();

    // Folded again from the older checkpoint: the same outputs, none published twice (the
    // server's duplicate window is long past), and more traffic flows after them.
    let ventanad = Ventanad::start(&nats, &data, &window);
    publish_events(&js, &valid_traffic(500, 18), 16)
        .await
        .unwrap();
    let after = settle(&js, &Policy::default(), Duration::from_secs(30)).await;
    assert!(after.outputs.len() > settled.outputs.len());
    let published = published_outputs(&js).await;
    assert_eq!(published.len(), after.outputs.len(), "each output once");
    assert!(published == after.outputs, "in order");
    ventanad.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_the_stream_has_already_are_skipped_and_the_rest_go_once_in_order() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    ventana_bus::streams::declare_streams(&js, &Default::default())
        .await
        .unwrap();
    publish_events(&js, &valid_traffic(1_000, 19), 16)
        .await
        .unwrap();
    // What ventanad will publish, replayed from the log with the positions it gives: the
    // first outputs of three conversations reach VENTANA_OUT first from elsewhere (a copy
    // restored by hand, say), with their ids.
    let mut fold = ventana_notifier::Fold::new(Policy::default());
    let mut copied = Vec::new();
    for message in read_stream(&js, IN_STREAM, None).await.unwrap() {
        let event = ventana_bus::client::logged_event(&message, Some(16)).unwrap();
        let mut outputs = Vec::new();
        let _ = fold.apply(&event, &mut outputs);
        for (index, output) in outputs.iter().enumerate() {
            let token = event.conversation.token();
            if copied.len() < 3 && !copied.iter().any(|(t, _, _, _)| *t == token) {
                let position = (message.sequence << 16) | index as u64;
                copied.push((token, position, output.id.clone(), output.clone()));
            }
        }
    }
    assert_eq!(copied.len(), 3);
    for (token, position, id, output) in &copied {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(subjects::MSG_ID, id.as_str());
        headers.insert(subjects::POSITION_HEADER, position.to_string().as_str());
        js.publish_with_headers(
            subjects::output_subject(output.body.type_name(), *token),
            headers,
            ventana_wire::output_to_json(output).into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }

    // ventanad's batches holding them are refused for a duplicate; their rows go again one
    // at a time, and each copied one is recorded as stored by a mark alone.
    let ventanad = Ventanad::start(&nats, &dir.path().join("data"), &[]);
    let settled = settle(&js, &Policy::default(), Duration::from_secs(60)).await;
    assert_eq!(
        published_outputs(&js).await,
        settled.outputs,
        "each output once, every conversation's in order"
    );
    assert_eq!(ventana_tests::instances::marks_alone(&js).await, 3);
    ventanad.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_header_block_in_the_log_stops_neither_ventanad_nor_its_readers() {
    let Live {
        nats: _nats,
        dir: _dir,
        service,
        client: _client,
        js,
    } = live(None).await;
    let before = fold_valid_traffic(&js, 200, 20).await;
    // Published past ventana's tools by a client that does not check header values: a
    // header line without a colon, which no NATS client can read back.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "a\nb");
    let text = event_text(r#""raw-1""#, "");
    js.publish_with_headers(subject(), headers, text.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let after = valid_traffic(300, 21);
    publish_events(&js, &after, 16).await.unwrap();
    // Its delivery drops ventanad's connection; the pull request expires (30 s), the
    // consumer resets, finds the message unreadable, copies it to the DLQ and goes on.
    eventually("ventanad to fold past it", Duration::from_secs(90), || {
        caught_up(&js)
    })
    .await;
    let dlq = dlq_copies(&js).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(header(&dlq[0], subjects::REASON_HEADER), "undecodable");
    // Every reader of the log still reads all of it, and ventanad folded what a replay does.
    let settled = settle(&js, &Policy::default(), Duration::from_secs(60)).await;
    for event in before.iter().chain(&after) {
        assert!(
            settled.logged.iter().any(|l| l.id == event.id),
            "{}",
            event.id
        );
    }
    assert_eq!(published_outputs(&js).await, settled.outputs);
    service.stop().await.unwrap();
}
