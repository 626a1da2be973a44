//! Registered clients: the parsed `Client`, its administration (create, update,
//! delete, rotate secret), and `ClientRegistry`, an in-memory cache that keeps
//! the token endpoint off the database. Every change is audited, and announced to
//! the other instances (`invalidation::notify`: on PostgreSQL they drop the entry
//! when it commits), in the transaction that makes it; entries live at most
//! `tokens.client_cache_secs`, the fallback for a missed notification.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::{self, Actor};
use crate::config::TokenConfig;
use crate::crypto;
use crate::db::models::clients::{self, ClientRow};
use crate::db::{AnyConnection, Db, DbError};
use crate::domain::{ClientId, RedirectUri, Scopes};
use crate::invalidation::{self, Change};
use crate::oidc::keys::SigningAlg;

/// Token endpoint authentication methods (RFC 7591 §2, OIDC Core §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// A public client: no secret, PKCE mandatory.
    None,
}

impl AuthMethod {
    pub const NAMES: [&'static str; 4] = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"];

    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "client_secret_basic" => Some(AuthMethod::ClientSecretBasic),
            "client_secret_post" => Some(AuthMethod::ClientSecretPost),
            "private_key_jwt" => Some(AuthMethod::PrivateKeyJwt),
            "none" => Some(AuthMethod::None),
            _ => None,
        }
    }

    pub fn uses_secret(self) -> bool {
        matches!(self, AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn name(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "authorization_code" => Some(GrantType::AuthorizationCode),
            "refresh_token" => Some(GrantType::RefreshToken),
            "client_credentials" => Some(GrantType::ClientCredentials),
            _ => None,
        }
    }
}

/// A registered client, parsed.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: ClientId,
    pub name: String,
    pub secret_hash: Option<String>,
    pub auth_method: AuthMethod,
    /// Public keys for `private_key_jwt` (a JWK Set).
    pub jwks: Option<josekit::jwk::JwkSet>,
    pub redirect_uris: Vec<RedirectUri>,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Scopes,
    pub audience: Option<String>,
    pub access_token_ttl: i64,
    pub refresh_token_ttl: i64,
    pub id_token_alg: SigningAlg,
    pub require_consent: bool,
    pub refresh_without_offline_access: bool,
    /// This application requires a second factor (acr `urn:oxidp:acr:mfa`).
    pub require_mfa: bool,
    /// One active sign-in per person: tokens issued from a new sign-in revoke the
    /// person's older grants at this application.
    pub single_session: bool,
    pub created_at: i64,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.auth_method == AuthMethod::None
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// The registered redirect URI that `requested` matches, if any.
    pub fn redirect_uri_matching(&self, requested: &str) -> Option<&RedirectUri> {
        self.redirect_uris.iter().find(|r| r.matches(requested))
    }

    pub fn from_row(row: ClientRow) -> anyhow::Result<Self> {
        let parse_uris = |json: &str| -> anyhow::Result<Vec<RedirectUri>> {
            let raw: Vec<String> = serde_json::from_str(json)?;
            raw.iter()
                .map(|u| RedirectUri::parse(u).map_err(|e| anyhow::anyhow!("{u}: {e}")))
                .collect()
        };
        Ok(Self {
            id: ClientId::parse(&row.id)?,
            name: row.name,
            secret_hash: row.secret_hash,
            auth_method: AuthMethod::parse(&row.auth_method)
                .ok_or_else(|| anyhow::anyhow!("unknown auth method {}", row.auth_method))?,
            jwks: row
                .jwks
                .as_deref()
                .map(|j| josekit::jwk::JwkSet::from_bytes(j.as_bytes()))
                .transpose()?,
            redirect_uris: parse_uris(&row.redirect_uris)?,
            post_logout_redirect_uris: parse_uris(&row.post_logout_redirect_uris)?,
            grant_types: row.grant_types.split(' ').filter_map(GrantType::parse).collect(),
            scopes: Scopes::parse(&row.scopes)?,
            audience: row.audience,
            access_token_ttl: row.access_token_ttl,
            refresh_token_ttl: row.refresh_token_ttl,
            id_token_alg: SigningAlg::parse(&row.id_token_alg)
                .ok_or_else(|| anyhow::anyhow!("unknown alg {}", row.id_token_alg))?,
            require_consent: row.require_consent,
            refresh_without_offline_access: row.refresh_without_offline_access,
            require_mfa: row.require_mfa,
            single_session: row.single_session,
            created_at: row.created_at,
        })
    }
}

