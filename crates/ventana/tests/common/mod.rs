//! What the `ventana` binary's tests share: running it from the repository root.
// Each test binary includes this module and uses a part of it.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs the `ventana` binary with `args` in the repository root, to completion.
pub fn ventana(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ventana"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args(args)
        .output()
        .expect("ventana runs")
}

/// Output bytes as text (lossily: a test message should show whatever was printed).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
