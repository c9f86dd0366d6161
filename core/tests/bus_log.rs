//! `Log<T>` on both backends: server-assigned offsets, reads after an offset that say whether
//! they are complete, and a new epoch when the history is lost.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod support;

use livegate_core::bus::{Bus, Log, LogOptions, Position};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Message {
    text: String,
}

fn message(n: u64) -> Message {
    Message {
        text: format!("m{n}"),
    }
}

fn logs(max_len: usize) -> Vec<(&'static str, Bus, Log<Message>, String)> {
    support::configs_with(|_| {})
        .into_iter()
        .map(|(name, config)| {
            let bus = Bus::connect(&config).unwrap();
            let log = bus.log(LogOptions {
                max_len,
                ..LogOptions::new("chat")
            });
            (name, bus, log, config.key_prefix)
        })
        .collect()
}

fn at(offset: u64, epoch: &str) -> Position {
    Position {
        offset,
        epoch: epoch.to_owned(),
    }
}

fn offsets<T>(history: &livegate_core::bus::History<T>) -> Vec<u64> {
    history.entries.iter().map(|entry| entry.offset).collect()
}

#[tokio::test]
async fn offsets_increase_and_reads_after_an_offset_say_whether_they_are_complete() {
    for (name, bus, log, _) in logs(100) {
        let mut epoch = String::new();
        for n in 1..=5 {
            let position = log.append("room:1", &message(n)).await.unwrap();
            assert_eq!(position.offset, n, "{name}");
            if n == 1 {
                epoch = position.epoch.clone();
            }
            assert_eq!(position.epoch, epoch, "{name}: the epoch changed");
        }
        // Keys are independent.
        assert_eq!(log.append("room:2", &message(1)).await.unwrap().offset, 1);

        let after = log.read("room:1", Some(&at(2, &epoch)), 100).await.unwrap();
        assert_eq!(offsets(&after), [3, 4, 5], "{name}");
        assert_eq!(after.entries[0].value, message(3), "{name}");
        assert!(after.complete, "{name}");
        assert_eq!(after.position(), at(5, &epoch), "{name}");

        let nothing_new = log.read("room:1", Some(&at(5, &epoch)), 100).await.unwrap();
        assert!(
            nothing_new.entries.is_empty() && nothing_new.complete,
            "{name}"
        );

        let everything = log.read("room:1", None, 100).await.unwrap();
        assert_eq!(offsets(&everything), [1, 2, 3, 4, 5], "{name}");
        assert!(everything.complete, "{name}");

        // Cut by the limit: the next page, not complete.
        let page = log.read("room:1", Some(&at(1, &epoch)), 2).await.unwrap();
        assert_eq!(offsets(&page), [2, 3], "{name}");
        assert!(!page.complete, "{name}");
        let newest = log.read("room:1", None, 2).await.unwrap();
        assert_eq!(offsets(&newest), [4, 5], "{name}");
        assert!(!newest.complete, "{name}");

        // A reader ahead of the history (it cannot have seen offset 9) is not complete.
        let ahead = log.read("room:1", Some(&at(9, &epoch)), 100).await.unwrap();
        assert!(!ahead.complete, "{name}");

        assert_eq!(log.position("room:1").await.unwrap(), at(5, &epoch));
        assert_eq!(log.position("room:none").await.unwrap(), at(0, ""));
        let empty = log.read("room:none", Some(&at(0, "")), 10).await.unwrap();
        assert!(empty.entries.is_empty() && empty.complete, "{name}");
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn reading_from_before_what_is_kept_is_incomplete() {
    // Redis trims approximately (whole stream nodes of about 100 entries): append enough
    // that it must have trimmed.
    let appended = 250;
    for (name, bus, log, _) in logs(3) {
        let mut epoch = String::new();
        for n in 1..=appended {
            epoch = log.append("room:1", &message(n)).await.unwrap().epoch;
        }
        let old = log
            .read("room:1", Some(&at(1, &epoch)), 1000)
            .await
            .unwrap();
        assert!(!old.complete, "{name}: trimmed entries reported complete");
        assert!(!old.entries.is_empty(), "{name}");
        assert_eq!(old.entries.last().unwrap().offset, appended, "{name}");
        assert!(old.entries[0].offset > 2, "{name}: nothing was trimmed");

        let recent = log
            .read("room:1", Some(&at(appended - 2, &epoch)), 1000)
            .await
            .unwrap();
        assert_eq!(offsets(&recent), [appended - 1, appended], "{name}");
        assert!(recent.complete, "{name}");
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn losing_the_history_changes_the_epoch() {
    for (name, bus, log, prefix) in logs(100) {
        for n in 1..=3 {
            log.append("room:1", &message(n)).await.unwrap();
        }
        let before = log.position("room:1").await.unwrap();
        assert_eq!(before.offset, 3, "{name}");

        if name == "redis" {
            // Redis lost the stream (flushed, failed over to an empty replica) but not the
            // hash beside it.
            let url = livegate_core::testing::redis_url().unwrap();
            let client = redis::Client::open(url).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            redis::cmd("DEL")
                .arg(format!("{prefix}:log:chat:room:1"))
                .query_async::<()>(&mut conn)
                .await
                .unwrap();
        } else {
            log.delete("room:1").await.unwrap();
        }
        let lost = log.read("room:1", Some(&before), 100).await.unwrap();
        assert!(!lost.complete, "{name}");
        assert!(lost.entries.is_empty(), "{name}");

        let after = log.append("room:1", &message(4)).await.unwrap();
        assert_eq!(after.offset, 1, "{name}: offsets start over");
        assert_ne!(
            after.epoch, before.epoch,
            "{name}: the epoch did not change"
        );
        // The reader from the old epoch learns it must reload, and gets the new history.
        let recovered = log.read("room:1", Some(&before), 100).await.unwrap();
        assert!(!recovered.complete, "{name}");
        assert_eq!(recovered.epoch, after.epoch, "{name}");
        assert_eq!(offsets(&recovered), [1], "{name}");
        assert_eq!(recovered.entries[0].value, message(4), "{name}");

        // Deleting through the API does the same.
        log.delete("room:1").await.unwrap();
        let again = log.append("room:1", &message(5)).await.unwrap();
        assert_eq!(again.offset, 1, "{name}");
        assert_ne!(again.epoch, after.epoch, "{name}");
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn append_once_keeps_one_entry_per_id_until_the_history_is_lost() {
    for (name, _bus, log, _) in logs(100) {
        let key = format!("once-{}", std::process::id());
        let (first, appended) = log.append_once(&key, "order-1", &message(1)).await.unwrap();
        assert!(appended, "{name}");
        // Again, as a writer that died before recording its append would: no second entry.
        let (again, appended) = log.append_once(&key, "order-1", &message(1)).await.unwrap();
        assert!(!appended, "{name}");
        assert_eq!(again, first, "{name}: the earlier entry's position");
        let (_, appended) = log.append_once(&key, "order-2", &message(2)).await.unwrap();
        assert!(appended, "{name}");
        log.append(&key, &message(3)).await.unwrap();
        let history = log.read(&key, None, 10).await.unwrap();
        assert_eq!(offsets(&history), [1, 2, 3], "{name}");
        // A deleted history forgets its ids with its entries.
        log.delete(&key).await.unwrap();
        let (_, appended) = log.append_once(&key, "order-1", &message(1)).await.unwrap();
        assert!(appended, "{name}");
        log.delete(&key).await.unwrap();
    }
}
