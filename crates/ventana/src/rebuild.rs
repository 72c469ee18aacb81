//! `ventana rebuild` and `ventana verify`: the sled projection from the log, offline.
//!
//! The projection is folded exactly as ventanad folds it (validate, then the core's `apply`,
//! event by event in log order) and written in large batches; only a bounded number of
//! conversations is kept in memory, the rest is read back from sled when it reappears.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustc_hash::FxHashMap;
use ventana_bus::NatsOptions;
use ventana_bus::client::Start;
use ventana_core::{Conversation, ConversationToken, Policy};
use ventana_store::{Indexed, Store};
use ventana_wire::subjects::IN_STREAM;

use crate::log::{LiveLog, Logged, valid};

/// Conversations kept in memory while rebuilding before they are written out.
const CACHED_CONVERSATIONS: usize = 200_000;

#[derive(Debug, clap::Args)]
pub struct RebuildArgs {
    /// The projection to build: replaced when the new one is complete (the old one is kept
    /// as DIR.before-rebuild-<unix seconds>).
    #[arg(long, env = "VENTANA_DATA", value_name = "DIR")]
    pub data: PathBuf,
    /// The policy ventanad runs with (TOML); the defaults apply without one.
    #[arg(long, env = "VENTANA_POLICY", value_name = "FILE.toml")]
    pub policy: Option<PathBuf>,
    /// sled's page cache, in MiB.
    #[arg(long, env = "VENTANA_CACHE_MB", default_value_t = 256)]
    pub cache_mb: u64,
    #[command(flatten)]
    pub nats: NatsOptions,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// ventanad's projection (ventanad stopped: sled locks its directory).
    #[arg(long, env = "VENTANA_DATA", value_name = "DIR")]
    pub data: PathBuf,
    /// The policy ventanad runs with (TOML); the defaults apply without one.
    #[arg(long, env = "VENTANA_POLICY", value_name = "FILE.toml")]
    pub policy: Option<PathBuf>,
    #[command(flatten)]
    pub nats: NatsOptions,
}

/// What a rebuild folded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Messages read from the log.
    pub messages: u64,
    /// Events folded (duplicates included).
    pub events: u64,
    /// Messages that are not valid events (ventanad copied them to the DLQ).
    pub invalid: u64,
    pub conversations: u64,
    /// The checkpoint written: the last sequence folded.
    pub checkpoint: u64,
}

/// Folds logged events into a projection as ventanad does.
struct Projector<'a> {
    store: &'a Store,
    policy: &'a Policy,
    /// Conversations touched since the last write, with their index entries as stored.
    cache: FxHashMap<ConversationToken, (Conversation, Indexed)>,
    rebuilt: Rebuilt,
}

impl<'a> Projector<'a> {
    fn new(store: &'a Store, policy: &'a Policy) -> Self {
        Self {
            store,
            policy,
            cache: FxHashMap::default(),
            rebuilt: Rebuilt::default(),
        }
    }

    fn fold(&mut self, logged: Logged) -> anyhow::Result<()> {
        let crate::log::Position::Sequence(sequence) = logged.position else {
            bail!("a projection is built from the stream");
        };
        self.rebuilt.messages += 1;
        self.rebuilt.checkpoint = sequence;
        let event = match valid(logged.event, self.policy) {
            Ok(event) => event,
            Err(_) => {
                self.rebuilt.invalid += 1;
                return Ok(());
            }
        };
        let token = event.conversation.token();
        let (conversation, _) = match self.cache.entry(token) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let conversation = match self.store.load(token)? {
                    Some(stored) => stored,
                    None => {
                        self.rebuilt.conversations += 1;
                        Conversation::new(event.conversation.clone())
                    }
                };
                let before = Indexed::of(&conversation, self.policy);
                entry.insert((conversation, before))
            }
        };
        let mut effects = Vec::new();
        conversation.apply(&event, self.policy, &mut effects);
        self.rebuilt.events += 1;
        if self.cache.len() >= CACHED_CONVERSATIONS {
            self.write()?;
        }
        Ok(())
    }

    /// Writes every cached conversation, then the checkpoint, and forgets them. Not atomic:
    /// the projection being built is used only once it is complete.
    fn write(&mut self) -> anyhow::Result<()> {
        let policy = self.policy;
        // In key order, so that sled appends to the leaf it wrote last instead of to any.
        let mut states: Vec<_> = self.cache.iter().collect();
        states.sort_unstable_by_key(|(token, _)| token.as_u128());
        self.store
            .put_states(states.into_iter().map(|(_, (conversation, before))| {
                (conversation, *before, Indexed::of(conversation, policy))
            }))?;
        self.store.set_checkpoint(self.rebuilt.checkpoint)?;
        self.cache.clear();
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<Rebuilt> {
        self.write()?;
        self.store.flush()?;
        Ok(self.rebuilt)
    }
}

