//! What the admin listener reports on `/readyz`: the database decides (without it no publish
//! can be authorised); the bus and the origins' APIs are reported but do not decide, since
//! the service works around them (bus writes are retried, reconciliation waits for its next
//! pass).

use livegate_core::service::Readiness;

use crate::state::AppState;

/// The readiness checks of the service: `database`, `bus`, and `origin.srs` /
/// `origin.zlmediakit` for each origin API configured. Each check gets the hook deadline.
pub fn readiness(state: &AppState) -> Readiness {
    let db = state.db().clone();
    let bus = state.bus().clone();
    let mut readiness = Readiness::new(state.config().deadline())
        .check("database", move || {
            let db = db.clone();
            async move { db.ping().await }
        })
        .report_only("bus", move || {
            let bus = bus.clone();
            async move { bus.ping().await }
        });
    for (name, api) in [
        ("origin.srs", state.srs_api()),
        ("origin.zlmediakit", state.zlm_api()),
    ] {
        if let Some(api) = api.cloned() {
            // Listing the streams is the cheapest call both APIs have.
            readiness = readiness.report_only(name, move || {
                let api = api.clone();
                async move { api.streams().await.map(drop) }
            });
        }
    }
    readiness
}
