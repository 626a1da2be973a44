//! Signing keys (josekit): ES256 by default, RS256 and EdDSA for clients that ask.
//!
//! Keys live in the database, sealed, so every instance signs with the same set.
//! Lifecycle of a key: published in JWKS at creation; signs from `activates_at`
//! (a rotated-in key waits `keys.publish_ahead_secs` so caches learn it first);
//! stops signing at `retires_at`; leaves JWKS at `expires_at`, after every token
//! it signed has expired. A new or rotated key is announced to every instance in
//! the transaction that stores it (`crate::invalidation`: on PostgreSQL they
//! re-read the set when it commits); each instance also re-reads the set every
//! `keys.refresh_secs`.

use std::sync::{Arc, RwLock};

use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{ES256, EdDSA, JwsSigner, JwsVerifier, RS256};

use crate::crypto;
use crate::db::Db;
use crate::db::models::keys::{self, KeyRow};
use crate::invalidation::{self, Change};
use crate::secrets::ServerSecrets;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SigningAlg {
    ES256,
    RS256,
    EdDSA,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 3] = [SigningAlg::ES256, SigningAlg::RS256, SigningAlg::EdDSA];

    pub fn name(self) -> &'static str {
        match self {
            SigningAlg::ES256 => "ES256",
            SigningAlg::RS256 => "RS256",
            SigningAlg::EdDSA => "EdDSA",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == value)
    }
}

/// One usable key: signer, verifier and public JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub signer: Box<dyn JwsSigner>,
    pub verifier: Box<dyn JwsVerifier>,
    pub public_jwk: Jwk,
    pub activates_at: i64,
    pub retires_at: Option<i64>,
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

impl SigningKey {
    pub fn signs_at(&self, now: i64) -> bool {
        signs_at(self.activates_at, self.retires_at, now)
    }

    pub fn published_at(&self, now: i64) -> bool {
        published_at(self.expires_at, now)
    }
}

fn signs_at(activates_at: i64, retires_at: Option<i64>, now: i64) -> bool {
    activates_at <= now && retires_at.is_none_or(|r| now < r)
}

fn published_at(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_none_or(|e| now < e)
}

/// Where a stored key stands in its lifecycle (see the module header) at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// In JWKS, signing from `activates_at`.
    Published,
    /// Signs, and is in JWKS.
    Active,
    /// Stopped signing at `retires_at`; still in JWKS so its tokens verify.
    Retired,
    /// Out of JWKS since `expires_at`.
    Removed,
}

impl KeyStatus {
    pub fn of(row: &KeyRow, now: i64) -> Self {
        if !published_at(row.expires_at, now) {
            KeyStatus::Removed
        } else if signs_at(row.activates_at, row.retires_at, now) {
            KeyStatus::Active
        } else if row.retires_at.is_some_and(|r| r <= now) {
            KeyStatus::Retired
        } else {
            KeyStatus::Published
        }
    }

    /// The status as `oxidp keys list` shows it.
    pub fn label(self) -> &'static str {
        match self {
            KeyStatus::Published => "published (signs later)",
            KeyStatus::Active => "active",
            KeyStatus::Retired => "retired (verifies only)",
            KeyStatus::Removed => "removed",
        }
    }
}

/// The key set in memory; replaced as a whole on refresh.
#[derive(Default)]
pub struct KeyStore {
    keys: RwLock<Arc<Vec<Arc<SigningKey>>>>,
    /// One refresh at a time, so a slow one that read the set before a rotation
    /// cannot replace what a later one read after it.
    refreshing: tokio::sync::Mutex<()>,
}

fn seal_context(kid: &str) -> String {
    format!("signing-key:{kid}")
}

fn key_encryption_key(secrets: &ServerSecrets) -> [u8; 32] {
    secrets.derive_key("signing-keys")
}

