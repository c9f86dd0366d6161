//! The one error envelope every refusal and failure is answered with:
//! `{"error": {"code": "…", "message": "…", "field": "…"}}`. A 4xx says what was wrong and
//! names the field; a 5xx says only that it failed (the cause is logged, once, here).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use livegate_core::bus::BusError;
use livegate_core::db::DbError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A refusal or failure, answered as the error envelope.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    /// The `WWW-Authenticate` challenge of a 401.
    challenge: Option<&'static str>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            challenge: None,
        }
    }

    /// Names the request field at fault.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400 `invalid_field`: `field` is wrong as `message` says.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_field", message).field(field)
    }

    /// 401: no valid credentials; `error` is the RFC 6750 error code of the challenge.
    pub fn unauthorized(error: &'static str, message: impl Into<String>) -> Self {
        let mut err = Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        err.challenge = Some(error);
        err
    }

    /// 403: authenticated, but not allowed.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 for `what` (`room`, `user`).
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 429: too many attempts for now.
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
    }

    /// 503: a dependency cannot be reached.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service is temporarily unavailable, try again",
        )
    }

    /// 500: something failed that the client cannot fix. The cause is logged, not shown.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request failed on the server",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Envelope {
            error: Body {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        // For the audit log: what was refused and why, without reading the body back.
        response
            .extensions_mut()
            .insert(crate::audit::Detail(format!(
                "{}: {}",
                self.code, self.message
            )));
        if let Some(error) = self.challenge {
            let challenge = format!("Bearer realm=\"livegate\", error=\"{error}\"");
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        if err.is_unavailable() {
            tracing::warn!(error = %err, "database unavailable");
            Self::unavailable()
        } else {
            tracing::error!(error = %err, cause = ?std::error::Error::source(&err), "database query failed");
            Self::internal()
        }
    }
}

impl From<BusError> for ApiError {
    fn from(err: BusError) -> Self {
        tracing::warn!(error = %err, "bus unavailable");
        Self::unavailable()
    }
}

/// The field a deserialization message names: the path axum puts in front
/// (`role: unknown variant …`), else the field serde quotes (``missing field `title` ``).
fn named_field(message: &str) -> Option<String> {
    if let Some((path, _)) = message.split_once(": ") {
        if !path.is_empty() && !path.contains([' ', '`']) {
            return Some(path.to_owned());
        }
    }
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

/// A JSON body, refused with the envelope (and the field, where serde names one).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(body_rejection(&rejection)),
        }
    }
}

fn body_rejection(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(err) => {
            // The inner serde message, without axum's prefix.
            let message =
                std::error::Error::source(err).map_or_else(|| err.body_text(), ToString::to_string);
            let mut error =
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", message.clone());
            if let Some(field) = named_field(&message) {
                error = error.field(field);
            }
            error
        }
        JsonRejection::JsonSyntaxError(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the body is not valid JSON",
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON (Content-Type: application/json)",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the body is larger than the server accepts",
        ),
        _ => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the body could not be read",
        ),
    }
}

/// Path parameters, refused with the envelope.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(path_rejection(&rejection)),
        }
    }
}

fn path_rejection(rejection: &PathRejection) -> ApiError {
    match rejection {
        PathRejection::FailedToDeserializePathParams(err) => {
            let field = match err.kind() {
                axum::extract::path::ErrorKind::ParseErrorAtKey { key, .. }
                | axum::extract::path::ErrorKind::InvalidUtf8InPathParam { key } => key.clone(),
                _ => "id".to_owned(),
            };
            ApiError::invalid(&field, "must be a positive integer id")
        }
        other => {
            // A route whose pattern lacks the parameter its handler reads: a bug of ours.
            tracing::error!(error = %other.body_text(), "path parameters missing");
            ApiError::internal()
        }
    }
}

/// Query parameters, refused with the envelope.
#[derive(Debug, Clone, Copy)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

fn query_rejection(rejection: &QueryRejection) -> ApiError {
    let message = match rejection {
        QueryRejection::FailedToDeserializeQueryString(err) => {
            std::error::Error::source(err).map_or_else(|| err.body_text(), ToString::to_string)
        }
        other => other.body_text(),
    };
    let mut error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", message.clone());
    if let Some(field) = named_field(&message) {
        error = error.field(field);
    }
    error
}

/// The answer to a request no route matches.
pub async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// The answer to a route called with a method it does not have.
pub fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}
