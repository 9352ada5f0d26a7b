//! Placeholder: the SPSC ring channel crate.
