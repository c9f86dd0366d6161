//! The `livegate-api` binary: configuration checks, migrations, and the first admin from the
//! command line or the configuration.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use livegate_api::config::FirstAdmin;
use livegate_api::App;
use livegate_core::db::{users, Database, DbConfig};
use livegate_core::Secret;

use crate::support::test_config;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/api.example.toml");

fn run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_livegate-api"))
        .args(args)
        .env_remove("LIVEGATE_API_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_example_checks_and_no_configuration_is_refused() {
    let out = run(&["-c", EXAMPLE, "--check-config"], &[], "");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    let out = run(&["--check-config"], &[], "");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("LIVEGATE_API_CONFIG=FILE"));
}

async fn role_of(url: &str, username: &str) -> Option<String> {
    let db = Database::connect(&DbConfig {
        url: Secret::new(url),
        ..DbConfig::default()
    })
    .await
    .unwrap();
    users::by_username(&db, username)
        .await
        .unwrap()
        .map(|user| user.role)
}

#[tokio::test]
async fn admin_create_reads_the_password_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("api.db").display());
    let env = [("LIVEGATE_API__DATABASE__URL", url.as_str())];
    let out = run(
        &["-c", EXAMPLE, "admin", "create", "--username", "root"],
        &env,
        "a long enough password\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("created admin root"));
    assert_eq!(role_of(&url, "root").await.as_deref(), Some("admin"));
    // Twice: refused, with the reason.
    let out = run(
        &["-c", EXAMPLE, "admin", "create", "--username", "root"],
        &env,
        "a long enough password\n",
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{out:?}"
    );
    // A short password is refused before anything is stored.
    let out = run(
        &["-c", EXAMPLE, "admin", "create", "--username", "root2"],
        &env,
        "short\n",
    );
    assert!(!out.status.success());
    assert_eq!(role_of(&url, "root2").await, None);
}

#[tokio::test]
async fn the_first_admin_comes_from_the_configuration_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("api.db").display());
    let mut config = test_config();
    config.database.url = Secret::new(url.clone());
    config.auth.first_admin = Some(FirstAdmin {
        username: "boss".to_owned(),
        password: Secret::new("a long enough password"),
    });
    let app = App::build(config.clone()).await.unwrap();
    drop(app);
    assert_eq!(role_of(&url, "boss").await.as_deref(), Some("admin"));
    // A restart finds it and changes nothing.
    App::build(config).await.unwrap();
}
