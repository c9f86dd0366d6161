//! `infra/docker/`: the compose file, the configurations it mounts and the files of the
//! observability profile.

use super::*;

struct Compose {
    doc: Value,
}

impl Compose {
    fn load() -> Compose {
        Compose {
            doc: yaml("infra/docker/docker-compose.yml"),
        }
    }

    fn service(&self, name: &str) -> &Value {
        let service = &self.doc["services"][name];
        assert!(service.is_mapping(), "compose has no service {name}");
        service
    }

    fn has_service(&self, name: &str) -> bool {
        self.doc["services"][name].is_mapping()
    }

    /// The service's environment, interpolated.
    fn env(&self, name: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(map) = self.service(name)["environment"].as_mapping() {
            for (key, value) in map {
                let value = match value {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
                };
                out.insert(str_of(key, "env name").to_owned(), interpolate(&value));
            }
        }
        out
    }

    /// `(source, target)` of the service's volumes.
    fn mounts(&self, name: &str) -> Vec<(String, String)> {
        let volumes = &self.service(name)["volumes"];
        strings(volumes, "volumes")
            .into_iter()
            .map(|v| {
                let mut parts = v.split(':');
                (
                    parts.next().unwrap().to_owned(),
                    parts.next().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// The configuration file a livegate service runs with, read from the repository.
    fn config_text(&self, name: &str) -> String {
        let service = self.service(name);
        let binary = format!("livegate-{name}");
        assert_eq!(strings(&service["entrypoint"], "entrypoint"), [binary]);
        let command = strings(&service["command"], "command");
        assert_eq!(command.len(), 2, "{name}: -c FILE");
        assert_eq!(command[0], "-c");
        let (source, _) = self
            .mounts(name)
            .into_iter()
            .find(|(_, target)| *target == command[1])
            .unwrap_or_else(|| panic!("{name}: {} is not mounted", command[1]));
        let source = source
            .strip_prefix("./")
            .expect("a file beside the compose file");
        read(&format!("infra/docker/{source}"))
    }

    fn published(&self, name: &str) -> Vec<String> {
        match self.service(name)["ports"].as_sequence() {
            Some(_) => strings(&self.service(name)["ports"], "ports"),
            None => Vec::new(),
        }
    }

    fn healthcheck_port(&self, name: &str) -> u16 {
        let test = strings(&self.service(name)["healthcheck"]["test"], "healthcheck");
        let url = test.iter().find(|t| t.starts_with("http://")).unwrap();
        assert!(url.ends_with("/readyz"), "{name}: healthcheck on {url}");
        port_of(url)
    }

    fn seconds(&self, name: &str, key: &str) -> u64 {
        let text = str_of(&self.service(name)[key], key);
        text.strip_suffix('s').unwrap().parse().unwrap()
    }

    fn image(&self, name: &str) -> &str {
        str_of(&self.service(name)["image"], "image")
    }

    fn deployed(&self) -> Deployed {
        let proxy_text = self.config_text("proxy");
        let hooks_text = self.config_text("hooks");
        let api_text = self.config_text("api");
        let recorder_text = self.config_text("recorder");
        let proxy_env = self.env("proxy");
        let hooks_env = self.env("hooks");
        let api_env = self.env("api");
        let recorder_env = self.env("recorder");
        let proxy = load_proxy(
            &with_loopback_origin(&resolve_env_refs(&proxy_text, "proxy", &proxy_env), "srs"),
            "compose proxy.toml",
        );
        let hooks: livegate_hooks::Config = load(
            &resolve_env_refs(&hooks_text, "hooks", &hooks_env),
            "compose hooks.toml",
            "LIVEGATE_HOOKS__",
            &hooks_env,
        );
        let api: livegate_api::Config = load(
            &resolve_env_refs(&api_text, "api", &api_env),
            "compose api.toml",
            "LIVEGATE_API__",
            &api_env,
        );
        // Loaded to prove it loads; the cross-references are checked on the raw file.
        let _: livegate_recorder::Config = load(
            &resolve_env_refs(&recorder_text, "recorder", &recorder_env),
            "compose recorder.toml",
            "LIVEGATE_RECORDER__",
            &recorder_env,
        );
        Deployed {
            proxy,
            hooks,
            api,
            proxy_raw: toml_value(&proxy_text),
            hooks_raw: toml_value(&hooks_text),
            api_raw: toml_value(&api_text),
            recorder_raw: toml_value(&recorder_text),
        }
    }
}

#[test]
fn compose_services_load_their_configs_and_agree() {
    let compose = Compose::load();
    let deployed = compose.deployed();
    deployed.on_the_port_plan();
    let srs = parse_nginx(&read("infra/docker/srs.conf"));
    let rtc_port = deployed.agree("srs", &srs, "hooks");
    assert!(
        compose
            .published("srs")
            .contains(&format!("{rtc_port}:{rtc_port}/udp")),
        "SRS's WebRTC port is published"
    );
    assert!(
        compose.env("srs").contains_key("CANDIDATE"),
        "SRS's WebRTC candidate is set"
    );

    // The compose copy of the SRS config is the shipped one with container names: the same
    // ports and media layout.
    let shipped = parse_nginx(&read("infra/srs/livegate.conf"));
    for (block, key) in [
        ("http_server", "listen"),
        ("http_api", "listen"),
        ("http_server", "dir"),
    ] {
        assert_eq!(
            srs.one(block).arg(key),
            shipped.one(block).arg(key),
            "{block}.{key}"
        );
    }
    assert_eq!(srs.arg("listen"), shipped.arg("listen"));
    for (block, key) in [
        ("http_remux", "mount"),
        ("hls", "hls_path"),
        ("hls", "hls_ctx"),
        ("dvr", "dvr_plan"),
    ] {
        assert_eq!(
            srs.one("vhost").one(block).arg(key),
            shipped.one("vhost").one(block).arg(key),
            "vhost.{block}.{key}"
        );
    }

    // SRS: the official image, the config where the command reads it, recordings on the
    // volume the recorder mounts at the same path.
    assert_eq!(compose.image("srs"), "ossrs/srs:6");
    let srs_command = strings(&compose.service("srs")["command"], "srs command");
    let conf = format!("/usr/local/srs/{}", srs_command.last().unwrap());
    let srs_mounts = compose.mounts("srs");
    assert!(
        srs_mounts.contains(&("./srs.conf".to_owned(), conf.clone())),
        "{conf}"
    );
    let dvr_dir = deployed.recorder_raw["watch"]["dirs"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let recordings = srs_mounts
        .iter()
        .find(|(_, target)| *target == dvr_dir)
        .map(|(source, _)| source.clone())
        .expect("SRS's dvr directory is a volume");
    assert!(compose
        .mounts("recorder")
        .contains(&(recordings.clone(), dvr_dir)));
    let init = compose.mounts("recordings-init");
    assert_eq!(init[0].0, recordings);

    // The hooks service admits SRS's fixed address only, on the compose network's subnet.
    let srs_ip = str_of(
        &compose.service("srs")["networks"]["livegate"]["ipv4_address"],
        "srs address",
    );
    let allowed: Vec<String> = deployed
        .hooks
        .callers
        .allow_cidrs
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(allowed, [format!("{srs_ip}/32")]);
    let subnet: ipnet_like::Net = str_of(
        &compose.doc["networks"]["livegate"]["ipam"]["config"][0]["subnet"],
        "subnet",
    )
    .parse()
    .unwrap();
    assert!(
        subnet.contains(srs_ip.parse().unwrap()),
        "{srs_ip} in the compose subnet"
    );

    // Ports: what each service listens on is what compose publishes and health-checks.
    for (name, admin) in deployed.admin_ports() {
        assert_eq!(compose.healthcheck_port(name), admin, "{name} healthcheck");
        assert!(
            compose
                .published(name)
                .contains(&format!("127.0.0.1:{admin}:{admin}")),
            "{name}: admin port on the host's loopback only"
        );
    }
    let public = deployed.proxy.server.listen[0].port();
    assert!(compose
        .published("proxy")
        .contains(&format!("{public}:{public}")));
    let api = deployed.api.server.listen.port();
    assert!(compose.published("api").contains(&format!("{api}:{api}")));
    let rtmp = port_of(srs.arg("listen").unwrap());
    assert!(compose.published("srs").contains(&format!("{rtmp}:{rtmp}")));
    assert!(compose
        .published("hooks")
        .iter()
        .all(|p| !p.ends_with(":8085")));
    assert_eq!(port_of(&deployed.api.rooms.ingest_host), rtmp);
    assert_eq!(port_of(&deployed.api.rooms.edge_base_url), public);

    // The database every service uses is the MariaDB service's, with its user and database.
    let db = deployed.hooks.database.url.expose();
    let mariadb = compose.env("mariadb");
    let expected = format!(
        "mysql://{}:{}@mariadb:3306/{}",
        mariadb["MARIADB_USER"], mariadb["MARIADB_PASSWORD"], mariadb["MARIADB_DATABASE"]
    );
    assert_eq!(db, expected);
    let bus = deployed.hooks.bus.url.expose();
    assert!(compose.has_service(host_of(bus)), "{bus}");
    assert_eq!(port_of(bus), 6379);

    // The recorder stores into the bucket minio-init makes, with MinIO's credentials.
    let s3 = &deployed.recorder_raw["storage"]["s3"];
    let endpoint = s3["endpoint"].as_str().unwrap();
    assert_eq!(host_of(endpoint), "minio");
    let mc = strings(&compose.service("minio-init")["entrypoint"], "minio-init");
    assert_eq!(
        mc.last().map(String::as_str),
        Some(format!("local/{}", s3["bucket"].as_str().unwrap()).as_str())
    );
    let recorder_env = compose.env("recorder");
    let minio_env = compose.env("minio");
    assert_eq!(
        recorder_env["LIVEGATE_S3_ACCESS_KEY"],
        minio_env["MINIO_ROOT_USER"]
    );
    assert_eq!(
        recorder_env["LIVEGATE_S3_SECRET_KEY"],
        minio_env["MINIO_ROOT_PASSWORD"]
    );

    // Shutdown: compose waits longer than each service's own drain.
    let proxy_drain =
        deployed.proxy.server.grace_period_s + deployed.proxy.server.shutdown_timeout_s;
    assert!(compose.seconds("proxy", "stop_grace_period") > proxy_drain);
    let recorder_grace = deployed.recorder_raw["server"]["shutdown_grace_ms"]
        .as_integer()
        .unwrap() as u64;
    assert!(compose.seconds("recorder", "stop_grace_period") * 1000 > recorder_grace);

    // Start order: a service_healthy dependency has a healthcheck; one-shot services are
    // waited for to complete.
    for (name, service) in compose.doc["services"].as_mapping().unwrap() {
        let name = str_of(name, "service");
        let Some(deps) = service["depends_on"].as_mapping() else {
            continue;
        };
        for (dep, how) in deps {
            let dep = str_of(dep, "dependency");
            let condition = str_of(&how["condition"], "condition");
            match condition {
                "service_healthy" => assert!(
                    compose.service(dep)["healthcheck"].is_mapping(),
                    "{name} waits for {dep} to be healthy, which has no healthcheck"
                ),
                "service_completed_successfully" => assert_eq!(
                    compose.service(dep)["restart"].as_str(),
                    Some("no"),
                    "{dep} runs once"
                ),
                "service_started" => {}
                other => panic!("{name} → {dep}: {other}"),
            }
        }
    }

    // Observability: Prometheus scrapes each service's admin port by its compose name, with
    // the job names the alerts select; Grafana and Vector find their files where compose
    // mounts them.
    let prometheus = yaml("infra/prometheus/prometheus.yml");
    let admin = deployed.admin_ports();
    let mut scraped = BTreeSet::new();
    for job in prometheus["scrape_configs"].as_sequence().unwrap() {
        let name = str_of(&job["job_name"], "job_name");
        let service = name.strip_prefix("livegate-").unwrap();
        for target in strings(&job["static_configs"][0]["targets"], "targets") {
            assert_eq!(host_of(&target), service, "{name}: {target}");
            assert_eq!(
                Some(&port_of(&target)),
                admin.get(service),
                "{name}: {target}"
            );
        }
        scraped.insert(service.to_owned());
    }
    let services: BTreeSet<String> = admin.keys().map(|s| (*s).to_owned()).collect();
    assert_eq!(scraped, services, "every service is scraped");
    let prometheus_mounts = compose.mounts("prometheus");
    assert!(prometheus_mounts.contains(&("../prometheus".to_owned(), "/etc/prometheus".to_owned())));
    assert_eq!(
        strings(&prometheus["rule_files"], "rule_files"),
        ["/etc/prometheus/rules/*.yml"]
    );
    let provider = yaml("infra/grafana/provisioning/dashboards/livegate.yml");
    let dashboards = str_of(&provider["providers"][0]["options"]["path"], "path");
    assert!(compose
        .mounts("grafana")
        .contains(&("../grafana/dashboards".to_owned(), dashboards.to_owned())));
    let vector = yaml("infra/logging/source-docker.yaml");
    let project = str_of(&compose.doc["name"], "name");
    assert_eq!(
        strings(
            &vector["sources"]["docker"]["include_labels"],
            "include_labels"
        ),
        [format!("com.docker.compose.project={project}")]
    );
    let vector_command = strings(&compose.service("vector")["command"], "vector command");
    for file in vector_command.iter().filter(|a| a.starts_with('/')) {
        let name = file.strip_prefix("/etc/vector/").unwrap();
        assert!(
            repo_path(&format!("infra/logging/{name}")).is_file(),
            "{file}"
        );
    }

    // .env.example lists every variable the compose file reads (each config's env:NAME
    // references were checked against its service's environment when it loaded).
    let example = read("infra/docker/.env.example");
    let listed: BTreeSet<&str> = example
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    let raw = read("infra/docker/docker-compose.yml");
    let mut used = BTreeSet::new();
    let mut rest = raw.as_str();
    while let Some(at) = rest.find("${") {
        let name: String = rest[at + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        used.insert(name);
        rest = &rest[at + 2..];
    }
    for name in &used {
        assert!(listed.contains(name.as_str()), ".env.example lacks {name}");
    }
}

/// IPv4 networks, enough for the compose subnet check.
mod ipnet_like {
    use std::net::Ipv4Addr;
    use std::str::FromStr;

    pub(crate) struct Net {
        base: u32,
        mask: u32,
    }

    impl Net {
        pub(crate) fn contains(&self, ip: Ipv4Addr) -> bool {
            u32::from(ip) & self.mask == self.base & self.mask
        }
    }

    impl FromStr for Net {
        type Err = String;
        fn from_str(s: &str) -> Result<Self, String> {
            let (ip, bits) = s.split_once('/').ok_or("no prefix length")?;
            let ip: Ipv4Addr = ip.parse().map_err(|_| "not IPv4")?;
            let bits: u32 = bits.parse().map_err(|_| "bad prefix length")?;
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            Ok(Net {
                base: u32::from(ip),
                mask,
            })
        }
    }
}
