//! Imported legacy password hashes (bcrypt, PBKDF2-SHA256): their parameters, the
//! wrapped form kept in the database, the import floor, and the padding work that
//! makes every sign-in cost the same whatever kind of account it names.
//!
//! Wrapping (OWASP Password Storage Cheat Sheet, "upgrading legacy hashes"): the
//! database keeps `argon2id(HMAC-SHA256(pepper, legacy_output))` and the legacy
//! parameters needed to recompute `legacy_output` from a typed password:
//!
//! ```text
//! $oxidp-legacy$bcrypt$c=12$<22-char bcrypt salt>$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>
//! $oxidp-legacy$pbkdf2-sha256$i=600000,l=32$<base64 salt>$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>
//! ```
//!
//! Equal timing: every verification runs one argon2id plus the legacy work of the
//! most expensive legacy kinds present (`LegacyWork`): an account's own legacy
//! computation counts towards it, dummy computations (`pad`) make up the rest.

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Prefix of a wrapped legacy hash.
pub const WRAPPED_PREFIX: &str = "$oxidp-legacy$";
/// Import floor: bcrypt below this cost is refused without `--allow-weak-legacy`.
pub const MIN_BCRYPT_COST: u32 = 10;
/// Import floor: PBKDF2-SHA256 below this iteration count is refused likewise.
pub const MIN_PBKDF2_ITERATIONS: u32 = 100_000;
/// The `server_settings` key holding the current `LegacyWork`.
pub const WORK_SETTING: &str = "legacy_work";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// What is needed to recompute a legacy hash output from a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyParams {
    Bcrypt { cost: u32, salt: [u8; 16] },
    Pbkdf2Sha256 { iterations: u32, salt: Vec<u8>, len: usize },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LegacyError {
    #[error(
        "{kind} with {what} {value} is below the import floor of {floor} (use --allow-weak-legacy to import it anyway)"
    )]
    BelowFloor {
        kind: &'static str,
        what: &'static str,
        value: u32,
        floor: u32,
    },
}

impl LegacyParams {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Bcrypt { .. } => "bcrypt",
            Self::Pbkdf2Sha256 { .. } => "pbkdf2-sha256",
        }
    }

    /// The legacy hash output for `password` (bcrypt: its 23 bytes; PBKDF2: the derived key).
    pub fn derive(&self, password: &[u8]) -> Vec<u8> {
        match self {
            Self::Bcrypt { cost, salt } => bcrypt_output(password, *cost, *salt).unwrap_or_default(),
            Self::Pbkdf2Sha256 { iterations, salt, len } => {
                let mut out = vec![0u8; *len];
                pbkdf2_sha256(password, salt, *iterations, &mut out);
                out
            }
        }
    }

    /// Refuses parameters below the documented import floor.
    pub fn check_floor(&self) -> Result<(), LegacyError> {
        match self {
            Self::Bcrypt { cost, .. } if *cost < MIN_BCRYPT_COST => Err(LegacyError::BelowFloor {
                kind: "bcrypt",
                what: "cost",
                value: *cost,
                floor: MIN_BCRYPT_COST,
            }),
            Self::Pbkdf2Sha256 { iterations, .. } if *iterations < MIN_PBKDF2_ITERATIONS => {
                Err(LegacyError::BelowFloor {
                    kind: "PBKDF2-SHA256",
                    what: "iterations",
                    value: *iterations,
                    floor: MIN_PBKDF2_ITERATIONS,
                })
            }
            _ => Ok(()),
        }
    }

    fn encode(&self) -> String {
        match self {
            Self::Bcrypt { cost, salt } => format!("bcrypt$c={cost}${}", bcrypt::BASE_64.encode(salt)),
            Self::Pbkdf2Sha256 { iterations, salt, len } => {
                format!("pbkdf2-sha256$i={iterations},l={len}${}", B64.encode(salt))
            }
        }
    }

    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split('$');
        let (kind, params, salt) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        match kind {
            "bcrypt" => {
                let cost = params.strip_prefix("c=")?.parse().ok()?;
                let salt = bcrypt::BASE_64.decode(salt).ok()?.try_into().ok()?;
                Some(Self::Bcrypt { cost, salt }).filter(|_| (4..=31).contains(&cost))
            }
            "pbkdf2-sha256" => {
                let (i, l) = params.split_once(',')?;
                let iterations = i.strip_prefix("i=")?.parse().ok().filter(|i| *i > 0)?;
                let len = l.strip_prefix("l=")?.parse().ok().filter(|l| (1..=1024).contains(l))?;
                let salt = B64.decode(salt).ok().filter(|s| !s.is_empty())?;
                Some(Self::Pbkdf2Sha256 { iterations, salt, len })
            }
            _ => None,
        }
    }

    fn work(&self) -> LegacyWork {
        match self {
            Self::Bcrypt { cost, .. } => LegacyWork {
                bcrypt_cost: Some(*cost),
                pbkdf2_blocks: None,
            },
            Self::Pbkdf2Sha256 { iterations, len, .. } => LegacyWork {
                bcrypt_cost: None,
                pbkdf2_blocks: Some(pbkdf2_blocks(*iterations, *len)),
            },
        }
    }
}

