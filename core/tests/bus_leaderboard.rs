//! `Leaderboard` on both backends: a board exists only once replaced (rebuilt), an older
//! version never replaces a newer one, and the top comes highest first.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod support;

use livegate_core::bus::Bus;

#[tokio::test]
async fn a_board_keeps_its_newest_version_and_ranks_highest_first() {
    for (name, config) in support::configs_with(|_| {}) {
        let bus = Bus::connect(&config).unwrap();
        let board = bus.leaderboard("test");
        let key = format!("room-{}", std::process::id());
        assert_eq!(board.top(&key, 10).await.unwrap(), None, "{name}");

        assert!(board.replace(&key, 0, &[]).await.unwrap(), "{name}");
        assert_eq!(
            board.top(&key, 10).await.unwrap(),
            Some(vec![]),
            "{name}: empty, but exists"
        );
        let newer = [("1".into(), 500), ("2".into(), 700), ("3".into(), 1)];
        assert!(board.replace(&key, 3, &newer).await.unwrap(), "{name}");
        // A rebuild that read the database before the last one is dropped.
        assert!(
            !board
                .replace(&key, 2, &[("1".into(), 500), ("2".into(), 300)])
                .await
                .unwrap(),
            "{name}"
        );
        // The same version again is the same snapshot: taken.
        assert!(board.replace(&key, 3, &newer).await.unwrap(), "{name}");
        let top = board.top(&key, 2).await.unwrap().unwrap();
        assert_eq!(
            top,
            [("2".to_owned(), 700), ("1".to_owned(), 500)],
            "{name}: the version is not a member"
        );
        let all = board.top(&key, 10).await.unwrap().unwrap();
        assert_eq!(all.len(), 3, "{name}");
        bus.clear().await.unwrap();
    }
}
