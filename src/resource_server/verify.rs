//! RFC 9068 access-token verification: the checks, in order, on one token against
//! one key set. No I/O and no actix here; the key-set cache decides about refetching.

use std::collections::BTreeSet;

use base64::Engine;
use josekit::jws::JwsVerifier;
use serde_json::Value;

use super::Principal;

/// Tolerated clock difference for `exp`, `nbf` and `iat`, in seconds.
pub const SKEW_SECS: i64 = 60;

/// The signature algorithms accepted; each is bound to one JWK key type, so the
/// header cannot pick a different verification primitive (no algorithm confusion,
/// never `none`, never HMAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    ES256,
    RS256,
    EdDSA,
}

impl Alg {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Self::ES256),
            "RS256" => Some(Self::RS256),
            "EdDSA" => Some(Self::EdDSA),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
            Self::EdDSA => "EdDSA",
        }
    }
}

/// One verification key of the key set.
#[derive(Debug)]
pub struct Key {
    pub kid: Option<String>,
    pub alg: Alg,
    verifier: Box<dyn JwsVerifier>,
}

impl Key {
    /// The verifier for a published JWK, or `None` for keys we never accept
    /// (symmetric, unknown type or curve, or an `alg` member that contradicts the type).
    pub fn from_jwk(jwk: &josekit::jwk::Jwk) -> Option<Self> {
        if jwk.key_use().is_some_and(|u| u != "sig") {
            return None;
        }
        let alg = match (jwk.key_type(), jwk.curve()) {
            ("EC", Some("P-256")) => Alg::ES256,
            ("RSA", _) => Alg::RS256,
            ("OKP", Some("Ed25519")) => Alg::EdDSA,
            _ => return None,
        };
        if jwk.algorithm().is_some_and(|a| a != alg.name()) {
            return None;
        }
        let verifier: Box<dyn JwsVerifier> = match alg {
            Alg::ES256 => Box::new(josekit::jws::ES256.verifier_from_jwk(jwk).ok()?),
            Alg::RS256 => Box::new(josekit::jws::RS256.verifier_from_jwk(jwk).ok()?),
            Alg::EdDSA => Box::new(josekit::jws::EdDSA.verifier_from_jwk(jwk).ok()?),
        };
        Some(Self {
            kid: jwk.key_id().map(str::to_owned),
            alg,
            verifier,
        })
    }
}

/// Why a token was refused. Every variant is RFC 6750 §3.1 `invalid_token`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the token is not a compact JWS")]
    Malformed,
    /// RFC 9068 §4: `typ` must be `at+jwt`.
    #[error("the token type is not at+jwt")]
    WrongType,
    /// RFC 8725 §3.1: algorithms come from an allow-list.
    #[error("the signing algorithm is not accepted")]
    Algorithm,
    /// The `kid` names no key of the current key set (a refetch may help).
    #[error("the signing key is unknown")]
    UnknownKey(String),
    #[error("the signature is invalid")]
    Signature,
    #[error("the issuer is not accepted")]
    Issuer,
    #[error("the token is not for this audience")]
    Audience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("a required claim is missing or malformed: {0}")]
    Claim(&'static str),
}

impl VerifyError {
    /// The `error_description` sent to the client.
    pub fn description(&self) -> String {
        match self {
            VerifyError::UnknownKey(_) => "the signing key is unknown".to_owned(),
            other => other.to_string(),
        }
    }
}

/// The checks configured for one resource server.
#[derive(Debug, Clone)]
pub struct Verifier {
    issuer: String,
    audience: String,
}

impl Verifier {
    pub fn new(issuer: String, audience: String) -> Self {
        Self { issuer, audience }
    }

