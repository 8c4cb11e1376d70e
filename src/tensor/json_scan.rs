//! JSON tensor decoding: a hand-rolled walker over (nested) arrays that parses each number
//! (or string) straight into the typed buffer, with no per-value intermediate and no serde
//! visitor calls. It is the only reader of tensor data in JSON bodies, so it also words every
//! refusal: what was expected, what came and where (see `errors` below). It accepts what
//! serde_json accepts for such text (JSON numbers, `true`/`false`, strings, arrays,
//! whitespace), and never more: the tests hold it to serde_json's verdict.

use half::{bf16, f16};

use super::json::{FromJson, JsonArrayError, JsonNumber, MAX_JSON_DEPTH};
use super::{ByteStrings, DataType};

/// One JSON scalar token, not yet converted.
#[derive(Clone, Copy)]
pub(super) enum Token<'a> {
    /// An integer literal that fits 64 bits: magnitude and sign.
    Int {
        negative: bool,
        magnitude: u64,
    },
    /// A literal with a fraction or exponent, or an integer too long for 64 bits
    /// (serde_json reads those as floats too), with its decimal digits when they fit.
    Float(Decimal<'a>),
    Bool(bool),
}

/// A float literal: its text, and `±mantissa × 10^exp10` when all digits fit in 64 bits.
#[derive(Clone, Copy)]
pub(super) struct Decimal<'a> {
    text: &'a [u8],
    negative: bool,
    mantissa: u64,
    exp10: i32,
    exact: bool,
}

/// Powers of ten exactly representable as f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

impl Decimal<'_> {
    /// Clinger's fast path: a mantissa below 2^53 and a power of ten below 10^23 are both
    /// exact in f64, so one multiplication or division rounds correctly. Covers the
    /// usual feature values (up to ~16 significant digits, small exponents); anything else
    /// goes to std's parser.
    fn to_f64(self) -> Option<f64> {
        if self.exact && self.mantissa <= 1 << 53 && self.exp10.abs() <= 22 {
            let m = self.mantissa as f64;
            let p = POW10[self.exp10.unsigned_abs() as usize];
            let v = if self.exp10 < 0 { m / p } else { m * p };
            return Some(if self.negative { -v } else { v });
        }
        parse_finite(self.text)
    }
}

impl Token<'_> {
    /// The number exactly as serde_json reads it.
    fn number(self) -> Option<JsonNumber> {
        Some(match self {
            Token::Int {
                negative: false,
                magnitude,
            } => match i64::try_from(magnitude) {
                Ok(v) => JsonNumber::Int(v),
                Err(_) => JsonNumber::UInt(magnitude),
            },
            // `scan_number` only produces negative magnitudes up to 2^63.
            Token::Int {
                negative: true,
                magnitude,
            } => JsonNumber::Int((-(magnitude as i128)) as i64),
            Token::Float(d) => JsonNumber::Float(d.to_f64()?),
            Token::Bool(b) => JsonNumber::Bool(b),
        })
    }
}

