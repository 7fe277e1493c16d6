//! The command-line clients of a running server: `ruststack attach`.

pub mod attach;
