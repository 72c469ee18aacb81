//! The policy ventanad decides with, published for the tools: `explain`, `replay
//! --from-stream` and `what-if` read the same windows ventanad used unless told otherwise.
//!
//! ventanad puts its policy file's text (empty: the defaults) under `active` in the
//! key-value bucket `VENTANA_POLICY` as it starts; every start is a revision, so the
//! bucket's history says which policy ran when.

use anyhow::Context;
use async_nats::jetstream::{self, kv};
use sha2::{Digest, Sha256};
use ventana_core::{Policy, Timestamp};

/// The bucket of ventanad's policy.
pub const POLICY_BUCKET: &str = "VENTANA_POLICY";

/// The key of the policy ventanad runs with.
const ACTIVE: &str = "active";

/// Policy changes kept.
const HISTORY: i64 = 16;

/// The policy ventanad published.
#[derive(Clone, Debug)]
pub struct Published {
    /// The policy file's text; empty for the defaults.
    pub text: String,
    /// The policy, parsed.
    pub policy: Policy,
    /// The bucket revision (one per ventanad start).
    pub revision: u64,
    /// When ventanad published it.
    pub published: Timestamp,
}

impl Published {
    /// The first 12 hex digits of the text's SHA-256 (the defaults: `defaults`).
    pub fn digest(&self) -> String {
        digest(&self.text)
    }
}

/// The first 12 hex digits of the SHA-256 of a policy text; `defaults` for an empty one.
pub fn digest(text: &str) -> String {
    if text.is_empty() {
        return "defaults".to_owned();
    }
    data_encoding::HEXLOWER.encode(&Sha256::digest(text.as_bytes()))[..12].to_owned()
}

async fn bucket(js: &jetstream::Context, replicas: usize) -> anyhow::Result<kv::Store> {
    crate::streams::key_value_bucket(
        js,
        kv::Config {
            bucket: POLICY_BUCKET.into(),
            description:
                "ventanad: the policy it decides with (the file's text; empty: the defaults)"
                    .into(),
            history: HISTORY,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas.max(1),
            ..Default::default()
        },
    )
    .await
}

/// Publishes `text` as the policy ventanad runs with (the bucket, when this makes it, gets
/// `replicas` copies). On a cluster a bucket just made may not take writes for a moment
/// (its stream is still being placed): the put is tried for up to 10 s.
pub async fn publish(js: &jetstream::Context, text: &str, replicas: usize) -> anyhow::Result<u64> {
    let store = bucket(js, replicas).await?;
    let mut attempts = 0;
    loop {
        match store.put(ACTIVE, text.to_owned().into_bytes().into()).await {
            Ok(revision) => return Ok(revision),
            Err(_) if attempts < 20 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("cannot publish the policy to {POLICY_BUCKET}"));
            }
        }
    }
}

/// The policy ventanad last published, if any.
pub async fn active(js: &jetstream::Context) -> anyhow::Result<Option<Published>> {
    let Ok(store) = js.get_key_value(POLICY_BUCKET).await else {
        return Ok(None);
    };
    let Some(entry) = store.entry(ACTIVE).await? else {
        return Ok(None);
    };
    let text = String::from_utf8(entry.value.to_vec()).context("the published policy")?;
    let policy = ventana_wire::parse_policy(&text).context("the policy ventanad published")?;
    let nanos = entry.created.unix_timestamp_nanos();
    Ok(Some(Published {
        text,
        policy,
        revision: entry.revision,
        published: Timestamp::from_unix_nanos(i64::try_from(nanos).unwrap_or(i64::MAX)),
    }))
}
