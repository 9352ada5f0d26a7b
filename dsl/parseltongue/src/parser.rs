//! Recursive-descent parser from tokens to [`ast::Spec`].
//!
//! It owns the grammar and the syntax errors: each says which tokens were
//! expected at that point and, when the token found is a word close to one
//! of them, which one was probably meant. It stops at the first syntax error
//! (later errors would mostly be consequences); meaning is checked later.

// A syntax error ends the parse, so the (large) error value is built at
// most once per spec: not worth boxing.
#![allow(clippy::result_large_err)]

use crate::ast::*;
use crate::diag::{did_you_mean, Diag};
use crate::lexer::{lex, Tok, Token};

mod web;
pub use web::{MAX_FIELDS, WEB_DECLARATIONS};

/// Every keyword; none can be used as a name.
pub const KEYWORDS: &[&str] = &[
    "parseltongue_version", "use_extension", "service", "message_struct", "message_enum", "field",
    "variant", "receive_channel", "send_channel", "input_channel", "carrying", "handled_by", "in_place",
    "as_task_class", "scheduler_class", "budget", "route", "receives", "on", "replies",
    "frame_handler", "bounded_bytes", "bounded_string", "true", "false", "import_messages_from",
    "message_library", "call", "sends", "returns",
];

/// Declarations that may appear inside `service { }`.
pub const DECLARATIONS: &[&str] = &[
    "message_struct", "message_enum", "receive_channel", "send_channel", "scheduler_class", "budget",
    "route", "call", "frame_handler", "input_channel",
];

