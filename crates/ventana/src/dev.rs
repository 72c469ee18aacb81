//! `ventana dev`: a private nats-server, ventanad and a demo feed, in one command; with
//! `--cluster`, three NATS nodes and two ventanad processes sharing the partitions, to
//! watch a failover on one machine.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use anyhow::Context;
use ventana_bus::local_nats;
use ventana_bus::now;
use ventana_service::config::{Config, NatsOptions};
use ventana_sim::{Mix, simulate};

/// Windows of minutes instead of hours, so a demo shows windows closing while you watch.
pub const DEMO_POLICY: &str = r#"# ventana dev: minutes instead of hours, so windows close while you watch.
[channels.whatsapp]
standard_window = "2m"
[channels.messenger]
standard_window = "2m"
human_agent_window = "5m"
private_reply_window = "5m"
[channels.instagram]
standard_window = "2m"
human_agent_window = "5m"
private_reply_window = "5m"
[notifier]
agent_delay = "20s"
window_closing = "30s"
greet_on_open = true
"#;

#[derive(Clone, Debug, clap::Args)]
pub struct DevArgs {
    /// Where the dev NATS store and ventana's data live.
    #[arg(long, default_value = ".local/dev")]
    pub data: PathBuf,
    /// NATS port (0: any free port).
    #[arg(long, default_value_t = 4222)]
    pub port: u16,
    /// Address of ventanad's /healthz and /metrics.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub http: std::net::SocketAddr,
    /// Demo events per second (0: no demo feed).
    #[arg(long, default_value_t = 20)]
    pub rate: u32,
    /// A policy file instead of the demo policy (minutes-long windows).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Stop by itself after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    pub for_seconds: Option<u64>,
    /// Three NATS nodes (deploy/nats-cluster.conf, on --port and the next two) and two
    /// ventanad processes sharing the partitions (HTTP on --http and the next port): kill
    /// one and watch `ventana status` show the other take its partitions over. A killed
    /// instance is started again after 10 s.
    #[arg(long)]
    pub cluster: bool,
}

pub(crate) fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Stops the child process it owns when dropped, however `dev` ends.
pub(crate) struct Stopper(pub(crate) Child);

