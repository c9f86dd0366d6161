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
    /// `livegate-recorder`.
    Recorder,
}

impl Service {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Service::Proxy => "proxy",
            Service::Hooks => "hooks",
            Service::Api => "api",
            Service::Recorder => "recorder",
        }
    }
}

/// Sections only one service has.
const MARKS: [(Service, &[&str]); 4] = [
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
    (
        Service::Recorder,
        &["watch", "jobs", "remux", "storage", "pictures"],
    ),
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
        return Err("cannot tell which service it configures (no [origin], [token], [callers], [publish], [auth], [rooms], [watch], [storage] … section)".to_owned());
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
        Service::Recorder => livegate_core::config::load_from::<livegate_recorder::Config>(
            Some(path),
            &livegate_core::config::EnvSource::from_process("LIVEGATE_RECORDER__"),
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

    /// The shipped configurations in `dir` whose names end in `suffix`, with the service
    /// each one's name says it is for (`proxy.zlmediakit.example.toml`: the proxy).
    fn shipped(dir: &str, suffix: &str) -> Vec<(std::path::PathBuf, Service)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../infra")
            .join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_string_lossy().ends_with(suffix))
            .map(|path| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let service = [
                    Service::Proxy,
                    Service::Hooks,
                    Service::Api,
                    Service::Recorder,
                ]
                .into_iter()
                .find(|service| name.starts_with(&format!("{}.", service.name())))
                .unwrap_or_else(|| panic!("{name} names no service"));
                (path, service)
            })
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        files
    }

    #[test]
    fn every_example_is_told_apart_and_passes() {
        let examples = shipped("", ".example.toml");
        // One per service at least.
        assert!(examples.len() >= 4, "{examples:?}");
        for (path, service) in examples {
            assert_eq!(check(&path), Ok(service), "{}", path.display());
        }
    }

    #[test]
    fn every_docker_configuration_is_told_apart() {
        // Their secrets come from the environment compose sets: the binary's test checks
        // them whole, with those variables.
        let configs = shipped("docker/config", ".toml");
        assert!(configs.len() >= 4, "{configs:?}");
        for (path, service) in configs {
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(service_of(&text), Ok(service), "{}", path.display());
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
