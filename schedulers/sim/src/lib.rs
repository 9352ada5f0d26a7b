//! Placeholder: scheduler simulator.
