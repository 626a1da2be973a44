//! Reservation routes: the asynchronous request (202 + Location, Idempotency-Key
//! required), polling with Retry-After, and a Server-Sent Events stream of the
//! outcome authenticated by the `Authorization` header (no tokens in URLs).

use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};

use super::error::{ApiError, domain};
use super::idempotency as idem;
use super::openapi::Problem;
use crate::commerce::CommerceState;
use crate::commerce::domain::CommerceError;
use crate::commerce::domain::idempotency::{self, Begun, StoredResponse};
use crate::commerce::domain::reservations::{self, NewReservation, ReservationStatus, ReservationView};
use crate::resource_server::{Authenticated, Sensitive};

type State = web::Data<CommerceState>;

/// How long an events stream waits for the outcome before it closes (the client
/// reconnects), and how often it looks.
const STREAM_FOR: Duration = Duration::from_secs(30);
const STREAM_POLL: Duration = Duration::from_millis(200);
/// Event streams one instance keeps open at once; beyond, 503 (poll instead).
pub const MAX_STREAMS: usize = 1000;

/// Routes (inside `/v1`), any valid token (a buyer); a reservation is visible to
/// its owner (`sub`) only:
/// - `POST /reservations` [sensitive, moves stock; Idempotency-Key required];
/// - `GET /reservations/{id}` and `GET /reservations/{id}/events` [local].
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/reservations", web::post().to(create))
        .route("/reservations/{id}", web::get().to(get))
        .route("/reservations/{id}/events", web::get().to(events));
}

fn accepted(view: &ReservationView) -> StoredResponse {
    StoredResponse {
        status: 202,
        headers: vec![
            ("location".into(), format!("/v1/reservations/{}", view.id)),
            ("retry-after".into(), "1".into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: serde_json::to_string(view).unwrap_or_default(),
    }
}

#[utoipa::path(
    post,
    path = "/v1/reservations",
    tag = "commerce",
    params(("Idempotency-Key" = String, Header, description = "Required; the same key and body replay the first response for 24 h")),
    request_body = NewReservation,
    responses((status = 202, description = "Accepted (PENDING) [sensitive]; Location names the reservation, a replay carries Idempotent-Replayed: true", body = ReservationView), (status = 400, description = "Malformed body, or Idempotency-Key missing or malformed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 409, description = "A request with this Idempotency-Key is still being processed", body = Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid content (unknown product or combination, bad date or quantity), or the Idempotency-Key was used with a different request", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set, or the issuer cannot be asked; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn create(req: HttpRequest, state: State, auth: Sensitive, body: Bytes) -> Result<HttpResponse, ApiError> {
    let key = match idem::required_key(&req) {
        Ok(key) => key,
        Err(detail) => return Ok(idem::bad_request(&detail)),
    };
    let new: NewReservation = match serde_json::from_slice(&body) {
        Ok(new) => new,
        Err(error) => return Ok(idem::bad_body(error)),
    };
    let fingerprint = idempotency::fingerprint("POST", req.path(), &body);
    // Begin, request and release run to the end in their own task even if the
    // client goes away mid-request, so no key is left in flight.
    let (db, principal, now) = (state.db.clone(), auth.principal.clone(), state.clock.now());
    let outcome = tokio::spawn(async move {
        let claim = match idempotency::begin(&db, &principal.sub, &key, fingerprint, now).await? {
            Begun::Replay(stored) => return Ok((stored, true)),
            Begun::Proceed(claim) => claim,
        };
        match reservations::request(&db, &principal, new, Some(claim.clone()), accepted, now).await {
            Ok((_, stored)) => Ok((stored, false)),
            Err(error) => {
                idempotency::release(&db, claim).await;
                Err(error)
            }
        }
    })
    .await
    .map_err(|e| domain(&state.realm)(CommerceError::Internal(e.to_string())))?;
    match outcome.map_err(domain(&state.realm))? {
        (stored, true) => Ok(idem::replay(&stored)),
        (stored, false) => {
            crate::commerce::metrics::QueueMetrics::inc(&state.queue_metrics.accepted);
            state.queue_wake.notify_one();
            Ok(idem::respond(&stored))
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/reservations/{id}",
    tag = "commerce",
    params(("id" = String, Path, description = "Reservation id")),
    responses((status = 200, description = "The reservation; Retry-After while PENDING", body = ReservationView), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not the caller's)", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn get(state: State, auth: Authenticated, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let view = reservations::get(&state.db, &auth.principal.sub, id.into_inner())
        .await
        .map_err(domain(&state.realm))?;
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if view.status == ReservationStatus::Pending {
        response.insert_header((header::RETRY_AFTER, "1"));
    }
    Ok(response.json(view))
}

fn event(view: &ReservationView) -> Bytes {
    let data = serde_json::to_string(view).unwrap_or_default();
    Bytes::from(format!("event: status\nid: {}\ndata: {data}\n\n", view.status.as_str()))
}

enum Phase {
    Start(ReservationView),
    Waiting(Instant),
    Done,
}

#[utoipa::path(
    get,
    path = "/v1/reservations/{id}/events",
    tag = "commerce",
    params(("id" = String, Path, description = "Reservation id")),
    responses((status = 200, description = "text/event-stream: `status` events, the current one then the final one (the stream closes after the final status, or after 30 s)", content_type = "text/event-stream"), (status = 401, description = "Missing, invalid, expired or revoked token (RFC 6750 `invalid_token`)", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not the caller's)", body = Problem, content_type = "application/problem+json"), (status = 503, description = "No usable key set, or too many open streams; see Retry-After", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn events(state: State, auth: Authenticated, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let subject = auth.principal.sub.clone();
    let first = reservations::get(&state.db, &subject, id.clone())
        .await
        .map_err(domain(&state.realm))?;
    let Ok(permit) = state.event_streams.clone().try_acquire_owned() else {
        let mut response = HttpResponse::build(actix_web::http::StatusCode::SERVICE_UNAVAILABLE);
        response.insert_header((header::RETRY_AFTER, "5"));
        return Ok(crate::resource_server::error::problem(
            response,
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "too many open event streams; poll GET /v1/reservations/{id} instead",
        ));
    };
    let db = state.db.clone();
    let stream = futures_util::stream::unfold(Phase::Start(first), move |phase| {
        // The permit lives as long as the stream.
        let _permit = &permit;
        let (db, subject, id) = (db.clone(), subject.clone(), id.clone());
        async move {
            match phase {
                Phase::Done => None,
                Phase::Start(view) => {
                    let next = if view.status == ReservationStatus::Pending {
                        Phase::Waiting(Instant::now() + STREAM_FOR)
                    } else {
                        Phase::Done
                    };
                    Some((Ok::<_, actix_web::Error>(event(&view)), next))
                }
                Phase::Waiting(deadline) => loop {
                    if Instant::now() >= deadline {
                        return Some((Ok(Bytes::from_static(b"event: timeout\ndata: {}\n\n")), Phase::Done));
                    }
                    tokio::time::sleep(STREAM_POLL).await;
                    match reservations::get(&db, &subject, id.clone()).await {
                        Ok(view) if view.status != ReservationStatus::Pending => {
                            return Some((Ok(event(&view)), Phase::Done));
                        }
                        Ok(_) => {}
                        Err(_) => return None,
                    }
                },
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream))
}
