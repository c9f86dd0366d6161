//! The `livegate-hooks` binary itself.

use std::net::TcpListener;
use std::process::Command;

/// Runs the binary with its listeners on `listen` and `admin`, and returns its exit code and
/// everything it printed.
fn run(listen: &str, admin: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_livegate-hooks"))
        .env("LIVEGATE_HOOKS__SERVER__LISTEN", listen)
        .env("LIVEGATE_HOOKS__SERVER__ADMIN_LISTEN", admin)
        .env("LIVEGATE_HOOKS__PLAY__REQUIRE_TOKEN", "false")
        .env(
            "LIVEGATE_HOOKS__DATABASE__URL",
            format!("sqlite:{}", dir.path().join("hooks.db").display()),
        )
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), printed)
}

#[tokio::test]
async fn a_taken_address_stops_the_binary_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let free = livegate_tests::free_addr().to_string();
    for (listen, admin, key) in [
        (taken_addr.as_str(), free.as_str(), "server.listen"),
        (free.as_str(), taken_addr.as_str(), "server.admin_listen"),
    ] {
        let (listen, admin) = (listen.to_owned(), admin.to_owned());
        let (code, printed) = tokio::task::spawn_blocking(move || run(&listen, &admin))
            .await
            .unwrap();
        assert!(code.is_some_and(|code| code != 0), "{code:?}: {printed}");
        assert!(
            printed.contains(&format!("{key} {taken_addr}: address already in use")),
            "{printed}"
        );
    }
    drop(taken);
}

/// Runs the binary with `args`, the configuration file named by `LIVEGATE_HOOKS_CONFIG` (when
/// given) and the overrides `env`.
fn run_with(args: &[&str], named: Option<&str>, env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_livegate-hooks"));
    command.args(args).env_remove("RUST_LOG");
    match named {
        Some(path) => command.env("LIVEGATE_HOOKS_CONFIG", path),
        None => command.env_remove("LIVEGATE_HOOKS_CONFIG"),
    };
    command.envs(env.iter().copied()).output().unwrap()
}

#[test]
fn the_configuration_comes_from_the_flag_the_variable_or_the_defaults() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/hooks.example.toml");
    for (args, named) in [
        (&["-c", example, "--check-config"][..], None),
        (&["--config", example, "--check-config"][..], None),
        (&["--check-config"][..], Some(example)),
    ] {
        let out = run_with(args, named, &[]);
        assert!(out.status.success(), "{args:?} {named:?}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    }
    // No file: the embedded defaults with overrides are a configuration...
    let out = run_with(
        &["--check-config"],
        None,
        &[("LIVEGATE_HOOKS__PLAY__REQUIRE_TOKEN", "false")],
    );
    assert!(out.status.success(), "{out:?}");
    // ...unless they are not enough, and then the binary says how to give a file.
    let out = run_with(&["--check-config"], None, &[]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for wanted in [
        "play.token_keys",
        "-c/--config FILE",
        "LIVEGATE_HOOKS_CONFIG=FILE",
    ] {
        assert!(stderr.contains(wanted), "{wanted}: {stderr}");
    }
    // A file that does not exist is named.
    let out = run_with(
        &["-c", "/nonexistent/hooks.toml", "--check-config"],
        None,
        &[],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/hooks.toml"));
}

#[test]
fn migrate_applies_the_migrations_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hooks.db");
    let url = format!("sqlite:{}", path.display());
    let out = run_with(
        &["migrate"],
        None,
        &[
            ("LIVEGATE_HOOKS__PLAY__REQUIRE_TOKEN", "false"),
            ("LIVEGATE_HOOKS__DATABASE__URL", &url),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("migrations applied"));
    assert!(path.is_file());
}

#[tokio::test]
async fn sigterm_drains_and_sigint_stops() {
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let (listen, admin) = (livegate_tests::free_addr(), livegate_tests::free_addr());
        let log = std::fs::File::create(dir.path().join("hooks.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_livegate-hooks"))
            .env("LIVEGATE_HOOKS__SERVER__LISTEN", listen.to_string())
            .env("LIVEGATE_HOOKS__SERVER__ADMIN_LISTEN", admin.to_string())
            .env("LIVEGATE_HOOKS__PLAY__REQUIRE_TOKEN", "false")
            .env(
                "LIVEGATE_HOOKS__DATABASE__URL",
                format!("sqlite:{}", dir.path().join("hooks.db").display()),
            )
            .env_remove("LIVEGATE_HOOKS_CONFIG")
            .env_remove("RUST_LOG")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut process = livegate_tests::ChildGuard::new("livegate-hooks", child);
        livegate_tests::wait_for_listener("the hook listener", listen).await;
        livegate_tests::wait_for_listener("the admin listener", admin).await;
        process.signal(signal);
        let status = livegate_tests::wait_until("livegate-hooks to exit", || {
            std::future::ready(process.try_wait())
        })
        .await;
        let printed = std::fs::read_to_string(dir.path().join("hooks.log")).unwrap();
        assert!(status.success(), "SIG{signal}: {status}\n{printed}");
        let stop = if signal == "TERM" { "Drain" } else { "Now" };
        assert!(
            printed.contains(&format!("stop={stop}")),
            "SIG{signal}:\n{printed}"
        );
        assert!(printed.contains("livegate-hooks stopped"), "{printed}");
    }
}