/// PBKDF2-HMAC-SHA256 work: iterations per 32-byte output block.
fn pbkdf2_blocks(iterations: u32, len: usize) -> u64 {
    u64::from(iterations) * len.div_ceil(32) as u64
}

fn bcrypt_output(password: &[u8], cost: u32, salt: [u8; 16]) -> Option<Vec<u8>> {
    let formatted = bcrypt::hash_with_salt(password, cost, salt)
        .ok()?
        .format_for_version(bcrypt::Version::TwoB);
    bcrypt::BASE_64.decode(&formatted[formatted.len() - 31..]).ok()
}

/// How a stored hash is kept.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored<'a> {
    /// A PHC argon2id string.
    Argon2(&'a str),
    /// A legacy hash wrapped in argon2id (the PHC string of the wrapper).
    Wrapped(LegacyParams, &'a str),
    /// A bare legacy hash as imported before wrapping existed, and its output.
    Bare(LegacyParams, Vec<u8>),
    Unknown,
}

pub fn classify(stored: &str) -> Stored<'_> {
    if stored.starts_with("$argon2id$") {
        return Stored::Argon2(stored);
    }
    if let Some(rest) = stored.strip_prefix(WRAPPED_PREFIX) {
        return match rest.find("$argon2id$") {
            Some(at) => match LegacyParams::decode(&rest[..at]) {
                Some(params) => Stored::Wrapped(params, &rest[at..]),
                None => Stored::Unknown,
            },
            None => Stored::Unknown,
        };
    }
    match parse_bare(stored) {
        Some((params, output)) => Stored::Bare(params, output),
        None => Stored::Unknown,
    }
}

