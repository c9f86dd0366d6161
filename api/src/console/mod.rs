//! What the operator console reads beyond the plain resources: the live snapshot of every
//! room on air ([`snapshot`]) and its feed ([`feed`]), each live room's viewers and bitrate
//! over the last hour ([`history`]), the other services' numbers ([`scrape`]) and download
//! links for recordings ([`storage`]).

pub mod config;
pub mod feed;
pub mod history;
pub mod scrape;
pub mod snapshot;
pub mod storage;

use livegate_core::bus::{Bus, Series};

use self::config::ConsoleConfig;
use self::feed::LiveFeed;
use self::history::HistoryPoint;
use self::scrape::Scrapes;
use self::storage::RecordingStore;
use crate::config::Config;

/// The console's shared parts of one instance.
#[derive(Debug)]
pub struct Console {
    feed: LiveFeed,
    scrapes: Scrapes,
    storage: Option<RecordingStore>,
    history: Series<HistoryPoint>,
}

impl Console {
    /// The parts `config` asks for, on `bus`; `link_key` signs local download links.
    pub fn new(config: &Config, bus: &Bus, link_key: &[u8]) -> Self {
        let console: &ConsoleConfig = &config.console;
        Self {
            feed: LiveFeed::default(),
            scrapes: Scrapes::new(console),
            storage: config
                .recordings
                .as_ref()
                .map(|recordings| RecordingStore::new(recordings, link_key)),
            history: history::series(bus, console),
        }
    }

    /// The live feed.
    pub fn feed(&self) -> &LiveFeed {
        &self.feed
    }

    /// The metrics scrapes of the other services.
    pub fn scrapes(&self) -> &Scrapes {
        &self.scrapes
    }

    /// Where recordings are stored, when `[recordings]` says.
    pub fn storage(&self) -> Option<&RecordingStore> {
        self.storage.as_ref()
    }

    /// The rooms' sampled history.
    pub fn history(&self) -> &Series<HistoryPoint> {
        &self.history
    }
}
