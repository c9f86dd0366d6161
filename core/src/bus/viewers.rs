//! Edge viewer counts: every edge process publishes, every few seconds, how many viewers each
//! room has on it (FLV responses running, and HLS viewers as distinct tokens seen in a sliding
//! window). Readers — the API's room details, the console — keep the latest report of each
//! edge and add them up, forgetting an edge whose reports stop.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The channel edge reports travel on.
pub(crate) const EDGE_VIEWERS: &str = "edge-viewers";

/// One room's viewers on one edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomViewers {
    /// The room.
    pub room_id: u64,
    /// FLV responses running.
    pub flv: u64,
    /// Distinct HLS tokens seen in the edge's window.
    pub hls: u64,
}

/// One edge's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeViewers {
    /// The edge process (stable while it runs).
    pub edge: String,
    /// When the counts were taken, unix milliseconds.
    pub at_ms: i64,
    /// How long the report stands, in milliseconds: a reader forgets it after that unless a
    /// new one arrives.
    pub valid_ms: i64,
    /// Rooms with viewers (rooms without any are left out).
    pub rooms: Vec<RoomViewers>,
}

/// The latest report of every edge, added up per room.
#[derive(Debug, Default)]
pub struct ViewerTally {
    edges: HashMap<String, EdgeViewers>,
}

impl ViewerTally {
    /// Takes `report` as its edge's latest (an older one than what is held is ignored).
    pub fn apply(&mut self, report: EdgeViewers) {
        match self.edges.get(&report.edge) {
            Some(held) if held.at_ms > report.at_ms => {}
            _ => {
                self.edges.insert(report.edge.clone(), report);
            }
        }
    }

    /// Drops the reports that no longer stand at `now_ms`.
    pub fn expire(&mut self, now_ms: i64) {
        self.edges
            .retain(|_, report| report.at_ms.saturating_add(report.valid_ms) >= now_ms);
    }

    /// `room_id`'s viewers on every edge whose report stands at `now_ms`.
    pub fn room(&self, room_id: u64, now_ms: i64) -> RoomViewers {
        let mut total = RoomViewers {
            room_id,
            flv: 0,
            hls: 0,
        };
        for report in self.standing(now_ms) {
            for room in report.rooms.iter().filter(|room| room.room_id == room_id) {
                total.flv += room.flv;
                total.hls += room.hls;
            }
        }
        total
    }

    /// Every room's viewers on the edges whose reports stand at `now_ms`, most watched first.
    pub fn rooms(&self, now_ms: i64) -> Vec<RoomViewers> {
        let mut totals: HashMap<u64, RoomViewers> = HashMap::new();
        for report in self.standing(now_ms) {
            for room in &report.rooms {
                let total = totals.entry(room.room_id).or_insert(RoomViewers {
                    room_id: room.room_id,
                    flv: 0,
                    hls: 0,
                });
                total.flv += room.flv;
                total.hls += room.hls;
            }
        }
        let mut rooms: Vec<RoomViewers> = totals.into_values().collect();
        rooms.sort_by(|a, b| (b.flv + b.hls, a.room_id).cmp(&(a.flv + a.hls, b.room_id)));
        rooms
    }

    /// How many edges have a standing report.
    pub fn edges(&self, now_ms: i64) -> usize {
        self.standing(now_ms).count()
    }

    fn standing(&self, now_ms: i64) -> impl Iterator<Item = &EdgeViewers> {
        self.edges
            .values()
            .filter(move |report| report.at_ms.saturating_add(report.valid_ms) >= now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(edge: &str, at_ms: i64, rooms: &[(u64, u64, u64)]) -> EdgeViewers {
        EdgeViewers {
            edge: edge.to_owned(),
            at_ms,
            valid_ms: 15_000,
            rooms: rooms
                .iter()
                .map(|&(room_id, flv, hls)| RoomViewers { room_id, flv, hls })
                .collect(),
        }
    }

    #[test]
    fn edges_add_up_and_silent_ones_are_forgotten() {
        let mut tally = ViewerTally::default();
        tally.apply(report("a", 1_000, &[(42, 10, 5), (43, 1, 0)]));
        tally.apply(report("b", 2_000, &[(42, 3, 2)]));
        assert_eq!(
            tally.room(42, 3_000),
            RoomViewers {
                room_id: 42,
                flv: 13,
                hls: 7
            }
        );
        assert_eq!(tally.rooms(3_000)[0].room_id, 42);
        // An older report from an edge never replaces a newer one.
        tally.apply(report("a", 500, &[]));
        assert_eq!(tally.room(43, 3_000).flv, 1);
        // Edge a stops reporting: after its report's time, only b counts.
        assert_eq!(
            tally.room(42, 16_500),
            RoomViewers {
                room_id: 42,
                flv: 3,
                hls: 2
            }
        );
        assert_eq!(tally.edges(16_500), 1);
        tally.expire(17_500);
        assert_eq!(tally.edges(0), 0);
    }
}