impl Drop for Stopper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Generated traffic made live (ventana-sim's mix: Meta's three channels, late and
/// duplicate webhooks), fresh ids per run, stamped with the moment of publishing.
pub(crate) async fn demo_feed(nats: NatsOptions, rate: u32) -> anyhow::Result<()> {
    let client = ventana_bus::connect(&nats, "ventana-dev-feed").await?;
    let js = async_nats::jetstream::new(client);
    let run = now().unix_nanos() / 1_000_000_000;
    let mut wait = tokio::time::interval(Duration::from_secs(1));
    for round in 0u64.. {
        // ventanad declares the streams as it starts.
        while js
            .get_stream(ventana_wire::subjects::IN_STREAM)
            .await
            .is_err()
        {
            wait.tick().await;
        }
        let mix = Mix {
            seed: run as u64 + round,
            events: 100_000,
            conversations: 200,
            days: 30,
            duplicate_percent: 2,
            custom_channel: false,
        };
        let published = ventana_sim::live::publish(
            &js,
            simulate(&mix),
            Some(rate),
            &format!("demo-{run}.{round}"),
            ventana_wire::subjects::DEFAULT_PARTITIONS,
            |_| {},
        )
        .await;
        // Whenever NATS is away this fails; the demo carries on with new traffic.
        if let Err(error) = published {
            tracing::warn!(%error, "demo feed: publishing failed");
            wait.tick().await;
        }
    }
    Ok(())
}

/// What would stop `dev` after it announced itself, found before it starts anything: a bad
/// policy, a data directory another ventanad holds, a taken HTTP address.
pub(crate) fn preflight(args: &DevArgs, data: &Path) -> anyhow::Result<()> {
    if let Some(policy) = &args.policy {
        crate::load_policy(Some(policy))?;
    }
    if data.exists() {
        // sled locks its directory while open: another `ventana dev` or ventanad has it.
        ventana_store::Store::open(data, 1 << 20).map_err(|error| {
            anyhow::anyhow!(
                "cannot use {} ({error}): is another `ventana dev` or ventanad running on it? \
                 Stop it, or pass --data with another directory",
                data.display()
            )
        })?;
    }
    if std::net::TcpListener::bind(args.http).is_err() {
        anyhow::bail!(
            "{} (ventanad's /metrics and /healthz) is taken: is another `ventana dev` running? \
             Stop it, or pass --http with another address (and --data with another directory)",
            args.http
        );
    }
    Ok(())
}

pub async fn dev(args: DevArgs) -> anyhow::Result<()> {
    if args.cluster {
        return crate::dev_cluster::dev_cluster(args).await;
    }
    let nats_store = args.data.join("nats");
    let data = args.data.join("ventana");
    preflight(&args, &data)?;
    std::fs::create_dir_all(&nats_store)
        .with_context(|| format!("cannot create {}", nats_store.display()))?;
    let policy = match args.policy {
        Some(policy) => policy,
        None => {
            let path = args.data.join("demo-policy.toml");
            std::fs::write(&path, DEMO_POLICY)?;
            path
        }
    };
    let port = if args.port != 0 && port_free(args.port) {
        args.port
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    };
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let binary = local_nats::server_binary(&repository)?;
    let _nats = Stopper(local_nats::start_server(&binary, port, &nats_store)?);
    let url = format!("nats://127.0.0.1:{port}");
    let config = Config {
        nats: NatsOptions {
            url: url.clone(),
            ..Default::default()
        },
        instance: "dev".to_owned(),
        data: data.clone(),
        policy: Some(policy.clone()),
        cache_mb: 128,
        states_cached: 10_000,
        partitions: ventana_wire::subjects::DEFAULT_PARTITIONS,
        replicas: 1,
        in_duplicate_window: Duration::from_secs(600),
        out_duplicate_window: Duration::from_secs(7200),
        batch: 1000,
        send_timeout: Duration::from_secs(5),
        // Both encodings of the outputs, so clients of either can be tried against it.
        protobuf_outputs: true,
        http: args.http,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut service = tokio::spawn(ventana_service::run(config, async move {
        let _ = stopped.await;
    }));
    // Announce only once ventanad answers (its store open, its streams declared), so what
    // is printed is true; if it stops first, say why instead.
    let ready = async {
        let client = async_nats::connect(url.as_str()).await?;
        let ping = format!("$SRV.PING.{}", ventana_wire::subjects::SERVICE_NAME);
        while client.request(ping.clone(), "".into()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        ready = ready => ready.context("waiting for ventanad")?,
        result = &mut service => {
            result.context("ventanad panicked")?.context("ventanad stopped")?;
            anyhow::bail!("ventanad stopped as it started");
        }
    }
    let nats_flag = if port == 4222 {
        String::new()
    } else {
        format!(" --nats {url}")
    };
    println!(
        "ventana dev is running\n  \
         NATS       {url} (JetStream store: {})\n  \
         ventanad   data {}, http://{}/metrics and /healthz\n  \
         demo feed  {} events/s over 200 conversations; policy {}\n\n\
         Try, in another terminal:\n  \
         cargo run -q -p ventana -- tail{nats_flag}\n  \
         cargo run -q -p ventana -- state whatsapp/acme/page-0/contact-0{nats_flag}\n  \
         cargo run -q -p ventana -- check whatsapp/acme/page-0/contact-0 --sender agent --kind message{nats_flag}\n  \
         cargo run -q -p ventana -- import --shift-to-now --speed 720 examples/whatsapp.jsonl{nats_flag}   # an example, played now\n  \
         cargo run -q -p ventana-sim -- --max --events 100000{nats_flag}   # a burst of traffic\n  \
         curl -s http://{}/metrics | grep '^ventana_'\n\n\
         Ctrl-C stops everything.",
        nats_store.display(),
        data.display(),
        args.http,
        args.rate,
        policy.display(),
        args.http,
    );
    let feed = (args.rate > 0).then(|| {
        tokio::spawn(demo_feed(
            NatsOptions {
                url,
                ..Default::default()
            },
            args.rate,
        ))
    });
    let limit = async {
        match args.for_seconds {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
            None => std::future::pending().await,
        }
    };
    let ended = tokio::select! {
        _ = ventana_bus::shutdown_signal() => None,
        _ = limit => None,
        result = &mut service => Some(result),
    };
    if let Some(feed) = feed {
        feed.abort();
    }
    match ended {
        Some(result) => result
            .context("ventanad panicked")?
            .context("ventanad stopped")?,
        None => {
            let _ = stop.send(());
            service.await.context("ventanad panicked")??;
        }
    }
    println!("stopped");
    Ok(())
}