/// Generates a key pair for `alg`; returns the sealed row (not yet stored).
pub fn generate(alg: SigningAlg, secrets: &ServerSecrets, now: i64, activates_at: i64) -> anyhow::Result<KeyRow> {
    let kid = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let (pem, mut jwk) = match alg {
        SigningAlg::ES256 => {
            let pair = ES256.generate_key_pair()?;
            (pair.to_pem_private_key(), pair.to_jwk_public_key())
        }
        SigningAlg::RS256 => {
            let pair = RS256.generate_key_pair(2048)?;
            (pair.to_pem_private_key(), pair.to_jwk_public_key())
        }
        SigningAlg::EdDSA => {
            let pair = EdDSA.generate_key_pair(josekit::jwk::alg::ed::EdCurve::Ed25519)?;
            (pair.to_pem_private_key(), pair.to_jwk_public_key())
        }
    };
    jwk.set_key_id(&kid);
    jwk.set_algorithm(alg.name());
    jwk.set_key_use("sig");
    let sealed = crypto::seal(&key_encryption_key(secrets), &pem, &seal_context(&kid))?;
    Ok(KeyRow {
        kid,
        alg: alg.name().to_owned(),
        private_key: sealed,
        public_jwk: jwk.to_string(),
        created_at: now,
        activates_at,
        retires_at: None,
        expires_at: None,
    })
}

fn load_key(row: &KeyRow, secrets: &ServerSecrets) -> anyhow::Result<SigningKey> {
    let alg = SigningAlg::parse(&row.alg).ok_or_else(|| anyhow::anyhow!("unknown algorithm {}", row.alg))?;
    let pem = crypto::open(&key_encryption_key(secrets), &row.private_key, &seal_context(&row.kid))?;
    let public_jwk = Jwk::from_bytes(row.public_jwk.as_bytes())?;
    let (signer, verifier): (Box<dyn JwsSigner>, Box<dyn JwsVerifier>) = match alg {
        SigningAlg::ES256 => {
            let mut s = ES256.signer_from_pem(&pem)?;
            s.set_key_id(&row.kid);
            (Box::new(s), Box::new(ES256.verifier_from_jwk(&public_jwk)?))
        }
        SigningAlg::RS256 => {
            let mut s = RS256.signer_from_pem(&pem)?;
            s.set_key_id(&row.kid);
            (Box::new(s), Box::new(RS256.verifier_from_jwk(&public_jwk)?))
        }
        SigningAlg::EdDSA => {
            let mut s = EdDSA.signer_from_pem(&pem)?;
            s.set_key_id(&row.kid);
            (Box::new(s), Box::new(EdDSA.verifier_from_jwk(&public_jwk)?))
        }
    };
    Ok(SigningKey {
        kid: row.kid.clone(),
        alg,
        signer,
        verifier,
        public_jwk,
        activates_at: row.activates_at,
        retires_at: row.retires_at,
        expires_at: row.expires_at,
    })
}

impl KeyStore {
    /// Makes sure each algorithm has a key that signs now, creating the missing
    /// ones, then loads the set. Run at start.
    pub async fn initialize(&self, db: &Db, secrets: &Arc<ServerSecrets>, now: i64) -> anyhow::Result<()> {
        let rows = db.run(move |conn| keys::live(conn, now)).await?;
        for alg in SigningAlg::ALL {
            let has_key = rows
                .iter()
                .any(|r| r.alg == alg.name() && signs_at(r.activates_at, r.retires_at, now));
            if !has_key {
                let row = generate(alg, secrets, now, now)?;
                tracing::info!(kid = %row.kid, alg = alg.name(), "signing key created");
                db.transaction(move |conn| {
                    keys::insert(conn, &row)?;
                    invalidation::notify(conn, &Change::Keys)
                })
                .await?;
            }
        }
        self.refresh(db, secrets, now).await
    }

