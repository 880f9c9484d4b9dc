use serde::de::Error;
use serde::{Deserialize, Deserializer};
use serde_json::Number;

/// A non-negative JSON integer, as JSON Schema counts integers: `300`, and also `300.0` or `3e2`,
/// numbers with no fractional part. JSON does not tell them apart, and neither does the OpenAPI
/// document's `type: integer`, so a client's serializer may send either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WholeNumber(pub u64);

/// 2^64: the first whole number beyond `u64`, exactly representable as an `f64`.
const BEYOND_U64: f64 = 18_446_744_073_709_551_616.0;

impl<'de> Deserialize<'de> for WholeNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = Number::deserialize(deserializer)?;
        if let Some(whole) = number.as_u64() {
            return Ok(Self(whole));
        }
        match number.as_f64() {
            // In range and whole, so the conversion is exact.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Some(n) if n.fract() == 0.0 && (0.0..BEYOND_U64).contains(&n) => Ok(Self(n as u64)),
            _ => Err(D::Error::custom(format!(
                "expected a whole number from 0 to {}, got {number}",
                u64::MAX
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<u64, String> {
        serde_json::from_str::<WholeNumber>(text)
            .map(|n| n.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integers_are_whole_numbers_however_they_are_written() {
        assert_eq!(parse("300"), Ok(300));
        assert_eq!(parse("300.0"), Ok(300));
        assert_eq!(parse("3e2"), Ok(300));
        assert_eq!(parse("3.00E+2"), Ok(300));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("-0.0"), Ok(0));
        assert_eq!(parse("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse("1e19"), Ok(10_000_000_000_000_000_000));
    }

    #[test]
    fn fractions_negatives_and_numbers_beyond_u64_are_refused() {
        for text in [
            "1.5",
            "0.1",
            "-1",
            "-1.0",
            "1e20",
            "18446744073709551616",
            "\"3\"",
            "null",
        ] {
            assert!(parse(text).is_err(), "{text} was accepted");
        }
    }
}
