//! Pure RBAC rules: role hierarchy closure, cycle detection, static separation of
//! duty, and the name grammars. No storage here, so every rule is unit-tested.

use std::collections::{BTreeMap, BTreeSet};

/// The roles a subject is authorized for: its assigned roles and every ancestor
/// (a role inherits its parents' permissions). `edges` are (role, parent).
pub fn closure(assigned: &[String], edges: &[(String, String)]) -> BTreeSet<String> {
    let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (role, parent) in edges {
        parents.entry(role.as_str()).or_default().push(parent.as_str());
    }
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut stack: Vec<&str> = assigned.iter().map(String::as_str).collect();
    while let Some(role) = stack.pop() {
        if seen.insert(role.to_owned())
            && let Some(ps) = parents.get(role)
        {
            stack.extend(ps.iter().copied());
        }
    }
    seen
}

/// True when making `parent` a parent of `role` would close a cycle.
pub fn creates_cycle(role: &str, parent: &str, edges: &[(String, String)]) -> bool {
    role == parent || closure(&[parent.to_owned()], edges).contains(role)
}

/// A separation-of-duty conflict: the set and the roles of it the subject would hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub set: String,
    pub roles: Vec<String>,
}

/// The first exclusive set of which `authorized` holds two or more roles.
/// `members` are (set name, role) pairs.
pub fn sod_conflict(authorized: &BTreeSet<String>, members: &[(String, String)]) -> Option<Conflict> {
    let mut by_set: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (set, role) in members {
        if authorized.contains(role) {
            by_set.entry(set.as_str()).or_default().push(role.clone());
        }
    }
    by_set
        .into_iter()
        .find(|(_, roles)| roles.len() > 1)
        .map(|(set, mut roles)| {
            roles.sort();
            Conflict {
                set: set.to_owned(),
                roles,
            }
        })
}

/// Role and exclusive-set names: 1-64 of `a-z 0-9 _ . -`, starting with a letter or digit.
pub fn is_valid_role_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'))
}

/// Permission names: two to five `:`-separated segments of `a-z 0-9 _ . -`, the first
/// naming the resource server (`commerce:products:write`). A scope with this shape is
/// a permission request.
pub fn is_permission_name(name: &str) -> bool {
    let segments: Vec<&str> = name.split(':').collect();
    name.len() <= 128
        && (2..=5).contains(&segments.len())
        && segments.iter().all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'))
        })
}

/// The namespace of oxidp's own (admin API) permissions.
pub const OWN_NAMESPACE: &str = "oxidp";

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn closure_follows_parents_transitively_and_survives_diamonds() {
        let e = edges(&[
            ("manager", "seller"),
            ("seller", "viewer"),
            ("manager", "auditor"),
            ("auditor", "viewer"),
        ]);
        let got = closure(&["manager".into()], &e);
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            ["auditor", "manager", "seller", "viewer"]
        );
        assert_eq!(closure(&["viewer".into()], &e).len(), 1);
        assert!(closure(&[], &e).is_empty());
    }

    #[test]
    fn cycles_are_detected_directly_and_transitively() {
        let e = edges(&[("a", "b"), ("b", "c")]);
        assert!(creates_cycle("c", "a", &e));
        assert!(creates_cycle("b", "a", &e));
        assert!(creates_cycle("a", "a", &e));
        assert!(!creates_cycle("a", "c", &e));
        assert!(!creates_cycle("d", "a", &e));
    }

    #[test]
    fn separation_of_duty_counts_inherited_roles() {
        let sets = edges(&[("trade", "buyer"), ("trade", "seller"), ("other", "x")]);
        let held: BTreeSet<String> = ["buyer".to_string(), "x".to_string()].into();
        assert_eq!(sod_conflict(&held, &sets), None);
        let e = edges(&[("broker", "seller")]);
        let held = closure(&["buyer".into(), "broker".into()], &e);
        assert_eq!(
            sod_conflict(&held, &sets),
            Some(Conflict {
                set: "trade".into(),
                roles: vec!["buyer".into(), "seller".into()]
            })
        );
    }

    #[test]
    fn names() {
        assert!(is_valid_role_name("buyer"));
        assert!(is_valid_role_name("ops.on-call_2"));
        for bad in ["", "Buyer", "-x", "a b", "a:b", &"x".repeat(65)] {
            assert!(!is_valid_role_name(bad), "{bad:?}");
        }
        assert!(is_permission_name("commerce:products:write"));
        assert!(is_permission_name("oxidp:users:read"));
        for bad in [
            "commerce",
            "commerce:",
            ":x",
            "https://x.example/a",
            "a:B",
            "a:b c",
            "a:b:c:d:e:f",
        ] {
            assert!(!is_permission_name(bad), "{bad:?}");
        }
    }
}