/// A cached look-up: the client (or its absence) and when it was read.
type CacheEntry = (Option<Arc<Client>>, Instant);

/// In-memory cache of clients by id.
pub struct ClientRegistry {
    entries: RwLock<HashMap<String, CacheEntry>>,
    ttl: Duration,
    /// Bumped by every `forget`/`clear`: a look-up that read the database before
    /// an invalidation does not put its (possibly stale) answer back afterwards.
    generation: AtomicU64,
}

impl ClientRegistry {
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            ttl,
            generation: AtomicU64::new(0),
        }
    }

    /// The client with this id, from the cache or the database. Unknown ids are
    /// cached too (briefly), so guessing ids does not hammer the database.
    pub async fn get(&self, db: &Db, id: &str) -> Result<Option<Arc<Client>>, DbError> {
        if let Some((client, loaded)) = self.entries.read().unwrap_or_else(|e| e.into_inner()).get(id)
            && loaded.elapsed() < self.ttl
        {
            return Ok(client.clone());
        }
        if ClientId::parse(id).is_err() {
            return Ok(None);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let key = id.to_owned();
        let row = db.read(move |conn| clients::find(conn, &key)).await?;
        let client = match row.map(Client::from_row).transpose() {
            Ok(client) => client.map(Arc::new),
            Err(error) => {
                tracing::error!(client_id = %id, %error, "stored client cannot be parsed");
                None
            }
        };
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        // Invalidated while we read: answer, but do not cache what we read.
        if self.generation.load(Ordering::Acquire) != generation {
            return Ok(client);
        }
        if entries.len() > 10_000 {
            entries.retain(|_, (_, loaded)| loaded.elapsed() < self.ttl);
        }
        entries.insert(id.to_owned(), (client.clone(), Instant::now()));
        Ok(client)
    }

    /// Drops a cached entry (a change made here, or announced by another instance).
    pub fn forget(&self, id: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(id);
    }

    /// Drops every entry (the invalidation listener reconnected).
    pub fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

/// What an administrator specifies for a new or updated client.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    pub id: Option<String>,
    pub name: Option<String>,
    pub auth_method: Option<String>,
    pub jwks: Option<serde_json::Value>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub scopes: Option<String>,
    pub audience: Option<String>,
    pub access_token_ttl: Option<i64>,
    pub refresh_token_ttl: Option<i64>,
    pub id_token_alg: Option<String>,
    /// `false` marks a first-party client that needs no consent screen.
    pub require_consent: Option<bool>,
    pub refresh_without_offline_access: Option<bool>,
    /// Require a second factor for every sign-in to this client.
    pub require_mfa: Option<bool>,
    /// One active sign-in per person at this client: a new one revokes the older ones' tokens.
    pub single_session: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("a client with this id already exists")]
    Exists,
    #[error("no such client")]
    NotFound,
    #[error(transparent)]
    Db(DbError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<DbError> for ClientError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Conflict(_) => ClientError::Exists,
            DbError::NotFound => ClientError::NotFound,
            other => ClientError::Db(other),
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ClientError {
    ClientError::Invalid {
        field,
        message: message.into(),
    }
}

/// Applies `spec` on top of `row` (a new row with defaults, or the stored one) and
/// checks the result is a coherent client.
fn apply(spec: ClientSpec, mut row: ClientRow) -> Result<ClientRow, ClientError> {
    if let Some(name) = spec.name {
        if name.trim().is_empty() || name.len() > 200 {
            return Err(invalid("name", "1 to 200 characters"));
        }
        row.name = name.trim().to_owned();
    }
    if let Some(method) = spec.auth_method {
        AuthMethod::parse(&method)
            .ok_or_else(|| invalid("auth_method", format!("one of {}", AuthMethod::NAMES.join(", "))))?;
        row.auth_method = method;
    }
    if let Some(jwks) = spec.jwks {
        let text = jwks.to_string();
        let set = josekit::jwk::JwkSet::from_bytes(text.as_bytes()).map_err(|e| invalid("jwks", e.to_string()))?;
        if set.keys().is_empty() || set.keys().iter().any(|k| k.parameter("d").is_some()) {
            return Err(invalid("jwks", "a JWK Set of public keys (no private parts)"));
        }
        row.jwks = Some(text);
    }
    for (field, value, target) in [
        ("redirect_uris", spec.redirect_uris, &mut row.redirect_uris),
        (
            "post_logout_redirect_uris",
            spec.post_logout_redirect_uris,
            &mut row.post_logout_redirect_uris,
        ),
    ] {
        if let Some(uris) = value {
            for uri in &uris {
                RedirectUri::parse(uri).map_err(|e| invalid(field, format!("{uri}: {e}")))?;
            }
            *target = serde_json::to_string(&uris).map_err(anyhow::Error::from)?;
        }
    }
    if let Some(grants) = spec.grant_types {
        for grant in &grants {
            GrantType::parse(grant)
                .ok_or_else(|| invalid("grant_types", "authorization_code, refresh_token or client_credentials"))?;
        }
        row.grant_types = grants.join(" ");
    }
    if let Some(scopes) = spec.scopes {
        row.scopes = Scopes::parse(&scopes)
            .map_err(|e| invalid("scopes", e.to_string()))?
            .to_string();
    }
    if let Some(audience) = spec.audience {
        row.audience = if audience.is_empty() { None } else { Some(audience) };
    }
    if let Some(ttl) = spec.access_token_ttl {
        if !(30..=86400).contains(&ttl) {
            return Err(invalid("access_token_ttl", "30 to 86400 seconds"));
        }
        row.access_token_ttl = ttl;
    }
    if let Some(ttl) = spec.refresh_token_ttl {
        if !(60..=365 * 86400).contains(&ttl) {
            return Err(invalid("refresh_token_ttl", "60 seconds to 365 days"));
        }
        row.refresh_token_ttl = ttl;
    }
    if let Some(alg) = spec.id_token_alg {
        SigningAlg::parse(&alg).ok_or_else(|| invalid("id_token_alg", "ES256, RS256 or EdDSA"))?;
        row.id_token_alg = alg;
    }
    if let Some(v) = spec.require_consent {
        row.require_consent = v;
    }
    if let Some(v) = spec.require_mfa {
        row.require_mfa = v;
    }
    if let Some(v) = spec.single_session {
        row.single_session = v;
    }
    if let Some(v) = spec.refresh_without_offline_access {
        row.refresh_without_offline_access = v;
    }
    // Coherence.
    let method = AuthMethod::parse(&row.auth_method).expect("checked");
    let grants: Vec<GrantType> = row.grant_types.split(' ').filter_map(GrantType::parse).collect();
    if grants.is_empty() {
        return Err(invalid("grant_types", "at least one grant type"));
    }
    if method == AuthMethod::None && grants.contains(&GrantType::ClientCredentials) {
        return Err(invalid("grant_types", "a public client cannot use client_credentials"));
    }
    if method == AuthMethod::PrivateKeyJwt && row.jwks.is_none() {
        return Err(invalid("jwks", "private_key_jwt needs the client's public keys"));
    }
    let redirects: Vec<String> = serde_json::from_str(&row.redirect_uris).map_err(anyhow::Error::from)?;
    if grants.contains(&GrantType::AuthorizationCode) && redirects.is_empty() {
        return Err(invalid(
            "redirect_uris",
            "authorization_code needs at least one redirect URI",
        ));
    }
    Ok(row)
}

/// The result of creating a client: the secret is shown once and never stored.
pub struct Created {
    pub client: Client,
    pub secret: Option<String>,
}

/// Makes one change to client `id`, records `action` about it and notifies the
/// other instances in the same transaction; `write` returning false (no such
/// client) records nothing and answers `NotFound`.
async fn audited<F>(
    db: &Db,
    now: i64,
    actor: &Actor,
    id: &str,
    action: &'static str,
    details: Value,
    write: F,
) -> Result<(), ClientError>
where
    F: FnOnce(&mut AnyConnection) -> Result<bool, DbError> + Send + 'static,
{
    let (actor, target) = (actor.clone(), format!("client:{id}"));
    let change = Change::Client(id.to_owned());
    let written = db
        .transaction(move |conn| {
            if !write(conn)? {
                return Ok(false);
            }
            audit::record(conn, &actor, action, Some(&target), details, now)?;
            invalidation::notify(conn, &change)?;
            Ok(true)
        })
        .await?;
    if written { Ok(()) } else { Err(ClientError::NotFound) }
}

/// Registers a client at `now`; unset lifetimes come from `tokens`.
pub async fn create(
    db: &Db,
    now: i64,
    tokens: &TokenConfig,
    actor: &Actor,
    spec: ClientSpec,
) -> Result<Created, ClientError> {
    let id = match &spec.id {
        Some(id) => ClientId::parse(id).map_err(|e| invalid("id", e.to_string()))?,
        None => ClientId::generate(),
    };
    let method = spec
        .auth_method
        .clone()
        .unwrap_or_else(|| "client_secret_basic".to_owned());
    let defaults = ClientRow {
        id: id.to_string(),
        name: id.to_string(),
        secret_hash: None,
        auth_method: method,
        jwks: None,
        redirect_uris: "[]".to_owned(),
        post_logout_redirect_uris: "[]".to_owned(),
        grant_types: "authorization_code refresh_token".to_owned(),
        scopes: "openid profile email phone address offline_access roles".to_owned(),
        audience: None,
        access_token_ttl: tokens.access_token_ttl_secs,
        refresh_token_ttl: tokens.refresh_token_ttl_secs,
        id_token_alg: "ES256".to_owned(),
        require_consent: true,
        refresh_without_offline_access: false,
        require_mfa: false,
        single_session: false,
        created_at: now,
        updated_at: now,
    };
    let mut spec = spec;
    spec.id = None;
    let mut row = apply(spec, defaults)?;
    let secret = AuthMethod::parse(&row.auth_method)
        .expect("checked")
        .uses_secret()
        .then(crypto::random_token);
    row.secret_hash = secret.as_deref().map(crypto::sha256_hex);
    let client = Client::from_row(row.clone())?;
    let id = row.id.clone();
    audited(db, now, actor, &id, "client.create", json!({}), move |conn| {
        clients::insert(conn, &row).map(|()| true)
    })
    .await?;
    Ok(Created { client, secret })
}

pub async fn find(db: &Db, id: &str) -> Result<Client, ClientError> {
    let key = id.to_owned();
    let row = db
        .read(move |conn| clients::find(conn, &key))
        .await?
        .ok_or(ClientError::NotFound)?;
    Ok(Client::from_row(row)?)
}

pub async fn list(db: &Db, limit: i64, offset: i64) -> Result<Vec<Client>, ClientError> {
    let rows = db.read(move |conn| clients::list(conn, limit, offset)).await?;
    rows.into_iter()
        .map(|r| Client::from_row(r).map_err(ClientError::from))
        .collect()
}

/// Changes a client at `now` and drops it from `registry`. Switching to a
/// secret-based method issues a new secret.
pub async fn update(
    db: &Db,
    registry: &ClientRegistry,
    now: i64,
    actor: &Actor,
    id: &str,
    spec: ClientSpec,
) -> Result<Created, ClientError> {
    if spec.id.is_some() {
        return Err(invalid("id", "a client id cannot be changed"));
    }
    // The audit event names the fields that were sent, never their values.
    let fields: Vec<String> = match serde_json::to_value(&spec) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k).collect(),
        _ => Vec::new(),
    };
    let key = id.to_owned();
    let stored = db
        .run(move |conn| clients::find(conn, &key))
        .await?
        .ok_or(ClientError::NotFound)?;
    let had_secret = stored.secret_hash.is_some();
    let mut row = apply(spec, stored)?;
    row.updated_at = now;
    let method = AuthMethod::parse(&row.auth_method).expect("checked");
    let mut secret = None;
    if method.uses_secret() && !had_secret {
        let new = crypto::random_token();
        row.secret_hash = Some(crypto::sha256_hex(&new));
        secret = Some(new);
    } else if !method.uses_secret() {
        row.secret_hash = None;
    }
    let client = Client::from_row(row.clone())?;
    let details = json!({ "fields": fields, "new_secret": secret.is_some() });
    audited(db, now, actor, id, "client.update", details, move |conn| {
        clients::update(conn, &row)
    })
    .await?;
    registry.forget(id);
    Ok(Created { client, secret })
}

