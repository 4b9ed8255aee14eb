//! Client API v2 (`/api/v2/...`): one module per endpoint group.

pub mod counter;
pub mod manifest;
pub mod quote;
pub mod recover;
pub mod secrets;
pub mod sign_quote;
pub mod status;
pub mod update;
pub mod update_manifest;

use std::sync::Arc;

use axum::Router;

use crate::core::Core;

/// The v2 routes.
pub fn routes() -> Router<Arc<Core>> {
    Router::new()
        .merge(status::routes())
        .merge(manifest::routes())
        .merge(quote::routes())
        .merge(recover::routes())
        .merge(secrets::routes())
        .merge(update::routes())
        .merge(update_manifest::routes())
        .merge(sign_quote::routes())
        .merge(counter::routes())
}