/// serde_json rejects out-of-range literals such as `1e400`; so do we.
fn parse_finite(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(text).ok()?;
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Conversion from a token; `None` when the value does not fit (the walker then words why).
pub(super) trait Scan: FromJson {
    fn from_token(t: Token) -> Option<Self> {
        Self::from_json(t.number()?)
    }

    /// A shortcut for the commonest literal of this type at `b[i..]`, or `None` to take
    /// the general path (which decides everything the shortcut does not).
    #[inline]
    fn scan_common(_b: &[u8], _i: usize) -> Option<(usize, Self)> {
        None
    }
}

macro_rules! scan_via_number {
    ($($t:ty),*) => {$( impl Scan for $t {} )*};
}
scan_via_number!(bool, u8, u16, u32, u64, i8, i16, i32, i64, f16, bf16);

impl Scan for f64 {
    #[inline]
    fn scan_common(b: &[u8], i: usize) -> Option<(usize, Self)> {
        let (end, d) = plain_decimal(b, i)?;
        // Clinger's fast path: exact mantissa and power of ten, one rounding.
        if d.mantissa > 1 << 53 {
            return None;
        }
        Some((end, d.signed(d.mantissa_f64() / POW10[d.scale])))
    }
}

impl Scan for f32 {
    /// Floats go through f64 and are then narrowed, as serde_json reads them into `f32`.
    fn from_token(t: Token) -> Option<Self> {
        match t {
            Token::Float(d) => d.to_f64().map(|v| v as f32),
            other => Self::from_json(other.number()?),
        }
    }

    /// Also takes the 17-digit literals that f32 values become on their way through a
    /// 64-bit float (`0.30000001192092896`, what Python clients send): their mantissa is
    /// too long for Clinger's exact path, but a value within a few f64 units of the exact
    /// one rounds to the same f32 unless it sits next to the midpoint between two f32s.
    #[inline]
    fn scan_common(b: &[u8], i: usize) -> Option<(usize, Self)> {
        let (end, d) = plain_decimal(b, i)?;
        let v = d.mantissa_f64() / POW10[d.scale];
        // Exact when the mantissa fits 53 bits (Clinger); a longer one must stay clear of
        // the midpoints between two f32s.
        if d.mantissa > 1 << 53 && !narrows_like_exact(v) {
            return None;
        }
        Some((end, d.signed(v) as f32))
    }
}

/// Whether `v` (positive, within ~2 f64 units in the last place of an exact value) rounds
/// to the f32 that the exact value's correctly rounded f64 would: inside f32's normal
/// range and at least 16 f64 units away from every midpoint between two f32s (an f64
/// between two f32s is a midpoint when its low 29 mantissa bits are 2^28).
#[inline]
fn narrows_like_exact(v: f64) -> bool {
    const LOW_BITS: u64 = (1 << 29) - 1;
    let near_midpoint = (v.to_bits() & LOW_BITS).abs_diff(1 << 28) <= 16;
    let normal = (f32::MIN_POSITIVE as f64 * 2.0..f32::MAX as f64 / 2.0).contains(&v);
    normal & !near_midpoint
}

/// The typical feature value `-?digits(.digits)?` as its decimal parts.
#[derive(Clone, Copy)]
struct PlainDecimal {
    negative: bool,
    /// All digits as one integer (at most 18 of them, so it is below 2^63).
    mantissa: u64,
    /// Digits after the point.
    scale: usize,
}

impl PlainDecimal {
    /// The mantissa is below 2^63: the signed conversion is one instruction, the unsigned
    /// one several.
    fn mantissa_f64(self) -> f64 {
        self.mantissa as i64 as f64
    }

    /// `v` (not negative) with this literal's sign. A sign bit rather than a branch: signs
    /// of feature values are as good as random, so a branch on them is mispredicted half
    /// the time (0.98x / 0.89x the time on 17-digit / shortest literals).
    fn signed(self, v: f64) -> f64 {
        f64::from_bits(v.to_bits() | u64::from(self.negative) << 63)
    }
}

/// Reads `-?digits(.digits)?` with at most 7 digits before the point and 18 in all;
/// anything else (exponents, leading zeros, longer literals, `-0` as an integer, the
/// last few bytes of the text) is `None`, for the general path to decide.
// Always inlined into the walker's per-array loop: as a call it cost ~10% of a number's
// instructions in saved registers and a result passed through memory (callgrind).
#[inline(always)]
fn plain_decimal(b: &[u8], start: usize) -> Option<(usize, PlainDecimal)> {
    let negative = b.get(start) == Some(&b'-');
    let mut i = start + usize::from(negative);
    // One digit before the point, the commonest case for features, without the SWAR step.
    let (int, n) = match b.get(i..i + 2) {
        Some(&[d @ b'0'..=b'9', b'.']) => (u64::from(d - b'0'), 1),
        _ => leading_digits(b, i)?,
    };
    // No digit, eight or more, or a leading zero.
    if n == 0 || n == 8 || (n > 1 && b[i] == b'0') {
        return None;
    }
    i += n;
    let mut mantissa = int;
    let mut scale = 0;
    if b.get(i) == Some(&b'.') {
        let (frac, k, zeros) = match fraction_digits(b, i + 1) {
            Some((frac, k)) => (frac, k, 0),
            // A small value, `0.0…`: the zeros after the point are no digits of the
            // mantissa (a 17-digit literal below 0.1 has eighteen or more after the point).
            None if int == 0 => {
                let zeros = b[i + 1..].iter().take_while(|&&c| c == b'0').count();
                let (frac, k) = fraction_digits(b, i + 1 + zeros)?;
                (frac, k, zeros)
            }
            None => return None,
        };
        // At most 18 digits in all, so the mantissa is below 2^63 (one instruction to
        // convert), and a power of ten that is exact in f64.
        if k == 0 || n + k > 18 || zeros + k >= POW10.len() {
            return None;
        }
        mantissa = mantissa * POW10_INT[k] + frac;
        scale = zeros + k;
        i += 1 + zeros + k;
    } else if negative && mantissa == 0 {
        // `-0` is the float -0.0 on the general path; let it decide.
        return None;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        return None;
    }
    Some((
        i,
        PlainDecimal {
            negative,
            mantissa,
            scale,
        },
    ))
}

/// The digits at `b[i..]`, up to seventeen (a 17-digit literal has sixteen or seventeen
/// after `0.`): their value and count, or `None` for more, or when the text ends too soon.
/// Each step reads at `i` plus a constant, so the reads need not wait for the previous
/// step's digit count (a loop advancing by each count took 1.03x the time on 17-digit
/// literals).
#[inline(always)]
fn fraction_digits(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let (high, k) = leading_digits(b, i)?;
    let (low, more) = leading_digits(b, i + 8)?;
    // How many of the first eight bytes are digits is a coin toss for shortest-form f32
    // literals (seven or eight after the point). Written as selects, though the compiler
    // still branches: 0.95x the time of a loop that read the second chunk only after a
    // full first one, and the same early return written plainly took 1.12x.
    let full = k == 8;
    let more = if full { more } else { 0 };
    let v = if full {
        high * POW10_INT[more] + low
    } else {
        high
    };
    if more < 8 {
        return Some((v, k + more));
    }
    match *b.get(i + 16..i + 18)? {
        [d @ b'0'..=b'9', next] if !next.is_ascii_digit() => {
            Some((v * 10 + u64::from(d - b'0'), 17))
        }
        [next, _] if !next.is_ascii_digit() => Some((v, 16)),
        _ => None,
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(i) {
        i += 1;
    }
    i
}

/// Integer powers of ten up to 10^17.
const POW10_INT: [u64; 18] = {
    let mut p = [1; 18];
    let mut k = 1;
    while k < 18 {
        p[k] = p[k - 1] * 10;
        k += 1;
    }
    p
};

/// Up to eight ASCII digits at `b[i..]` in one SWAR step (the fast_float / simdjson
/// technique): their value and how many there were, or `None` when fewer than eight
/// bytes remain (the caller's byte loop finishes then).
#[inline]
fn leading_digits(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let chunk: [u8; 8] = b.get(i..i + 8)?.try_into().ok()?;
    let v = u64::from_le_bytes(chunk);
    // A digit byte has high nibble 3 and does not carry out of it when 6 is added; the
    // first byte that fails ends the digits (carries only disturb the bytes after it).
    let nibbles = (v & 0xF0F0_F0F0_F0F0_F0F0)
        | ((v.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) >> 4);
    let count = ((nibbles ^ 0x3333_3333_3333_3333).trailing_zeros() / 8) as usize;
    if count == 0 {
        return Some((0, 0));
    }
    // Shift the digits to the top so the bytes after them (and their borrows) fall off
    // and leading zero digits take their place.
    let d = v.wrapping_sub(0x3030_3030_3030_3030) << (8 * (8 - count));
    let d = d * 10 + (d >> 8);
    let value = ((d & 0x0000_00FF_0000_00FF).wrapping_mul(100 + (1_000_000 << 32))
        + ((d >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32)))
        >> 32;
    Some((value, count))
}

/// Appends the digits at `b[*i..]` to `acc`, up to eight at a time, while `acc` is below
/// `below` (chosen by the caller so eight more digits still fit); advances `*i` and returns
/// how many digits it took. The caller's byte loop takes whatever is left.
#[inline]
fn take_digits(b: &[u8], i: &mut usize, acc: &mut u64, below: u64) -> usize {
    let mut taken = 0;
    while *acc < below {
        let Some((v, n)) = leading_digits(b, *i) else {
            break;
        };
        *acc = *acc * POW10_INT[n] + v;
        *i += n;
        taken += n;
        if n < 8 {
            break;
        }
    }
    taken
}

/// Scans one JSON number (strict grammar) starting at `i`; returns its end and token.
#[inline]
fn scan_number(b: &[u8], start: usize) -> Option<(usize, Token<'_>)> {
    let mut i = start;
    let negative = b.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let mut magnitude: u64 = 0;
    let mut overflow = false;
    match b.get(i) {
        Some(b'0') => {
            i += 1;
            // A leading zero (`01`): not a JSON number, as serde_json says too.
            if let Some(b'0'..=b'9') = b.get(i) {
                return None;
            }
        }
        Some(b'1'..=b'9') => {
            // Below 10^11, eight more digits still fit 64 bits.
            take_digits(b, &mut i, &mut magnitude, 100_000_000_000);
            while let Some(&d @ b'0'..=b'9') = b.get(i) {
                match magnitude
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(u64::from(d - b'0')))
                {
                    Some(m) => magnitude = m,
                    None => overflow = true,
                }
                i += 1;
            }
        }
        _ => return None,
    }
    // serde_json reads `-0` as the float -0.0, and negative integers beyond i64 as floats.
    let mut float = overflow || (negative && (magnitude == 0 || magnitude > 1 << 63));
    // The digits as mantissa × 10^exp10 while they fit (for the fast float path).
    let mut mantissa = magnitude;
    let mut exp10: i32 = 0;
    let mut exact = !overflow;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let digits = i;
        // Below 10^10, up to eight digits at once take the same steps as the loop below.
        exp10 -= take_digits(b, &mut i, &mut mantissa, 10_000_000_000) as i32;
        while let Some(&d @ b'0'..=b'9') = b.get(i) {
            if mantissa < 1_000_000_000_000_000_000 {
                mantissa = mantissa * 10 + u64::from(d - b'0');
                exp10 -= 1;
            } else {
                exact = false;
            }
            i += 1;
        }
        if i == digits {
            return None;
        }
        float = true;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        let sign = match b.get(i) {
            Some(b'-') => {
                i += 1;
                -1
            }
            Some(b'+') => {
                i += 1;
                1
            }
            _ => 1,
        };
        let digits = i;
        let mut e: i32 = 0;
        while let Some(&d @ b'0'..=b'9') = b.get(i) {
            // Saturates far outside the fast path's range; std parses those.
            e = e.saturating_mul(10).saturating_add(i32::from(d - b'0'));
            i += 1;
        }
        if i == digits {
            return None;
        }
        exp10 = exp10.saturating_add(sign * e);
        float = true;
    }
    let token = if float {
        Token::Float(Decimal {
            text: b.get(start..i)?,
            negative,
            mantissa,
            exp10,
            exact,
        })
    } else {
        Token::Int {
            negative,
            magnitude,
        }
    };
    Some((i, token))
}

