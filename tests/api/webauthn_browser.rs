//! WebAuthn in a real browser: headless Debian Chromium with a virtual CTAP2
//! authenticator (resident keys, user verification) added through the DevTools
//! protocol (`WebAuthn.enable`, `WebAuthn.addVirtualAuthenticator`). The page's
//! own `webauthn.js` runs the ceremonies: registration from the account page,
//! the second step after the password, passwordless sign-in, and removal. The
//! app is served on http://localhost (browsers refuse WebAuthn on IP origins).

use std::time::Duration;

use serde_json::json;

use crate::browser::Browser;
use crate::helpers::{PASSWORD, TestApp, spawn_app};

fn local(app: &TestApp, path: &str) -> String {
    format!("http://localhost:{}{path}", app.port)
}

async fn sign_out(browser: &Browser, app: &TestApp) {
    browser.click(".site-nav button").await;
    assert!(
        browser
            .wait_for("location.pathname !== '/account'", Duration::from_secs(10))
            .await
    );
    browser.goto(&local(app, "/login")).await;
}

async fn at(browser: &Browser, expression: &str) -> bool {
    browser.wait_for(expression, Duration::from_secs(15)).await
}

#[tokio::test]
async fn passkeys_in_chromium_register_second_step_passwordless_and_remove() {
    let app = spawn_app().await;
    app.create_user("lea", PASSWORD).await;
    let Some(browser) = Browser::start().await else { return };
    browser.goto(&local(&app, "/login")).await;
    browser.cdp("WebAuthn.enable", json!({})).await;
    let added = browser
        .cdp(
            "WebAuthn.addVirtualAuthenticator",
            json!({ "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserVerified": true,
                "automaticPresenceSimulation": true
            }}),
        )
        .await;
    let authenticator = added["authenticatorId"]
        .as_str()
        .expect("an authenticator id")
        .to_owned();

    // Sign in with the password and add a passkey from the account area.
    browser
        .goto(&local(&app, "/login?return_to=%2Faccount%2Fpasskeys%2Fnew"))
        .await;
    browser.screenshot("login-with-passkey-button").await;
    browser.type_into("#username", "lea").await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("form[action='/login'] button[type=submit]").await;
    assert!(at(&browser, "location.pathname === '/account/passkeys/new'").await);
    assert!(
        at(&browser, "!document.querySelector('[data-webauthn]').hidden").await,
        "JS shows the button"
    );
    browser.type_into("#passkey-name", "Chromium passkey").await;
    browser.screenshot("passkey-add").await;
    browser.click("#passkey-add").await;
    assert!(
        at(&browser, "location.search === '?done=passkey-added'").await,
        "status: {}",
        browser
            .script("return document.querySelector('[data-webauthn-status]')?.textContent")
            .await
    );
    assert!(browser.text("#passkeys").await.contains("Chromium passkey"));
    browser
        .script("document.getElementById('passkeys').scrollIntoView(); return true")
        .await;
    browser.screenshot("account-passkeys").await;
    let stored = browser
        .cdp("WebAuthn.getCredentials", json!({ "authenticatorId": authenticator }))
        .await;
    let credentials = stored["credentials"].as_array().unwrap();
    assert_eq!(credentials.len(), 1);
    assert_eq!(
        credentials[0]["isResidentCredential"], true,
        "a discoverable credential"
    );

    // Password, then the passkey as the second step.
    sign_out(&browser, &app).await;
    browser.type_into("#username", "lea").await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("form[action='/login'] button[type=submit]").await;
    assert!(at(&browser, "location.pathname === '/login/mfa'").await);
    browser.screenshot("mfa-passkey").await;
    browser.click("#passkey-verify").await;
    assert!(at(&browser, "location.pathname === '/account'").await);

    // Passwordless: the passkey alone.
    sign_out(&browser, &app).await;
    assert!(at(&browser, "!document.querySelector('[data-webauthn]').hidden").await);
    browser.click("#passkey-signin").await;
    assert!(at(&browser, "location.pathname === '/account'").await);
    assert!(browser.text("#passkeys").await.contains("Chromium passkey"));

    // Remove it (the passwordless sign-in was just now: no re-authentication needed).
    let delete = browser
        .script("return document.querySelector('#passkeys a[href$=\"/delete\"]').getAttribute('href')")
        .await;
    browser.goto(&local(&app, delete.as_str().unwrap())).await;
    browser.click("form.stack button[type=submit]").await;
    assert!(at(&browser, "location.search === '?done=passkey-removed'").await);
    assert!(at(&browser, "document.getElementById('passkeys') === null").await);

    // The authenticator still holds the key, but the account no longer accepts it.
    sign_out(&browser, &app).await;
    browser.click("#passkey-signin").await;
    assert!(at(&browser, "document.querySelector('.alert-error') !== null").await);
    assert!(
        browser
            .text(".alert-error")
            .await
            .contains("could not be used to sign in")
    );
    assert_eq!(browser.script("return location.pathname").await, "/login/passkey");
}
