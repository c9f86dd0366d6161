//! The OpenAPI 3.1 document served at `GET /api/v1/openapi.json`, built from [`OPERATIONS`]:
//! one row per route and method of [`crate::routes::router`]. A test reads the router's
//! route declarations and fails when one is missing here, or here but not routed.

use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Required,
    ResponseBuilder,
};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; a bearer token changes what is shown.
    Anyone,
    /// A bearer access token.
    Bearer,
    /// A `Livegate-Signature` by the payment provider.
    Signed,
}

/// One operation: method, path under `/api/v1`, success status, access, summary.
pub type Operation = (&'static str, &'static str, u16, Access, &'static str);

/// Every operation of the API.
pub const OPERATIONS: &[Operation] = &[
    ("POST", "/users", 201, Access::Anyone, "Register an account"),
    (
        "GET",
        "/users/me",
        200,
        Access::Bearer,
        "The caller's account",
    ),
    ("POST", "/sessions", 201, Access::Anyone, "Log in"),
    (
        "DELETE",
        "/sessions",
        204,
        Access::Anyone,
        "Log out (with the refresh token)",
    ),
    (
        "POST",
        "/sessions/refresh",
        201,
        Access::Anyone,
        "Trade a refresh token for a new pair",
    ),
    ("POST", "/rooms", 201, Access::Bearer, "Create a room"),
    ("GET", "/rooms", 200, Access::Anyone, "List enabled rooms"),
    ("GET", "/rooms/{id}", 200, Access::Anyone, "One room"),
    ("PATCH", "/rooms/{id}", 200, Access::Bearer, "Change a room"),
    (
        "DELETE",
        "/rooms/{id}",
        200,
        Access::Bearer,
        "Disable a room",
    ),
    (
        "POST",
        "/rooms/{id}/stream-key/rotate",
        200,
        Access::Bearer,
        "Rotate the stream key",
    ),
    (
        "POST",
        "/rooms/{id}/kill",
        200,
        Access::Bearer,
        "End what runs in a room",
    ),
    (
        "GET",
        "/rooms/{id}/streams",
        200,
        Access::Anyone,
        "A room's publish sessions",
    ),
    (
        "GET",
        "/rooms/{id}/play-token",
        200,
        Access::Anyone,
        "A play token for the edge",
    ),
    ("GET", "/gifts", 200, Access::Anyone, "The gift catalogue"),
    ("POST", "/gifts", 201, Access::Bearer, "Add a gift (admin)"),
    (
        "PATCH",
        "/gifts/{id}",
        200,
        Access::Bearer,
        "Change a gift (admin)",
    ),
    (
        "POST",
        "/rooms/{id}/gifts",
        201,
        Access::Bearer,
        "Buy a gift (Idempotency-Key)",
    ),
    (
        "GET",
        "/users/me/orders",
        200,
        Access::Bearer,
        "The caller's orders",
    ),
    (
        "GET",
        "/admin/orders",
        200,
        Access::Bearer,
        "Orders for reconciliation (admin)",
    ),
    (
        "POST",
        "/admin/orders/{id}/expire",
        200,
        Access::Bearer,
        "Expire a pending order (admin)",
    ),
    (
        "GET",
        "/rooms/{id}/leaderboard",
        200,
        Access::Anyone,
        "A room's top givers",
    ),
    (
        "POST",
        "/payments/callback",
        200,
        Access::Signed,
        "The payment provider's webhook",
    ),
    ("GET", "/openapi.json", 200, Access::Anyone, "This document"),
    (
        "GET",
        "/rooms/{id}/messages",
        200,
        Access::Anyone,
        "Older chat messages of a room",
    ),
    (
        "GET",
        "/rooms/{id}/presence",
        200,
        Access::Anyone,
        "Who is in a room's chat",
    ),
    (
        "PUT",
        "/rooms/{id}/moderators/{user_id}",
        204,
        Access::Bearer,
        "Make a user a moderator of the room",
    ),
    (
        "DELETE",
        "/rooms/{id}/moderators/{user_id}",
        204,
        Access::Bearer,
        "Take a user's moderator role away",
    ),
    (
        "POST",
        "/rooms/{id}/mutes",
        204,
        Access::Bearer,
        "Mute a user for a time",
    ),
    (
        "DELETE",
        "/rooms/{id}/mutes/{user_id}",
        204,
        Access::Bearer,
        "Lift a mute",
    ),
    (
        "POST",
        "/rooms/{id}/bans",
        204,
        Access::Bearer,
        "Ban a user from the room's chat",
    ),
    (
        "DELETE",
        "/rooms/{id}/bans/{user_id}",
        204,
        Access::Bearer,
        "Lift a ban",
    ),
    (
        "PUT",
        "/rooms/{id}/chat/slow-mode",
        204,
        Access::Bearer,
        "Set or clear the room's slow mode",
    ),
    // The operator console's routes (docs/api.md, "The operator console").
    (
        "POST",
        "/rooms/{id}/kick",
        200,
        Access::Bearer,
        "Drop the live publisher, key unchanged",
    ),
    (
        "POST",
        "/rooms/{id}/chat/messages/{offset}/delete",
        200,
        Access::Bearer,
        "Delete a chat message",
    ),
    (
        "POST",
        "/rooms/{id}/chat/clear",
        200,
        Access::Bearer,
        "Clear the room's chat",
    ),
    (
        "GET",
        "/rooms/{id}/history",
        200,
        Access::Bearer,
        "A room's viewers and bitrate, last hour",
    ),
    (
        "GET",
        "/rooms/{id}/recordings",
        200,
        Access::Bearer,
        "A room's recordings",
    ),
    (
        "GET",
        "/recordings/{id}/download",
        200,
        Access::Anyone,
        "A stored recording (signed link)",
    ),
    (
        "GET",
        "/admin/live",
        200,
        Access::Bearer,
        "The rooms on air",
    ),
    (
        "GET",
        "/admin/live/events",
        200,
        Access::Bearer,
        "The rooms on air, as server-sent events",
    ),
    (
        "GET",
        "/admin/health",
        200,
        Access::Bearer,
        "Checks and numbers of every part (admin)",
    ),
    (
        "GET",
        "/admin/audit",
        200,
        Access::Bearer,
        "The audit log (admin)",
    ),
    (
        "GET",
        "/admin/recordings",
        200,
        Access::Bearer,
        "Recordings and their state",
    ),
    (
        "POST",
        "/admin/recordings/{id}/retry",
        202,
        Access::Bearer,
        "Retry a failed recording",
    ),
    (
        "GET",
        "/admin/payments/callbacks",
        200,
        Access::Bearer,
        "The payment provider's recorded events (admin)",
    ),
    (
        "POST",
        "/admin/orders/{id}/reconcile",
        200,
        Access::Bearer,
        "An order with what is known of its payment (admin)",
    ),
];

fn method(name: &str) -> Option<HttpMethod> {
    Some(match name {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        "PUT" => HttpMethod::Put,
        _ => return None,
    })
}

/// The document.
pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for &(verb, path, status, access, summary) in OPERATIONS {
        let Some(http_method) = method(verb) else {
            continue;
        };
        let operation_id = format!("{} {path}", verb.to_lowercase());
        let mut operation = OperationBuilder::new()
            .operation_id(Some(operation_id))
            .summary(Some(summary))
            .response(
                status.to_string(),
                ResponseBuilder::new().description("success"),
            )
            .response(
                "default",
                ResponseBuilder::new()
                    .description(r#"the error envelope: {"error": {"code", "message", "field"?}}"#),
            );
        if path.contains("{id}") {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name("id")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1)),
                    )),
            );
        }
        match access {
            Access::Bearer => {
                operation =
                    operation.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
            }
            Access::Signed => {
                operation = operation.parameter(
                    ParameterBuilder::new()
                        .name("Livegate-Signature")
                        .parameter_in(ParameterIn::Header)
                        .required(Required::True)
                        .description(Some("t=<unix>,v1=<hex HMAC-SHA256 of \"t.body\">"))
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
                );
            }
            Access::Anyone => {}
        }
        if path == "/rooms/{id}/gifts" {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::True)
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(255)),
                    )),
            );
        }
        paths = paths.path(
            format!("/api/v1{path}"),
            PathItem::new(http_method, operation),
        );
    }
    let bearer = SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .build(),
    );
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("livegate room API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Accounts, rooms, play tokens, gifts and payments.")),
        )
        .paths(paths)
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme("bearer", bearer)
                .build(),
        ))
        .build()
}

/// `GET /api/v1/openapi.json`.
pub async fn serve() -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match document().to_json() {
        Ok(json) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "the OpenAPI document could not be encoded");
            crate::error::ApiError::internal().into_response()
        }
    }
}
