//! The kubectl plugin as a person runs it, for the plugin tests: the operator binary linked as
//! `kubectl-report` in a directory of its own, with a kubeconfig whose context's namespace is
//! the test's.
#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{ControlPlane, stderr, stdout};

pub struct Plugin {
    dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    kubectl: PathBuf,
}

impl Plugin {
    /// The plugin in a new directory, its kubeconfig's context in `namespace`.
    pub fn new(cp: &ControlPlane, namespace: &str) -> Plugin {
        Plugin::with_kubeconfig(cp, &cp.kubeconfig, namespace)
    }

    /// [`Plugin::new`] authenticating as `kubeconfig` says.
    pub fn with_kubeconfig(cp: &ControlPlane, kubeconfig: &Path, namespace: &str) -> Plugin {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_report-operator"),
            dir.path().join("kubectl-report"),
        )
        .expect("symlink");
        let own = dir.path().join("kubeconfig");
        std::fs::copy(kubeconfig, &own).expect("copy kubeconfig");
        let kubectl = cp.bin_dir.join("kubectl");
        let out = Command::new(&kubectl)
            .args([
                "config",
                "set-context",
                "--current",
                "--namespace",
                namespace,
                "--kubeconfig",
            ])
            .arg(&own)
            .output()
            .expect("kubectl config");
        assert!(out.status.success(), "{}", stderr(&out));
        Plugin {
            dir,
            kubeconfig: own,
            kubectl,
        }
    }

    /// The plugin's directory (also the working directory of [`Plugin::run`]).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `kubectl-report ARGS`, the plugin binary run directly, in [`Plugin::path`].
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_in(self.dir.path(), args)
    }

    /// `kubectl-report ARGS` with `cwd` as the working directory.
    pub fn run_in(&self, cwd: &Path, args: &[&str]) -> Output {
        Command::new(self.dir.path().join("kubectl-report"))
            .args(args)
            .current_dir(cwd)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("run kubectl-report")
    }

    /// `kubectl report ARGS`: kubectl finds the plugin on PATH.
    pub fn via_kubectl(&self, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(&self.kubectl)
            .arg("report")
            .args(args)
            .env("PATH", path)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("run kubectl report")
    }
}

/// The command's output when it succeeded (stdout then stderr); fails the test otherwise.
pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\nstdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out) + &stderr(&out);
    // Shown with --nocapture, as a sample of what a person sees.
    println!("$ {what}\n{text}");
    text
}

/// The command's stderr when it failed; fails the test when it succeeded.
pub fn refused(out: Output, what: &str) -> String {
    assert!(
        !out.status.success(),
        "{what} succeeded:\nstdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stderr(&out);
    println!("$ {what} (refused)\n{text}");
    text
}