/// The parameters and output of a bare bcrypt (`$2a$`, `$2b$`, `$2y$`), PHC PBKDF2
/// (`$pbkdf2-sha256$i=…,l=…$salt$hash`) or Django (`pbkdf2_sha256$iter$salt$b64hash`) hash.
pub fn parse_bare(stored: &str) -> Option<(LegacyParams, Vec<u8>)> {
    if ["$2a$", "$2b$", "$2y$"].iter().any(|p| stored.starts_with(p)) {
        if stored.len() != 60 || !stored.is_ascii() || &stored[6..7] != "$" {
            return None;
        }
        let cost: u32 = stored[4..6].parse().ok().filter(|c| (4..=31).contains(c))?;
        let salt: [u8; 16] = bcrypt::BASE_64.decode(&stored[7..29]).ok()?.try_into().ok()?;
        let output = bcrypt::BASE_64.decode(&stored[29..]).ok().filter(|o| o.len() == 23)?;
        return Some((LegacyParams::Bcrypt { cost, salt }, output));
    }
    if stored.starts_with("$pbkdf2-sha256$") {
        let parsed = argon2::PasswordHash::new(stored).ok()?;
        let iterations = parsed.params.get_decimal("i").filter(|i| *i > 0)?;
        let output = parsed.hash?.as_bytes().to_vec();
        let mut buf = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut buf).ok()?.to_vec();
        let len = output.len();
        return Some((LegacyParams::Pbkdf2Sha256 { iterations, salt, len }, output));
    }
    let mut parts = stored.split('$');
    if parts.next()? != "pbkdf2_sha256" {
        return None;
    }
    let iterations: u32 = parts.next()?.parse().ok().filter(|i| *i > 0)?;
    let salt = parts.next()?.as_bytes().to_vec();
    let output = base64::engine::general_purpose::STANDARD.decode(parts.next()?).ok()?;
    if parts.next().is_some() || output.is_empty() || output.len() > 1024 || salt.is_empty() {
        return None;
    }
    let len = output.len();
    Some((LegacyParams::Pbkdf2Sha256 { iterations, salt, len }, output))
}

/// The wrapped form: the legacy parameters, then the argon2id PHC string of the wrapper.
pub fn wrapped(params: &LegacyParams, argon2_phc: &str) -> String {
    format!("{WRAPPED_PREFIX}{}{argon2_phc}", params.encode())
}

/// The legacy parameters of a stored hash, wrapped or bare.
pub fn params_of(stored: &str) -> Option<LegacyParams> {
    match classify(stored) {
        Stored::Wrapped(params, _) | Stored::Bare(params, _) => Some(params),
        _ => None,
    }
}

/// The most expensive legacy work of any account in the database: each kind's
/// largest bcrypt cost and PBKDF2 work. Kept in `server_settings` so that every
/// instance sees an import done by the CLI at its next sign-in.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyWork {
    pub bcrypt_cost: Option<u32>,
    /// PBKDF2-SHA256 iterations × 32-byte output blocks.
    pub pbkdf2_blocks: Option<u64>,
}

impl LegacyWork {
    pub fn max(self, other: Self) -> Self {
        Self {
            bcrypt_cost: self.bcrypt_cost.max(other.bcrypt_cost),
            pbkdf2_blocks: self.pbkdf2_blocks.max(other.pbkdf2_blocks),
        }
    }

    pub fn of(params: &LegacyParams) -> Self {
        params.work()
    }

    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }
}

/// Dummy legacy computations so that `own` (the account's own legacy work, if
/// any) plus the padding equals `work`. bcrypt costs 2^c: the gap from `own` cost
/// c to the maximum C is 2^c + 2^(c+1) + … + 2^(C-1), one dummy hash per cost.
pub fn pad(work: LegacyWork, own: Option<&LegacyParams>) {
    if let Some(max) = work.bcrypt_cost {
        let dummy = |cost| std::hint::black_box(bcrypt_output(b"oxidp legacy padding", cost, [0x5a; 16]));
        match own {
            Some(LegacyParams::Bcrypt { cost, .. }) => (*cost..max).for_each(|c| {
                dummy(c);
            }),
            _ => {
                dummy(max);
            }
        }
    }
    if let Some(max) = work.pbkdf2_blocks {
        let own_blocks = match own {
            Some(LegacyParams::Pbkdf2Sha256 { iterations, len, .. }) => pbkdf2_blocks(*iterations, *len),
            _ => 0,
        };
        let mut left = max.saturating_sub(own_blocks);
        while left > 0 {
            let iterations = left.min(u64::from(u32::MAX)) as u32;
            let mut out = [0u8; 32];
            pbkdf2_sha256(b"oxidp legacy padding", b"oxidp-padding", iterations, &mut out);
            std::hint::black_box(out);
            left -= u64::from(iterations);
        }
    }
}