#[inline]
fn scan_scalar(b: &[u8], i: usize) -> Option<(usize, Token<'_>)> {
    let rest = b.get(i..)?;
    if rest.starts_with(b"true") {
        Some((i + 4, Token::Bool(true)))
    } else if rest.starts_with(b"false") {
        Some((i + 5, Token::Bool(false)))
    } else {
        scan_number(b, i)
    }
}

/// What the walker reads at each leaf and where it puts it: numbers into a typed buffer
/// ([`Vec`] of a [`Scan`] type), or strings into a BYTES buffer ([`ByteStrings`]).
pub(super) trait Leaves {
    /// What one leaf is, for messages ("number", "string").
    const NOUN: &'static str;

    /// Reads one leaf at `b[i..]` into the buffer; its end, or `None` when it is not a leaf
    /// of this kind or does not fit.
    fn leaf(&mut self, b: &[u8], i: usize) -> Option<usize>;

    /// [`Leaves::leaf`] for the rest of an array's leaves, in the walker's tight loop:
    /// numbers try their common literal's shortcut first.
    #[inline(always)]
    fn next_leaf(&mut self, b: &[u8], i: usize) -> Option<usize> {
        self.leaf(b, i)
    }

    /// Why [`Leaves::leaf`] refused the value at `b[i..]`: it reads that one value again,
    /// never the rest of the text.
    fn leaf_error(&self, b: &[u8], i: usize) -> JsonArrayError;
}

