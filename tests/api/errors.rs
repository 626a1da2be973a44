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
