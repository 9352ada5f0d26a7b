//! Placeholder: paging.
