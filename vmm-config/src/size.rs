//! Byte sizes as written in manifests: an integer, or a string such as
//! `"16 MiB"`. Only binary units exist, so `"16 MB"` is refused rather than
//! silently read as either 16 000 000 or 16 777 216 bytes.

const UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

/// Parses `"<digits>[ ]<unit>"` (`B`, `KiB`, `MiB`, `GiB`, `TiB`; `_` allowed between digits).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let unit = unit.trim_start();
    if num.is_empty() || !num.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("size \"{text}\" does not start with a number"));
    }
    let value: u64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| format!("size \"{text}\" is too large"))?;
    let Some(&(_, mult)) = UNITS.iter().find(|(u, _)| *u == unit) else {
        let hint = match unit.to_ascii_lowercase().as_str() {
            "k" | "kb" | "kib" => " (use KiB)",
            "m" | "mb" | "mib" => " (use MiB)",
            "g" | "gb" | "gib" => " (use GiB)",
            "t" | "tb" | "tib" => " (use TiB)",
            "" => " (write a unit such as MiB, or give the size as an integer)",
            _ => "",
        };
        return Err(format!(
            "size \"{text}\" has unknown unit \"{unit}\"{hint}; units are B, KiB, MiB, GiB, TiB"
        ));
    };
    value
        .checked_mul(mult)
        .ok_or_else(|| format!("size \"{text}\" is too large"))
}

/// The largest exact binary unit: `16 MiB`, `1536 KiB`, `4097 B`.
pub fn format_size(bytes: u64) -> String {
    for &(unit, mult) in UNITS.iter().rev() {
        if mult > 1 && bytes >= mult && bytes.is_multiple_of(mult) {
            return format!("{} {unit}", bytes / mult);
        }
    }
    format!("{bytes} B")
}

/// A size value in a manifest or board file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Size(pub u64);

impl<'de> serde::Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size: an integer number of bytes or a string such as \"16 MiB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("size {v} is negative")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for Size {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Bytes: an integer, or a string with a binary unit such as \"16 MiB\"",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9][0-9_]*\\s*(B|KiB|MiB|GiB|TiB)\\s*$" }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_size("16 MiB"), Ok(16 << 20));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4_096 B"), Ok(4096));
        assert_eq!(parse_size(" 3 KiB "), Ok(3072));
    }

    #[test]
    fn refuses_ambiguous_or_broken() {
        assert!(parse_size("16 MB").unwrap_err().contains("use MiB"));
        assert!(parse_size("16").unwrap_err().contains("write a unit"));
        assert!(parse_size("MiB")
            .unwrap_err()
            .contains("does not start with a number"));
        assert!(parse_size("99999999999 TiB")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("-1 MiB").is_err());
    }

    #[test]
    fn formats_exact_units() {
        assert_eq!(format_size(16 << 20), "16 MiB");
        assert_eq!(format_size(1536 << 10), "1536 KiB");
        assert_eq!(format_size(4097), "4097 B");
        assert_eq!(format_size(0), "0 B");
    }
}
