//! Exact parsing of Kubernetes resource quantities.
//!
//! Quantities are parsed into thousandths of the base unit (millicores for `cpu`, milli-bytes
//! for memory) with integer arithmetic, following `k8s.io/apimachinery/pkg/api/resource`:
//! a signed decimal number followed by a binary-SI (`Ki`..`Ei`), decimal-SI (`m`, `k`..`E`) or
//! exponent (`e3`, `E-2`) suffix. Fractions finer than a thousandth round up, as the Go
//! `MilliValue()` does. The grammar is checked strictly: `"Gi"` or `"1.5.2"` is an error, not
//! zero. (The `kube_quantity` crate parses through `f64` and reads a bare suffix as 0, which
//! is why this small parser exists.)

use std::fmt;

use crate::text;

/// Why a quantity string was rejected. The quoted input is cut to [`text::MAX_ECHO`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The string is empty.
    #[error("empty quantity")]
    Empty,
    /// The string does not follow the quantity grammar.
    #[error("{0:?} is not a Kubernetes quantity (expected e.g. 500m, 2, 1.5Gi, 1e3)")]
    Syntax(String),
    /// The value does not fit the supported range.
    #[error("{0:?} is out of range")]
    Range(String),
    /// A negative value where only non-negative ones make sense.
    #[error("{0:?} is negative")]
    Negative(String),
}

/// A parsed quantity in thousandths of its base unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    millis: i64,
}

impl Quantity {
    /// The zero quantity.
    pub const ZERO: Quantity = Quantity { millis: 0 };

    /// Builds a quantity from thousandths of the base unit.
    #[must_use]
    pub const fn from_millis(millis: i64) -> Self {
        Self { millis }
    }

    /// Builds a quantity from whole base units.
    #[must_use]
    pub const fn from_units(units: i64) -> Self {
        Self { millis: units.saturating_mul(1000) }
    }

    /// Thousandths of the base unit (millicores for cpu).
    #[must_use]
    pub const fn millis(self) -> i64 {
        self.millis
    }

    /// Whole base units, rounded up (bytes for memory, cores for cpu).
    #[must_use]
    pub const fn units_ceil(self) -> i64 {
        self.millis.div_euclid(1000) + if self.millis.rem_euclid(1000) == 0 { 0 } else { 1 }
    }

    /// True when the value is a whole number of base units.
    #[must_use]
    pub const fn is_integer(self) -> bool {
        self.millis % 1000 == 0
    }

    /// The smallest whole number of base units not below this value, or `None` when that
    /// number does not fit (values above the largest whole unit, about 9.2 peta-units, that are
    /// not whole themselves).
    #[must_use]
    pub const fn checked_ceil(self) -> Option<Self> {
        match self.units_ceil().checked_mul(1000) {
            Some(millis) => Some(Self { millis }),
            None => None,
        }
    }

    /// Saturating sum.
    #[must_use]
    pub const fn saturating_add(self, other: Self) -> Self {
        Self { millis: self.millis.saturating_add(other.millis) }
    }

    /// Parses a quantity string.
    ///
    /// # Errors
    /// [`Error`] when the string is not a valid Kubernetes quantity or exceeds the range of
    /// thousandths that fit in an `i64` (about 9.2 peta-units).
    pub fn parse(s: &str) -> Result<Self, Error> {
        parse_millis(s).map(|millis| Self { millis })
    }

    /// Parses a quantity that must not be negative.
    ///
    /// # Errors
    /// As [`Quantity::parse`], plus [`Error::Negative`].
    pub fn parse_non_negative(s: &str) -> Result<Self, Error> {
        let q = Self::parse(s)?;
        if q.millis < 0 {
            return Err(Error::Negative(text::echo(s)));
        }
        Ok(q)
    }

    /// Canonical text for a cpu-like quantity: `2`, `1500m`.
    #[must_use]
    pub fn to_cpu_string(self) -> String {
        if self.is_integer() { format!("{}", self.millis / 1000) } else { format!("{}m", self.millis) }
    }

