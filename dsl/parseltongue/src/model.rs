//! Semantic checks and the resolved model of a spec: types with their C
//! layouts and layout hashes, the channel list (routes expanded), the
//! scheduler configuration and the budget.
//!
//! This module owns every rule that can be decided from one spec alone and
//! reports all violations it finds, each at its span. It never looks at the
//! manifest (that is [`crate::manifest`]) and never emits Rust.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::ast::{self, ChannelDirection, Extension, Ident, Span, TypeRef, Value};
use crate::diag::Diag;
use crate::parser::KEYWORDS;

/// Largest message (a channel slot is at most 64 KiB).
pub const MAX_MESSAGE_SIZE: u64 = 64 << 10;
/// Largest `bounded_bytes` / `bounded_string` capacity (the length is a u16).
pub const MAX_BOUND: u128 = 65535;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prim {
    U8, U16, U32, U64, I8, I16, I32, I64, F32, F64,
}

impl Prim {
    pub const ALL: [(&'static str, Prim); 10] = [
        ("u8", Prim::U8), ("u16", Prim::U16), ("u32", Prim::U32), ("u64", Prim::U64),
        ("i8", Prim::I8), ("i16", Prim::I16), ("i32", Prim::I32), ("i64", Prim::I64),
        ("f32", Prim::F32), ("f64", Prim::F64),
    ];
    pub fn name(self) -> &'static str {
        Prim::ALL.iter().find(|p| p.1 == self).map_or("?", |p| p.0)
    }
    pub fn size(self) -> u64 {
        match self {
            Prim::U8 | Prim::I8 => 1,
            Prim::U16 | Prim::I16 => 2,
            Prim::U32 | Prim::I32 | Prim::F32 => 4,
            Prim::U64 | Prim::I64 | Prim::F64 => 8,
        }
    }
    fn unsigned_max(self) -> Option<u128> {
        match self {
            Prim::U8 => Some(u8::MAX as u128),
            Prim::U16 => Some(u16::MAX as u128),
            Prim::U32 => Some(u32::MAX as u128),
            _ => None,
        }
    }
}

/// A resolved field type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    Prim(Prim),
    Bool,
    Array(Box<Ty>, u64),
    Bytes(u64),
    Str(u64),
    /// Index into [`Model::enums`].
    Enum(usize),
    /// Index into [`Model::structs`].
    Struct(usize),
}

/// One member of a struct's C layout: a declared field or inserted padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member {
    Field { name: String, ty: Ty, offset: u64, size: u64 },
    Reserved { index: usize, offset: u64, size: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructType {
    pub name: String,
    pub span: Span,
    pub members: Vec<Member>,
    pub size: u64,
    pub align: u64,
    pub hash: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnumType {
    pub name: String,
    pub span: Span,
    pub repr: Prim,
    pub variants: Vec<(String, u128)>,
}

/// A task class of `hallows-sched`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskClass {
    Request, Input, Commit, Read, Background, Message,
}

impl TaskClass {
    pub const ALL: [(&'static str, TaskClass); 6] = [
        ("request", TaskClass::Request), ("input", TaskClass::Input), ("commit", TaskClass::Commit),
        ("read", TaskClass::Read), ("background", TaskClass::Background), ("message", TaskClass::Message),
    ];
    pub fn name(self) -> &'static str {
        TaskClass::ALL.iter().find(|c| c.1 == self).map_or("?", |c| c.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedClass {
    Api, Ui, Db, Messaging,
}

impl SchedClass {
    pub const ALL: [(&'static str, SchedClass); 4] =
        [("api", SchedClass::Api), ("ui", SchedClass::Ui), ("db", SchedClass::Db), ("messaging", SchedClass::Messaging)];
    pub fn name(self) -> &'static str {
        SchedClass::ALL.iter().find(|c| c.1 == self).map_or("?", |c| c.0)
    }
    /// Task classes the policy serves; the first is the default.
    pub fn task_classes(self) -> &'static [TaskClass] {
        match self {
            SchedClass::Api => &[TaskClass::Request],
            // Non-deadline work runs when no frame or input is due.
            SchedClass::Ui => &[TaskClass::Background, TaskClass::Input],
            SchedClass::Db => &[TaskClass::Read, TaskClass::Commit, TaskClass::Background],
            SchedClass::Messaging => &[TaskClass::Message],
        }
    }
    fn params(self) -> &'static [(&'static str, Kind)] {
        match self {
            SchedClass::Api => &[("quantum", Kind::Duration), ("demoted_quantum", Kind::Duration), ("max_defer", Kind::Duration),
                ("demote_preempted", Kind::Bool), ("preempt_on_arrival", Kind::Bool), ("queue_capacity", Kind::Int(1, 4096))],
            SchedClass::Ui => &[("frame_rate", Kind::Frequency), ("frame_deadline", Kind::Duration), ("input_deadline", Kind::Duration), ("queue_capacity", Kind::Int(1, 4096))],
            SchedClass::Db => &[("slice", Kind::Duration), ("burst", Kind::Duration), ("background_share_permille", Kind::Int(0, 1000)),
                ("queue_capacity", Kind::Int(1, 4096))],
            SchedClass::Messaging => &[("latency_bound", Kind::Duration), ("batch_cost", Kind::Duration), ("message_cost", Kind::Duration),
                ("max_linger", Kind::Duration), ("max_batch", Kind::Int(1, hallows_sched::MAX_BATCH as u128)), ("queue_capacity", Kind::Int(1, 4096))],
        }
    }
}

const BUDGET_PARAMS: &[(&str, Kind)] = &[
    ("cores", Kind::Int(1, hallows_sched::MAX_CORES as u128)),
    ("ram", Kind::Size),
    ("messages_per_turn", Kind::Int(1, 4096)),
    ("handler_time", Kind::Duration),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int(u128, u128),
    Duration,
    Frequency,
    Size,
    Bool,
}

impl Kind {
    fn describe(self) -> String {
        match self {
            Kind::Int(lo, hi) => format!("an integer in {lo}..={hi}"),
            Kind::Duration => "a duration (e.g. `50us`)".into(),
            Kind::Frequency => "a frequency (e.g. `60hz`)".into(),
            Kind::Size => "a size (e.g. `4 MiB`)".into(),
            Kind::Bool => "`true` or `false`".into(),
        }
    }
}

/// A channel as the service uses it (routes expanded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub span: Span,
    pub direction: ChannelDirection,
    /// Index into [`Model::structs`].
    pub message: usize,
    /// Receive channels: the handler (trait method) name.
    pub handler: Option<String>,
    /// Receive channels: the handler gets each batch where it lies in
    /// the ring (`handled_by NAME in_place`).
    pub in_place: bool,
    /// Receive channels: the task class the scheduler sees.
    pub task_class: TaskClass,
    /// Basilisk: the route this channel belongs to (index into `routes`).
    pub route: Option<usize>,
    pub input: bool,
    /// Basilisk client side: the call this channel belongs to (index into `calls`).
    pub call: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub handler: String,
    /// Indices into [`Model::channels`].
    pub request_channel: usize,
    pub reply_channel: usize,
}

/// The scheduler configuration, every parameter resolved (defaults filled in
/// from `hallows-sched`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduler {
    pub class: SchedClass,
    /// `(name, value)` of the parameters written in the spec, in order.
    pub set: Vec<(String, Value)>,
    pub queue_capacity: usize,
    /// Nagini: frame period in ns.
    pub frame_period: Option<u64>,
    /// Nagini: a frame's relative deadline in ns (default: the period).
    pub frame_deadline: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    pub cores: u32,
    pub cores_span: Option<Span>,
    pub ram: Option<(u64, Span)>,
    pub messages_per_turn: u32,
    pub handler_time: Option<u64>,
}

