//! `Status` objects: the body of every error response and of watch ERROR events.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

use super::patch::PatchError;
use super::selector::SelectorError;
use super::store::StoreError;

/// An error answer: HTTP code, apimachinery reason and message.
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details.name` and `details.kind` (the plural, as the apiserver writes it).
    pub details: Option<(String, String)>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NotFound", message)
    }

    /// The answer of the `Error(code)` fault mode.
    pub fn injected(code: u16) -> Self {
        let reason = match code {
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "Unknown",
        };
        Self::new(code, reason, format!("injected fault: HTTP {code}"))
    }

    fn with_details(mut self, name: &str, plural: &str) -> Self {
        self.details = Some((name.to_owned(), plural.to_owned()));
        self
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some((name, kind)) = &self.details {
            status["details"] = json!({"name": name, "kind": kind});
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(self.to_status())).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::NotFound { plural, name } => {
                Self::new(404, "NotFound", message).with_details(&name, plural)
            }
            StoreError::AlreadyExists { plural, name } => {
                Self::new(409, "AlreadyExists", message).with_details(&name, plural)
            }
            StoreError::Conflict { plural, name, .. } => {
                Self::new(409, "Conflict", message).with_details(&name, plural)
            }
            // The apiserver's own reason for a too old resourceVersion.
            StoreError::Expired { .. } => Self::new(410, "Expired", message),
            StoreError::UnknownType { .. } => Self::not_found(message),
            StoreError::MissingName { .. } | StoreError::Invalid(_) => {
                Self::new(422, "Invalid", message)
            }
            StoreError::Serialize(_) | StoreError::Deserialize(_) => {
                Self::new(500, "InternalError", message)
            }
        }
    }
}

impl From<SelectorError> for ApiError {
    fn from(e: SelectorError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<PatchError> for ApiError {
    fn from(e: PatchError) -> Self {
        match e {
            PatchError::UnsupportedType(_) => Self::new(415, "UnsupportedMediaType", e.to_string()),
            PatchError::JsonPatch(_) => Self::new(422, "Invalid", format!("{e}: {e:?}")),
            PatchError::Malformed { .. } => Self::bad_request(e.to_string()),
        }
    }
}
