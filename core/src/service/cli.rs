//! The configuration options every binary takes, the same way.

use std::path::PathBuf;

use serde::de::DeserializeOwned;

use crate::config::{self, ConfigError, EnvSource, Validate};

/// `EX_USAGE`: the exit code of a binary whose configuration is missing or unusable.
pub const EX_USAGE: u8 = 64;

/// The options to `#[command(flatten)]` into a binary's command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Configuration file (TOML). `LIVEGATE_<SERVICE>_CONFIG` names one as well, and
    /// `LIVEGATE_<SERVICE>__SECTION__KEY` variables override single keys.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Load and validate the configuration, print `ok`, and exit.
    #[arg(long)]
    pub check_config: bool,
}

/// Whether a service may run without a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDefaults {
    /// Without a file the binary says how to give one and exits 64.
    Refuse,
    /// The service documents that it runs on its defaults (plus environment overrides). When
    /// those are not a usable configuration, the problems are reported together with how to
    /// give a file, and the binary exits 64.
    Run,
}

/// Why a binary cannot start with its configuration; exit with [`ConfigFailure::exit_code`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigFailure {
    /// No file was given and the service needs one.
    #[error(
        "livegate-{service}: no configuration given: pass `-c/--config FILE` or set \
         {variable}=FILE (see infra/{service}.example.toml)"
    )]
    Missing {
        /// The service, e.g. `hooks`.
        service: String,
        /// The variable that names a file, e.g. `LIVEGATE_HOOKS_CONFIG`.
        variable: String,
    },
    /// No file was given, and the defaults with the environment's overrides have problems.
    #[error(
        "livegate-{service}: {source}\nno configuration file was given: pass `-c/--config FILE` \
         or set {variable}=FILE (see infra/{service}.example.toml)"
    )]
    DefaultsInvalid {
        /// The service.
        service: String,
        /// The variable that names a file.
        variable: String,
        /// What is wrong with the defaults.
        #[source]
        source: ConfigError,
    },
    /// The configuration has problems.
    #[error("livegate-{service}: {source}")]
    Invalid {
        /// The service.
        service: String,
        /// What is wrong.
        #[source]
        source: ConfigError,
    },
}

impl ConfigFailure {
    /// The process exit code: 64 (`EX_USAGE`).
    pub fn exit_code(&self) -> u8 {
        EX_USAGE
    }
}

fn upper(service: &str) -> String {
    service.to_ascii_uppercase().replace('-', "_")
}

impl ConfigArgs {
    /// The variable naming the configuration file of `service`: `LIVEGATE_HOOKS_CONFIG`.
    pub fn config_variable(service: &str) -> String {
        format!("LIVEGATE_{}_CONFIG", upper(service))
    }

    /// The prefix of the variables overriding keys of `service`: `LIVEGATE_HOOKS__`.
    pub fn env_prefix(service: &str) -> String {
        format!("LIVEGATE_{}__", upper(service))
    }

    /// Loads the configuration of `service` from the file given by `-c/--config` or
    /// `LIVEGATE_<SERVICE>_CONFIG`, with the environment's overrides.
    pub fn load<T>(&self, service: &str, on_defaults: OnDefaults) -> Result<T, ConfigFailure>
    where
        T: DeserializeOwned + Validate,
    {
        let named = std::env::var(Self::config_variable(service)).ok();
        let env = EnvSource::from_process(&Self::env_prefix(service));
        self.load_with(service, on_defaults, named, &env)
    }

    /// [`ConfigArgs::load`] with the environment given: `named` is the value of
    /// `LIVEGATE_<SERVICE>_CONFIG`, `env` the overrides.
    pub fn load_with<T>(
        &self,
        service: &str,
        on_defaults: OnDefaults,
        named: Option<String>,
        env: &EnvSource,
    ) -> Result<T, ConfigFailure>
    where
        T: DeserializeOwned + Validate,
    {
        let path = self
            .config
            .clone()
            .or_else(|| named.filter(|name| !name.is_empty()).map(PathBuf::from));
        if path.is_none() && on_defaults == OnDefaults::Refuse {
            return Err(ConfigFailure::Missing {
                service: service.to_owned(),
                variable: Self::config_variable(service),
            });
        }
        config::load_from(path.as_deref(), env).map_err(|source| match path {
            Some(_) => ConfigFailure::Invalid {
                service: service.to_owned(),
                source,
            },
            None => ConfigFailure::DefaultsInvalid {
                service: service.to_owned(),
                variable: Self::config_variable(service),
                source,
            },
        })
    }
}
