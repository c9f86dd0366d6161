//! The shipped configurations work together out of the box: every origin config (SRS,
//! ZLMediaKit, nginx-rtmp) calls the hooks service where `infra/hooks.example.toml` listens,
//! serves HTTP where its proxy example looks for it, lays out FLV and HLS where the proxy's
//! routes expect them, and agrees with the proxy on the token policy.
#![allow(
    clippy::unwrap_used,
    reason = "a broken fixture should fail the test loudly"
)]

use std::collections::HashMap;
use std::net::SocketAddr;

use livegate_proxy::route::Kind;
use livegate_tests::nginx_conf::parse_nginx;

fn infra(path: &str) -> String {
    let path = format!("{}/../infra/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {path}: {err}"))
}

fn proxy(file: &str) -> livegate_proxy::Config {
    livegate_proxy::Config::from_toml(&infra(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn hooks() -> livegate_hooks::Config {
    livegate_core::config::from_toml_str(&infra("hooks.example.toml")).unwrap()
}

/// `section.key` → value of an ini file.
fn parse_ini(text: &str) -> HashMap<String, String> {
    let mut section = String::new();
    let mut values = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, value)) = line.split_once('=') {
            values.insert(format!("{section}.{}", key.trim()), value.trim().to_owned());
        }
    }
    values
}

/// The port of a `host:port` or bare `port` listen value.
fn port(listen: &str) -> u16 {
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

/// Every hook URL must name a route of the hooks service at the example's address.
fn check_hook_url(origin: &str, url: &str, hooks: &livegate_hooks::Config) {
    let base = format!("http://{}/api/v1/hook/", hooks.server.listen);
    let route = url
        .strip_prefix(&base)
        .unwrap_or_else(|| panic!("{origin}: {url} does not go to the hooks service at {base}"));
    let route = route.split('?').next().unwrap();
    assert!(
        livegate_hooks::handlers::EVENTS.contains(&route),
        "{origin}: {url} is no hook route"
    );
}

fn origin_port(config: &livegate_proxy::Config) -> u16 {
    let addr: SocketAddr = config.origin.addresses[0].parse().unwrap();
    addr.port()
}

fn routes_as(config: &livegate_proxy::Config, path: &str, kind: Kind) {
    let found = config
        .route_table()
        .unwrap()
        .find(path)
        .unwrap_or_else(|| panic!("{path} is not routed"));
    assert_eq!((found.kind, found.room_id), (kind, Some(42)), "{path}");
}

#[test]
fn the_services_listen_on_separate_ports() {
    let hooks = hooks();
    for file in [
        "proxy.example.toml",
        "proxy.zlmediakit.example.toml",
        "proxy.nginx-rtmp.example.toml",
    ] {
        let proxy = proxy(file);
        let mut ports = vec![
            proxy.server.listen[0].port(),
            proxy.admin.listen.port(),
            origin_port(&proxy),
            hooks.server.listen.port(),
            hooks.server.admin_listen.port(),
        ];
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 5, "{file}: {ports:?}");
        // The proxy verifies tokens with the keys the hooks service verifies RTMP plays with.
        let proxy_keys: Vec<&str> = proxy.token.keys.iter().map(|k| k.expose()).collect();
        let hooks_keys: Vec<&str> = hooks.play.token_keys.iter().map(|k| k.expose()).collect();
        assert_eq!(proxy_keys, hooks_keys, "{file}");
    }
}

/// The shipped origins ask the hooks service about every play: the recorder's snapshot pulls
/// must carry a token it accepts.
#[test]
fn the_recorders_snapshot_pulls_carry_a_token_the_hooks_service_accepts() {
    let hooks = hooks();
    let recorder: livegate_recorder::Config =
        livegate_core::config::from_toml_str(&infra("recorder.example.toml")).unwrap();
    let snapshots = &recorder.pictures.snapshots;
    assert!(snapshots.enabled);
    if hooks.play.require_token {
        assert!(
            snapshots.play_url.contains("{token}"),
            "{}",
            snapshots.play_url
        );
        let key = snapshots.token_key.as_ref().unwrap().expose();
        assert!(
            hooks
                .play
                .token_keys
                .iter()
                .any(|known| known.expose() == key),
            "pictures.snapshots.token_key is none of the hooks service's play.token_keys"
        );
    }
}