/// Deletes a client at `now` and drops it from `registry`. Its codes, grants,
/// refresh tokens and consents go with it (cascade).
pub async fn delete(db: &Db, registry: &ClientRegistry, now: i64, actor: &Actor, id: &str) -> Result<(), ClientError> {
    let key = id.to_owned();
    let deleted = audited(db, now, actor, id, "client.delete", json!({}), move |conn| {
        clients::delete(conn, &key)
    })
    .await;
    registry.forget(id);
    deleted
}

/// Issues a new secret at `now` and drops the client from `registry`; the old
/// secret stops working at once.
pub async fn rotate_secret(
    db: &Db,
    registry: &ClientRegistry,
    now: i64,
    actor: &Actor,
    id: &str,
) -> Result<String, ClientError> {
    let client = find(db, id).await?;
    if !client.auth_method.uses_secret() {
        return Err(invalid(
            "auth_method",
            "this client does not authenticate with a secret",
        ));
    }
    let secret = crypto::random_token();
    let hash = crypto::sha256_hex(&secret);
    let key = id.to_owned();
    audited(db, now, actor, id, "client.rotate_secret", json!({}), move |conn| {
        clients::set_secret_hash(conn, &key, &hash, now)
    })
    .await?;
    registry.forget(id);
    Ok(secret)
}