impl<T: Scan> Leaves for Vec<T> {
    const NOUN: &'static str = "number";

    #[inline]
    fn leaf(&mut self, b: &[u8], i: usize) -> Option<usize> {
        let (end, token) = scan_scalar(b, i)?;
        self.push(T::from_token(token)?);
        Some(end)
    }

    #[inline(always)]
    fn next_leaf(&mut self, b: &[u8], i: usize) -> Option<usize> {
        let (end, value) = match T::scan_common(b, i) {
            Some(common) => common,
            None => {
                let (end, token) = scan_scalar(b, i)?;
                (end, T::from_token(token)?)
            }
        };
        self.push(value);
        Some(end)
    }

    #[cold]
    #[inline(never)]
    fn leaf_error(&self, b: &[u8], i: usize) -> JsonArrayError {
        let expected = "a number, true, false or an array";
        match scan_scalar(b, i) {
            Some((end, token)) if token.number().is_some() => {
                errors::element(self.len(), &b[i..end], T::DTYPE)
            }
            Some((end, _)) => errors::out_of_range(b, i, end),
            None => errors::not_a_leaf(b, i, self.len(), T::DTYPE, expected),
        }
    }
}

impl Leaves for ByteStrings {
    const NOUN: &'static str = "string";

    #[inline]
    fn leaf(&mut self, b: &[u8], i: usize) -> Option<usize> {
        scan_string(b, i, self).ok()
    }

    #[cold]
    #[inline(never)]
    fn leaf_error(&self, b: &[u8], i: usize) -> JsonArrayError {
        match scan_string(b, i, &mut ByteStrings::new()) {
            Err(StringFault::NotAString) => match scan_scalar(b, i) {
                Some((end, _)) => errors::element(self.len(), &b[i..end], DataType::Bytes),
                None => {
                    errors::not_a_leaf(b, i, self.len(), DataType::Bytes, "a string or an array")
                }
            },
            Err(fault) => errors::bad_string(b, i, fault),
            // Read again alone, the string is fine: `leaf` cannot have refused it.
            Ok(_) => errors::bad_string(b, i, StringFault::NotAString),
        }
    }
}

