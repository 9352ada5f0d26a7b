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
pub mod web;

use std::path::{Path, PathBuf};

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
    /// The message libraries it imports, directly or not (canonical paths).
    pub imported: Vec<PathBuf>,
}

/// Deepest chain of `import_messages_from` (a imports b imports c ...).
pub const MAX_IMPORT_DEPTH: usize = 16;

/// Parses and checks `src` (named `file_name` in diagnostics).
/// A spec longer than [`hallows_source::MAX_SOURCE_SIZE`] is refused unread.
pub fn check_str(file_name: &str, src: &str) -> Result<Spec, Diagnostics> {
    let mut diags = Diagnostics::new();
    if src.len() as u64 > hallows_source::MAX_SOURCE_SIZE {
        diags.push_global(format!("spec {file_name} is {} bytes; at most {} are read", src.len(), hallows_source::MAX_SOURCE_SIZE));
        return Err(diags);
    }
    let file = diags.add_file(file_name, src);
    let dir = Path::new(file_name).parent().unwrap_or(Path::new("")).to_path_buf();
    let mut loader = Loader { stack: Vec::new(), loaded: Vec::new() };
    let Some(ast) = loader.load(&mut diags, file, src, &dir) else { return Err(diags) };
    match model::check(ast) {
        Ok(model) => Ok(Spec {
            file_name: file_name.to_owned(),
            source: src.to_owned(),
            model,
            imported: loader.loaded.into_iter().map(|(p, _)| p).collect(),
        }),
        Err(errors) => {
            for e in errors {
                diags.push(file, e);
            }
            Err(diags)
        }
    }
}

/// Resolves `import_messages_from`: each library is read once, checked on
/// its own (its errors at its own file:line:col), and its types merged into
/// the importer ahead of the importer's own, shown at the import's path.
struct Loader {
    /// Canonical paths of the libraries being loaded (cycle detection).
    stack: Vec<PathBuf>,
    /// Libraries loaded so far, with their imports merged in.
    loaded: Vec<(PathBuf, ast::Spec)>,
}

impl Loader {
    fn load(&mut self, diags: &mut Diagnostics, file: diag::FileId, src: &str, dir: &Path) -> Option<ast::Spec> {
        let mut spec = match parser::parse(src) {
            Ok(s) => s,
            Err(d) => {
                diags.push(file, d);
                return None;
            }
        };
        let (mut structs, mut enums) = (Vec::new(), Vec::new());
        let (mut seen_structs, mut seen_enums): (Vec<ast::StructDecl>, Vec<ast::EnumDecl>) = (Vec::new(), Vec::new());
        let mut ok = true;
        for imp in spec.imports.clone() {
            let Some(lib) = self.library(diags, file, &imp, dir) else {
                ok = false;
                continue;
            };
            // A type reached twice (a library imported directly and through
            // another: a diamond) is given once; compared without spans.
            for mut s in lib.service.structs {
                s.respan(&(0..0));
                if !seen_structs.contains(&s) {
                    seen_structs.push(s.clone());
                    s.respan(&imp.span);
                    structs.push(s);
                }
            }
            for mut e in lib.service.enums {
                e.respan(&(0..0));
                if !seen_enums.contains(&e) {
                    seen_enums.push(e.clone());
                    e.respan(&imp.span);
                    enums.push(e);
                }
            }
        }
        if !ok {
            return None;
        }
        structs.append(&mut spec.service.structs);
        enums.append(&mut spec.service.enums);
        spec.service.structs = structs;
        spec.service.enums = enums;
        Some(spec)
    }

    /// The checked library `imp` names (relative to `dir`), its own imports
    /// merged; errors about the import itself are reported at its path.
    fn library(&mut self, diags: &mut Diagnostics, file: diag::FileId, imp: &ast::Import, dir: &Path) -> Option<ast::Spec> {
        let path = dir.join(&imp.path);
        let at = |message: String| Diag::new(imp.span.clone(), message).with_label("imported here");
        let canon = match path.canonicalize() {
            Ok(c) => c,
            Err(e) => {
                diags.push(file, at(format!("cannot read imported message library \"{}\" ({}): {e}", imp.path, path.display()))
                    .with_help("the path is relative to the importing file"));
                return None;
            }
        };
        if let Some(i) = self.stack.iter().position(|p| *p == canon) {
            let chain: Vec<String> = self.stack[i..].iter().chain([&canon]).map(|p| p.display().to_string()).collect();
            diags.push(file, at(format!("import cycle: {}", chain.join(" imports ")))
                .with_help("move the types both files need into a library that imports neither"));
            return None;
        }
        if let Some((_, lib)) = self.loaded.iter().find(|(p, _)| *p == canon) {
            return Some(lib.clone());
        }
        if self.stack.len() >= MAX_IMPORT_DEPTH {
            diags.push(file, at(format!("imports nest more than {MAX_IMPORT_DEPTH} deep")));
            return None;
        }
        let text = match hallows_source::read(&canon) {
            Ok(t) => t,
            Err(e) => {
                diags.push(file, at(format!("cannot read imported message library \"{}\" ({}): {e}", imp.path, path.display())));
                return None;
            }
        };
        let f = diags.add_file(&path.display().to_string(), &text);
        self.stack.push(canon.clone());
        let lib = self.load(diags, f, &text, canon.parent().unwrap_or(Path::new("")));
        self.stack.pop();
        let lib = lib?;
        if !lib.library {
            diags.push(file, at(format!("\"{}\" is a service spec; `import_messages_from` takes a message library", imp.path))
                .with_help("put the shared types in a file of their own: `parseltongue_version 1; message_library NAME { message_struct ... }`"));
            return None;
        }
        if let Err(errors) = model::check(lib.clone()) {
            for e in errors {
                diags.push(f, e);
            }
            return None;
        }
        self.loaded.push((canon, lib.clone()));
        Some(lib)
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
