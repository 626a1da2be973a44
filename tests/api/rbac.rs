//! RBAC: hierarchy, cycles, separation of duty (also concurrent), claims in
//! access tokens / ID tokens / userinfo, audience filtering, first-run admin, CLI.

use oxidp::audit::Actor;
use oxidp::rbac::{self, RbacError, Subject};

use crate::helpers::{PASSWORD, browser, jwt_claims, spawn_app, spawn_app_sharing};

const COMMERCE: &str = "https://commerce.example";
const BILLING: &str = "https://billing.example";

fn sys() -> Actor {
    Actor::system()
}

async fn catalog_roles(app: &crate::helpers::TestApp) {
    let s = &app.state;
    rbac::create_role(s.rbac_change(), &sys(), "catalog-viewer", "reads the catalog")
        .await
        .unwrap();
    rbac::create_role(s.rbac_change(), &sys(), "catalog-manager", "runs the catalog")
        .await
        .unwrap();
    rbac::add_parent(s.rbac_change(), &sys(), "catalog-manager", "catalog-viewer")
        .await
        .unwrap();
    rbac::grant(
        s.rbac_change(),
        &sys(),
        "catalog-viewer",
        "commerce:products:read",
        Some(COMMERCE),
    )
    .await
    .unwrap();
    rbac::grant(
        s.rbac_change(),
        &sys(),
        "catalog-manager",
        "commerce:products:write",
        Some(COMMERCE),
    )
    .await
    .unwrap();
    rbac::grant(
        s.rbac_change(),
        &sys(),
        "catalog-manager",
        "billing:invoices:read",
        Some(BILLING),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn service_account_tokens_carry_inherited_roles_and_only_their_audiences_permissions() {
    let app = spawn_app().await;
    catalog_roles(&app).await;
    let client = app
        .service_client(
            "commerce:products:read commerce:products:write billing:invoices:read",
            None,
        )
        .await;
    rbac::assign(
        app.state.rbac_change(),
        &sys(),
        Subject::Client(client.id.clone()),
        "catalog-manager",
    )
    .await
    .unwrap();

    let commerce = jwt_claims(
        app.client_token(&client, &[("resource", COMMERCE)]).await["access_token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(commerce["aud"], serde_json::json!([COMMERCE]));
    assert_eq!(
        commerce["roles"],
        serde_json::json!(["catalog-manager", "catalog-viewer"])
    );
    assert_eq!(
        commerce["permissions"],
        serde_json::json!(["commerce:products:read", "commerce:products:write"])
    );
    // The billing permission is not for this audience: not in the token, not in its scope.
    assert_eq!(commerce["scope"], "commerce:products:read commerce:products:write");

    let billing = jwt_claims(
        app.client_token(&client, &[("resource", BILLING)]).await["access_token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(billing["permissions"], serde_json::json!(["billing:invoices:read"]));
    assert_eq!(billing["scope"], "billing:invoices:read");

    // For oxidp's own audience there is nothing to carry but the roles.
    let own = jwt_claims(app.client_token(&client, &[]).await["access_token"].as_str().unwrap());
    assert!(own.get("permissions").is_none(), "{own}");
    assert_eq!(own["roles"], serde_json::json!(["catalog-manager", "catalog-viewer"]));
}

#[tokio::test]
async fn requested_scopes_intersect_allowed_scopes_and_held_permissions() {
    let app = spawn_app().await;
    catalog_roles(&app).await;
    rbac::create_permission(
        app.state.rbac_change(),
        &sys(),
        "commerce:orders:refund",
        Some(COMMERCE),
        "",
    )
    .await
    .unwrap();
    let client = app
        .service_client(
            "commerce:products:read commerce:products:write commerce:orders:refund",
            None,
        )
        .await;
    rbac::assign(
        app.state.rbac_change(),
        &sys(),
        Subject::Client(client.id.clone()),
        "catalog-viewer",
    )
    .await
    .unwrap();

    // Asked for write and refund, holds neither: refused with invalid_scope.
    let refused = app
        .token(
            &client,
            &[
                ("grant_type", "client_credentials"),
                ("resource", COMMERCE),
                ("scope", "commerce:products:write commerce:orders:refund"),
            ],
        )
        .await;
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "invalid_scope");
    assert!(body["error_description"].as_str().unwrap().contains("permissions"));

    // Asked for read and write, holds read: read only, and the token says so.
    let body = app
        .client_token(
            &client,
            &[
                ("resource", COMMERCE),
                ("scope", "commerce:products:read commerce:products:write"),
            ],
        )
        .await;
    assert_eq!(body["scope"], "commerce:products:read");
    assert_eq!(
        jwt_claims(body["access_token"].as_str().unwrap())["permissions"],
        serde_json::json!(["commerce:products:read"])
    );

    // A scope the client is not allowed stays an error, whatever the roles say.
    let refused = app
        .token(
            &client,
            &[("grant_type", "client_credentials"), ("scope", "commerce:admin:all")],
        )
        .await;
    assert_eq!(refused.status(), 400);
    assert_eq!(
        refused.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_scope"
    );
}

#[tokio::test]
async fn role_changes_show_in_the_next_token() {
    let app = spawn_app().await;
    catalog_roles(&app).await;
    let client = app.service_client("commerce:products:read", None).await;
    let before = jwt_claims(
        app.client_token(&client, &[("resource", COMMERCE)]).await["access_token"]
            .as_str()
            .unwrap(),
    );
    assert!(before.get("roles").is_none());
    rbac::assign(
        app.state.rbac_change(),
        &sys(),
        Subject::Client(client.id.clone()),
        "catalog-viewer",
    )
    .await
    .unwrap();
    let during = jwt_claims(
        app.client_token(&client, &[("resource", COMMERCE)]).await["access_token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(during["permissions"], serde_json::json!(["commerce:products:read"]));
    rbac::revoke(
        app.state.rbac_change(),
        &sys(),
        "catalog-viewer",
        "commerce:products:read",
    )
    .await
    .unwrap();
    let after = jwt_claims(
        app.client_token(&client, &[("resource", COMMERCE)]).await["access_token"]
            .as_str()
            .unwrap(),
    );
    assert!(after.get("permissions").is_none(), "{after}");
    assert_eq!(after["roles"], serde_json::json!(["catalog-viewer"]));
}

#[tokio::test]
async fn people_get_roles_in_access_token_id_token_and_userinfo_with_the_roles_scope() {
    let app = spawn_app().await;
    catalog_roles(&app).await;
    let user = app.create_user("rita", PASSWORD).await;
    rbac::assign(
        app.state.rbac_change(),
        &sys(),
        Subject::User("rita".into()),
        "catalog-manager",
    )
    .await
    .unwrap();
    let client = app
        .create_client(oxidp::oauth::clients::ClientSpec {
            name: Some("Shop admin".into()),
            redirect_uris: Some(vec![crate::helpers::REDIRECT_URI.into()]),
            scopes: Some("openid profile roles commerce:products:write".into()),
            ..Default::default()
        })
        .await;

    let b = browser();
    let (code, verifier) = app
        .code_for(&client, &b, "rita", "openid roles commerce:products:write")
        .await;
    // RFC 8707 resource on the authorization request: the code remembers it.
    let tokens: serde_json::Value = app.redeem(&client, &code, &verifier).await.json().await.unwrap();
    let id_token = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id_token["sub"], user.id.as_str());
    assert_eq!(
        id_token["roles"],
        serde_json::json!(["catalog-manager", "catalog-viewer"])
    );
    let access = jwt_claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(
        access["roles"],
        serde_json::json!(["catalog-manager", "catalog-viewer"])
    );
    // The default audience (oxidp) does not understand commerce permissions.
    assert!(access.get("permissions").is_none());
    assert_eq!(tokens["scope"], "openid roles");

    let info: serde_json::Value = reqwest::Client::new()
        .get(app.url("/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["roles"], serde_json::json!(["catalog-manager", "catalog-viewer"]));

    // With a resource indicator the commerce permissions are granted and carried.
    let (verifier2, challenge2) = crate::helpers::pkce_pair();
    let start = app.authorize_url(
        &client,
        &[
            ("scope", "openid commerce:products:write"),
            ("code_challenge", &challenge2),
            ("code_challenge_method", "S256"),
            ("resource", COMMERCE),
        ],
    );
    let back = app.follow_to_client(&b, &start, "rita", PASSWORD).await;
    let code2 = back.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let tokens: serde_json::Value = app.redeem(&client, &code2, &verifier2).await.json().await.unwrap();
    let access = jwt_claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(access["aud"], serde_json::json!([COMMERCE]));
    assert_eq!(access["permissions"], serde_json::json!(["commerce:products:write"]));
    assert_eq!(tokens["scope"], "commerce:products:write openid");
    // Without the roles scope the ID token carries no roles.
    assert!(jwt_claims(tokens["id_token"].as_str().unwrap()).get("roles").is_none());
}

#[tokio::test]
async fn hierarchy_cycles_are_refused() {
    let app = spawn_app().await;
    let s = &app.state;
    for r in ["a", "b", "c"] {
        rbac::create_role(s.rbac_change(), &sys(), r, "").await.unwrap();
    }
    rbac::add_parent(s.rbac_change(), &sys(), "a", "b").await.unwrap();
    rbac::add_parent(s.rbac_change(), &sys(), "b", "c").await.unwrap();
    for (role, parent) in [("c", "a"), ("b", "a"), ("a", "a")] {
        match rbac::add_parent(s.rbac_change(), &sys(), role, parent).await {
            Err(RbacError::Cycle { .. }) => {}
            other => panic!("{role} -> {parent}: expected a cycle error, got {other:?}"),
        }
    }
    let a = rbac::show_role(&s.db, "a").await.unwrap();
    assert_eq!(a.inherited_roles, ["b", "c"]);
    assert!(matches!(
        rbac::add_parent(s.rbac_change(), &sys(), "a", "nope").await,
        Err(RbacError::UnknownRole(_))
    ));
    assert!(matches!(
        rbac::create_role(s.rbac_change(), &sys(), "Bad Name", "").await,
        Err(RbacError::InvalidRoleName(_))
    ));
    assert!(matches!(
        rbac::delete_role(s.rbac_change(), &sys(), "admin").await,
        Err(RbacError::BuiltIn(_))
    ));
}

#[tokio::test]
async fn separation_of_duty_is_enforced_directly_through_inheritance_and_for_new_sets() {
    let app = spawn_app().await;
    let s = &app.state;
    for r in ["buyer", "seller", "broker", "auditor", "clerk"] {
        rbac::create_role(s.rbac_change(), &sys(), r, "").await.unwrap();
    }
    rbac::create_exclusive_set(s.rbac_change(), &sys(), "trade", &["buyer".into(), "seller".into()])
        .await
        .unwrap();
    app.create_user("bob", PASSWORD).await;
    assert!(
        rbac::assign(s.rbac_change(), &sys(), Subject::User("bob".into()), "buyer")
            .await
            .unwrap()
    );
    let err = rbac::assign(s.rbac_change(), &sys(), Subject::User("bob".into()), "seller")
        .await
        .unwrap_err();
    assert!(matches!(err, RbacError::SeparationOfDuty { .. }), "{err:?}");
    assert!(err.to_string().contains("buyer and seller"), "{err}");

    // broker inherits seller: assigning it to a buyer is refused too.
    rbac::add_parent(s.rbac_change(), &sys(), "broker", "seller")
        .await
        .unwrap();
    assert!(matches!(
        rbac::assign(s.rbac_change(), &sys(), Subject::User("bob".into()), "broker").await,
        Err(RbacError::SeparationOfDuty { .. })
    ));
    // Making a held role inherit the other side is refused as well.
    assert!(matches!(
        rbac::add_parent(s.rbac_change(), &sys(), "buyer", "seller").await,
        Err(RbacError::SeparationOfDuty { .. })
    ));
    // A new set that someone already breaks is refused.
    rbac::assign(s.rbac_change(), &sys(), Subject::User("bob".into()), "auditor")
        .await
        .unwrap();
    rbac::assign(s.rbac_change(), &sys(), Subject::User("bob".into()), "clerk")
        .await
        .unwrap();
    assert!(matches!(
        rbac::create_exclusive_set(s.rbac_change(), &sys(), "books", &["auditor".into(), "clerk".into()]).await,
        Err(RbacError::SeparationOfDuty { .. })
    ));
    let held = rbac::assignments(&s.db, Subject::User("bob".into())).await.unwrap();
    assert_eq!(held.assigned, ["auditor", "buyer", "clerk"]);
}

#[tokio::test]
async fn concurrent_exclusive_assignments_on_two_instances_leave_exactly_one() {
    let a = spawn_app().await;
    let b = spawn_app_sharing(&a).await;
    for r in ["buyer", "seller"] {
        rbac::create_role(a.state.rbac_change(), &sys(), r, "").await.unwrap();
    }
    rbac::create_exclusive_set(
        a.state.rbac_change(),
        &sys(),
        "trade",
        &["buyer".into(), "seller".into()],
    )
    .await
    .unwrap();
    a.create_user("carl", PASSWORD).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let state = if i % 2 == 0 { a.state.clone() } else { b.state.clone() };
        let role = if i % 4 < 2 { "buyer" } else { "seller" };
        tasks.push(tokio::spawn(async move {
            rbac::assign(
                state.rbac_change(),
                &Actor::system(),
                Subject::User("carl".into()),
                role,
            )
            .await
        }));
    }
    let mut added = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(true) => added += 1,
            Ok(false) => {}
            Err(RbacError::SeparationOfDuty { .. }) => refused += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added, 1, "exactly one assignment lands");
    assert_eq!(refused, 10, "every attempt at the other role is refused");
    let held = rbac::assignments(&a.state.db, Subject::User("carl".into()))
        .await
        .unwrap();
    assert_eq!(held.assigned.len(), 1, "{held:?}");
}

#[tokio::test]
async fn first_start_creates_an_administrator_once() {
    let app = spawn_app().await;
    let admin = oxidp::admin::bootstrap(&app.state).await.unwrap().expect("created");
    assert_eq!(admin.username, "admin");
    let password = admin.generated_password.expect("a generated password");
    assert!(password.len() >= 20);
    let held = rbac::assignments(&app.state.db, Subject::User("admin".into()))
        .await
        .unwrap();
    assert_eq!(held.assigned, ["admin"]);
    // The password works at the real sign-in page.
    let b = browser();
    assert_eq!(app.login(&b, "admin", &password).await.status(), 303);
    // Never twice, even after the administrator is gone.
    assert!(oxidp::admin::bootstrap(&app.state).await.unwrap().is_none());

    // With users present, or with bootstrap off, nothing happens.
    let other = spawn_app().await;
    other.create_user("someone", PASSWORD).await;
    assert!(oxidp::admin::bootstrap(&other.state).await.unwrap().is_none());
    let off = crate::helpers::spawn_app_with(|c| c.admin.bootstrap = false).await;
    assert!(oxidp::admin::bootstrap(&off.state).await.unwrap().is_none());

    // A configured password is used (and not echoed back).
    let configured = crate::helpers::spawn_app_with(|c| {
        c.admin.username = "root-admin".into();
        c.admin.initial_password = Some("a configured admin pass phrase".to_owned().into());
    })
    .await;
    let made = oxidp::admin::bootstrap(&configured.state).await.unwrap().unwrap();
    assert!(made.generated_password.is_none());
    assert_eq!(
        configured
            .login(&browser(), "root-admin", "a configured admin pass phrase")
            .await
            .status(),
        303
    );
}

#[tokio::test]
async fn role_cli_manages_roles_with_json_output() {
    let app = spawn_app().await;
    app.create_user("dora", PASSWORD).await;
    let created = app.cli_json(&["role", "create", "buyer", "--description", "buys", "--json"], None);
    assert_eq!(created["name"], "buyer");
    app.cli_json(&["role", "create", "seller", "--json"], None);
    app.cli_json(&["role", "create", "vip-buyer", "--parent", "buyer", "--json"], None);
    let granted = app.cli_json(
        &[
            "role",
            "grant",
            "buyer",
            "commerce:orders:create",
            "--audience",
            COMMERCE,
            "--json",
        ],
        None,
    );
    assert_eq!(granted["permissions"], serde_json::json!(["commerce:orders:create"]));
    let listed = app.cli_json(&["role", "list", "vip-buyer", "--json"], None);
    assert_eq!(
        listed[0]["effective_permissions"],
        serde_json::json!(["commerce:orders:create"])
    );
    let set = app.cli_json(
        &["role", "exclusive", "--name", "trade", "buyer", "seller", "--json"],
        None,
    );
    assert_eq!(set["roles"], serde_json::json!(["buyer", "seller"]));
    let shown = app.cli_json(&["role", "assign", "vip-buyer", "--user", "dora", "--json"], None);
    assert_eq!(shown["authorized"], serde_json::json!(["buyer", "vip-buyer"]));

    // Refusals: separation of duty, a cycle, a new permission without audience.
    let refused = app.cli(&["role", "assign", "seller", "--user", "dora"], None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("separation of duty"));
    let cycle = app.cli(&["role", "inherit", "buyer", "vip-buyer"], None);
    assert!(String::from_utf8_lossy(&cycle.stderr).contains("cycle"));
    let no_aud = app.cli(&["role", "grant", "buyer", "commerce:orders:cancel"], None);
    assert!(String::from_utf8_lossy(&no_aud.stderr).contains("audience"));

    let unassigned = app.cli_json(&["role", "unassign", "vip-buyer", "--user", "dora", "--json"], None);
    assert_eq!(unassigned["assigned"], serde_json::json!([]));
    // Every change was audited with the CLI as actor.
    let events = oxidp::audit::query(&app.state.db, Default::default(), 100)
        .await
        .unwrap();
    let cli_actions: Vec<&str> = events
        .iter()
        .filter(|e| e.actor == "cli")
        .map(|e| e.action.as_str())
        .collect();
    for action in [
        "role.create",
        "role.grant",
        "permission.create",
        "role.exclusive.create",
        "role.assign",
        "role.unassign",
    ] {
        assert!(cli_actions.contains(&action), "{action} not audited: {cli_actions:?}");
    }
}

#[tokio::test]
async fn client_credentials_issuance_is_audited_per_client_and_minute_without_a_write_per_token() {
    let app = spawn_app().await;
    let client = app.service_client("email", None).await;
    for _ in 0..3 {
        app.client_token(&client, &[]).await;
    }
    let before = oxidp::audit::query(&app.state.db, Default::default(), 100)
        .await
        .unwrap();
    assert!(
        !before.iter().any(|e| e.action == "token.client_credentials"),
        "nothing written per token"
    );
    assert_eq!(
        oxidp::audit::flush_issuance(&app.state.db, &app.state.issuance, app.state.clock.now(), 60)
            .await
            .unwrap(),
        1
    );
    let after = oxidp::audit::query(&app.state.db, Default::default(), 100)
        .await
        .unwrap();
    let event = after.iter().find(|e| e.action == "token.client_credentials").unwrap();
    assert_eq!(event.actor, format!("client:{}", client.id));
    let details: serde_json::Value = serde_json::from_str(&event.details).unwrap();
    assert_eq!(details["count"], 3);
    assert_eq!(
        oxidp::audit::flush_issuance(&app.state.db, &app.state.issuance, app.state.clock.now(), 60)
            .await
            .unwrap(),
        0,
        "counted once"
    );
}
