//! The OpenAPI 3.1 document served at `GET /api/v1/openapi.json`, built from [`OPERATIONS`]:
//! one entry per route and method of [`crate::routes::router`], naming the Rust types of its
//! body, query and answer, whose `ToSchema`/`IntoParams` derives are the schemas. A test reads
//! the router's route declarations and fails when one is missing here, or here but not
//! routed; the contract test runs schemathesis against the binary with this document.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{
    HttpMethod, Operation as PathOperation, OperationBuilder, Parameter, ParameterBuilder,
    ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr, Required,
    ResponseBuilder,
};
use utoipa::{IntoParams, ToSchema};

use crate::chat::{history, moderation, presence};
use crate::console::snapshot::LiveSnapshot;
use crate::error::Envelope;
use crate::payments::callback::Event;
use crate::payments::idempotency;
use crate::routes::admin::{audit, callbacks, health, recordings};
use crate::routes::rooms::cover;
use crate::routes::rooms::history as room_history;
use crate::routes::rooms::kick;
use crate::routes::rooms::manage::{CreateRoom, PatchRoom, RoomAfterKick, RoomWithKey};
use crate::routes::rooms::read::{ListQuery as RoomsQuery, StreamsQuery};
use crate::routes::rooms::view::{Page, RoomView, StreamView};
use crate::routes::sessions::{Login, RefreshBody, SessionView};
use crate::routes::users::{Register, UserView};
use crate::routes::{gifts, orders, payments, play};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; a bearer token changes what is shown (and one that is not valid is refused).
    Anyone,
    /// Anyone; no token is read.
    Public,
    /// A bearer access token.
    Bearer,
    /// A `Livegate-Signature` by the payment provider.
    Signed,
}

/// Named schemas an operation refers to, collected into the document's components.
type Components = Vec<(String, RefOr<Schema>)>;
/// A body's schema: registers what it refers to and returns the reference to use.
type SchemaOf = fn(&mut Components) -> RefOr<Schema>;
/// Query parameters.
type ParamsOf = fn() -> Vec<Parameter>;

/// One operation: method, path under `/api/v1`, success status, access, summary, and the
/// types of its JSON body, query and success answer, with the refusals particular to it.
/// The refusals every operation of its kind has are added by [`document`]: 400 for bad
/// input, 401 for a bad token, 404 for a path naming nothing, 413 and 415 for bodies, 503.
#[derive(Clone, Copy)]
pub struct Operation {
    /// `GET`, `POST`, `PATCH`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// The route under `/api/v1`, as the router declares it.
    pub path: &'static str,
    /// The success status.
    pub status: u16,
    /// Who may call it.
    pub access: Access,
    /// One line.
    pub summary: &'static str,
    body: Option<SchemaOf>,
    query: Option<ParamsOf>,
    answer: Option<SchemaOf>,
    /// The success answer's media type.
    answer_media: &'static str,
    refusals: &'static [u16],
    idempotency_key: bool,
}

/// An operation without bodies, parameters or refusals of its own; add them with the
/// builder methods.
pub const fn op(
    method: &'static str,
    path: &'static str,
    status: u16,
    access: Access,
    summary: &'static str,
) -> Operation {
    Operation {
        method,
        path,
        status,
        access,
        summary,
        body: None,
        query: None,
        answer: None,
        answer_media: "application/json",
        refusals: &[],
        idempotency_key: false,
    }
}

impl Operation {
    /// Takes a JSON body of type `T`.
    pub const fn body<T: ToSchema>(mut self) -> Self {
        self.body = Some(named::<T>);
        self
    }

    /// Takes the query parameters of `T`.
    pub const fn query<T: IntoParams>(mut self) -> Self {
        self.query = Some(query_of::<T>);
        self
    }

    /// Answers success with a JSON `T`.
    pub const fn answers<T: ToSchema>(mut self) -> Self {
        self.answer = Some(named::<T>);
        self
    }

    /// Answers success with the JSON `schema` returns.
    pub const fn answers_with(mut self, schema: SchemaOf) -> Self {
        self.answer = Some(schema);
        self
    }

    /// Answers success with a `text/event-stream` whose events carry a JSON `T` each.
    pub const fn answers_events<T: ToSchema>(mut self) -> Self {
        self.answer = Some(events_of::<T>);
        self.answer_media = "text/event-stream";
        self
    }

