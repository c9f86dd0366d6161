//! Password hashing with argon2id. Hashing runs on the blocking pool, a bounded number at a
//! time: each costs tens of milliseconds of CPU and megabytes of memory.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand_core::OsRng;
use tokio::sync::Semaphore;

use crate::config::AuthConfig;

/// Why hashing failed (bad parameters, or the blocking pool is gone).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Argon2 refused its parameters or input.
    #[error("argon2: {0}")]
    Argon2(String),
    /// The hashing task did not complete.
    #[error("password hashing task failed")]
    Task,
}

/// Hashes and verifies passwords.
#[derive(Clone)]
pub struct Passwords {
    argon: Arc<Argon2<'static>>,
    /// A hash of a random password, verified against when the username does not exist, so
    /// that a login for an unknown name costs what one for a known name does.
    dummy: Arc<String>,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").finish_non_exhaustive()
    }
}

impl Passwords {
    /// Prepares the hasher from `[auth]` (and hashes the dummy once).
    pub fn new(config: &AuthConfig) -> Result<Self, PasswordError> {
        let params = Params::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            None,
        )
        .map_err(|err| PasswordError::Argon2(err.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut random = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut random);
        let dummy = hash_with(&argon, &hex::encode(random))?;
        // As many hashes at once as there are cores: more only queue inside the pool while
        // holding their memory.
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Ok(Self {
            argon: Arc::new(argon),
            dummy: Arc::new(dummy),
            permits: Arc::new(Semaphore::new(cores)),
        })
    }

    /// The PHC string of `password`.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Task)?;
        let argon = self.argon.clone();
        tokio::task::spawn_blocking(move || hash_with(&argon, &password))
            .await
            .map_err(|_| PasswordError::Task)?
    }

    /// Whether `password` matches `hash`; with no hash (no such user) it checks against the
    /// dummy and answers false, taking as long as a real check.
    pub async fn verify(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Task)?;
        let argon = self.argon.clone();
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.as_str().to_owned());
        let matched = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| argon.verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await
        .map_err(|_| PasswordError::Task)?;
        Ok(real && matched)
    }
}

fn hash_with(argon: &Argon2<'_>, password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| PasswordError::Argon2(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_match() {
        let config = AuthConfig {
            argon2_memory_kib: 1024,
            argon2_iterations: 1,
            ..AuthConfig::default()
        };
        let passwords = Passwords::new(&config).unwrap();
        let hash = passwords.hash("open sesame".to_owned()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let verify =
            |password: &str, hash: Option<String>| passwords.verify(password.to_owned(), hash);
        assert!(verify("open sesame", Some(hash.clone())).await.unwrap());
        assert!(!verify("open sesame!", Some(hash.clone())).await.unwrap());
        // No user: checked against the dummy, never a match.
        assert!(!verify("open sesame", None).await.unwrap());
        assert!(!verify("", Some("not a phc string".to_owned()))
            .await
            .unwrap());
    }
}
