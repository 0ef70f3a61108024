//! Kubernetes resource quantities: `250m` CPU, `128Mi` memory, `1.5` cores.
//!
//! Owns parsing and formatting only. CPU is kept in millicores and memory in
//! bytes, both as integers, so that placement arithmetic is exact and the same
//! on every node (no floating point in decisions).

use std::fmt;

/// Why a quantity string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("empty quantity")]
    Empty,
    #[error("invalid quantity {0:?}: expected a number with an optional suffix such as 250m, 2, 1.5, 128Mi or 1G")]
    Syntax(String),
    #[error("invalid quantity {0:?}: unknown suffix {1:?} (use m, k, M, G, T, Ki, Mi, Gi, Ti)")]
    Suffix(String, String),
    #[error("quantity {0:?} is negative")]
    Negative(String),
    #[error("quantity {0:?} is too large")]
    Overflow(String),
    #[error("quantity {0:?} is finer than the smallest unit ({1})")]
    TooPrecise(String, &'static str),
}

/// A parsed decimal: integer mantissa and base-10 exponent, exact.
struct Decimal {
    digits: u128,
    scale: u32, // value = digits / 10^scale
}

fn split_number(s: &str) -> Result<(Decimal, &str), QuantityError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    if s.starts_with('-') {
        return Err(QuantityError::Negative(s.to_string()));
    }
    let body = s.strip_prefix('+').unwrap_or(s);
    let end = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (num, suffix) = body.split_at(end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(QuantityError::Syntax(s.to_string()));
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    let mut digits: u128 = 0;
    for c in int_part.chars().chain(frac_part.chars()) {
        digits = digits
            .checked_mul(10)
            .and_then(|d| d.checked_add(u128::from(c as u8 - b'0')))
            .ok_or_else(|| QuantityError::Overflow(s.to_string()))?;
    }
    let scale = u32::try_from(frac_part.len()).map_err(|_| QuantityError::Overflow(s.to_string()))?;
    Ok((Decimal { digits, scale }, suffix))
}

/// `digits / 10^scale * mul / div`, exactly, or an error when not an integer.
fn exact(s: &str, d: &Decimal, mul: u128, div: u128, unit: &'static str) -> Result<u64, QuantityError> {
    let overflow = || QuantityError::Overflow(s.to_string());
    let pow = 10u128.checked_pow(d.scale).ok_or_else(overflow)?;
    let num = d.digits.checked_mul(mul).ok_or_else(overflow)?;
    let den = pow.checked_mul(div).ok_or_else(overflow)?;
    if num % den != 0 {
        return Err(QuantityError::TooPrecise(s.to_string(), unit));
    }
    u64::try_from(num / den).map_err(|_| overflow())
}

fn suffix_multiplier(s: &str, suffix: &str) -> Result<(u128, u128), QuantityError> {
    // (multiplier, divisor) relative to the base unit.
    Ok(match suffix {
        "" => (1, 1),
        "m" => (1, 1000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        other => return Err(QuantityError::Suffix(s.to_string(), other.to_string())),
    })
}

/// Parses a CPU quantity into millicores: `250m` → 250, `2` → 2000, `0.5` → 500.
pub fn parse_cpu_millis(s: &str) -> Result<u64, QuantityError> {
    let (d, suffix) = split_number(s)?;
    let (mul, div) = suffix_multiplier(s, suffix)?;
    exact(s, &d, mul * 1000, div, "1m")
}

/// Parses a memory quantity into bytes: `128Mi` → 134217728, `1G` → 10^9.
pub fn parse_memory_bytes(s: &str) -> Result<u64, QuantityError> {
    let (d, suffix) = split_number(s)?;
    let (mul, div) = suffix_multiplier(s, suffix)?;
    exact(s, &d, mul, div, "1 byte")
}

/// A quantity as written in a manifest: a YAML string (`"250m"`) or number (`2`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum QuantityText {
    Int(u64),
    Float(f64),
    Text(String),
}

impl fmt::Display for QuantityText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantityText::Int(v) => write!(f, "{v}"),
            QuantityText::Float(v) => write!(f, "{v}"),
            QuantityText::Text(s) => f.write_str(s),
        }
    }
}

/// Formats millicores the way kubectl prints them: `250m`, `2`, `1500m`.
pub fn format_cpu_millis(m: u64) -> String {
    if m.is_multiple_of(1000) { format!("{}", m / 1000) } else { format!("{m}m") }
}

/// Formats bytes with the largest binary suffix that divides them exactly, else
/// rounded to one decimal of the nearest unit (`1.5Gi`).
pub fn format_memory_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20)];
    for (suffix, size) in UNITS {
        if b >= size && b.is_multiple_of(size) {
            return format!("{}{suffix}", b / size);
        }
    }
    for (suffix, size) in UNITS {
        if b >= size {
            return format!("{:.1}{suffix}", b as f64 / size as f64);
        }
    }
    if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
        return format!("{}Ki", b >> 10);
    }
    format!("{b}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cpu_examples() {
        assert_eq!(parse_cpu_millis("250m"), Ok(250));
        assert_eq!(parse_cpu_millis("2"), Ok(2000));
        assert_eq!(parse_cpu_millis("0.5"), Ok(500));
        assert_eq!(parse_cpu_millis("1.5"), Ok(1500));
        assert_eq!(parse_cpu_millis("+1"), Ok(1000));
        assert_eq!(parse_cpu_millis("0"), Ok(0));
        assert!(matches!(parse_cpu_millis("0.0001"), Err(QuantityError::TooPrecise(..))));
        assert!(matches!(parse_cpu_millis("-1"), Err(QuantityError::Negative(_))));
        assert!(matches!(parse_cpu_millis("1x"), Err(QuantityError::Suffix(..))));
        assert!(matches!(parse_cpu_millis("abc"), Err(QuantityError::Syntax(_))));
        assert!(matches!(parse_cpu_millis(""), Err(QuantityError::Empty)));
        assert!(matches!(parse_cpu_millis("1.2.3"), Err(QuantityError::Syntax(_))));
    }

    #[test]
    fn memory_examples() {
        assert_eq!(parse_memory_bytes("128Mi"), Ok(128 << 20));
        assert_eq!(parse_memory_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_memory_bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_memory_bytes("512"), Ok(512));
        assert_eq!(parse_memory_bytes("1k"), Ok(1000));
        assert!(matches!(parse_memory_bytes("1Qi"), Err(QuantityError::Suffix(..))));
        assert!(matches!(
            parse_memory_bytes("99999999999999999999999999999999999999999999Pi"),
            Err(QuantityError::Overflow(_))
        ));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_cpu_millis(250), "250m");
        assert_eq!(format_cpu_millis(2000), "2");
        assert_eq!(format_memory_bytes(128 << 20), "128Mi");
        assert_eq!(format_memory_bytes(3 << 29), "1536Mi");
        assert_eq!(format_memory_bytes(100), "100");
    }

    proptest! {
        #[test]
        fn cpu_roundtrip(m in 0u64..10_000_000) {
            prop_assert_eq!(parse_cpu_millis(&format_cpu_millis(m)), Ok(m));
        }

        #[test]
        fn memory_exact_suffixes_roundtrip(b in 0u64..(1u64 << 50)) {
            let s = format_memory_bytes(b);
            if !s.contains('.') {
                prop_assert_eq!(parse_memory_bytes(&s), Ok(b));
            }
        }

        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = parse_cpu_millis(&s);
            let _ = parse_memory_bytes(&s);
        }
    }
}