/// One value per row, typed by what the JSON holds: strings (BYTES), integers (INT64), or
/// numbers (FP64) once any has a fraction or exponent or lies beyond INT64. Strings and
/// numbers do not mix; `true`, `false` and `null` are no values here.
pub(super) enum Column {
    /// No value yet: room for this many.
    Empty(usize),
    Int(Vec<i64>),
    Float(Vec<f64>),
    Text(ByteStrings),
}

impl Column {
    pub(super) fn len(&self) -> usize {
        match self {
            Column::Empty(_) => 0,
            Column::Int(v) => v.len(),
            Column::Float(v) => v.len(),
            Column::Text(v) => v.len(),
        }
    }

    fn push_int(&mut self, v: i64) -> Option<()> {
        match self {
            Column::Empty(room) => *self = Column::Int(Vec::with_capacity(*room)),
            Column::Text(_) => return None,
            _ => {}
        }
        match self {
            Column::Int(values) => values.push(v),
            Column::Float(values) => values.push(v as f64),
            _ => return None,
        }
        Some(())
    }

    fn push_float(&mut self, v: f64) -> Option<()> {
        match self {
            Column::Empty(room) => *self = Column::Float(Vec::with_capacity(*room)),
            Column::Int(ints) => {
                let mut floats = Vec::with_capacity(ints.capacity());
                floats.extend(ints.iter().map(|&i| i as f64));
                *self = Column::Float(floats);
            }
            _ => {}
        }
        match self {
            Column::Float(values) => values.push(v),
            _ => return None,
        }
        Some(())
    }
}

impl Leaves for Column {
    const NOUN: &'static str = "value";

    #[inline]
    fn leaf(&mut self, b: &[u8], i: usize) -> Option<usize> {
        match self {
            Column::Text(strings) => return scan_string(b, i, strings).ok(),
            Column::Empty(room) if b.get(i) == Some(&b'"') => {
                let mut strings = ByteStrings::with_capacity(*room, 0);
                let end = scan_string(b, i, &mut strings).ok()?;
                *self = Column::Text(strings);
                return Some(end);
            }
            _ => {}
        }
        let (end, token) = scan_number(b, i)?;
        match token.number()? {
            JsonNumber::Int(v) => self.push_int(v)?,
            JsonNumber::UInt(v) => self.push_float(v as f64)?,
            JsonNumber::Float(v) => self.push_float(v)?,
            JsonNumber::Bool(_) => return None,
        }
        Some(end)
    }

    #[cold]
    #[inline(never)]
    fn leaf_error(&self, b: &[u8], i: usize) -> JsonArrayError {
        let row = self.len();
        if b.get(i) == Some(&b'"') {
            return match (self, scan_string(b, i, &mut ByteStrings::new())) {
                (_, Err(fault)) => errors::bad_string(b, i, fault),
                (_, Ok(end)) => errors::mixed(row, "a number", "the string", &b[i..end]),
            };
        }
        match scan_scalar(b, i) {
            Some((end, Token::Bool(_))) => errors::not_a_value(row, &b[i..end]),
            Some((end, token)) if token.number().is_some() => {
                errors::mixed(row, "a string", "the number", &b[i..end])
            }
            Some((end, _)) => errors::out_of_range(b, i, end),
            None if b[i.min(b.len())..].starts_with(b"null") => errors::not_a_value(row, b"null"),
            None => errors::not_a_leaf(b, i, row, DataType::F64, "a string, a number or an array"),
        }
    }
}

/// Why a JSON string was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum StringFault {
    NotAString,
    Unterminated,
    ControlCharacter,
    BadEscape,
    LoneSurrogate,
    NotUtf8,
}

impl StringFault {
    fn describe(self) -> &'static str {
        match self {
            StringFault::NotAString => "not a string",
            StringFault::Unterminated => "it has no closing quote",
            StringFault::ControlCharacter => {
                "it holds a control character (below U+0020), which JSON requires escaped"
            }
            StringFault::BadEscape => {
                "it holds an unknown escape (JSON has \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)"
            }
            StringFault::LoneSurrogate => {
                "it holds a \\u escape of a lone UTF-16 surrogate, which is no character"
            }
            StringFault::NotUtf8 => "it is not valid UTF-8",
        }
    }
}