/// A checked spec.
#[derive(Clone, Debug)]
pub struct Model {
    pub ast: ast::Spec,
    pub name: String,
    pub extension: Option<Extension>,
    pub structs: Vec<StructType>,
    pub enums: Vec<EnumType>,
    pub channels: Vec<Channel>,
    pub routes: Vec<Route>,
    /// Basilisk client calls (`request_channel` sends, `reply_channel`
    /// receives; `handler` is the generated method's name).
    pub calls: Vec<Route>,
    pub frame_handler: Option<String>,
    pub scheduler: Option<Scheduler>,
    pub budget: Budget,
    /// Basilisk's web layer, when the spec declares one.
    pub web: Option<crate::web::Web>,
}

impl Model {
    pub fn struct_named(&self, name: &str) -> Option<&StructType> {
        self.structs.iter().find(|s| s.name == name)
    }

    /// The canonical definition of struct `i` and every type it uses, as
    /// hashed and as shown on a mismatch.
    pub fn canonical(&self, i: usize) -> String {
        let mut out = String::new();
        let mut seen = HashSet::new();
        self.canonical_into(&Ty::Struct(i), &mut out, &mut seen);
        out
    }

    fn canonical_into(&self, ty: &Ty, out: &mut String, seen: &mut HashSet<Ty>) {
        match ty {
            Ty::Array(e, _) => self.canonical_into(e, out, seen),
            Ty::Enum(e) if seen.insert(ty.clone()) => {
                let e = &self.enums[*e];
                let _ = write!(out, "message_enum {}: {} {{", e.name, e.repr.name());
                for (n, v) in &e.variants {
                    let _ = write!(out, " {n} = {v};");
                }
                out.push_str(" }\n");
            }
            Ty::Struct(s) if seen.insert(ty.clone()) => {
                let st = &self.structs[*s];
                let mut nested = Vec::new();
                let _ = writeln!(out, "message_struct {} {{  // size {}, align {}", st.name, st.size, st.align);
                for m in &st.members {
                    match m {
                        Member::Field { name, ty, offset, size } => {
                            let _ = writeln!(out, "    field {name}: {};  // offset {offset}, size {size}", self.type_name(ty));
                            nested.push(ty.clone());
                        }
                        Member::Reserved { offset, size, .. } => {
                            let _ = writeln!(out, "    // {size} reserved byte(s) at offset {offset}");
                        }
                    }
                }
                out.push_str("}\n");
                for t in nested {
                    self.canonical_into(&t, out, seen);
                }
            }
            _ => {}
        }
    }

    /// The type as written in a spec.
    pub fn type_name(&self, ty: &Ty) -> String {
        match ty {
            Ty::Prim(p) => p.name().into(),
            Ty::Bool => "bool".into(),
            Ty::Array(e, n) => format!("[{}; {n}]", self.type_name(e)),
            Ty::Bytes(n) => format!("bounded_bytes<{n}>"),
            Ty::Str(n) => format!("bounded_string<{n}>"),
            Ty::Enum(e) => self.enums[*e].name.clone(),
            Ty::Struct(s) => self.structs[*s].name.clone(),
        }
    }

