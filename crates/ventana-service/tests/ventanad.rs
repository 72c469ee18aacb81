//! The `ventanad` binary: its help names every option, and a bad policy stops it at start.

use std::process::Command;

#[test]
fn help_lists_the_options_and_their_environment_variables() {
    let output = Command::new(env!("CARGO_BIN_EXE_ventanad"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for option in [
        "--nats",
        "--data",
        "--policy",
        "--cache-mb",
        "--http",
        "VENTANA_NATS_URL",
        "--nats-creds",
        "--nats-tls-ca",
    ] {
        assert!(text.contains(option), "{option} missing from:\n{text}");
    }
}

#[test]
fn an_invalid_policy_stops_it_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[notifier]\nagent_delay = \"soon\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ventanad"))
        .args(["--nats", "nats://127.0.0.1:1", "--data"])
        .arg(dir.path().join("data"))
        .arg("--policy")
        .arg(&policy)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8(output.stderr).unwrap();
    assert!(text.contains("notifier.agent_delay"), "{text}");
}
