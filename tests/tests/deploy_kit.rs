//! The deployment kit agrees with the services it deploys: every service configuration that
//! `infra/docker/docker-compose.yml` mounts and every one in the `infra/k8s/` ConfigMaps loads
//! with the service's own loader; the configurations agree with each other and with the
//! compose file and manifests on ports, token keys, secrets and the URLs between services;
//! and every metric the Grafana dashboard and the Prometheus alerts use is one the running
//! services (proxy, hooks, API, recorder) export. A real JSON log line of each service carries
//! the fields `docs/runbook.md` documents.
#![allow(
    clippy::unwrap_used,
    reason = "a broken fixture should fail the test loudly"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_yaml::Value;

// The checks, one file each, beside this test's root.
#[path = "deploy_kit/compose.rs"]
mod compose;
#[path = "deploy_kit/k8s.rs"]
mod k8s;
#[path = "deploy_kit/running.rs"]
mod running;
use livegate_tests::nginx_conf::{parse_nginx, Directive};

/// Fields every JSON log line of every service carries (documented in docs/runbook.md).
const LOG_FIELDS: &[&str] = &["timestamp", "level", "target", "message"];

/// What a compose `${VAR…}` or a Kubernetes Secret placeholder stands for here: long enough for
/// any key (JWT keys need 32 bytes) and safe inside a URL.
const STAND_IN: &str = "0123456789abcdef0123456789abcdef";

fn repo_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    let full = repo_path(path);
    std::fs::read_to_string(&full).unwrap_or_else(|err| panic!("read {}: {err}", full.display()))
}

/// A YAML file with its anchors resolved and its merge keys (`<<: *x`) applied, as compose
/// and kubectl read it.
fn yaml(path: &str) -> Value {
    let mut value: Value =
        serde_yaml::from_str(&read(path)).unwrap_or_else(|err| panic!("{path}: {err}"));
    value.apply_merge().unwrap();
    value
}

fn yaml_documents(path: &str) -> Vec<Value> {
    let text = read(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let mut value = <Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|err| panic!("{path}: {err}"));
            value.apply_merge().unwrap();
            value
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

fn strings(value: &Value, what: &str) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("{what} is not a list: {value:?}"))
        .iter()
        .map(|v| str_of(v, what).to_owned())
        .collect()
}

