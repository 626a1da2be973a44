//! The admin API (/admin/v1): the authorization matrix (anonymous, user, admin,
//! wrong audience, missing permission, expired, revoked, ID token), problem+json
//! everywhere, CRUD with pagination, and the audit trail of every change.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, browser, spawn_app, step};

fn assert_problem(status: u16, body: &Value, headers: &reqwest::header::HeaderMap, expected: u16) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json", "{body}");
    assert_eq!(body["status"], expected);
    assert!(body["title"].is_string() && body["detail"].is_string(), "{body}");
}

/// A person's access token for oxidp's own audience, via the code flow.
async fn user_token(app: &TestApp, username: &str) -> String {
    let client = app.web_client().await;
    let b = browser();
    let (code, verifier) = app.code_for(&client, &b, username, "openid").await;
    let body: Value = app.redeem(&client, &code, &verifier).await.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn authorization_matrix() {
    let app = spawn_app().await;
    step("anonymous", anonymous_and_garbage(&app)).await;
    step("no roles", person_without_roles(&app)).await;
    let admin = step("administrators", administrators_allowed(&app)).await;
    step("other audience", another_audience(&app)).await;
    step("read-only role", read_only_role(&app)).await;
    step("ID token, revoked", id_token_and_revoked(&app)).await;
    step("expired", expired(&app, &admin)).await;
}

async fn anonymous_and_garbage(app: &TestApp) {
    // Anonymous: 401 with a bare Bearer challenge.
    let (s, b, h) = app.api(Method::GET, "/admin/v1/users", None, None).await;
    assert_problem(s, &b, &h, 401);
    assert_eq!(h["www-authenticate"], "Bearer realm=\"oxidp\"");
    // Garbage token: 401 invalid_token.
    let (s, b, h) = app.api(Method::GET, "/admin/v1/users", Some("not.a.jwt"), None).await;
    assert_problem(s, &b, &h, 401);
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
}

async fn person_without_roles(app: &TestApp) {
    // A signed-in person without roles: 403 insufficient_scope naming the permission.
    app.create_user("plain", PASSWORD).await;
    let plain = user_token(app, "plain").await;
    let (s, b, h) = app.api(Method::GET, "/admin/v1/users", Some(&plain), None).await;
    assert_problem(s, &b, &h, 403);
    assert_eq!(b["code"], "insufficient_scope");
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"oxidp:users:read\"")
    );
}

async fn administrators_allowed(app: &TestApp) -> String {
    // An administrator person (admin role, code flow): allowed.
    app.create_user("boss", PASSWORD).await;
    oxidp::rbac::assign(
        app.state.rbac_change(),
        &oxidp::audit::Actor::system(),
        oxidp::rbac::Subject::User("boss".into()),
        "admin",
    )
    .await
    .unwrap();
    let boss = user_token(app, "boss").await;
    let (s, b, _) = app.api(Method::GET, "/admin/v1/users", Some(&boss), None).await;
    assert_eq!(s, 200, "{b}");

    // An admin service account (client_credentials): allowed.
    let admin = app.admin_token().await;
    let (s, _, _) = app.api(Method::GET, "/admin/v1/roles", Some(&admin), None).await;
    assert_eq!(s, 200);
    admin
}

async fn another_audience(app: &TestApp) {
    // A token for another audience, even from an admin client: 401.
    let foreign = app.service_client("email", Some("https://commerce.example")).await;
    oxidp::rbac::assign(
        app.state.rbac_change(),
        &oxidp::audit::Actor::system(),
        oxidp::rbac::Subject::Client(foreign.id.clone()),
        "admin",
    )
    .await
    .unwrap();
    let foreign_token = app.client_token(&foreign, &[]).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, b, h) = app
        .api(Method::GET, "/admin/v1/users", Some(&foreign_token), None)
        .await;
    assert_problem(s, &b, &h, 401);
    assert!(b["detail"].as_str().unwrap().contains("audience"));
}

async fn read_only_role(app: &TestApp) {
    // Read-only role: reads pass, writes get 403.
    let s_ = &app.state;
    oxidp::rbac::create_role(s_.rbac_change(), &oxidp::audit::Actor::system(), "support", "")
        .await
        .unwrap();
    oxidp::rbac::grant(
        s_.rbac_change(),
        &oxidp::audit::Actor::system(),
        "support",
        "oxidp:users:read",
        None,
    )
    .await
    .unwrap();
    let support = app.service_client("email", None).await;
    oxidp::rbac::assign(
        s_.rbac_change(),
        &oxidp::audit::Actor::system(),
        oxidp::rbac::Subject::Client(support.id.clone()),
        "support",
    )
    .await
    .unwrap();
    let support_token = app.client_token(&support, &[]).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.api(Method::GET, "/admin/v1/users", Some(&support_token), None)
            .await
            .0,
        200
    );
    let (s, b, h) = app
        .api(
            reqwest::Method::POST,
            "/admin/v1/users",
            Some(&support_token),
            Some(json!({"username": "newbie"})),
        )
        .await;
    assert_problem(s, &b, &h, 403);
    assert_eq!(
        app.api(Method::GET, "/admin/v1/audit", Some(&support_token), None)
            .await
            .0,
        403
    );
}

