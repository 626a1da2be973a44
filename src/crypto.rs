//! Small cryptographic helpers: random tokens, SHA-256 digests for stored token
//! hashes, constant-time comparison, and AES-256-GCM for secrets at rest.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A 256-bit random value, base64url without padding (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Hex SHA-256: how codes, refresh tokens and client secrets are stored.
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

pub fn sha256_b64(value: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(value))
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Encrypts with AES-256-GCM; output is base64url(nonce ‖ ciphertext ‖ tag).
/// `context` is bound as associated data, so a value cannot be moved to another row or use.
pub fn seal(key: &[u8; 32], plaintext: &[u8], context: &str) -> anyhow::Result<String> {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut tag = [0u8; 16];
    let ciphertext = encrypt_aead(
        Cipher::aes_256_gcm(),
        key,
        Some(&nonce),
        context.as_bytes(),
        plaintext,
        &mut tag,
    )?;
    let mut out = Vec::with_capacity(12 + ciphertext.len() + 16);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out.extend_from_slice(&tag);
    Ok(URL_SAFE_NO_PAD.encode(out))
}

pub fn open(key: &[u8; 32], sealed: &str, context: &str) -> anyhow::Result<Vec<u8>> {
    let raw = URL_SAFE_NO_PAD.decode(sealed)?;
    if raw.len() < 28 {
        anyhow::bail!("sealed value too short");
    }
    let (nonce, rest) = raw.split_at(12);
    let (ciphertext, tag) = rest.split_at(rest.len() - 16);
    decrypt_aead(
        Cipher::aes_256_gcm(),
        key,
        Some(nonce),
        context.as_bytes(),
        ciphertext,
        tag,
    )
    .map_err(|_| anyhow::anyhow!("cannot decrypt: wrong key_encryption_secret or tampered data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_binding() {
        let key = [7u8; 32];
        let sealed = seal(&key, b"private key", "kid-1").unwrap();
        assert_eq!(open(&key, &sealed, "kid-1").unwrap(), b"private key");
        assert!(open(&key, &sealed, "kid-2").is_err());
        assert!(open(&[8u8; 32], &sealed, "kid-1").is_err());
        assert_eq!(random_token().len(), 43);
    }
}
