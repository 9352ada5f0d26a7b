//! Placeholder: domain schedulers.