    /// Answers success with a file of `media` type.
    pub const fn answers_file(mut self, media: &'static str) -> Self {
        self.answer = Some(file);
        self.answer_media = media;
        self
    }

    /// Refuses with these statuses too (403, 409, 422, 429, or 401 for wrong credentials).
    pub const fn refuses(mut self, statuses: &'static [u16]) -> Self {
        self.refusals = statuses;
        self
    }

    /// Requires an `Idempotency-Key` header, and may answer a replay.
    pub const fn idempotent(mut self) -> Self {
        self.idempotency_key = true;
        self
    }
}

fn named<T: ToSchema>(components: &mut Components) -> RefOr<Schema> {
    T::schemas(components);
    components.push((T::name().into_owned(), T::schema()));
    Ref::from_schema_name(T::name()).into()
}

/// Server-sent events, each `data:` a JSON `T` (registered, to be read by its name).
fn events_of<T: ToSchema>(components: &mut Components) -> RefOr<Schema> {
    named::<T>(components);
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!(
            "Server-sent events: `event: snapshot` with `data:` a JSON `{}` (first at once, \
             then on every change), keep-alive comments between; it ends when the service \
             shuts down",
            T::name()
        )))
        .into()
}

/// A file's bytes.
fn file(_: &mut Components) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .content_media_type("application/octet-stream")
        .into()
}

fn query_of<T: IntoParams>() -> Vec<Parameter> {
    T::into_params(|| Some(ParameterIn::Query))
}

