use crate::helpers::{PASSWORD, browser, cookie_value, spawn_app};

#[tokio::test]
async fn a_planted_session_id_is_replaced_at_sign_in() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    app.create_user("mallory", PASSWORD).await;

    // Mallory signs in and plants her own (valid) session cookie in Alice's browser.
    let attacker = browser();
    let response = app.login(&attacker, "mallory", PASSWORD).await;
    let planted = cookie_value(&response, "oxidp_session").unwrap();

    let victim = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = victim.get(app.url("/login")).send().await.unwrap();
    let csrf_cookie = cookie_value(&page, "oxidp_csrf").unwrap();
    let csrf = crate::helpers::csrf_of(&page.text().await.unwrap());
    let response = victim
        .post(app.url("/login"))
        .header("cookie", format!("oxidp_csrf={csrf_cookie}; oxidp_session={planted}"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let issued = cookie_value(&response, "oxidp_session").unwrap();
    assert_ne!(issued, planted, "a new id at sign-in");

    // The planted id is dead: Mallory cannot ride Alice's sign-in.
    let riding = attacker.get(app.url("/account")).send().await.unwrap();
    assert_eq!(riding.status(), 303);

    // An unknown made-up id is ignored too.
    let made_up = victim
        .get(app.url("/account"))
        .header("cookie", "oxidp_session=attacker-chosen-value")
        .send()
        .await
        .unwrap();
    assert_eq!(made_up.status(), 303);
}

#[tokio::test]
async fn every_sign_in_gets_a_new_session_id() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let client = browser();
    let first = cookie_value(&app.login(&client, "alice", PASSWORD).await, "oxidp_session").unwrap();
    // Signed in already, the sign-in page sends the person on ...
    let again = client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(again.status(), 303);
    assert_eq!(again.headers()["location"], "/account");
    // ... but a fresh sign-in still rotates the id and ends the old session.
    let csrf = crate::helpers::csrf_of(
        &client
            .get(app.url("/logout"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let rotated = app.post_login(&client, &csrf, "alice", PASSWORD, None).await;
    let second = cookie_value(&rotated, "oxidp_session").unwrap();
    assert_ne!(first, second);
    let old = browser()
        .get(app.url("/account"))
        .header("cookie", format!("oxidp_session={first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 303);
}

#[tokio::test]
async fn idle_timeout_is_enforced_on_the_server() {
    let app = spawn_app().await;
    let client = app.signed_in("alice").await;
    let idle = app.config.session.idle_timeout_secs;

    // Activity just inside the window keeps the session alive.
    app.clock.advance(idle - 60);
    assert_eq!(client.get(app.url("/account")).send().await.unwrap().status(), 200);
    app.clock.advance(idle - 60);
    assert_eq!(client.get(app.url("/account")).send().await.unwrap().status(), 200);

    // A full idle period of silence ends it.
    app.clock.advance(idle);
    let response = client.get(app.url("/account?tab=x")).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "/login?return_to=%2Faccount%3Ftab%3Dx&expired=1"
    );
    let login = client
        .get(app.url("/login?return_to=%2Faccount&expired=1"))
        .send()
        .await
        .unwrap();
    assert!(login.text().await.unwrap().contains("Your session has expired"));

    // The session row is gone: going back in time does not revive it.
    app.clock.advance(-idle);
    assert_eq!(client.get(app.url("/account")).send().await.unwrap().status(), 303);
}

#[tokio::test]
async fn absolute_timeout_ends_even_an_active_session() {
    let app = spawn_app().await;
    let client = app.signed_in("alice").await;
    let absolute = app.config.session.absolute_timeout_secs;
    let step = app.config.session.idle_timeout_secs / 2;
    let mut elapsed = 0;
    while elapsed + step < absolute {
        app.clock.advance(step);
        elapsed += step;
        assert_eq!(
            client.get(app.url("/account")).send().await.unwrap().status(),
            200,
            "at {elapsed}s"
        );
    }
    app.clock.advance(absolute - elapsed);
    let response = client.get(app.url("/account")).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert!(response.headers()["location"].to_str().unwrap().ends_with("expired=1"));
}

#[tokio::test]
async fn signing_in_after_expiry_returns_to_the_page() {
    let app = spawn_app().await;
    let client = app.signed_in("alice").await;
    app.clock.advance(app.config.session.idle_timeout_secs + 1);
    let response = client.get(app.url("/account?done=password")).send().await.unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let page = client.get(app.url(&location)).send().await.unwrap();
    let html = page.text().await.unwrap();
    let csrf = crate::helpers::csrf_of(&html);
    let title = crate::helpers::text_of(&html, "title").unwrap();
    assert!(title.contains("Session expired"), "{title}");
    assert!(html.contains("Your session has expired"));
    let document = scraper::Html::parse_document(&html);
    let field = scraper::Selector::parse(r#"input[name="return_to"]"#).unwrap();
    let return_to = document
        .select(&field)
        .next()
        .unwrap()
        .value()
        .attr("value")
        .unwrap()
        .to_owned();
    assert_eq!(return_to, "/account?done=password");
    let response = app
        .post_login(&client, &csrf, "alice", crate::helpers::PASSWORD, Some(&return_to))
        .await;
    assert_eq!(response.headers()["location"], "/account?done=password");
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions() {
    let app = spawn_app().await;
    let client = app.signed_in("alice").await;
    assert_eq!(client.get(app.url("/account")).send().await.unwrap().status(), 200);
    oxidp::accounts::set_disabled(&app.state, &oxidp::audit::Actor::system(), "alice", true)
        .await
        .unwrap();
    assert_eq!(client.get(app.url("/account")).send().await.unwrap().status(), 303);
}

#[tokio::test]
async fn account_page_lists_sessions_with_device_and_ip() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let laptop = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0")
        .build()
        .unwrap();
    app.login(&laptop, "alice", PASSWORD).await;
    let phone = browser();
    app.login(&phone, "alice", PASSWORD).await;
    let html = laptop
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Firefox on Linux"), "{html}");
    assert!(html.contains("127.0.0.1"));
    let (sessions, sign_ins) = html.split_once("Recent sign-ins").expect("sign-in history section");
    let sessions = sessions.split_once("Your sessions").unwrap().1;
    assert_eq!(sessions.matches("<tr>").count(), 3, "header row and two sessions");
    assert_eq!(html.matches("this device").count(), 1);
    // The sign-in history shows both successful sign-ins.
    assert_eq!(sign_ins.matches("Signed in</span>").count(), 2, "{sign_ins}");
}
