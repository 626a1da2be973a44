//! Issue 19 item 6: no escalation through the admin API. A holder of
//! `oxidp:roles:write` may hand out only permissions it holds itself (through
//! inheritance too); a holder of `oxidp:clients:write` may not take over a client
//! that holds more than it does; `admin` (holding `oxidp:roles:escalate`) may.
//! Refusals are 403 problem+json naming the missing permission, and audited.

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestClient, jwt_claims, spawn_app};

async fn call(app: &TestApp, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let (status, body, headers) = app.api(method, path, Some(token), body).await;
    if status == 403 {
        assert_eq!(headers["content-type"], "application/problem+json");
    }
    (status, body)
}

fn assert_refused(status: u16, body: &Value, missing: &str) {
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "escalation_refused", "{body}");
    assert_eq!(body["missing_permission"], missing, "{body}");
    assert!(body["detail"].as_str().unwrap().contains(missing), "{body}");
}

/// A service account holding `role` (set up by the operator), and its access token.
async fn holder_of(app: &TestApp, role: &str, permissions: &[&str]) -> (TestClient, String) {
    let system = oxidp::audit::Actor::system();
    if permissions.is_empty() {
        // A built-in role (`admin`).
    } else {
        oxidp::rbac::create_role(app.state.rbac_change(), &system, role, "")
            .await
            .unwrap();
        for permission in permissions {
            oxidp::rbac::grant(app.state.rbac_change(), &system, role, permission, None)
                .await
                .unwrap();
        }
    }
    let client = app.service_client("email", None).await;
    oxidp::rbac::assign(
        app.state.rbac_change(),
        &system,
        oxidp::rbac::Subject::Client(client.id.clone()),
        role,
    )
    .await
    .unwrap();
    let token = app.client_token(&client, &[]).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    (client, token)
}

