//! A real `nats-server -js` for a test: a free loopback port, a temporary store, killed and
//! cleaned up on drop. The binary comes from `$VENTANA_NATS_SERVER` or `scripts/nats-server`
//! (which installs the pinned one when none is on PATH).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        ventana_bus::local_nats::server_binary(&repository)
            .expect("a nats-server (scripts/nats-server)")
    })
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    /// A configuration file and the environment it reads (passwords).
    config: Option<(PathBuf, Vec<(String, String)>)>,
}

impl NatsServer {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server with the configuration file `config` (its listen address and store are the
    /// test's), reading `env` (the passwords the file names).
    pub fn start_with_config(config: &Path, env: &[(&str, &str)]) -> Self {
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self::start_with(Some((config.to_owned(), env)))
    }

    fn start_with(config: Option<(PathBuf, Vec<(String, String)>)>) -> Self {
        let store = tempfile::tempdir().unwrap();
        let mut server = Self {
            child: None,
            port: free_port(),
            store,
            config,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let (config, env) = match &self.config {
            Some((path, env)) => (Some(path.as_path()), env.as_slice()),
            None => (None, &[][..]),
        };
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let child = ventana_bus::local_nats::start_server_with(
            binary(),
            self.port,
            self.store.path(),
            config,
            &env,
        )
        .expect("nats-server starts and becomes ready");
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL) and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        // The port is free again once the old process is reaped; the new one binds it.
        while TcpListener::bind(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "port {} stayed busy", self.port);
            std::thread::yield_now();
        }
        self.spawn();
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The users of `deploy/nats-users.conf` and the passwords the tests give them (as
/// environment variables of nats-server).
pub const USERS: [(&str, &str, &str); 6] = [
    ("ventanad", "VENTANAD_PASSWORD", "pw-ventanad"),
    ("adapter", "ADAPTER_PASSWORD", "pw-adapter"),
    ("meta-adapter", "META_ADAPTER_PASSWORD", "pw-meta"),
    ("api-client", "API_CLIENT_PASSWORD", "pw-api-client"),
    ("sender", "SENDER_PASSWORD", "pw-sender"),
    ("subscriber", "SUBSCRIBER_PASSWORD", "pw-subscriber"),
];

/// `count` distinct ports nobody listens on right now.
fn free_ports(count: usize) -> Vec<u16> {
    let mut ports = Vec::with_capacity(count);
    while ports.len() < count {
        let port = free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// Three nats-servers clustered on loopback, each started from the shipped
/// `deploy/nats-cluster.conf` (with `deploy/nats-users.conf`'s users) on its own client
/// port, cluster port and temporary store. Node `i` is named `ventana-<i + 1>`.
#[derive(Debug)]
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    pub fn start() -> Self {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats-cluster.conf");
        let ports = free_ports(6);
        let (client_ports, cluster_ports) = ports.split_at(3);
        let nodes = (0..3)
            .map(|i| {
                let mut env = ventana_bus::local_nats::cluster_node_env(i, cluster_ports);
                env.extend(
                    USERS
                        .iter()
                        .map(|(_, var, password)| ((*var).to_owned(), (*password).to_owned())),
                );
                let mut node = NatsServer {
                    child: None,
                    port: client_ports[i],
                    store: tempfile::tempdir().unwrap(),
                    config: Some((config.clone(), env)),
                };
                node.spawn();
                node
            })
            .collect();
        Self { nodes }
    }

    /// Every node's client URL, comma-separated (as `--nats` takes them).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How `user` connects to the cluster.
    pub fn options(&self, user: &str) -> ventana_bus::NatsOptions {
        let (_, _, password) = USERS.iter().find(|(name, _, _)| *name == user).unwrap();
        ventana_bus::NatsOptions {
            url: self.urls(),
            nats_user: Some(user.into()),
            nats_password: Some((*password).into()),
            ..Default::default()
        }
    }

    /// The index of the node named `name` (`ventana-<i + 1>`).
    pub fn index_of(name: &str) -> Option<usize> {
        name.strip_prefix("ventana-")?
            .parse::<usize>()
            .ok()?
            .checked_sub(1)
    }
}
