use crate::helpers::{browser, spawn_app, spawn_app_with};

fn assert_security_headers(response: &reqwest::Response) {
    let h = response.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
}

#[tokio::test]
async fn every_page_carries_security_headers() {
    let app = spawn_app().await;
    let client = browser();
    for path in [
        "/login",
        "/logout",
        "/healthz",
        "/nope",
        "/static/css/oxidp.css",
        "/account",
    ] {
        let response = client.get(app.url(path)).send().await.unwrap();
        assert_security_headers(&response);
        assert!(
            !response.headers().contains_key("strict-transport-security"),
            "no HSTS over http"
        );
    }
}

#[tokio::test]
async fn auth_pages_are_not_cached_but_assets_are() {
    let app = spawn_app().await;
    let client = browser();
    let login = client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(login.headers()["cache-control"], "no-store");
    let css = client.get(app.url("/static/css/oxidp.css")).send().await.unwrap();
    assert_eq!(css.status(), 200);
    assert!(css.headers()["cache-control"].to_str().unwrap().starts_with("public"));
    assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
    let etag = css.headers()["etag"].to_str().unwrap().to_owned();
    let again = client
        .get(app.url("/static/css/oxidp.css"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
}

#[tokio::test]
async fn https_issuer_adds_hsts_and_host_prefixed_secure_cookies() {
    let app = spawn_app_with(|c| c.issuer = "https://id.example.com".to_owned()).await;
    let client = browser();
    let login = client.get(app.url("/login")).send().await.unwrap();
    assert!(
        login.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
    let set_cookie = login.headers()["set-cookie"].to_str().unwrap();
    assert!(set_cookie.starts_with("__Host-oxidp_csrf="), "{set_cookie}");
    assert!(set_cookie.contains("Secure"), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("Path=/"), "{set_cookie}");
    assert!(!set_cookie.contains("Domain"), "{set_cookie}");
}
