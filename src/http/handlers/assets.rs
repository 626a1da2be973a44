//! Static assets (CSS, JS, images) compiled into the binary, so oxidp is one file
//! to ship. Served with a strong ETag and a day of caching.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "css/oxidp.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../../static/css/oxidp.css"),
    },
    Asset {
        path: "js/form-post.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../static/js/form-post.js"),
    },
    Asset {
        path: "js/session-timer.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../static/js/session-timer.js"),
    },
    Asset {
        path: "js/webauthn.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../static/js/webauthn.js"),
    },
    Asset {
        path: "img/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../../static/img/favicon.svg"),
    },
];

fn etags() -> &'static Vec<String> {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.body))[..16]))
            .collect()
    })
}

pub async fn serve(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let Some(index) = ASSETS.iter().position(|a| a.path == path.as_str()) else {
        return crate::http::error::html_error(
            actix_web::http::StatusCode::NOT_FOUND,
            "Page not found",
            "There is nothing at this address.",
        );
    };
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let cache = (header::CACHE_CONTROL, "public, max-age=86400");
    if req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return HttpResponse::NotModified()
            .insert_header(cache)
            .insert_header((header::ETAG, etag.as_str()))
            .finish();
    }
    HttpResponse::Ok()
        .insert_header(cache)
        .insert_header((header::ETAG, etag.as_str()))
        .content_type(asset.content_type)
        .body(asset.body)
}
