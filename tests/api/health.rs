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
