//! One stable contact per WhatsApp customer, whether a payload names them by phone number
//! (`wa_id`), by business-scoped user id (BSUID), or both.
//!
//! Since 2026 Meta adds a BSUID to WhatsApp webhooks and leaves the phone number out for
//! customers who chose a username. The first contact a customer is seen under stays theirs,
//! per business phone number:
//! - a payload with both: the BSUID's contact if one is recorded; else the phone number's
//!   recorded contact, else the phone number itself (so conversations from before BSUIDs
//!   go on). Both ids are then recorded for it.
//! - a BSUID alone: its recorded contact, else the BSUID itself (recorded).
//! - a phone number alone: its recorded contact, else the phone number.
//!
//! Records live in the JetStream key-value bucket `VENTANA_META_CONTACTS` (no expiry), are
//! created only if absent (so concurrent adapters agree on the first), and never change,
//! which makes them safe to cache in memory; an absence is believed for a minute. Keys are
//! SHA-256 digests, never the ids.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, kv};
use sha2::{Digest, Sha256};

use crate::normalise::WhatsAppCustomer;

/// The key-value bucket of WhatsApp contacts.
pub const CONTACTS_BUCKET: &str = "VENTANA_META_CONTACTS";

/// Records kept in memory before the cache starts over (they are re-read from the bucket).
const CACHE_LIMIT: usize = 200_000;

/// How long "no record" is believed: another adapter may record one meanwhile (a phone
/// number seen alone, then with a BSUID first seen alone elsewhere).
const ABSENCE_MEMORY: Duration = Duration::from_secs(60);

pub(crate) struct Contacts {
    bucket: kv::Store,
    /// Records (which never change), and absences with the time they were seen.
    cache: Mutex<HashMap<String, Cached>>,
}

#[derive(Clone)]
enum Cached {
    Recorded(String),
    Absent(Instant),
}

impl std::fmt::Debug for Contacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contacts").finish_non_exhaustive()
    }
}

fn record_key(space: &str, business_phone: &str, id: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(business_phone.as_bytes());
    hash.update([0]);
    hash.update(id.as_bytes());
    format!(
        "{space}.{}",
        data_encoding::HEXLOWER.encode(&hash.finalize())
    )
}

impl Contacts {
    pub(crate) async fn open(js: &jetstream::Context, replicas: usize) -> anyhow::Result<Self> {
        let bucket = ventana_bus::streams::key_value_bucket(
            js,
            kv::Config {
                bucket: CONTACTS_BUCKET.into(),
                description: "ventana-meta: the contact of each WhatsApp customer (by BSUID and phone number digests)".into(),
                history: 1,
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        Ok(Self {
            bucket,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// What the cache knows of `key`: `Some(Some(contact))`, `Some(None)` (recently absent),
    /// or `None` (ask the bucket).
    fn cached(&self, key: &str) -> Option<Option<String>> {
        match self.cache.lock().expect("not poisoned").get(key)? {
            Cached::Recorded(contact) => Some(Some(contact.clone())),
            Cached::Absent(seen) if seen.elapsed() < ABSENCE_MEMORY => Some(None),
            Cached::Absent(_) => None,
        }
    }

    fn remember(&self, key: String, entry: Cached) {
        let mut cache = self.cache.lock().expect("not poisoned");
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, entry);
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        if let Some(known) = self.cached(key) {
            return Ok(known);
        }
        let Some(value) = self.bucket.get(key).await? else {
            self.remember(key.to_owned(), Cached::Absent(Instant::now()));
            return Ok(None);
        };
        let contact = String::from_utf8(value.to_vec()).context("a contact record")?;
        self.remember(key.to_owned(), Cached::Recorded(contact.clone()));
        Ok(Some(contact))
    }

    /// Records `contact` under `key` unless something is recorded there; the recorded one.
    async fn claim(&self, key: String, contact: &str) -> anyhow::Result<String> {
        let recorded = match self
            .bucket
            .create(&key, contact.to_owned().into_bytes().into())
            .await
        {
            Ok(_) => contact.to_owned(),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                let value = self.bucket.get(&key).await?;
                let value = value.context("a contact record vanished")?;
                String::from_utf8(value.to_vec()).context("a contact record")?
            }
            Err(error) => return Err(error.into()),
        };
        self.remember(key, Cached::Recorded(recorded.clone()));
        Ok(recorded)
    }

    /// The stable contact of `customer` on the business phone number `business_phone`.
    pub(crate) async fn resolve(
        &self,
        business_phone: &str,
        customer: &WhatsAppCustomer,
    ) -> anyhow::Result<Option<String>> {
        let phone_key = |phone: &str| record_key("phone", business_phone, phone);
        match (&customer.phone, &customer.user_id) {
            (None, None) => Ok(None),
            (Some(phone), None) => Ok(Some(
                self.get(&phone_key(phone))
                    .await?
                    .unwrap_or_else(|| phone.clone()),
            )),
            (phone, Some(user_id)) => {
                let user_key = record_key("user", business_phone, user_id);
                let contact = match self.get(&user_key).await? {
                    Some(contact) => contact,
                    None => {
                        let first = match phone {
                            Some(phone) => self
                                .get(&phone_key(phone))
                                .await?
                                .unwrap_or_else(|| phone.clone()),
                            None => user_id.clone(),
                        };
                        self.claim(user_key, &first).await?
                    }
                };
                if let Some(phone) = phone {
                    let key = phone_key(phone);
                    if !matches!(self.cached(&key), Some(Some(_))) {
                        self.claim(key, &contact).await?;
                    }
                }
                Ok(Some(contact))
            }
        }
    }
}
