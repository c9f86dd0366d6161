//! The real proxy binary in front of real origins: nginx serving ffmpeg-made HLS, and a paced
//! HTTP-FLV origin. One test binary, one module per concern.
#![allow(
    clippy::unwrap_used,
    reason = "a broken fixture should fail the test loudly"
)]

mod support;

mod aborts;
mod admin;
mod api_tokens;
mod cache;
mod cdn;
mod flv;
mod hls;
mod hub;
mod layouts;
mod limits;
mod pipelining;
mod requests;
mod revocation;
mod shutdown;
mod viewers;
mod webrtc;
