//! Durations as written in manifests: a string such as `"100 ms"`. The unit
//! is required (`ns`, `us`, `ms`, `s`), so `100` is never read as
//! milliseconds by one reader and seconds by another.

const UNITS: &[(&str, u64)] = &[("ns", 1), ("us", 1_000), ("µs", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000)];

/// Parses `"<digits>[ ]<unit>"` into nanoseconds (`_` allowed between digits).
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !(c.is_ascii_digit() || c == '_')).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let unit = unit.trim_start();
    if num.is_empty() || !num.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("duration \"{text}\" does not start with a number"));
    }
    let value: u64 = num.replace('_', "").parse().map_err(|_| format!("duration \"{text}\" is too long"))?;
    let Some(&(_, mult)) = UNITS.iter().find(|(u, _)| *u == unit) else {
        let hint = match unit.to_ascii_lowercase().as_str() {
            "" => " (write a unit, such as \"100 ms\")",
            "sec" | "secs" | "second" | "seconds" => " (use s)",
            "msec" | "msecs" | "millis" | "milliseconds" => " (use ms)",
            "usec" | "usecs" | "micros" | "microseconds" => " (use us)",
            "min" | "mins" | "minute" | "minutes" | "m" => " (write minutes as seconds: \"60 s\")",
            _ => "",
        };
        return Err(format!("duration \"{text}\" has unknown unit \"{unit}\"{hint}; units are ns, us, ms, s"));
    };
    value.checked_mul(mult).ok_or_else(|| format!("duration \"{text}\" is too long"))
}

/// The largest exact unit: `100 ms`, `1500 us`, `2 s`.
pub fn format_duration(ns: u64) -> String {
    for &(unit, mult) in [("s", 1_000_000_000u64), ("ms", 1_000_000), ("us", 1_000)].iter() {
        if ns >= mult && ns.is_multiple_of(mult) {
            return format!("{} {unit}", ns / mult);
        }
    }
    format!("{ns} ns")
}

/// A duration value in a manifest, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Duration(pub u64);

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration: a string such as \"100 ms\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
                Err(E::custom(format!("duration {v} has no unit; write it as a string such as \"{v} ms\"")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
                Err(E::custom(format!("duration {v} has no unit; write it as a string such as \"{v} ms\"")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                parse_duration(v).map(Duration).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: a string with a unit, such as \"100 ms\" (ns, us, ms, s)",
            "type": "string",
            "pattern": "^\\s*[0-9][0-9_]*\\s*(ns|us|µs|ms|s)\\s*$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("100 ms"), Ok(100_000_000));
        assert_eq!(parse_duration("2s"), Ok(2_000_000_000));
        assert_eq!(parse_duration(" 1_500 us "), Ok(1_500_000));
        assert_eq!(parse_duration("7 ns"), Ok(7));
    }

    #[test]
    fn refuses_missing_or_unknown_units() {
        assert!(parse_duration("100").unwrap_err().contains("write a unit"));
        assert!(parse_duration("1 min").unwrap_err().contains("60 s"));
        assert!(parse_duration("3 seconds").unwrap_err().contains("use s"));
        assert!(parse_duration("ms").unwrap_err().contains("does not start with a number"));
        assert!(parse_duration("99999999999999999999 s").unwrap_err().contains("too long"));
        assert!(parse_duration("-1 ms").is_err());
    }

    #[test]
    fn formats_exact_units() {
        assert_eq!(format_duration(100_000_000), "100 ms");
        assert_eq!(format_duration(2_000_000_000), "2 s");
        assert_eq!(format_duration(1_500_000), "1500 us");
        assert_eq!(format_duration(7), "7 ns");
    }
}