/// Every operation of the API.
pub const OPERATIONS: &[Operation] = &[
    op("POST", "/users", 201, Access::Anyone, "Register an account")
        .body::<Register>()
        .answers::<UserView>()
        .refuses(&[403, 409]),
    op(
        "GET",
        "/users/me",
        200,
        Access::Bearer,
        "The caller's account",
    )
    .answers::<UserView>(),
    op("POST", "/sessions", 201, Access::Public, "Log in")
        .body::<Login>()
        .answers::<SessionView>()
        .refuses(&[401, 429]),
    op(
        "DELETE",
        "/sessions",
        204,
        Access::Public,
        "Log out (with the refresh token)",
    )
    .body::<RefreshBody>(),
    op(
        "POST",
        "/sessions/refresh",
        200,
        Access::Public,
        "Trade a refresh token for a new pair",
    )
    .body::<RefreshBody>()
    .answers::<SessionView>()
    .refuses(&[401]),
    op("POST", "/rooms", 201, Access::Bearer, "Create a room")
        .body::<CreateRoom>()
        .answers::<RoomWithKey>()
        .refuses(&[403, 409]),
    op("GET", "/rooms", 200, Access::Anyone, "List enabled rooms")
        .query::<RoomsQuery>()
        .answers::<Page<RoomView>>(),
    op("GET", "/rooms/{id}", 200, Access::Anyone, "One room").answers::<RoomView>(),
    op("PATCH", "/rooms/{id}", 200, Access::Bearer, "Change a room")
        .body::<PatchRoom>()
        .answers::<RoomView>()
        .refuses(&[403]),
    op(
        "DELETE",
        "/rooms/{id}",
        200,
        Access::Bearer,
        "Disable a room",
    )
    .answers::<RoomAfterKick>()
    .refuses(&[403]),
    op(
        "POST",
        "/rooms/{id}/stream-key/rotate",
        200,
        Access::Bearer,
        "Rotate the stream key",
    )
    .answers::<RoomWithKey>()
    .refuses(&[403, 409]),
    op(
        "POST",
        "/rooms/{id}/kill",
        200,
        Access::Bearer,
        "End what runs in a room (admin)",
    )
    .answers::<RoomAfterKick>()
    .refuses(&[403]),
    op(
        "GET",
        "/rooms/{id}/streams",
        200,
        Access::Anyone,
        "A room's publish sessions",
    )
    .query::<StreamsQuery>()
    .answers::<Page<StreamView>>(),
    op(
        "GET",
        "/rooms/{id}/cover",
        200,
        Access::Anyone,
        "A room's cover picture (or a redirect to its URL)",
    )
    .query::<cover::CoverQuery>()
    .answers_file("image/jpeg"),
    op(
        "GET",
        "/rooms/{id}/play-token",
        200,
        Access::Anyone,
        "A play token for the edge",
    )
    .answers::<play::PlayToken>()
    .refuses(&[403, 429]),
    op("GET", "/gifts", 200, Access::Anyone, "The gift catalogue")
        .query::<gifts::ListQuery>()
        .answers::<gifts::GiftList>()
        .refuses(&[403]),
    op("POST", "/gifts", 201, Access::Bearer, "Add a gift (admin)")
        .body::<gifts::NewGift>()
        .answers::<gifts::GiftView>()
        .refuses(&[403, 409]),
    op(
        "PATCH",
        "/gifts/{id}",
        200,
        Access::Bearer,
        "Change a gift (admin)",
    )
    .body::<gifts::GiftPatch>()
    .answers::<gifts::GiftView>()
    .refuses(&[403, 409]),
    op(
        "POST",
        "/rooms/{id}/gifts",
        201,
        Access::Bearer,
        "Buy a gift (Idempotency-Key)",
    )
    .body::<orders::Purchase>()
    .answers::<orders::OrderView>()
    .idempotent()
    .refuses(&[409, 422]),
    op(
        "GET",
        "/users/me/orders",
        200,
        Access::Bearer,
        "The caller's orders",
    )
    .query::<orders::MineQuery>()
    .answers::<orders::OrderPage>(),
    op(
        "GET",
        "/admin/orders",
        200,
        Access::Bearer,
        "Orders for reconciliation (admin)",
    )
    .query::<orders::AdminQuery>()
    .answers::<orders::OrderPage>()
    .refuses(&[403]),
    op(
        "POST",
        "/admin/orders/{id}/expire",
        200,
        Access::Bearer,
        "Expire a pending order (admin)",
    )
    .answers::<orders::OrderView>()
    .refuses(&[403, 409]),
    op(
        "GET",
        "/rooms/{id}/leaderboard",
        200,
        Access::Anyone,
        "A room's top givers",
    )
    .query::<payments::BoardQuery>()
    .answers::<payments::Board>(),
    op(
        "POST",
        "/payments/callback",
        200,
        Access::Signed,
        "The payment provider's webhook",
    )
    .body::<Event>()
    .answers::<payments::Accepted>()
    .refuses(&[422]),
    op("GET", "/openapi.json", 200, Access::Public, "This document").answers_with(openapi_document),
    op(
        "GET",
        "/rooms/{id}/messages",
        200,
        Access::Anyone,
        "Older chat messages of a room",
    )
    .query::<history::HistoryQuery>()
    .answers::<history::Page>(),
    op(
        "GET",
        "/rooms/{id}/presence",
        200,
        Access::Anyone,
        "Who is in a room's chat",
    )
    .answers::<presence::Presence>(),
    op(
        "PUT",
        "/rooms/{id}/moderators/{user_id}",
        204,
        Access::Bearer,
        "Make a user a moderator of the room",
    )
    .refuses(&[403]),
    op(
        "DELETE",
        "/rooms/{id}/moderators/{user_id}",
        204,
        Access::Bearer,
        "Take a user's moderator role away",
    )
    .refuses(&[403]),
    op(
        "POST",
        "/rooms/{id}/mutes",
        204,
        Access::Bearer,
        "Mute a user for a time",
    )
    .body::<moderation::SanctionBody>()
    .refuses(&[403, 409]),
    op(
        "DELETE",
        "/rooms/{id}/mutes/{user_id}",
        204,
        Access::Bearer,
        "Lift a mute",
    )
    .refuses(&[403]),
    op(
        "POST",
        "/rooms/{id}/bans",
        204,
        Access::Bearer,
        "Ban a user from the room's chat",
    )
    .body::<moderation::SanctionBody>()
    .refuses(&[403, 409]),
    op(
        "DELETE",
        "/rooms/{id}/bans/{user_id}",
        204,
        Access::Bearer,
        "Lift a ban",
    )
    .refuses(&[403]),
    op(
        "PUT",
        "/rooms/{id}/chat/slow-mode",
        204,
        Access::Bearer,
        "Set or clear the room's slow mode",
    )
    .body::<moderation::SlowModeBody>()
    .refuses(&[403]),
    // The operator console's (docs/api.md, "The operator console").
    op(
        "POST",
        "/rooms/{id}/kick",
        200,
        Access::Bearer,
        "Drop the live publisher, key unchanged",
    )
    .answers::<kick::KickAnswer>()
    .refuses(&[403]),
    op(
        "POST",
        "/rooms/{id}/chat/messages/{offset}/delete",
        200,
        Access::Bearer,
        "Delete a chat message",
    )
    .answers::<moderation::Removed>()
    .refuses(&[403]),
    op(
        "POST",
        "/rooms/{id}/chat/clear",
        200,
        Access::Bearer,
        "Clear the room's chat",
    )
    .answers::<moderation::Removed>()
    .refuses(&[403]),
    op(
        "GET",
        "/rooms/{id}/history",
        200,
        Access::Bearer,
        "A room's viewers and bitrate, last hour",
    )
    .query::<room_history::HistoryQuery>()
    .answers::<room_history::History>()
    .refuses(&[403]),
    op(
        "GET",
        "/rooms/{id}/recordings",
        200,
        Access::Bearer,
        "A room's recordings",
    )
    .query::<recordings::RoomRecordingsQuery>()
    .answers::<Page<recordings::RecordingView>>()
    .refuses(&[403]),
    op(
        "GET",
        "/recordings/{id}/download",
        200,
        Access::Public,
        "A stored recording (signed link)",
    )
    .query::<recordings::DownloadQuery>()
    .answers_file("video/mp4")
    .refuses(&[403]),
    op(
        "GET",
        "/admin/live",
        200,
        Access::Bearer,
        "The rooms on air",
    )
    .answers::<LiveSnapshot>()
    .refuses(&[403]),
    op(
        "GET",
        "/admin/live/events",
        200,
        Access::Bearer,
        "The rooms on air, as server-sent events",
    )
    .answers_events::<LiveSnapshot>()
    .refuses(&[403]),
    op(
        "GET",
        "/admin/health",
        200,
        Access::Bearer,
        "Checks and numbers of every part (admin)",
    )
    .answers::<health::Health>()
    .refuses(&[403]),
    op(
        "GET",
        "/admin/audit",
        200,
        Access::Bearer,
        "The audit log (admin)",
    )
    .query::<audit::AuditQuery>()
    .answers::<Page<audit::AuditView>>()
    .refuses(&[403]),
    op(
        "GET",
        "/admin/recordings",
        200,
        Access::Bearer,
        "Recordings and their state",
    )
    .query::<recordings::RecordingsQuery>()
    .answers::<Page<recordings::RecordingView>>()
    .refuses(&[403, 404]),
    op(
        "POST",
        "/admin/recordings/{id}/retry",
        202,
        Access::Bearer,
        "Retry a failed recording",
    )
    .answers::<recordings::Retried>()
    .refuses(&[403, 409]),
    op(
        "GET",
        "/admin/payments/callbacks",
        200,
        Access::Bearer,
        "The payment provider's recorded events (admin)",
    )
    .query::<callbacks::CallbacksQuery>()
    .answers::<Page<callbacks::CallbackView>>()
    .refuses(&[403]),
    op(
        "POST",
        "/admin/orders/{id}/reconcile",
        200,
        Access::Bearer,
        "An order with what is known of its payment (admin)",
    )
    .answers::<orders::Reconciled>()
    .refuses(&[403]),
];

