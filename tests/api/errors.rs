use crate::helpers::{browser, spawn_app};

#[tokio::test]
async fn unknown_route_is_a_404_page_for_people_and_problem_json_for_apis() {
    let app = spawn_app().await;
    let client = browser();
    let page = client
        .get(app.url("/no/such/page"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("Page not found"));

    let api = client.get(app.url("/admin/v1/nothing")).send().await.unwrap();
    assert_eq!(api.status(), 404);
    assert_eq!(api.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = api.json().await.unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(body["title"], "Not Found");
}

#[tokio::test]
async fn malformed_and_oversized_forms_get_an_error_page() {
    let app = spawn_app().await;
    let client = browser();
    let csrf = app.login_csrf(&client).await;

    // Missing fields.
    let missing = client
        .post(app.url("/login"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    assert!(
        missing.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(missing.text().await.unwrap().contains("incomplete or malformed"));

    // Not a form at all.
    let json = client
        .post(app.url("/login"))
        .json(&serde_json::json!({"username": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 400);

    // Far too large.
    let huge = "x".repeat(200 * 1024);
    let big = client
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "alice"),
            ("password", huge.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    assert!(big.text().await.unwrap().contains("too large"));

    // Malformed query string.
    let query = client.get(app.url("/login?return_to=%ZZ")).send().await.unwrap();
    assert!(query.status() == 400 || query.status() == 200, "{}", query.status());
}

/// A body over `http.max_body_bytes` is answered in each endpoint's own format.
#[tokio::test]
async fn oversized_bodies_get_413_in_the_endpoint_format() {
    let app = spawn_app().await;
    let service = app.service_client("api:read", None).await;
    let big = "a".repeat(app.config.http.max_body_bytes + 1);
    for endpoint in ["/token", "/revoke", "/introspect"] {
        let response = reqwest::Client::new()
            .post(app.url(endpoint))
            .basic_auth(&service.id, service.secret.as_deref())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("grant_type=client_credentials&token=x&padding={big}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413, "{endpoint}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{endpoint}"
        );
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{endpoint}");
    }
    let admin = app.admin_token().await;
    let response = reqwest::Client::new()
        .post(app.url("/admin/v1/users"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({ "username": "big", "padding": big }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], 413);
}

/// RFC 6749 Appendix B: malformed form encoding is `invalid_request`, not guessed at.
#[tokio::test]
async fn malformed_form_encoding_is_invalid_request() {
    let app = spawn_app().await;
    let service = app.service_client("api:read", None).await;
    for body in [
        "&&&==&grant_type=client_credentials&&",
        "grant_type=client_credentials&scope=api%3Aread%zz",
        "grant_type=client_credentials&scope=%4",
        "grant_type=client_credentials&=x",
        "grant_type=client_credentials&scope",
        "grant_type=client_credentials&scope=%ff",
    ] {
        let response = reqwest::Client::new()
            .post(app.url("/token"))
            .basic_auth(&service.id, service.secret.as_deref())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"], "invalid_request", "{body}");
    }
    // The well-formed request still works, with `+` and escapes decoded.
    let response = reqwest::Client::new()
        .post(app.url("/token"))
        .basic_auth(&service.id, service.secret.as_deref())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=api%3Aread")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The authorization endpoint shows a page for a malformed query.
    let client = app.web_client().await;
    let page = browser()
        .get(format!(
            "{}&&&scope=openid%zz",
            app.authorize_url(&client, &[("state", "s")])
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400);
    assert!(page.headers().get("location").is_none());
}
