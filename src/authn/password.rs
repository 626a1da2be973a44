//! Password hashing: argon2id over HMAC-SHA256(pepper, password), and verification of
//! imported legacy hashes (bcrypt, PBKDF2-SHA256) that are re-hashed at the next
//! successful sign-in.
//!
//! Hashing is CPU- and memory-heavy, so it runs on the blocking pool behind a
//! semaphore; unknown users are verified against a dummy hash so that every
//! failed sign-in costs the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::config::Argon2Config;
use crate::domain::Password;

/// What a stored hash says about a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    Valid { needs_rehash: bool },
    Invalid,
}

/// The hashing scheme of a stored hash, as reported by `oxidp user show`.
pub fn scheme_of(stored: &str) -> &'static str {
    if stored.starts_with("$argon2id$") {
        "argon2id"
    } else if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        "bcrypt"
    } else if stored.starts_with("$pbkdf2-sha256$") || stored.starts_with("pbkdf2_sha256$") {
        "pbkdf2-sha256"
    } else {
        "unknown"
    }
}

/// True when a hash is in a format `verify` understands (checked at import).
pub fn is_supported_hash(stored: &str) -> bool {
    match scheme_of(stored) {
        "argon2id" => PasswordHash::new(stored).is_ok(),
        "bcrypt" => stored.len() == 60,
        "pbkdf2-sha256" => {
            if stored.starts_with('$') {
                PasswordHash::new(stored).is_ok()
            } else {
                parse_django(stored).is_some()
            }
        }
        _ => false,
    }
}

pub struct PasswordHasher {
    params: Params,
    pepper: SecretBox<Vec<u8>>,
    dummy_hash: String,
    permits: Arc<Semaphore>,
    computed: AtomicU64,
}

impl PasswordHasher {
    pub fn new(config: &Argon2Config, pepper: &[u8]) -> anyhow::Result<Arc<Self>> {
        let params = Params::new(config.memory_kib, config.iterations, config.parallelism, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let mut hasher = Self {
            params,
            pepper: SecretBox::new(Box::new(pepper.to_vec())),
            dummy_hash: String::new(),
            permits: Arc::new(Semaphore::new(config.max_concurrent)),
            computed: AtomicU64::new(0),
        };
        hasher.dummy_hash = hasher.hash_blocking("oxidp dummy password for unknown users")?;
        hasher.computed.store(0, Ordering::Relaxed);
        Ok(Arc::new(hasher))
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    fn peppered(&self, password: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.pepper.expose_secret()).expect("any key length");
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// How many password hashes this process computed (for metrics and tests).
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    fn hash_blocking(&self, password: &str) -> anyhow::Result<String> {
        self.computed.fetch_add(1, Ordering::Relaxed);
        let salt = SaltString::generate(&mut OsRng);
        Ok(self
            .argon2()
            .hash_password(&self.peppered(password), &salt)
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
            .to_string())
    }

    fn verify_blocking(&self, password: &str, stored: Option<&str>) -> Verification {
        self.computed.fetch_add(1, Ordering::Relaxed);
        let Some(stored) = stored else {
            // Same work as a real verification, and always a failure.
            let _ = self.verify_argon2(password, &self.dummy_hash);
            return Verification::Invalid;
        };
        match scheme_of(stored) {
            "argon2id" => self.verify_argon2(password, stored),
            "bcrypt" => match bcrypt::verify(password, stored) {
                Ok(true) => Verification::Valid { needs_rehash: true },
                _ => Verification::Invalid,
            },
            "pbkdf2-sha256" => {
                if verify_pbkdf2(password, stored) {
                    Verification::Valid { needs_rehash: true }
                } else {
                    Verification::Invalid
                }
            }
            _ => {
                let _ = self.verify_argon2(password, &self.dummy_hash);
                Verification::Invalid
            }
        }
    }

    fn verify_argon2(&self, password: &str, stored: &str) -> Verification {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return Verification::Invalid;
        };
        let ok = self.argon2().verify_password(&self.peppered(password), &parsed).is_ok();
        if !ok {
            return Verification::Invalid;
        }
        let current = Params::try_from(&parsed).ok();
        let needs_rehash = current.is_none_or(|p| {
            p.m_cost() != self.params.m_cost()
                || p.t_cost() != self.params.t_cost()
                || p.p_cost() != self.params.p_cost()
        });
        Verification::Valid { needs_rehash }
    }

    /// Hashes a new password with the current parameters.
    pub async fn hash(self: &Arc<Self>, password: &Password) -> anyhow::Result<String> {
        let _permit = self.permits.clone().acquire_owned().await?;
        let this = Arc::clone(self);
        let password = password.clone();
        tokio::task::spawn_blocking(move || this.hash_blocking(password.expose())).await?
    }

    /// Verifies a password against a stored hash; `None` (unknown user, no password
    /// set) costs the same as a real check and fails.
    pub async fn verify(self: &Arc<Self>, password: &Password, stored: Option<String>) -> Verification {
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return Verification::Invalid;
        };
        let this = Arc::clone(self);
        let password = password.clone();
        tokio::task::spawn_blocking(move || this.verify_blocking(password.expose(), stored.as_deref()))
            .await
            .unwrap_or(Verification::Invalid)
    }
}

