//! Placeholder: abi.
