//! The Debian package (issue 15 point 1): `scripts/build-deb.sh` builds it
//! (here from the test build's binary, fast compression); its metadata and
//! contents are what an operator installs, its `/etc/rts/rts.toml` is the
//! commented defaults, and its systemd unit passes `systemd-analyze verify`.

use anyhow::{ensure, Context, Result};
use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    ensure!(out.status.success(), "{cmd:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_deb_has_the_binary_the_unit_and_the_commented_defaults() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("rts-deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = run(Command::new("sh")
        .arg(root.join("scripts/build-deb.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_rts"), "--out"])
        .arg(&dir)
        .env("RTS_DEB_FAST", "1"))?;
    let deb = out.lines().last().context("the script prints the package path")?.trim().to_string();
    ensure!(deb.ends_with(".deb") && Path::new(&deb).exists(), "{out}");

    let info = run(Command::new("dpkg-deb").args(["--info", &deb]))?;
    let field = |name: &str| info.lines().find_map(|l| l.trim().strip_prefix(&format!("{name}: ")).map(str::to_string)).unwrap_or_default();
    assert_eq!(field("Package"), "rts");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field("Architecture"), run(Command::new("dpkg").arg("--print-architecture"))?.trim());
    let depends = field("Depends");
    for d in ["adduser", "libopus0", "libavcodec"] {
        assert!(depends.contains(d), "Depends: {depends}");
    }
    assert!(info.contains("conffiles") && info.contains("postinst"), "{info}");

    let contents = run(Command::new("dpkg-deb").args(["--contents", &deb]))?;
    for path in ["./usr/bin/rts", "./lib/systemd/system/rts.service", "./etc/rts/rts.toml", "./usr/share/rts/kernel-tuning/tune.sh", "./usr/share/doc/rts/README.md"] {
        assert!(contents.lines().any(|l| l.ends_with(path)), "{path} in\n{contents}");
    }
    assert!(contents.lines().any(|l| l.starts_with("-rwxr-xr-x root/root") && l.ends_with("./usr/bin/rts")), "{contents}");

    // Unpacked: the configuration is the commented defaults.
    let tree = dir.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
    let conffile = std::fs::read_to_string(tree.join("etc/rts/rts.toml"))?;
    assert_eq!(conffile, rts_common::config::defaults_toml());
    let control = run(Command::new("dpkg-deb").args(["--field", &deb, "Package"]))?;
    assert_eq!(control.trim(), "rts");
    let conffiles = run(Command::new("sh").arg("-c").arg(format!("dpkg-deb --ctrl-tarfile {deb} | tar -xO ./conffiles")))?;
    assert_eq!(conffiles.trim(), "/etc/rts/rts.toml");

    // The unit verifies clean against a root with the host's units (the
    // targets it names) and /bin/kill (its reload command).
    let unit = std::fs::read_to_string(tree.join("lib/systemd/system/rts.service"))?;
    assert!(unit.contains("LimitMEMLOCK=infinity") && unit.contains("ExecReload=/bin/kill -HUP $MAINPID"), "{unit}");
    assert!(!unit.contains("SystemCallFilter"), "no syscall filter: io_uring must stay usable");
    run(Command::new("sh").arg("-c").arg(format!("cp -an /lib/systemd/system/. {0}/lib/systemd/system/ && mkdir -p {0}/bin && cp /bin/kill {0}/bin/", tree.display())))?;
    let verify = Command::new("systemd-analyze").arg("verify").arg(format!("--root={}", tree.display())).arg("/lib/systemd/system/rts.service").output()?;
    let said = String::from_utf8_lossy(&verify.stderr).into_owned() + &String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && said.trim().is_empty(), "systemd-analyze verify: {}\n{said}", verify.status);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
