//! Every way ingest refuses a request, and the one place they become responses.
//!
//! Clients get a stable `code` and a short message; never a secret, a body or an internal detail.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use thiserror::Error;

use super::verify::SignatureError;
use crate::journal::JournalError;

#[derive(Debug, Error)]
pub enum IngestError {
    #[error("no source named {0:?} is configured")]
    UnknownSource(String),
    #[error("source {0:?} is disabled: its secret is not set")]
    SourceDisabled(String),
    #[error("content type {0:?} is not accepted here")]
    UnsupportedMediaType(String),
    #[error("body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("malformed body: {0}")]
    MalformedBody(String),
    #[error("no event id: expected it in the {0}")]
    MissingEventId(String),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("organization id is not on this source's allow-list")]
    OrganizationNotAllowed,
    #[error("the event could not be stored")]
    Store(#[from] JournalError),
}

impl IngestError {
    pub fn status(&self) -> StatusCode {
        match self {
            IngestError::UnknownSource(_) => StatusCode::NOT_FOUND,
            IngestError::SourceDisabled(_) | IngestError::Store(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            IngestError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::MalformedBody(_) | IngestError::MissingEventId(_) => {
                StatusCode::BAD_REQUEST
            }
            IngestError::Signature(_) => StatusCode::UNAUTHORIZED,
            IngestError::OrganizationNotAllowed => StatusCode::FORBIDDEN,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            IngestError::UnknownSource(_) => "unknown_source",
            IngestError::SourceDisabled(_) => "source_disabled",
            IngestError::UnsupportedMediaType(_) => "unsupported_media_type",
            IngestError::BodyTooLarge(_) => "body_too_large",
            IngestError::MalformedBody(_) => "malformed_body",
            IngestError::MissingEventId(_) => "missing_event_id",
            IngestError::Signature(error) => error.code(),
            IngestError::OrganizationNotAllowed => "organization_not_allowed",
            IngestError::Store(_) => "store_unavailable",
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code(), "message": self.to_string() } });
        (self.status(), Json(body)).into_response()
    }
}