/// Reads the JSON string at `b[i..]` (from its opening quote) into `out`, escapes decoded;
/// its end, or why it is not a valid JSON string (then `out` keeps nothing of it).
#[inline]
fn scan_string(b: &[u8], i: usize, out: &mut ByteStrings) -> Result<usize, StringFault> {
    if b.get(i) != Some(&b'"') {
        return Err(StringFault::NotAString);
    }
    let start = i + 1;
    let mut j = start;
    // The usual string has no escape: one slice, copied once. Its plain bytes are skipped
    // eight at a time; the byte loop below sees only a quote, backslash or control
    // character (or the last few bytes of the text).
    loop {
        if let Some(word) = b.get(j..j + 8) {
            let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
            let stops =
                bytes_equal(word, b'"') | bytes_equal(word, b'\\') | bytes_below_space(word);
            if stops == 0 {
                j += 8;
                continue;
            }
            j += (stops.trailing_zeros() / 8) as usize;
        }
        match *b.get(j).ok_or(StringFault::Unterminated)? {
            b'"' => {
                let text = &b[start..j];
                if !text.is_ascii() {
                    std::str::from_utf8(text).map_err(|_| StringFault::NotUtf8)?;
                }
                out.push_within(b, start..j);
                return Ok(j + 1);
            }
            b'\\' => break,
            0..=0x1f => return Err(StringFault::ControlCharacter),
            _ => j += 1,
        }
    }
    let mut end = Err(StringFault::Unterminated);
    out.push_with(|buf| {
        let from = buf.len();
        buf.extend_from_slice(&b[start..j]);
        end = unescape(b, j, buf);
        // Escapes write only valid UTF-8; the text between them is checked here.
        if end.is_ok() && std::str::from_utf8(&buf[from..]).is_err() {
            end = Err(StringFault::NotUtf8);
        }
        end.is_ok()
    });
    end
}

/// The high bit of each byte of `word` that equals `byte`, and no other bit (exact, unlike
/// the shorter has-zero-byte test, which may flag a byte after a match).
#[inline(always)]
pub(crate) fn bytes_equal(word: u64, byte: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = word ^ (u64::from(byte) * 0x0101_0101_0101_0101);
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// The high bit of each byte of `word` below 0x20 (a control character), and no other bit:
/// a byte's low seven bits plus 0x60 reach bit 7 exactly when they are 0x20 or more, and
/// never carry into the next byte.
#[inline(always)]
fn bytes_below_space(word: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    !(((word & LOW7) + 0x6060_6060_6060_6060) | word | LOW7)
}

/// Continues a string at its first backslash `b[j]`, decoding escapes and copying the text
/// between them into `buf`; the index after the closing quote.
fn unescape(b: &[u8], mut j: usize, buf: &mut Vec<u8>) -> Result<usize, StringFault> {
    loop {
        match *b.get(j).ok_or(StringFault::Unterminated)? {
            b'"' => return Ok(j + 1),
            b'\\' => {
                let c = match *b.get(j + 1).ok_or(StringFault::Unterminated)? {
                    b'"' => b'"',
                    b'\\' => b'\\',
                    b'/' => b'/',
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'u' => {
                        let (ch, next) = unicode_escape(b, j)?;
                        let mut utf8 = [0u8; 4];
                        buf.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
                        j = next;
                        continue;
                    }
                    _ => return Err(StringFault::BadEscape),
                };
                buf.push(c);
                j += 2;
            }
            0..=0x1f => return Err(StringFault::ControlCharacter),
            c => {
                buf.push(c);
                j += 1;
            }
        }
    }
}

/// The `\uXXXX` escape at `b[j..]` (a surrogate pair when it is a high surrogate followed
/// by a low one): its character and the index after it.
fn unicode_escape(b: &[u8], j: usize) -> Result<(char, usize), StringFault> {
    let hex = |at: usize| -> Result<u32, StringFault> {
        let digits = b.get(at..at + 4).ok_or(StringFault::Unterminated)?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(StringFault::BadEscape);
        }
        // Four ASCII hex digits: valid UTF-8 and at most 0xFFFF.
        let digits = std::str::from_utf8(digits).map_err(|_| StringFault::BadEscape)?;
        u32::from_str_radix(digits, 16).map_err(|_| StringFault::BadEscape)
    };
    let first = hex(j + 2)?;
    match first {
        0xD800..=0xDBFF => {
            if b.get(j + 6..j + 8) != Some(b"\\u") {
                return Err(StringFault::LoneSurrogate);
            }
            let second = hex(j + 8)?;
            if !(0xDC00..=0xDFFF).contains(&second) {
                return Err(StringFault::LoneSurrogate);
            }
            let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
            char::from_u32(code)
                .map(|c| (c, j + 12))
                .ok_or(StringFault::LoneSurrogate)
        }
        _ => char::from_u32(first)
            .map(|c| (c, j + 6))
            .ok_or(StringFault::LoneSurrogate),
    }
}

/// Walks the JSON text `b` (a leaf, or arrays nested up to [`MAX_JSON_DEPTH`] deep), appending
/// every leaf to `out` row-major; returns the shape, or the first thing wrong with the text
/// (syntax, ragged nesting, a value the buffer's type cannot hold), in the order it comes.
pub(super) fn walk<L: Leaves>(b: &[u8], out: &mut L) -> Result<Vec<usize>, JsonArrayError> {
    let (shape, end) = walk_value(b, out)?;
    match b.get(end) {
        None => Ok(shape),
        Some(_) => Err(errors::unexpected(b, end, "the end of the text")),
    }
}

