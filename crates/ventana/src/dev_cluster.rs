//! `ventana dev --cluster`: three NATS nodes from the shipped `deploy/nats-cluster.conf`,
//! two `ventanad` processes sharing the input partitions (streams and buckets with three
//! replicas), and the demo feed, so a failover can be watched on one machine: kill -9 an
//! instance (or a node) and `ventana status` shows its partitions taken over. A ventanad
//! that dies is started again after [`RESTART_AFTER`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use ventana_bus::local_nats;
use ventana_service::config::NatsOptions;

use crate::dev::{DEMO_POLICY, DevArgs, Stopper, demo_feed, port_free, preflight};

/// The password `dev --cluster` gives every user of `deploy/nats-users.conf` (local only).
pub const DEV_PASSWORD: &str = "dev";
/// The password variables `deploy/nats-users.conf` reads.
const PASSWORD_VARIABLES: [&str; 6] = [
    "VENTANAD_PASSWORD",
    "ADAPTER_PASSWORD",
    "META_ADAPTER_PASSWORD",
    "API_CLIENT_PASSWORD",
    "SENDER_PASSWORD",
    "SUBSCRIBER_PASSWORD",
];
/// How long a ventanad that died stays down before it is started again.
const RESTART_AFTER: Duration = Duration::from_secs(10);

/// `count` loopback ports: from `first` on when those are free, any free ones otherwise.
fn ports(first: u16, count: u16) -> anyhow::Result<Vec<u16>> {
    if first != 0 && (first..first + count).all(port_free) {
        return Ok((first..first + count).collect());
    }
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// The `ventanad` binary beside this `ventana` (built by cargo when missing).
fn ventanad_binary(repository: &Path) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let beside = exe.with_file_name("ventanad");
    if beside.exists() {
        return Ok(beside);
    }
    let release = exe.components().any(|c| c.as_os_str() == "release");
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.current_dir(repository).args([
        "build",
        "-q",
        "-p",
        "ventana-service",
        "--bin",
        "ventanad",
    ]);
    if release {
        build.arg("--release");
    }
    let built = build
        .status()
        .context("cannot run cargo to build ventanad")?;
    anyhow::ensure!(
        built.success() && beside.exists(),
        "cannot build ventanad (cargo build -p ventana-service)"
    );
    Ok(beside)
}

/// One ventanad process of the demo.
struct Instance {
    name: String,
    data: PathBuf,
    http: SocketAddr,
    process: Option<Child>,
}

