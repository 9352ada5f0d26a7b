//! hv
