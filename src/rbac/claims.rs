//! What a subject's roles put into a token: the authorized roles (assigned plus
//! inherited) and the permissions for the token's audience only, so a token
//! carries what its resource server understands and stays small.
//!
//! Users are resolved fresh at every token issuance. Clients (service accounts)
//! are cached like the client registry (`tokens.client_cache_secs`), so the
//! client_credentials path stays free of database work; a change made through
//! this instance clears the cache at once, and other instances clear theirs when
//! its notification arrives (`crate::invalidation`).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::db::models::rbac;
use crate::db::{AnyConnection, Db, DbError};
use crate::domain::Scopes;
use crate::rbac::hierarchy::{closure, is_permission_name};

/// A subject's roles and its permissions for one audience, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Effective {
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
}

/// Whose roles.
#[derive(Debug, Clone, Copy)]
pub enum SubjectRef<'a> {
    User(&'a str),
    Client(&'a str),
}

/// Loads `subject`'s effective roles and the permissions for `audience`
/// (`None` = oxidp's own API).
pub fn effective_in(
    conn: &mut AnyConnection,
    subject: SubjectRef<'_>,
    audience: Option<&str>,
) -> Result<Effective, DbError> {
    let assigned = match subject {
        SubjectRef::User(id) => rbac::roles_of_user(conn, id)?,
        SubjectRef::Client(id) => rbac::roles_of_client(conn, id)?,
    };
    if assigned.is_empty() {
        return Ok(Effective::default());
    }
    let edges = rbac::all_parents(conn)?;
    let roles: Vec<String> = closure(&assigned, &edges).into_iter().collect();
    let permissions: BTreeSet<String> = rbac::permissions_of_roles(conn, &roles)?
        .into_iter()
        .filter(|(_, aud)| aud.as_deref() == audience)
        .map(|(name, _)| name)
        .collect();
    Ok(Effective {
        roles,
        permissions: permissions.into_iter().collect(),
    })
}

/// The permission audience of a token audience: oxidp's `issuer` maps to `None`.
pub fn audience_key(issuer: &str, aud: &str) -> Option<String> {
    (aud != issuer).then(|| aud.to_owned())
}

/// Client id → permission audience → entitlements and when they were read.
type CacheMap = HashMap<String, HashMap<Option<String>, (Arc<Effective>, Instant)>>;

/// Cache of client (service account) entitlements and of the registered permission names.
pub struct RbacCache {
    entries: RwLock<CacheMap>,
    registered: RwLock<Option<(Arc<BTreeSet<String>>, Instant)>>,
    ttl: Duration,
    /// Bumped by every `clear`/`forget_client`: a load that read the database
    /// before an invalidation does not cache its (possibly stale) answer.
    generation: AtomicU64,
}

impl RbacCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            registered: RwLock::new(None),
            ttl,
            generation: AtomicU64::new(0),
        }
    }

    /// Forgets everything (a change made here or announced by another instance).
    pub fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let mut registered = self.registered.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
        *registered = None;
    }

    /// Forgets one client's entitlements (the client changed or was deleted).
    pub fn forget_client(&self, client_id: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(client_id);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Every registered permission name (a scope is a permission request only when it
/// names one; other scopes, even `api:read`, are plain OAuth scopes).
pub async fn registered(db: &Db, cache: &RbacCache) -> Result<Arc<BTreeSet<String>>, DbError> {
    if let Some((names, loaded)) = cache.registered.read().unwrap_or_else(|e| e.into_inner()).as_ref()
        && loaded.elapsed() < cache.ttl
    {
        return Ok(names.clone());
    }
    let generation = cache.generation();
    let names: Arc<BTreeSet<String>> = Arc::new(db.read(rbac::all_permission_names).await?.into_iter().collect());
    let mut registered = cache.registered.write().unwrap_or_else(|e| e.into_inner());
    if cache.generation() == generation {
        *registered = Some((names.clone(), Instant::now()));
    }
    Ok(names)
}

/// A client's entitlements for `audience`, from `cache` or the database.
pub async fn for_client(
    db: &Db,
    cache: &RbacCache,
    client_id: &str,
    audience: Option<String>,
) -> Result<Arc<Effective>, DbError> {
    if let Some((hit, loaded)) = cache
        .entries
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(client_id)
        .and_then(|by_audience| by_audience.get(&audience))
        && loaded.elapsed() < cache.ttl
    {
        return Ok(hit.clone());
    }
    let generation = cache.generation();
    let (id, aud) = (client_id.to_owned(), audience.clone());
    let effective = Arc::new(
        db.read(move |conn| effective_in(conn, SubjectRef::Client(&id), aud.as_deref()))
            .await?,
    );
    let mut entries = cache.entries.write().unwrap_or_else(|e| e.into_inner());
    if cache.generation() != generation {
        return Ok(effective);
    }
    if entries.len() > 10_000 {
        let ttl = cache.ttl;
        entries.retain(|_, by_audience| {
            by_audience.retain(|_, (_, loaded)| loaded.elapsed() < ttl);
            !by_audience.is_empty()
        });
    }
    entries
        .entry(client_id.to_owned())
        .or_default()
        .insert(audience, (effective.clone(), Instant::now()));
    Ok(effective)
}

pub async fn for_user(db: &Db, user_id: &str, audience: Option<String>) -> Result<Effective, DbError> {
    let id = user_id.to_owned();
    db.read(move |conn| effective_in(conn, SubjectRef::User(&id), audience.as_deref()))
        .await
}

/// Scopes ∩ permissions: a scope naming a registered permission is granted only
/// when the subject holds that permission for the token's audience. The token's
/// `permissions` are the requested permission scopes the subject holds or, when
/// none were requested, everything it holds for the audience.
pub fn narrow(scope: &Scopes, effective: &Effective, registered: &BTreeSet<String>) -> (Scopes, Vec<String>) {
    let held: BTreeSet<&str> = effective.permissions.iter().map(String::as_str).collect();
    let asked: Vec<&str> = scope
        .iter()
        .filter(|s| is_permission_name(s) && registered.contains(*s))
        .collect();
    let mut kept = scope.clone();
    for s in &asked {
        if !held.contains(s) {
            kept = kept.without(s);
        }
    }
    let permissions = if asked.is_empty() {
        effective.permissions.clone()
    } else {
        asked
            .iter()
            .filter(|s| held.contains(*s))
            .map(|s| (*s).to_owned())
            .collect()
    };
    (kept, permissions)
}

/// Adds `roles` and `permissions` to a token's claims when there are any.
pub fn insert_claims(map: &mut serde_json::Map<String, serde_json::Value>, roles: &[String], permissions: &[String]) {
    if !roles.is_empty() {
        map.insert("roles".into(), serde_json::json!(roles));
    }
    if !permissions.is_empty() {
        map.insert("permissions".into(), serde_json::json!(permissions));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_scopes_need_the_permission() {
        let eff = Effective {
            roles: vec!["seller".into()],
            permissions: vec!["commerce:products:read".into(), "commerce:products:write".into()],
        };
        let registered: BTreeSet<String> = [
            "commerce:products:read",
            "commerce:products:write",
            "commerce:orders:refund",
        ]
        .map(String::from)
        .into();
        let scope = Scopes::parse("openid commerce:products:write commerce:orders:refund api:read").unwrap();
        let (kept, perms) = narrow(&scope, &eff, &registered);
        assert_eq!(kept.to_string(), "api:read commerce:products:write openid");
        assert_eq!(perms, ["commerce:products:write"]);
        let (kept, perms) = narrow(&Scopes::parse("openid profile").unwrap(), &eff, &registered);
        assert_eq!(kept.to_string(), "openid profile");
        assert_eq!(perms, eff.permissions);
        let (kept, perms) = narrow(&scope, &Effective::default(), &registered);
        assert_eq!(kept.to_string(), "api:read openid");
        assert!(perms.is_empty());
    }
}
