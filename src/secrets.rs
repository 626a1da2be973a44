//! Server secrets: the password pepper and the key-encryption secret.
//!
//! Taken from the configuration when given; otherwise generated on first start and
//! kept in `{data_dir}/secrets.toml` (mode 0600) with a loud log line. A fingerprint
//! of each is stored in the database, so an instance started with different secrets
//! refuses to run instead of silently failing every sign-in.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

use crate::config::Config;
use crate::db::{Db, models::settings};

type HmacSha256 = Hmac<Sha256>;

pub struct ServerSecrets {
    pepper: SecretBox<Vec<u8>>,
    key_encryption: SecretBox<Vec<u8>>,
}

impl std::fmt::Debug for ServerSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecrets(***)")
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SecretsFile {
    pepper: String,
    key_encryption_secret: String,
}

impl ServerSecrets {
    pub fn from_parts(pepper: &str, key_encryption: &str) -> Self {
        Self {
            pepper: SecretBox::new(Box::new(pepper.as_bytes().to_vec())),
            key_encryption: SecretBox::new(Box::new(key_encryption.as_bytes().to_vec())),
        }
    }

    /// Loads the secrets from the configuration or the data directory, generating
    /// and persisting the missing ones.
    pub fn load_or_generate(config: &Config) -> anyhow::Result<Self> {
        let path = config.data_dir.join("secrets.toml");
        let stored = read_file(&path)?;
        let (pepper, kes, generated) = match (&config.pepper, &config.key_encryption_secret, stored) {
            (Some(p), Some(k), _) => (p.clone(), k.clone(), false),
            (p, k, Some(file)) => (
                p.clone().unwrap_or_else(|| SecretString::from(file.pepper.clone())),
                k.clone()
                    .unwrap_or_else(|| SecretString::from(file.key_encryption_secret.clone())),
                false,
            ),
            (p, k, None) => (
                p.clone().unwrap_or_else(|| SecretString::from(random_secret())),
                k.clone().unwrap_or_else(|| SecretString::from(random_secret())),
                true,
            ),
        };
        if generated {
            write_file(&path, pepper.expose_secret(), kes.expose_secret())?;
            tracing::warn!(
                path = %path.display(),
                "GENERATED NEW SERVER SECRETS (password pepper and key-encryption secret). \
                 Back up this file: without it no password can be verified and no key decrypted. \
                 Several instances must share the same secrets (set OXIDP_PEPPER and OXIDP_KEY_ENCRYPTION_SECRET)."
            );
        }
        Ok(Self::from_parts(pepper.expose_secret(), kes.expose_secret()))
    }

    pub fn pepper(&self) -> &[u8] {
        self.pepper.expose_secret()
    }

    /// A key for one purpose, derived from the key-encryption secret, so one
    /// secret never serves two uses.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(self.key_encryption.expose_secret()).expect("any key length");
        mac.update(b"oxidp key derivation\0");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn fingerprint(secret: &[u8], label: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(secret).expect("any key length");
        mac.update(b"oxidp secret fingerprint\0");
        mac.update(label.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Records the fingerprints on first start; refuses secrets that differ from
    /// those the database was set up with.
    pub async fn check_against(&self, db: &Db) -> anyhow::Result<()> {
        let checks = [
            (
                "pepper",
                "pepper_fingerprint",
                Self::fingerprint(self.pepper(), "pepper"),
            ),
            (
                "key_encryption_secret",
                "key_encryption_fingerprint",
                Self::fingerprint(self.key_encryption.expose_secret(), "kes"),
            ),
        ];
        for (key, setting, fingerprint) in checks {
            let expected = fingerprint.clone();
            let stored = db
                .run(move |conn| settings::get_or_insert(conn, setting, &fingerprint))
                .await?;
            if stored != expected {
                anyhow::bail!(
                    "configuration key `{key}`: differs from the one this database was set up with; \
                     every instance must use the same {key} (check OXIDP_{} or {{data_dir}}/secrets.toml)",
                    key.to_uppercase()
                );
            }
        }
        Ok(())
    }
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn read_file(path: &Path) -> anyhow::Result<Option<SecretsFile>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{}: not a valid secrets file: {}", path.display(), e.message())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

fn write_file(path: &Path, pepper: &str, kes: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let text = toml::to_string(&SecretsFile {
        pepper: pepper.to_owned(),
        key_encryption_secret: kes.to_owned(),
    })?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