/// The answer of `GET /openapi.json`: an OpenAPI document (its own schema is the
/// specification's).
fn openapi_document(_: &mut Components) -> RefOr<Schema> {
    ObjectBuilder::new()
        .property("openapi", ObjectBuilder::new().schema_type(Type::String))
        .required("openapi")
        .property("info", ObjectBuilder::new().schema_type(Type::Object))
        .required("info")
        .property("paths", ObjectBuilder::new().schema_type(Type::Object))
        .required("paths")
        .description(Some("An OpenAPI 3.1 document"))
        .into()
}

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

/// What a refusal status means, for its description.
fn refusal_meaning(status: u16) -> &'static str {
    match status {
        400 => "a field, parameter or header is wrong (`invalid_field`, `invalid_body`); `field` names it",
        401 => "no valid credentials (`unauthorized`); `WWW-Authenticate` says why",
        403 => "not allowed to the caller (`forbidden`)",
        404 => "nothing has that id, or the caller may not see it (`not_found`)",
        409 => "conflicts with the current state (`conflict`)",
        413 => "the body is larger than `server.max_body_bytes` (`body_too_large`)",
        415 => "the body is not `application/json` (`unsupported_media_type`)",
        422 => "well formed, but contradicts what it refers to (the code says how)",
        429 => "too many attempts for now (`rate_limited`)",
        503 => "the database or bus is out of reach, or the request took too long (`unavailable`)",
        _ => "refused",
    }
}

