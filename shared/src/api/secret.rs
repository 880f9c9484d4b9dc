use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use tracing::{error, info, instrument};

use super::{ApiError, ApiResponse, json_response};
use crate::app::App;
use crate::domain::Owner;

/// The body of `GET /webhook-secret`.
#[derive(Debug, Serialize)]
struct OwnerSecrets<'a> {
    owner: &'a str,
    secrets: Vec<String>,
}

/// `GET /webhook-secret`: the Standard Webhooks secrets the caller's receivers verify its
/// deliveries and callbacks with, newest first (two during a rotation of the stack's secret).
/// Each is derived for the caller alone, so it verifies nothing signed for another owner.
#[instrument(skip_all)]
pub async fn webhook_secret(app: &App, owner: &Owner) -> ApiResponse {
    let keys = match app.signing.keys().await {
        Ok(Some(keys)) => keys,
        Ok(None) => return ApiError::NoSigningSecret.into_response(),
        Err(problem) => {
            error!(error = %problem, "the webhook signing secret could not be read");
            return ApiError::NoSigningSecret.into_response();
        }
    };
    let secrets = keys.for_owner(owner).secrets();
    info!(
        secrets = secrets.len(),
        "webhook secret handed to its owner"
    );
    let mut response = json_response(
        StatusCode::OK,
        &OwnerSecrets {
            owner: owner.as_str(),
            secrets,
        },
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
