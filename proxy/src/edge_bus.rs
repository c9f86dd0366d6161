//! The proxy's one link to the bus: revocations in, viewer counts out, over one connection.

use async_trait::async_trait;
use livegate_core::bus::{Bus, BusConfig};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tracing::warn;

use crate::revocation::RevocationFeed;
use crate::viewers::ViewerReporter;

/// Where the bus comes from.
#[derive(Debug)]
pub enum Source {
    /// Connect to the one `[bus]` names (on the service's own runtime: the Redis client
    /// starts its tasks there).
    Connect(BusConfig),
    /// The bus of the process the proxy runs in.
    Shared(Bus),
}

/// The background service that follows revocations and publishes viewer counts.
pub struct EdgeBus {
    /// The bus.
    pub source: Source,
    /// Revocations in.
    pub revocations: RevocationFeed,
    /// Viewer counts out.
    pub viewers: ViewerReporter,
}

#[async_trait]
impl BackgroundService for EdgeBus {
    async fn start(&self, shutdown: ShutdownWatch) {
        let bus = match &self.source {
            Source::Shared(bus) => bus.clone(),
            Source::Connect(config) => match Bus::connect(config) {
                Ok(bus) => bus,
                Err(err) => {
                    // Validation accepted the URL, so this is rare: say so and serve without.
                    warn!(error = %err, "no bus: revocations come only from the admin port");
                    return;
                }
            },
        };
        tokio::join!(
            self.revocations.follow(&bus, shutdown.clone()),
            self.viewers.publish(&bus, shutdown),
        );
    }
}
