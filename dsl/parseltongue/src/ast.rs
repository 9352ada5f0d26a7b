//! The syntax tree of a spec, with spans. It holds what was written and
//! nothing derived: layouts and resolved types live in [`crate::model`].

use std::ops::Range;

pub type Span = Range<usize>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extension {
    /// Backend API services: request/reply routes; scheduler `api`.
    Basilisk,
    /// UI services: frame handler and input channels; scheduler `ui`.
    Nagini,
}

impl Extension {
    pub fn name(self) -> &'static str {
        match self {
            Extension::Basilisk => "basilisk",
            Extension::Nagini => "nagini",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub version: u128,
    pub version_span: Span,
    pub extension: Option<(Extension, Span)>,
    /// `import_messages_from "PATH";`, in order.
    pub imports: Vec<Import>,
    /// `message_library NAME { ... }` (types only, for importing) rather
    /// than `service NAME { ... }`.
    pub library: bool,
    pub service: Service,
}

/// `import_messages_from "PATH";`: the message types of a message library,
/// usable as if declared here. `PATH` is relative to the importing file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    pub path: String,
    /// The path literal.
    pub span: Span,
}

impl StructDecl {
    /// Every span moved to `span` (an imported declaration is shown at its
    /// `import_messages_from`, in the importing file).
    pub fn respan(&mut self, span: &Span) {
        self.name.span = span.clone();
        for f in &mut self.fields {
            f.name.span = span.clone();
            f.ty.respan(span);
        }
    }
}

impl EnumDecl {
    /// As [`StructDecl::respan`].
    pub fn respan(&mut self, span: &Span) {
        self.name.span = span.clone();
        self.repr.span = span.clone();
        for v in &mut self.variants {
            v.name.span = span.clone();
            v.value_span = span.clone();
        }
    }
}

