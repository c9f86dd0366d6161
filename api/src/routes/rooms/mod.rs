//! Rooms: reading (anyone), managing (owner or admin), and how they are shown.

pub mod cover;
pub mod history;
pub mod kick;
pub mod manage;
pub mod read;
pub mod view;
