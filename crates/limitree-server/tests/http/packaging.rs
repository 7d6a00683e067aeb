//! What ships beside the binary: the systemd unit verifies with
//! `systemd-analyze`, and `--version` names the version. The Dockerfile is not
//! built here (no Docker engine on the test machines; the README says so).

use std::process::Command;

use crate::support::served::{BIN, text};

#[test]
fn the_version_is_printed() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("limitree {}", env!("CARGO_PKG_VERSION"))
    );
}

/// `systemd-analyze verify` on `deploy/limitree.service`, with `ExecStart`
/// pointed at the binary under test (it checks the command exists). Where
/// systemd-analyze is not installed the unit is unchecked, and the test says
/// so on stderr.
#[test]
fn the_systemd_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed: deploy/limitree.service is unchecked");
        return;
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/limitree.service"
    ))
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/limitree serve"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limitree.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/limitree", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