impl TypeRef {
    fn respan(&mut self, to: &Span) {
        match self {
            TypeRef::Named(i) => i.span = to.clone(),
            TypeRef::Array { elem, span, .. } => {
                *span = to.clone();
                elem.respan(to);
            }
            TypeRef::BoundedBytes { span, .. } | TypeRef::BoundedString { span, .. } => *span = to.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Service {
    pub name: Ident,
    pub structs: Vec<StructDecl>,
    pub enums: Vec<EnumDecl>,
    pub channels: Vec<ChannelDecl>,
    pub routes: Vec<RouteDecl>,
    /// Basilisk client side: `call NAME sends TYPE on "C" returns TYPE on "C";`
    /// (the route's fields: `handler` is the call's method name).
    pub calls: Vec<RouteDecl>,
    pub frame_handler: Option<Ident>,
    pub scheduler: Option<Block>,
    pub budget: Option<Block>,
    /// Basilisk's web declarations (HTTP routes, resources, JSON types).
    pub web: WebDecls,
}

/// Basilisk's web declarations, as written.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct WebDecls {
    /// `json_struct NAME { field ... }`: a typed, validated JSON body.
    pub structs: Vec<JsonStruct>,
    /// `resource NAME at "/path" { field ...; page_size N; }`.
    pub resources: Vec<Resource>,
    /// `http_route METHOD "/path/{param}" handled_by NAME [accepts TYPE];`
    pub routes: Vec<HttpRoute>,
    /// `authentication bearer;` (its span).
    pub auth: Option<Span>,
    /// `rate_limit { requests = N; per = DURATION; burst = N; clients = N; }`.
    pub rate_limit: Option<Block>,
}

impl WebDecls {
    /// The first declaration's span, if any.
    pub fn first_span(&self) -> Option<Span> {
        let s = self.structs.iter().map(|d| d.name.span.clone());
        let r = self.resources.iter().map(|d| d.name.span.clone());
        let h = self.routes.iter().map(|d| d.method.span.clone());
        let a = self.auth.iter().cloned().chain(self.rate_limit.iter().map(|b| b.keyword_span.clone()));
        s.chain(r).chain(h).chain(a).min_by_key(|s| s.start)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonStruct {
    pub name: Ident,
    pub fields: Vec<JsonField>,
}

/// `field NAME: TYPE { RULE; ... }` (the block is optional).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonField {
    pub name: Ident,
    pub ty: Ident,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub kind: RuleKind,
    /// The rule's keyword.
    pub span: Span,
    /// Its argument (the keyword's span when it has none).
    pub arg_span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleKind {
    Required,
    MinLength(u128),
    MaxLength(u128),
    Min(u128),
    Max(u128),
    Pattern(String),
    OneOf(Vec<String>),
    Default(Literal),
}

impl RuleKind {
    pub fn keyword(&self) -> &'static str {
        match self {
            RuleKind::Required => "required",
            RuleKind::MinLength(_) => "min_length",
            RuleKind::MaxLength(_) => "max_length",
            RuleKind::Min(_) => "min",
            RuleKind::Max(_) => "max",
            RuleKind::Pattern(_) => "pattern",
            RuleKind::OneOf(_) => "one_of",
            RuleKind::Default(_) => "default",
        }
    }
}

/// A `default` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Literal {
    Bool(bool),
    Int(u128),
    Str(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub name: Ident,
    pub path: (String, Span),
    pub fields: Vec<JsonField>,
    pub page_size: Option<(u128, Span)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRoute {
    pub method: Ident,
    pub path: (String, Span),
    pub handler: Ident,
    pub accepts: Option<Ident>,
}

impl Default for Ident {
    fn default() -> Self {
        Ident { name: String::new(), span: 0..0 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeRef {
    Named(Ident),
    Array { elem: Box<TypeRef>, len: u128, span: Span },
    BoundedBytes { cap: u128, span: Span },
    BoundedString { cap: u128, span: Span },
}

impl TypeRef {
    pub fn span(&self) -> Span {
        match self {
            TypeRef::Named(i) => i.span.clone(),
            TypeRef::Array { span, .. } | TypeRef::BoundedBytes { span, .. } | TypeRef::BoundedString { span, .. } => span.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: Ident,
    pub ty: TypeRef,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructDecl {
    pub name: Ident,
    pub fields: Vec<Field>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    pub name: Ident,
    pub value: u128,
    pub value_span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnumDecl {
    pub name: Ident,
    pub repr: Ident,
    pub variants: Vec<Variant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelDirection {
    /// `receive_channel` (and Nagini's `input_channel`): this partition consumes.
    Receive,
    /// `send_channel`: this partition produces.
    Send,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelDecl {
    pub direction: ChannelDirection,
    /// Declared with Nagini's `input_channel`.
    pub input: bool,
    pub name: String,
    pub name_span: Span,
    pub carrying: Ident,
    pub handler: Option<Ident>,
    /// `handled_by NAME in_place`: the handler gets each batch where it
    /// lies in the ring (the keyword's span).
    pub in_place: Option<Span>,
    pub task_class: Option<Ident>,
    /// Set for channels implied by a Basilisk route (index into `routes`).
    pub route: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteDecl {
    pub handler: Ident,
    pub request: Ident,
    pub request_channel: (String, Span),
    pub reply: Ident,
    pub reply_channel: (String, Span),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(u128),
    /// Nanoseconds.
    Duration(u128),
    /// Hertz.
    Frequency(u128),
    /// Bytes.
    Size(u128),
    Bool(bool),
    Word(String),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "an integer",
            Value::Duration(_) => "a duration",
            Value::Frequency(_) => "a frequency",
            Value::Size(_) => "a size",
            Value::Bool(_) => "a boolean",
            Value::Word(_) => "a word",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: Ident,
    pub value: Value,
    pub value_span: Span,
}

/// `scheduler_class CLASS { ... }` (with `class`) or `budget { ... }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub keyword_span: Span,
    pub class: Option<Ident>,
    pub params: Vec<Param>,
}
