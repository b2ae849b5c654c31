//! The shipped unit, `systemd/assetd.service`, as systemd itself judges
//! it: `systemd-analyze verify` accepts it and `systemd-analyze security`
//! rates its exposure below 4.0 ("OK") while it can still reach Docker.
//!
//! Without systemd-analyze this fails (never skips): install it with
//! `apt-get install -y systemd`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/assetd.service");
const INSTALLED_BINARY: &str = "/usr/local/bin/assetd";

fn systemd_analyze(args: &[&str]) -> Output {
    Command::new("systemd-analyze").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run systemd-analyze ({e}): install it with `apt-get install -y systemd` (scripts/testenv.sh should)")
    })
}

/// A copy of the unit whose ExecStart names the binary just built: verify
/// checks that the command exists, and this test must not depend on (or
/// write to) /usr/local/bin.
fn unit_for_this_build() -> (PathBuf, String) {
    let text = std::fs::read_to_string(UNIT).expect("systemd/assetd.service");
    assert!(
        text.contains(&format!("ExecStart={INSTALLED_BINARY} run ")),
        "{text}"
    );
    let dir = std::env::temp_dir().join(format!("assetd-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The file name is the unit name: it must stay assetd.service.
    let path = dir.join("assetd.service");
    std::fs::write(
        &path,
        text.replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_assetd")),
    )
    .unwrap();
    (path, text)
}

fn exposure(security: &str) -> f64 {
    let line = security
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure line in:\n{security}"));
    // "→ Overall exposure level for assetd.service: 1.8 OK 🙂"
    line.rsplit_once(": ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure in: {line}"))
}

#[test]
fn the_unit_verifies_and_its_exposure_is_below_4() {
    let (unit, text) = unit_for_this_build();
    let path = unit.to_str().unwrap();

    let verify = systemd_analyze(&["verify", path]);
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // verify also reports on other units it loads; only ours must be clean.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("assetd")).collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze verify complains:\n{}",
        ours.join("\n")
    );

    let security = systemd_analyze(&["security", "--offline=yes", path]);
    let report = String::from_utf8_lossy(&security.stdout);
    let level = exposure(&report);
    eprintln!("systemd-analyze security: exposure {level}");
    assert!(level < 4.0, "exposure {level} is not below 4.0:\n{report}");

    // What the daemon's contract with systemd needs is still there.
    for line in [
        "Type=notify",
        "WatchdogSec=60",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=always",
        "Wants=docker.service network-online.target",
        "After=docker.service network-online.target",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet=",
    ] {
        assert!(text.lines().any(|l| l == line), "the unit lost `{line}`");
    }
    assert!(
        !text.contains("BindsTo="),
        "a Docker restart must not stop assetd"
    );
    let _ = std::fs::remove_dir_all(Path::new(path).parent().unwrap());
}