impl Instance {
    fn start(&mut self, binary: &Path, urls: &str, policy: &Path) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.data.with_extension("log"))?;
        let child = Command::new(binary)
            .args(["--instance", &self.name, "--nats", urls])
            .args(["--nats-user", "ventanad", "--nats-password", DEV_PASSWORD])
            .args(["--replicas", "3", "--protobuf-outputs"])
            .args(["--cache-mb", "64", "--states-cached", "10000"])
            .arg("--data")
            .arg(&self.data)
            .arg("--policy")
            .arg(policy)
            .args(["--http", &self.http.to_string()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        self.process = Some(child);
        Ok(())
    }

    fn pid(&self) -> u32 {
        self.process.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM (it hands its partitions over), then waits.
    fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

pub async fn dev_cluster(args: DevArgs) -> anyhow::Result<()> {
    let names = ["dev-1", "dev-2"];
    let second_http = SocketAddr::new(args.http.ip(), args.http.port().wrapping_add(1));
    // What would stop it later, found first: the policy, either store, either address.
    preflight(&args, &args.data.join(names[0]))?;
    preflight(
        &DevArgs {
            http: second_http,
            ..args.clone()
        },
        &args.data.join(names[1]),
    )?;
    let policy = match &args.policy {
        Some(policy) => policy.clone(),
        None => {
            std::fs::create_dir_all(&args.data)?;
            let path = args.data.join("demo-policy.toml");
            std::fs::write(&path, DEMO_POLICY)?;
            path
        }
    };
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let nats_binary = local_nats::server_binary(&repository)?;
    let ventanad = ventanad_binary(&repository)?;

    let client_ports = ports(args.port, 3)?;
    let cluster_ports = ports(0, 3)?;
    let config = repository.join("deploy/nats-cluster.conf");
    let mut nodes = Vec::new();
    for (i, port) in client_ports.iter().enumerate() {
        let store = args.data.join(format!("nats-{}", i + 1));
        std::fs::create_dir_all(&store)?;
        let mut env = local_nats::cluster_node_env(i, &cluster_ports);
        env.extend(
            PASSWORD_VARIABLES
                .iter()
                .map(|v| ((*v).to_owned(), DEV_PASSWORD.to_owned())),
        );
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        nodes.push(Stopper(local_nats::start_server_with(
            &nats_binary,
            *port,
            &store,
            Some(&config),
            &env,
        )?));
    }
    let urls = client_ports
        .iter()
        .map(|port| format!("nats://127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    let nats = |user: &str| NatsOptions {
        url: urls.clone(),
        nats_user: Some(user.to_owned()),
        nats_password: Some(DEV_PASSWORD.to_owned()),
        ..Default::default()
    };

    let mut instances: Vec<Instance> = names
        .iter()
        .zip([args.http, second_http])
        .map(|(name, http)| Instance {
            name: (*name).to_owned(),
            data: args.data.join(name),
            http,
            process: None,
        })
        .collect();
    for instance in &mut instances {
        instance.start(&ventanad, &urls, &policy)?;
    }
    let result = supervise(
        &args,
        &mut instances,
        &ventanad,
        &urls,
        &policy,
        &nats,
        &nodes,
    )
    .await;
    for instance in &mut instances {
        instance.stop();
    }
    drop(nodes);
    result?;
    println!("stopped");
    Ok(())
}

/// Announces the demo once both instances answer, feeds it, restarts an instance that dies,
/// until Ctrl-C or `--for-seconds`.
async fn supervise(
    args: &DevArgs,
    instances: &mut [Instance],
    ventanad: &Path,
    urls: &str,
    policy: &Path,
    nats: &dyn Fn(&str) -> NatsOptions,
    nodes: &[Stopper],
) -> anyhow::Result<()> {
    let client = ventana_bus::connect(&nats("ventanad"), "ventana-dev").await?;
    let ping = format!("$SRV.PING.{}", ventana_wire::subjects::SERVICE_NAME);
    let answering = async {
        loop {
            let mut replies = 0;
            let reply = client.new_inbox();
            if let Ok(mut inbox) = client.subscribe(reply.clone()).await {
                let _ = client
                    .publish_with_reply(ping.clone(), reply, "".into())
                    .await;
                while let Ok(Some(_)) = tokio::time::timeout(
                    Duration::from_millis(300),
                    futures::StreamExt::next(&mut inbox),
                )
                .await
                {
                    replies += 1;
                }
            }
            if replies >= instances.len() {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), answering)
        .await
        .context("the two ventanad instances did not answer within 2 minutes (their logs are beside their data)")?;
    let credentials = format!("--nats {urls} --nats-user ventanad --nats-password {DEV_PASSWORD}");
    println!("ventana dev --cluster is running");
    for (i, node) in nodes.iter().enumerate() {
        println!(
            "  NATS node ventana-{}  {} (pid {})",
            i + 1,
            urls.split(',').nth(i).unwrap_or(""),
            node.0.id()
        );
    }
    for instance in instances.iter() {
        println!(
            "  ventanad {}  pid {}, http://{}/metrics, data {}, log {}",
            instance.name,
            instance.pid(),
            instance.http,
            instance.data.display(),
            instance.data.with_extension("log").display()
        );
    }
    println!(
        "  demo feed  {} events/s over 200 conversations; policy {}\n\n\
         Watch a failover, in another terminal:\n  \
         cargo run -q -p ventana -- status {credentials}   # who owns which partitions\n  \
         kill -9 {}   # ventanad dev-1: within seconds dev-2 owns every partition\n  \
         cargo run -q -p ventana -- status {credentials}\n  \
         cargo run -q -p ventana -- tail {credentials}\n\n\
         A ventanad that dies is started again after {} s, and takes its share back.\n\
         Ctrl-C stops everything.",
        args.rate,
        policy.display(),
        instances[0].pid(),
        RESTART_AFTER.as_secs(),
    );
    let feed = (args.rate > 0).then(|| tokio::spawn(demo_feed(nats("adapter"), args.rate)));
    let limit = async {
        match args.for_seconds {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(limit);
    let shutdown = ventana_bus::shutdown_signal();
    tokio::pin!(shutdown);
    let mut down: Vec<Option<tokio::time::Instant>> = vec![None; instances.len()];
    let mut look = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            () = &mut limit => break,
            _ = look.tick() => {}
        }
        for (instance, down) in instances.iter_mut().zip(down.iter_mut()) {
            if let Some(since) = *down {
                if since.elapsed() >= RESTART_AFTER {
                    instance.start(ventanad, urls, policy)?;
                    println!(
                        "ventanad {} started again (pid {})",
                        instance.name,
                        instance.pid()
                    );
                    *down = None;
                }
            } else if let Some(status) = instance
                .process
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                println!(
                    "ventanad {} stopped ({status}); the other takes its partitions over",
                    instance.name
                );
                instance.process = None;
                *down = Some(tokio::time::Instant::now());
            }
        }
    }
    if let Some(feed) = feed {
        feed.abort();
    }
    Ok(())
}
