//! `ventana status`: what runs and how far behind it is. The ventanad instances that answer
//! the services framework (with their requests and errors), which one publishes (holds the
//! lease), what each has folded and has still to fold, the streams (messages, replicas,
//! leader, replicas not current), the partition count and the policy ventanad published. A
//! report for people, or `--json`.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{Value, json};
use ventana_bus::NatsOptions;
use ventana_wire::subjects::{
    CONSUMER, DLQ_STREAM, IN_STREAM, LEASE_BUCKET, OUT_PROTOBUF_STREAM, OUT_STREAM, SERVICE_NAME,
};

/// How long instances have to answer `$SRV.INFO` / `$SRV.STATS`: discovery has no count to
/// wait for, so it collects what answers in this time.
const DISCOVERY: Duration = Duration::from_millis(500);

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub nats: NatsOptions,
}

/// Every answer to `subject` within [`DISCOVERY`], as JSON.
async fn discover(client: &async_nats::Client, subject: &str) -> anyhow::Result<Vec<Value>> {
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(inbox.clone()).await?;
    client
        .publish_with_reply(subject.to_owned(), inbox, "".into())
        .await?;
    client.flush().await?;
    let mut found = Vec::new();
    let deadline = tokio::time::sleep(DISCOVERY);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            answer = answers.next() => match answer {
                Some(answer) => {
                    if let Ok(value) = serde_json::from_slice::<Value>(&answer.payload) {
                        found.push(value);
                    }
                }
                None => break,
            },
            () = &mut deadline => break,
        }
    }
    Ok(found)
}

/// The instances: id, version, partitions, and per endpoint requests and errors.
async fn instances(client: &async_nats::Client) -> anyhow::Result<Vec<Value>> {
    let infos = discover(client, &format!("$SRV.INFO.{SERVICE_NAME}")).await?;
    let stats = discover(client, &format!("$SRV.STATS.{SERVICE_NAME}")).await?;
    let mut instances: Vec<Value> = infos
        .iter()
        .map(|info| {
            let id = info["id"].as_str().unwrap_or_default();
            let stat = stats.iter().find(|s| s["id"] == id);
            let sum = |field: &str| -> u64 {
                stat.and_then(|s| s["endpoints"].as_array())
                    .map(|endpoints| endpoints.iter().filter_map(|e| e[field].as_u64()).sum())
                    .unwrap_or(0)
            };
            json!({
                "id": id,
                "instance": info["metadata"]["instance"],
                "owned_partitions": info["metadata"]["owned_partitions"],
                "version": info["version"],
                "started": stat.map_or(Value::Null, |s| s["started"].clone()),
                "requests": sum("num_requests"),
                "errors": sum("num_errors"),
            })
        })
        .collect();
    instances.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Ok(instances)
}

