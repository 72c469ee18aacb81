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