/// [`walk`] for the one value at the start of `b`, whatever text follows it: its shape and
/// the index after it (and after the white space that follows).
pub(super) fn walk_value<L: Leaves>(
    b: &[u8],
    out: &mut L,
) -> Result<(Vec<usize>, usize), JsonArrayError> {
    // Length seen at each nesting depth; every array at one depth must agree.
    let mut dims: Vec<Option<usize>> = Vec::new();
    // Elements counted so far in each array still open (its depth is its index).
    let mut open: Vec<usize> = Vec::new();
    // Depth at which leaves appear; all leaves must sit at the same depth.
    let mut leaf_depth: Option<usize> = None;
    let mut i = skip_ws(b, 0);
    'value: loop {
        // A value starts at `i`.
        let depth = open.len();
        let mut value_done = true;
        if b.get(i) == Some(&b'[') {
            if leaf_depth.is_some_and(|d| d <= depth) {
                return Err(errors::ragged(format!(
                    "an array appears where a {} was expected",
                    L::NOUN
                )));
            }
            if depth >= MAX_JSON_DEPTH {
                return Err(JsonArrayError::Invalid(super::json::depth_error()));
            }
            open.push(0);
            i = skip_ws(b, i + 1);
            if b.get(i) != Some(&b']') {
                continue 'value;
            }
            // An empty array: `i` is at its `]`, which the loop below closes.
            value_done = false;
        } else {
            // An array already closed at this depth or deeper: a leaf here is ragged
            // (`[[], 0]`).
            if dims.len() > depth {
                return Err(errors::ragged(format!(
                    "a {} appears where an array was expected",
                    L::NOUN
                )));
            }
            let Some(end) = out.leaf(b, i) else {
                return Err(out.leaf_error(b, i));
            };
            match leaf_depth {
                None => leaf_depth = Some(depth),
                Some(d) if d != depth => {
                    return Err(errors::ragged(format!(
                        "{}s appear at nesting depths {d} and {depth}",
                        L::NOUN
                    )))
                }
                Some(_) => {}
            }
            i = skip_ws(b, end);
            // The rest of this array's leaves in a tight loop, without the bookkeeping
            // below (anything unexpected falls out to it).
            if let Some(count) = open.last_mut() {
                while b.get(i) == Some(&b',') {
                    let start = skip_ws(b, i + 1);
                    let Some(end) = out.next_leaf(b, start) else {
                        return Err(if b.get(start) == Some(&b'[') {
                            errors::ragged(format!(
                                "an array appears where a {} was expected",
                                L::NOUN
                            ))
                        } else {
                            out.leaf_error(b, start)
                        });
                    };
                    *count += 1;
                    i = skip_ws(b, end);
                }
            }
        }
        // After a complete value: a comma, the end of enclosing arrays, or the end.
        loop {
            let Some(count) = open.last_mut() else {
                return Ok((shape(&dims, leaf_depth), i));
            };
            if value_done {
                *count += 1;
            }
            match b.get(i) {
                Some(b',') if value_done => {
                    i = skip_ws(b, i + 1);
                    continue 'value;
                }
                Some(b']') => {
                    let len = *count;
                    open.pop();
                    let depth = open.len();
                    if dims.len() <= depth {
                        dims.resize(depth + 1, None);
                    }
                    match dims[depth] {
                        None => dims[depth] = Some(len),
                        Some(seen) if seen != len => {
                            return Err(errors::ragged(format!(
                                "dimension {depth} has lengths {seen} and {len}"
                            )))
                        }
                        Some(_) => {}
                    }
                    i = skip_ws(b, i + 1);
                    value_done = true;
                }
                _ => return Err(errors::unexpected(b, i, "',' or ']'")),
            }
        }
    }
}

/// The shape the nesting implies: one dimension per level down to the leaves (all of them
/// when there is none, `[[], []]` being `[2, 0]`).
fn shape(dims: &[Option<usize>], leaf_depth: Option<usize>) -> Vec<usize> {
    let rank = leaf_depth.unwrap_or(dims.len()).min(dims.len());
    dims[..rank].iter().map(|d| d.unwrap_or(0)).collect()
}

/// The walker's messages, built only once something is wrong. Each names what was
/// expected, what came, and where (line and column in the array's own text, as serde_json
/// words the rest of a body's errors).
mod errors {
    use super::super::json::JsonArrayError;
    use super::super::DataType;
    use super::StringFault;

    /// Characters of a refused value quoted in a message, at most.
    const QUOTED: usize = 40;

    pub fn ragged(what: String) -> JsonArrayError {
        JsonArrayError::Invalid(format!("ragged nested array: {what}"))
    }

