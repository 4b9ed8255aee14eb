//! `GET /api/v2/status`: the state number and message. In simulation the message says so.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use crate::core::Core;
use crate::jsend::success;

/// The routes of this group.
pub fn routes() -> Router<Arc<Core>> {
    Router::new().route("/api/v2/status", get(status))
}

/// The status as `(code, message)`, shared with v1.
pub(crate) fn current(core: &Core) -> (u8, String) {
    let state = core.state();
    let mut message = state.message();
    if let Some(note) = core.hsm().note() {
        message.push(' ');
        message.push_str(&note);
    }
    if core.enclave().is_simulation() {
        message.push_str(" (insecure simulation mode: no TEE protects this Coordinator)");
    }
    (state.code(), message)
}

async fn status(State(core): State<Arc<Core>>) -> Response {
    let (code, message) = current(&core);
    success(json!({ "code": code, "message": message }))
}