    pub fn size_align(&self, ty: &Ty) -> (u64, u64) {
        match ty {
            Ty::Prim(p) => (p.size(), p.size()),
            Ty::Bool => (1, 1),
            Ty::Array(e, n) => {
                let (s, a) = self.size_align(e);
                (s.saturating_mul(*n), a)
            }
            Ty::Bytes(n) | Ty::Str(n) => (n + 2, 1),
            Ty::Enum(e) => (self.enums[*e].repr.size(), self.enums[*e].repr.size()),
            Ty::Struct(s) => (self.structs[*s].size, self.structs[*s].align),
        }
    }
}

/// FNV-1a, 64 bit.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Rust names the generated code uses for a service; a spec name may not
/// collide with them.
const GENERATED_NAMES: &[&str] = &["Service", "Senders", "Receivers", "Handlers", "Endpoints", "ConnectError", "Turn", "Frame", "Bool8", "Policy", "Port"];

/// Checks a parsed spec; returns the model or every error found.
pub fn check(spec: ast::Spec) -> Result<Model, Vec<Diag>> {
    let mut c = Checker { errors: Vec::new() };
    let model = c.run(spec);
    if c.errors.is_empty() {
        Ok(model)
    } else {
        c.errors.sort_by_key(|d| d.span.start);
        Err(c.errors)
    }
}

struct Checker {
    errors: Vec<Diag>,
}

fn is_snake(name: &str) -> bool {
    name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') && name.starts_with(|c: char| c.is_ascii_lowercase())
}

fn is_camel(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase()) && name.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Rust keywords the generated code cannot use as names, not even as raw
/// identifiers (`r#type` is fine, `r#self` does not exist).
pub const UNUSABLE_IN_RUST: &[&str] = &["self", "Self", "super", "crate", "_"];

/// Methods every generated `Service` has: a Basilisk `call` cannot take
/// their names.
pub const SERVICE_METHODS: &[&str] = &["connect", "turn", "flush", "wait", "ready", "serve", "arrive"];

/// The error for a name the generated code cannot use, if `id` is one.
fn unusable(id: &Ident, what: &str) -> Option<Diag> {
    let name = id.name.replace('-', "_");
    UNUSABLE_IN_RUST.contains(&name.as_str()).then(|| {
        Diag::new(id.span.clone(), format!("`{}` cannot name {what}: it is a Rust keyword the generated code cannot use, not even as `r#{name}`", id.name))
            .with_label("Rust keyword")
            .with_help(format!("rename it, e.g. `{}_value`", id.name))
    })
}

fn valid_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 31
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

impl Checker {
    fn err(&mut self, d: Diag) {
        self.errors.push(d);
    }

