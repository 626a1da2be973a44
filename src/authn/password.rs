//! Password hashing: argon2id over HMAC-SHA256(pepper, password), and verification of
//! imported legacy hashes (bcrypt, PBKDF2-SHA256), kept wrapped in argon2id
//! (`authn::legacy`) and re-hashed at the next successful sign-in.
//!
//! Hashing is CPU- and memory-heavy, so it runs on the blocking pool behind a
//! semaphore, in argon2 memory checked out of a pre-allocated pool
//! (`authn::argon2_pool`) so that a burst never grows the heap. Every verification
//! costs the same: one argon2id (a dummy hash for unknown users) plus the legacy
//! work of the most expensive legacy kinds present (`legacy::pad`).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::authn::argon2_pool::BlockPool;
use crate::authn::legacy::{self, LegacyParams, LegacyWork, Stored};
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
    match legacy::classify(stored) {
        Stored::Argon2(_) => "argon2id",
        Stored::Wrapped(LegacyParams::Bcrypt { .. }, _) => "bcrypt (wrapped in argon2id)",
        Stored::Wrapped(LegacyParams::Pbkdf2Sha256 { .. }, _) => "pbkdf2-sha256 (wrapped in argon2id)",
        Stored::Bare(LegacyParams::Bcrypt { .. }, _) => "bcrypt",
        Stored::Bare(LegacyParams::Pbkdf2Sha256 { .. }, _) => "pbkdf2-sha256",
        Stored::Unknown => "unknown",
    }
}

/// True when a hash is in a format `verify` understands (checked at import).
pub fn is_supported_hash(stored: &str) -> bool {
    match legacy::classify(stored) {
        Stored::Argon2(phc) | Stored::Wrapped(_, phc) => PasswordHash::new(phc).is_ok(),
        Stored::Bare(..) => true,
        Stored::Unknown => false,
    }
}

/// How long a pooled argon2 region stays resident after its last use.
pub const POOL_IDLE: Duration = Duration::from_secs(5);

pub struct PasswordHasher {
    params: Params,
    pepper: SecretBox<Vec<u8>>,
    dummy_hash: String,
    permits: Arc<Semaphore>,
    pool: BlockPool,
    computed: AtomicU64,
    /// The most expensive legacy work present (see `legacy::LegacyWork`).
    work: RwLock<LegacyWork>,
    /// Accounts still carrying a legacy hash (wrapped or bare), for the gauge.
    legacy_accounts: AtomicI64,
}

