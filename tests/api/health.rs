use crate::helpers::{PASSWORD, browser, spawn_app, spawn_app_with_cuttable_database};

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let app = spawn_app().await;
    let client = browser();
    let health = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<serde_json::Value>().await.unwrap()["status"], "ok");
    let ready = client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    let expected = if crate::helpers::postgres_url().is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(body["database"], expected);
}

#[tokio::test]
async fn database_outage_gives_503_in_each_format_and_writes_nothing() {
    let mut app = spawn_app_with_cuttable_database().await;
    app.create_user("alice", PASSWORD).await;
    let client = browser();
    let csrf = app.login_csrf(&client).await;

    let _lock = app.cut_database().await;

    // Machines: problem+json.
    let ready = client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.headers()["content-type"], "application/problem+json");
    assert!(ready.headers().contains_key("retry-after"));
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], 503);

    // People: a page, and no session was created.
    let login = app.post_login(&client, &csrf, "alice", PASSWORD, None).await;
    assert_eq!(login.status(), 503);
    assert!(
        login.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(login.cookies().all(|c| c.name() != "oxidp_session"));
    let html = login.text().await.unwrap();
    assert!(html.contains("Temporarily unavailable"), "{html}");

    // The process itself is still alive.
    assert_eq!(client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
}

/// Issue 19 item 9: the sign-in counters are not on the public listener.
#[tokio::test]
async fn metrics_are_served_on_their_own_listener_not_the_public_one() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    assert_eq!(app.login(&browser(), "alice", "wrong password").await.status(), 200);

    let public = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(public.status(), 404);
    assert!(!public.text().await.unwrap().contains("oxidp_login_attempts_total"));

    let private = reqwest::get(app.metrics_url()).await.unwrap();
    assert_eq!(private.status(), 200);
    assert!(
        private
            .text()
            .await
            .unwrap()
            .contains("oxidp_login_attempts_total{result=\"failure\"} 1")
    );
    // The metrics listener serves nothing else.
    let other = reqwest::get(format!("{}/login", app.metrics_address.as_deref().unwrap()))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);

    // `off` switches the listener off; `/metrics` is then nowhere.
    let off = crate::helpers::spawn_app_with(|c| c.metrics.bind = "off".into()).await;
    assert!(off.metrics_address.is_none());
    assert_eq!(reqwest::get(off.url("/metrics")).await.unwrap().status(), 404);
}

#[tokio::test]
async fn with_a_token_metrics_may_be_scraped_through_the_public_listener_and_only_with_it() {
    const TOKEN: &str = "scrape-token-0123456789abcdef";
    let app = crate::helpers::spawn_app_with(|c| c.metrics.token = Some(TOKEN.to_owned().into())).await;
    let http = reqwest::Client::new();
    for url in [app.url("/metrics"), app.metrics_url()] {
        let bare = http.get(&url).send().await.unwrap();
        assert_eq!(bare.status(), 401, "{url}");
        assert_eq!(bare.headers()["www-authenticate"], r#"Bearer realm="oxidp-metrics""#);
        let wrong = http
            .get(&url)
            .bearer_auth("scrape-token-0123456789abcdeX")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{url}");
        assert!(
            wrong.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains(r#"error="invalid_token""#)
        );
        assert!(!wrong.text().await.unwrap().contains("oxidp_"));
        let right = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(right.status(), 200, "{url}");
        assert!(
            right
                .text()
                .await
                .unwrap()
                .contains("# TYPE oxidp_login_attempts_total counter")
        );
    }
}