/// PBKDF2-HMAC-SHA256 through OpenSSL (already linked for TLS to PostgreSQL):
/// optimised C even in a debug build of oxidp, where a generic
/// `pbkdf2_hmac::<Sha256>` instantiated in this crate would be unoptimised and
/// many times slower. The account's own legacy computation and the equal-work
/// padding both use this function, so they always cost the same.
fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    let done = openssl::pkcs5::pbkdf2_hmac(
        password,
        salt,
        iterations as usize,
        openssl::hash::MessageDigest::sha256(),
        out,
    );
    if done.is_err() {
        // Not expected (OpenSSL refuses only absurd parameters); compute it in Rust.
        pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, out);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn openssl_pbkdf2_matches_the_rust_crate() {
        for (salt, len) in [
            (&b"somesalt"[..], 32usize),
            (&[7u8; 16][..], 32),
            (&[1u8; 48][..], 64),
            (&[2u8; 60][..], 32),
            (&[3u8; 16][..], 8),
        ] {
            let mut fast = vec![0u8; len];
            super::pbkdf2_sha256(b"pw", salt, 1000, &mut fast);
            let mut generic = vec![0u8; len];
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(b"pw", salt, 1000, &mut generic);
            assert_eq!(fast, generic, "salt {} bytes, {len} bytes out", salt.len());
        }
    }

    use super::*;

    #[test]
    fn bare_hashes_parse_and_recompute() {
        let bc = bcrypt::hash("hunter2 hunter2", 4).unwrap();
        let (params, output) = parse_bare(&bc).unwrap();
        assert!(matches!(params, LegacyParams::Bcrypt { cost: 4, .. }));
        assert_eq!(params.derive(b"hunter2 hunter2"), output);
        assert_ne!(params.derive(b"hunter3 hunter3"), output);

        let mut derived = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"pw", b"somesalt", 1000, &mut derived);
        let django = format!(
            "pbkdf2_sha256$1000$somesalt${}",
            base64::engine::general_purpose::STANDARD.encode(derived)
        );
        let (params, output) = parse_bare(&django).unwrap();
        assert_eq!(params.derive(b"pw"), output);
        assert_eq!(
            params.check_floor().unwrap_err().to_string(),
            "PBKDF2-SHA256 with iterations 1000 is below the import floor of 100000 (use --allow-weak-legacy to import it anyway)"
        );
    }

    #[test]
    fn wrapped_form_round_trips_its_parameters() {
        let bc = bcrypt::hash("x", 11).unwrap();
        let (params, _) = parse_bare(&bc).unwrap();
        let phc = "$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        let stored = wrapped(&params, phc);
        assert!(stored.starts_with("$oxidp-legacy$bcrypt$c=11$"));
        assert_eq!(classify(&stored), Stored::Wrapped(params.clone(), phc));
        assert_eq!(params.check_floor(), Ok(()));
        let p = LegacyParams::Pbkdf2Sha256 {
            iterations: 600_000,
            salt: b"salt+/=".to_vec(),
            len: 32,
        };
        assert_eq!(classify(&wrapped(&p, phc)), Stored::Wrapped(p, phc));
        assert_eq!(classify("$oxidp-legacy$md5$x$y$argon2id$…"), Stored::Unknown);
    }

    #[test]
    fn work_is_the_maximum_per_kind() {
        let a = LegacyWork {
            bcrypt_cost: Some(10),
            pbkdf2_blocks: None,
        };
        let b = LegacyWork {
            bcrypt_cost: Some(12),
            pbkdf2_blocks: Some(600_000),
        };
        assert_eq!(a.max(b), b);
        assert_eq!(
            LegacyWork::of(&LegacyParams::Pbkdf2Sha256 {
                iterations: 1000,
                salt: vec![1],
                len: 64
            })
            .pbkdf2_blocks,
            Some(2000)
        );
    }
}
