//! Records the git commit the binaries are built from, for `--version` and the
//! `tailgate_build_info` metric. Outside a git checkout (a source tarball, a container
//! build without .git) the commit is "unknown"; TAILGATE_GIT_COMMIT overrides it.

use std::process::Command;

fn main() {
    let commit = std::env::var("TAILGATE_GIT_COMMIT").ok().or_else(|| {
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    println!(
        "cargo:rustc-env=TAILGATE_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!("cargo:rerun-if-env-changed=TAILGATE_GIT_COMMIT");
    // A new commit moves HEAD (or the branch it points at).
    for path in ["../.git/HEAD", "../.git/refs/heads"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