/// The port of `host:port`, `scheme://host:port/…` or a bare port.
fn port_of(text: &str) -> u16 {
    let rest = text.split_once("://").map_or(text, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap();
    authority
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no port in {text}"))
}

/// The host of `host:port` or `scheme://host:port/…`.
fn host_of(text: &str) -> &str {
    let rest = text.split_once("://").map_or(text, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap();
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

/// Every `env:NAME` reference in a configuration, in order.
fn env_refs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("\"env:") {
        let name: String = rest[at + 5..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.push(name);
        rest = &rest[at + 5..];
    }
    out
}

/// Replaces every `"env:NAME"` with the value `env` gives for it, failing when it gives none:
/// a reference nothing provides would stop the service at start.
fn resolve_env_refs(text: &str, what: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    for name in env_refs(text) {
        let value = env
            .get(&name)
            .unwrap_or_else(|| panic!("{what}: env:{name} is not provided to the service"));
        out = out.replace(
            &format!("\"env:{name}\""),
            &toml::Value::String(value.clone()).to_string(),
        );
    }
    out
}

/// Compose interpolation with each variable standing in for its own name and `STAND_IN`
/// (`${A:-x}` gives `x`): what matters here is which variable goes where, and that the result
/// is long enough for a key and safe in a URL.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let end = rest[at..].find('}').unwrap() + at;
        let inner = &rest[at + 2..end];
        match inner.split_once(":-") {
            Some((_, default)) => out.push_str(default),
            None => {
                let name = inner.split([':', '?', '-']).next().unwrap();
                out.push_str(&format!("{name}_{STAND_IN}"));
            }
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The proxy's loader resolves `origin.addresses`, and the compose and cluster names do not
/// resolve here: after checking that the host is the origin's service, the file is loaded
/// with loopback in its place (same port).
fn with_loopback_origin(text: &str, origin_service: &str) -> String {
    let value: toml::Value = toml::from_str(text).unwrap();
    let addresses = value["origin"]["addresses"].as_array().unwrap();
    let mut out = text.to_owned();
    for address in addresses {
        let address = address.as_str().unwrap();
        assert_eq!(
            host_of(address),
            origin_service,
            "origin.addresses: {address}"
        );
        out = out.replace(
            &format!("\"{address}\""),
            &format!("\"127.0.0.1:{}\"", port_of(address)),
        );
    }
    out
}

fn toml_value(text: &str) -> toml::Value {
    toml::from_str(text).unwrap()
}

fn key_refs(value: &toml::Value, section: &str, key: &str) -> Vec<String> {
    value[section][key]
        .as_array()
        .unwrap_or_else(|| panic!("{section}.{key} is not a list"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// What the services' configurations say, wherever they were deployed.
struct Deployed {
    proxy: livegate_proxy::Config,
    hooks: livegate_hooks::Config,
    api: livegate_api::Config,
    /// The raw files, for the references (`env:NAME`) that loading resolves away.
    proxy_raw: toml::Value,
    hooks_raw: toml::Value,
    api_raw: toml::Value,
    recorder_raw: toml::Value,
}

impl Deployed {
    /// The checks that hold for compose and Kubernetes alike. Returns SRS's WebRTC media
    /// port (UDP), which each deployment must expose.
    fn agree(&self, origin_service: &str, srs: &Directive, hooks_host: &str) -> u16 {
        // One key list for everyone: the API signs with the first, the proxy and the hooks
        // service accept the same keys in the same order.
        let proxy_keys = key_refs(&self.proxy_raw, "token", "keys");
        assert_eq!(proxy_keys, key_refs(&self.hooks_raw, "play", "token_keys"));
        assert_eq!(proxy_keys, key_refs(&self.api_raw, "play_token", "keys"));
        assert!(
            proxy_keys.iter().all(|k| k.starts_with("env:")),
            "keys come from secrets"
        );
        let resolved: Vec<&str> = self.proxy.token.keys.iter().map(|k| k.expose()).collect();
        let hooks: Vec<&str> = self
            .hooks
            .play
            .token_keys
            .iter()
            .map(|k| k.expose())
            .collect();
        let api: Vec<&str> = self
            .api
            .play_token
            .keys
            .iter()
            .map(|k| k.expose())
            .collect();
        assert_eq!(resolved, hooks);
        assert_eq!(resolved, api);

        // The origin: the proxy pulls from SRS's HTTP server, SRS calls the hooks service, the
        // hooks service and the API reach SRS's HTTP API.
        let http_server = srs.one("http_server");
        assert_eq!(http_server.arg("enabled"), Some("on"));
        let origin_http = port_of(http_server.arg("listen").unwrap());
        for address in &self.proxy.origin.addresses {
            assert_eq!(port_of(address), origin_http, "proxy origin.addresses");
        }
        assert!(
            self.proxy.token.forward_to_origin,
            "SRS's on_play checks the token"
        );
        let srs_api = format!(
            "http://{origin_service}:{}",
            port_of(srs.one("http_api").arg("listen").unwrap())
        );
        assert_eq!(
            self.hooks.reconcile.srs_api_url.as_deref(),
            Some(srs_api.as_str())
        );
        assert!(
            self.api.origins.iter().any(|o| o.url == srs_api),
            "the API kicks through {srs_api}"
        );
        let base = format!(
            "http://{hooks_host}:{}/api/v1/hook/",
            self.hooks.server.listen.port()
        );
        let http_hooks = srs.one("vhost").one("http_hooks");
        assert_eq!(http_hooks.arg("enabled"), Some("on"));
        let mut hooked = 0;
        for hook in &http_hooks.block {
            if hook.name.starts_with("on_") {
                let url = &hook.args[0];
                let route = url
                    .strip_prefix(&base)
                    .unwrap_or_else(|| panic!("SRS {} {url} does not go to {base}", hook.name));
                assert!(livegate_hooks::handlers::EVENTS.contains(&route), "{url}");
                hooked += 1;
            }
        }
        assert!(
            hooked >= 5,
            "publish, unpublish, play, stop and dvr are hooked"
        );

        // The recorder's snapshots pull from SRS's HTTP server, with a token signed with the
        // first key, as SRS's on_play wants.
        let snapshots = &self.recorder_raw["pictures"]["snapshots"];
        let play_url = snapshots["play_url"]
            .as_str()
            .expect("the recorder sets pictures.snapshots.play_url");
        assert!(
            play_url.starts_with(&format!("http://{origin_service}:{origin_http}/"))
                && play_url.contains("{token}"),
            "{play_url}"
        );
        assert_eq!(
            snapshots["token_key"].as_str(),
            Some(proxy_keys[0].as_str()),
            "pictures.snapshots.token_key"
        );

        // The API's play URLs go to the proxy's paths.
        let table = self.proxy.route_table().unwrap();
        for path in [&self.api.rooms.hls_path, &self.api.rooms.flv_path] {
            let path = path.replace("{room}", "42");
            let found = table
                .find(&path)
                .unwrap_or_else(|| panic!("{path} is not routed"));
            assert_eq!(found.room_id, Some(42), "{path}");
        }

        // Every service on the same database and bus.
        assert_eq!(
            self.hooks.database.url.expose(),
            self.api.database.url.expose()
        );
        assert_eq!(self.hooks.bus.url.expose(), self.api.bus.url.expose());
        let proxy_bus = self
            .proxy
            .bus
            .as_ref()
            .expect("the proxy has a [bus] for revocations");
        assert_eq!(proxy_bus.url.expose(), self.hooks.bus.url.expose());
        assert_eq!(proxy_bus.key_prefix, self.hooks.bus.key_prefix);
        assert_eq!(self.api.bus.key_prefix, self.hooks.bus.key_prefix);
        assert_eq!(
            self.recorder_raw["database"]["url"],
            self.hooks_raw["database"]["url"]
        );
        assert_eq!(
            self.recorder_raw["bus"]["url"],
            self.hooks_raw["bus"]["url"]
        );

        // The recorder watches where SRS records.
        let dvr = srs.one("vhost").one("dvr").arg("dvr_path").unwrap();
        let dvr_dir = Path::new("/usr/local/srs")
            .join(dvr.trim_start_matches("./"))
            .parent()
            .unwrap()
            .to_path_buf();
        let dirs = self.recorder_raw["watch"]["dirs"].as_array().unwrap();
        assert_eq!(dirs[0].as_str().map(PathBuf::from), Some(dvr_dir.clone()));
        // HLS segments are files with final names too: they must stay out of the watched tree.
        let hls = srs.one("vhost").one("hls").arg("hls_path").unwrap();
        let hls_dir = Path::new("/usr/local/srs").join(hls.trim_start_matches("./"));
        assert!(!hls_dir.starts_with(&dvr_dir) && !dvr_dir.starts_with(&hls_dir));

        // WebRTC: the proxy gates the signalling at SRS's API, SRS turns the RTMP publish
        // into WebRTC and names a candidate the deployment provides.
        assert_eq!(
            self.proxy.webrtc.api_port,
            Some(port_of(srs.one("http_api").arg("listen").unwrap())),
            "proxy webrtc.api_port"
        );
        let rtc_server = srs.one("rtc_server");
        assert_eq!(rtc_server.arg("enabled"), Some("on"));
        assert_eq!(rtc_server.arg("candidate"), Some("$CANDIDATE"));
        let rtc = srs.one("vhost").one("rtc");
        assert_eq!(rtc.arg("enabled"), Some("on"));
        assert_eq!(rtc.arg("rtmp_to_rtc"), Some("on"));
        let rtc_port: u16 = rtc_server.arg("listen").unwrap().parse().unwrap();

        // Logs are JSON everywhere, for the shipper.
        for (name, raw) in [
            ("proxy", &self.proxy_raw),
            ("hooks", &self.hooks_raw),
            ("api", &self.api_raw),
            ("recorder", &self.recorder_raw),
        ] {
            assert_eq!(
                raw["log"]["format"].as_str(),
                Some("json"),
                "{name} log.format"
            );
        }
        rtc_port
    }

    fn admin_ports(&self) -> BTreeMap<&'static str, u16> {
        BTreeMap::from([
            ("proxy", self.proxy.admin.listen.port()),
            ("hooks", self.hooks.server.admin_listen.port()),
            ("api", self.api.server.admin_listen.port()),
            (
                "recorder",
                port_of(
                    self.recorder_raw["server"]["admin_listen"]
                        .as_str()
                        .unwrap(),
                ),
            ),
        ])
    }

    /// The shipped port plan.
    fn on_the_port_plan(&self) {
        assert_eq!(self.proxy.server.listen[0].port(), 8080);
        assert_eq!(self.hooks.server.listen.port(), 8085);
        assert_eq!(self.api.server.listen.port(), 8090);
        assert_eq!(
            self.admin_ports(),
            BTreeMap::from([
                ("api", 9190),
                ("hooks", 9185),
                ("proxy", 9180),
                ("recorder", 9195)
            ])
        );
        for addr in [
            self.proxy.server.listen[0],
            self.proxy.admin.listen,
            self.hooks.server.listen,
            self.hooks.server.admin_listen,
            self.api.server.listen,
            self.api.server.admin_listen,
        ] {
            assert!(
                addr.ip().is_unspecified(),
                "{addr}: containers listen on every interface"
            );
        }
    }
}

fn load_proxy(text: &str, what: &str) -> livegate_proxy::Config {
    livegate_proxy::Config::from_toml(text).unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn load<T>(text: &str, what: &str, env_prefix: &str, env: &BTreeMap<String, String>) -> T
where
    T: serde::de::DeserializeOwned + livegate_core::config::Validate,
{
    let overrides = livegate_core::config::EnvSource::from_pairs(env_prefix, env.clone());
    livegate_core::config::from_toml_str_with_env(text, &overrides)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}
