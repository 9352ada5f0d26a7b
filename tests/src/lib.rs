//! Placeholder: integration tests.