#[tokio::test]
async fn roles_writer_cannot_grant_or_assign_beyond_its_own_permissions() {
    let app = spawn_app().await;
    let put = reqwest::Method::PUT;
    let (keeper, token) = holder_of(&app, "role-keeper", &["oxidp:roles:write", "oxidp:roles:read"]).await;

    // Its own role cannot get oxidp:users:write.
    let (s, b) = call(
        &app,
        put.clone(),
        "/admin/v1/roles/role-keeper/permissions/oxidp:users:write",
        &token,
        None,
    )
    .await;
    assert_refused(s, &b, "oxidp:users:write");
    // Nor can it assign itself `admin`, or make `admin` a parent of its role.
    let (s, b) = call(
        &app,
        put.clone(),
        &format!("/admin/v1/clients/{}/roles/admin", keeper.id),
        &token,
        None,
    )
    .await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["code"], "escalation_refused");
    let missing = b["missing_permission"].as_str().unwrap().to_owned();
    assert!(missing.starts_with("oxidp:") && missing != "oxidp:roles:write" && missing != "oxidp:roles:read");
    let (s, b) = call(
        &app,
        put.clone(),
        "/admin/v1/roles/role-keeper/parents/admin",
        &token,
        None,
    )
    .await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["code"], "escalation_refused");

    // Nothing changed: the role still holds only what it held.
    let (s, role) = call(&app, reqwest::Method::GET, "/admin/v1/roles/role-keeper", &token, None).await;
    assert_eq!(s, 200);
    assert_eq!(
        role["effective_permissions"],
        json!(["oxidp:roles:read", "oxidp:roles:write"])
    );
    let (_, roles) = call(
        &app,
        reqwest::Method::GET,
        &format!("/admin/v1/clients/{}/roles", keeper.id),
        &token,
        None,
    )
    .await;
    assert_eq!(roles["assigned"], json!(["role-keeper"]), "{roles}");

    // What it holds it may hand on: a helper role gets oxidp:roles:read, and the
    // helper role may be assigned and inherited.
    let (s, _) = call(
        &app,
        reqwest::Method::POST,
        "/admin/v1/roles",
        &token,
        Some(json!({"name": "helper"})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, b) = call(
        &app,
        put.clone(),
        "/admin/v1/roles/helper/permissions/oxidp:roles:read",
        &token,
        None,
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let other = app.service_client("email", None).await;
    let (s, b) = call(
        &app,
        put.clone(),
        &format!("/admin/v1/clients/{}/roles/helper", other.id),
        &token,
        None,
    )
    .await;
    assert_eq!(s, 201, "{b}");

    // The administrator (holding oxidp:roles:escalate) may do what was refused.
    let (_, admin) = holder_of(&app, "admin", &[]).await;
    let claims = jwt_claims(&admin);
    assert!(
        claims["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("oxidp:roles:escalate")),
        "{claims}"
    );
    let (s, b) = call(
        &app,
        put.clone(),
        "/admin/v1/roles/role-keeper/permissions/oxidp:users:write",
        &admin,
        None,
    )
    .await;
    assert_eq!(s, 201, "{b}");

    // Every refusal is in the audit log, naming the caller and the missing permission.
    let (s, audit) = call(
        &app,
        reqwest::Method::GET,
        "/admin/v1/audit?action=rbac.escalation_refused",
        &admin,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{audit}");
    for item in items {
        assert_eq!(item["actor"], format!("client:{}", keeper.id));
    }
    let operations: Vec<&str> = items
        .iter()
        .map(|i| i["details"]["operation"].as_str().unwrap())
        .collect();
    for op in ["role.grant", "role.assign", "role.parent.add"] {
        assert!(operations.contains(&op), "{operations:?}");
    }
    assert!(
        items
            .iter()
            .any(|i| i["target"] == "role-keeper" && i["details"]["missing_permission"] == "oxidp:users:write")
    );
}

#[tokio::test]
async fn permissions_held_through_inheritance_may_be_granted() {
    let app = spawn_app().await;
    let system = oxidp::audit::Actor::system();
    oxidp::rbac::create_role(app.state.rbac_change(), &system, "user-admin", "")
        .await
        .unwrap();
    oxidp::rbac::grant(
        app.state.rbac_change(),
        &system,
        "user-admin",
        "oxidp:users:write",
        None,
    )
    .await
    .unwrap();
    let (_, token) = holder_of(&app, "ops", &["oxidp:roles:write"]).await;
    oxidp::rbac::add_parent(app.state.rbac_change(), &system, "ops", "user-admin")
        .await
        .unwrap();
    oxidp::rbac::create_role(app.state.rbac_change(), &system, "desk", "")
        .await
        .unwrap();
    let (s, b) = call(
        &app,
        reqwest::Method::PUT,
        "/admin/v1/roles/desk/permissions/oxidp:users:write",
        &token,
        None,
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(
        &app,
        reqwest::Method::PUT,
        "/admin/v1/roles/desk/parents/user-admin",
        &token,
        None,
    )
    .await;
    assert_eq!(s, 201, "{b}");
    // But not a permission of another resource server it does not hold.
    let (s, b) = call(
        &app,
        reqwest::Method::PUT,
        "/admin/v1/roles/desk/permissions/commerce:orders:write",
        &token,
        Some(json!({"audience": "https://commerce.example"})),
    )
    .await;
    assert_refused(s, &b, "commerce:orders:write");
}

#[tokio::test]
async fn clients_writer_cannot_take_over_a_more_powerful_client() {
    let app = spawn_app().await;
    let (admin_client, admin) = holder_of(&app, "admin", &[]).await;
    let (_, token) = holder_of(&app, "client-keeper", &["oxidp:clients:write", "oxidp:clients:read"]).await;
    let path = format!("/admin/v1/clients/{}", admin_client.id);

    let (s, b) = call(&app, reqwest::Method::POST, &format!("{path}/secret"), &token, None).await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["code"], "escalation_refused");
    assert!(b.get("client_secret").is_none());
    let missing = b["missing_permission"].as_str().unwrap().to_owned();
    let (s, b) = call(
        &app,
        reqwest::Method::PATCH,
        &path,
        &token,
        Some(json!({"name": "Hijacked"})),
    )
    .await;
    assert_refused(s, &b, &missing);
    let (s, b) = call(&app, reqwest::Method::DELETE, &path, &token, None).await;
    assert_refused(s, &b, &missing);
    // The admin service account still works with its old secret.
    app.client_token(&admin_client, &[]).await;

    // A client holding nothing beyond the caller may be rotated.
    let plain = app.service_client("email", None).await;
    let (s, b) = call(
        &app,
        reqwest::Method::POST,
        &format!("/admin/v1/clients/{}/secret", plain.id),
        &token,
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["client_secret"].is_string());

    // The administrator may rotate the admin service account's secret.
    let (s, b) = call(&app, reqwest::Method::POST, &format!("{path}/secret"), &admin, None).await;
    assert_eq!(s, 200, "{b}");
    let rotated = b["client_secret"].as_str().unwrap().to_owned();
    let response = reqwest::Client::new()
        .post(app.url("/token"))
        .basic_auth(&admin_client.id, Some(&rotated))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let (_, audit) = call(
        &app,
        reqwest::Method::GET,
        "/admin/v1/audit?action=rbac.escalation_refused",
        &admin,
        None,
    )
    .await;
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{audit}");
    let mut operations: Vec<&str> = items
        .iter()
        .map(|i| {
            assert_eq!(i["target"], format!("client:{}", admin_client.id));
            i["details"]["operation"].as_str().unwrap()
        })
        .collect();
    operations.sort();
    assert_eq!(operations, ["client.delete", "client.secret.rotate", "client.update"]);
}
