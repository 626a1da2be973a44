//! Coupon routes: campaigns, first-come claims, the caller's coupons. Thin adapters
//! over `domain::coupons`; coupon refusals become problem+json with a specific
//! `type` (`urn:oxidp:commerce:problem:already_claimed`, `…:sold_out`, …).

use actix_web::http::{StatusCode, header};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use super::handlers::PageQuery;
use super::idempotency as idem;
use super::openapi::Problem;
use crate::commerce::CommerceState;
use crate::commerce::domain::coupons::{self, CampaignView, CouponError, CouponView, NewCampaign};
use crate::commerce::domain::idempotency::{self, Begun, StoredResponse};
use crate::commerce::domain::{Limit, Page};
use crate::resource_server::error::problem;
use crate::resource_server::{Authenticated, BearerError, Sensitive};

type State = web::Data<CommerceState>;

/// Prefix of the problem `type`s specific to coupons.
pub const PROBLEM_TYPE: &str = "urn:oxidp:commerce:problem:";

/// An error answer of a coupon route.
#[derive(Debug)]
pub enum CouponApiError {
    Coupon(CouponError),
    Bearer(BearerError),
}

impl std::fmt::Display for CouponApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CouponApiError::Coupon(e) => e.fmt(f),
            CouponApiError::Bearer(e) => e.fmt(f),
        }
    }
}

/// Carries the realm so a missing permission becomes the RFC 6750 challenge.
fn domain(realm: &str) -> impl Fn(CouponError) -> CouponApiError + '_ {
    move |error| match error {
        CouponError::MissingPermission(permission) => {
            CouponApiError::Bearer(BearerError::insufficient_scope(realm, permission))
        }
        other => CouponApiError::Coupon(other),
    }
}

impl CouponError {
    /// The specific problem code, for refusals a client acts on.
    fn code(&self) -> Option<&'static str> {
        match self {
            CouponError::AlreadyClaimed => Some("already_claimed"),
            CouponError::SoldOut => Some("sold_out"),
            CouponError::NotStarted { .. } => Some("campaign_not_started"),
            CouponError::Ended { .. } => Some("campaign_ended"),
            CouponError::State(_) => Some("coupon_state"),
            _ => None,
        }
    }
}

impl ResponseError for CouponApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            CouponApiError::Bearer(e) => e.status_code(),
            CouponApiError::Coupon(e) => match e {
                CouponError::NotFound(_) => StatusCode::NOT_FOUND,
                CouponError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                CouponError::MissingPermission(_) => StatusCode::FORBIDDEN,
                CouponError::NotStarted { .. }
                | CouponError::Ended { .. }
                | CouponError::AlreadyClaimed
                | CouponError::State(_) => StatusCode::CONFLICT,
                CouponError::SoldOut => StatusCode::GONE,
                CouponError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                CouponError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        let e = match self {
            CouponApiError::Bearer(e) => return e.error_response(),
            CouponApiError::Coupon(e) => e,
        };
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        let detail = match e {
            CouponError::Internal(cause) => {
                tracing::error!(%cause, "coupon request failed");
                "An unexpected error occurred.".to_owned()
            }
            CouponError::Unavailable => {
                response.insert_header((header::RETRY_AFTER, "1"));
                e.to_string()
            }
            other => other.to_string(),
        };
        match e.code() {
            Some(code) => response
                .content_type("application/problem+json")
                .json(serde_json::json!({
                    "type": format!("{PROBLEM_TYPE}{code}"),
                    "title": status.canonical_reason().unwrap_or("Error"),
                    "status": status.as_u16(),
                    "detail": detail,
                })),
            None => problem(response, status, &detail),
        }
    }
}

fn limit(realm: &str, value: Option<i64>) -> Result<Limit, CouponApiError> {
    Limit::parse(value).map_err(|e| domain(realm)(CouponError::Invalid(e.to_string())))
}

#[utoipa::path(
    post,
    path = "/v1/coupon-campaigns",
    tag = "coupons",
    request_body = NewCampaign,
    responses(
        (status = 201, description = "Created [sensitive]; platform-wide campaign", body = CampaignView),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks `commerce:coupons:write` (`insufficient_scope`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid campaign (discount range, limit, window)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No usable key set, or the issuer cannot be asked (`introspection_fallback = deny`); see Retry-After", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = ["commerce:coupons:write"]))
)]
pub async fn create_campaign(
    state: State,
    auth: Sensitive,
    body: web::Json<NewCampaign>,
) -> Result<HttpResponse, CouponApiError> {
    let view = coupons::create_campaign(&state.db, &auth.principal, body.into_inner(), state.clock.now())
        .await
        .map_err(domain(&state.realm))?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/coupon-campaigns/{}", view.id)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(view))
}

#[utoipa::path(
    get,
    path = "/v1/coupon-campaigns",
    tag = "coupons",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of campaigns with their counters", body = Page<CampaignView>),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No usable key set; see Retry-After", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn list_campaigns(
    state: State,
    _auth: Authenticated,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, CouponApiError> {
    let q = query.into_inner();
    let limit = limit(&state.realm, q.limit)?;
    let page = coupons::campaigns(&state.db, q.cursor, limit, state.clock.now())
        .await
        .map_err(domain(&state.realm))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(page))
}

