//! `livegate`: one binary for people. `livegate up` runs the whole toolkit in one process on
//! embedded defaults; the other commands are the tools an operator reaches for (minting and
//! checking play tokens, checking configuration files). Each service also keeps its own small
//! binary for production.

pub mod check;
pub mod data;
pub mod doctor;
pub mod loadtest;
pub mod ops;
pub mod token_tool;
pub mod up;
