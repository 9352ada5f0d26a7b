//! Inline Parseltongue specs as proc-macros.
//!
//! `service!` compiles a spec written inside the macro (a string literal,
//! which keeps exact line and column numbers in diagnostics, or bare tokens);
//! `include_spec!` compiles a `.pt` file relative to the crate's manifest
//! directory. Both expand to the generated items in place, so call them
//! inside a `mod`. This crate only adapts; the language is `parseltongue`.
#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use quote::quote;

fn expand(name: &str, src: &str, track: Option<&str>) -> TokenStream {
    match parseltongue::compile_tokens(name, src, &parseltongue::Options::default()) {
        Ok(tokens) => {
            let track = track.map(|p| quote!(const _: &str = include_str!(#p);));
            quote!(#track #tokens).into()
        }
        Err(diags) => {
            let msg = diags.to_string();
            quote!(compile_error!(#msg);).into()
        }
    }
}

/// Compiles an inline spec: `service! { r#"parseltongue_version 1; service s { ... }"# }`
/// or the same text as bare tokens.
#[proc_macro]
pub fn service(input: TokenStream) -> TokenStream {
    let input2: proc_macro2::TokenStream = input.into();
    if let Ok(lit) = syn::parse2::<syn::LitStr>(input2.clone()) {
        return expand("inline spec", &lit.value(), None);
    }
    expand("inline spec (tokens)", &input2.to_string(), None)
}

/// Compiles a spec file: `include_spec!("service.pt")`, relative to `CARGO_MANIFEST_DIR`.
#[proc_macro]
pub fn include_spec(input: TokenStream) -> TokenStream {
    let lit = match syn::parse::<syn::LitStr>(input) {
        Ok(l) => l,
        Err(e) => return e.to_compile_error().into(),
    };
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let path = std::path::Path::new(&dir).join(lit.value());
    match std::fs::read_to_string(&path) {
        // The full path: imports resolve next to the spec, whatever the
        // compiler's working directory.
        Ok(src) => expand(path.to_str().unwrap_or(&lit.value()), &src, path.to_str()),
        Err(e) => {
            let msg = format!("cannot read spec {}: {e}", path.display());
            quote!(compile_error!(#msg);).into()
        }
    }
}
