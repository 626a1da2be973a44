//! The WebAuthn relying party, built once from `[webauthn]` at start, and what
//! a ceremony needs of the application. Kept apart from the ceremonies so that
//! the application state needs nothing of them.

use webauthn_rs::prelude::{Webauthn, WebauthnBuilder};

use crate::config::Config;
use crate::db::Db;

/// What a ceremony needs of the application.
#[derive(Clone, Copy)]
pub struct Ceremony<'a> {
    /// Where ceremonies wait, credentials are kept and refusals are audited.
    pub db: &'a Db,
    /// The relying party; `None` when security keys and passkeys are off.
    pub rp: Option<&'a Webauthn>,
    /// The time a ceremony starts or finishes at.
    pub now: i64,
}

/// How long a ceremony may take (WebAuthn recommends at most 10 minutes; the issue asks ≤ 5).
pub const CEREMONY_TTL_SECS: i64 = 300;

/// The relying party from `[webauthn]` (defaults: the issuer's host and origin);
/// `None` when security keys and passkeys are off (see `Config::webauthn_relying_party`).
pub fn from_config(config: &Config) -> anyhow::Result<Option<Webauthn>> {
    let Some((rp_id, origin, name)) = config
        .webauthn_relying_party()
        .map_err(|e| anyhow::anyhow!("configuration key `{}`: {}", e.key, e.message))?
    else {
        return Ok(None);
    };
    WebauthnBuilder::new(&rp_id, &origin)
        .and_then(|b| {
            b.rp_name(&name)
                .timeout(std::time::Duration::from_secs(CEREMONY_TTL_SECS as u64))
                .build()
        })
        .map(Some)
        .map_err(|e| anyhow::anyhow!("configuration key `webauthn.rp_id`: {e}"))
}
