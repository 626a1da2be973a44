//! RFC 6750 bearer tokens: reading `Authorization: Bearer …` (§2.1) and writing
//! the `WWW-Authenticate` challenge of a refusal (§3).

use actix_web::http::header::{self, HeaderMap};

/// An access token as the client sent it, not yet verified. Never logged.
pub struct BearerToken(String);

/// An `Authorization` header that names the bearer scheme (or cannot be read)
/// but does not carry exactly one token: RFC 6750 §3.1 `invalid_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedBearer(pub &'static str);

impl BearerToken {
    /// A token sent another way (RFC 6750 §2.2, the form body).
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The token of the `Authorization` header: `Ok(None)` when there is no header
    /// or it names another scheme (`Basic …`).
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, MalformedBearer> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let value = value
            .to_str()
            .map_err(|_| MalformedBearer("the Authorization header is not ASCII"))?;
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(None);
        }
        let token = token.trim();
        if token.is_empty() || token.contains(' ') {
            return Err(MalformedBearer("malformed bearer token"));
        }
        Ok(Some(Self(token.to_owned())))
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

/// The `WWW-Authenticate` value of an RFC 6750 §3 refusal: `Bearer realm="…"`,
/// then `error`, `error_description` and `scope` when given. Quotes, backslashes
/// and control characters are dropped from the values.
pub fn bearer_challenge(realm: &str, error: Option<&str>, description: Option<&str>, scope: Option<&str>) -> String {
    let mut challenge = format!("Bearer realm=\"{}\"", quote(realm));
    for (name, value) in [("error", error), ("error_description", description), ("scope", scope)] {
        if let Some(value) = value {
            challenge.push_str(&format!(", {name}=\"{}\"", quote(value)));
        }
    }
    challenge
}

fn quote(value: &str) -> String {
    value
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn parse(value: Option<&str>) -> Result<Option<String>, MalformedBearer> {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        BearerToken::from_headers(&headers).map(|t| t.map(|t| t.expose().to_owned()))
    }

    #[test]
    fn reads_one_bearer_token() {
        assert_eq!(parse(None), Ok(None));
        assert_eq!(parse(Some("Bearer abc.def")), Ok(Some("abc.def".into())));
        assert_eq!(parse(Some("bearer  abc ")), Ok(Some("abc".into())));
        assert_eq!(parse(Some("Basic dXNlcjpwdw==")), Ok(None));
        assert_eq!(parse(Some("Basic")), Ok(None));
        for malformed in ["Bearer", "Bearer ", "Bearer a b"] {
            assert_eq!(
                parse(Some(malformed)),
                Err(MalformedBearer("malformed bearer token")),
                "{malformed}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_bytes(b"Bearer \xff").unwrap());
        assert!(BearerToken::from_headers(&headers).is_err());
    }

    #[test]
    fn challenge_quotes_its_values() {
        assert_eq!(bearer_challenge("oxidp", None, None, None), "Bearer realm=\"oxidp\"");
        assert_eq!(
            bearer_challenge("r", Some("insufficient_scope"), Some("needs \"x\"\\\n"), Some("a b")),
            "Bearer realm=\"r\", error=\"insufficient_scope\", error_description=\"needs x\", scope=\"a b\""
        );
    }
}
