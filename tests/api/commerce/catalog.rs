//! The catalog through the real servers: sellers and seller scope, products with
//! options and combinations, the lifecycle with four-eyes approval and its events,
//! the public catalog with ETags, and If-Match optimistic concurrency.

use reqwest::Method;
use serde_json::{Value, json};

use super::{CommerceTest, commerce_client, spawn_commerce, token_of};
use crate::helpers::spawn_app;

const WRITE: &str = "commerce:products:write";
const APPROVE: &str = "commerce:products:approve";
const ADMIN: &str = "commerce:sellers:admin";

struct Shop {
    commerce: CommerceTest,
    admin: String,
    /// Member of the seller, may write.
    seller_dev: String,
    seller_dev_sub: String,
    /// Member of the seller who also holds approve: four-eyes says no.
    seller_reviewer: String,
    /// Not a member, holds approve.
    reviewer: String,
    /// Holds write but belongs to no seller.
    outsider: String,
    seller_id: String,
    _idp: crate::helpers::TestApp,
}

async fn shop() -> Shop {
    let idp = spawn_app().await;
    let commerce = spawn_commerce(&idp, |_| {}).await;
    let admin_client = commerce_client(&idp, "commerce-admin", &[ADMIN, WRITE]).await;
    let dev_client = commerce_client(&idp, "seller-dev", &[WRITE]).await;
    let seller_reviewer_client = commerce_client(&idp, "seller-reviewer", &[WRITE, APPROVE]).await;
    let reviewer_client = commerce_client(&idp, "reviewer", &[APPROVE]).await;
    let outsider_client = commerce_client(&idp, "outsider", &[WRITE]).await;
    let admin = token_of(&idp, &admin_client).await;
    let created = commerce
        .send(
            Method::POST,
            "/v1/sellers",
            &admin,
            None,
            json!({"name": "Acme Outdoor", "kind": "EXTERNAL", "contact": {"email": "ops@acme.example", "phone": "+49 30 1234"}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let seller: Value = created.json().await.unwrap();
    let seller_id = seller["id"].as_str().unwrap().to_owned();
    // Service accounts are members by their subject (the client id).
    for member in [&dev_client.id, &seller_reviewer_client.id] {
        let added = commerce
            .send(
                Method::PUT,
                &format!("/v1/sellers/{seller_id}/members/{member}"),
                &admin,
                None,
                json!({}),
            )
            .await;
        assert_eq!(added.status(), 200);
    }
    Shop {
        seller_dev: token_of(&idp, &dev_client).await,
        seller_dev_sub: dev_client.id.clone(),
        seller_reviewer: token_of(&idp, &seller_reviewer_client).await,
        reviewer: token_of(&idp, &reviewer_client).await,
        outsider: token_of(&idp, &outsider_client).await,
        commerce,
        admin,
        seller_id,
        _idp: idp,
    }
}

impl Shop {
    async fn create_product(&self, token: &str, name: &str) -> reqwest::Response {
        self.commerce
            .send(
                Method::POST,
                "/v1/products",
                token,
                None,
                json!({
                    "seller_id": self.seller_id, "name": name, "description": "Two-person tent",
                    "category": "camping", "type": "REALTIME",
                    "price": {"amount_minor": 19_900, "currency": "EUR"}
                }),
            )
            .await
    }

    async fn act(&self, token: &str, id: &str, etag: &str, action: &str, reason: Option<&str>) -> reqwest::Response {
        self.commerce
            .send(
                Method::POST,
                &format!("/v1/products/{id}/transitions"),
                token,
                Some(etag),
                json!({"action": action, "reason": reason}),
            )
            .await
    }
}

fn etag(response: &reqwest::Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_lifecycle_runs_with_four_eyes_and_records_its_events() {
    let shop = shop().await;
    let seller = shop
        .commerce
        .get(&format!("/v1/sellers/{}", shop.seller_id), Some(&shop.admin))
        .await;
    let seller: Value = seller.json().await.unwrap();
    assert_eq!(seller["kind"], "EXTERNAL");
    assert!(
        seller["members"]
            .as_array()
            .unwrap()
            .contains(&json!(shop.seller_dev_sub))
    );

    let created = shop.create_product(&shop.seller_dev, "Tent").await;
    assert_eq!(created.status(), 201);
    let mut tag = etag(&created);
    let product: Value = created.json().await.unwrap();
    let id = product["id"].as_str().unwrap().to_owned();
    assert_eq!(product["status"], "PLANNING");
    assert_eq!(product["price"], json!({"amount_minor": 19_900, "currency": "EUR"}));

    // Not allowed in PLANNING: 409 naming the current state.
    let early = shop.act(&shop.reviewer, &id, &tag, "approve", None).await;
    assert_eq!(early.status(), 409);
    let body: Value = early.json().await.unwrap();
    assert_eq!(body["current_status"], "PLANNING");

    for action in ["start_development", "submit_for_review"] {
        let r = shop.act(&shop.seller_dev, &id, &tag, action, None).await;
        assert_eq!(r.status(), 200, "{action}");
        tag = etag(&r);
    }
    // The seller's own reviewer may not approve (four-eyes), an outsider without
    // the permission gets insufficient_scope, a rejection needs a reason.
    let own = shop.act(&shop.seller_reviewer, &id, &tag, "approve", None).await;
    assert_eq!(own.status(), 403);
    assert!(own.text().await.unwrap().contains("four-eyes"));
    let no_perm = shop.act(&shop.seller_dev, &id, &tag, "approve", None).await;
    assert_eq!(no_perm.status(), 403);
    assert!(super::challenge(&no_perm).contains("scope=\"commerce:products:approve\""));
    assert_eq!(shop.act(&shop.reviewer, &id, &tag, "reject", None).await.status(), 422);
    let rejected = shop
        .act(&shop.reviewer, &id, &tag, "reject", Some("photos missing"))
        .await;
    assert_eq!(rejected.status(), 200);
    tag = etag(&rejected);
    assert_eq!(rejected.json::<Value>().await.unwrap()["status"], "DEVELOPMENT");

    let r = shop.act(&shop.seller_dev, &id, &tag, "submit_for_review", None).await;
    tag = etag(&r);
    let approved = shop.act(&shop.reviewer, &id, &tag, "approve", None).await;
    assert_eq!(approved.status(), 200);
    tag = etag(&approved);
    // Not on sale yet: the public catalog does not show it.
    assert_eq!(
        shop.commerce
            .get(&format!("/v1/catalog/products/{id}"), None)
            .await
            .status(),
        404
    );
    for action in ["launch", "start_sales"] {
        let r = shop.act(&shop.seller_dev, &id, &tag, action, None).await;
        assert_eq!(r.status(), 200, "{action}");
        tag = etag(&r);
    }

    // Public read without a token, cacheable, conditional GET → 304.
    let public = shop.commerce.get(&format!("/v1/catalog/products/{id}"), None).await;
    assert_eq!(public.status(), 200);
    assert!(public.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    let public_tag = etag(&public);
    let again = reqwest::Client::new()
        .get(shop.commerce.url(&format!("/v1/catalog/products/{id}")))
        .header("if-none-match", &public_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let list = shop.commerce.get("/v1/catalog/products?category=camping", None).await;
    assert_eq!(list.status(), 200);
    let list_tag = etag(&list);
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let list_again = reqwest::Client::new()
        .get(shop.commerce.url("/v1/catalog/products?category=camping"))
        .header("if-none-match", &list_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(list_again.status(), 304);

    let retired = shop.act(&shop.seller_dev, &id, &tag, "retire", None).await;
    assert_eq!(retired.status(), 200);
    let events: Value = shop
        .commerce
        .get(&format!("/v1/products/{id}/events"), Some(&shop.admin))
        .await
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "CREATED", "UPDATED", "UPDATED", "REJECTED", "UPDATED", "APPROVED", "LAUNCHED", "UPDATED", "RETIRED"
        ]
    );
    let rejection = &events["items"][3];
    assert_eq!(rejection["reason"], "photos missing");
    assert_eq!(rejection["from_status"], "REVIEW");
    assert!(rejection["actor"].is_string());
}

#[tokio::test]
async fn only_the_sellers_members_change_its_products() {
    let shop = shop().await;
    assert_eq!(shop.create_product(&shop.outsider, "Not mine").await.status(), 403);
    let created = shop.create_product(&shop.seller_dev, "Stove").await;
    let tag = etag(&created);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/products/{id}");
    let by_outsider = shop
        .commerce
        .send(
            Method::PATCH,
            &path,
            &shop.outsider,
            Some(&tag),
            json!({"name": "Mine now"}),
        )
        .await;
    assert_eq!(by_outsider.status(), 403);
    assert_eq!(by_outsider.headers()["content-type"], "application/problem+json");
    // A seller administrator may (commerce:sellers:admin).
    let by_admin = shop
        .commerce
        .send(
            Method::PATCH,
            &path,
            &shop.admin,
            Some(&tag),
            json!({"name": "Camp stove"}),
        )
        .await;
    assert_eq!(by_admin.status(), 200);
    // Invalid input: problem+json 422 / 400.
    let bad_currency = shop
        .commerce
        .send(
            Method::POST,
            "/v1/products",
            &shop.seller_dev,
            None,
            json!({"seller_id": shop.seller_id, "name": "X", "category": "c", "type": "REALTIME",
                   "price": {"amount_minor": 100, "currency": "euro"}}),
        )
        .await;
    assert_eq!(bad_currency.status(), 400);
    assert_eq!(bad_currency.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn options_and_combinations_are_validated() {
    let shop = shop().await;
    let created = shop.create_product(&shop.seller_dev, "Shirt").await;
    let mut tag = etag(&created);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut groups = Vec::new();
    for (name, options) in [
        ("Colour", json!([{"name": "Red"}, {"name": "Blue", "price_delta": 200}])),
        ("Size", json!([{"name": "M"}, {"name": "XL", "price_delta": 500}])),
    ] {
        let r = shop
            .commerce
            .send(
                Method::POST,
                &format!("/v1/products/{id}/option-groups"),
                &shop.seller_dev,
                Some(&tag),
                json!({"name": name, "options": options}),
            )
            .await;
        assert_eq!(r.status(), 200);
        tag = etag(&r);
        let view: Value = r.json().await.unwrap();
        groups = view["option_groups"].as_array().unwrap().clone();
    }
    let option = |group: &str, name: &str| {
        let g = groups.iter().find(|g| g["name"] == group).unwrap();
        let o = g["options"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .unwrap();
        o["id"].as_str().unwrap().to_owned()
    };
    let path = format!("/v1/products/{id}/combinations");
    for (bad, why) in [
        (vec![option("Colour", "Red")], "a group missing"),
        (
            vec![option("Colour", "Red"), option("Colour", "Blue")],
            "two of one group",
        ),
        (vec![option("Colour", "Red"), "nope".to_owned()], "unknown option"),
    ] {
        let r = shop
            .commerce
            .send(
                Method::POST,
                &path,
                &shop.seller_dev,
                Some(&tag),
                json!({"sku": "S-1", "option_ids": bad}),
            )
            .await;
        assert_eq!(r.status(), 422, "{why}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    let ok = shop
        .commerce
        .send(
            Method::POST,
            &path,
            &shop.seller_dev,
            Some(&tag),
            json!({"sku": "SHIRT-BLUE-XL", "option_ids": [option("Size", "XL"), option("Colour", "Blue")], "price_delta": 100}),
        )
        .await;
    assert_eq!(ok.status(), 200);
    tag = etag(&ok);
    let view: Value = ok.json().await.unwrap();
    assert_eq!(
        view["combinations"][0]["price"]["amount_minor"],
        19_900 + 200 + 500 + 100
    );
    let duplicate = shop
        .commerce
        .send(
            Method::POST,
            &path,
            &shop.seller_dev,
            Some(&tag),
            json!({"sku": "OTHER", "option_ids": [option("Colour", "Blue"), option("Size", "XL")]}),
        )
        .await;
    assert_eq!(duplicate.status(), 409);
}

#[tokio::test]
async fn if_match_makes_concurrent_updates_exclusive() {
    let shop = shop().await;
    let created = shop.create_product(&shop.seller_dev, "Lamp").await;
    let tag = etag(&created);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/products/{id}");

    let missing = shop
        .commerce
        .send(Method::PATCH, &path, &shop.seller_dev, None, json!({"name": "No tag"}))
        .await;
    assert_eq!(missing.status(), 428);

    // Two editors with the same ETag at once: exactly one wins, the other gets 412.
    let (a, b) = tokio::join!(
        shop.commerce.send(
            Method::PATCH,
            &path,
            &shop.seller_dev,
            Some(&tag),
            json!({"name": "Lamp A"})
        ),
        shop.commerce
            .send(Method::PATCH, &path, &shop.admin, Some(&tag), json!({"name": "Lamp B"})),
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 412]);
    let current: Value = shop.commerce.get(&path, Some(&shop.admin)).await.json().await.unwrap();
    assert_eq!(current["version"], 2);
    let winner = if a.status() == 200 { "Lamp A" } else { "Lamp B" };
    assert_eq!(current["name"], winner);
    // A stale tag stays stale.
    let stale = shop
        .commerce
        .send(
            Method::PATCH,
            &path,
            &shop.seller_dev,
            Some(&tag),
            json!({"name": "Late"}),
        )
        .await;
    assert_eq!(stale.status(), 412);
}

#[tokio::test]
async fn product_lists_page_with_cursors_and_filter() {
    let shop = shop().await;
    for i in 0..5 {
        assert_eq!(
            shop.create_product(&shop.seller_dev, &format!("P{i}")).await.status(),
            201
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/products?limit=2&status=PLANNING&cursor={c}"),
            None => "/v1/products?limit=2&status=PLANNING".to_owned(),
        };
        let page: Value = shop.commerce.get(&path, Some(&shop.admin)).await.json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["name"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["P0", "P1", "P2", "P3", "P4"]);
    let none: Value = shop
        .commerce
        .get("/v1/products?status=SALES", Some(&shop.admin))
        .await
        .json()
        .await
        .unwrap();
    assert!(none["items"].as_array().unwrap().is_empty());
    assert_eq!(
        shop.commerce
            .get("/v1/products?limit=0", Some(&shop.admin))
            .await
            .status(),
        422
    );
}