const EXTENSIONS: &[&str] = &["basilisk", "nagini"];
const TIME_UNITS: &[(&str, u128)] = &[("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000)];
const SIZE_UNITS: &[(&str, u128)] = &[("B", 1), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)];
const FREQ_UNITS: &[&str] = &["hz"];

/// Deepest nesting of array types (`[[[u8; 2]; 2]; 2]` is 3): the parser
/// and the checks recurse on it, so it is bounded rather than left to the stack.
pub const MAX_TYPE_NESTING: usize = 32;
/// Most message types (structs and enums) in one service: the checks
/// follow struct nesting recursively, so the chain is bounded.
pub const MAX_TYPES: usize = 256;

pub fn parse(src: &str) -> Result<Spec, Diag> {
    let tokens = lex(src)?;
    let mut p = Parser { tokens, pos: 0, depth: 0 };
    p.spec()
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Array types open around the current token.
    depth: usize,
}

type R<T> = Result<T, Diag>;

fn list(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
    match quoted.len() {
        1 => quoted[0].clone(),
        _ => format!("one of {}", quoted.join(", ")),
    }
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(&self.peek().kind, Tok::Word(x) if x == w)
    }

    fn is_punct(&self, c: char) -> bool {
        self.peek().kind == Tok::Punct(c)
    }

    /// "expected X, found Y", with a suggestion when Y is a near-miss word.
    fn expected(&self, what: &[&str], context: &str) -> Diag {
        let t = self.peek();
        let mut d = Diag::new(t.span.clone(), format!("expected {} {context}, found {}", list(what), t.kind.describe()))
            .with_label(format!("expected {}", list(what)));
        if let Tok::Word(w) = &t.kind {
            if let Some(best) = did_you_mean(w, what.iter().copied()) {
                d = d.with_help(format!("did you mean `{best}`?"));
            }
        }
        d
    }

    fn keyword(&mut self, kw: &str, context: &str) -> R<Token> {
        if self.is_word(kw) {
            Ok(self.bump())
        } else {
            Err(self.expected(&[kw], context))
        }
    }

    fn punct(&mut self, c: char, context: &str) -> R<Token> {
        if self.is_punct(c) {
            Ok(self.bump())
        } else {
            let s = c.to_string();
            Err(self.expected(&[&s], context))
        }
    }

    fn ident(&mut self, what: &str) -> R<Ident> {
        let t = self.peek().clone();
        match &t.kind {
            Tok::Word(w) if KEYWORDS.contains(&w.as_str()) => Err(Diag::new(t.span, format!("`{w}` is a keyword and cannot be used as {what}"))
                .with_label("keyword")
                .with_help(format!("choose another name, e.g. `{w}_value`"))),
            Tok::Word(w) => {
                self.bump();
                Ok(Ident { name: w.clone(), span: t.span })
            }
            _ => Err(Diag::new(t.span.clone(), format!("expected {what}, found {}", t.kind.describe())).with_label(format!("expected {what}"))),
        }
    }

    fn number(&mut self, what: &str) -> R<(u128, std::ops::Range<usize>)> {
        let t = self.peek().clone();
        match &t.kind {
            Tok::Number { value, unit } if unit.is_empty() => {
                self.bump();
                Ok((*value, t.span))
            }
            Tok::Number { unit, .. } => Err(Diag::new(t.span, format!("{what} takes a plain number, without the unit `{unit}`"))),
            _ => Err(Diag::new(t.span.clone(), format!("expected {what}, found {}", t.kind.describe())).with_label("expected a number")),
        }
    }

    fn string(&mut self, what: &str) -> R<(String, std::ops::Range<usize>)> {
        let t = self.peek().clone();
        match &t.kind {
            Tok::Str(s) => {
                self.bump();
                Ok((s.clone(), t.span))
            }
            Tok::Word(w) => Err(Diag::new(t.span.clone(), format!("expected {what} (a string), found {}", t.kind.describe()))
                .with_label("expected a string")
                .with_help(format!("channel names are strings: write \"{w}\""))),
            _ => Err(Diag::new(t.span.clone(), format!("expected {what} (a string), found {}", t.kind.describe())).with_label("expected a string")),
        }
    }

    fn spec(&mut self) -> R<Spec> {
        self.keyword("parseltongue_version", "at the start of a spec")?;
        let (version, version_span) = self.number("the language version")?;
        if version != 1 {
            return Err(Diag::new(version_span, format!("parseltongue_version {version} is not supported; this compiler reads version 1"))
                .with_label("unsupported version")
                .with_help(if version > 1 { "the spec was written for a newer compiler: upgrade parseltongue" } else { "versions start at 1" }));
        }
        self.punct(';', "after the version")?;
        let mut extension = None;
        if self.is_word("use_extension") {
            self.bump();
            let id = self.peek().clone();
            let Tok::Word(w) = &id.kind else {
                return Err(self.expected(EXTENSIONS, "after `use_extension`"));
            };
            let ext = match w.as_str() {
                "basilisk" => Extension::Basilisk,
                "nagini" => Extension::Nagini,
                _ => {
                    return Err(Diag::new(id.span.clone(), format!("unknown extension `{w}`"))
                        .with_label("not an extension")
                        .with_note("the extensions are `basilisk` (API services) and `nagini` (UI services)")
                        .suggest(w, EXTENSIONS.iter().copied()))
                }
            };
            self.bump();
            extension = Some((ext, id.span));
            self.punct(';', "after the extension")?;
            if self.is_word("use_extension") {
                return Err(Diag::new(self.peek().span.clone(), "a spec uses at most one extension")
                    .with_help("Basilisk is for `api` services and Nagini for `ui` services; split the service in two"));
            }
        }
        let mut imports = Vec::new();
        while self.is_word("import_messages_from") {
            self.bump();
            let t = self.peek().clone();
            let Tok::Str(path) = &t.kind else {
                return Err(Diag::new(t.span.clone(), format!("expected the path of a message library (a string literal), found {}", t.kind.describe()))
                    .with_label("expected \"PATH.pt\"")
                    .with_help("write `import_messages_from \"common.pt\";`, the path relative to this file"));
            };
            self.bump();
            imports.push(Import { path: path.clone(), span: t.span.clone() });
            self.punct(';', "after the imported path")?;
        }
        let library = self.is_word("message_library");
        let service = self.service()?;
        if self.peek().kind != Tok::Eof {
            let t = self.peek();
            let mut d = Diag::new(t.span.clone(), format!("expected end of file after the service, found {}", t.kind.describe()));
            if self.is_word("service") {
                d = d.with_label("second service").with_help("a spec declares exactly one service: one partition, one spec");
            }
            return Err(d);
        }
        if library && extension.is_some() {
            let span = extension.as_ref().map(|e| e.1.clone()).unwrap_or_default();
            return Err(Diag::new(span, "a message_library uses no extension").with_help("remove `use_extension`: extensions apply to the service that imports the library"));
        }
        Ok(Spec { version, version_span, extension, imports, library, service })
    }

    fn service(&mut self) -> R<Service> {
        let library = self.is_word("message_library");
        if !self.is_word("service") && !library {
            let mut exp = vec!["service", "message_library", "import_messages_from"];
            if self.pos == 3 {
                exp.push("use_extension");
            }
            return Err(self.expected(&exp, "(the service declaration)"));
        }
        self.bump();
        let name = self.ident("the service name")?;
        self.punct('{', "to open the service body")?;
        let mut s = Service { name, ..Service::default() };
        loop {
            let t = self.peek().clone();
            let Tok::Word(w) = &t.kind else {
                if self.is_punct('}') {
                    self.bump();
                    return Ok(s);
                }
                let mut exp: Vec<&str> = DECLARATIONS.to_vec();
                exp.push("}");
                return Err(self.expected(&exp, "in the service body"));
            };
            match w.as_str() {
                "receive_channel" | "send_channel" | "input_channel" | "route" | "call" | "frame_handler" | "scheduler_class" | "budget" | "json_struct" | "resource" | "http_route" | "authentication" | "rate_limit" if library => {
                    return Err(Diag::new(t.span.clone(), format!("a message_library declares only `message_struct` and `message_enum`, not `{w}`"))
                        .with_label("not a message type")
                        .with_help("declare channels, routes, schedulers and budgets in the service that imports the library"));
                }
                "message_struct" | "message_enum" if s.structs.len() + s.enums.len() == MAX_TYPES => {
                    return Err(Diag::new(t.span.clone(), format!("a service declares at most {MAX_TYPES} message types"))
                        .with_label(format!("type number {}", MAX_TYPES + 1))
                        .with_help("split the service, or merge types"));
                }
                "message_struct" => {
                    self.bump();
                    s.structs.push(self.struct_decl()?);
                }
                "message_enum" => {
                    self.bump();
                    s.enums.push(self.enum_decl()?);
                }
                "receive_channel" | "send_channel" | "input_channel" => {
                    self.bump();
                    s.channels.push(self.channel_decl(w)?);
                }
                "route" => {
                    self.bump();
                    s.routes.push(self.route_decl(t.span.clone())?);
                }
                "call" => {
                    self.bump();
                    s.calls.push(self.call_decl()?);
                }
                w if WEB_DECLARATIONS.contains(&w) => {
                    let w = w.to_owned();
                    self.web_decl(&w, &mut s)?;
                }
                "frame_handler" => {
                    self.bump();
                    let h = self.ident("the frame handler's function name")?;
                    self.punct(';', "after the frame handler")?;
                    if let Some(prev) = &s.frame_handler {
                        return Err(Diag::new(h.span, "a service has at most one frame handler").with_related(prev.span.clone(), "first frame handler"));
                    }
                    s.frame_handler = Some(h);
                }
                "scheduler_class" | "budget" => {
                    self.bump();
                    let is_sched = w == "scheduler_class";
                    let class = if is_sched { Some(self.ident("the scheduler class")?) } else { None };
                    let params = self.params(if is_sched { "scheduler parameters" } else { "budget parameters" })?;
                    let block = Block { keyword_span: t.span.clone(), class, params };
                    let slot = if is_sched { &mut s.scheduler } else { &mut s.budget };
                    if let Some(prev) = slot {
                        return Err(Diag::new(t.span.clone(), format!("`{w}` is declared twice"))
                            .with_related(prev.keyword_span.clone(), "first declared here")
                            .with_help("merge the two blocks"));
                    }
                    *slot = Some(block);
                }
                _ => {
                    let mut exp: Vec<&str> = DECLARATIONS.to_vec();
                    exp.push("}");
                    let mut d = self.expected(&exp, "in the service body");
                    if w == "message" || w == "struct" {
                        d = d.with_help("messages are declared with `message_struct`");
                    } else if w == "enum" {
                        d = d.with_help("enums are declared with `message_enum`");
                    }
                    return Err(d);
                }
            }
        }
    }

    fn struct_decl(&mut self) -> R<StructDecl> {
        let name = self.ident("the message name")?;
        self.punct('{', "to open the message body")?;
        let mut fields = Vec::new();
        while !self.is_punct('}') {
            if !self.is_word("field") {
                return Err(self.expected(&["field", "}"], "in a message_struct"));
            }
            self.bump();
            let fname = self.ident("a field name")?;
            self.punct(':', "after the field name")?;
            let ty = self.type_ref()?;
            self.punct(';', "after the field type")?;
            fields.push(Field { name: fname, ty });
        }
        self.bump();
        Ok(StructDecl { name, fields })
    }

    fn type_ref(&mut self) -> R<TypeRef> {
        let start = self.peek().span.start;
        if self.is_punct('[') {
            if self.depth == MAX_TYPE_NESTING {
                return Err(Diag::new(self.peek().span.clone(), format!("array types nest more than {MAX_TYPE_NESTING} deep"))
                    .with_label("too deep")
                    .with_help("declare a message_struct for the inner part and use it as the element type"));
            }
            self.bump();
            self.depth += 1;
            let elem = self.type_ref();
            self.depth -= 1;
            let elem = elem?;
            self.punct(';', "between the array's element type and length")?;
            let (len, _) = self.number("the array length")?;
            let end = self.punct(']', "to close the array type")?.span.end;
            return Ok(TypeRef::Array { elem: Box::new(elem), len, span: start..end });
        }
        if self.is_word("bounded_bytes") || self.is_word("bounded_string") {
            let bytes = self.is_word("bounded_bytes");
            self.bump();
            self.punct('<', "before the capacity")?;
            let (cap, _) = self.number("the capacity in bytes")?;
            let end = self.punct('>', "after the capacity")?.span.end;
            return Ok(if bytes { TypeRef::BoundedBytes { cap, span: start..end } } else { TypeRef::BoundedString { cap, span: start..end } });
        }
        Ok(TypeRef::Named(self.ident("a type")?))
    }

    fn enum_decl(&mut self) -> R<EnumDecl> {
        let name = self.ident("the enum name")?;
        self.punct(':', "after the enum name (then its integer type, e.g. `: u8`)")?;
        let repr = self.ident("the enum's integer type")?;
        self.punct('{', "to open the enum body")?;
        let mut variants = Vec::new();
        while !self.is_punct('}') {
            if !self.is_word("variant") {
                return Err(self.expected(&["variant", "}"], "in a message_enum"));
            }
            self.bump();
            let vname = self.ident("a variant name")?;
            self.punct('=', "after the variant name (every variant has an explicit value)")?;
            let (value, value_span) = self.number("the variant value")?;
            self.punct(';', "after the variant")?;
            variants.push(Variant { name: vname, value, value_span });
        }
        self.bump();
        Ok(EnumDecl { name, repr, variants })
    }

    fn channel_decl(&mut self, kw: &str) -> R<ChannelDecl> {
        let (name, name_span) = self.string("the manifest channel name")?;
        self.keyword("carrying", "after the channel name")?;
        let carrying = self.ident("the message type")?;
        let direction = if kw == "send_channel" { ChannelDirection::Send } else { ChannelDirection::Receive };
        let mut handler = None;
        let mut in_place = None;
        let mut task_class = None;
        if direction == ChannelDirection::Receive {
            self.keyword("handled_by", "(a received message needs a handler)")?;
            handler = Some(self.ident("the handler's function name")?);
            if kw == "receive_channel" && self.is_word("in_place") {
                in_place = Some(self.bump().span);
            }
            if kw == "receive_channel" && self.is_word("as_task_class") {
                self.bump();
                task_class = Some(self.ident("a task class")?);
            }
            if !self.is_punct(';') {
                let exp: &[&str] = match (kw == "receive_channel", in_place.is_some() || task_class.is_some()) {
                    (true, false) => &[";", "in_place", "as_task_class"],
                    (true, true) if task_class.is_none() => &[";", "as_task_class"],
                    _ => &[";"],
                };
                return Err(self.expected(exp, "after the handler"));
            }
        }
        self.punct(';', "after the channel declaration")?;
        Ok(ChannelDecl { direction, input: kw == "input_channel", name, name_span, carrying, handler, in_place, task_class, route: None })
    }

    fn route_decl(&mut self, _kw: std::ops::Range<usize>) -> R<RouteDecl> {
        self.pair_decl("route", "the route's handler function name", "receives", "replies")
    }

    /// `call NAME sends TYPE on "CHANNEL" returns TYPE on "CHANNEL";`
    fn call_decl(&mut self) -> R<RouteDecl> {
        self.pair_decl("call", "the call's method name", "sends", "returns")
    }

    /// `NAME REQUEST_KW TYPE on "CHANNEL" REPLY_KW TYPE on "CHANNEL";`: a
    /// route (`receives` / `replies`) or a call (`sends` / `returns`).
    fn pair_decl(&mut self, what: &str, name: &str, request_kw: &str, reply_kw: &str) -> R<RouteDecl> {
        let handler = self.ident(name)?;
        self.keyword(request_kw, &format!("after the {what} name"))?;
        let request = self.ident("the request type")?;
        self.keyword("on", "after the request type")?;
        let request_channel = self.string("the request channel")?;
        self.keyword(reply_kw, "after the request channel")?;
        let reply = self.ident("the reply type")?;
        self.keyword("on", "after the reply type")?;
        let reply_channel = self.string("the reply channel")?;
        self.punct(';', &format!("after the {what}"))?;
        Ok(RouteDecl { handler, request, request_channel, reply, reply_channel })
    }

    fn params(&mut self, what: &str) -> R<Vec<Param>> {
        self.punct('{', &format!("to open the {what}"))?;
        let mut out = Vec::new();
        while !self.is_punct('}') {
            if !matches!(self.peek().kind, Tok::Word(_)) {
                return Err(self.expected(&["a parameter name", "}"], &format!("in the {what}")));
            }
            let name = self.ident("a parameter name")?;
            self.punct('=', "after the parameter name")?;
            let (value, value_span) = self.value()?;
            self.punct(';', "after the parameter value")?;
            out.push(Param { name, value, value_span });
        }
        self.bump();
        Ok(out)
    }

    fn value(&mut self) -> R<(Value, std::ops::Range<usize>)> {
        let t = self.bump();
        match &t.kind {
            Tok::Word(w) if w == "true" || w == "false" => Ok((Value::Bool(w == "true"), t.span)),
            Tok::Word(w) => Ok((Value::Word(w.clone()), t.span)),
            Tok::Number { value, unit } => {
                let mut span = t.span.clone();
                let mut unit = unit.clone();
                // `16 MiB`: a unit written as a separate word.
                if unit.is_empty() {
                    if let Tok::Word(w) = &self.peek().kind {
                        let known = TIME_UNITS.iter().any(|u| u.0 == w) || SIZE_UNITS.iter().any(|u| u.0 == w) || FREQ_UNITS.contains(&w.as_str());
                        if known {
                            unit = w.clone();
                            span.end = self.bump().span.end;
                        }
                    }
                }
                let v = *value;
                if unit.is_empty() {
                    return Ok((Value::Int(v), span));
                }
                if let Some((_, k)) = TIME_UNITS.iter().find(|u| u.0 == unit) {
                    return Ok((Value::Duration(v.saturating_mul(*k)), span));
                }
                if let Some((_, k)) = SIZE_UNITS.iter().find(|u| u.0 == unit) {
                    return Ok((Value::Size(v.saturating_mul(*k)), span));
                }
                if FREQ_UNITS.contains(&unit.as_str()) {
                    return Ok((Value::Frequency(v), span));
                }
                let all: Vec<&str> = TIME_UNITS.iter().map(|u| u.0).chain(SIZE_UNITS.iter().map(|u| u.0)).chain(FREQ_UNITS.iter().copied()).collect();
                Err(Diag::new(span, format!("unknown unit `{unit}`"))
                    .with_label("not a unit")
                    .with_note("units: durations ns, us, ms, s; sizes B, KiB, MiB, GiB; frequencies hz")
                    .suggest(&unit, all.iter().copied()))
            }
            _ => Err(Diag::new(t.span.clone(), format!("expected a value, found {}", t.kind.describe()))
                .with_label("expected a number, duration, size, frequency, `true` or `false`")),
        }
    }
}
