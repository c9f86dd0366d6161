//! Integration tests of the recorder against real components: ffmpeg-made recordings,
//! SQLite and the in-process bus always, MariaDB and Redis when configured, s3s-fs, moto.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod config;
mod kill;
mod local;
mod media;
mod orphans;
mod pictures;
mod rtmp;
mod s3;
mod support;