    /// "at line 1 column 7" for byte `i` of `b`.
    pub fn position(b: &[u8], i: usize) -> String {
        let before = &b[..i.min(b.len())];
        let line = 1 + before.iter().filter(|&&c| c == b'\n').count();
        let column = 1 + before.iter().rev().take_while(|&&c| c != b'\n').count();
        format!("at line {line} column {column}")
    }

    /// `text` for a message: lossy UTF-8, cut at [`QUOTED`] characters.
    fn quote(text: &[u8]) -> String {
        let text = String::from_utf8_lossy(text);
        match text.char_indices().nth(QUOTED) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.into_owned(),
        }
    }

    /// What starts at `b[i..]`, for "found …".
    fn found(b: &[u8], i: usize) -> String {
        match b.get(i) {
            None => "the end of the text".to_string(),
            Some(b'{') => "an object ('{')".to_string(),
            Some(&c) if c.is_ascii_graphic() => format!("'{}'", c as char),
            Some(&c) => format!("the byte 0x{c:02x}"),
        }
    }

    pub fn unexpected(b: &[u8], i: usize, expected: &str) -> JsonArrayError {
        JsonArrayError::Invalid(format!(
            "expected {expected} {}, found {}",
            position(b, i),
            found(b, i)
        ))
    }

    /// A well-formed value that the datatype cannot hold (`literal` as it was written).
    pub fn element(index: usize, literal: &[u8], dtype: DataType) -> JsonArrayError {
        let what = match dtype {
            DataType::Bytes => "BYTES element (a JSON string)".to_string(),
            other => other.to_string(),
        };
        JsonArrayError::Element(format!(
            "element {index} is {}, which is not a valid {what}",
            quote(literal)
        ))
    }

    pub fn out_of_range(b: &[u8], i: usize, end: usize) -> JsonArrayError {
        JsonArrayError::Invalid(format!(
            "number {} {} is out of the range of a 64-bit float",
            quote(&b[i..end]),
            position(b, i)
        ))
    }

    /// A leaf position holding neither a number nor a string nor `true`/`false`: `null`
    /// or a string where numbers belong is an element of the wrong kind; anything else is
    /// not JSON of an array's form.
    pub fn not_a_leaf(
        b: &[u8],
        i: usize,
        index: usize,
        dtype: DataType,
        expected: &str,
    ) -> JsonArrayError {
        let rest = &b[i.min(b.len())..];
        if rest.starts_with(b"null") {
            return element(index, b"null", dtype);
        }
        if rest.first() == Some(&b'"') && dtype != DataType::Bytes {
            let end = (1..rest.len())
                .find(|&k| rest[k] == b'"' && rest[k - 1] != b'\\')
                .map_or(rest.len(), |k| k + 1);
            return JsonArrayError::Element(format!(
                "element {index} is the string {}, which is not a valid {dtype}",
                quote(&rest[..end])
            ));
        }
        if let Some(b'-' | b'0'..=b'9') = rest.first() {
            let end = rest
                .iter()
                .position(|c| !matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                .unwrap_or(rest.len());
            return JsonArrayError::Invalid(format!(
                "invalid number {} {} (JSON numbers are -?digits, an optional .digits and an optional exponent, with no leading zero)",
                quote(&rest[..end]),
                position(b, i)
            ));
        }
        unexpected(b, i, expected)
    }

    /// A column's row of the other kind: `row0` says what row 0 was.
    pub fn mixed(row: usize, row0: &str, kind: &str, literal: &[u8]) -> JsonArrayError {
        JsonArrayError::Element(format!(
            "mixes strings and numbers: row 0 is {row0} but row {row} is {kind} {}; a field takes a number or a string, the same kind for every row",
            quote(literal)
        ))
    }

    pub fn not_a_value(row: usize, literal: &[u8]) -> JsonArrayError {
        JsonArrayError::Element(format!(
            "row {row} is {}, which is no field value (a string or a number)",
            quote(literal)
        ))
    }

    pub fn bad_string(b: &[u8], i: usize, fault: StringFault) -> JsonArrayError {
        JsonArrayError::Invalid(format!(
            "invalid string {}: {}",
            position(b, i),
            fault.describe()
        ))
    }
}

/// An upper bound on the number of scalars in `text`: one more than its commas. Used to
/// allocate the typed buffer once, at its final size for flat arrays.
pub(super) fn max_elements(text: &[u8]) -> usize {
    // Counted in chunks with a byte-wide sum, which the compiler vectorises.
    let commas: usize = text
        .chunks(255)
        .map(|chunk| usize::from(chunk.iter().map(|&c| u8::from(c == b',')).sum::<u8>()))
        .sum();
    commas + 1
}

#[cfg(test)]
mod tests;