/// One stream: messages, bytes, sequences, replicas, leader and replicas not current; null
/// when it does not exist.
async fn stream(js: &jetstream::Context, name: &str) -> anyhow::Result<Value> {
    let Ok(mut stream) = js.get_stream(name).await else {
        return Ok(Value::Null);
    };
    let info = stream.info().await?;
    let cluster = info.cluster.as_ref();
    let behind: Vec<Value> = cluster
        .map(|c| {
            c.replicas
                .iter()
                .filter(|r| !r.current || r.offline)
                .map(|r| json!({"name": r.name, "offline": r.offline, "lag": r.lag}))
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({
        "name": name,
        "messages": info.state.messages,
        "bytes": info.state.bytes,
        "first_sequence": info.state.first_sequence,
        "last_sequence": info.state.last_sequence,
        "replicas": info.config.num_replicas,
        // A single node leads everything: only a cluster's leader says something.
        "leader": cluster.filter(|c| c.name.is_some()).and_then(|c| c.leader.clone()),
        "replicas_behind": behind,
    }))
}

/// The ventanad instances' consumers of VENTANA_IN: what each has folded and what waits.
async fn consumers(js: &jetstream::Context) -> anyhow::Result<Vec<Value>> {
    use futures::TryStreamExt;
    let Ok(stream) = js.get_stream(IN_STREAM).await else {
        return Ok(Vec::new());
    };
    let prefix = format!("{CONSUMER}-");
    let mut found: Vec<Value> = stream
        .consumers()
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .filter_map(|info| {
            let instance = info.name.strip_prefix(&prefix)?.to_owned();
            Some(json!({
                "instance": instance,
                "pending": info.num_pending,
                "in_flight": info.num_ack_pending,
                "folded_through": info.ack_floor.stream_sequence,
            }))
        })
        .collect();
    found.sort_by(|a, b| a["instance"].as_str().cmp(&b["instance"].as_str()));
    Ok(found)
}

/// Which instance publishes each partition's outputs (`null` for a partition nobody holds
/// now), in partition order.
async fn partition_owners(
    js: &jetstream::Context,
    partitions: Option<u32>,
) -> anyhow::Result<Value> {
    let (Ok(bucket), Some(partitions)) = (js.get_key_value(LEASE_BUCKET).await, partitions) else {
        return Ok(Value::Array(Vec::new()));
    };
    let mut owners = Vec::new();
    for partition in 0..partitions {
        let owner = bucket
            .entry(ventana_wire::subjects::partition_lease(partition))
            .await?
            .filter(|e| e.operation == jetstream::kv::Operation::Put)
            .map(|e| String::from_utf8_lossy(&e.value).into_owned());
        owners.push(json!(owner));
    }
    Ok(Value::Array(owners))
}

/// Who publishes which partitions, one line per instance (partitions as ranges), then the
/// partitions nobody holds.
fn ownership_lines(owners: &Value) -> Vec<String> {
    let mut by_owner: std::collections::BTreeMap<&str, Vec<u32>> = Default::default();
    for (partition, owner) in owners.as_array().into_iter().flatten().enumerate() {
        let owner = owner.as_str().unwrap_or("");
        by_owner.entry(owner).or_default().push(partition as u32);
    }
    let mut lines = Vec::new();
    for (owner, partitions) in &by_owner {
        let ranges = ranges(partitions);
        if owner.is_empty() {
            lines.push(format!("publishing: nobody holds partitions {ranges}"));
        } else {
            lines.push(format!(
                "publishing: {owner} owns {} partition(s): {ranges}",
                partitions.len()
            ));
        }
    }
    if lines.is_empty() {
        lines.push("publishing: nobody (no instance has joined)".to_owned());
    }
    lines
}

/// `0-3 5 7-8`.
fn ranges(numbers: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut start = None;
    for (i, &n) in numbers.iter().enumerate() {
        let first = *start.get_or_insert(n);
        if numbers.get(i + 1) != Some(&(n + 1)) {
            out.push(if first == n {
                n.to_string()
            } else {
                format!("{first}-{n}")
            });
            start = None;
        }
    }
    out.join(" ")
}

/// The report, as JSON.
pub async fn report(nats: &NatsOptions) -> anyhow::Result<Value> {
    let client = ventana_bus::connect_once(nats, "ventana-status").await?;
    let js = jetstream::new(client.clone());
    // Discovery first (it waits): the streams and the consumer are then read together.
    let instances = instances(&client).await?;
    let mut streams = Vec::new();
    for name in [IN_STREAM, OUT_STREAM, DLQ_STREAM, OUT_PROTOBUF_STREAM] {
        streams.push(
            stream(&js, name)
                .await
                .with_context(|| format!("stream {name}"))?,
        );
    }
    let policy = ventana_bus::policy::active(&js).await?.map(|p| {
        json!({
            "revision": p.revision,
            "digest": ventana_bus::policy::digest(&p.text),
            "published": p.published.to_string(),
        })
    });
    let partitions = ventana_bus::streams::input_partitions(&js).await?;
    Ok(json!({
        "instances": instances,
        "partitions": partitions,
        "streams": streams,
        "consumers": consumers(&js).await?,
        "owners": partition_owners(&js, partitions).await?,
        "policy": policy,
    }))
}

/// `ventana status`: prints the report; false when no ventanad answered.
pub async fn status(args: &StatusArgs) -> anyhow::Result<bool> {
    let report = report(&args.nats).await?;
    let instances = report["instances"].as_array().map_or(0, Vec::len);
    if args.json {
        outln!("{report}")?;
        return Ok(instances > 0);
    }
    match instances {
        0 => outln!(
            "ventanad: none answered $SRV.INFO.{SERVICE_NAME} within {} ms",
            DISCOVERY.as_millis()
        )?,
        n => outln!("ventanad: {n} instance(s)")?,
    }
    for instance in report["instances"].as_array().into_iter().flatten() {
        outln!(
            "  {} ({})  version {}  started {}  {} requests, {} errors",
            text(&instance["instance"]),
            text(&instance["id"]),
            text(&instance["version"]),
            text(&instance["started"]),
            instance["requests"],
            instance["errors"]
        )?;
    }
    outln!(
        "partitions: {}",
        report["partitions"]
            .as_u64()
            .map_or("unknown (no VENTANA_IN)".to_owned(), |p| p.to_string())
    )?;
    for line in ownership_lines(&report["owners"]) {
        outln!("{line}")?;
    }
    let consumers = report["consumers"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if consumers.is_empty() {
        outln!("folding: nobody (no ventanad has started)")?;
    }
    for consumer in consumers {
        outln!(
            "folding: {} through sequence {}, {} waiting, {} in flight",
            text(&consumer["instance"]),
            consumer["folded_through"],
            consumer["pending"],
            consumer["in_flight"]
        )?;
    }
    match &report["policy"] {
        Value::Null => outln!("policy: none published")?,
        policy => outln!(
            "policy: revision {}, {} (published {})",
            policy["revision"],
            text(&policy["digest"]),
            text(&policy["published"])
        )?,
    }
    outln!("streams:")?;
    for (name, stream) in [IN_STREAM, OUT_STREAM, DLQ_STREAM, OUT_PROTOBUF_STREAM]
        .iter()
        .zip(report["streams"].as_array().into_iter().flatten())
    {
        if stream.is_null() {
            outln!("  {name:<22} absent")?;
            continue;
        }
        let behind = stream["replicas_behind"].as_array().map_or(0, Vec::len);
        outln!(
            "  {name:<22} {:>10} messages {:>14} bytes  sequences {}..{}  {} replica(s){}{}",
            number(&stream["messages"]),
            number(&stream["bytes"]),
            number(&stream["first_sequence"]),
            number(&stream["last_sequence"]),
            number(&stream["replicas"]),
            stream["leader"]
                .as_str()
                .map_or(String::new(), |l| format!(", leader {l}")),
            if behind > 0 {
                format!(", {behind} not current")
            } else {
                String::new()
            },
        )?;
    }
    Ok(instances > 0)
}

/// A JSON number (0 if it is none), for padding.
fn number(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

/// A JSON string's text, or the value as JSON.
fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_read_as_ranges_per_instance() {
        assert_eq!(ranges(&[0, 1, 2, 3, 5, 7, 8]), "0-3 5 7-8");
        assert_eq!(ranges(&[]), "");
        let owners = json!(["a", "a", "b", null, "a"]);
        assert_eq!(
            ownership_lines(&owners),
            [
                "publishing: nobody holds partitions 3",
                "publishing: a owns 3 partition(s): 0-1 4",
                "publishing: b owns 1 partition(s): 2",
            ]
        );
    }
}
