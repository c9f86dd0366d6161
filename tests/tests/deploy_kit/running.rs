//! The running services: the metrics the dashboard and the alerts use, their log lines, and
//! the runbook sections the alerts link to.

use livegate_tests::{free_port, wait_until, ChildGuard};

use super::*;

/// Every `livegate_…` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(found) = text[at..].find("livegate_") {
        let start = at + found;
        let boundary = start == 0 || {
            let c = bytes[start - 1];
            !(c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'/' || c == b'.')
        };
        let end = start
            + text[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(text.len() - start);
        if boundary && text[start..end].len() > "livegate_".len() {
            out.insert(text[start..end].to_owned());
        }
        at = end;
    }
    out
}

/// The PromQL of the dashboard and of the alert rules, with where each came from.
fn queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("infra/grafana/dashboards/livegate.json")).unwrap();
    let mut stack = vec![&dashboard];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    if key == "expr" || key == "query" || key == "definition" {
                        if let Some(s) = v.as_str() {
                            out.push(("dashboard".to_owned(), s.to_owned()));
                        }
                    }
                    stack.push(v);
                }
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    let rules = yaml("infra/prometheus/rules/livegate.yml");
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
            out.push((
                format!("alert {name}"),
                str_of(&rule["expr"], "expr").to_owned(),
            ));
        }
    }
    out
}

/// The sample names a `/metrics` page offers: counters as `_total`, histograms as
/// `_bucket`/`_sum`/`_count`, from the `# TYPE` lines (present even for a family that has
/// no sample yet, such as a counter of refusals that never happened).
fn exported(page: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in page.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                out.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                out.insert(name.to_owned());
            }
        }
    }
    out
}

/// The directory cargo puts this profile's binaries in (`target/debug`), found from this test's
/// own path (`target/debug/deps/deploy_kit-…`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Builds the service binaries in this test's own profile and target directory (a no-op when
/// they are fresh, as after `cargo test --workspace`): they are not this package's, so cargo
/// does not build them for it.
fn build_services() -> PathBuf {
    let profile = profile_dir();
    let target = profile.parent().unwrap();
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(repo_path(""))
        .args([
            "build",
            "--locked",
            "-p",
            "livegate-proxy",
            "-p",
            "livegate-hooks",
            "-p",
            "livegate-api",
            "-p",
            "livegate-recorder",
        ])
        .arg("--target-dir")
        .arg(target);
    if profile.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build of the service binaries failed"
    );
    profile
}

struct Running {
    name: &'static str,
    admin: SocketAddr,
    log: PathBuf,
    child: std::sync::Mutex<ChildGuard>,
}

impl Running {
    /// Fails the test with the service's log if it has exited (a port another process took
    /// between `free_port` and its start, a configuration it refused).
    fn assert_alive(&self) {
        let exited = self.child.lock().unwrap().try_wait();
        if let Some(status) = exited {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("livegate-{} exited ({status}):\n{log}", self.name);
        }
    }
}

fn start(bin: &Path, name: &'static str, dir: &Path, config: &str, admin: SocketAddr) -> Running {
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config).unwrap();
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(bin.join(format!("livegate-{name}")))
        .arg("-c")
        .arg(&config_path)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|err| panic!("start livegate-{name}: {err}"));
    Running {
        name,
        admin,
        log,
        child: std::sync::Mutex::new(ChildGuard::new(name, child)),
    }
}

async fn metrics_page(client: &reqwest::Client, running: &Running) -> String {
    let url = format!("http://{}/metrics", running.admin);
    wait_until(
        &format!("livegate-{} to answer {url}", running.name),
        || {
            running.assert_alive();
            let request = client.get(&url).send();
            async move {
                let response = request.await.ok()?;
                if !response.status().is_success() {
                    return None;
                }
                response.text().await.ok()
            }
        },
    )
    .await
}

