//! The README's install command. A test binary of its own: the build it runs writes the
//! binaries other tests of this crate execute, so it must not run beside them.

use std::path::Path;

#[test]
fn the_install_script_puts_every_binary_in_a_root() {
    // The README's install command, into a temporary root, reusing this build (--debug and
    // the same target directory: the release build it does by default takes minutes).
    let target = Path::new(env!("CARGO_BIN_EXE_ventana"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned();
    let installed = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install"),
    )
    .args(["--debug", "--root", installed.path().to_str().unwrap()])
    .env("CARGO_TARGET_DIR", &target)
    .output()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for binary in ["ventana", "ventanad", "ventana-meta", "ventana-sim"] {
        let path = installed.path().join("bin").join(binary);
        let version = std::process::Command::new(&path)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(version.status.success(), "{binary}");
        assert!(String::from_utf8_lossy(&version.stdout).starts_with(binary));
    }
}
