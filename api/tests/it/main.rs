//! Integration tests of livegate-api: the real service on 127.0.0.1:0 against SQLite (and
//! MariaDB with `LIVEGATE_TEST_MYSQL_URL`), the in-process bus (and Redis with
//! `LIVEGATE_TEST_REDIS_URL`).
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod accounts;
mod binary;
mod chat;
mod chat_failover;
mod chat_moderation;
mod chat_presence;
mod chat_store;
mod chat_support;
mod configs;
mod connections;
mod console;
mod console_admin;
mod console_support;
mod contract;
mod gifts;
mod input;
mod kicks;
mod openapi;
mod orders;
mod payments_crash;
mod play;
mod revocations;
mod rooms;
mod secrets;
mod support;
mod web;