/// Folds `log` into `store` (which should be empty), writing batches as it goes; `progress`
/// is told the sequence reached every few thousand messages.
pub fn project(
    store: &Store,
    policy: &Policy,
    log: impl Iterator<Item = anyhow::Result<Logged>>,
    mut progress: impl FnMut(&Rebuilt),
) -> anyhow::Result<Rebuilt> {
    let mut projector = Projector::new(store, policy);
    for logged in log {
        projector.fold(logged?)?;
        if projector.rebuilt.messages % 4096 == 0 {
            progress(&projector.rebuilt);
        }
    }
    projector.finish()
}

/// Opens an existing projection, explaining the usual reason it cannot be.
pub(crate) fn open_existing(dir: &Path, cache_mb: u64) -> anyhow::Result<Store> {
    // sled would create a store wherever it is pointed: a typo must not pass for an empty one.
    anyhow::ensure!(
        dir.join("db").is_file(),
        "no ventana store in {}: --data names ventanad's data directory",
        dir.display()
    );
    Store::open(dir, cache_mb << 20).with_context(|| {
        format!(
            "cannot open the projection in {} (is ventanad running on it? sled locks its directory)",
            dir.display()
        )
    })
}

/// A progress bar on a terminal; nothing otherwise.
fn progress_bar(total: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} events  {per_sec}  ETA {eta}  {msg}",
        )
        .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn rate(count: u64, elapsed: Duration) -> String {
    format!("{:.0}", count as f64 / elapsed.as_secs_f64().max(1e-9))
}

/// `ventana rebuild`.
pub fn rebuild(args: RebuildArgs) -> anyhow::Result<()> {
    let policy = crate::load_policy(args.policy.as_deref())?;
    if args.data.exists() {
        // Refuse while ventanad holds it; an incompatible layout is what rebuild is for.
        match Store::open(&args.data, 1 << 20) {
            Ok(_) | Err(ventana_store::StoreError::Incompatible { .. }) => {}
            Err(error) => {
                return Err(error).with_context(|| {
                    format!(
                        "cannot open {} (stop ventanad first: sled locks its directory)",
                        args.data.display()
                    )
                });
            }
        }
    }
    let building = sibling(&args.data, "rebuilding");
    if building.exists() {
        std::fs::remove_dir_all(&building)
            .with_context(|| format!("cannot remove {}", building.display()))?;
    }
    let log = LiveLog::connect(&args.nats, "ventana-rebuild")?;
    let total = log.block_on(async {
        let mut stream = log.js().get_stream(IN_STREAM).await?;
        anyhow::Ok(stream.info().await?.state.messages)
    })?;
    let started = Instant::now();
    let bar = progress_bar(total);
    let rebuilt = {
        let store = Store::open(&building, args.cache_mb << 20)
            .with_context(|| format!("cannot create {}", building.display()))?;
        project(&store, &policy, log.input_events(None, Start::First), |r| {
            bar.set_position(r.messages)
        })?
    };
    // sled writes the snapshot of its page table only when it opens a store: opened once
    // more here, the new projection does not make ventanad's first start replay its log.
    Store::snapshot(&building).with_context(|| format!("cannot reopen {}", building.display()))?;
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let mut kept = String::new();
    if args.data.exists() {
        let old = sibling(
            &args.data,
            &format!(
                "before-rebuild-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs()
            ),
        );
        std::fs::rename(&args.data, &old)
            .with_context(|| format!("cannot move {} aside", args.data.display()))?;
        kept = format!("; the old projection is in {}", old.display());
    }
    std::fs::rename(&building, &args.data)
        .with_context(|| format!("cannot move the new projection to {}", args.data.display()))?;
    crate::outln!(
        "rebuilt {}: {} events ({} invalid skipped) into {} conversations, checkpoint {}, in {:.1} s ({} events/s){kept}",
        args.data.display(),
        rebuilt.events,
        rebuilt.invalid,
        rebuilt.conversations,
        rebuilt.checkpoint,
        elapsed.as_secs_f64(),
        rate(rebuilt.messages, elapsed),
    )?;
    Ok(())
}