/// PHC (`$pbkdf2-sha256$i=…,l=…$salt$hash`) or Django (`pbkdf2_sha256$iter$salt$b64hash`).
fn verify_pbkdf2(password: &str, stored: &str) -> bool {
    if stored.starts_with('$') {
        return PasswordHash::new(stored)
            .map(|parsed| pbkdf2::Pbkdf2.verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false);
    }
    let Some((iterations, salt, expected)) = parse_django(stored) else {
        return false;
    };
    let mut derived = vec![0u8; expected.len()];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt.as_bytes(), iterations, &mut derived);
    derived.ct_eq(&expected).into()
}

fn parse_django(stored: &str) -> Option<(u32, String, Vec<u8>)> {
    let mut parts = stored.split('$');
    if parts.next()? != "pbkdf2_sha256" {
        return None;
    }
    let iterations: u32 = parts.next()?.parse().ok()?;
    let salt = parts.next()?.to_owned();
    let hash = base64::engine::general_purpose::STANDARD.decode(parts.next()?).ok()?;
    if parts.next().is_some() || iterations == 0 || hash.is_empty() || salt.is_empty() {
        return None;
    }
    Some((iterations, salt, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> Arc<PasswordHasher> {
        PasswordHasher::new(
            &Argon2Config {
                memory_kib: 8192,
                iterations: 1,
                parallelism: 1,
                max_concurrent: 2,
            },
            b"pepper-for-unit-tests-0123456789abcdef",
        )
        .unwrap()
    }

    #[tokio::test]
    async fn argon2_round_trip_with_pepper() {
        let h = hasher();
        let pw = Password::new("correct horse battery staple");
        let stored = h.hash(&pw).await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"));
        assert_eq!(
            h.verify(&pw, Some(stored.clone())).await,
            Verification::Valid { needs_rehash: false }
        );
        assert_eq!(
            h.verify(&Password::new("wrong"), Some(stored.clone())).await,
            Verification::Invalid
        );
        // Another pepper cannot verify it.
        let other = PasswordHasher::new(
            &Argon2Config {
                memory_kib: 8192,
                iterations: 1,
                parallelism: 1,
                max_concurrent: 2,
            },
            b"another-pepper-0123456789abcdefghijkl",
        )
        .unwrap();
        assert_eq!(other.verify(&pw, Some(stored)).await, Verification::Invalid);
    }

    #[tokio::test]
    async fn legacy_hashes_verify_and_ask_for_rehash() {
        let h = hasher();
        let pw = Password::new("legacy password 1");
        let bcrypt_hash = bcrypt::hash(pw.expose(), 4).unwrap();
        assert_eq!(
            h.verify(&pw, Some(bcrypt_hash)).await,
            Verification::Valid { needs_rehash: true }
        );

        let mut derived = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(pw.expose().as_bytes(), b"somesalt", 1000, &mut derived);
        let django = format!(
            "pbkdf2_sha256$1000$somesalt${}",
            base64::engine::general_purpose::STANDARD.encode(derived)
        );
        assert!(is_supported_hash(&django));
        assert_eq!(
            h.verify(&pw, Some(django.clone())).await,
            Verification::Valid { needs_rehash: true }
        );
        assert_eq!(
            h.verify(&Password::new("nope"), Some(django)).await,
            Verification::Invalid
        );

        let phc = pbkdf2::Pbkdf2
            .hash_password_customized(
                pw.expose().as_bytes(),
                Some(pbkdf2::Algorithm::Pbkdf2Sha256.ident()),
                None,
                pbkdf2::Params {
                    rounds: 1000,
                    output_length: 32,
                },
                &SaltString::generate(&mut OsRng),
            )
            .unwrap()
            .to_string();
        assert_eq!(scheme_of(&phc), "pbkdf2-sha256");
        assert_eq!(
            h.verify(&pw, Some(phc)).await,
            Verification::Valid { needs_rehash: true }
        );
    }

    #[tokio::test]
    async fn unknown_user_fails_and_costs_a_hash() {
        let h = hasher();
        let before = h.computed();
        assert_eq!(
            h.verify(&Password::new("anything at all"), None).await,
            Verification::Invalid
        );
        assert_eq!(h.computed(), before + 1);
        assert!(!is_supported_hash("md5$abc"));
    }
}