    fn run(&mut self, spec: ast::Spec) -> Model {
        let s = &spec.service;
        let extension = spec.extension.as_ref().map(|e| e.0);
        if let Some(d) = unusable(&s.name, "a service") {
            self.err(d);
        } else if !is_snake(&s.name.name) {
            self.err(Diag::new(s.name.span.clone(), format!("service name `{}` must be snake_case", s.name.name))
                .with_label("not snake_case")
                .with_help("it names the generated module's service; write it like a Rust module name"));
        }

        // Type names: unique, CamelCase, not a built-in type.
        let mut names: HashMap<&str, Span> = HashMap::new();
        let decls = s.structs.iter().map(|d| &d.name).chain(s.enums.iter().map(|d| &d.name));
        for n in decls {
            if let Some(prev) = names.get(n.name.as_str()) {
                self.err(Diag::new(n.span.clone(), format!("type `{}` is declared twice", n.name))
                    .with_label("second declaration")
                    .with_related(prev.clone(), "first declared here"));
                continue;
            }
            if Prim::ALL.iter().any(|p| p.0 == n.name) || n.name == "bool" {
                self.err(Diag::new(n.span.clone(), format!("`{}` is a built-in type and cannot be redeclared", n.name)));
            } else if let Some(d) = unusable(n, "a type") {
                self.err(d);
            } else if !is_camel(&n.name) {
                self.err(Diag::new(n.span.clone(), format!("type name `{}` must be CamelCase", n.name))
                    .with_label("not CamelCase")
                    .with_help("type names become Rust type names: start with an upper-case letter, letters and digits only"));
            } else if GENERATED_NAMES.contains(&n.name.as_str()) || n.name.starts_with("BoundedBytes") || n.name.starts_with("BoundedString") {
                self.err(Diag::new(n.span.clone(), format!("type name `{}` is reserved for the generated code", n.name))
                    .with_help(format!("reserved names: {}, BoundedBytesN, BoundedStringN", GENERATED_NAMES.join(", "))));
            }
            names.insert(&n.name, n.span.clone());
        }

        // Enums.
        let mut enums = Vec::new();
        for e in &s.enums {
            let repr = match Prim::ALL.iter().find(|p| p.0 == e.repr.name) {
                Some((_, p)) if p.unsigned_max().is_some() => *p,
                _ => {
                    self.err(Diag::new(e.repr.span.clone(), format!("`{}` cannot be an enum's type", e.repr.name))
                        .with_label("expected `u8`, `u16` or `u32`")
                        .suggest(&e.repr.name, ["u8", "u16", "u32"]));
                    Prim::U32
                }
            };
            if e.variants.is_empty() {
                self.err(Diag::new(e.name.span.clone(), format!("enum `{}` has no variants", e.name.name)).with_help("declare at least one `variant NAME = VALUE;`"));
            }
            let mut seen_names: HashMap<&str, Span> = HashMap::new();
            let mut seen_values: HashMap<u128, &str> = HashMap::new();
            for v in &e.variants {
                if let Some(prev) = seen_names.insert(&v.name.name, v.name.span.clone()) {
                    self.err(Diag::new(v.name.span.clone(), format!("variant `{}` is declared twice", v.name.name)).with_related(prev, "first declared here"));
                }
                if let Some(d) = unusable(&v.name, "a variant") {
                    self.err(d);
                } else if !is_camel(&v.name.name) {
                    self.err(Diag::new(v.name.span.clone(), format!("variant name `{}` must be CamelCase", v.name.name)));
                }
                let max = repr.unsigned_max().unwrap_or(u128::MAX);
                if v.value > max {
                    self.err(Diag::new(v.value_span.clone(), format!("value {} does not fit the enum's type `{}` (at most {max})", v.value, repr.name()))
                        .with_label("too large")
                        .with_related(e.repr.span.clone(), "the enum's type"));
                } else if let Some(other) = seen_values.insert(v.value, &v.name.name) {
                    self.err(Diag::new(v.value_span.clone(), format!("value {} is already used by variant `{other}`", v.value))
                        .with_label("duplicate value"));
                }
            }
            enums.push(EnumType { name: e.name.name.clone(), span: e.name.span.clone(), repr, variants: e.variants.iter().map(|v| (v.name.name.clone(), v.value)).collect() });
        }

        // Struct fields (resolved), then layouts in dependency order.
        let type_names: Vec<&str> = Prim::ALL.iter().map(|p| p.0).chain(["bool"]).chain(s.structs.iter().map(|d| d.name.name.as_str())).chain(s.enums.iter().map(|d| d.name.name.as_str())).collect();
        let mut resolved: Vec<Vec<(String, Option<Ty>, Span)>> = Vec::new();
        for st in &s.structs {
            if st.fields.is_empty() {
                self.err(Diag::new(st.name.span.clone(), format!("message_struct `{}` has no fields", st.name.name)).with_help("declare at least one `field NAME: TYPE;`"));
            }
            let mut seen: HashMap<&str, Span> = HashMap::new();
            let mut fields = Vec::new();
            for f in &st.fields {
                if let Some(prev) = seen.insert(&f.name.name, f.name.span.clone()) {
                    self.err(Diag::new(f.name.span.clone(), format!("field `{}` is declared twice in `{}`", f.name.name, st.name.name)).with_related(prev, "first declared here"));
                }
                if let Some(d) = unusable(&f.name, "a field") {
                    self.err(d);
                } else if !is_snake(&f.name.name) {
                    self.err(Diag::new(f.name.span.clone(), format!("field name `{}` must be snake_case", f.name.name)));
                }
                let ty = self.resolve(&f.ty, s, &type_names);
                fields.push((f.name.name.clone(), ty, f.ty.span()));
            }
            resolved.push(fields);
        }
        let mut structs: Vec<Option<StructType>> = vec![None; s.structs.len()];
        let mut state = vec![0u8; s.structs.len()]; // 0 new, 1 visiting, 2 done
        let mut model = Model {
            ast: spec.clone(),
            name: s.name.name.clone(),
            extension,
            structs: Vec::new(),
            enums,
            channels: Vec::new(),
            routes: Vec::new(),
            calls: Vec::new(),
            frame_handler: s.frame_handler.as_ref().map(|h| h.name.clone()),
            scheduler: None,
            budget: Budget { cores: 1, cores_span: None, ram: None, messages_per_turn: 16, handler_time: None },
            web: None,
        };
        for i in 0..s.structs.len() {
            self.layout(i, s, &resolved, &mut structs, &mut state, &mut model);
        }
        model.structs = structs
            .into_iter()
            .enumerate()
            .map(|(i, st)| st.unwrap_or_else(|| StructType { name: s.structs[i].name.name.clone(), span: s.structs[i].name.span.clone(), members: Vec::new(), size: 1, align: 1, hash: 0 }))
            .collect();
        for i in 0..model.structs.len() {
            model.structs[i].hash = fnv1a(model.canonical(i).as_bytes());
            if model.structs[i].size > MAX_MESSAGE_SIZE {
                self.err(Diag::new(model.structs[i].span.clone(), format!("message_struct `{}` is {} bytes; a message is at most {MAX_MESSAGE_SIZE} bytes (the largest channel slot)", model.structs[i].name, model.structs[i].size))
                    .with_label("too large"));
            }
        }

        self.scheduler_and_budget(s, &mut model);
        self.channels(s, extension, &mut model);
        self.extensions(&spec, &model);
        let message_types: Vec<&str> = s.structs.iter().map(|d| d.name.name.as_str()).chain(s.enums.iter().map(|d| d.name.name.as_str())).collect();
        model.web = crate::web::check(&s.web, extension == Some(Extension::Basilisk), &message_types, &mut self.errors);
        model
    }

