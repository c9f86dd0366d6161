//! Builds the console and the watch page (`web/`, TypeScript) into `$OUT_DIR/web`, which
//! `src/web.rs` embeds. Runs again only when the web sources, their lockfile or the variables
//! below change, so other builds of the crate pay nothing.
//!
//! - `LIVEGATE_WEB_DIST=DIR`: use a directory built beforehand (`npm ci && node build.mjs
//!   --outdir DIR` in `api/web`) instead of building; no Node.js needed then.
//! - Otherwise `npm ci` installs `web/node_modules` when the lockfile changed since the last
//!   install, then `node web/build.mjs` type-checks and bundles.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Inputs of the web build: a change to any of them builds again.
const SOURCES: [&str; 5] = [
    "src",
    "build.mjs",
    "package.json",
    "package-lock.json",
    "tsconfig.json",
];
/// What the pages need from a build, checked in a prebuilt directory too.
const OUTPUTS: [&str; 3] = ["console.html", "watch.html", "assets"];
/// A copy of the lockfile `npm ci` last installed, inside `node_modules`.
const INSTALLED_LOCK: &str = "node_modules/.livegate-installed-lock.json";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // Cargo shows a failed build script's stderr; the first line says what to do.
            eprintln!("error: livegate-api's web build failed: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    println!("cargo::rerun-if-env-changed=LIVEGATE_WEB_DIST");
    println!("cargo::rerun-if-env-changed=LIVEGATE_NPM");
    println!("cargo::rerun-if-env-changed=LIVEGATE_NODE");
    let out_dir = PathBuf::from(env("OUT_DIR")?).join("web");
    if let Some(dist) = std::env::var_os("LIVEGATE_WEB_DIST").filter(|v| !v.is_empty()) {
        let dist = PathBuf::from(dist);
        println!("cargo::rerun-if-changed={}", dist.display());
        check_outputs(&dist).map_err(|missing| {
            format!(
                "LIVEGATE_WEB_DIST={} has no {missing}; build it with `npm ci && node build.mjs \
                 --outdir DIR` in api/web",
                dist.display()
            )
        })?;
        replace_dir(&dist, &out_dir).map_err(|err| format!("copying LIVEGATE_WEB_DIST: {err}"))?;
        return Ok(());
    }
    let web = PathBuf::from(env("CARGO_MANIFEST_DIR")?).join("web");
    for source in SOURCES {
        println!("cargo::rerun-if-changed={}", web.join(source).display());
    }
    // Two builds of this crate at once (say, clippy and a test build in other target
    // directories) share web/node_modules: one installs while the other waits.
    let lock = fs::File::create(web.join(".build.lock"))
        .map_err(|err| format!("creating api/web/.build.lock: {err}"))?;
    lock.lock()
        .map_err(|err| format!("locking api/web/.build.lock: {err}"))?;
    install(&web)?;
    let node = tool("LIVEGATE_NODE", "node");
    let status = Command::new(&node)
        .arg(web.join("build.mjs"))
        .arg("--outdir")
        .arg(&out_dir)
        .current_dir(&web)
        .status()
        .map_err(|err| missing_node(&node, &err))?;
    if !status.success() {
        return Err(format!(
            "`node build.mjs` exited with {status} (its output is above)"
        ));
    }
    check_outputs(&out_dir)
        .map_err(|missing| format!("build.mjs wrote no {missing} into {}", out_dir.display()))
}

/// `npm ci`, unless `node_modules` already holds exactly what the lockfile names.
fn install(web: &Path) -> Result<(), String> {
    let lockfile = fs::read(web.join("package-lock.json"))
        .map_err(|err| format!("reading api/web/package-lock.json: {err}"))?;
    if fs::read(web.join(INSTALLED_LOCK)).ok().as_deref() == Some(lockfile.as_slice()) {
        return Ok(());
    }
    let npm = tool("LIVEGATE_NPM", "npm");
    let output = Command::new(&npm)
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(web)
        .output()
        .map_err(|err| missing_node(&npm, &err))?;
    if !output.status.success() {
        return Err(format!(
            "`npm ci` in api/web exited with {}:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    fs::write(web.join(INSTALLED_LOCK), &lockfile)
        .map_err(|err| format!("writing api/web/{INSTALLED_LOCK}: {err}"))
}

fn missing_node(program: &str, err: &io::Error) -> String {
    if err.kind() == io::ErrorKind::NotFound {
        format!(
            "`{program}` was not found. The console is built with Node.js (18 or later) and npm: \
             on Debian `apt-get install nodejs npm`, or set LIVEGATE_WEB_DIST to a directory \
             built elsewhere with `npm ci && node build.mjs --outdir DIR` in api/web"
        )
    } else {
        format!("running `{program}`: {err}")
    }
}

fn tool(variable: &str, default: &str) -> String {
    std::env::var(variable)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("cargo did not set {name}"))
}

fn check_outputs(dir: &Path) -> Result<(), &'static str> {
    OUTPUTS
        .into_iter()
        .find(|name| !dir.join(name).exists())
        .map_or(Ok(()), Err)
}

fn replace_dir(from: &Path, to: &Path) -> io::Result<()> {
    if to.exists() {
        fs::remove_dir_all(to)?;
    }
    copy_dir(from, to)
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