impl PasswordHasher {
    pub fn new(config: &Argon2Config, pepper: &[u8]) -> anyhow::Result<Arc<Self>> {
        let params = Params::new(config.memory_kib, config.iterations, config.parallelism, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let pool = BlockPool::new(config.max_concurrent, params.block_count())
            .map_err(|e| anyhow::anyhow!("argon2 memory pool: {e}"))?;
        let mut hasher = Self {
            params,
            pepper: SecretBox::new(Box::new(pepper.to_vec())),
            dummy_hash: String::new(),
            permits: Arc::new(Semaphore::new(config.max_concurrent)),
            pool,
            computed: AtomicU64::new(0),
            work: RwLock::new(LegacyWork::default()),
            legacy_accounts: AtomicI64::new(0),
        };
        hasher.dummy_hash = hasher.hash_blocking(b"oxidp dummy password for unknown users")?;
        hasher.computed.store(0, Ordering::Relaxed);
        hasher.pool.release_idle(Duration::ZERO);
        Ok(Arc::new(hasher))
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    fn peppered(&self, input: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.pepper.expose_secret()).expect("any key length");
        mac.update(input);
        mac.finalize().into_bytes().into()
    }

    /// How many password hashes this process computed (for metrics and tests).
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// argon2 regions allocated outside the pool (for metrics and tests; stays 0).
    pub fn pool_fallbacks(&self) -> u64 {
        self.pool.fallbacks()
    }

    /// Pooled argon2 regions whose pages may be resident (0 once idle memory is released).
    pub fn pool_resident(&self) -> usize {
        self.pool.touched()
    }

    /// Returns the pages of argon2 regions idle for `POOL_IDLE` to the kernel, and
    /// then the allocator's free memory (buffers of the burst's requests).
    pub fn release_idle_memory(&self) -> usize {
        let released = self.pool.release_idle(POOL_IDLE);
        if released > 0 {
            crate::heap::trim();
        }
        released
    }

    pub fn legacy_work(&self) -> LegacyWork {
        *self.work.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_legacy_work(&self, work: LegacyWork) {
        *self.work.write().unwrap_or_else(|e| e.into_inner()) = work;
    }

    pub fn legacy_accounts(&self) -> i64 {
        self.legacy_accounts.load(Ordering::Relaxed)
    }

    pub fn set_legacy_accounts(&self, count: i64) {
        self.legacy_accounts.store(count, Ordering::Relaxed);
    }

    /// One legacy account fewer (re-hashed at sign-in).
    pub fn legacy_upgraded(&self) {
        let _ = self
            .legacy_accounts
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some((n - 1).max(0)));
    }

    /// argon2id of HMAC(pepper, input) into pooled memory, as a PHC string.
    fn hash_blocking(&self, input: &[u8]) -> anyhow::Result<String> {
        self.computed.fetch_add(1, Ordering::Relaxed);
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let mut out = [0u8; 32];
        let mut memory = self.pool.checkout(self.params.block_count())?;
        self.argon2()
            .hash_password_into_with_memory(&self.peppered(input), &salt, &mut out, &mut memory)
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        Ok(format!(
            "$argon2id$v={}$m={},t={},p={}${}${}",
            Version::V0x13 as u32,
            self.params.m_cost(),
            self.params.t_cost(),
            self.params.p_cost(),
            b64.encode(salt),
            b64.encode(out)
        ))
    }

    fn verify_blocking(&self, password: &str, stored: Option<&str>) -> Verification {
        self.computed.fetch_add(1, Ordering::Relaxed);
        let work = self.legacy_work();
        let password = password.as_bytes();
        let dummy = |hasher: &Self| {
            let _ = hasher.verify_argon2(password, &hasher.dummy_hash);
        };
        let (own, verification) = match stored.map(legacy::classify) {
            Some(Stored::Argon2(phc)) => (None, self.verify_argon2(password, phc)),
            Some(Stored::Wrapped(params, phc)) => {
                let output = params.derive(password);
                let verification = match self.verify_argon2(&output, phc) {
                    Verification::Valid { .. } => Verification::Valid { needs_rehash: true },
                    Verification::Invalid => Verification::Invalid,
                };
                (Some(params), verification)
            }
            Some(Stored::Bare(params, expected)) => {
                // Not yet wrapped (`oxidp user rewrap-legacy`): the same argon2 work as any other.
                let ok: bool = params.derive(password).ct_eq(&expected).into();
                dummy(self);
                let verification = if ok {
                    Verification::Valid { needs_rehash: true }
                } else {
                    Verification::Invalid
                };
                (Some(params), verification)
            }
            // Unknown user, no password, unknown format: same work as a real
            // verification, and always a failure.
            Some(Stored::Unknown) | None => {
                dummy(self);
                (None, Verification::Invalid)
            }
        };
        legacy::pad(work, own.as_ref());
        verification
    }

    /// Verifies a PHC argon2id string by recomputing the raw hash into pooled
    /// memory and comparing in constant time.
    fn verify_argon2(&self, input: &[u8], stored: &str) -> Verification {
        let Some((params, version, salt, expected)) = parse_phc(stored) else {
            return Verification::Invalid;
        };
        let mut out = vec![0u8; expected.len()];
        let Ok(mut memory) = self.pool.checkout(params.block_count()) else {
            return Verification::Invalid;
        };
        let argon2 = Argon2::new(Algorithm::Argon2id, version, params.clone());
        if argon2
            .hash_password_into_with_memory(&self.peppered(input), &salt, &mut out, &mut memory)
            .is_err()
            || !bool::from(out.ct_eq(&expected))
        {
            return Verification::Invalid;
        }
        let needs_rehash = params.m_cost() != self.params.m_cost()
            || params.t_cost() != self.params.t_cost()
            || params.p_cost() != self.params.p_cost()
            || version != Version::V0x13;
        Verification::Valid { needs_rehash }
    }

    /// Hashes a new password with the current parameters.
    pub async fn hash(self: &Arc<Self>, password: &Password) -> anyhow::Result<String> {
        let _permit = self.permits.clone().acquire_owned().await?;
        let this = Arc::clone(self);
        let password = password.clone();
        tokio::task::spawn_blocking(move || this.hash_blocking(password.expose().as_bytes())).await?
    }

    /// Wraps a bare legacy hash: its parameters and argon2id(HMAC(pepper, output)).
    pub async fn wrap(self: &Arc<Self>, params: LegacyParams, output: Vec<u8>) -> anyhow::Result<String> {
        let _permit = self.permits.clone().acquire_owned().await?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || Ok(legacy::wrapped(&params, &this.hash_blocking(&output)?))).await?
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

/// The parameters, version, salt and expected output of a PHC argon2id string.
fn parse_phc(stored: &str) -> Option<(Params, Version, Vec<u8>, Vec<u8>)> {
    let parsed = PasswordHash::new(stored).ok()?;
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return None;
    }
    let version = match parsed.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::V0x13,
    };
    let params = Params::try_from(&parsed).ok()?;
    let mut buf = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut buf).ok()?.to_vec();
    let expected = parsed.hash?.as_bytes().to_vec();
    Some((params, version, salt, expected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, SaltString};

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
    async fn raw_pooled_hashes_are_standard_phc_strings() {
        let h = hasher();
        let pw = Password::new("interoperable password");
        // Ours verifies with the argon2 crate's own PHC verifier…
        let ours = h.hash(&pw).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            h.argon2()
                .verify_password(&h.peppered(pw.expose().as_bytes()), &parsed)
                .is_ok()
        );
        // …and a hash made by the crate (other parameters) verifies with ours, asking for a re-hash.
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(4096, 1, 1, None).unwrap(),
        )
        .hash_password(&h.peppered(pw.expose().as_bytes()), &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
        assert_eq!(
            h.verify(&pw, Some(other.clone())).await,
            Verification::Valid { needs_rehash: true }
        );
        assert_eq!(
            h.verify(&Password::new("nope"), Some(other)).await,
            Verification::Invalid
        );
        assert_eq!(h.pool_fallbacks(), 0);
    }

    #[tokio::test]
    async fn wrapped_legacy_hashes_verify_without_the_bare_hash() {
        let h = hasher();
        let pw = Password::new("legacy wrapped password");
        let bare = bcrypt::hash(pw.expose(), 4).unwrap();
        let (params, output) = legacy::parse_bare(&bare).unwrap();
        let stored = h.wrap(params, output).await.unwrap();
        assert!(stored.starts_with("$oxidp-legacy$bcrypt$c=4$"));
        assert!(!stored.contains(&bare[29..]), "the bcrypt output is not stored");
        assert_eq!(scheme_of(&stored), "bcrypt (wrapped in argon2id)");
        assert!(is_supported_hash(&stored));
        assert_eq!(
            h.verify(&pw, Some(stored.clone())).await,
            Verification::Valid { needs_rehash: true }
        );
        assert_eq!(
            h.verify(&Password::new("wrong"), Some(stored)).await,
            Verification::Invalid
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
