//! `livegate check-config FILE…`: validates each file as the configuration of the service it
//! is for (told apart by its sections), reporting every problem with its key.

use std::path::Path;

/// Which service a configuration file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `livegate-proxy`.
    Proxy,
    /// `livegate-hooks`.
    Hooks,
    /// `livegate-api`.
    Api,
}

impl Service {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Service::Proxy => "proxy",
            Service::Hooks => "hooks",
            Service::Api => "api",
        }
    }
}

/// Sections only one service has.
const MARKS: [(Service, &[&str]); 3] = [
    (
        Service::Proxy,
        &[
            "origin", "token", "routes", "playlist", "flv", "cache", "cdn", "webrtc",
        ],
    ),
    (
        Service::Hooks,
        &[
            "callers",
            "publish",
            "play",
            "outbox",
            "reconcile",
            "zlmediakit",
            "nginx_rtmp",
        ],
    ),
    (Service::Api, &["auth", "rooms", "play_token", "origins"]),
];

/// Guesses the service from the file's top-level sections.
pub fn service_of(text: &str) -> Result<Service, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|err: toml::de::Error| err.message().to_owned())?;
    let score = |marks: &[&str]| {
        marks
            .iter()
            .filter(|mark| table.contains_key(**mark))
            .count()
    };
    let (service, best) = MARKS
        .iter()
        .map(|(service, marks)| (*service, score(marks)))
        .max_by_key(|(_, score)| *score)
        .unwrap_or((Service::Proxy, 0));
    if best == 0 {
        return Err("cannot tell which service it configures (no [origin], [token], [callers], [publish], [auth], [rooms] … section)".to_owned());
    }
    Ok(service)
}

/// Checks one file: which service it is for, or every problem found.
pub fn check(path: &Path) -> Result<Service, String> {
    let text = std::fs::read_to_string(path).map_err(|err| err.to_string())?;
    let service = service_of(&text)?;
    let parsed = match service {
        Service::Proxy => livegate_core::config::load_from::<livegate_proxy::Config>(
            Some(path),
            &livegate_core::config::EnvSource::from_process("LIVEGATE_PROXY__"),
        )
        .map(drop),
        Service::Hooks => livegate_core::config::load_from::<livegate_hooks::Config>(
            Some(path),
            &livegate_core::config::EnvSource::from_process("LIVEGATE_HOOKS__"),
        )
        .map(drop),
        Service::Api => livegate_core::config::load_from::<livegate_api::Config>(
            Some(path),
            &livegate_core::config::EnvSource::from_process("LIVEGATE_API__"),
        )
        .map(drop),
    };
    parsed
        .map(|()| service)
        .map_err(|err| format!("{} configuration: {err}", service.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_examples_are_told_apart_and_pass() {
        let infra = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra");
        for (file, service) in [
            ("proxy.example.toml", Service::Proxy),
            ("proxy.zlmediakit.example.toml", Service::Proxy),
            ("hooks.example.toml", Service::Hooks),
            ("api.example.toml", Service::Api),
        ] {
            assert_eq!(check(&infra.join(file)), Ok(service), "{file}");
        }
    }

    #[test]
    fn problems_name_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[origin]\naddresses = []\n[token]\nkeys = []\n").unwrap();
        let error = check(&path).unwrap_err();
        assert!(
            error.contains("origin.addresses") && error.contains("token.keys"),
            "{error}"
        );
        std::fs::write(&path, "[nothing]\n").unwrap();
        assert!(check(&path).unwrap_err().contains("cannot tell"));
    }
}