    fn resolve(&mut self, t: &TypeRef, s: &ast::Service, names: &[&str]) -> Option<Ty> {
        match t {
            TypeRef::Named(id) => {
                if let Some((_, p)) = Prim::ALL.iter().find(|p| p.0 == id.name) {
                    return Some(Ty::Prim(*p));
                }
                if id.name == "bool" {
                    return Some(Ty::Bool);
                }
                if let Some(i) = s.structs.iter().position(|d| d.name.name == id.name) {
                    return Some(Ty::Struct(i));
                }
                if let Some(i) = s.enums.iter().position(|d| d.name.name == id.name) {
                    return Some(Ty::Enum(i));
                }
                let mut d = Diag::new(id.span.clone(), format!("unknown type `{}`", id.name)).with_label("not a declared type");
                d = match id.name.as_str() {
                    "string" | "String" | "str" => d.with_help("strings have a fixed capacity: `bounded_string<N>`"),
                    "bytes" | "Vec" => d.with_help("byte buffers have a fixed capacity: `bounded_bytes<N>`"),
                    "usize" | "isize" => d.with_help("messages cross partitions: use a fixed-size integer (`u64`, `i64`)"),
                    _ => d.suggest(&id.name, names.iter().copied()),
                };
                self.err(d);
                None
            }
            TypeRef::Array { elem, len, span } => {
                let e = self.resolve(elem, s, names);
                if *len == 0 || *len > MAX_MESSAGE_SIZE as u128 {
                    self.err(Diag::new(span.clone(), format!("array length {len} is out of range 1..={MAX_MESSAGE_SIZE}")).with_label("bad length"));
                    return None;
                }
                Some(Ty::Array(Box::new(e?), *len as u64))
            }
            TypeRef::BoundedBytes { cap, span } | TypeRef::BoundedString { cap, span } => {
                if *cap == 0 || *cap > MAX_BOUND {
                    self.err(Diag::new(span.clone(), format!("capacity {cap} is out of range 1..={MAX_BOUND}")).with_label("bad capacity").with_note("the length is stored as a u16"));
                    return None;
                }
                Some(if matches!(t, TypeRef::BoundedBytes { .. }) { Ty::Bytes(*cap as u64) } else { Ty::Str(*cap as u64) })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn layout(&mut self, i: usize, s: &ast::Service, resolved: &[Vec<(String, Option<Ty>, Span)>], out: &mut Vec<Option<StructType>>, state: &mut [u8], model: &mut Model) -> bool {
        match state[i] {
            2 => return out[i].is_some(),
            1 => return false,
            _ => {}
        }
        state[i] = 1;
        let mut ok = true;
        for (_, ty, span) in &resolved[i] {
            let Some(ty) = ty else { ok = false; continue };
            let mut inner = ty;
            while let Ty::Array(e, _) = inner {
                inner = e;
            }
            if let Ty::Struct(j) = inner {
                if state[*j] == 1 {
                    self.err(Diag::new(span.clone(), format!("message_struct `{}` contains itself through `{}`", s.structs[i].name.name, s.structs[*j].name.name))
                        .with_label("recursive field")
                        .with_help("messages have a fixed size: a struct cannot contain itself, directly or through other structs"));
                    ok = false;
                } else if !self.layout(*j, s, resolved, out, state, model) {
                    ok = false;
                }
            }
        }
        state[i] = 2;
        if !ok {
            return false;
        }
        // Temporarily expose finished structs so size_align can see them.
        model.structs = out.iter().map(|o| o.clone().unwrap_or(StructType { name: String::new(), span: 0..0, members: Vec::new(), size: 0, align: 1, hash: 0 })).collect();
        let mut members = Vec::new();
        let (mut off, mut align, mut pad) = (0u64, 1u64, 0usize);
        for (name, ty, span) in &resolved[i] {
            let ty = ty.clone().unwrap_or(Ty::Bool);
            let (size, a) = model.size_align(&ty);
            // Sizes saturate; a field past 4 GiB is refused here, so the
            // offsets below (at most a million such fields in a spec) never
            // overflow. Smaller ones are refused with the whole struct below.
            if size > u64::from(u32::MAX) {
                let bytes = if size == u64::MAX { "more than 2^64 bytes".to_owned() } else { format!("{size} bytes") };
                self.err(Diag::new(span.clone(), format!("field `{name}` of `{}` is {bytes}; a message is at most {MAX_MESSAGE_SIZE} bytes (the largest channel slot)", s.structs[i].name.name))
                    .with_label("too large")
                    .with_help("use smaller arrays, or send the data in several messages"));
                return false;
            }
            let aligned = off.div_ceil(a) * a;
            if aligned > off {
                members.push(Member::Reserved { index: pad, offset: off, size: aligned - off });
                pad += 1;
            }
            members.push(Member::Field { name: name.clone(), ty, offset: aligned, size });
            off = aligned.saturating_add(size);
            align = align.max(a);
        }
        let size = off.div_ceil(align) * align;
        if size > off {
            members.push(Member::Reserved { index: pad, offset: off, size: size - off });
        }
        out[i] = Some(StructType { name: s.structs[i].name.name.clone(), span: s.structs[i].name.span.clone(), members, size: size.max(1), align, hash: 0 });
        true
    }

    fn params(&mut self, block: &ast::Block, allowed: &[(&str, Kind)], what: &str) -> Vec<(String, Value, Span)> {
        let mut out: Vec<(String, Value, Span)> = Vec::new();
        for p in &block.params {
            let Some((_, kind)) = allowed.iter().find(|a| a.0 == p.name.name) else {
                let names: Vec<&str> = allowed.iter().map(|a| a.0).collect();
                self.err(Diag::new(p.name.span.clone(), format!("unknown {what} parameter `{}`", p.name.name))
                    .with_label("unknown parameter")
                    .with_note(format!("{what} parameters: {}", names.join(", ")))
                    .suggest(&p.name.name, names.iter().copied()));
                continue;
            };
            if let Some(prev) = out.iter().find(|o| o.0 == p.name.name) {
                self.err(Diag::new(p.name.span.clone(), format!("parameter `{}` is set twice", p.name.name)).with_related(prev.2.clone(), "first set here"));
                continue;
            }
            let ok = match (kind, &p.value) {
                (Kind::Int(lo, hi), Value::Int(v)) => {
                    if v < lo || v > hi {
                        self.err(Diag::new(p.value_span.clone(), format!("`{}` must be in {lo}..={hi}, not {v}", p.name.name)).with_label("out of range"));
                        false
                    } else {
                        true
                    }
                }
                (Kind::Duration, Value::Duration(v)) | (Kind::Frequency, Value::Frequency(v)) | (Kind::Size, Value::Size(v)) => {
                    if *v == 0 {
                        self.err(Diag::new(p.value_span.clone(), format!("`{}` must be positive", p.name.name)).with_label("zero"));
                        false
                    } else if *v > u64::MAX as u128 {
                        self.err(Diag::new(p.value_span.clone(), format!("`{}` is too large", p.name.name)));
                        false
                    } else {
                        true
                    }
                }
                (Kind::Bool, Value::Bool(_)) => true,
                (k, v) => {
                    let mut d = Diag::new(p.value_span.clone(), format!("`{}` takes {}, not {}", p.name.name, k.describe(), v.kind()))
                        .with_label(format!("expected {}", k.describe()));
                    if let (Kind::Duration, Value::Int(n)) = (k, v) {
                        d = d.with_help(format!("add a unit: `{n}us`"));
                    }
                    self.err(d);
                    false
                }
            };
            if ok {
                out.push((p.name.name.clone(), p.value.clone(), p.value_span.clone()));
            }
        }
        out
    }

    fn scheduler_and_budget(&mut self, s: &ast::Service, model: &mut Model) {
        if let Some(b) = &s.budget {
            for (name, v, span) in self.params(b, BUDGET_PARAMS, "budget") {
                match (name.as_str(), v) {
                    ("cores", Value::Int(n)) => {
                        model.budget.cores = n as u32;
                        model.budget.cores_span = Some(span);
                    }
                    ("ram", Value::Size(n)) => model.budget.ram = Some((n as u64, span)),
                    ("messages_per_turn", Value::Int(n)) => model.budget.messages_per_turn = n as u32,
                    ("handler_time", Value::Duration(n)) => model.budget.handler_time = Some(n as u64),
                    _ => {}
                }
            }
        }
        let Some(b) = &s.scheduler else { return };
        let Some(cls) = &b.class else { return };
        let Some((_, class)) = SchedClass::ALL.iter().find(|c| c.0 == cls.name) else {
            self.err(Diag::new(cls.span.clone(), format!("unknown scheduler class `{}`", cls.name))
                .with_label("not a scheduler class")
                .with_note("scheduler classes: api, ui, db, messaging (hallows-sched)")
                .suggest(&cls.name, SchedClass::ALL.iter().map(|c| c.0)));
            return;
        };
        let errors_before = self.errors.len();
        let set = self.params(b, class.params(), class.name());
        let get = |n: &str| set.iter().find(|p| p.0 == n).map(|p| (p.1.clone(), p.2.clone()));
        let queue_capacity = match get("queue_capacity") {
            Some((Value::Int(n), _)) => n as usize,
            _ => 64,
        };
        let frame_period = match get("frame_rate") {
            Some((Value::Frequency(hz), _)) => Some((1_000_000_000u128 / hz).max(1) as u64),
            _ => None,
        };
        let frame_deadline = match get("frame_deadline") {
            Some((Value::Duration(d), span)) => match frame_period {
                None => {
                    self.err(Diag::new(span, "`frame_deadline` needs `frame_rate`").with_label("no frame period").with_help("a frame's deadline is relative to its start: set `frame_rate` too"));
                    None
                }
                Some(p) if d as u64 > p => {
                    self.err(Diag::new(span, format!("frame_deadline ({d} ns) is longer than the frame period ({p} ns)"))
                        .with_label("past the next frame")
                        .with_help("a frame must finish before the next one starts; lower it or the frame rate"));
                    None
                }
                Some(_) => Some(d as u64),
            },
            _ => None,
        };
        let sched = Scheduler { class: *class, set: set.iter().map(|p| (p.0.clone(), p.1.clone())).collect(), queue_capacity, frame_period, frame_deadline };
        // The policy itself validates the configuration, exactly as at run time.
        // Only for blocks without their own errors: a misspelled parameter is
        // the cause, not a missing one.
        let validated = if self.errors.len() == errors_before { crate::codegen::validate_config(&sched, model.budget.cores) } else { Ok(()) };
        if let Err(e) = validated {
            self.err(Diag::new(b.keyword_span.clone(), format!("hallows-sched rejects this {} configuration: {e}", class.name())).with_label("rejected by the policy"));
        }
        if let Some(ht) = model.budget.handler_time {
            let bound = match class {
                SchedClass::Messaging => match get("latency_bound") {
                    Some((Value::Duration(n), _)) => Some(("latency_bound", n as u64)),
                    _ => None,
                },
                SchedClass::Ui => frame_deadline.map(|d| ("frame_deadline", d)).or(frame_period.map(|p| ("the frame period", p))),
                _ => None,
            };
            if let Some((what, bound)) = bound {
                if ht >= bound {
                    let span = s.budget.as_ref().and_then(|b| b.params.iter().find(|p| p.name.name == "handler_time")).map_or(0..0, |p| p.value_span.clone());
                    self.err(Diag::new(span, format!("handler_time ({ht} ns) must be shorter than {what} ({bound} ns)"))
                        .with_label("budget exceeds the scheduler's bound")
                        .with_help("a single handler call would already miss the bound"));
                }
            }
        }
        model.scheduler = Some(sched);
    }

    fn channels(&mut self, s: &ast::Service, extension: Option<Extension>, model: &mut Model) {
        let sched = model.scheduler.as_ref().map(|s| s.class);
        let mut seen: HashMap<String, (Span, String)> = HashMap::new();
        let mut handlers: HashMap<String, Span> = HashMap::new();
        let mut add_handler = |c: &mut Checker, h: &Ident| {
            if let Some(d) = unusable(h, "a handler") {
                c.err(d);
            } else if !is_snake(&h.name) {
                c.err(Diag::new(h.span.clone(), format!("handler name `{}` must be snake_case", h.name)).with_help("handlers are Rust functions (trait methods)"));
            } else if let Some(prev) = handlers.insert(h.name.clone(), h.span.clone()) {
                c.err(Diag::new(h.span.clone(), format!("handler `{}` is already bound", h.name))
                    .with_related(prev, "first bound here")
                    .with_help("each channel, route and frame gets its own handler function"));
            }
        };
        let message = |c: &mut Checker, id: &Ident| -> Option<usize> {
            if let Some(i) = model.structs.iter().position(|st| st.name == id.name) {
                return Some(i);
            }
            if model.enums.iter().any(|e| e.name == id.name) || Prim::ALL.iter().any(|p| p.0 == id.name) || id.name == "bool" {
                c.err(Diag::new(id.span.clone(), format!("a channel carries a message_struct, and `{}` is not one", id.name))
                    .with_label("not a message_struct")
                    .with_help(format!("wrap it: `message_struct {}Message {{ field value: {}; }}`", id.name, id.name)));
            } else {
                c.err(Diag::new(id.span.clone(), format!("unknown message type `{}`", id.name)).with_label("not a declared message_struct").suggest(&id.name, model.structs.iter().map(|s| s.name.as_str())));
            }
            None
        };
        let mut check_name = |c: &mut Checker, name: &str, span: &Span| -> bool {
            if !valid_channel_name(name) {
                c.err(Diag::new(span.clone(), format!("\"{name}\" is not a valid channel name")).with_help("manifest channel names are `[a-z][a-z0-9_-]*`, at most 31 bytes"));
                return false;
            }
            if let Some(d) = unusable(&Ident { name: name.to_owned(), span: span.clone() }, "a channel a spec uses (the generated endpoints are fields named after their channels)") {
                c.err(d.with_help("rename the channel in the manifest and here"));
                return false;
            }
            // The generated endpoint fields write `-` as `_`: "a-b" and "a_b" would collide.
            if let Some((prev, written)) = seen.insert(name.replace('-', "_"), (span.clone(), name.to_owned())) {
                let d = if written == name {
                    Diag::new(span.clone(), format!("channel \"{name}\" is used twice in this service"))
                        .with_help("a channel has one producer and one consumer: a service names it once")
                } else {
                    Diag::new(span.clone(), format!("channels \"{written}\" and \"{name}\" would have the same name in the generated Rust"))
                        .with_help("the generated endpoints write `-` as `_`: rename one of the channels in the manifest and here")
                };
                c.err(d.with_related(prev, "first used here"));
                return false;
            }
            true
        };
        // Routes (served by the loop) and calls (their other end: methods).
        let routes = s.routes.iter().enumerate().map(|(i, r)| (r, Some(i), None));
        for (r, route, call) in routes.chain(s.calls.iter().enumerate().map(|(i, r)| (r, None, Some(i)))) {
            if call.is_some() && SERVICE_METHODS.contains(&r.handler.name.as_str()) {
                self.err(Diag::new(r.handler.span.clone(), format!("`{}` names a method the generated service already has", r.handler.name))
                    .with_help(format!("a call becomes a method of `Service`; these are taken: {}", SERVICE_METHODS.join(", "))));
                continue;
            }
            add_handler(self, &r.handler);
            let ok1 = check_name(self, &r.request_channel.0, &r.request_channel.1);
            let ok2 = check_name(self, &r.reply_channel.0, &r.reply_channel.1);
            let (Some(req), Some(rep)) = (message(self, &r.request), message(self, &r.reply)) else { continue };
            if !(ok1 && ok2) {
                continue;
            }
            // A route receives requests and sends replies; a call the reverse.
            let (req_dir, rep_dir) = if route.is_some() { (ChannelDirection::Receive, ChannelDirection::Send) } else { (ChannelDirection::Send, ChannelDirection::Receive) };
            let handler = route.map(|_| r.handler.name.clone());
            model.channels.push(Channel { name: r.request_channel.0.clone(), span: r.request_channel.1.clone(), direction: req_dir, message: req, handler, in_place: false, task_class: TaskClass::Request, route, input: false, call });
            model.channels.push(Channel { name: r.reply_channel.0.clone(), span: r.reply_channel.1.clone(), direction: rep_dir, message: rep, handler: None, in_place: false, task_class: TaskClass::Request, route, input: false, call });
            let link = Route { handler: r.handler.name.clone(), request_channel: model.channels.len() - 2, reply_channel: model.channels.len() - 1 };
            if route.is_some() {
                model.routes.push(link);
            } else {
                model.calls.push(link);
            }
        }
        if let Some(h) = &s.frame_handler {
            add_handler(self, h);
        }
        for ch in &s.channels {
            if let Some(h) = &ch.handler {
                add_handler(self, h);
            }
            let ok = check_name(self, &ch.name, &ch.name_span);
            let msg = message(self, &ch.carrying);
            let default = if ch.input { TaskClass::Input } else { sched.map_or(TaskClass::Message, |c| c.task_classes()[0]) };
            let task_class = match &ch.task_class {
                None => default,
                Some(tc) => match TaskClass::ALL.iter().find(|c| c.0 == tc.name) {
                    None => {
                        self.err(Diag::new(tc.span.clone(), format!("unknown task class `{}`", tc.name))
                            .with_note("task classes: request, input, commit, read, background, message")
                            .suggest(&tc.name, TaskClass::ALL.iter().map(|c| c.0)));
                        default
                    }
                    Some((_, c)) => match sched {
                        None => {
                            self.err(Diag::new(tc.span.clone(), "`as_task_class` needs a `scheduler_class`").with_help("without a scheduler the channels are served in declaration order"));
                            default
                        }
                        Some(sc) if !sc.task_classes().contains(c) => {
                            let served: Vec<&str> = sc.task_classes().iter().map(|c| c.name()).collect();
                            self.err(Diag::new(tc.span.clone(), format!("the `{}` scheduler does not serve task class `{}`", sc.name(), tc.name))
                                .with_label("not served by this scheduler")
                                .with_note(format!("`{}` serves: {}", sc.name(), served.join(", "))));
                            default
                        }
                        Some(_) => *c,
                    },
                },
            };
            if let (true, Some(m)) = (ok, msg) {
                model.channels.push(Channel { name: ch.name.clone(), span: ch.name_span.clone(), direction: ch.direction, message: m, handler: ch.handler.as_ref().map(|h| h.name.clone()), in_place: ch.in_place.is_some(), task_class, route: None, input: ch.input, call: None });
            }
        }
        if let Some(h) = &s.frame_handler {
            if let Some(sc) = &model.scheduler {
                if sc.frame_period.is_none() && sc.class == SchedClass::Ui {
                    self.err(Diag::new(h.span.clone(), "a frame handler needs `frame_rate` in `scheduler_class ui`").with_label("no frame rate").with_help("add `frame_rate = 60hz;` to the scheduler block"));
                }
            }
        }
        let _ = extension;
    }

    fn extensions(&mut self, spec: &ast::Spec, model: &Model) {
        let s = &spec.service;
        let ext = spec.extension.as_ref().map(|e| e.0);
        if ext != Some(Extension::Basilisk) {
            for r in &s.routes {
                self.err(Diag::new(r.handler.span.clone(), "`route` belongs to the Basilisk extension").with_label("Basilisk construct").with_help("add `use_extension basilisk;` after `parseltongue_version 1;`"));
            }
            for r in &s.calls {
                self.err(Diag::new(r.handler.span.clone(), "`call` belongs to the Basilisk extension").with_label("Basilisk construct").with_help("add `use_extension basilisk;` after `parseltongue_version 1;`"));
            }
        }
        if ext != Some(Extension::Nagini) {
            if let Some(h) = &s.frame_handler {
                self.err(Diag::new(h.span.clone(), "`frame_handler` belongs to the Nagini extension").with_label("Nagini construct").with_help("add `use_extension nagini;` after `parseltongue_version 1;`"));
            }
            for c in s.channels.iter().filter(|c| c.input) {
                self.err(Diag::new(c.name_span.clone(), "`input_channel` belongs to the Nagini extension").with_label("Nagini construct").with_help("add `use_extension nagini;` after `parseltongue_version 1;`"));
            }
        }
        if let Some((e, span)) = &spec.extension {
            let want = match e {
                Extension::Basilisk => SchedClass::Api,
                Extension::Nagini => SchedClass::Ui,
            };
            match (&model.scheduler, &s.scheduler) {
                (Some(sc), _) if sc.class != want => {
                    let at = s.scheduler.as_ref().and_then(|b| b.class.as_ref()).map_or(span.clone(), |c| c.span.clone());
                    self.err(Diag::new(at, format!("a {} service runs under the `{}` scheduler, not `{}`", capital(e.name()), want.name(), sc.class.name()))
                        .with_label("wrong scheduler class")
                        .with_related(span.clone(), format!("{} enabled here", capital(e.name()))));
                }
                (None, None) => {
                    self.err(Diag::new(span.clone(), format!("a {} service needs `scheduler_class {}`", capital(e.name()), want.name())).with_label(format!("{} needs a scheduler", capital(e.name()))));
                }
                _ => {}
            }
        }
    }
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
}

impl Budget {
    pub fn ram_bytes(&self) -> Option<u64> {
        self.ram.as_ref().map(|r| r.0)
    }
}

/// Keywords, for callers that want to check a word.
pub fn is_keyword(w: &str) -> bool {
    KEYWORDS.contains(&w)
}
