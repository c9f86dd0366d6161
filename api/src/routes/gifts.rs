//! The gift catalogue: `GET /api/v1/gifts` (active gifts, or all of them for an admin with
//! `?all=true`), and for admins `POST /api/v1/gifts` and `PATCH /api/v1/gifts/{id}`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use livegate_core::db::gifts::{self, Gift, GiftChanges};
use livegate_core::db::now_ms;

use crate::auth::{Caller, MaybeCaller, Role};
use crate::error::{ApiError, Json, Path, Query};
use crate::state::AppState;
use crate::validate;

/// A gift as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Gift)]
pub struct GiftView {
    id: i64,
    name: String,
    /// In the smallest unit of `currency` (cents).
    price: i64,
    /// ISO 4217.
    currency: String,
    /// Whether it is on sale.
    active: bool,
    /// Unix milliseconds.
    created_at: i64,
}

impl From<&Gift> for GiftView {
    fn from(gift: &Gift) -> Self {
        Self {
            id: gift.id,
            name: gift.name.clone(),
            price: gift.price,
            currency: gift.currency.clone(),
            active: gift.active,
            created_at: gift.created_at,
        }
    }
}

/// The listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct GiftList {
    items: Vec<GiftView>,
}

/// The listing's query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Inactive gifts too (admins only).
    all: Option<bool>,
}

/// The catalogue, cheapest first.
pub async fn list(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<GiftList>, ApiError> {
    let all = query.all.unwrap_or(false);
    if all && !caller.is_some_and(|c| c.role == Role::Admin) {
        return Err(ApiError::forbidden("only admins see inactive gifts").field("all"));
    }
    let found = gifts::list(state.db(), all).await?;
    Ok(axum::Json(GiftList {
        items: found.iter().map(GiftView::from).collect(),
    }))
}

/// The creation body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGift {
    /// 1 to 64 characters, not blank, no control characters ([`validate::gift_name`]).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    name: String,
    /// In the smallest unit of `currency` ([`validate::price`]).
    #[schema(minimum = 1, maximum = 100_000_000)]
    price: i64,
    /// Three capitals, ISO 4217 ([`validate::currency`]).
    #[schema(pattern = "^[A-Z]{3}$")]
    currency: String,
    /// Whether it is on sale (yes).
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

fn admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::forbidden("only admins change the catalogue"))
    }
}

/// Adds a gift; 201 with it.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewGift>,
) -> Result<(StatusCode, axum::Json<GiftView>), ApiError> {
    admin(&caller)?;
    validate::gift_name(&body.name).map_err(|m| ApiError::invalid("name", m))?;
    validate::price(body.price).map_err(|m| ApiError::invalid("price", m))?;
    validate::currency(&body.currency).map_err(|m| ApiError::invalid("currency", m))?;
    let id = match gifts::create_gift(
        state.db(),
        &body.name,
        body.price,
        &body.currency,
        body.active,
        now_ms(),
    )
    .await
    {
        Ok(id) => id,
        Err(err) if gifts::is_duplicate(&err) => {
            return Err(ApiError::conflict("a gift with this name exists").field("name"));
        }
        Err(err) => return Err(err.into()),
    };
    let gift = gifts::get(state.db(), id)
        .await?
        .ok_or_else(ApiError::internal)?;
    tracing::info!(gift.id = id, user.id = caller.user_id, "gift created");
    Ok((StatusCode::CREATED, axum::Json(GiftView::from(&gift))))
}

/// The change body: any of the fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GiftPatch {
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    name: Option<String>,
    #[schema(minimum = 1, maximum = 100_000_000)]
    price: Option<i64>,
    #[schema(pattern = "^[A-Z]{3}$")]
    currency: Option<String>,
    active: Option<bool>,
}

/// Changes a gift (a price change applies to orders created afterwards only).
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Json(body): Json<GiftPatch>,
) -> Result<axum::Json<GiftView>, ApiError> {
    admin(&caller)?;
    if id <= 0 {
        return Err(ApiError::invalid("id", "must be a positive integer id"));
    }
    if let Some(name) = &body.name {
        validate::gift_name(name).map_err(|m| ApiError::invalid("name", m))?;
    }
    if let Some(price) = body.price {
        validate::price(price).map_err(|m| ApiError::invalid("price", m))?;
    }
    if let Some(currency) = &body.currency {
        validate::currency(currency).map_err(|m| ApiError::invalid("currency", m))?;
    }
    if gifts::get(state.db(), id).await?.is_none() {
        return Err(ApiError::not_found("gift"));
    }
    let changes = GiftChanges {
        name: body.name.as_deref(),
        price: body.price,
        currency: body.currency.as_deref(),
        active: body.active,
    };
    match gifts::update(state.db(), id, &changes).await {
        Ok(()) => {}
        Err(err) if gifts::is_duplicate(&err) => {
            return Err(ApiError::conflict("a gift with this name exists").field("name"));
        }
        Err(err) => return Err(err.into()),
    }
    let gift = gifts::get(state.db(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("gift"))?;
    tracing::info!(gift.id = id, user.id = caller.user_id, "gift changed");
    Ok(axum::Json(GiftView::from(&gift)))
}
