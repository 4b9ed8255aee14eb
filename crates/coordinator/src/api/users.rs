//! Helpers of the endpoints that act for a user: the proven leaf certificate of the request,
//! and the mapping of refused user operations to JSend (`401 fail` for authentication and
//! authorisation, the core's classes otherwise).

use axum::http::Extensions;

use crate::core::update::UserOpError;
use crate::jsend::ApiError;
use crate::server::PeerCertificate;

/// The DER of the leaf certificate the client proved in the handshake, if any.
pub(crate) fn leaf(extensions: &Extensions) -> Option<Vec<u8>> {
    extensions
        .get::<PeerCertificate>()
        .and_then(|peer| peer.0.as_ref())
        .map(|cert| cert.as_ref().to_vec())
}

impl From<UserOpError> for ApiError {
    fn from(error: UserOpError) -> Self {
        match error {
            UserOpError::Auth(auth) => {
                tracing::info!(reason = %auth, "user request refused");
                ApiError::unauthorized(auth.to_string())
            }
            UserOpError::Core(core) => ApiError::from(core),
        }
    }
}

/// Runs a user operation on the blocking pool (they fsync and generate keys).
pub(crate) async fn run<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, UserOpError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(error) => {
            tracing::error!(%error, "user operation panicked");
            Err(ApiError::internal("internal error"))
        }
    }
}
