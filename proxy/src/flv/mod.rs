//! HTTP-FLV: one origin pull per stream ([`hub`]), read by a small HTTP/1 client
//! ([`origin`]), split into tags ([`tags`]) and fanned out to every viewer through a bounded
//! queue of its own ([`queue`]); each viewer's response body is written on its connection by
//! [`response`], outside Pingora's HTTP session.

pub mod hub;
pub mod origin;
pub mod queue;
pub mod response;
pub mod tags;
