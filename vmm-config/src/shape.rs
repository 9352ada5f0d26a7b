//! Shape checking: TOML syntax, unknown and missing keys, value types.
//!
//! A document is parsed once into a spanned tree; then each item (the top
//! level, each `[[partition]]`, each `[[channel]]`, a board file) is checked
//! on its own so that one broken item does not hide problems in the others.
//! Key lists come from the JSON Schema of the serde types in `raw`, so the
//! published schema and this check cannot drift apart. Within an item, a key
//! whose value has the wrong type is reported, dropped, and the item is
//! deserialized again, so every wrong value is reported, not only the first.
//! Nothing here knows what a partition means.

use std::ops::Range as Span;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use toml::de::DeTable;
use toml::Spanned;

use crate::diag::{did_you_mean, Diagnostics, FileId};

/// Parses a whole TOML document; syntax errors are reported and yield `None`.
pub(crate) fn parse_document<'i>(
    d: &mut Diagnostics,
    file: FileId,
    src: &'i str,
) -> Option<Spanned<DeTable<'i>>> {
    // TOML allows no control character but tab (and the CR of a CRLF).
    // One report for all of them: a file of 2,000 bare CRs is one mistake.
    if let Some((span, c, n)) = hallows_source::first_control(src) {
        let more = match n {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        d.error(
            file,
            span,
            format!("control character {}{more} in the file", hallows_source::describe_char(c)),
        )
        .label("not allowed in TOML")
        .help("TOML allows no control characters but tab: save the file as plain text with LF (or CRLF) line endings");
        return None;
    }
    let (table, errors) = DeTable::parse_recoverable(src);
    if errors.is_empty() {
        return Some(table);
    }
    d.skip(errors.len().saturating_sub(hallows_source::MAX_ERRORS));
    for e in errors.into_iter().take(hallows_source::MAX_ERRORS) {
        let span = e.span().unwrap_or(0..0);
        d.error(
            file,
            span,
            format!("TOML syntax error: {}", one_line(e.message())),
        )
        .help("see https://toml.io for the syntax");
    }
    None
}