/// The refusals of `operation`: its own and those of its kind, in status order.
fn refusals(operation: &Operation) -> Vec<u16> {
    let takes_input = operation.body.is_some()
        || operation.query.is_some()
        || operation.path.contains('{')
        || operation.idempotency_key
        || operation.access == Access::Signed;
    let mut statuses: Vec<u16> = operation.refusals.to_vec();
    if takes_input {
        statuses.push(400);
    }
    if matches!(operation.access, Access::Anyone | Access::Bearer) {
        statuses.push(401);
    }
    if operation.path.contains('{') {
        statuses.push(404);
    }
    if operation.body.is_some() {
        statuses.push(413);
        // The signed callback and the purchase read their bytes: no content type is needed.
        if operation.access != Access::Signed && !operation.idempotency_key {
            statuses.push(415);
        }
    }
    statuses.push(503);
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

/// The path parameters of `path`: every `{name}` is a positive integer id.
fn path_parameters(path: &str) -> Vec<Parameter> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                            utoipa::openapi::KnownFormat::Int64,
                        )))
                        .minimum(Some(1)),
                ))
                .build()
        })
        .collect()
}

fn json(schema: RefOr<Schema>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

fn operation(entry: &Operation, components: &mut Components) -> PathOperation {
    let operation_id = format!("{} {}", entry.method.to_lowercase(), entry.path);
    let mut success = ResponseBuilder::new().description("success");
    if let Some(answer) = entry.answer {
        success = success.content(entry.answer_media, json(answer(components)));
    }
    if entry.idempotency_key {
        success = success.header(
            "Idempotency-Replayed",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(["true"])),
                )
                .description(Some(
                    "`true` on the stored answer of an earlier request with the key",
                ))
                .build(),
        );
    }
    let mut operation = OperationBuilder::new()
        .operation_id(Some(operation_id))
        .summary(Some(entry.summary))
        .response(entry.status.to_string(), success);
    let error = Ref::from_schema_name(<Envelope<'static> as ToSchema>::name());
    for status in refusals(entry) {
        let mut response = ResponseBuilder::new()
            .description(refusal_meaning(status))
            .content("application/json", json(error.clone().into()));
        if status == 401 {
            response = response.header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some(r#"`Bearer realm="livegate", error="…"`"#))
                    .build(),
            );
        }
        operation = operation.response(status.to_string(), response);
    }
    for parameter in path_parameters(entry.path) {
        operation = operation.parameter(parameter);
    }
    if let Some(query) = entry.query {
        for parameter in query() {
            operation = operation.parameter(parameter);
        }
    }
    if let Some(body) = entry.body {
        operation = operation.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", json(body(components)))
                .required(Some(Required::True))
                .build(),
        ));
    }
    if entry.idempotency_key {
        operation = operation.parameter(
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::True)
                .description(Some("One per purchase, chosen by the client"))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(format!("^[!-~]{{1,{}}}$", idempotency::MAX_KEY))),
                )),
        );
    }
    match entry.access {
        Access::Bearer => {
            operation =
                operation.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        }
        Access::Anyone => {
            // Optional: `{}` is "no credentials".
            operation = operation
                .security(SecurityRequirement::default())
                .security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        }
        Access::Signed => {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(crate::payments::signature::HEADER)
                    .parameter_in(ParameterIn::Header)
                    .required(Required::True)
                    .description(Some("t=<unix>,v1=<hex HMAC-SHA256 of \"t.body\">"))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        Access::Public => {}
    }
    operation.build()
}

/// The document.
pub fn document() -> OpenApi {
    let mut components = Components::new();
    named::<Envelope<'static>>(&mut components);
    let mut paths = PathsBuilder::new();
    for entry in OPERATIONS {
        let Some(http_method) = method(entry.method) else {
            continue;
        };
        let operation = operation(entry, &mut components);
        paths = paths.path(
            format!("/api/v1{}", entry.path),
            PathItem::new(http_method, operation),
        );
    }
    let bearer = SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .build(),
    );
    let mut schemas = ComponentsBuilder::new().security_scheme("bearer", bearer);
    for (name, schema) in components {
        schemas = schemas.schema(name, schema);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("livegate room API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Accounts, rooms, play tokens, gifts, payments, chat moderation and the operator console.")),
        )
        .paths(paths)
        .components(Some(schemas.build()))
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
