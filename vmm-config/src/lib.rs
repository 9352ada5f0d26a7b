//! Placeholder: manifest.
