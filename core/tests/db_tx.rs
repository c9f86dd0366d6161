//! Transactions under contention: what payments rely on. Two transactions that lock one row
//! never both act on what they read: the second waits for the first (MySQL/MariaDB row lock,
//! SQLite's `BEGIN IMMEDIATE` write lock) or fails, and then sees the first one's write.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::sync::Arc;

use livegate_core::db::orders::{self, NewOrder};
use livegate_core::db::testing::{backends, TestDatabase};
use livegate_core::db::{gifts, rooms, users, Backend, Database, DbConfig, DbError, NewRoom};
use livegate_core::Secret;

/// A user, a room, a gift and an order for it in status `created`; returns the order id.
async fn order(db: &Database) -> i64 {
    let user = users::create(db, "ana", "hash", "viewer", 1).await.unwrap();
    let room = rooms::create(
        db,
        &NewRoom {
            owner_id: user,
            title: "t",
            stream_key: "k",
            stream_key_expires_at: None,
            publish_allow_cidrs: None,
        },
        1,
    )
    .await
    .unwrap();
    let gift = gifts::create(db, "rose", 100, 1).await.unwrap();
    orders::create(
        db,
        &NewOrder {
            user_id: user,
            room_id: room,
            gift_id: gift,
            amount: 100,
            currency: "EUR",
            status: "created",
            payment_ref: None,
        },
        1,
    )
    .await
    .unwrap()
}

/// One payment callback: pays the order if it is still `created`. `Ok(true)` when this call
/// paid it.
async fn pay(db: &Database, id: i64) -> Result<bool, DbError> {
    let mut tx = db.begin().await?;
    let order = orders::lock(&mut tx, id).await?.unwrap();
    if order.status != "created" {
        return Ok(false);
    }
    orders::set_status(&mut tx, id, "paid").await?;
    tx.commit().await?;
    Ok(true)
}

/// Another pool on the same database, so that two transactions hold two connections (a
/// SQLite pool has one).
async fn second_pool(test_db: &TestDatabase) -> Database {
    Database::connect(&DbConfig {
        url: Secret::new(test_db.url.clone()),
        max_connections: 4,
        acquire_timeout_ms: 10_000,
        migrate_on_start: false,
        ..DbConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_second_transaction_locking_the_row_waits_and_sees_the_first_ones_write() {
    for backend in backends() {
        let test_db = TestDatabase::create(backend).await.unwrap();
        let db = test_db.db.clone();
        let other = second_pool(&test_db).await;
        let id = order(&db).await;

        let mut first = db.begin().await.unwrap();
        assert_eq!(
            orders::lock(&mut first, id).await.unwrap().unwrap().status,
            "created"
        );
        let second = tokio::spawn({
            let other = other.clone();
            async move { pay(&other, id).await }
        });
        if backend == Backend::Mysql {
            // Proof that the second one is waiting for the row, not reading past it.
            let Database::Mysql(pool) = &db else {
                unreachable!()
            };
            livegate_tests::wait_until("the second transaction to wait for the lock", || {
                let pool = pool.clone();
                async move {
                    let waiting: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM information_schema.innodb_trx \
                         WHERE trx_state = 'LOCK WAIT'",
                    )
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                    (waiting > 0).then_some(())
                }
            })
            .await;
        }
        orders::set_status(&mut first, id, "paid").await.unwrap();
        first.commit().await.unwrap();

        // Waited, then saw `paid`: it must not pay again. (Failing is allowed too.)
        let second = second.await.unwrap();
        assert!(!matches!(second, Ok(true)), "{backend:?}: paid twice");
        let stored = orders::get(&db, id).await.unwrap().unwrap();
        assert_eq!(stored.status, "paid", "{backend:?}");
        other.close().await;
    }
}

#[tokio::test]
async fn concurrent_payments_of_one_order_pay_it_once() {
    for backend in backends() {
        let test_db = TestDatabase::create(backend).await.unwrap();
        let pools = [test_db.db.clone(), second_pool(&test_db).await];
        let id = order(&pools[0]).await;
        let start = Arc::new(tokio::sync::Barrier::new(8));
        let attempts: Vec<_> = (0..8)
            .map(|i| {
                let db = pools[i % 2].clone();
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    pay(&db, id).await
                })
            })
            .collect();
        let mut paid = 0;
        for attempt in attempts {
            // A waiting transaction that timed out failed: it did not pay.
            if let Ok(true) = attempt.await.unwrap() {
                paid += 1;
            }
        }
        assert_eq!(paid, 1, "{backend:?}");
        let stored = orders::get(&pools[0], id).await.unwrap().unwrap();
        assert_eq!(stored.status, "paid", "{backend:?}");
        pools[1].close().await;
    }
}
