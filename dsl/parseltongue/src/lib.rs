//! Parseltongue: the service spec language of RustHallows, with its
//! extensions Basilisk (API services) and Nagini (UI services).
//!
//! This crate owns the language: lexer, parser, semantic checks, layouts and
//! layout hashes ([`model`]), the Rust code generator ([`codegen`]), the
//! build-script entry point ([`build`]) and, with the `manifest` feature,
//! the cross-checks of specs against a loaded manifest ([`manifest`]). It is
//! a host crate; what it generates is `no_std` Rust that depends only on
//! `zerocopy`, `hallows-ring` and `hallows-sched`. It must never panic on
//! any input: every problem is a [`Diagnostics`] entry with file:line:col.
//! The language reference is `docs/parseltongue.md`.
#![forbid(unsafe_code)]

pub mod ast;
pub mod build;
pub mod codegen;
pub mod diag;
pub mod lexer;
#[cfg(feature = "manifest")]
pub mod manifest;
pub mod model;
pub mod parser;

use std::path::Path;

pub use codegen::Options;
pub use diag::{Diag, Diagnostics, Located};
pub use model::Model;

/// A checked spec and the file it came from.
#[derive(Clone, Debug)]
pub struct Spec {
    /// As given (shown in diagnostics).
    pub file_name: String,
    pub source: String,
    pub model: Model,
}

/// Parses and checks `src` (named `file_name` in diagnostics).
/// A spec longer than [`hallows_source::MAX_SOURCE_SIZE`] is refused unread.
pub fn check_str(file_name: &str, src: &str) -> Result<Spec, Diagnostics> {
    let mut diags = Diagnostics::new();
    if src.len() as u64 > hallows_source::MAX_SOURCE_SIZE {
        diags.push_global(format!("spec {file_name} is {} bytes; at most {} are read", src.len(), hallows_source::MAX_SOURCE_SIZE));
        return Err(diags);
    }
    let file = diags.add_file(file_name, src);
    let result = parser::parse(src).map_err(|d| vec![d]).and_then(model::check);
    match result {
        Ok(model) => Ok(Spec { file_name: file_name.to_owned(), source: src.to_owned(), model }),
        Err(errors) => {
            for e in errors {
                diags.push(file, e);
            }
            Err(diags)
        }
    }
}

/// Reads, parses and checks a spec file: only a regular file, of at most
/// [`hallows_source::MAX_SOURCE_SIZE`] bytes, is read.
pub fn check_file(path: &Path) -> Result<Spec, Diagnostics> {
    match hallows_source::read(path) {
        Ok(src) => check_str(&path.display().to_string(), &src),
        Err(e) => {
            let mut d = Diagnostics::new();
            d.push_global(format!("cannot read spec {}: {e}", path.display()));
            Err(d)
        }
    }
}

/// Compiles a spec to formatted Rust source.
pub fn compile_str(file_name: &str, src: &str, opts: &Options) -> Result<String, Diagnostics> {
    let spec = check_str(file_name, src)?;
    let mut opts = opts.clone();
    opts.source_name.get_or_insert_with(|| file_name.to_owned());
    Ok(codegen::to_source(&spec.model, &opts))
}

/// Compiles a spec to tokens (for the proc-macro).
pub fn compile_tokens(file_name: &str, src: &str, opts: &Options) -> Result<proc_macro2::TokenStream, Diagnostics> {
    let spec = check_str(file_name, src)?;
    Ok(codegen::generate(&spec.model, opts))
}
