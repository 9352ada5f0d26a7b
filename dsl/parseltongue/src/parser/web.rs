//! Parsing Basilisk's web declarations (a child of the parser, using its
//! token helpers). Their words (`json_struct`, `resource`, `http_route`,
//! `authentication`, `rate_limit`, `at`, `accepts`, `page_size` and the
//! validation rules) are contextual: they stay usable as names elsewhere.

use super::*;

/// The web declarations, for "expected ..." messages.
pub const WEB_DECLARATIONS: &[&str] = &["json_struct", "resource", "http_route", "authentication", "rate_limit"];

const RULES: &[&str] = &["required", "min_length", "max_length", "min", "max", "pattern", "one_of", "default"];

/// Most fields of one JSON type (the generated validation code is linear
/// in them).
pub const MAX_FIELDS: usize = 64;

impl Parser {
    /// One web declaration (its keyword is the current token).
    pub(super) fn web_decl(&mut self, w: &str, s: &mut Service) -> R<()> {
        let kw = self.bump();
        match w {
            "json_struct" => {
                let name = self.ident("the JSON type's name")?;
                self.punct('{', "to open the json_struct body")?;
                let fields = self.json_fields("json_struct", |_| Ok(false))?;
                s.web.structs.push(JsonStruct { name, fields });
            }
            "resource" => {
                let name = self.ident("the resource name")?;
                self.keyword("at", "after the resource name (then its path, e.g. `at \"/todos\"`)")?;
                let path = self.string("the resource's path")?;
                self.punct('{', "to open the resource body")?;
                let mut page_size = None;
                let fields = self.json_fields("resource", |p| {
                    if !p.is_word("page_size") {
                        return Ok(false);
                    }
                    let kw = p.bump();
                    let (n, span) = p.number("the page size")?;
                    p.punct(';', "after the page size")?;
                    if page_size.is_some() {
                        return Err(Diag::new(kw.span, "`page_size` is given twice"));
                    }
                    page_size = Some((n, span));
                    Ok(true)
                })?;
                s.web.resources.push(Resource { name, path, fields, page_size });
            }
            "http_route" => {
                let method = self.ident("the HTTP method (GET, POST, PUT, PATCH or DELETE)")?;
                let path = self.string("the route's path")?;
                self.keyword("handled_by", "after the route's path")?;
                let handler = self.ident("the handler's function name")?;
                let accepts = if self.is_word("accepts") {
                    self.bump();
                    Some(self.ident("the request body's json_struct")?)
                } else {
                    None
                };
                if !self.is_punct(';') {
                    return Err(self.expected(&[";", "accepts"], "after the route's handler"));
                }
                self.bump();
                s.web.routes.push(HttpRoute { method, path, handler, accepts });
            }
            "authentication" => {
                let t = self.peek().clone();
                if !self.is_word("bearer") {
                    return Err(self.expected(&["bearer"], "after `authentication` (the scheme)"));
                }
                self.bump();
                self.punct(';', "after the authentication scheme")?;
                if let Some(prev) = &s.web.auth {
                    return Err(Diag::new(t.span, "`authentication` is declared twice").with_related(prev.clone(), "first declared here"));
                }
                s.web.auth = Some(kw.span);
            }
            _ => {
                let params = self.params("rate limit")?;
                if let Some(prev) = &s.web.rate_limit {
                    return Err(Diag::new(kw.span, "`rate_limit` is declared twice").with_related(prev.keyword_span.clone(), "first declared here"));
                }
                s.web.rate_limit = Some(Block { keyword_span: kw.span, class: None, params });
            }
        }
        Ok(())
    }

    /// `field NAME: TYPE [{ RULE; ... }]` until `}`; `other` may take
    /// another item (a resource's `page_size`) and says whether it did.
    fn json_fields(&mut self, what: &str, mut other: impl FnMut(&mut Parser) -> R<bool>) -> R<Vec<JsonField>> {
        let mut fields = Vec::new();
        loop {
            if self.is_punct('}') {
                self.bump();
                return Ok(fields);
            }
            if other(self)? {
                continue;
            }
            if !self.is_word("field") {
                let exp: &[&str] = if what == "resource" { &["field", "page_size", "}"] } else { &["field", "}"] };
                return Err(self.expected(exp, &format!("in a {what}")));
            }
            let kw = self.bump();
            if fields.len() == MAX_FIELDS {
                return Err(Diag::new(kw.span, format!("a {what} has at most {MAX_FIELDS} fields")));
            }
            let name = self.ident("a field name")?;
            self.punct(':', "after the field name")?;
            let ty = self.ident("the field's type (string, bool or an integer type)")?;
            let mut rules = Vec::new();
            if self.is_punct('{') {
                self.bump();
                while !self.is_punct('}') {
                    rules.push(self.rule()?);
                }
                self.bump();
            } else {
                self.punct(';', "after the field type (or `{` to open its rules)")?;
            }
            fields.push(JsonField { name, ty, rules });
        }
    }

    fn rule(&mut self) -> R<Rule> {
        let t = self.peek().clone();
        let Tok::Word(w) = &t.kind else {
            let mut exp = RULES.to_vec();
            exp.push("}");
            return Err(self.expected(&exp, "in a field's rules"));
        };
        if !RULES.contains(&w.as_str()) {
            let mut exp = RULES.to_vec();
            exp.push("}");
            return Err(self.expected(&exp, "in a field's rules"));
        }
        let w = w.clone();
        self.bump();
        let arg_start = self.peek().span.clone();
        let kind = match w.as_str() {
            "required" => RuleKind::Required,
            "min_length" => RuleKind::MinLength(self.number("the minimum length")?.0),
            "max_length" => RuleKind::MaxLength(self.number("the maximum length")?.0),
            "min" => RuleKind::Min(self.number("the minimum")?.0),
            "max" => RuleKind::Max(self.number("the maximum")?.0),
            "pattern" => RuleKind::Pattern(self.string("the pattern")?.0),
            "one_of" => {
                let mut v = vec![self.string("an allowed value")?.0];
                while self.is_punct(',') {
                    self.bump();
                    v.push(self.string("an allowed value")?.0);
                }
                RuleKind::OneOf(v)
            }
            _ => {
                let v = self.bump();
                RuleKind::Default(match &v.kind {
                    Tok::Word(b) if b == "true" || b == "false" => Literal::Bool(b == "true"),
                    Tok::Number { value, unit } if unit.is_empty() => Literal::Int(*value),
                    Tok::Str(s) => Literal::Str(s.clone()),
                    _ => {
                        return Err(Diag::new(v.span, format!("expected a default value (true, false, a number or a string), found {}", v.kind.describe()))
                            .with_label("expected a value"))
                    }
                })
            }
        };
        let arg_span = if w == "required" { t.span.clone() } else { arg_start.start..self.tokens[self.pos.saturating_sub(1)].span.end };
        self.punct(';', "after the rule")?;
        Ok(Rule { kind, span: t.span, arg_span })
    }
}
