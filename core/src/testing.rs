//! What a test needs from its surroundings, said once: a test that needs MariaDB, Redis or a
//! tool calls [`mysql_url`], [`redis_url`] or [`tool`] instead of reading the environment.
//!
//! When the component is there, the helper hands it over. When it is missing the test must
//! not pass by doing nothing: under `CI=true`, or when any `LIVEGATE_TEST_*_URL` variable is
//! set (someone meant to test against real components), the helper fails the test with what
//! to set. Otherwise (a developer's quick local run) it prints that the test skipped and why,
//! so the skip is visible in `cargo test -- --nocapture` and in the failure-free summary of
//! `--show-output`, and returns `None`.
//!
//! Only compiled with the `testing` feature: production builds never read these variables.

/// Environment variable naming the MariaDB/MySQL server for tests.
pub const MYSQL_URL_VAR: &str = "LIVEGATE_TEST_MYSQL_URL";
/// Environment variable naming the Redis server for tests.
pub const REDIS_URL_VAR: &str = "LIVEGATE_TEST_REDIS_URL";

/// How to provide the components, for messages.
const HOW: &str = "run `eval \"$(infra/ci/services.sh)\"` first, or use infra/test.sh";

/// Whether a missing component fails the test instead of skipping it.
pub fn strict() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    ci || std::env::vars().any(|(name, value)| {
        name.starts_with("LIVEGATE_TEST_") && name.ends_with("_URL") && !value.is_empty()
    })
}

/// The MariaDB/MySQL server URL for tests (see the module documentation for what happens
/// when it is missing).
pub fn mysql_url() -> Option<String> {
    url(MYSQL_URL_VAR, "MariaDB")
}

/// The Redis server URL for tests (see the module documentation for what happens when it is
/// missing).
pub fn redis_url() -> Option<String> {
    url(REDIS_URL_VAR, "Redis")
}

fn url(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => missing(&format!("{what} ({var} is not set; {HOW})")),
    }
}

/// Whether an executable is on `PATH` (see the module documentation for what happens when it
/// is not).
pub fn tool(name: &str) -> Option<()> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    if found {
        Some(())
    } else {
        missing(&format!("`{name}` (not on PATH; .ci/run installs it)"))
    }
}

/// Reports that `what` is missing: fails the test when [`strict`], else prints a visible skip
/// line naming the test and returns `None`. Also for a missing server feature (e.g. a MariaDB
/// version without a function the test needs).
pub fn missing<T>(what: &str) -> Option<T> {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    if strict() {
        panic!("{test} needs {what}");
    }
    eprintln!("SKIPPED {test}: needs {what}");
    None
}
