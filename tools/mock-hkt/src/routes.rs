//! HTTP surface: the gateway endpoint HKT exposes, a health check, and the `/mock/*` control API.

use std::sync::Arc;

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::config::MockConfig;
use crate::state::{Answer, MockState};
use crate::store::Incoming;

/// The path HKT serves its HTTP SMS interface on.
pub const GATEWAY_PATH: &str = "/gateway/gateway.jsp";

/// All routes of the mock, over the given state.
pub fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route(GATEWAY_PATH, post(submit_sms))
        .route("/health", get(|| async { "OK" }))
        .route("/mock/received", get(list_received).delete(clear_received))
        .route(
            "/mock/config",
            get(show_config).post(replace_config).delete(reset),
        )
        .route("/mock/reset", post(reset))
        .route("/mock/stats", get(show_stats))
        .with_state(state)
}

/// The gateway's form. Fields are optional here so a missing one is answered 400 and still
/// recorded, instead of being turned away by the extractor before the mock sees it.
#[derive(Deserialize)]
struct GatewayForm {
    application: Option<String>,
    mrt: Option<String>,
    sender: Option<String>,
    msg_utf8: Option<String>,
}

async fn submit_sms(
    State(state): State<Arc<MockState>>,
    form: Result<Form<GatewayForm>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => {
            state.record_rejected(Incoming::default());
            return (StatusCode::BAD_REQUEST, rejection.body_text()).into_response();
        }
    };
    let missing = [
        ("application", &form.application),
        ("mrt", &form.mrt),
        ("sender", &form.sender),
        ("msg_utf8", &form.msg_utf8),
    ]
    .into_iter()
    .find(|(_, value)| is_blank(value))
    .map(|(name, _)| name);
    let sms = Incoming {
        application: form.application.unwrap_or_default(),
        mrt: form.mrt.unwrap_or_default(),
        sender: form.sender.unwrap_or_default(),
        msg_utf8: form.msg_utf8.unwrap_or_default(),
    };
    if let Some(field) = missing {
        state.record_rejected(sms);
        return (StatusCode::BAD_REQUEST, format!("Missing field: {field}")).into_response();
    }

    let (answer, latency) = state.admit(sms);
    if answer == Answer::Hang {
        // Held until the server stops; a client that gives up first drops the connection,
        // which ends this future, so nothing piles up while hang stays on.
        state.released().await;
    } else if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    respond(answer)
}

fn respond(answer: Answer) -> Response {
    match answer {
        Answer::Ok => (StatusCode::OK, "OK").into_response(),
        Answer::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized").into_response(),
        // Only reached when the server stops while the request is held.
        Answer::Hang => text(StatusCode::SERVICE_UNAVAILABLE).into_response(),
        Answer::Fail {
            status,
            retry_after_secs,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = text(status).into_response();
            if let Some(secs) = retry_after_secs {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
    }
}

/// A status with its reason phrase as the body, like a plain servlet error page.
fn text(status: StatusCode) -> (StatusCode, &'static str) {
    (status, status.canonical_reason().unwrap_or("Error"))
}

/// The real gateway rejects blank fields too, so an empty value counts as missing.
fn is_blank(value: &Option<String>) -> bool {
    value.as_deref().is_none_or(str::is_empty)
}

#[derive(Deserialize)]
struct ReceivedQuery {
    mrt: Option<String>,
}

async fn list_received(
    State(state): State<Arc<MockState>>,
    Query(query): Query<ReceivedQuery>,
) -> Response {
    Json(state.received(query.mrt.as_deref())).into_response()
}

async fn clear_received(State(state): State<Arc<MockState>>) -> StatusCode {
    state.clear();
    StatusCode::NO_CONTENT
}

async fn show_config(State(state): State<Arc<MockState>>) -> Json<MockConfig> {
    Json(state.config())
}

async fn replace_config(
    State(state): State<Arc<MockState>>,
    body: Result<Json<MockConfig>, JsonRejection>,
) -> Response {
    let config = match body {
        Ok(Json(config)) => config,
        Err(rejection) => return bad_request(rejection.body_text()),
    };
    match state.set_config(config) {
        Ok(()) => Json(state.config()).into_response(),
        Err(err) => bad_request(err.to_string()),
    }
}

async fn reset(State(state): State<Arc<MockState>>) -> Json<MockConfig> {
    state.reset();
    Json(state.config())
}

async fn show_stats(State(state): State<Arc<MockState>>) -> Response {
    Json(state.stats()).into_response()
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}