#[utoipa::path(
    get,
    path = "/v1/coupon-campaigns/{id}",
    tag = "coupons",
    params(("id" = String, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "The campaign and its counter", body = CampaignView),
        (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No usable key set; see Retry-After", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn get_campaign(
    state: State,
    _auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, CouponApiError> {
    let view = coupons::campaign(&state.db, id.into_inner(), state.clock.now())
        .await
        .map_err(domain(&state.realm))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(view))
}

enum Keyed {
    Replay(StoredResponse),
    Done(StoredResponse),
}

enum KeyedError {
    Key(crate::commerce::domain::CommerceError),
    Claim(CouponError),
}

fn created(view: &CouponView) -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_string(view).unwrap_or_default(),
    }
}

/// Any valid token may claim; the claimant is its `sub`. Local verification only
/// (a claim moves no money; applying the coupon to an order does).
///
/// `Idempotency-Key` is optional here (one coupon per subject already keeps a
/// retried claim from issuing twice); with it, a retry whose first answer was lost
/// gets that 201 replayed instead of 409 `already_claimed`. Refusals are not
/// stored: a retry with the key asks again.
#[utoipa::path(
    post,
    path = "/v1/coupon-campaigns/{id}/claims",
    tag = "coupons",
    params(
        ("id" = String, Path, description = "Campaign id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional; the same key and request replay the first 201 for 24 h")
    ),
    responses(
        (status = 201, description = "Claimed: the coupon; a replay carries Idempotent-Replayed: true", body = CouponView),
        (status = 400, description = "Idempotency-Key malformed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such campaign", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`urn:oxidp:commerce:problem:already_claimed` (one per subject), `…:campaign_not_started` or `…:campaign_ended`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`urn:oxidp:commerce:problem:sold_out`: every coupon has been claimed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The Idempotency-Key was used with a different request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No usable key set, or the database is unavailable; see Retry-After", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn claim(
    req: HttpRequest,
    state: State,
    auth: Authenticated,
    id: web::Path<String>,
    body: Bytes,
) -> Result<HttpResponse, actix_web::Error> {
    let key = match idem::optional_key(&req) {
        Ok(key) => key,
        Err(detail) => return Ok(idem::bad_request(&detail)),
    };
    let Some(key) = key else {
        let view = coupons::claim(&state.db, &auth.principal, id.into_inner(), state.clock.now())
            .await
            .map_err(domain(&state.realm))?;
        return Ok(HttpResponse::Created()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(view));
    };
    let fingerprint = idempotency::fingerprint("POST", req.path(), &body);
    // Begin, claim and complete (or release) run to the end in their own task even
    // if the client goes away mid-request, so no key is left in flight.
    let (db, principal, campaign, now) = (
        state.db.clone(),
        auth.principal.clone(),
        id.into_inner(),
        state.clock.now(),
    );
    let keyed = tokio::spawn(async move {
        let claim = match idempotency::begin(&db, &principal.sub, &key, fingerprint, now).await {
            Ok(Begun::Replay(stored)) => return Ok(Keyed::Replay(stored)),
            Ok(Begun::Proceed(claim)) => claim,
            Err(error) => return Err(KeyedError::Key(error)),
        };
        let respond: coupons::Respond = Box::new(created);
        match coupons::claim_recorded(&db, &principal, campaign, now, Some((claim.clone(), respond))).await {
            Ok((view, stored)) => Ok(Keyed::Done(stored.unwrap_or_else(|| created(&view)))),
            Err(error) => {
                idempotency::release(&db, claim).await;
                Err(KeyedError::Claim(error))
            }
        }
    })
    .await
    .map_err(|e| domain(&state.realm)(CouponError::Internal(e.to_string())))?;
    match keyed {
        Ok(Keyed::Replay(stored)) => Ok(idem::replay(&stored)),
        Ok(Keyed::Done(stored)) => Ok(idem::respond(&stored)),
        Err(KeyedError::Key(error)) => Err(super::error::domain(&state.realm)(error).into()),
        Err(KeyedError::Claim(error)) => Err(domain(&state.realm)(error).into()),
    }
}

#[utoipa::path(
    get,
    path = "/v1/me/coupons",
    tag = "coupons",
    params(PageQuery),
    responses(
        (status = 200, description = "The caller's coupons", body = Page<CouponView>),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No usable key set; see Retry-After", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub async fn my_coupons(
    state: State,
    auth: Authenticated,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, CouponApiError> {
    let q = query.into_inner();
    let limit = limit(&state.realm, q.limit)?;
    let page = coupons::my_coupons(&state.db, &auth.principal, q.cursor, limit)
        .await
        .map_err(domain(&state.realm))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(page))
}

/// Coupon routes, mounted under `/v1` by `http::configure`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg
        // [sensitive] commerce:coupons:write
        .route("/coupon-campaigns", web::post().to(create_campaign))
        // [local]
        .route("/coupon-campaigns", web::get().to(list_campaigns))
        // [local]
        .route("/coupon-campaigns/{id}", web::get().to(get_campaign))
        // [local] any valid token; one claim per subject
        .route("/coupon-campaigns/{id}/claims", web::post().to(claim))
        // [local]
        .route("/me/coupons", web::get().to(my_coupons));
}
