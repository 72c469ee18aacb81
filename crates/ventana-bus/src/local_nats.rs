//! A private `nats-server -js` on a loopback port, for `ventana dev` and the test harness:
//! which binary, and starting it (ready when it says so, not after a pause).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// A nats-server ≥ 2.11: `$VENTANA_NATS_SERVER`, else what the project's installer
/// `scripts/nats-server` prints (it uses PATH or installs the pinned one into `.local/`),
/// else `nats-server` on PATH.
pub fn server_binary(repository: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("VENTANA_NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let script = repository.join("scripts/nats-server");
    if !script.exists() {
        return Ok(PathBuf::from("nats-server"));
    }
    let output = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "scripts/nats-server could not find or install nats-server"
    );
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}

/// Starts `binary` with JetStream on 127.0.0.1:`port`, storing in `store`, and waits until
/// it logs that it is ready.
pub fn start_server(binary: &Path, port: u16, store: &Path) -> anyhow::Result<Child> {
    start_server_with(binary, port, store, None, &[])
}

/// [`start_server`] with a configuration file and environment variables (the passwords
/// it names). The file's listen address is overridden, and its JetStream store is read
/// from `$NATS_STORE_DIR`, set to `store`.
pub fn start_server_with(
    binary: &Path,
    port: u16,
    store: &Path,
    config: Option<&Path>,
    env: &[(&str, &str)],
) -> anyhow::Result<Child> {
    let mut command = Command::new(binary);
    match config {
        Some(config) => command.arg("-c").arg(config).env("NATS_STORE_DIR", store),
        None => command.args(["-js", "-sd"]).arg(store),
    };
    let mut child = command
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stderr = child.stderr.take().expect("piped");
    let (ready, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut told = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !told && line.contains("Server is ready") {
                let _ = ready.send(());
                told = true;
            }
        }
    });
    if wait.recv_timeout(Duration::from_secs(20)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        anyhow::bail!("nats-server did not become ready on port {port}");
    }
    Ok(child)
}

/// The environment `deploy/nats-cluster.conf` reads for node `index` (0, 1 or 2) of a
/// three-node cluster on loopback whose nodes talk on `cluster_ports`: its name
/// (`ventana-<index + 1>`), its cluster address and the three routes. The passwords of the
/// users file are the caller's to add.
pub fn cluster_node_env(index: usize, cluster_ports: &[u16]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = cluster_ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            (
                format!("NATS_ROUTE_{}", i + 1),
                format!("nats-route://127.0.0.1:{port}"),
            )
        })
        .collect();
    env.push(("NATS_SERVER_NAME".into(), format!("ventana-{}", index + 1)));
    env.push((
        "NATS_CLUSTER_LISTEN".into(),
        format!("127.0.0.1:{}", cluster_ports[index]),
    ));
    env
}
