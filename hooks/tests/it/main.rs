//! Integration tests of livegate-hooks: the real service on 127.0.0.1:0 against SQLite (and
//! MariaDB with `LIVEGATE_TEST_MYSQL_URL`), the in-process bus (and Redis with
//! `LIVEGATE_TEST_REDIS_URL`).
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod admin;
mod binary;
mod bus_sync;
mod configs;
mod failures;
mod input;
mod nginx;
mod reconcile;
mod rtmp;
mod secrets;
mod shutdown;
mod srs;
mod srs_api;
mod support;
mod zlm;
mod zlm_origin;
