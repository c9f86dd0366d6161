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
            printed.contains(&format!("cannot listen on {taken_addr} ({key})")),
            "{printed}"
        );
    }
    drop(taken);
}