/// The JSON objects among the service's log lines, once there is one.
async fn json_log_lines(running: &Running) -> Vec<serde_json::Value> {
    wait_until(
        &format!("a JSON log line of livegate-{}", running.name),
        || {
            running.assert_alive();
            let text = std::fs::read_to_string(&running.log).unwrap_or_default();
            let objects: Vec<serde_json::Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(serde_json::Value::is_object)
                .collect();
            async move { (!objects.is_empty()).then_some(objects) }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_use_exported_metrics_and_logs_have_the_documented_fields() {
    let bin = build_services();
    let dir = tempfile::tempdir().unwrap();
    let key = "deploy-kit-test-key";
    let db = format!("sqlite:{}", dir.path().join("livegate.db").display());
    let ports: Vec<u16> = (0..8).map(|_| free_port()).collect();
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let json_log = "[log]\nformat = \"json\"\nfilter = \"info\"\n";

    // Hooks first: it creates the database the API shares.
    let hooks = start(
        &bin,
        "hooks",
        dir.path(),
        &format!(
            "[server]\nlisten = \"{}\"\nadmin_listen = \"{}\"\n[database]\nurl = \"{db}\"\n\
             [play]\ntoken_keys = [\"{key}\"]\n{json_log}",
            addr(ports[0]),
            addr(ports[1])
        ),
        addr(ports[1]),
    );
    let client = reqwest::Client::new();
    let hooks_page = metrics_page(&client, &hooks).await;
    let api = start(
        &bin,
        "api",
        dir.path(),
        &format!(
            "[server]\nlisten = \"{}\"\nadmin_listen = \"{}\"\n[database]\nurl = \"{db}\"\n\
             [auth]\njwt_keys = [\"{STAND_IN}\"]\n[play_token]\nkeys = [\"{key}\"]\n\
             [[origins]]\nkind = \"srs\"\nurl = \"http://127.0.0.1:{}\"\n{json_log}",
            addr(ports[2]),
            addr(ports[3]),
            ports[6]
        ),
        addr(ports[3]),
    );
    // The origin address only has to resolve; the proxy runs unready without one.
    let proxy = start(
        &bin,
        "proxy",
        dir.path(),
        &format!(
            "[server]\nlisten = [\"{}\"]\npid_file = \"{}\"\nupgrade_sock = \"{}\"\n\
             [admin]\nlisten = \"{}\"\n[origin]\naddresses = [\"{}\"]\n\
             [token]\nkeys = [\"{key}\"]\n{json_log}",
            addr(ports[4]),
            dir.path().join("proxy.pid").display(),
            dir.path().join("proxy.sock").display(),
            addr(ports[5]),
            addr(ports[6])
        ),
        addr(ports[5]),
    );
    // The recorder on its embedded kind of storage (a local directory): what it exports does
    // not depend on where recordings go.
    let recorder_dir = dir.path().join("recorder");
    let recorder = start(
        &bin,
        "recorder",
        dir.path(),
        &format!(
            "[server]\nadmin_listen = \"{}\"\n[database]\nurl = \"sqlite:{}\"\n\
             [watch]\ndirs = [\"{}\"]\n[remux]\nwork_dir = \"{}\"\nfailed_dir = \"{}\"\n\
             [storage]\nkind = \"local\"\n[storage.local]\ndir = \"{}\"\n{json_log}",
            addr(ports[7]),
            dir.path().join("recorder.db").display(),
            recorder_dir.join("watched").display(),
            recorder_dir.join("work").display(),
            recorder_dir.join("failed").display(),
            recorder_dir.join("stored").display(),
        ),
        addr(ports[7]),
    );
    let api_page = metrics_page(&client, &api).await;
    let proxy_page = metrics_page(&client, &proxy).await;
    let recorder_page = metrics_page(&client, &recorder).await;

    let mut available = exported(&proxy_page);
    available.extend(exported(&hooks_page));
    available.extend(exported(&api_page));
    available.extend(exported(&recorder_page));
    for service in ["proxy", "hooks", "api", "recorder"] {
        assert!(
            available
                .iter()
                .any(|m| m.starts_with(&format!("livegate_{service}_"))),
            "no livegate_{service}_ metric exported"
        );
    }

    let mut used = BTreeSet::new();
    let mut missing = Vec::new();
    for (source, query) in queries() {
        for name in metric_names(&query) {
            if !available.contains(&name) {
                missing.push(format!("{source}: {name}"));
            }
            used.insert(name);
        }
    }
    assert!(missing.is_empty(), "metrics nobody exports: {missing:#?}");
    // Each service is watched by the dashboard or an alert.
    for service in ["proxy", "hooks", "api", "recorder"] {
        assert!(
            used.iter()
                .any(|m| m.starts_with(&format!("livegate_{service}_"))),
            "no rule or panel uses a livegate_{service}_ metric"
        );
    }
    assert!(
        used.len() > 20,
        "the dashboard and alerts use {} metrics",
        used.len()
    );

    // Every service's log lines are JSON objects with the documented fields.
    let runbook = read("docs/runbook.md");
    for field in LOG_FIELDS {
        assert!(
            runbook.contains(&format!("`{field}`")),
            "docs/runbook.md does not document `{field}`"
        );
    }
    for running in [&hooks, &api, &proxy, &recorder] {
        let lines = json_log_lines(running).await;
        for line in &lines {
            for field in LOG_FIELDS {
                assert!(
                    line.get(field).is_some(),
                    "{}: no `{field}` in {line}",
                    running.name
                );
            }
        }
        // Nothing in the log is a key.
        let text = std::fs::read_to_string(&running.log).unwrap();
        assert!(
            !text.contains(key) && !text.contains(STAND_IN),
            "{}: a key in the log",
            running.name
        );
    }
}

/// GitHub's anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_alert_links_to_a_runbook_section() {
    let runbook = read("docs/runbook.md");
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(anchor)
        .collect();
    let rules = yaml("infra/prometheus/rules/livegate.yml");
    let mut alerts = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = str_of(&rule["alert"], "alert");
            let link = str_of(&rule["annotations"]["runbook"], "runbook");
            let section = link
                .strip_prefix("docs/runbook.md#")
                .unwrap_or_else(|| panic!("{name}: {link}"));
            assert!(
                anchors.contains(section),
                "{name}: no section #{section} in docs/runbook.md"
            );
            alerts += 1;
        }
    }
    assert!(alerts > 10, "{alerts} alerts");
}
