//! The one error envelope every refusal and failure is answered with:
//! `{"error": {"code": "…", "message": "…", "field": "…"}}`. A 4xx says what was wrong and
//! names the field; a 5xx says only that it failed (the cause is logged, once, here).

use axum::body::Bytes;
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

/// The body of every refusal and failure.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct Envelope<'a> {
    error: Body<'a>,
}

/// What went wrong.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorDetail)]
struct Body<'a> {
    /// Machine-readable: `invalid_field`, `invalid_body`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `rate_limited`, `unavailable`, … (see docs/api.md).
    code: &'a str,
    /// For people; a 5xx says only that the request failed.
    message: &'a str,
    /// The request field at fault (a body field, a parameter or a header), when one is.
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
        match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(from_json(value)?)),
            Err(rejection) => Err(body_rejection(&rejection)),
        }
    }
}

/// Why a JSON body is not the `T` a route takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not JSON at all.
    #[error("the body is not valid JSON")]
    Syntax,
    /// JSON, but not an object.
    #[error("the body must be a JSON object")]
    NotAnObject,
    /// An object, but a field is missing, unknown or of the wrong type (serde's message,
    /// after the field's path).
    #[error("{0}")]
    Data(String),
}

impl From<BodyError> for ApiError {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::Data(message) => {
                let mut error =
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", message.clone());
                if let Some(field) = named_field(&message) {
                    error = error.field(field);
                }
                error
            }
            other => ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", other.to_string()),
        }
    }
}

/// `bytes` as the JSON object `T`, as [`from_json`] reads it.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let value = serde_json::from_slice(bytes).map_err(|_| BodyError::Syntax)?;
    from_json(value)
}

/// `value` as the JSON object `T`. Refuses what serde alone would take for a struct but JSON
/// Schema's `object` is not (an array of its fields), and takes what JSON Schema's
/// `integer` is but serde would refuse for an integer field (`5.0`, `5e2`).
pub fn from_json<T: DeserializeOwned>(mut value: serde_json::Value) -> Result<T, BodyError> {
    if !value.is_object() {
        return Err(BodyError::NotAnObject);
    }
    integral_numbers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|err| BodyError::Data(err.to_string()))
}

/// Rewrites floats without a fractional part that fit an `i64` or `u64` as integers.
fn integral_numbers(value: &mut serde_json::Value) {
    use serde_json::Value;
    // 2^63 and 2^64: exact as floats.
    const I64_END: f64 = 9_223_372_036_854_775_808.0;
    const U64_END: f64 = 18_446_744_073_709_551_616.0;
    match value {
        Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            if float.fract() != 0.0 {
                return;
            }
            if (-I64_END..I64_END).contains(&float) {
                *value = Value::from(float as i64);
            } else if (0.0..U64_END).contains(&float) {
                *value = Value::from(float as u64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

fn body_rejection(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonSyntaxError(_) | JsonRejection::JsonDataError(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the body is not valid JSON",
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON (Content-Type: application/json)",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => body_too_large(),
        _ => unreadable_body(),
    }
}

fn body_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "the body is larger than the server accepts",
    )
}

fn unreadable_body() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_body",
        "the body could not be read",
    )
}

/// The body as it came, for routes that hash or verify it before parsing it (with
/// [`parse_json`]); refused with the envelope.
#[derive(Debug, Clone, Default)]
pub struct RawBody(pub Bytes);

impl<S> FromRequest<S> for RawBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(body_too_large())
            }
            Err(_) => Err(unreadable_body()),
        }
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

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        count: u32,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        id: i64,
    }

    #[test]
    fn integral_floats_are_integers() {
        let outer: Outer = from_json(json!({"count": 3.0, "inner": {"id": -2e3}})).unwrap();
        assert_eq!(
            outer,
            Outer {
                count: 3,
                inner: Some(Inner { id: -2000 })
            }
        );
        let err = from_json::<Outer>(json!({"count": 3.5})).unwrap_err();
        let err = ApiError::from(err);
        assert_eq!(
            (err.code(), err.field.as_deref()),
            ("invalid_field", Some("count"))
        );
        let err = ApiError::from(
            from_json::<Outer>(json!({"count": 1, "inner": {"id": 0.5}})).unwrap_err(),
        );
        assert_eq!(err.field.as_deref(), Some("inner.id"));
    }

    #[test]
    fn only_objects_are_bodies() {
        assert_eq!(from_json::<Outer>(json!([1])), Err(BodyError::NotAnObject));
        assert_eq!(parse_json::<Outer>(b"{"), Err(BodyError::Syntax));
        let err = ApiError::from(parse_json::<Outer>(br#"{"count": 1, "extra": 2}"#).unwrap_err());
        assert_eq!(
            (err.code(), err.field.as_deref()),
            ("invalid_field", Some("extra"))
        );
        let err = ApiError::from(parse_json::<Outer>(b"{}").unwrap_err());
        assert_eq!(err.field.as_deref(), Some("count"));
    }
}
