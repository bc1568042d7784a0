//! CSS and JavaScript compiled into the binary, so the panel works on a closed network:
//! no CDN, no files to deploy beside the executable. Fonts are the system's own.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../static/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../static/app.js"),
    },
    Asset {
        name: "sims.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../static/sims.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../static/favicon.svg"),
    },
];

/// A short hash of every asset, appended as `?v=` so browsers may cache them for long and
/// still fetch a new build's assets at once.
pub static VERSION: LazyLock<String> = LazyLock::new(|| {
    // FNV-1a: stable across builds and platforms, unlike std's SipHash keys.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for asset in ASSETS {
        for b in asset.body.bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{:08x}", hash as u32)
});

/// `GET /static/{name}`, for any router state.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/static/{name}", get(serve_asset))
}

async fn serve_asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "public, max-age=604800"),
            ],
            asset.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