#[test]
fn srs_agrees_with_its_proxy_example() {
    let hooks = hooks();
    let proxy = proxy("proxy.example.toml");
    let srs = parse_nginx(&infra("srs/livegate.conf"));
    let http_server = srs.one("http_server");
    assert_eq!(http_server.arg("enabled"), Some("on"));
    assert_eq!(
        port(http_server.arg("listen").unwrap()),
        origin_port(&proxy)
    );
    let vhost = srs.one("vhost");
    let http_hooks = vhost.one("http_hooks");
    assert_eq!(http_hooks.arg("enabled"), Some("on"));
    for hook in &http_hooks.block {
        if hook.name.starts_with("on_") {
            check_hook_url("srs", &hook.args[0], &hooks);
        }
    }
    // on_play stays on for RTMP and WebRTC plays straight at SRS, so proxied plays must
    // carry their token to it.
    assert!(http_hooks.arg("on_play").is_some());
    assert!(proxy.token.forward_to_origin);

    // FLV where SRS mounts it, HLS where it writes it (SRS's defaults when not set).
    let mount = vhost.one("http_remux").arg("mount").unwrap();
    let flv = mount
        .replace("[vhost]/", "/")
        .replace("[app]", "live")
        .replace("[stream]", "42");
    routes_as(&proxy, &flv, Kind::Flv);
    let hls = vhost.one("hls");
    let m3u8 = hls.arg("hls_m3u8_file").unwrap_or("[app]/[stream].m3u8");
    let ts = hls.arg("hls_ts_file").unwrap_or("[app]/[stream]-[seq].ts");
    let fill = |p: &str| {
        format!(
            "/{}",
            p.replace("[app]", "live")
                .replace("[stream]", "42")
                .replace("[seq]", "7")
        )
    };
    routes_as(&proxy, &fill(m3u8), Kind::Playlist);
    routes_as(&proxy, &fill(ts), Kind::Segment);
    // HLS is written into the directory the HTTP server serves.
    assert_eq!(hls.arg("hls_path"), http_server.arg("dir"));
}

#[test]
fn zlmediakit_agrees_with_its_proxy_example() {
    let hooks = hooks();
    let proxy = proxy("proxy.zlmediakit.example.toml");
    let zlm = parse_ini(&infra("zlmediakit/config.ini"));
    let get = |key: &str| zlm.get(key).map(String::as_str).unwrap_or("");
    assert_eq!(
        get("http.port").parse::<u16>().unwrap(),
        origin_port(&proxy)
    );
    for (key, url) in &zlm {
        if key.starts_with("hook.on_") && !url.is_empty() {
            check_hook_url("zlmediakit", url, &hooks);
        }
    }
    assert!(!get("hook.on_play").is_empty());
    assert!(proxy.token.forward_to_origin);
    // ZLMediaKit's fixed layout: /{app}/{stream}.live.flv, /{app}/{stream}/hls.m3u8 and
    // segments in dated sub-directories; its record/ tree is not a stream.
    routes_as(&proxy, "/live/42.live.flv", Kind::Flv);
    routes_as(&proxy, "/live/42/hls.m3u8", Kind::Playlist);
    routes_as(&proxy, "/live/42/2026-12-01/09/29-24_21.ts", Kind::Segment);
    let record = proxy
        .route_table()
        .unwrap()
        .find("/record/live/42/2026-12-01/x.mp4");
    assert!(
        record.as_ref().is_none_or(|r| r.room_id.is_none()),
        "{record:?}"
    );
    // The hooks service talks to ZLMediaKit's API on the same HTTP port, with its secret.
    let api = hooks.zlmediakit.api_url.as_deref().unwrap_or("");
    if !api.is_empty() {
        assert!(api.ends_with(&format!(":{}", get("http.port"))), "{api}");
    }
}

#[test]
fn nginx_rtmp_agrees_with_its_proxy_example() {
    let hooks = hooks();
    let proxy = proxy("proxy.nginx-rtmp.example.toml");
    let nginx = parse_nginx(&infra("nginx-rtmp/nginx.conf"));
    let application = nginx
        .one("rtmp")
        .one("server")
        .all("application")
        .find(|a| a.args == ["live"])
        .unwrap();
    for directive in application.walk() {
        if directive.name.starts_with("on_") {
            check_hook_url("nginx-rtmp", &directive.args[0], &hooks);
        }
    }
    assert!(
        application.arg("on_play").is_some(),
        "RTMP pulls stay gated"
    );
    let hls_path = application.arg("hls_path").unwrap();
    let server = nginx.one("http").one("server");
    assert_eq!(port(server.arg("listen").unwrap()), origin_port(&proxy));
    // HLS is served at /live/, the path the proxy routes and the README's play URLs use.
    let live = server
        .all("location")
        .find(|l| l.args == ["/live/"])
        .expect("a location /live/");
    assert_eq!(
        live.arg("alias").map(|a| a.trim_end_matches('/')),
        Some(hls_path.trim_end_matches('/'))
    );
    routes_as(&proxy, "/live/42.m3u8", Kind::Playlist);
    routes_as(&proxy, "/live/42-3.ts", Kind::Segment);
    assert!(proxy.routes().flv.is_empty(), "nginx-rtmp has no HTTP-FLV");
}
