//! Basilisk's web layer: the checks of `json_struct`, `resource`,
//! `http_route`, `authentication` and `rate_limit`, and the Rust they
//! generate (module `web` of the generated code, on `hallows-basilisk`).
//!
//! What is generated is small on purpose: a struct per JSON type and
//! resource with its validating `from_map` and its `to_json`, a `Routes`
//! trait with one async method per hand-written route, and `App::handle`,
//! whose router is a chain of comparisons on path segments. The REST
//! actions themselves, the token check and the rate limiter are generic
//! code in `hallows-basilisk`, tested there.

use proc_macro2::{Literal as Lit, TokenStream};
use quote::{format_ident, quote};

use crate::ast::{self, Ident, Literal, RuleKind, Span, Value, WebDecls};
use crate::diag::Diag;

/// A field type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldTy {
    Str,
    Bool,
    /// An integer type: its name and range.
    Int(&'static str, i128, i128),
}

const INTS: &[(&str, i128, i128)] = &[
    ("u8", 0, u8::MAX as i128),
    ("u16", 0, u16::MAX as i128),
    ("u32", 0, u32::MAX as i128),
    ("u64", 0, u64::MAX as i128),
    ("i8", i8::MIN as i128, i8::MAX as i128),
    ("i16", i16::MIN as i128, i16::MAX as i128),
    ("i32", i32::MIN as i128, i32::MAX as i128),
    ("i64", i64::MIN as i128, i64::MAX as i128),
];

/// A checked field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub ty: FieldTy,
    pub required: bool,
    pub default: Option<Literal>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min: Option<i128>,
    pub max: Option<i128>,
    pub pattern: Option<String>,
    pub one_of: Vec<String>,
}