async fn id_token_and_revoked(app: &TestApp) {
    // An ID token is not an access token.
    let web = app.web_client().await;
    let bb = browser();
    let (code, verifier) = app.code_for(&web, &bb, "boss", "openid").await;
    let tokens: Value = app.redeem(&web, &code, &verifier).await.json().await.unwrap();
    let (s, b, h) = app
        .api(Method::GET, "/admin/v1/users", tokens["id_token"].as_str(), None)
        .await;
    assert_problem(s, &b, &h, 401);

    // Revoked (the grant behind the token): 401.
    let revoke = reqwest::Client::new()
        .post(app.url("/revoke"))
        .basic_auth(&web.id, web.secret.as_deref())
        .form(&[("token", tokens["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 200);
    let (s, _, _) = app
        .api(Method::GET, "/admin/v1/users", tokens["access_token"].as_str(), None)
        .await;
    assert_eq!(s, 401);
}

async fn expired(app: &TestApp, admin: &str) {
    // Expired: 401.
    app.clock.advance(3600);
    let (s, b, h) = app.api(Method::GET, "/admin/v1/users", Some(admin), None).await;
    assert_problem(s, &b, &h, 401);
    assert!(b["detail"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn users_crud_with_pagination_sessions_and_audit() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    step("create users, refuse bad input", create_users(&app, &admin)).await;
    step("page through users", page_through_users(&app, &admin)).await;
    step("end a session", end_a_session(&app, &admin)).await;
    step("disable a user", disable_a_user(&app, &admin)).await;
    step("audit", audit_names_the_admin_client(&app, &admin)).await;
}

async fn create_users(app: &TestApp, admin: &str) {
    let post = reqwest::Method::POST;
    for name in ["ann", "ben", "cat", "dan", "eve"] {
        let (s, b, _) = app
            .api(
                post.clone(),
                "/admin/v1/users",
                Some(admin),
                Some(json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        assert_eq!(b["username"], name);
        assert!(b.get("password_hash").is_none());
    }
    // Duplicates, weak passwords, unknown fields, malformed JSON: clear problems.
    let (s, b, h) = app
        .api(
            post.clone(),
            "/admin/v1/users",
            Some(admin),
            Some(json!({"username": "ann"})),
        )
        .await;
    assert_problem(s, &b, &h, 409);
    let (s, b, h) = app
        .api(
            post.clone(),
            "/admin/v1/users",
            Some(admin),
            Some(json!({"username": "weak", "password": "password123"})),
        )
        .await;
    assert_problem(s, &b, &h, 400);
    let (s, b, h) = app
        .api(
            post.clone(),
            "/admin/v1/users",
            Some(admin),
            Some(json!({"username": "x", "role": "god"})),
        )
        .await;
    assert_problem(s, &b, &h, 400);
    let raw = reqwest::Client::new()
        .post(app.url("/admin/v1/users"))
        .bearer_auth(admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert_eq!(raw.headers()["content-type"], "application/problem+json");
}

async fn page_through_users(app: &TestApp, admin: &str) {
    // Pagination: 5 users in pages of 2.
    let mut seen = Vec::new();
    let mut path = "/admin/v1/users?limit=2".to_owned();
    loop {
        let (s, b, _) = app.api(reqwest::Method::GET, &path, Some(admin), None).await;
        assert_eq!(s, 200);
        let items = b["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|u| u["username"].as_str().unwrap().to_owned()));
        match b["next_cursor"].as_str() {
            Some(c) => path = format!("/admin/v1/users?limit=2&cursor={c}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["ann", "ben", "cat", "dan", "eve"]);
    let (s, b, h) = app
        .api(reqwest::Method::GET, "/admin/v1/users?limit=0", Some(admin), None)
        .await;
    assert_problem(s, &b, &h, 400);
    let (s, b, h) = app
        .api(reqwest::Method::GET, "/admin/v1/users?limit=abc", Some(admin), None)
        .await;
    assert_problem(s, &b, &h, 400);
}

async fn end_a_session(app: &TestApp, admin: &str) {
    // Sessions: ann signs in; the admin sees and ends the session.
    let ann_browser = browser();
    assert_eq!(app.login(&ann_browser, "ann", PASSWORD).await.status(), 303);
    let (s, b, _) = app
        .api(reqwest::Method::GET, "/admin/v1/users/ann/sessions", Some(admin), None)
        .await;
    assert_eq!(s, 200);
    let sid = b["items"][0]["id"].as_str().unwrap().to_owned();
    let (s, _, _) = app
        .api(
            reqwest::Method::DELETE,
            &format!("/admin/v1/users/ann/sessions/{sid}"),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let account = ann_browser.get(app.url("/account")).send().await.unwrap();
    assert_eq!(account.status(), 303, "the session has ended");
}

async fn disable_a_user(app: &TestApp, admin: &str) {
    // Disable via PATCH.
    let (s, b, _) = app
        .api(
            reqwest::Method::PATCH,
            "/admin/v1/users/ben",
            Some(admin),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["disabled"], true);
    let (s, b, h) = app
        .api(reqwest::Method::GET, "/admin/v1/users/nobody", Some(admin), None)
        .await;
    assert_problem(s, &b, &h, 404);
}

async fn audit_names_the_admin_client(app: &TestApp, admin: &str) {
    // The audit log names the admin client for every change.
    let (s, b, _) = app
        .api(
            reqwest::Method::GET,
            "/admin/v1/audit?action=user.create",
            Some(admin),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let events = b["items"].as_array().unwrap();
    assert_eq!(events.len(), 5);
    assert!(
        events
            .iter()
            .all(|e| e["actor"].as_str().unwrap().starts_with("client:"))
    );
    let (_, b, _) = app
        .api(reqwest::Method::GET, "/admin/v1/audit?limit=3", Some(admin), None)
        .await;
    let first_page: Vec<String> = b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let cursor = b["next_cursor"].as_str().unwrap().to_owned();
    let (_, b, _) = app
        .api(
            reqwest::Method::GET,
            &format!("/admin/v1/audit?limit=3&cursor={cursor}"),
            Some(admin),
            None,
        )
        .await;
    let next: Vec<&str> = b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(!next.is_empty());
    assert!(
        next.iter().all(|id| !first_page.iter().any(|f| f == id)),
        "pages overlap"
    );
    let actions: Vec<&str> = b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.iter().all(|a| !a.is_empty()));
}

#[tokio::test]
async fn roles_and_assignments_through_the_api_with_conflicts_as_409() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    step("roles are unique", create_roles(&app, &admin)).await;
    step("inheritance", grant_and_inherit(&app, &admin)).await;
    step("separation of duty", assign_exclusive(&app, &admin)).await;
    step("clients hold roles", clients_hold_roles(&app, &admin)).await;
    step("removals", remove_assignments(&app, &admin)).await;
    step("listings and audit", list_and_audit(&app, &admin)).await;
}

async fn create_roles(app: &TestApp, admin: &str) {
    for role in ["buyer", "seller", "broker"] {
        let (s, b, _) = app
            .api(
                Method::POST,
                "/admin/v1/roles",
                Some(admin),
                Some(json!({"name": role})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let (s, b, h) = app
        .api(
            Method::POST,
            "/admin/v1/roles",
            Some(admin),
            Some(json!({"name": "buyer"})),
        )
        .await;
    assert_problem(s, &b, &h, 409);
    assert_eq!(b["code"], "exists");
}

async fn grant_and_inherit(app: &TestApp, admin: &str) {
    let (s, b, _) = app
        .api(
            Method::PUT,
            "/admin/v1/roles/seller/permissions/commerce:products:write",
            Some(admin),
            Some(json!({"audience": "https://commerce.example"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["permissions"], json!(["commerce:products:write"]));
    let (s, b, _) = app
        .api(Method::PUT, "/admin/v1/roles/broker/parents/seller", Some(admin), None)
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["effective_permissions"], json!(["commerce:products:write"]));
    let (s, b, h) = app
        .api(Method::PUT, "/admin/v1/roles/seller/parents/broker", Some(admin), None)
        .await;
    assert_problem(s, &b, &h, 409);
    assert_eq!(b["code"], "role_cycle");
}

async fn assign_exclusive(app: &TestApp, admin: &str) {
    let (s, b, _) = app
        .api(
            Method::POST,
            "/admin/v1/exclusive-sets",
            Some(admin),
            Some(json!({"name": "trade", "roles": ["buyer", "seller"]})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    app.create_user("fay", PASSWORD).await;
    let (s, b, _) = app
        .api(Method::PUT, "/admin/v1/users/fay/roles/buyer", Some(admin), None)
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, _, _) = app
        .api(Method::PUT, "/admin/v1/users/fay/roles/buyer", Some(admin), None)
        .await;
    assert_eq!(s, 200, "assigning again is idempotent");
    let (s, b, h) = app
        .api(Method::PUT, "/admin/v1/users/fay/roles/broker", Some(admin), None)
        .await;
    assert_problem(s, &b, &h, 409);
    assert_eq!(b["code"], "separation_of_duty");
    let (s, b, h) = app
        .api(Method::PUT, "/admin/v1/users/fay/roles/ghost", Some(admin), None)
        .await;
    assert_problem(s, &b, &h, 404);
    let (s, b, _) = app
        .api(Method::GET, "/admin/v1/users/fay/roles", Some(admin), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["assigned"], json!(["buyer"]));
}

async fn clients_hold_roles(app: &TestApp, admin: &str) {
    // Clients hold roles too.
    let svc = app.service_client("commerce:products:write", None).await;
    let (s, b, _) = app
        .api(
            Method::PUT,
            &format!("/admin/v1/clients/{}/roles/broker", svc.id),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let token = app
        .client_token(&svc, &[("resource", "https://commerce.example")])
        .await;
    let claims = crate::helpers::jwt_claims(token["access_token"].as_str().unwrap());
    assert_eq!(claims["roles"], json!(["broker", "seller"]));
}

async fn remove_assignments(app: &TestApp, admin: &str) {
    let (s, _, _) = app
        .api(Method::DELETE, "/admin/v1/users/fay/roles/buyer", Some(admin), None)
        .await;
    assert_eq!(s, 204);
    let (s, b, h) = app
        .api(Method::DELETE, "/admin/v1/users/fay/roles/buyer", Some(admin), None)
        .await;
    assert_problem(s, &b, &h, 404);
    let (s, b, h) = app
        .api(Method::DELETE, "/admin/v1/roles/admin", Some(admin), None)
        .await;
    assert_problem(s, &b, &h, 409);
    let (s, b, h) = app.api(Method::GET, "/admin/v1/nothing-here", Some(admin), None).await;
    assert_problem(s, &b, &h, 404);
}

async fn list_and_audit(app: &TestApp, admin: &str) {
    // Permissions list includes the built-in admin permissions; pages by name.
    let (s, b, _) = app
        .api(Method::GET, "/admin/v1/permissions?limit=200", Some(admin), None)
        .await;
    assert_eq!(s, 200);
    let names: Vec<&str> = b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"oxidp:users:read") && names.contains(&"commerce:products:write"));
    let (_, b, _) = app.api(Method::GET, "/admin/v1/roles?limit=2", Some(admin), None).await;
    assert_eq!(b["items"].as_array().unwrap().len(), 2);
    assert!(b["next_cursor"].is_string());

    let (_, b, _) = app
        .api(Method::GET, "/admin/v1/audit?action=role.assign", Some(admin), None)
        .await;
    let targets: Vec<&str> = b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert!(targets.iter().any(|t| t.starts_with("user:")) && targets.iter().any(|t| t.starts_with("client:")));
}

#[tokio::test]
async fn clients_crud_shows_the_secret_once() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (s, b, _) = app
        .api(
            reqwest::Method::POST,
            "/admin/v1/clients",
            Some(&admin),
            Some(json!({"name": "Reports", "grant_types": ["client_credentials"], "scopes": "email"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let id = b["client_id"].as_str().unwrap().to_owned();
    let secret = b["client_secret"].as_str().unwrap().to_owned();
    let (s, b, _) = app
        .api(
            reqwest::Method::GET,
            &format!("/admin/v1/clients/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert!(b.get("client_secret").is_none() && !b.to_string().contains(&secret));
    let (s, b, _) = app
        .api(
            reqwest::Method::PATCH,
            &format!("/admin/v1/clients/{id}"),
            Some(&admin),
            Some(json!({"name": "Monthly reports"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["name"], "Monthly reports");
    let (s, b, h) = app
        .api(
            reqwest::Method::PATCH,
            &format!("/admin/v1/clients/{id}"),
            Some(&admin),
            Some(json!({"id_token_alg": "none"})),
        )
        .await;
    assert_problem(s, &b, &h, 400);
    let (s, b, _) = app
        .api(
            reqwest::Method::POST,
            &format!("/admin/v1/clients/{id}/secret"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_ne!(b["client_secret"].as_str().unwrap(), secret);
    let (s, _, _) = app
        .api(
            reqwest::Method::DELETE,
            &format!("/admin/v1/clients/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, b, h) = app
        .api(
            reqwest::Method::GET,
            &format!("/admin/v1/clients/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_problem(s, &b, &h, 404);
    let (_, b, _) = app
        .api(
            reqwest::Method::GET,
            &format!("/admin/v1/audit?target=client:{id}"),
            Some(&admin),
            None,
        )
        .await;
    let actions: Vec<&str> = b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "client.delete",
            "client.rotate_secret",
            "client.update",
            "client.create"
        ]
    );
}
