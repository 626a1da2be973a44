//! `oxidp commerce migrate` and `oxidp commerce seller …` (the real binary) on the
//! database a running commerce server uses.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::{CommerceTest, commerce_client, spawn_commerce, token_of};
use crate::helpers::spawn_app;

fn oxidp(commerce: &CommerceTest, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oxidp"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "OXIDP_COMMERCE__DATABASE_URL",
            commerce.config.commerce.database_url.as_deref().unwrap(),
        )
        .env("OXIDP_DATA_DIR", &commerce.config.data_dir)
        .env("OXIDP_LOG__LEVEL", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json(output: Output) -> Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[tokio::test]
async fn operators_migrate_and_manage_sellers_from_the_command_line() {
    let idp = spawn_app().await;
    let commerce = spawn_commerce(&idp, |_| {}).await;
    let migrate = oxidp(&commerce, &["commerce", "migrate"]);
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    assert!(String::from_utf8_lossy(&migrate.stdout).contains("up to date"));

    let seller = json(oxidp(
        &commerce,
        &[
            "commerce",
            "seller",
            "create",
            "--name",
            "Acme",
            "--kind",
            "external",
            "--email",
            "ops@acme.example",
            "--json",
        ],
    ));
    let id = seller["id"].as_str().unwrap();
    assert_eq!(seller["kind"], "EXTERNAL");
    let added = json(oxidp(
        &commerce,
        &["commerce", "seller", "add-member", id, "alice", "--json"],
    ));
    assert_eq!(added["members"], serde_json::json!(["alice"]));
    let list = json(oxidp(&commerce, &["commerce", "seller", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1);

    let bad = oxidp(
        &commerce,
        &[
            "commerce",
            "seller",
            "create",
            "--name",
            "X",
            "--kind",
            "partner",
            "--email",
            "x@example.com",
        ],
    );
    assert!(!bad.status.success());
    let bad_email = oxidp(
        &commerce,
        &[
            "commerce", "seller", "create", "--name", "X", "--kind", "internal", "--email", "nope",
        ],
    );
    assert!(!bad_email.status.success());
    assert!(String::from_utf8_lossy(&bad_email.stderr).contains("contact.email"));

    // The running server sees the operator's change.
    let client = commerce_client(&idp, "catalog-reader", &["commerce:products:read"]).await;
    let token = token_of(&idp, &client).await;
    let seen: Value = commerce
        .get(&format!("/v1/sellers/{id}"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["members"], serde_json::json!(["alice"]));
}