impl Field {
    /// Whether the Rust field is an `Option` (neither required nor defaulted).
    pub fn optional(&self) -> bool {
        !self.required && self.default.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonType {
    /// The Rust type name (CamelCase).
    pub name: String,
    pub fields: Vec<Field>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// `todo`: key prefix and name in messages.
    pub name: String,
    pub ty: JsonType,
    /// `/todos`.
    pub path: String,
    pub page_size: u64,
}

/// A path segment of a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    U64(String),
    Str(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    pub path: String,
    pub segments: Vec<Segment>,
    pub handler: String,
    /// A json_struct's Rust name.
    pub accepts: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per_ns: u64,
    pub burst: u32,
    pub clients: u32,
}

/// The checked web layer of a spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Web {
    pub structs: Vec<JsonType>,
    pub resources: Vec<Resource>,
    pub routes: Vec<Route>,
    pub auth: bool,
    pub rate_limit: Option<RateLimit>,
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
/// Names the generated `web` module defines.
const RESERVED: &[&str] = &["App", "Routes", "ROUTES"];
/// Paths the generated router answers itself.
const BUILT_IN: &[&str] = &["/_stats"];

fn snake(n: &str) -> bool {
    n.starts_with(|c: char| c.is_ascii_lowercase()) && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn camel(n: &str) -> bool {
    n.starts_with(|c: char| c.is_ascii_uppercase()) && n.chars().all(|c| c.is_ascii_alphanumeric())
}

/// `todo_item` → `TodoItem`.
pub fn camel_of(n: &str) -> String {
    n.split('_').filter(|p| !p.is_empty()).map(|p| p[..1].to_ascii_uppercase() + &p[1..]).collect()
}

/// Checks the web declarations; `basilisk` says whether the spec uses the
/// extension, `message_types` the names the spec's messages already take.
pub fn check(d: &WebDecls, basilisk: bool, message_types: &[&str], errors: &mut Vec<Diag>) -> Option<Web> {
    let first = d.first_span()?;
    if !basilisk {
        errors.push(Diag::new(first, "web declarations (`json_struct`, `resource`, `http_route`, `authentication`, `rate_limit`) belong to the Basilisk extension")
            .with_label("Basilisk construct")
            .with_help("add `use_extension basilisk;` after `parseltongue_version 1;`"));
        return None;
    }
    let before = errors.len();
    let mut web = Web::default();
    let mut types: Vec<(String, Span)> = Vec::new();
    let mut claim = |name: &str, span: &Span, errors: &mut Vec<Diag>| {
        if let Some((_, prev)) = types.iter().find(|(n, _)| n == name) {
            errors.push(Diag::new(span.clone(), format!("type `{name}` is declared twice")).with_label("second declaration").with_related(prev.clone(), "first declared here"));
        } else if message_types.contains(&name) {
            errors.push(Diag::new(span.clone(), format!("type `{name}` is already a message type of this spec")).with_help("rename one of them"));
        } else if RESERVED.contains(&name) {
            errors.push(Diag::new(span.clone(), format!("`{name}` is reserved for the generated web code")).with_help("choose another name"));
        }
        types.push((name.to_owned(), span.clone()));
    };
    for s in &d.structs {
        if !camel(&s.name.name) {
            errors.push(Diag::new(s.name.span.clone(), format!("json_struct name `{}` must be CamelCase", s.name.name)).with_label("not CamelCase"));
        }
        claim(&s.name.name, &s.name.span, errors);
        let fields = fields(&s.fields, false, errors);
        web.structs.push(JsonType { name: s.name.name.clone(), fields });
    }
    let mut paths: Vec<(String, Span)> = Vec::new();
    for r in &d.resources {
        if !snake(&r.name.name) {
            errors.push(Diag::new(r.name.span.clone(), format!("resource name `{}` must be snake_case", r.name.name))
                .with_label("not snake_case")
                .with_help("it names the records' keys; its type is the CamelCase form (`todo_item` is `TodoItem`)"));
        }
        let ty = camel_of(&r.name.name);
        claim(&ty, &r.name.span, errors);
        let (path, pspan) = &r.path;
        let ok = path.len() > 1 && path.starts_with('/') && !path.ends_with('/') && path[1..].split('/').all(literal_segment);
        if !ok {
            errors.push(Diag::new(pspan.clone(), format!("resource path \"{path}\" must be `/` and literal segments (letters, digits, `-`, `_`, `.`), without a trailing `/`"))
                .with_label("bad path")
                .with_help("e.g. \"/todos\" or \"/api/v1/todos\"; the record path `/todos/{id}` is implied"));
        }
        if let Some((_, prev)) = paths.iter().find(|(p, _)| p == path) {
            errors.push(Diag::new(pspan.clone(), format!("two resources at \"{path}\"")).with_related(prev.clone(), "first here"));
        }
        paths.push((path.clone(), pspan.clone()));
        let page_size = match r.page_size {
            None => 20,
            Some((n, ref span)) => {
                if !(1..=255).contains(&n) {
                    errors.push(Diag::new(span.clone(), format!("page_size {n} is out of range")).with_label("from 1 to 255"));
                }
                n.clamp(1, 255) as u64
            }
        };
        let fields = fields(&r.fields, true, errors);
        web.resources.push(Resource { name: r.name.name.clone(), ty: JsonType { name: ty, fields }, path: path.clone(), page_size });
    }
    let mut handlers: Vec<(String, Span)> = Vec::new();
    for h in &d.routes {
        let method = h.method.name.clone();
        if !METHODS.contains(&method.as_str()) {
            errors.push(Diag::new(h.method.span.clone(), format!("`{method}` is not a method a route can declare"))
                .with_label("unknown method")
                .with_note("the methods are GET, POST, PUT, PATCH and DELETE (HEAD is answered by GET routes)")
                .suggest(&method, METHODS.iter().copied()));
        }
        let segments = route_segments(&h.path, errors);
        if BUILT_IN.contains(&h.path.0.as_str()) {
            errors.push(Diag::new(h.path.1.clone(), format!("\"{}\" is answered by the framework (per-route statistics)", h.path.0)).with_help("choose another path"));
        }
        if !snake(&h.handler.name) {
            errors.push(Diag::new(h.handler.span.clone(), format!("handler name `{}` must be snake_case", h.handler.name)).with_label("not snake_case"));
        }
        if let Some((_, prev)) = handlers.iter().find(|(n, _)| *n == h.handler.name) {
            errors.push(Diag::new(h.handler.span.clone(), format!("two routes are handled by `{}`", h.handler.name)).with_related(prev.clone(), "first here"));
        }
        handlers.push((h.handler.name.clone(), h.handler.span.clone()));
        let accepts = h.accepts.as_ref().map(|a| accepts(a, &method, d, errors));
        web.routes.push(Route { method, path: h.path.0.clone(), segments, handler: h.handler.name.clone(), accepts });
    }
    // Two declarations answering the same method on the same path.
    let mut seen: Vec<(String, String, Span)> = Vec::new();
    let resource_routes = d.resources.iter().flat_map(|r| {
        let shape = r.path.0.clone();
        let one = format!("{shape}/{{u64}}");
        [("GET", shape.clone()), ("POST", shape), ("GET", one.clone()), ("PUT", one.clone()), ("PATCH", one.clone()), ("DELETE", one)].map(move |(m, p)| (m.to_owned(), p, r.path.1.clone()))
    });
    let custom = web.routes.iter().zip(&d.routes).map(|(r, h)| (r.method.clone(), shape(&r.segments), h.path.1.clone()));
    for (m, p, span) in resource_routes.chain(custom) {
        if let Some((_, _, prev)) = seen.iter().find(|(m2, p2, _)| *m2 == m && *p2 == p) {
            errors.push(Diag::new(span.clone(), format!("`{m} {p}` is declared twice")).with_related(prev.clone(), "first declared here"));
        }
        seen.push((m, p, span));
    }
    web.auth = d.auth.is_some();
    if let Some(b) = &d.rate_limit {
        web.rate_limit = rate_limit(b, errors);
    }
    (errors.len() == before).then_some(web)
}

fn literal_segment(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
}

/// `/todos/{u64}`: the path with parameter names erased.
fn shape(segs: &[Segment]) -> String {
    let mut s = String::new();
    for g in segs {
        s.push('/');
        match g {
            Segment::Literal(l) => s.push_str(l),
            Segment::U64(_) => s.push_str("{u64}"),
            Segment::Str(_) => s.push_str("{string}"),
        }
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

fn route_segments(path: &(String, Span), errors: &mut Vec<Diag>) -> Vec<Segment> {
    let (p, span) = path;
    let bad = |why: &str| Diag::new(span.clone(), format!("route path \"{p}\": {why}")).with_label("bad path").with_help("e.g. \"/links/{slug}\" or \"/todos/{id: u64}/done\"");
    if !p.starts_with('/') {
        errors.push(bad("it must start with `/`"));
        return Vec::new();
    }
    let body = &p[1..];
    if body.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for s in body.split('/') {
        if let Some(inner) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let (name, ty) = inner.split_once(':').map_or((inner.trim(), "string"), |(n, t)| (n.trim(), t.trim()));
            if !snake(name) {
                errors.push(bad(&format!("parameter `{name}` must be a snake_case name")));
            } else if names.contains(&name) {
                errors.push(bad(&format!("parameter `{name}` appears twice")));
            }
            names.push(name);
            match ty {
                "u64" => out.push(Segment::U64(name.to_owned())),
                "string" => out.push(Segment::Str(name.to_owned())),
                t => errors.push(bad(&format!("parameter type `{t}` is not `u64` or `string`"))),
            }
        } else if literal_segment(s) {
            out.push(Segment::Literal(s.to_owned()));
        } else {
            errors.push(bad(&format!("segment \"{s}\" is neither a literal (letters, digits, `-`, `_`, `.`, `~`) nor a `{{parameter}}`")));
        }
    }
    if out.len() > 16 {
        errors.push(bad("a route has at most 16 segments"));
    }
    out
}

fn accepts(a: &Ident, method: &str, d: &WebDecls, errors: &mut Vec<Diag>) -> String {
    if !matches!(method, "POST" | "PUT" | "PATCH") {
        errors.push(Diag::new(a.span.clone(), format!("a {method} route takes no body")).with_help("`accepts` is for POST, PUT and PATCH routes"));
    }
    if !d.structs.iter().any(|s| s.name.name == a.name) {
        errors.push(Diag::new(a.span.clone(), format!("`{}` is not a json_struct of this spec", a.name))
            .with_label("unknown JSON type")
            .suggest(&a.name, d.structs.iter().map(|s| s.name.name.as_str())));
    }
    a.name.clone()
}

fn rate_limit(b: &ast::Block, errors: &mut Vec<Diag>) -> Option<RateLimit> {
    let mut r = RateLimit { requests: 0, per_ns: 1_000_000_000, burst: 0, clients: 1024 };
    let mut seen_requests = false;
    for p in &b.params {
        let n = p.name.name.as_str();
        match (n, &p.value) {
            ("requests", Value::Int(v)) if (1..=1_000_000).contains(v) => {
                r.requests = *v as u32;
                seen_requests = true;
            }
            ("burst", Value::Int(v)) if (1..=1_000_000).contains(v) => r.burst = *v as u32,
            ("clients", Value::Int(v)) if (4..=65_536).contains(v) => r.clients = *v as u32,
            ("per", Value::Duration(v)) if (1_000_000..=86_400_000_000_000).contains(v) => r.per_ns = *v as u64,
            ("requests" | "burst", _) => errors.push(Diag::new(p.value_span.clone(), format!("`{n}` takes an integer from 1 to 1000000"))),
            ("clients", _) => errors.push(Diag::new(p.value_span.clone(), "`clients` (how many clients are tracked at once) takes an integer from 4 to 65536")),
            ("per", _) => errors.push(Diag::new(p.value_span.clone(), "`per` takes a duration from 1ms to 24h (e.g. `1s`, `60s`)")),
            _ => errors.push(Diag::new(p.name.span.clone(), format!("unknown rate_limit parameter `{n}`"))
                .with_note("the parameters are requests, per, burst and clients")
                .suggest(n, ["requests", "per", "burst", "clients"])),
        }
    }
    if !seen_requests {
        errors.push(Diag::new(b.keyword_span.clone(), "`rate_limit` needs `requests = N;`").with_help("e.g. `rate_limit { requests = 100; per = 1s; burst = 20; }`"));
    }
    if r.burst == 0 {
        r.burst = r.requests.max(1);
    }
    Some(r)
}

fn fields(decls: &[ast::JsonField], resource: bool, errors: &mut Vec<Diag>) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::new();
    for f in decls {
        let n = &f.name.name;
        if !snake(n) {
            errors.push(Diag::new(f.name.span.clone(), format!("field name `{n}` must be snake_case")).with_label("not snake_case"));
        }
        if resource && n == "id" {
            errors.push(Diag::new(f.name.span.clone(), "`id` is every resource's own field (assigned at create)").with_help("remove it; records have `id: u64`"));
        }
        if out.iter().any(|o| o.name == *n) {
            errors.push(Diag::new(f.name.span.clone(), format!("field `{n}` is declared twice")));
        }
        let ty = match f.ty.name.as_str() {
            "string" => FieldTy::Str,
            "bool" => FieldTy::Bool,
            t => match INTS.iter().find(|i| i.0 == t) {
                Some(&(name, lo, hi)) => FieldTy::Int(name, lo, hi),
                None => {
                    errors.push(Diag::new(f.ty.span.clone(), format!("`{t}` is not a JSON field type"))
                        .with_label("unknown type")
                        .with_note("the types are string, bool, u8, u16, u32, u64, i8, i16, i32 and i64")
                        .suggest(t, ["string", "bool", "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64"]));
                    FieldTy::Str
                }
            },
        };
        let mut field = Field { name: n.clone(), ty, required: false, default: None, min_length: None, max_length: None, min: None, max: None, pattern: None, one_of: Vec::new() };
        let mut seen: Vec<&'static str> = Vec::new();
        for r in &f.rules {
            let kw = r.kind.keyword();
            if seen.contains(&kw) {
                errors.push(Diag::new(r.span.clone(), format!("`{kw}` is given twice for field `{n}`")));
                continue;
            }
            seen.push(kw);
            let applies = matches!(
                (&r.kind, ty),
                (RuleKind::Required | RuleKind::Default(_), _)
                    | (RuleKind::MinLength(_) | RuleKind::MaxLength(_) | RuleKind::Pattern(_) | RuleKind::OneOf(_), FieldTy::Str)
                    | (RuleKind::Min(_) | RuleKind::Max(_), FieldTy::Int(..))
            );
            if !applies {
                let ok = match r.kind {
                    RuleKind::Min(_) | RuleKind::Max(_) => "integer fields",
                    _ => "string fields",
                };
                errors.push(Diag::new(r.span.clone(), format!("`{kw}` does not apply to field `{n}` of type {}", f.ty.name)).with_label(format!("for {ok}")));
                continue;
            }
            match &r.kind {
                RuleKind::Required => field.required = true,
                RuleKind::MinLength(v) => field.min_length = Some((*v).min(u64::MAX as u128) as u64),
                RuleKind::MaxLength(v) => field.max_length = Some((*v).min(u64::MAX as u128) as u64),
                RuleKind::Min(v) | RuleKind::Max(v) => {
                    let FieldTy::Int(t, lo, hi) = ty else { continue };
                    let v = (*v).min(i128::MAX as u128) as i128;
                    if !(lo..=hi).contains(&v) {
                        errors.push(Diag::new(r.arg_span.clone(), format!("{v} is outside {t}'s range")).with_label(format!("{t} is {lo}..={hi}")));
                    }
                    if matches!(r.kind, RuleKind::Min(_)) {
                        field.min = Some(v);
                    } else {
                        field.max = Some(v);
                    }
                }
                RuleKind::Pattern(p) => {
                    if let Err(e) = hallows_pattern::compile(p) {
                        let at = r.arg_span.start + 1 + p.char_indices().nth(e.at).map_or(p.len(), |(i, _)| i);
                        errors.push(Diag::new(at..at + 1, format!("pattern \"{p}\": {}", e.reason))
                            .with_label("here")
                            .with_note("patterns are anchored at both ends; they have literals, `.`, classes `[a-z]` `[^ ]`, `\\d` `\\w` `\\s`, and `*` `+` `?` `{m,n}` (no groups or `|`)"));
                    }
                    field.pattern = Some(p.clone());
                }
                RuleKind::OneOf(v) => field.one_of = v.clone(),
                RuleKind::Default(l) => {
                    let fits = matches!((l, ty), (Literal::Bool(_), FieldTy::Bool) | (Literal::Str(_), FieldTy::Str) | (Literal::Int(_), FieldTy::Int(..)));
                    if !fits {
                        errors.push(Diag::new(r.arg_span.clone(), format!("the default of field `{n}` is not a {}", f.ty.name)).with_label("wrong type"));
                    }
                    field.default = Some(l.clone());
                }
            }
        }
        if field.required && field.default.is_some() {
            let span = f.rules.iter().find(|r| matches!(r.kind, RuleKind::Default(_))).map_or(f.name.span.clone(), |r| r.span.clone());
            errors.push(Diag::new(span, format!("field `{n}` is required and has a default")).with_help("a default applies when the field is absent; drop one of the two"));
        }
        if let (Some(a), Some(b)) = (field.min_length, field.max_length) {
            if a > b {
                errors.push(Diag::new(f.name.span.clone(), format!("field `{n}`: min_length {a} is more than max_length {b}")));
            }
        }
        if let (Some(a), Some(b)) = (field.min, field.max) {
            if a > b {
                errors.push(Diag::new(f.name.span.clone(), format!("field `{n}`: min {a} is more than max {b}")));
            }
        }
        if let Some(Literal::Int(v)) = &field.default {
            let v = (*v).min(i128::MAX as u128) as i128;
            let lo = field.min.or(if let FieldTy::Int(_, lo, _) = ty { Some(lo) } else { None });
            let hi = field.max.or(if let FieldTy::Int(_, _, hi) = ty { Some(hi) } else { None });
            if lo.is_some_and(|lo| v < lo) || hi.is_some_and(|hi| v > hi) {
                errors.push(Diag::new(f.name.span.clone(), format!("field `{n}`: the default {v} breaks its own range")));
            }
        }
        if let (Some(Literal::Str(v)), false) = (&field.default, field.one_of.is_empty()) {
            if !field.one_of.contains(v) {
                errors.push(Diag::new(f.name.span.clone(), format!("field `{n}`: the default \"{v}\" is not one of its values")));
            }
        }
        out.push(field);
    }
    out
}

// ---------------------------------------------------------------- codegen

fn int_lit(v: i128) -> Lit {
    Lit::i128_unsuffixed(v)
}

fn opt_usize(v: Option<u64>) -> TokenStream {
    match v {
        Some(v) => {
            let l = Lit::usize_unsuffixed(v.min(usize::MAX as u64) as usize);
            quote!(::core::option::Option::Some(#l))
        }
        None => quote!(::core::option::Option::None),
    }
}

fn opt_i128(v: Option<i128>) -> TokenStream {
    match v {
        Some(v) => {
            let l = int_lit(v);
            quote!(::core::option::Option::Some(#l))
        }
        None => quote!(::core::option::Option::None),
    }
}

fn field_rust_ty(f: &Field) -> TokenStream {
    let t = match f.ty {
        FieldTy::Str => quote!(alloc::string::String),
        FieldTy::Bool => quote!(bool),
        FieldTy::Int(n, ..) => {
            let i = format_ident!("{}", n);
            quote!(#i)
        }
    };
    if f.optional() {
        quote!(::core::option::Option<#t>)
    } else {
        t
    }
}

/// The struct, `from_map` and `to_json` of a JSON type (with `id` for a
/// resource's record); `patterns` collects the statics of its patterns.
fn json_type(t: &JsonType, resource: bool, patterns: &mut Vec<TokenStream>) -> TokenStream {
    let name = format_ident!("{}", t.name);
    let b = quote!(::hallows_basilisk);
    let mut decls = Vec::new();
    let mut takes = Vec::new();
    let mut inits = Vec::new();
    let mut writes = Vec::new();
    if resource {
        decls.push(quote!(pub id: u64));
        inits.push(quote!(id: base.map_or(0, |b| b.id)));
        writes.push(quote! {
            #b::json::push_key(out, "id", true);
            #b::json::push_int(out, self.id as i128);
        });
    }
    for (i, f) in t.fields.iter().enumerate() {
        let id = crate::codegen::rust_ident(&f.name);
        let fname = f.name.as_str();
        let ty = field_rust_ty(f);
        decls.push(quote!(pub #id: #ty));
        // Locals are prefixed: a field may be named like the parameters.
        let lv = format_ident!("f_{}", f.name);
        let take = match f.ty {
            FieldTy::Str => quote!(#b::json::take_string(map, #fname, errors)),
            FieldTy::Bool => quote!(#b::json::take_bool(map, #fname, errors)),
            FieldTy::Int(tn, lo, hi) => {
                let (lo, hi) = (int_lit(lo), int_lit(hi));
                let tid = format_ident!("{}", tn);
                quote!(#b::json::take_int(map, #fname, #lo, #hi, errors).map(|v| v as #tid))
            }
        };
        let mut checks = Vec::new();
        match f.ty {
            FieldTy::Str => {
                if f.min_length.is_some() || f.max_length.is_some() {
                    let (lo, hi) = (opt_usize(f.min_length), opt_usize(f.max_length));
                    checks.push(quote!(#b::json::check_length(v, #fname, #lo, #hi, errors);));
                }
                if let Some(p) = &f.pattern {
                    let st = format_ident!("PATTERN_{}", patterns.len());
                    patterns.push(quote! {
                        static #st: #b::Lazy<::core::option::Option<#b::pattern::Pattern>> = #b::Lazy::new(|| #b::pattern::compile(#p).ok());
                    });
                    checks.push(quote!(#b::json::check_pattern(v, #fname, #st.as_ref(), #p, errors);));
                }
                if !f.one_of.is_empty() {
                    let vals = &f.one_of;
                    checks.push(quote!(#b::json::check_one_of(v, #fname, &[#(#vals),*], errors);));
                }
            }
            FieldTy::Int(..) if f.min.is_some() || f.max.is_some() => {
                let (lo, hi) = (opt_i128(f.min), opt_i128(f.max));
                checks.push(quote!(#b::json::check_range(*v as i128, #fname, #lo, #hi, errors);));
            }
            _ => {}
        }
        let check = if checks.is_empty() {
            quote!()
        } else {
            quote!(if let ::core::option::Option::Some(v) = &#lv { #(#checks)* })
        };
        let keep = if f.optional() { quote!(b.#id.clone()) } else { quote!(::core::option::Option::Some(b.#id.clone())) };
        let fallback = match &f.default {
            Some(Literal::Bool(v)) => quote!(.or(::core::option::Option::Some(#v))),
            Some(Literal::Int(v)) => {
                let l = Lit::u128_unsuffixed(*v);
                quote!(.or(::core::option::Option::Some(#l)))
            }
            Some(Literal::Str(v)) => quote!(.or_else(|| ::core::option::Option::Some(alloc::string::String::from(#v)))),
            None => quote!(),
        };
        let require = if f.required { quote!(let #lv = #b::json::require(#lv, #fname, errors);) } else { quote!() };
        // A field sent as `null` does not keep the base's value (a PATCH's
        // way to clear one): an optional field becomes null, a defaulted
        // one its default, a required one is refused ("is required").
        // Absent, a field keeps the base's value.
        let c = format_ident!("null_{}", f.name);
        let cleared = quote!(let #c = ::core::matches!(map.get(#fname), ::core::option::Option::Some(#b::serde_json::Value::Null)););
        let keep_base = quote!(::core::option::Option::None if #c => ::core::option::Option::None,);
        takes.push(quote! {
            #cleared
            let #lv = #take;
            #check
            let #lv = match #lv {
                ::core::option::Option::Some(v) => ::core::option::Option::Some(v),
                #keep_base
                ::core::option::Option::None => base.and_then(|b| #keep),
            } #fallback;
            #require
        });
        inits.push(if f.optional() { quote!(#id: #lv) } else { quote!(#id: #lv?) });
        let first = !resource && i == 0;
        let write_value = match f.ty {
            FieldTy::Str => quote!(#b::json::push_str(out, v)),
            FieldTy::Bool => quote!(out.extend_from_slice(if *v { b"true" } else { b"false" })),
            FieldTy::Int(..) => quote!(#b::json::push_int(out, *v as i128)),
        };
        writes.push(if f.optional() {
            quote! {
                #b::json::push_key(out, #fname, #first);
                match &self.#id {
                    ::core::option::Option::Some(v) => #write_value,
                    ::core::option::Option::None => out.extend_from_slice(b"null"),
                }
            }
        } else {
            quote! {
                #b::json::push_key(out, #fname, #first);
                let v = &self.#id;
                #write_value;
            }
        });
    }
    let what = t.name.as_str();
    quote! {
        #[derive(Clone, Debug, PartialEq, Eq, Default)]
        pub struct #name {
            #(#decls,)*
        }

        impl #name {
            /// Reads and validates the declared fields of `map` (the others
            /// are left in it); fields absent take `base`'s values, then the
            /// declared defaults. `None` when any failed: each is in `errors`.
            #[allow(unused_variables, clippy::redundant_closure)]
            pub fn from_map(
                map: &mut #b::serde_json::Map<alloc::string::String, #b::serde_json::Value>,
                errors: &mut #b::json::FieldErrors,
                base: ::core::option::Option<&Self>,
            ) -> ::core::option::Option<Self> {
                #(#takes)*
                if !errors.is_empty() {
                    return ::core::option::Option::None;
                }
                ::core::option::Option::Some(#name { #(#inits,)* })
            }

            /// Parses a request body: 400 if it is not a JSON object, 422
            /// naming every failing or unknown field.
            pub fn from_json(body: &[u8]) -> ::core::result::Result<Self, #b::Response> {
                let mut map = #b::json::parse_object(body)?;
                let mut errors = #b::json::FieldErrors::default();
                let v = Self::from_map(&mut map, &mut errors, ::core::option::Option::None);
                errors.unknown(&map, #what);
                match v {
                    ::core::option::Option::Some(v) if errors.is_empty() => ::core::result::Result::Ok(v),
                    _ => ::core::result::Result::Err(errors.response()),
                }
            }

            /// Appends the JSON object.
            #[allow(unused_variables)]
            pub fn to_json(&self, out: &mut alloc::vec::Vec<u8>) {
                out.push(b'{');
                #(#writes)*
                out.push(b'}');
            }

            /// The JSON object as a response with `status`.
            pub fn to_response(&self, status: u16) -> #b::Response {
                let mut body = alloc::vec::Vec::with_capacity(128);
                self.to_json(&mut body);
                #b::Response::json(status, body)
            }
        }
    }
}

/// One route's place in the router: a distinct path shape and the methods
/// answered there.
struct Group {
    segments: Vec<Segment>,
    /// (method, route index, call).
    methods: Vec<(String, usize, TokenStream)>,
}

/// The generated `web` module.
pub fn generate(w: &Web) -> TokenStream {
    let b = quote!(::hallows_basilisk);
    let mut patterns = Vec::new();
    let mut types = Vec::new();
    for s in &w.structs {
        types.push(json_type(s, false, &mut patterns));
    }
    for r in &w.resources {
        types.push(json_type(&r.ty, true, &mut patterns));
        let ty = format_ident!("{}", r.ty.name);
        let (name, path) = (&r.name, &r.path);
        let page = Lit::usize_unsuffixed(r.page_size as usize);
        types.push(quote! {
            impl #b::rest::Record for #ty {
                const NAME: &'static str = #name;
                const PATH: &'static str = #path;
                const PAGE_SIZE: usize = #page;
                fn id(&self) -> u64 {
                    self.id
                }
                fn with_id(mut self, id: u64) -> Self {
                    self.id = id;
                    self
                }
                fn from_map(
                    map: &mut #b::serde_json::Map<alloc::string::String, #b::serde_json::Value>,
                    errors: &mut #b::json::FieldErrors,
                    base: ::core::option::Option<&Self>,
                ) -> ::core::option::Option<Self> {
                    #ty::from_map(map, errors, base)
                }
                fn to_json(&self, out: &mut alloc::vec::Vec<u8>) {
                    #ty::to_json(self, out)
                }
            }
        });
    }

    // The router's groups: literal-only paths first (they are more
    // specific than a parameter that could also match them).
    let mut groups: Vec<Group> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut add = |segments: Vec<Segment>, method: &str, call: TokenStream, groups: &mut Vec<Group>| {
        let idx = names.len();
        names.push(format!("{method} {}", shape(&segments)));
        let s = shape(&segments);
        match groups.iter_mut().find(|g| shape(&g.segments) == s) {
            Some(g) => g.methods.push((method.to_owned(), idx, call)),
            None => groups.push(Group { segments, methods: vec![(method.to_owned(), idx, call)] }),
        }
    };
    for r in &w.resources {
        let ty = format_ident!("{}", r.ty.name);
        let mut segs: Vec<Segment> = r.path[1..].split('/').map(|s| Segment::Literal(s.to_owned())).collect();
        add(segs.clone(), "GET", quote!(#b::rest::index::<#ty, S>(store, req.query).await), &mut groups);
        add(segs.clone(), "POST", quote!(#b::rest::create::<#ty, S>(store, req.body).await), &mut groups);
        segs.push(Segment::U64("id".into()));
        add(segs.clone(), "GET", quote!(#b::rest::show::<#ty, S>(store, p0).await), &mut groups);
        add(segs.clone(), "PUT", quote!(#b::rest::update::<#ty, S>(store, p0, req.body, false).await), &mut groups);
        add(segs.clone(), "PATCH", quote!(#b::rest::update::<#ty, S>(store, p0, req.body, true).await), &mut groups);
        add(segs, "DELETE", quote!(#b::rest::destroy::<#ty, S>(store, p0).await), &mut groups);
    }
    let mut trait_fns = Vec::new();
    for r in &w.routes {
        let h = format_ident!("{}", r.handler);
        let mut params = Vec::new();
        let mut args = Vec::new();
        let mut pi = 0usize;
        for s in &r.segments {
            let (n, t) = match s {
                Segment::Literal(_) => continue,
                Segment::U64(n) => (n, quote!(u64)),
                Segment::Str(n) => (n, quote!(alloc::string::String)),
            };
            let n = crate::codegen::rust_ident(n);
            params.push(quote!(#n: #t));
            let p = format_ident!("p{}", pi);
            args.push(quote!(#p));
            pi += 1;
        }
        let (body_param, body_arg) = match &r.accepts {
            Some(t) => {
                let t = format_ident!("{}", t);
                (quote!(, body: #t), quote!(, match #t::from_json(req.body) { ::core::result::Result::Ok(v) => v, ::core::result::Result::Err(e) => return e }))
            }
            None => (quote!(), quote!()),
        };
        let doc = format!(" `{} {}`", r.method, r.path);
        trait_fns.push(quote! {
            #[doc = #doc]
            async fn #h(&mut self, store: &mut S, req: &#b::Request<'_> #(, #params)* #body_param) -> #b::Response;
        });
        add(r.segments.clone(), &r.method, quote!(self.routes.#h(store, req #(, #args)* #body_arg).await), &mut groups);
    }
    groups.sort_by_key(|g| g.segments.iter().any(|s| !matches!(s, Segment::Literal(_))));

    let mut arms = Vec::new();
    for g in &groups {
        let n = Lit::usize_unsuffixed(g.segments.len());
        let mut conds = Vec::new();
        let mut binds = Vec::new();
        let mut pi = 0usize;
        for (i, s) in g.segments.iter().enumerate() {
            let i = Lit::usize_unsuffixed(i);
            match s {
                Segment::Literal(l) => conds.push(quote!(segs[#i] == #l)),
                Segment::U64(_) | Segment::Str(_) => {
                    let p = format_ident!("p{}", pi);
                    let parse = if matches!(s, Segment::U64(_)) { quote!(#b::rest::param_u64(segs[#i])) } else { quote!(#b::rest::param_string(segs[#i])) };
                    binds.push(quote!(let ::core::option::Option::Some(#p) = #parse));
                    pi += 1;
                }
            }
        }
        let mut allow: Vec<&str> = g.methods.iter().map(|(m, ..)| m.as_str()).collect();
        if allow.contains(&"GET") {
            allow.push("HEAD");
        }
        let allow = allow.join(", ");
        let mut method_arms = Vec::new();
        for (m, idx, call) in &g.methods {
            let v = format_ident!("{}{}", &m[..1], m[1..].to_ascii_lowercase());
            let idx = Lit::usize_unsuffixed(*idx);
            let call = call.clone();
            method_arms.push(quote!(#b::Method::#v => { self.last = ::core::option::Option::Some(#idx); #call }));
        }
        let mut all = conds;
        all.insert(0, quote!(n == #n));
        let mut inner = quote! {
            return match method {
                #(#method_arms)*
                _ => #b::Response::error(405, "method not allowed").with_header("Allow", alloc::string::String::from(#allow)),
            };
        };
        for bind in binds.into_iter().rev() {
            inner = quote!(if #bind { #inner });
        }
        arms.push(quote! {
            if #(#all)&&* {
                #inner
            }
        });
    }
    let nroutes = Lit::usize_unsuffixed(names.len());
    let auth = w.auth;
    let limiter_init = match &w.rate_limit {
        Some(r) => {
            let (q, per, burst, clients) = (r.requests, r.per_ns, r.burst, r.clients as usize);
            quote!(::core::option::Option::Some(#b::limit::RateLimiter::new(#q, #per, #burst, #clients)))
        }
        None => quote!(::core::option::Option::None),
    };
    let routes_trait = if trait_fns.is_empty() {
        quote! {
            /// The spec declares no hand-written routes.
            pub trait Routes<S: #b::store::Store> {}
            impl<S: #b::store::Store> Routes<S> for () {}
        }
    } else {
        quote! {
            /// The hand-written routes (`http_route`): one async method each,
            /// with the path's parameters and the validated body typed.
            #[allow(async_fn_in_trait)]
            pub trait Routes<S: #b::store::Store> {
                #(#trait_fns)*
            }
        }
    };
    quote! {
        /// Basilisk's web layer of this spec: JSON types, resources, the router.
        #[allow(clippy::all, unused_imports, unused_mut)]
        pub mod web {
            extern crate alloc;
            #(#patterns)*
            #(#types)*
            #routes_trait

            /// Every route, `METHOD /path`, in the order of [`App::stats`].
            pub const ROUTES: [&str; #nroutes] = [#(#names),*];

            /// The application: routes, tokens, limits and statistics.
            pub struct App<R> {
                pub routes: R,
                /// Accepted bearer tokens (`authentication bearer;`).
                pub tokens: #b::auth::Tokens,
                pub limiter: ::core::option::Option<#b::limit::RateLimiter>,
                /// Per route, as [`ROUTES`].
                pub stats: [#b::stats::RouteStats; #nroutes],
                /// The route the last request took (index into [`ROUTES`]).
                pub last: ::core::option::Option<usize>,
                /// How long the last request took (ns).
                pub last_ns: u64,
            }

            impl<R> App<R> {
                /// Whether the spec asks for bearer tokens.
                pub const AUTHENTICATION: bool = #auth;

                pub fn new(routes: R, tokens: #b::auth::Tokens) -> Self {
                    App { routes, tokens, limiter: #limiter_init, stats: [#b::stats::RouteStats::new(); #nroutes], last: ::core::option::Option::None, last_ns: 0 }
                }

                /// Answers `req`: rate limit (429), token (401), route (404,
                /// 405), then the action; `clock` gives nanoseconds for the
                /// rate limit and the route's timing.
                pub async fn handle<S: #b::store::Store>(&mut self, req: &#b::Request<'_>, store: &mut S, clock: impl Fn() -> u64) -> #b::Response
                where
                    R: Routes<S>,
                {
                    let start = clock();
                    self.last = ::core::option::Option::None;
                    let resp = self.dispatch(req, store, start).await;
                    self.last_ns = clock().saturating_sub(start);
                    if let ::core::option::Option::Some(i) = self.last {
                        if let ::core::option::Option::Some(s) = self.stats.get_mut(i) {
                            s.record(resp.status, self.last_ns);
                        }
                    }
                    resp
                }

                #[allow(unused_variables)]
                async fn dispatch<S: #b::store::Store>(&mut self, req: &#b::Request<'_>, store: &mut S, now: u64) -> #b::Response
                where
                    R: Routes<S>,
                {
                    if let ::core::option::Option::Some(l) = &mut self.limiter {
                        if let ::core::result::Result::Err(wait) = l.check(req.client, now) {
                            return #b::limit::RateLimiter::refusal(wait);
                        }
                    }
                    if Self::AUTHENTICATION && !self.tokens.accepts(req.authorization) {
                        return #b::auth::Tokens::challenge();
                    }
                    let ::core::option::Option::Some((segs, n)) = #b::rest::segments(req.path) else {
                        return #b::Response::error(404, "no such route");
                    };
                    let method = if req.method == #b::Method::Head { #b::Method::Get } else { req.method };
                    if n == 1 && segs[0] == "_stats" && method == #b::Method::Get {
                        return #b::stats::stats_response(&ROUTES, &self.stats);
                    }
                    #(#arms)*
                    #b::Response::error(404, "no such route")
                }
            }
        }
    }
}
