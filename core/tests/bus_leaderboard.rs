//! `Leaderboard` on both backends: a board exists only once replaced (rebuilt), additions
//! reach only existing boards, and the top comes highest first.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod support;

use livegate_core::bus::Bus;

#[tokio::test]
async fn a_board_is_rebuilt_before_it_counts_and_ranks_highest_first() {
    for (name, config) in support::configs_with(|_| {}) {
        let bus = Bus::connect(&config).unwrap();
        let board = bus.leaderboard("test");
        let key = format!("room-{}", std::process::id());
        assert_eq!(board.top(&key, 10).await.unwrap(), None, "{name}");
        // Missing: an addition does not start a partial board.
        assert!(!board.add(&key, "7", 100).await.unwrap(), "{name}");
        assert_eq!(board.top(&key, 10).await.unwrap(), None, "{name}");

        board.replace(&key, &[]).await.unwrap();
        assert_eq!(
            board.top(&key, 10).await.unwrap(),
            Some(vec![]),
            "{name}: empty, but exists"
        );
        board
            .replace(&key, &[("1".into(), 500), ("2".into(), 300)])
            .await
            .unwrap();
        assert!(board.add(&key, "2", 400).await.unwrap(), "{name}");
        assert!(board.add(&key, "3", 1).await.unwrap(), "{name}");
        let top = board.top(&key, 2).await.unwrap().unwrap();
        assert_eq!(
            top,
            [("2".to_owned(), 700), ("1".to_owned(), 500)],
            "{name}"
        );
        let all = board.top(&key, 10).await.unwrap().unwrap();
        assert_eq!(all.len(), 3, "{name}");
        bus.clear().await.unwrap();
    }
}
