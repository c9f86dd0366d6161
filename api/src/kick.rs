//! Kicking a room's live publisher through the control API of the origin its stream row
//! names: SRS, ZLMediaKit and nginx-rtmp behind the one [`OriginControl`] trait.

use std::sync::Arc;
use std::time::Duration;

use livegate_core::db::Stream;
use livegate_core::origin::nginx::NginxRtmpControl;
use livegate_core::origin::srs::SrsApi;
use livegate_core::origin::zlm::ZlmApi;
use livegate_core::origin::{OriginControl, OriginError, StreamRef};

use crate::config::{OriginConfig, OriginKind};
use crate::metrics::{KickLabels, Metrics};

/// One configured control API and the streams it answers for.
#[derive(Debug, Clone)]
pub struct OriginEntry {
    /// The origin software.
    pub kind: OriginKind,
    /// The server id it answers for; `None` for any server of its kind.
    pub server_id: Option<String>,
    /// The client.
    pub control: Arc<dyn OriginControl>,
}

/// Every configured control API.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    entries: Vec<OriginEntry>,
}

impl Origins {
    /// Clients for `[[origins]]`.
    pub fn from_config(configs: &[OriginConfig]) -> Result<Self, OriginError> {
        let mut entries = Vec::with_capacity(configs.len());
        for config in configs {
            let timeout = Duration::from_millis(config.timeout_ms);
            let control: Arc<dyn OriginControl> = match config.kind {
                OriginKind::Srs => Arc::new(SrsApi::new(
                    &config.url,
                    config.username.as_deref(),
                    config.secret.as_ref(),
                    timeout,
                )?),
                OriginKind::Zlmediakit => Arc::new(ZlmApi::new(
                    &config.url,
                    config
                        .secret
                        .clone()
                        .unwrap_or_else(|| livegate_core::Secret::new("")),
                    config.server_id.as_deref().unwrap_or_default(),
                    timeout,
                )?),
                OriginKind::NginxRtmp => {
                    let control = NginxRtmpControl::new(&config.url, timeout)?;
                    Arc::new(match config.nginx_stat_url() {
                        Some(stat) => control.with_stat_url(&stat),
                        None => control,
                    })
                }
            };
            entries.push(OriginEntry {
                kind: config.kind,
                server_id: config.server_id.clone(),
                control,
            });
        }
        Ok(Self { entries })
    }

    /// Given clients (tests, or a caller with clients of its own).
    pub fn new(entries: Vec<OriginEntry>) -> Self {
        Self { entries }
    }

    /// The control API for `stream`: the entry naming its server, else one of its kind
    /// naming none.
    pub fn for_stream(&self, stream: &Stream) -> Option<&Arc<dyn OriginControl>> {
        self.index_of(&stream.origin_kind, &stream.origin_server_id)
            .map(|index| &self.entries[index].control)
    }

    /// The index in [`Origins::entries`] of the entry for streams of origin `kind` and
    /// `server_id`: the one naming the server, else one of its kind naming none.
    pub fn index_of(&self, kind: &str, server_id: &str) -> Option<usize> {
        let of_kind = |entry: &(usize, &OriginEntry)| entry.1.kind.as_str() == kind;
        let mut entries = self.entries.iter().enumerate();
        entries
            .clone()
            .filter(of_kind)
            .find(|(_, entry)| entry.server_id.as_deref() == Some(server_id))
            .or_else(|| {
                entries
                    .by_ref()
                    .filter(of_kind)
                    .find(|(_, entry)| entry.server_id.is_none())
            })
            .map(|(index, _)| index)
    }

    /// Every configured entry.
    pub fn entries(&self) -> &[OriginEntry] {
        &self.entries
    }
}

/// What became of a kick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kicked {
    /// The origin dropped the publisher (its stop callback then closes the stream).
    Kicked,
    /// The origin's API failed or refused; the publisher may still be on.
    Failed,
    /// No `[[origins]]` entry controls the stream's origin.
    NoControl,
}

impl Kicked {
    /// For responses and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Kicked::Kicked => "kicked",
            Kicked::Failed => "failed",
            Kicked::NoControl => "no_control",
        }
    }
}

/// Kicks the publisher of the open `stream`, recording the outcome. The room is already
/// refused to new publishes (disabled, or its key replaced) when this is called, so a
/// publisher that reconnects is turned away by the hooks service.
pub async fn kick(origins: &Origins, metrics: &Metrics, stream: &Stream) -> Kicked {
    let outcome = match origins.for_stream(stream) {
        None => {
            tracing::warn!(
                room.id = stream.room_id,
                stream.id = stream.id,
                origin.kind = %stream.origin_kind,
                origin.server_id = %stream.origin_server_id,
                "no control API configured for the stream's origin, publisher not kicked"
            );
            Kicked::NoControl
        }
        Some(control) => {
            let name = stream.room_id.to_string();
            let target = StreamRef {
                vhost: None,
                app: None,
                name: &name,
                publisher: stream.origin_client_id.as_deref(),
            };
            match control.kick(&target).await {
                Ok(()) => {
                    tracing::info!(
                        room.id = stream.room_id,
                        stream.id = stream.id,
                        origin.kind = %stream.origin_kind,
                        "publisher kicked"
                    );
                    Kicked::Kicked
                }
                Err(err) => {
                    tracing::warn!(
                        room.id = stream.room_id,
                        stream.id = stream.id,
                        origin.kind = %stream.origin_kind,
                        error = %err,
                        "kicking the publisher failed"
                    );
                    Kicked::Failed
                }
            }
        }
    };
    let origin = match stream.origin_kind.as_str() {
        kind @ ("srs" | "zlmediakit" | "nginx-rtmp") => kind.to_owned(),
        _ => "unknown".to_owned(),
    };
    metrics
        .kicks
        .get_or_create(&KickLabels {
            origin,
            outcome: outcome.as_str(),
        })
        .inc();
    outcome
}
