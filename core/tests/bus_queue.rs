//! `Queue<T>` on both backends: leases that workers extend, delivery counts, dead letters and
//! redrive, blocking reads.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod support;

use std::time::{Duration, Instant};

use livegate_core::bus::{Bus, Failed, Queue, QueueOptions};
use livegate_tests::wait_until;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Upload {
    file: String,
}

fn upload(file: &str) -> Upload {
    Upload { file: file.into() }
}

/// A queue with these settings on each backend.
fn queues(lease: Duration, max_deliveries: u32) -> Vec<(&'static str, Bus, Queue<Upload>)> {
    support::configs_with(|_| {})
        .into_iter()
        .map(|(name, config)| {
            let bus = Bus::connect(&config).unwrap();
            let queue = bus.queue(QueueOptions {
                lease,
                max_deliveries,
                ..QueueOptions::new("uploads")
            });
            (name, bus, queue)
        })
        .collect()
}

#[tokio::test]
async fn an_extended_lease_is_not_swept_and_an_expired_one_is() {
    // Long enough that "extend, then sweep" never spans a lease, even on a busy machine.
    let lease = Duration::from_secs(2);
    for (name, bus, queue) in queues(lease, 5) {
        queue.push(&upload("long")).await.unwrap();
        queue.push(&upload("crashed")).await.unwrap();
        let worker = queue.consumer("worker-1");
        let sweeper = queue.consumer("worker-2");
        let taken = worker.next(2, Duration::ZERO).await.unwrap();
        assert_eq!(taken.len(), 2, "{name}");
        let (long, crashed) = (&taken[0], &taken[1]);
        assert_eq!(long.payload, upload("long"), "{name}");
        assert_eq!((long.delivery, crashed.delivery), (1, 1), "{name}");

        // The worker keeps extending the long job's lease; it stopped touching the other.
        let swept = wait_until("the untouched job to be swept", || async {
            assert!(queue.extend(long).await.unwrap(), "{name}: lease lost");
            let swept = sweeper.reclaim(10).await.unwrap();
            assert!(
                swept.iter().all(|job| job.id != long.id),
                "{name}: an extended job was swept"
            );
            (!swept.is_empty()).then_some(swept)
        })
        .await;
        assert_eq!(swept.len(), 1, "{name}");
        assert_eq!(swept[0].id, crashed.id, "{name}");
        assert_eq!(
            swept[0].delivery, 2,
            "{name}: the second delivery is counted"
        );
        // The first worker lost it: it can neither extend nor fail it any more.
        assert!(!queue.extend(crashed).await.unwrap(), "{name}");
        assert_eq!(
            queue.fail(crashed, "too late").await.unwrap(),
            Failed::LeaseLost,
            "{name}"
        );
        assert!(queue.extend(long).await.unwrap(), "{name}");

        queue.ack(long).await.unwrap();
        queue.ack(&swept[0]).await.unwrap();
        assert_eq!(queue.outstanding().await.unwrap(), 0, "{name}");
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn holding_a_job_keeps_it_through_several_leases() {
    let lease = Duration::from_millis(600);
    for (name, bus, queue) in queues(lease, 5) {
        queue.push(&upload("remux")).await.unwrap();
        let job = queue
            .consumer("worker-1")
            .next(1, Duration::ZERO)
            .await
            .unwrap()
            .remove(0);
        let sweeper = queue.consumer("worker-2");
        let started = Instant::now();
        // The work: three leases long, while another worker sweeps all along.
        let work = wait_until("three leases to pass", || async {
            assert!(
                sweeper.reclaim(10).await.unwrap().is_empty(),
                "{name}: a held job was swept"
            );
            (started.elapsed() >= lease * 3).then_some(())
        });
        tokio::select! {
            () = work => {}
            lost = queue.hold(&job) => panic!("{name}: hold ended: {lost}"),
        }
        queue.ack(&job).await.unwrap();
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn failed_jobs_are_retried_then_dead_lettered_and_can_be_redriven() {
    for (name, bus, queue) in queues(Duration::from_secs(60), 2) {
        queue.push(&upload("bad.flv")).await.unwrap();
        let worker = queue.consumer("worker-1");

        let first = worker.next(1, Duration::ZERO).await.unwrap().remove(0);
        assert_eq!(first.delivery, 1, "{name}");
        assert_eq!(
            queue.fail(&first, "ffmpeg exited 1").await.unwrap(),
            Failed::Retrying
        );
        let second = worker.next(1, Duration::ZERO).await.unwrap().remove(0);
        assert_eq!((second.delivery, &second.payload), (2, &upload("bad.flv")));
        assert_eq!(
            queue.fail(&second, "ffmpeg exited 1 again").await.unwrap(),
            Failed::DeadLettered,
            "{name}"
        );
        assert!(worker.next(1, Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(queue.outstanding().await.unwrap(), 0, "{name}");

        // Inspectable: what, how often, why.
        let dead = queue.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1, "{name}");
        assert_eq!(dead[0].payload, Some(upload("bad.flv")), "{name}");
        assert_eq!(dead[0].deliveries, 2, "{name}");
        assert_eq!(dead[0].reason, "ffmpeg exited 1 again", "{name}");
        assert!(dead[0].raw.contains("bad.flv"), "{name}");

        // Re-drivable, with a fresh count of deliveries.
        assert!(queue.redrive(&dead[0].id).await.unwrap(), "{name}");
        assert!(!queue.redrive(&dead[0].id).await.unwrap(), "{name}: twice");
        assert_eq!(queue.dead_letter_count().await.unwrap(), 0, "{name}");
        let again = worker.next(1, Duration::ZERO).await.unwrap().remove(0);
        assert_eq!((again.delivery, again.payload), (1, upload("bad.flv")));
        queue.ack_id(&again.id).await.unwrap();
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn a_job_whose_lease_runs_out_on_its_last_delivery_is_dead_lettered() {
    let lease = Duration::from_millis(200);
    for (name, bus, queue) in queues(lease, 2) {
        queue.push(&upload("hangs")).await.unwrap();
        let worker = queue.consumer("worker");
        assert_eq!(worker.next(1, Duration::ZERO).await.unwrap().len(), 1);
        // Second delivery, by the sweep.
        let second = wait_until("the second delivery", || async {
            worker.reclaim(1).await.unwrap().pop()
        })
        .await;
        assert_eq!(second.delivery, 2, "{name}");
        // No third: the sweep dead-letters it instead.
        wait_until("the job to be dead-lettered", || async {
            assert!(worker.reclaim(1).await.unwrap().is_empty(), "{name}");
            (queue.dead_letter_count().await.unwrap() == 1).then_some(())
        })
        .await;
        let dead = queue.dead_letters(1).await.unwrap().remove(0);
        assert_eq!(dead.deliveries, 2, "{name}");
        assert_eq!(queue.outstanding().await.unwrap(), 0, "{name}");
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn a_blocked_reader_wakes_for_a_new_job_and_commands_still_flow() {
    for (name, bus, queue) in queues(Duration::from_secs(60), 5) {
        let worker = queue.consumer("worker");
        // Creates the group, as a running worker would have.
        assert!(worker.next(1, Duration::ZERO).await.unwrap().is_empty());
        let waiting = tokio::spawn({
            let worker = worker.clone();
            async move { worker.next(1, Duration::from_secs(30)).await }
        });
        // While it blocks, the bus answers other commands (the blocking read has a
        // connection of its own).
        for _ in 0..3 {
            bus.ping().await.unwrap();
            assert_eq!(queue.outstanding().await.unwrap(), 0, "{name}");
        }
        queue.push(&upload("new")).await.unwrap();
        let got = waiting.await.unwrap().unwrap();
        assert_eq!(got.len(), 1, "{name}");
        assert_eq!(got[0].payload, upload("new"), "{name}");
        bus.clear().await.unwrap();
    }
}

#[tokio::test]
async fn two_handles_to_one_name_share_the_queue() {
    for (name, config) in support::configs_with(|_| {}) {
        let bus = Bus::connect(&config).unwrap();
        let a: Queue<Upload> = bus.queue(QueueOptions::new("shared"));
        let b: Queue<Upload> = bus.queue(QueueOptions::new("shared"));
        a.push(&upload("x")).await.unwrap();
        let got = b.consumer("w").next(1, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1, "{name}");
        bus.clear().await.unwrap();
    }
}