    /// Canonical text for a byte-like quantity: the largest exact binary suffix, e.g. `2Gi`.
    #[must_use]
    pub fn to_bytes_string(self) -> String {
        if !self.is_integer() {
            return format!("{}m", self.millis);
        }
        let mut v = self.millis / 1000;
        if v == 0 {
            return "0".to_owned();
        }
        for suffix in ["", "Ki", "Mi", "Gi", "Ti", "Pi"] {
            if v % 1024 != 0 || suffix == "Pi" {
                return format!("{v}{suffix}");
            }
            v /= 1024;
        }
        unreachable!("the loop returns at Pi")
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_integer() { write!(f, "{}", self.millis / 1000) } else { write!(f, "{}m", self.millis) }
    }
}

impl std::str::FromStr for Quantity {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// Parses into thousandths, rounding finer fractions up (towards +infinity).
fn parse_millis(input: &str) -> Result<i64, Error> {
    if input.is_empty() {
        return Err(Error::Empty);
    }
    let syntax = || Error::Syntax(text::echo(input));
    let range = || Error::Range(text::echo(input));
    let bytes = input.as_bytes();
    let mut i = 0;
    let negative = match bytes[0] {
        b'-' => {
            i = 1;
            true
        }
        b'+' => {
            i = 1;
            false
        }
        _ => false,
    };
    let int_start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = &input[int_start..i];
    let mut frac_digits = "";
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = &input[frac_start..i];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(syntax());
    }
    // Suffix: binary SI, decimal SI or a decimal exponent.
    let suffix = &input[i..];
    let (base, exp): (u128, i32) = match suffix {
        "" => (10, 0),
        "m" => (10, -3),
        "k" => (10, 3),
        "M" => (10, 6),
        "G" => (10, 9),
        "T" => (10, 12),
        "P" => (10, 15),
        "E" => (10, 18),
        "Ki" => (2, 10),
        "Mi" => (2, 20),
        "Gi" => (2, 30),
        "Ti" => (2, 40),
        "Pi" => (2, 50),
        "Ei" => (2, 60),
        s if s.starts_with(['e', 'E']) => {
            let e = &s[1..];
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 4 {
                return Err(syntax());
            }
            (10, e.parse::<i32>().map_err(|_| syntax())?)
        }
        _ => return Err(syntax()),
    };
    // mantissa = int.frac as an integer with `scale` decimal places.
    let digits: String = format!("{int_digits}{frac_digits}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(range());
    }
    let mantissa: u128 = if digits.is_empty() { 0 } else { digits.parse().map_err(|_| syntax())? };
    let scale = i32::try_from(frac_digits.len()).map_err(|_| range())?;
    // value * 1000 = mantissa * base^exp * 10^(3 - scale); keep the division last so the
    // result rounds up once.
    let mut num: u128 = mantissa;
    let mut den: u128 = 1;
    let mul = |x: u128, f: u128| x.checked_mul(f).ok_or_else(range);
    if base == 2 {
        num = mul(num, 1u128 << exp)?;
    } else if exp >= 0 {
        num = mul(num, pow10(exp)?)?;
    } else {
        den = mul(den, pow10(-exp)?)?;
    }
    let dec = 3 - scale;
    if dec >= 0 {
        num = mul(num, pow10(dec)?)?;
    } else {
        den = mul(den, pow10(-dec)?)?;
    }
    let q = num / den;
    let rem = num % den;
    let mut millis = i128::try_from(q).map_err(|_| range())?;
    if negative {
        millis = -millis; // rounding towards +infinity: drop the remainder
    } else if rem != 0 {
        millis += 1;
    }
    i64::try_from(millis).map_err(|_| range())
}

