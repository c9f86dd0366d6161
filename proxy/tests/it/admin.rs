//! The admin port and the command line.

use std::process::Command;

use livegate_tests::free_addr;

use crate::support::{client, ProxyBuilder};

#[tokio::test]
async fn health_readiness_and_metrics() {
    let origin = livegate_tests::nginx::Nginx::start(
        "",
        "server { listen {listen}; location / { return 200; } }",
    );
    origin.ready().await;
    let proxy = ProxyBuilder::new(origin.addr).start().await;
    let get = |path: &'static str| {
        let url = format!("http://{}{path}", proxy.admin);
        async move { client().get(url).send().await.unwrap() }
    };
    assert_eq!(get("/healthz").await.status(), 200);
    let ready = get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert_eq!(
        ready.text().await.unwrap(),
        r#"{"ready":true,"checks":{"origin":"ok"}}"#
    );
    let metrics = get("/metrics").await.text().await.unwrap();
    for name in [
        "livegate_proxy_requests_total",
        "livegate_proxy_token_rejections_total",
        "livegate_proxy_upstream_latency_seconds",
        "livegate_proxy_flv_sessions_active",
        "livegate_proxy_sent_bytes_total",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
    assert_eq!(get("/nope").await.status(), 404);
}

#[test]
fn the_configuration_comes_from_the_flag_or_the_variable_and_is_required() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/proxy.example.toml");
    let run = |args: &[&str], variable: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_livegate-proxy"));
        command.args(args).arg("--check-config");
        match variable {
            Some(path) => command.env("LIVEGATE_PROXY_CONFIG", path),
            None => command.env_remove("LIVEGATE_PROXY_CONFIG"),
        };
        command.output().unwrap()
    };
    for (args, variable) in [
        (&["-c", example][..], None),
        (&["--config", example][..], None),
        (&[][..], Some(example)),
    ] {
        let out = run(args, variable);
        assert!(out.status.success(), "{args:?} {variable:?}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    }
    // Neither: the proxy says how to give one.
    let out = run(&[], None);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("-c/--config FILE"), "{stderr}");
    assert!(stderr.contains("LIVEGATE_PROXY_CONFIG=FILE"), "{stderr}");
}

fn check_config(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_livegate-proxy"))
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap()
}

#[test]
fn check_config_accepts_the_example_and_names_bad_keys() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/proxy.example.toml"
    ))
    .unwrap();
    let ok = check_config(&example);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "ok");

    let wrong_type = check_config(&example.replace("leeway_s = 0", "leeway_s = \"soon\""));
    assert_eq!(wrong_type.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&wrong_type.stderr).contains("token.leeway_s"));

    let typo =
        check_config(&example.replace("max_bytes = 1048576", "max_bytes = 1048576\nmax_byts = 1"));
    assert_eq!(typo.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("max_byts"));

    let key_as_string = check_config(&example.replace(
        "keys = [\"livegate-dev-key-change-me\"]",
        "keys = \"livegate-dev-key-change-me\"",
    ));
    assert_eq!(key_as_string.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&key_as_string.stderr);
    assert!(stderr.contains("token.keys"), "{stderr}");
    assert!(
        !stderr.contains("livegate-dev-key-change-me"),
        "a key was printed: {stderr}"
    );

    let semantic = example.replace(
        "addresses = [\"127.0.0.1:8081\"]",
        &format!("addresses = []\n# {}", free_addr()),
    );
    let out = check_config(&semantic);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("origin.addresses"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("livegate-dev-key-change-me"));
}