fn one_line(s: &str) -> String {
    s.trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The span of the first line of `span`: where a `[[partition]]` header is.
pub(crate) fn first_line(src: &str, span: Span<usize>) -> Span<usize> {
    let start = span.start.min(src.len());
    if !src.is_char_boundary(start) {
        return span;
    }
    let end = src[start..]
        .find('\n')
        .map_or(src.len(), |i| start + i)
        .min(span.end.max(start));
    start..end
}

/// Keys and required keys of a serde type, read from its JSON Schema.
pub(crate) fn schema_keys<T: JsonSchema>() -> (Vec<String>, Vec<String>) {
    let schema = schemars::schema_for!(T);
    let props = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let required = schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (props, required)
}

/// Checks and deserializes one item. `what` names it in messages ("partition",
/// "channel", "manifest", "board file"). Returns `None` when the item could not
/// be read at all (a missing required key or a required value of the wrong type);
/// every problem has been reported by then.
pub(crate) fn deserialize_item<T: DeserializeOwned + JsonSchema>(
    d: &mut Diagnostics,
    file: FileId,
    what: &str,
    table: Spanned<DeTable<'_>>,
) -> Option<T> {
    let (props, required) = schema_keys::<T>();
    let span = table.span();
    let mut table = table.into_inner();
    let header = first_line(d.source(file), span.clone());

    let unknown: Vec<Spanned<std::borrow::Cow<'_, str>>> = table
        .keys()
        .filter(|k| !props.iter().any(|p| p == k.get_ref().as_ref()))
        .cloned()
        .collect();
    // A missing key that an unknown key was probably meant to be is reported
    // once, as the misspelling.
    let mut suggested: Vec<&str> = Vec::new();
    let absent: Vec<&str> = props
        .iter()
        .map(String::as_str)
        .filter(|p| !table.contains_key(*p))
        .collect();
    for key in unknown {
        let name: &str = key.get_ref();
        let diag = d.error(file, key.span(), format!("unknown key `{name}` in {what}"));
        diag.label("not a key of this table");
        // Prefer a key the table lacks: `slot` next to `slots` means `slot_size`.
        let best = did_you_mean(name, absent.iter().copied())
            .or_else(|| did_you_mean(name, props.iter().map(String::as_str)));
        match best {
            Some(best) => {
                suggested.push(best);
                diag.help(format!("did you mean `{best}`?"))
            }
            None => diag.help(format!("{what} keys are: {}", props.join(", "))),
        };
        table.remove(name);
    }
    for key in &required {
        if !table.contains_key(key.as_str()) && !suggested.contains(&key.as_str()) {
            d.error(
                file,
                header.clone(),
                format!("{what} is missing required key `{key}`"),
            )
            .help(format!("add `{key} = ...` to this table"));
        }
    }

    // Each failed round removes the offending key; at most one round per key.
    for _ in 0..=props.len() {
        let de = toml::de::Deserializer::from(Spanned::new(span.clone(), table.clone()));
        match T::deserialize(de) {
            Ok(v) => return Some(v),
            Err(e) => {
                let message = e.message().to_owned();
                if message.starts_with("missing field") {
                    return None; // Reported above, or a key removed for its type.
                }
                let espan = e.span().unwrap_or(header.clone());
                let key = table
                    .iter()
                    .find(|(k, v)| contains(&v.span(), &espan) || contains(&k.span(), &espan))
                    .map(|(k, _)| k.get_ref().to_string());
                let key_text = key.clone().unwrap_or_else(|| what.to_owned());
                let (msg, help) = explain(&key_text, &message);
                let diag = d.error(file, espan, msg);
                for h in help {
                    diag.help(h);
                }
                match key {
                    Some(k) => {
                        table.remove(k.as_str());
                    }
                    None => return None,
                }
            }
        }
    }
    None
}

fn contains(outer: &Span<usize>, inner: &Span<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// What each value of a key is for, where the values' names alone do not
/// say enough to choose: the help of an unknown value lists them.
fn value_meanings(key: &str) -> &'static [(&'static str, &'static str)] {
    match key {
        "tuning" => &[
            ("latency", "one line transfer per message, for request/reply"),
            ("throughput", "dense lines, for streams and bulk transfer"),
        ],
        _ => &[],
    }
}

/// Turns a serde message into one that names the key, plus help lines.
pub(crate) fn explain(key: &str, message: &str) -> (String, Vec<String>) {
    let message = one_line(message);
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            let expected = friendly_type(expected);
            return (
                format!("wrong type for `{key}`: expected {expected}, found {found}"),
                vec![format!("write `{key}` as {expected}")],
            );
        }
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            let expected = friendly_type(expected);
            return (
                format!("invalid value for `{key}`: expected {expected}, found {found}"),
                Vec::new(),
            );
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        if let Some((found, expected)) = rest.split_once("`, expected ") {
            let options: Vec<&str> = expected
                .split('`')
                .filter(|s| !s.contains(',') && !s.trim().is_empty() && !s.contains(" or "))
                .collect();
            let meanings = value_meanings(key);
            let mut help = Vec::new();
            if let Some(best) = did_you_mean(found, options.iter().copied()) {
                help.push(format!("did you mean \"{best}\"?"));
            } else if meanings.is_empty() {
                help.push(format!(
                    "use one of: {}",
                    options
                        .iter()
                        .map(|o| format!("\"{o}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if !meanings.is_empty() {
                help.push(format!(
                    "use {}",
                    meanings
                        .iter()
                        .map(|(v, what)| format!("\"{v}\" ({what})"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ));
            }
            return (
                format!("invalid value \"{found}\" for `{key}`: expected {expected}"),
                help,
            );
        }
    }
    if let Some(field) = message.strip_prefix("unknown field `") {
        let field = field.split('`').next().unwrap_or("");
        return (
            format!("unknown key `{field}` in `{key}`"),
            vec![format!(
                "{key} keys: {}",
                message.split("expected ").nth(1).unwrap_or("")
            )],
        );
    }
    (format!("invalid `{key}`: {message}"), Vec::new())
}

fn friendly_type(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "i64" | "usize" => format!("an integer ({expected})"),
        "a string" | "a boolean" => expected.to_owned(),
        "a sequence" => "an array".to_owned(),
        _ if expected.starts_with("struct ") => "a table".to_owned(),
        _ => expected.to_owned(),
    }
}
