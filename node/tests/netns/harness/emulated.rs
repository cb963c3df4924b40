//! A corral built for another CPU, run under Debian's qemu-user.

use std::path::PathBuf;
use std::process::Command;

/// A corral built for another CPU, run under Debian's qemu-user.
#[derive(Clone, Debug)]
pub struct Emulated {
    /// `qemu-aarch64` or `qemu-arm`.
    pub qemu: &'static str,
    /// The target's libraries (Debian's `libc6-*-cross`).
    pub sysroot: &'static str,
    /// The cross-built `corral`.
    pub bin: PathBuf,
}

impl Emulated {
    /// The cross build for `triple`, from `CORRAL_CROSS_TARGET_DIR` (default:
    /// the workspace's target dir), debug profile unless
    /// `CORRAL_CROSS_PROFILE` says otherwise; why not, if it or qemu is
    /// missing.
    pub fn find(triple: &str) -> Result<Self, String> {
        let (qemu, sysroot) = match triple {
            "aarch64-unknown-linux-gnu" => ("qemu-aarch64", "/usr/aarch64-linux-gnu"),
            "armv7-unknown-linux-gnueabihf" => ("qemu-arm", "/usr/arm-linux-gnueabihf"),
            other => return Err(format!("no emulator known for {other}")),
        };
        let dir = std::env::var_os("CORRAL_CROSS_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let profile = std::env::var("CORRAL_CROSS_PROFILE").unwrap_or_else(|_| "debug".into());
        let bin = dir.join(triple).join(profile).join("corral");
        if !bin.exists() {
            return Err(format!(
                "{} is missing (scripts/cross {triple} builds it)",
                bin.display()
            ));
        }
        let found = Command::new(qemu)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!("{qemu} is missing (Debian package qemu-user)"));
        }
        Ok(Self { qemu, sysroot, bin })
    }

    /// A command running the emulated corral.
    pub fn command(&self) -> Command {
        let mut c = Command::new(self.qemu);
        c.arg("-L").arg(self.sysroot).arg(&self.bin);
        c
    }
}
