//! The FLV hub on its own, in front of a paced origin: how it treats a viewer that does not
//! keep up, next to one that does.

use std::sync::Arc;
use std::time::Duration;

use http::{header, Method};
use livegate_core::telemetry::Registry;
use livegate_proxy::flv::hub::{HubSettings, Hubs};
use livegate_proxy::flv::origin::{OriginRequest, OriginTimeouts};
use livegate_proxy::flv::queue::{End, Next, QueueLimits};
use livegate_proxy::metrics::Metrics;

use crate::flv::paced_origin;

/// Type and timestamp of every tag in a viewer's FLV bytes (after the 13-byte header).
fn tags(data: &[u8]) -> Vec<(u8, u32)> {
    let mut at = 13;
    let mut out = Vec::new();
    while at + 11 <= data.len() {
        let size = u32::from_be_bytes([0, data[at + 1], data[at + 2], data[at + 3]]) as usize;
        assert!(at + 11 + size + 4 <= data.len(), "a partial tag");
        let previous = u32::from_be_bytes(data[at + 11 + size..at + 15 + size].try_into().unwrap());
        assert_eq!(previous as usize, 11 + size, "PreviousTagSize");
        let timestamp =
            u32::from_be_bytes([data[at + 7], data[at + 4], data[at + 5], data[at + 6]]);
        out.push((data[at], timestamp));
        at += 11 + size + 4;
    }
    out
}

/// Timestamps of the video tags in a viewer's FLV bytes.
fn video_timestamps(data: &[u8]) -> Vec<u32> {
    tags(data)
        .into_iter()
        .filter(|(kind, _)| *kind == 9)
        .map(|(_, timestamp)| timestamp)
        .collect()
}

/// The widest step between consecutive video frames, ms.
fn widest_gap(timestamps: &[u32]) -> u32 {
    timestamps
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap()
}

/// Hubs with small viewer queues (a viewer that reads nothing is cut within a second) and the
/// given merge window.
fn hubs(merge: Duration) -> (Arc<Hubs>, Arc<Metrics>) {
    let mut registry = Registry::with_prefix("proxy");
    let metrics = Arc::new(Metrics::register(&mut registry));
    let hubs = Arc::new(Hubs::new(
        HubSettings {
            linger: Duration::from_millis(100),
            gop_max_bytes: 8 << 20,
            merge,
            merge_max_bytes: 256 * 1024,
            queue: QueueLimits {
                max_bytes: 64 * 1024,
                max_lag: Duration::from_secs(1),
            },
            timeouts: OriginTimeouts {
                connect: Duration::from_secs(2),
                read: Duration::from_secs(5),
                write: Duration::from_secs(5),
            },
        },
        metrics.clone(),
    ));
    (hubs, metrics)
}

fn request_to(origin: &livegate_tests::flv::FlvOrigin) -> OriginRequest {
    OriginRequest {
        addr: origin.addr,
        method: Method::GET,
        target: "/live/42.flv".to_owned(),
        headers: vec![(header::HOST, origin.addr.to_string())],
    }
}

#[tokio::test]
async fn a_slow_viewer_skips_then_is_cut_while_a_fast_one_gets_every_frame() {
    let origin = paced_origin().await;
    let (hubs, metrics) = hubs(Duration::from_millis(100));
    let request = request_to(&origin);
    let fast = hubs.join("live/42", request.clone()).await.unwrap();
    let slow = hubs.join("live/42", request).await.unwrap();
    assert_eq!(origin.open_connections(), 1);

    // The fast viewer reads everything while the slow one reads nothing, until it is cut.
    let mut received = Vec::new();
    let reader = async {
        loop {
            match fast.next().await {
                Next::Data(bytes) => received.extend_from_slice(&bytes),
                Next::End(end) => panic!("the fast viewer's stream ended: {end:?}"),
            }
            if metrics.flv_viewers_cut.get() > 0 {
                return;
            }
        }
    };
    tokio::time::timeout(livegate_tests::patience(), reader)
        .await
        .expect("the slow viewer was never cut");
    assert!(metrics.flv_tags_dropped.get() > 0);
    // The slow viewer learns it was cut as soon as it looks.
    assert_eq!(slow.next().await, Next::End(End::Lagged));

    // Every video frame reached the fast viewer, 40 ms apart (25 fps), with no skip.
    let timestamps = video_timestamps(&received);
    assert!(timestamps.len() > 50, "{}", timestamps.len());
    let widest = widest_gap(&timestamps);
    assert!(widest <= 80, "a gap of {widest} ms: frames were dropped");
}

/// The origin sends a write or two per frame; a viewer is handed a merge window's worth of
/// tags at a time — one wake-up and one write instead of one per origin read, which is what
/// lets one pull keep up with thousands of viewers — and still every frame, in order.
#[tokio::test]
async fn a_viewer_is_handed_a_merge_window_of_tags_at_a_time_with_every_frame() {
    let origin = paced_origin().await;
    let (hubs, _) = hubs(Duration::from_millis(250));
    let viewer = hubs.join("live/42", request_to(&origin)).await.unwrap();
    let mut received = Vec::new();
    let mut handed = 0;
    let reader = async {
        // Two seconds of video.
        while video_timestamps(&received).len() < 50 {
            match viewer.next().await {
                Next::Data(bytes) => {
                    received.extend_from_slice(&bytes);
                    handed += 1;
                }
                Next::End(end) => panic!("the stream ended: {end:?}"),
            }
        }
    };
    tokio::time::timeout(livegate_tests::patience(), reader)
        .await
        .expect("two seconds of video");
    let tags = tags(&received);
    // A quarter of a second of this stream is about 17 tags (25 video and 43 audio frames a
    // second); handed one origin read at a time it would be one or two.
    assert!(
        tags.len() >= 4 * handed,
        "{} tags in {handed} hand-overs",
        tags.len()
    );
    let widest = widest_gap(&video_timestamps(&received));
    assert!(widest <= 80, "a gap of {widest} ms: frames were dropped");
}
