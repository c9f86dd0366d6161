//! `livegate check-config`, run as an operator runs it: every shipped configuration (the
//! examples and the Docker deployment's, given the variables compose sets) is recognised and
//! passes, and the help texts name all four services and every port.
#![allow(
    clippy::unwrap_used,
    reason = "a broken fixture should fail the test loudly"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn infra() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra")
}

/// The files in `dir` whose names end in `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

fn livegate(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_livegate"));
    command.args(args);
    command
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The Docker deployment's proxy configuration names its origin by the compose service's
/// host name, which resolves only inside the compose network.
const DOCKER_PROXY: &str = "docker/config/proxy.toml";

/// `livegate check-config FILES…` with what docker-compose.yml hands the services (from
/// infra/docker/.env), and nothing else: no LIVEGATE_<SERVICE>__… override from the machine
/// running the test.
fn check_config(files: &[PathBuf]) -> Output {
    let key = "0123456789abcdef0123456789abcdef";
    livegate(&["check-config"])
        .args(files)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LIVEGATE_PLAY_TOKEN_KEY", key)
        .env("LIVEGATE_PLAY_TOKEN_KEY_ALT", key)
        .env("LIVEGATE_JWT_KEY", key)
        .env("LIVEGATE_JWT_KEY_ALT", key)
        .env("LIVEGATE_ADMIN_PASSWORD", "correct horse battery")
        .env(
            "LIVEGATE_DB_URL",
            "mysql://livegate:password@mariadb:3306/livegate",
        )
        .env("LIVEGATE_S3_ACCESS_KEY", "livegate")
        .env("LIVEGATE_S3_SECRET_KEY", "minio-password")
        .output()
        .unwrap()
}

#[test]
fn every_shipped_configuration_passes_as_the_service_it_is_for() {
    let mut shipped = files(&infra(), ".example.toml");
    shipped.extend(files(&infra().join("docker/config"), ".toml"));
    let docker_proxy = infra().join(DOCKER_PROXY);
    assert!(shipped.contains(&docker_proxy), "{shipped:?}");
    shipped.retain(|path| *path != docker_proxy);
    assert!(shipped.len() >= 9, "{shipped:?}");
    let output = check_config(&shipped);
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    for path in &shipped {
        let name = path.file_name().unwrap().to_string_lossy();
        let service = name.split('.').next().unwrap();
        let line = format!("{}: ok ({service})", path.display());
        assert!(report.contains(&line), "no `{line}` in:\n{report}");
    }
}

#[test]
fn the_docker_proxy_configuration_fails_only_on_the_origin_outside_compose() {
    let output = check_config(&[infra().join(DOCKER_PROXY)]);
    let report = text(&output);
    if output.status.success() {
        // This machine resolves the compose service's name: nothing left to tell apart.
        assert!(report.contains(": ok (proxy)"), "{report}");
        return;
    }
    let problems: Vec<&str> = report
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    assert_eq!(problems.len(), 1, "{report}");
    assert!(
        problems[0].starts_with("origin.addresses[0]: `srs:8081` is not a resolvable"),
        "{report}"
    );
}

#[test]
fn a_recorder_configuration_with_problems_is_reported_under_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recorder.toml");
    std::fs::write(
        &path,
        "[watch]\ndirs = [\"relative\"]\n[jobs]\nworkers = 0\n",
    )
    .unwrap();
    let output = livegate(&["check-config"]).arg(&path).output().unwrap();
    let report = text(&output);
    assert_eq!(output.status.code(), Some(64), "{report}");
    assert!(report.contains("recorder configuration"), "{report}");
    assert!(report.contains("watch.dirs[0]"), "{report}");
    assert!(report.contains("jobs.workers"), "{report}");
}

#[test]
fn the_help_texts_name_every_service_and_port() {
    let up = text(&livegate(&["up", "--help"]).output().unwrap());
    for part in ["proxy", "hooks", "API", "recorder"] {
        assert!(up.contains(part), "`up --help` does not name {part}:\n{up}");
    }
    for port in ["8080", "8085", "8090", "9180", "9185", "9190", "9195"] {
        assert!(up.contains(port), "`up --help` does not list {port}:\n{up}");
    }
    let check = text(&livegate(&["check-config", "--help"]).output().unwrap());
    for part in ["proxy", "hooks", "API", "recorder"] {
        assert!(
            check.contains(part),
            "`check-config --help` does not name {part}:\n{check}"
        );
    }
}