/// A client as administrators see it (never the secret hash).
pub fn describe(client: &Client) -> serde_json::Value {
    serde_json::json!({
        "client_id": client.id.as_str(),
        "name": client.name,
        "auth_method": client.auth_method.name(),
        "public": client.is_public(),
        "redirect_uris": client.redirect_uris.iter().map(RedirectUri::as_str).collect::<Vec<_>>(),
        "post_logout_redirect_uris": client.post_logout_redirect_uris.iter().map(RedirectUri::as_str).collect::<Vec<_>>(),
        "grant_types": client.grant_types.iter().map(|g| g.name()).collect::<Vec<_>>(),
        "scopes": client.scopes.to_string(),
        "audience": client.audience,
        "access_token_ttl": client.access_token_ttl,
        "refresh_token_ttl": client.refresh_token_ttl,
        "id_token_alg": client.id_token_alg.name(),
        "require_consent": client.require_consent,
        "refresh_without_offline_access": client.refresh_without_offline_access,
        "require_mfa": client.require_mfa,
        "single_session": client.single_session,
        "has_jwks": client.jwks.is_some(),
        "created_at": client.created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::TestDb;

    const NOW: i64 = 1_800_000_000;

    fn spec(value: Value) -> ClientSpec {
        serde_json::from_value(value).expect("a client spec")
    }

    async fn service(t: &TestDb, id: &str) -> Created {
        let spec = spec(json!({ "id": id, "grant_types": ["client_credentials"] }));
        create(&t.db, NOW, &TokenConfig::default(), &Actor::cli(), spec)
            .await
            .expect("create client")
    }

    #[tokio::test]
    async fn a_new_client_keeps_only_the_hash_of_its_secret_and_is_audited_once() {
        let t = TestDb::new().await;
        let created = service(&t, "billing").await;
        let secret = created.secret.expect("a secret-based client gets a secret");
        let stored = find(&t.db, "billing").await.unwrap();
        assert_eq!(stored.secret_hash, Some(crypto::sha256_hex(&secret)));
        assert_eq!(stored.access_token_ttl, TokenConfig::default().access_token_ttl_secs);
        assert_eq!(stored.created_at, NOW);
        let events = t.events("client.create").await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].target.as_deref(), Some("client:billing"));
        assert!(!events[0].details.contains(&secret));

        let spec = spec(json!({ "id": "billing", "grant_types": ["client_credentials"] }));
        let again = create(&t.db, NOW, &TokenConfig::default(), &Actor::cli(), spec).await;
        assert!(matches!(again, Err(ClientError::Exists)), "{:?}", again.err());
        assert_eq!(t.events("client.create").await.len(), 1);
    }

    #[tokio::test]
    async fn an_incoherent_client_is_refused_before_anything_is_written() {
        let t = TestDb::new().await;
        for (value, field) in [
            (
                json!({ "auth_method": "none", "grant_types": ["client_credentials"] }),
                "grant_types",
            ),
            (
                json!({ "auth_method": "private_key_jwt", "grant_types": ["client_credentials"] }),
                "jwks",
            ),
            (json!({ "grant_types": ["authorization_code"] }), "redirect_uris"),
            (
                json!({ "grant_types": ["client_credentials"], "access_token_ttl": 5 }),
                "access_token_ttl",
            ),
            (json!({ "id": "no spaces allowed" }), "id"),
        ] {
            let refused = create(&t.db, NOW, &TokenConfig::default(), &Actor::cli(), spec(value)).await;
            match refused {
                Err(ClientError::Invalid { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{field}: {:?}", other.err()),
            }
        }
        assert!(list(&t.db, 10, 0).await.unwrap().is_empty());
        assert!(t.events("client.create").await.is_empty());
    }

    #[tokio::test]
    async fn changes_made_here_reach_this_instances_registry_at_once() {
        let t = TestDb::new().await;
        let registry = ClientRegistry::new(Duration::from_secs(3600));
        let first = service(&t, "billing").await.secret.unwrap();
        let cached = registry.get(&t.db, "billing").await.unwrap().unwrap();
        assert_eq!(cached.name, "billing");

        let renamed = spec(json!({ "name": "Billing" }));
        update(&t.db, &registry, NOW + 1, &Actor::cli(), "billing", renamed)
            .await
            .unwrap();
        let cached = registry.get(&t.db, "billing").await.unwrap().unwrap();
        assert_eq!(cached.name, "Billing");

        let second = rotate_secret(&t.db, &registry, NOW + 2, &Actor::cli(), "billing")
            .await
            .unwrap();
        assert_ne!(first, second);
        let cached = registry.get(&t.db, "billing").await.unwrap().unwrap();
        assert_eq!(cached.secret_hash, Some(crypto::sha256_hex(&second)));

        delete(&t.db, &registry, NOW + 3, &Actor::cli(), "billing")
            .await
            .unwrap();
        assert!(registry.get(&t.db, "billing").await.unwrap().is_none());
        let again = delete(&t.db, &registry, NOW + 4, &Actor::cli(), "billing").await;
        assert!(matches!(again, Err(ClientError::NotFound)), "{:?}", again.err());
        assert_eq!(t.events("client.delete").await.len(), 1);
        let updates = t.events("client.update").await;
        assert_eq!(updates.len(), 1);
        assert!(updates[0].details.contains("name") && !updates[0].details.contains("Billing"));
    }

    #[tokio::test]
    async fn a_client_without_a_secret_has_none_to_rotate_and_an_unknown_one_nothing_to_update() {
        let t = TestDb::new().await;
        let registry = ClientRegistry::new(Duration::from_secs(3600));
        let public = spec(json!({
            "id": "spa",
            "auth_method": "none",
            "redirect_uris": ["https://spa.example/callback"],
        }));
        let created = create(&t.db, NOW, &TokenConfig::default(), &Actor::cli(), public)
            .await
            .unwrap();
        assert!(created.secret.is_none() && created.client.is_public());
        let refused = rotate_secret(&t.db, &registry, NOW, &Actor::cli(), "spa").await;
        assert!(matches!(
            refused,
            Err(ClientError::Invalid {
                field: "auth_method",
                ..
            })
        ));
        let unknown = update(&t.db, &registry, NOW, &Actor::cli(), "nobody", ClientSpec::default()).await;
        assert!(matches!(unknown, Err(ClientError::NotFound)), "{:?}", unknown.err());
        assert!(t.events("client.rotate_secret").await.is_empty());
        assert!(t.events("client.update").await.is_empty());
    }
}