    /// Verifies `token` with `keys` at time `now`.
    pub fn verify(&self, token: &str, keys: &[Key], now: i64) -> Result<Principal, VerifyError> {
        let header = decode_header(token)?;
        let typ = header.get("typ").and_then(Value::as_str).unwrap_or_default();
        if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
            return Err(VerifyError::WrongType);
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(Alg::parse)
            .ok_or(VerifyError::Algorithm)?;
        let kid = header.get("kid").and_then(Value::as_str);
        let candidates: Vec<&Key> = keys
            .iter()
            .filter(|k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid))
            .collect();
        if candidates.is_empty() {
            return Err(VerifyError::UnknownKey(kid.unwrap_or_default().to_owned()));
        }
        let payload = candidates
            .iter()
            .find_map(|key| josekit::jwt::decode_with_verifier(token, key.verifier.as_ref()).ok())
            .map(|(payload, _)| payload)
            .ok_or(VerifyError::Signature)?;
        self.check_claims(payload.claims_set(), now)
    }

    fn check_claims(&self, claims: &serde_json::Map<String, Value>, now: i64) -> Result<Principal, VerifyError> {
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(VerifyError::Issuer);
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == self.audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(self.audience.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err(VerifyError::Audience);
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(VerifyError::Claim("exp"))?;
        if exp + SKEW_SECS <= now {
            return Err(VerifyError::Expired);
        }
        let iat = claims
            .get("iat")
            .and_then(Value::as_i64)
            .ok_or(VerifyError::Claim("iat"))?;
        if iat > now + SKEW_SECS {
            return Err(VerifyError::NotYetValid);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_i64().ok_or(VerifyError::Claim("nbf"))?;
            if nbf > now + SKEW_SECS {
                return Err(VerifyError::NotYetValid);
            }
        }
        let client_id = claims
            .get("client_id")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .ok_or(VerifyError::Claim("client_id"))?;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(VerifyError::Claim("sub"))?;
        let permissions: BTreeSet<String> = match claims.get("permissions") {
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(_) => return Err(VerifyError::Claim("permissions")),
            None => claims
                .get("scope")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        Ok(Principal {
            sub: sub.to_owned(),
            client_id: client_id.to_owned(),
            permissions,
            exp,
        })
    }
}

/// The JOSE header of a compact JWS, before any key is chosen.
fn decode_header(token: &str) -> Result<serde_json::Map<String, Value>, VerifyError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(VerifyError::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| VerifyError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(VerifyError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use josekit::jws::{ES256, HS256, JwsHeader};
    use josekit::jwt::JwtPayload;

    const ISS: &str = "https://id.example.com";
    const AUD: &str = "https://shop.example.com";
    const NOW: i64 = 1_800_000_000;

    fn key_pair() -> (josekit::jwk::Jwk, Vec<Key>) {
        let mut private = josekit::jwk::Jwk::generate_ec_key(josekit::jwk::alg::ec::EcCurve::P256).unwrap();
        private.set_key_id("k1");
        let mut public = private.to_public_key().unwrap();
        public.set_key_id("k1");
        (private, vec![Key::from_jwk(&public).unwrap()])
    }

    fn claims() -> serde_json::Map<String, Value> {
        serde_json::json!({
            "iss": ISS, "aud": [AUD], "sub": "alice", "client_id": "shop",
            "iat": NOW, "exp": NOW + 600, "permissions": ["commerce:products:write"]
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn sign(private: &josekit::jwk::Jwk, typ: &str, claims: serde_json::Map<String, Value>) -> String {
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id("k1");
        let signer = ES256.signer_from_jwk(private).unwrap();
        josekit::jwt::encode_with_signer(&JwtPayload::from_map(claims).unwrap(), &header, &signer).unwrap()
    }

    #[test]
    fn a_valid_token_yields_its_principal() {
        let (private, keys) = key_pair();
        let v = Verifier::new(ISS.into(), AUD.into());
        let p = v.verify(&sign(&private, "at+jwt", claims()), &keys, NOW).unwrap();
        assert_eq!((p.sub.as_str(), p.client_id.as_str()), ("alice", "shop"));
        assert!(p.has("commerce:products:write"));
    }

    #[test]
    fn each_check_refuses_what_it_should() {
        let (private, keys) = key_pair();
        let v = Verifier::new(ISS.into(), AUD.into());
        let with = |k: &str, val: Value| {
            let mut c = claims();
            c.insert(k.into(), val);
            c
        };
        let without = |k: &str| {
            let mut c = claims();
            c.remove(k);
            c
        };
        let cases = [
            (sign(&private, "JWT", claims()), NOW, VerifyError::WrongType),
            (
                sign(&private, "at+jwt", with("iss", "https://evil".into())),
                NOW,
                VerifyError::Issuer,
            ),
            (
                sign(&private, "at+jwt", with("aud", "https://other".into())),
                NOW,
                VerifyError::Audience,
            ),
            (sign(&private, "at+jwt", claims()), NOW + 661, VerifyError::Expired),
            (
                sign(&private, "at+jwt", with("nbf", (NOW + 120).into())),
                NOW,
                VerifyError::NotYetValid,
            ),
            (
                sign(&private, "at+jwt", with("iat", (NOW + 120).into())),
                NOW,
                VerifyError::NotYetValid,
            ),
            (
                sign(&private, "at+jwt", without("client_id")),
                NOW,
                VerifyError::Claim("client_id"),
            ),
        ];
        for (token, now, expected) in cases {
            assert_eq!(v.verify(&token, &keys, now).unwrap_err(), expected);
        }
        // Within the skew: accepted.
        assert!(v.verify(&sign(&private, "at+jwt", claims()), &keys, NOW + 659).is_ok());
    }

    #[test]
    fn hmac_and_none_never_verify() {
        let (_, keys) = key_pair();
        let v = Verifier::new(ISS.into(), AUD.into());
        let mut header = JwsHeader::new();
        header.set_token_type("at+jwt");
        header.set_key_id("k1");
        let signer = HS256
            .signer_from_bytes(b"the public key, as bytes, used as an HMAC secret")
            .unwrap();
        let hs = josekit::jwt::encode_with_signer(&JwtPayload::from_map(claims()).unwrap(), &header, &signer).unwrap();
        assert_eq!(v.verify(&hs, &keys, NOW).unwrap_err(), VerifyError::Algorithm);
        let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let none = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": "k1"})),
            b64(&Value::Object(claims()))
        );
        assert_eq!(v.verify(&none, &keys, NOW).unwrap_err(), VerifyError::Algorithm);
        // An RS256 header on an EC key: no candidate key, never a cross-type check.
        let rs = format!(
            "{}.{}.AAAA",
            b64(&serde_json::json!({"alg": "RS256", "typ": "at+jwt", "kid": "k1"})),
            b64(&Value::Object(claims()))
        );
        assert!(matches!(
            v.verify(&rs, &keys, NOW).unwrap_err(),
            VerifyError::UnknownKey(_)
        ));
    }

    #[test]
    fn a_tampered_payload_fails_the_signature() {
        let (private, keys) = key_pair();
        let v = Verifier::new(ISS.into(), AUD.into());
        let token = sign(&private, "at+jwt", claims());
        let parts: Vec<&str> = token.split('.').collect();
        let mut c = claims();
        c.insert("permissions".into(), serde_json::json!(["commerce:sellers:admin"]));
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Value::Object(c).to_string());
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(v.verify(&tampered, &keys, NOW).unwrap_err(), VerifyError::Signature);
    }
}
