//! `infra/k8s/`: the manifests and the configurations in their ConfigMaps.

use super::*;

struct Cluster {
    objects: Vec<Value>,
}

impl Cluster {
    fn load() -> Cluster {
        let mut objects = Vec::new();
        let dir = repo_path("infra/k8s");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
            .collect();
        files.sort();
        for file in files {
            let name = file.file_name().unwrap().to_str().unwrap().to_owned();
            objects.extend(yaml_documents(&format!("infra/k8s/{name}")));
        }
        // Every manifest is listed in the kustomization.
        let kustomization = yaml("infra/k8s/kustomization.yaml");
        let listed = strings(&kustomization["resources"], "resources");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".yaml") && name != "kustomization.yaml" {
                assert!(
                    listed.contains(&name),
                    "kustomization.yaml does not list {name}"
                );
            }
        }
        Cluster { objects }
    }

    fn find(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| {
                o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name)
            })
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    fn config(&self, map: &str, key: &str) -> String {
        str_of(&self.find("ConfigMap", map)["data"][key], key).to_owned()
    }

    fn secret_env(&self) -> BTreeMap<String, String> {
        let secret = self.find("Secret", "livegate-secrets");
        secret["stringData"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let value = str_of(v, "secret").replace("REPLACE-openssl-rand-hex-32", STAND_IN);
                (
                    str_of(k, "secret").to_owned(),
                    value.replace("REPLACE", STAND_IN),
                )
            })
            .collect()
    }

    fn container<'a>(&'a self, deployment: &str) -> &'a Value {
        &self.find("Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]
    }

    fn service_port(&self, service: &str, port: u16) -> bool {
        self.find("Service", service)["spec"]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p["port"].as_u64() == Some(u64::from(port)))
    }

    fn deployed(&self) -> Deployed {
        let env = self.secret_env();
        let proxy_text = self.config("livegate-config", "proxy.toml");
        let hooks_text = self.config("livegate-config", "hooks.toml");
        let api_text = self.config("livegate-config", "api.toml");
        let recorder_text = self.config("livegate-config", "recorder.toml");
        let none = BTreeMap::new();
        let proxy = load_proxy(
            &with_loopback_origin(&resolve_env_refs(&proxy_text, "proxy", &env), "srs"),
            "k8s proxy.toml",
        );
        let hooks = load(
            &resolve_env_refs(&hooks_text, "hooks", &env),
            "k8s hooks.toml",
            "LIVEGATE_HOOKS__",
            &none,
        );
        let api = load(
            &resolve_env_refs(&api_text, "api", &env),
            "k8s api.toml",
            "LIVEGATE_API__",
            &none,
        );
        let _: livegate_recorder::Config = load(
            &resolve_env_refs(&recorder_text, "recorder", &env),
            "k8s recorder.toml",
            "LIVEGATE_RECORDER__",
            &none,
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

fn port_named(container: &Value, name: &str) -> u16 {
    let port = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container port {name}"));
    u16::try_from(port["containerPort"].as_u64().unwrap()).unwrap()
}

#[test]
fn k8s_configmaps_load_and_agree_with_the_manifests() {
    let cluster = Cluster::load();
    let deployed = cluster.deployed();
    deployed.on_the_port_plan();
    let srs = parse_nginx(&cluster.config("srs-config", "livegate.conf"));
    let rtc_port = deployed.agree("srs", &srs, "livegate-hooks");
    // WebRTC media reaches SRS from outside the cluster, at the candidate it is given.
    let origin = cluster.container("srs");
    assert_eq!(port_named(origin, "webrtc"), rtc_port);
    let udp = |ports: &Value| {
        ports.as_sequence().unwrap().iter().any(|p| {
            p["protocol"].as_str() == Some("UDP")
                && (p["containerPort"].as_u64() == Some(u64::from(rtc_port))
                    || p["port"].as_u64() == Some(u64::from(rtc_port)))
        })
    };
    assert!(udp(&origin["ports"]), "the origin's WebRTC port is UDP");
    let media = cluster.find("Service", "srs-webrtc");
    assert!(
        udp(&media["spec"]["ports"]),
        "srs-webrtc carries UDP {rtc_port}"
    );
    assert_eq!(media["spec"]["type"].as_str(), Some("LoadBalancer"));
    assert!(
        origin["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|e| e["name"].as_str() == Some("CANDIDATE")),
        "SRS's WebRTC candidate is set"
    );

    // Services carry the ports the configurations use between services.
    assert!(cluster.service_port(
        "srs",
        port_of(srs.one("http_server").arg("listen").unwrap())
    ));
    assert!(cluster.service_port("srs", port_of(srs.one("http_api").arg("listen").unwrap())));
    assert!(cluster.service_port("livegate-hooks", deployed.hooks.server.listen.port()));
    assert!(cluster.service_port("livegate-proxy", deployed.proxy.server.listen[0].port()));
    assert!(cluster.service_port("livegate-api", deployed.api.server.listen.port()));
    assert!(cluster.service_port("srs-rtmp", port_of(srs.arg("listen").unwrap())));

    for (name, admin) in deployed.admin_ports() {
        let deployment = format!("livegate-{name}");
        let container = cluster.container(&deployment);
        let command = strings(&container["command"], "command");
        assert_eq!(
            command,
            [
                deployment.clone(),
                "-c".to_owned(),
                format!("/etc/livegate/{name}.toml")
            ]
        );
        let mount = container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(command[2].as_str()))
            .unwrap_or_else(|| panic!("{deployment}: {} is not mounted", command[2]));
        assert_eq!(
            mount["subPath"].as_str(),
            Some(format!("{name}.toml").as_str())
        );
        // Secrets reach the container as the env:NAME references expect.
        assert_eq!(
            container["envFrom"][0]["secretRef"]["name"].as_str(),
            Some("livegate-secrets"),
            "{deployment}"
        );
        // Probes and scraping on the admin port.
        assert_eq!(port_named(container, "admin"), admin, "{deployment}");
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz")
        );
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/healthz")
        );
        let template = &cluster.find("Deployment", &deployment)["spec"]["template"];
        assert_eq!(
            template["metadata"]["annotations"]["prometheus.io/port"].as_str(),
            Some(admin.to_string().as_str())
        );
        assert!(
            container["resources"]["requests"]["cpu"].is_string(),
            "{deployment}"
        );
        assert!(
            container["resources"]["requests"]["memory"].is_string(),
            "{deployment}"
        );
    }

    // FLV viewers drain before the kubelet kills the proxy.
    let proxy_pod = &cluster.find("Deployment", "livegate-proxy")["spec"]["template"]["spec"];
    let grace = proxy_pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let pre_stop: u64 = strings(
        &cluster.container("livegate-proxy")["lifecycle"]["preStop"]["exec"]["command"],
        "preStop",
    )[1]
    .parse()
    .unwrap();
    assert!(
        grace
            > pre_stop
                + deployed.proxy.server.grace_period_s
                + deployed.proxy.server.shutdown_timeout_s,
        "terminationGracePeriodSeconds {grace}"
    );
    assert!(cluster
        .find("HorizontalPodAutoscaler", "livegate-proxy")
        .is_mapping());
    assert!(cluster
        .find("PodDisruptionBudget", "livegate-proxy")
        .is_mapping());

    // The recorder mounts the origin's recordings volume where the origin writes it.
    let dvr_dir = deployed.recorder_raw["watch"]["dirs"][0].as_str().unwrap();
    let claim_at = |deployment: &str| -> String {
        let pod = &cluster.find("Deployment", deployment)["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let mount = container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(dvr_dir))
            .unwrap_or_else(|| panic!("{deployment} does not mount {dvr_dir}"));
        let volume = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        str_of(&volume["persistentVolumeClaim"]["claimName"], "claim").to_owned()
    };
    assert_eq!(claim_at("srs"), claim_at("livegate-recorder"));
    let claim = cluster.find("PersistentVolumeClaim", &claim_at("srs"));
    assert_eq!(
        strings(&claim["spec"]["accessModes"], "accessModes"),
        ["ReadWriteMany"]
    );

    // Every env:NAME of every configuration is a key of the Secret (resolve_env_refs above
    // fails otherwise); and the Secret has no key nothing uses.
    let mut used = BTreeSet::new();
    for key in ["proxy.toml", "hooks.toml", "api.toml", "recorder.toml"] {
        used.extend(env_refs(&cluster.config("livegate-config", key)));
    }
    let provided: BTreeSet<String> = cluster.secret_env().into_keys().collect();
    assert_eq!(used, provided);
}