/// `DIR.<suffix>` beside `dir`.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    dir.with_file_name(name)
}

/// One conversation whose projection differs from the log's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub token: ConversationToken,
    /// The projection's state, described; `None` when it has none.
    pub projection: Option<String>,
    /// The log's.
    pub log: Option<String>,
}

fn describe(conversation: &Conversation, policy: &Policy) -> String {
    let snapshot = conversation.snapshot(policy);
    let view = snapshot.view;
    let window = match view.window_ends_at {
        Some(end) => format!(" ({} until {end})", view.window.as_str()),
        None => String::new(),
    };
    format!(
        "{}{window}, session {}, {} events, last {}",
        view.state.as_str(),
        view.session,
        snapshot.events,
        snapshot.last_event_id.as_deref().unwrap_or("-")
    )
}

/// Compares two projections conversation by conversation (both iterate in token order).
/// Returns how many conversations were compared and those that differ.
pub fn compare(
    projection: &Store,
    log: &Store,
    policy: &Policy,
) -> anyhow::Result<(u64, Vec<Difference>)> {
    use std::cmp::Ordering;
    let mut differences = Vec::new();
    let mut compared = 0;
    let mut left = projection.conversations();
    let mut right = log.conversations();
    let mut a = left.next().transpose()?;
    let mut b = right.next().transpose()?;
    loop {
        let order = match (&a, &b) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => x.key().token().as_u128().cmp(&y.key().token().as_u128()),
        };
        compared += 1;
        let describe = |c: &Option<Conversation>| c.as_ref().map(|c| describe(c, policy));
        match order {
            Ordering::Less => {
                differences.push(Difference {
                    token: a.as_ref().expect("compared").key().token(),
                    projection: describe(&a),
                    log: None,
                });
                a = left.next().transpose()?;
            }
            Ordering::Greater => {
                differences.push(Difference {
                    token: b.as_ref().expect("compared").key().token(),
                    projection: None,
                    log: describe(&b),
                });
                b = right.next().transpose()?;
            }
            Ordering::Equal => {
                if a != b {
                    differences.push(Difference {
                        token: a.as_ref().expect("compared").key().token(),
                        projection: describe(&a),
                        log: describe(&b),
                    });
                }
                a = left.next().transpose()?;
                b = right.next().transpose()?;
            }
        }
    }
    Ok((compared, differences))
}

/// `ventana verify`: true when the projection equals a replay of the log.
pub fn verify(args: VerifyArgs) -> anyhow::Result<bool> {
    let policy = crate::load_policy(args.policy.as_deref())?;
    let projection = open_existing(&args.data, 64)?;
    let checkpoint = projection.checkpoint()?;
    let log = LiveLog::connect(&args.nats, "ventana-verify")?;
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    let replayed = Store::open(scratch.path(), 64 << 20)?;
    let started = Instant::now();
    let rebuilt = project(
        &replayed,
        &policy,
        log.input_events(None, Start::First)
            .take_while(|logged| match logged {
                Ok(Logged {
                    position: crate::log::Position::Sequence(sequence),
                    ..
                }) => *sequence <= checkpoint,
                _ => true,
            }),
        |_| {},
    )?;
    if rebuilt.checkpoint < checkpoint {
        eprintln!(
            "the log ends at sequence {} but the projection's checkpoint is {checkpoint}: its newest events are gone from the log",
            rebuilt.checkpoint
        );
    }
    let (compared, differences) = compare(&projection, &replayed, &policy)?;
    for difference in &differences {
        crate::outln!(
            "{}  projection: {}  log: {}",
            difference.token,
            difference.projection.as_deref().unwrap_or("(none)"),
            difference.log.as_deref().unwrap_or("(none)")
        )?;
    }
    let same = differences.is_empty() && rebuilt.checkpoint >= checkpoint;
    crate::outln!(
        "verified {} at checkpoint {checkpoint}: {compared} conversations, {} differ ({} events replayed in {:.1} s)",
        args.data.display(),
        differences.len(),
        rebuilt.events,
        started.elapsed().as_secs_f64()
    )?;
    Ok(same)
}
