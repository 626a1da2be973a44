use crate::helpers::{PASSWORD, csrf_of, spawn_app, text_of};

async fn change(
    app: &crate::helpers::TestApp,
    client: &reqwest::Client,
    current: &str,
    new: &str,
) -> reqwest::Response {
    let html = client
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&html);
    client
        .post(app.url("/account/password"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("current_password", current),
            ("new_password", new),
            ("confirm_password", new),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn password_change_enforces_policy_and_the_last_five() {
    let app = spawn_app().await;
    let client = app.signed_in("alice").await;

    let weak = change(&app, &client, PASSWORD, "password1234").await;
    assert_eq!(weak.status(), 422);
    assert!(
        text_of(&weak.text().await.unwrap(), "#password-error")
            .unwrap()
            .contains("too common")
    );

    let short = change(&app, &client, PASSWORD, "short one").await;
    assert_eq!(short.status(), 422);

    let wrong_current = change(&app, &client, "not my password", "violet kettle marsh 41").await;
    assert_eq!(wrong_current.status(), 422);
    assert!(
        text_of(&wrong_current.text().await.unwrap(), "#password-error")
            .unwrap()
            .contains("current password")
    );

    // Walk through five passwords: P0 (initial) → P1 → … → P5.
    let passwords = [
        PASSWORD,
        "violet kettle marsh 41",
        "amber canyon drift 72",
        "silent harbor lamp 09",
        "copper meadow tide 55",
        "winter orchard bell 38",
    ];
    for pair in passwords.windows(2) {
        let done = change(&app, &client, pair[0], pair[1]).await;
        assert_eq!(done.status(), 303, "{} → {}", pair[0], pair[1]);
        assert_eq!(done.headers()["location"], "/account?done=password");
    }
    // The current one and the four before it are refused ...
    for reused in &passwords[1..] {
        let refused = change(&app, &client, passwords[5], reused).await;
        assert_eq!(refused.status(), 422, "{reused}");
        assert!(
            text_of(&refused.text().await.unwrap(), "#password-error")
                .unwrap()
                .contains("used this password recently")
        );
    }
    // ... the sixth most recent is allowed again.
    let allowed = change(&app, &client, passwords[5], passwords[0]).await;
    assert_eq!(allowed.status(), 303);

    // Each change is audited with the person as actor; refused attempts are not.
    let alice = oxidp::accounts::find(&app.state, "alice").await.unwrap();
    let events = oxidp::audit::query(&app.state.db, Default::default(), 500)
        .await
        .unwrap();
    let changes: Vec<_> = events.iter().filter(|e| e.action == "user.set_password").collect();
    assert_eq!(changes.len(), 6);
    assert!(changes.iter().all(|e| e.actor == format!("user:{}", alice.id)));
    assert!(
        changes
            .iter()
            .all(|e| e.target.as_deref() == Some(&*format!("user:{}", alice.id)))
    );

    // The new password signs in; the old one does not.
    let fresh = crate::helpers::browser();
    assert_eq!(app.login(&fresh, "alice", passwords[0]).await.status(), 303);
    let fresh = crate::helpers::browser();
    assert_eq!(app.login(&fresh, "alice", passwords[5]).await.status(), 200);
}

#[tokio::test]
async fn mismatched_confirmation_is_refused() {
    let app = spawn_app().await;
    let client = app.signed_in("alice").await;
    let html = client
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&html);
    let response = client
        .post(app.url("/account/password"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("current_password", PASSWORD),
            ("new_password", "violet kettle marsh 41"),
            ("confirm_password", "violet kettle marsh 42"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert!(response.text().await.unwrap().contains("do not match"));
}