    /// Re-reads the key set from the database.
    pub async fn refresh(&self, db: &Db, secrets: &Arc<ServerSecrets>, now: i64) -> anyhow::Result<()> {
        let _one_at_a_time = self.refreshing.lock().await;
        let rows = db.read(move |conn| keys::live(conn, now)).await?;
        let secrets = Arc::clone(secrets);
        let loaded = tokio::task::spawn_blocking(move || {
            rows.iter()
                .map(|row| load_key(row, &secrets).map(Arc::new))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .await??;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    fn snapshot(&self) -> Arc<Vec<Arc<SigningKey>>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The key that signs for `alg` now: the most recently activated one.
    pub fn signing_key(&self, alg: SigningAlg, now: i64) -> Option<Arc<SigningKey>> {
        self.snapshot()
            .iter()
            .filter(|k| k.alg == alg && k.signs_at(now))
            .max_by(|a, b| (a.activates_at, &a.kid).cmp(&(b.activates_at, &b.kid)))
            .cloned()
    }

    /// A published key by id, for verifying our own tokens.
    pub fn verification_key(&self, kid: &str, now: i64) -> Option<Arc<SigningKey>> {
        self.snapshot()
            .iter()
            .find(|k| k.kid == kid && k.published_at(now))
            .cloned()
    }

    /// The JWKS document: every published key, including ones not yet signing.
    pub fn jwks(&self, now: i64) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .snapshot()
            .iter()
            .filter(|k| k.published_at(now))
            .map(|k| serde_json::Value::Object(k.public_jwk.as_ref().clone()))
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// Rotates `alg`: a new key is published now and signs from `now + publish_ahead`;
/// the current key retires then and leaves JWKS `retain` seconds later. Every
/// instance re-reads its key set when this commits (on PostgreSQL).
pub async fn rotate(
    db: &Db,
    secrets: &ServerSecrets,
    alg: SigningAlg,
    now: i64,
    publish_ahead: i64,
    retain: i64,
) -> anyhow::Result<KeyRow> {
    let activates_at = now + publish_ahead;
    let row = generate(alg, secrets, now, activates_at)?;
    let inserted = row.clone();
    db.transaction(move |conn| {
        for current in keys::live(conn, now)?
            .into_iter()
            .filter(|k| k.alg == inserted.alg && k.kid != inserted.kid)
        {
            let retires_at = current.retires_at.map_or(activates_at, |r| r.min(activates_at));
            keys::retire(conn, &current.kid, retires_at, retires_at + retain)?;
        }
        keys::insert(conn, &inserted)?;
        invalidation::notify(conn, &Change::Keys)
    })
    .await?;
    tracing::info!(kid = %row.kid, alg = alg.name(), activates_at, "signing key rotated");
    Ok(row)
}

/// Automatic rotation: rotates every algorithm whose newest key is older than
/// `rotation_days`. Safe to run on every instance: a second instance sees the
/// fresh key and does nothing.
pub async fn rotate_due(
    db: &Db,
    secrets: &ServerSecrets,
    now: i64,
    config: &crate::config::KeyConfig,
) -> anyhow::Result<usize> {
    if config.rotation_days == 0 {
        return Ok(0);
    }
    let rows = db.read(move |conn| keys::live(conn, now)).await?;
    let mut rotated = 0;
    for alg in SigningAlg::ALL {
        let newest = rows.iter().filter(|r| r.alg == alg.name()).map(|r| r.created_at).max();
        if newest.is_some_and(|created| now - created >= config.rotation_days * 86400) {
            rotate(db, secrets, alg, now, config.publish_ahead_secs, config.retain_secs).await?;
            rotated += 1;
        }
    }
    let before = now - 86400;
    db.run(move |conn| keys::purge(conn, before)).await?;
    Ok(rotated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(activates_at: i64, retires_at: Option<i64>, expires_at: Option<i64>) -> KeyRow {
        KeyRow {
            kid: "k".into(),
            alg: "ES256".into(),
            private_key: String::new(),
            public_jwk: String::new(),
            created_at: 0,
            activates_at,
            retires_at,
            expires_at,
        }
    }

    #[test]
    fn status_follows_the_lifecycle() {
        use KeyStatus::*;
        let cases = [
            (row(100, None, None), 50, Published),
            (row(100, None, None), 100, Active),
            (row(100, Some(200), Some(300)), 199, Active),
            (row(100, Some(200), Some(300)), 200, Retired),
            (row(100, Some(200), Some(300)), 300, Removed),
            // rotated away (with --now) before it ever signed
            (row(100, Some(50), Some(150)), 60, Retired),
        ];
        for (key, now, expected) in cases {
            assert_eq!(KeyStatus::of(&key, now), expected, "at {now}: {key:?}");
        }
    }
}