fn pow10(e: i32) -> Result<u128, Error> {
    if e > 38 {
        // Larger exponents overflow anyway; the caller reports the range error with context.
        return Err(Error::Range(format!("1e{e}")));
    }
    Ok(10u128.pow(e.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(s: &str) -> i64 {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")).millis()
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(m("1"), 1000);
        assert_eq!(m("1500m"), 1500);
        assert_eq!(m("1.5"), 1500);
        assert_eq!(m(".5"), 500);
        assert_eq!(m("2."), 2000);
        assert_eq!(m("0.1m"), 1, "sub-milli fractions round up");
        assert_eq!(m("2Gi"), 2 * 1024 * 1024 * 1024 * 1000);
        assert_eq!(m("1k"), 1_000_000);
        assert_eq!(m("1e3"), 1_000_000);
        assert_eq!(m("1E-3"), 1);
        assert_eq!(m("+4"), 4000);
        assert_eq!(m("-1"), -1000);
        assert_eq!(m("128974848"), 128_974_848_000);
        assert_eq!(m("129e6"), 129_000_000_000);
        assert_eq!(m("123Mi"), 123 * 1024 * 1024 * 1000);
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for bad in ["", "Gi", "1.5.2", "1Gb", "1 Gi", "abc", "1e", "e3", "--1", "1ki", "0x10", "1.5e3Gi"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        assert!(matches!(Quantity::parse("1e30"), Err(Error::Range(_))));
        assert!(matches!(Quantity::parse_non_negative("-1"), Err(Error::Negative(_))));
    }

    #[test]
    fn ceil_refuses_what_does_not_fit() {
        // 9223372036854775.5 fits as thousandths; the next whole unit does not.
        let q = Quantity::parse("9223372036854775.5").unwrap();
        assert_eq!(q.checked_ceil(), None);
        let whole = Quantity::parse("9223372036854775").unwrap();
        assert_eq!(whole.checked_ceil(), Some(whole));
        assert_eq!(Quantity::from_millis(i64::MAX).checked_ceil(), None);
        assert_eq!(Quantity::from_millis(-1500).checked_ceil(), Some(Quantity::from_units(-1)));
    }

    #[test]
    fn errors_quote_the_input_briefly() {
        let long = "9".repeat(10_000) + "x";
        let text = Quantity::parse(&long).unwrap_err().to_string();
        assert!(text.len() < 200 && text.contains('…'), "{text}");
    }

    #[test]
    fn formats_canonically() {
        assert_eq!(Quantity::parse("1500m").unwrap().to_cpu_string(), "1500m");
        assert_eq!(Quantity::parse("2000m").unwrap().to_cpu_string(), "2");
        assert_eq!(Quantity::parse("2048Mi").unwrap().to_bytes_string(), "2Gi");
        assert_eq!(Quantity::parse("1000").unwrap().to_bytes_string(), "1000");
        assert_eq!(Quantity::parse("1536Mi").unwrap().to_bytes_string(), "1536Mi");
        assert_eq!(Quantity::parse("1500m").unwrap().checked_ceil().unwrap().to_cpu_string(), "2");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = Quantity::parse(&s);
        }

        #[test]
        fn cpu_strings_round_trip(millis in 0i64..10_000_000_000) {
            let q = Quantity::from_millis(millis);
            prop_assert_eq!(Quantity::parse(&q.to_cpu_string()).unwrap(), q);
        }

        #[test]
        fn byte_strings_round_trip(bytes in 0i64..1_000_000_000_000) {
            let q = Quantity::from_units(bytes);
            prop_assert_eq!(Quantity::parse(&q.to_bytes_string()).unwrap(), q);
        }

        #[test]
        fn ceil_is_the_least_integer_not_below(millis in -1_000_000i64..1_000_000) {
            let q = Quantity::from_millis(millis);
            let c = q.checked_ceil().unwrap();
            prop_assert!(c.is_integer());
            prop_assert!(c >= q);
            prop_assert!(c.millis() - q.millis() < 1000);
        }
    }
}
