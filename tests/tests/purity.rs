//! The core and the notifier stay pure: no async runtime, storage or NATS in their
//! dependency trees, and no clock read in their source.

use std::path::Path;
use std::process::Command;

const FORBIDDEN_CRATES: [&str; 4] = ["tokio", "sled", "async-nats", "mio"];
const CLOCK_READS: [&str; 5] = [
    "Utc::now",
    "Local::now",
    "SystemTime",
    "Instant::now",
    "std::time::Instant",
];

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "tree",
            "--offline",
            "-p",
            package,
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            line.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn the_pure_crates_depend_on_no_runtime_storage_or_nats() {
    for package in ["ventana-core", "ventana-notifier"] {
        let deps = dependencies(package);
        assert!(
            deps.iter().any(|d| d == "chrono"),
            "{package}: the tree was read: {deps:?}"
        );
        for forbidden in FORBIDDEN_CRATES {
            assert!(
                !deps.iter().any(|d| d == forbidden),
                "{package} depends on {forbidden}"
            );
        }
    }
}

/// Every `.rs` file under `dir`, subdirectories included.
fn sources(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn the_pure_crates_never_read_a_clock() {
    let mut files = Vec::new();
    for dir in ["crates/ventana-core/src", "crates/ventana-notifier/src"] {
        sources(&workspace().join(dir), &mut files);
    }
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for pattern in CLOCK_READS {
            assert!(
                !text.contains(pattern),
                "{} reads a clock: {pattern}",
                path.display()
            );
        }
    }
    assert!(
        files
            .iter()
            .any(|p| p.ends_with("conversation/deadlines.rs"))
            && files.len() >= 16,
        "only {} source files were checked",
        files.len()
    );
}
