//! Deterministic CBOR encoding and strict decoding.
//!
//! Everything tsunagi signs is encoded here, never by ciborium's serializer: ciborium writes map
//! entries in insertion order and reads leniently. The in-memory tree is [`ciborium::Value`] (so
//! `coset` can take it), but the bytes are ours.
//!
//! # Encoding (RFC 8949 §4.2.1, core deterministic encoding)
//! Definite lengths only, integers and lengths in their shortest form, map entries sorted by the
//! bytewise order of their encoded keys.
//!
//! # Decoding
//! [`decode`] accepts exactly what [`encode`] can produce, so `encode(decode(b)) == b` for every
//! accepted input. It refuses, each with its own error naming the byte offset:
//! input over the size limit, truncation, trailing bytes, non-shortest integers or lengths,
//! indefinite lengths, map keys out of order or duplicated, tags other than 18 (COSE_Sign1) and 24
//! (embedded CBOR), floating-point numbers, simple values other than `false`/`true`/`null`,
//! invalid UTF-8, nesting deeper than the limit and more data items than the limit. Verifiers
//! therefore check signatures over the bytes as received, and a byte-for-byte re-encoding is never
//! needed.
//!
//! The decoded tree is built before anything checks its shape, and each item of it takes 32
//! bytes or more however few bytes it took on the wire (a one-byte `0x00` in an array is a 32-byte
//! [`Value`]). The item limit ([`Limits::max_items`]) bounds that tree: without it, an 8 MiB
//! message of one-byte items would decode into 8 Mi values, 256 MiB held per message. Items
//! embedded as byte strings (`bstr .cbor`, tag 24) are decoded by separate calls; where their
//! number grows with the input (the items of a bundle) the calls share one budget
//! ([`decode_within`]).
//!
//! The second half of the module ([`MapReader`] and friends) reads typed structures out of
//! decoded maps with text keys, refusing missing, mistyped and unknown fields.

use ciborium::value::Integer;
pub use ciborium::Value;

/// Tag 18: COSE_Sign1.
pub const TAG_COSE_SIGN1: u64 = 18;
/// Tag 24: encoded CBOR data item.
pub const TAG_ENCODED_CBOR: u64 = 24;

/// Bounds on what [`decode`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted input, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted nesting of arrays, maps and tags.
    pub max_depth: usize,
    /// Most data items accepted in one input: every item counts, containers and tags included
    /// (a map of `n` entries is `1 + 2n` items before its keys and values have any inside them).
    /// Each decoded item is a [`Value`] of 32 bytes or more, so this bounds the memory a
    /// decoded input holds whatever its size.
    pub max_items: usize,
}

/// The default envelope size limit: 8 MiB.
pub const DEFAULT_MAX_BYTES: usize = 8 * 1024 * 1024;

/// The default item limit: 2^18 = 262,144 data items, at most 8 MiB of [`Value`]s (32 bytes
/// each), as much as the default size limit of input.
///
/// What legitimate messages need is far less. A document has a fixed set of a few dozen elements
/// per type and verification refuses any element twice, so an envelope body is a few hundred
/// items besides the document bytes, and all of a bundle's disclosed items together (their
/// budget is shared, see [`decode_within`]) hold the form's content; the checked-in vectors
/// (`protocol/vectors/`) hold 5 to under 800 items each, nested decodes included. Batch heads,
/// receipts, checkpoints, fetch requests and chain answers are tens of items. The budget leaves
/// room for forms with lists of tens of thousands of entries. Directories, signed by the
/// federation CA, may list tens of thousands of members and are read with a larger limit
/// ([`crate::directory::Directory::limits`]).
pub const DEFAULT_MAX_ITEMS: usize = 1 << 18;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            max_depth: 24,
            max_items: DEFAULT_MAX_ITEMS,
        }
    }
}

/// A CBOR decoding or schema error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    /// The input is larger than the limit.
    #[error("CBOR input of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input ends inside an item.
    #[error("CBOR input is truncated at byte {0}")]
    Truncated(usize),
    /// Bytes follow the single top-level item.
    #[error("CBOR input has trailing bytes after the item, at byte {0}")]
    TrailingBytes(usize),
    /// An integer, length or tag not in its shortest form.
    #[error("CBOR integer or length at byte {0} is not in its shortest form")]
    NonShortest(usize),
    /// An indefinite-length string, array or map.
    #[error("CBOR indefinite length at byte {0} is not allowed")]
    IndefiniteLength(usize),
    /// Map keys not in deterministic (bytewise encoded) order.
    #[error("CBOR map key at byte {0} is out of deterministic order")]
    UnsortedKeys(usize),
    /// The same map key twice.
    #[error("CBOR map key at byte {0} is a duplicate")]
    DuplicateKey(usize),
    /// A tag we never emit.
    #[error("CBOR tag {tag} at byte {offset} is not allowed (only 18 and 24)")]
    UnknownTag {
        /// The tag number.
        tag: u64,
        /// Where it starts.
        offset: usize,
    },
    /// A floating-point number.
    #[error("CBOR floating-point value at byte {0} is not allowed")]
    Float(usize),
    /// A simple value other than false, true, null.
    #[error("CBOR simple value {value} at byte {offset} is not allowed")]
    Simple {
        /// The simple value.
        value: u8,
        /// Where it starts.
        offset: usize,
    },
    /// A text string that is not UTF-8.
    #[error("CBOR text string at byte {0} is not valid UTF-8")]
    InvalidUtf8(usize),
    /// Nesting deeper than the limit.
    #[error("CBOR nesting at byte {0} is deeper than allowed")]
    TooDeep(usize),
    /// More data items than the limit ([`Limits::max_items`]).
    #[error(
        "CBOR input has more than the limit of {max} data items (max_items), at byte {offset}"
    )]
    TooManyItems {
        /// The limit.
        max: usize,
        /// Where the item over the limit (or the container claiming too many) starts.
        offset: usize,
    },
    /// A structural field is missing.
    #[error("{what}: missing field {field:?}")]
    MissingField {
        /// The structure.
        what: String,
        /// The field.
        field: String,
    },
    /// A structure has a field we do not know.
    #[error("{what}: unknown field {field:?}")]
    UnknownField {
        /// The structure.
        what: String,
        /// The field.
        field: String,
    },
    /// A value has the wrong type or an out-of-range value.
    #[error("{what}: expected {expected}")]
    WrongType {
        /// The structure and field.
        what: String,
        /// What was expected.
        expected: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Encoding

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Encodes `v` deterministically (RFC 8949 §4.2.1).
///
/// Floats are written as 64-bit floats; they never come out of [`decode`] or our own structures.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, v);
    out
}

/// Appends the deterministic encoding of `v` to `out`.
pub fn encode_into(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Integer(i) => {
            let i = i128::from(*i);
            if i >= 0 {
                head(out, 0, i as u64);
            } else {
                head(out, 1, (-1 - i) as u64);
            }
        }
        Value::Bytes(b) => {
            head(out, 2, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Text(t) => {
            head(out, 3, t.len() as u64);
            out.extend_from_slice(t.as_bytes());
        }
        Value::Array(a) => {
            head(out, 4, a.len() as u64);
            for x in a {
                encode_into(out, x);
            }
        }
        Value::Map(m) => {
            // Entries go in the order of their encoded keys, bytewise. The keys are encoded
            // once, one after another into one buffer, and sorted by their ranges in it.
            let mut keys = Vec::new();
            let mut entries: Vec<(std::ops::Range<usize>, &Value)> = m
                .iter()
                .map(|(k, v)| {
                    let start = keys.len();
                    encode_into(&mut keys, k);
                    (start..keys.len(), v)
                })
                .collect();
            entries.sort_by(|a, b| keys[a.0.clone()].cmp(&keys[b.0.clone()]));
            head(out, 5, entries.len() as u64);
            for (k, v) in entries {
                out.extend_from_slice(&keys[k]);
                encode_into(out, v);
            }
        }
        Value::Tag(t, inner) => {
            head(out, 6, *t);
            encode_into(out, inner);
        }
        Value::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Value::Null => out.push(0xf6),
        Value::Float(f) => {
            out.push(0xfb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        // `Value` is non-exhaustive; everything it can hold today is covered above.
        _ => out.push(0xf7),
    }
}

/// `Tag(24, Bytes(encode(v)))`: an embedded, separately hashable CBOR item.
pub fn tag24(v: &Value) -> Value {
    Value::Tag(TAG_ENCODED_CBOR, Box::new(Value::Bytes(encode(v))))
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Most elements reserved up front for one array or map. A count is only checked against the
/// input and the item budget that remain, and every level of nesting may claim all of them:
/// reserving the full count would let a few bytes of headers reserve depth × input × 32 bytes
/// before the truncation is found. Beyond this the vector grows as elements actually decode.
const MAX_PREALLOC: usize = 64;

/// The capacity to reserve for a container that claims `n` elements.
fn prealloc(n: u64) -> usize {
    usize::try_from(n).map_or(MAX_PREALLOC, |n| n.min(MAX_PREALLOC))
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    max_depth: usize,
    /// Items that may still be decoded.
    items_left: usize,
    /// The item limit, for the error.
    max_items: usize,
}

impl Decoder<'_> {
    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(CborError::Truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&[u8], CborError> {
        let start = self.pos;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| start.checked_add(n))
            .filter(|&e| e <= self.buf.len())
            .ok_or(CborError::Truncated(self.buf.len()))?;
        self.pos = end;
        Ok(&self.buf[start..end])
    }

    /// Reads the argument of a head whose additional info is `ai`, enforcing shortest form.
    fn argument(&mut self, ai: u8, at: usize) -> Result<u64, CborError> {
        let (n, min) = match ai {
            0..=23 => return Ok(u64::from(ai)),
            24 => (u64::from(self.byte()?), 24),
            25 => (
                u64::from(u16::from_be_bytes(
                    self.take(2)?.try_into().unwrap_or_default(),
                )),
                0x100,
            ),
            26 => (
                u64::from(u32::from_be_bytes(
                    self.take(4)?.try_into().unwrap_or_default(),
                )),
                0x1_0000,
            ),
            27 => (
                u64::from_be_bytes(self.take(8)?.try_into().unwrap_or_default()),
                0x1_0000_0000,
            ),
            31 => return Err(CborError::IndefiniteLength(at)),
            _ => return Err(CborError::NonShortest(at)), // 28..30 are reserved: malformed
        };
        if n < min {
            return Err(CborError::NonShortest(at));
        }
        Ok(n)
    }

    fn item(&mut self, depth: usize) -> Result<Value, CborError> {
        let at = self.pos;
        if depth > self.max_depth {
            return Err(CborError::TooDeep(at));
        }
        self.count(1, at)?;
        let initial = self.byte()?;
        let (major, ai) = (initial >> 5, initial & 0x1f);
        if major == 7 {
            return match ai {
                20 => Ok(Value::Bool(false)),
                21 => Ok(Value::Bool(true)),
                22 => Ok(Value::Null),
                25..=27 => Err(CborError::Float(at)),
                24 => Err(CborError::Simple {
                    value: self.byte()?,
                    offset: at,
                }),
                31 => Err(CborError::IndefiniteLength(at)),
                v => Err(CborError::Simple {
                    value: v,
                    offset: at,
                }),
            };
        }
        let n = self.argument(ai, at)?;
        Ok(match major {
            0 => Value::Integer(Integer::from(n)),
            1 => Value::Integer(
                Integer::try_from(-1 - i128::from(n)).map_err(|_| CborError::NonShortest(at))?,
            ),
            2 => Value::Bytes(self.take(n)?.to_vec()),
            3 => Value::Text(
                String::from_utf8(self.take(n)?.to_vec())
                    .map_err(|_| CborError::InvalidUtf8(at))?,
            ),
            4 => {
                // Each element takes at least one byte and one item: a length beyond the input
                // is truncation, one beyond the item budget is too many items, both found
                // before allocating.
                self.check_room(n)?;
                self.check_items(n, at)?;
                let mut a = Vec::with_capacity(prealloc(n));
                for _ in 0..n {
                    a.push(self.item(depth + 1)?);
                }
                Value::Array(a)
            }
            5 => {
                self.check_room(n.saturating_mul(2))?;
                self.check_items(n.saturating_mul(2), at)?;
                let mut m = Vec::with_capacity(prealloc(n));
                let mut prev: Option<&[u8]> = None;
                for _ in 0..n {
                    let key_at = self.pos;
                    let k = self.item(depth + 1)?;
                    let key_bytes = &self.buf[key_at..self.pos];
                    if let Some(p) = prev {
                        match p.cmp(key_bytes) {
                            std::cmp::Ordering::Less => {}
                            std::cmp::Ordering::Equal => {
                                return Err(CborError::DuplicateKey(key_at))
                            }
                            std::cmp::Ordering::Greater => {
                                return Err(CborError::UnsortedKeys(key_at))
                            }
                        }
                    }
                    prev = Some(key_bytes);
                    let v = self.item(depth + 1)?;
                    m.push((k, v));
                }
                Value::Map(m)
            }
            6 => {
                if n != TAG_COSE_SIGN1 && n != TAG_ENCODED_CBOR {
                    return Err(CborError::UnknownTag { tag: n, offset: at });
                }
                let inner = self.item(depth + 1)?;
                if n == TAG_ENCODED_CBOR && !matches!(inner, Value::Bytes(_)) {
                    return Err(CborError::WrongType {
                        what: format!("tag 24 at byte {at}"),
                        expected: "a byte string".into(),
                    });
                }
                Value::Tag(n, Box::new(inner))
            }
            _ => unreachable!("major type is three bits and 7 is handled above"),
        })
    }

    /// Takes `n` items from the budget.
    fn count(&mut self, n: usize, at: usize) -> Result<(), CborError> {
        self.items_left = self
            .items_left
            .checked_sub(n)
            .ok_or(CborError::TooManyItems {
                max: self.max_items,
                offset: at,
            })?;
        Ok(())
    }

    /// Refuses a container at `at` claiming more items than the budget has left.
    fn check_items(&self, min_items: u64, at: usize) -> Result<(), CborError> {
        if min_items > self.items_left as u64 {
            Err(CborError::TooManyItems {
                max: self.max_items,
                offset: at,
            })
        } else {
            Ok(())
        }
    }

    fn check_room(&self, min_bytes: u64) -> Result<(), CborError> {
        if min_bytes > (self.buf.len() - self.pos) as u64 {
            Err(CborError::Truncated(self.buf.len()))
        } else {
            Ok(())
        }
    }
}

/// Strictly decodes exactly one deterministic CBOR item from `bytes`, of at most
/// [`Limits::max_items`] data items.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Value, CborError> {
    let mut budget = limits.max_items;
    decode_within(bytes, limits, &mut budget)
}

/// As [`decode`], taking the items from `budget`, which several decodes may share: start it at
/// [`Limits::max_items`] and the values of all of them together hold at most that many items.
/// Used where the number of separately decoded inputs grows with the message (the items of a
/// bundle, each `bstr .cbor` of its own), which a limit per input would not bound. On success
/// `budget` is what is left.
pub fn decode_within(
    bytes: &[u8],
    limits: &Limits,
    budget: &mut usize,
) -> Result<Value, CborError> {
    if bytes.len() > limits.max_bytes {
        return Err(CborError::TooLarge {
            len: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let mut d = Decoder {
        buf: bytes,
        pos: 0,
        max_depth: limits.max_depth,
        items_left: *budget,
        max_items: limits.max_items,
    };
    let v = d.item(0)?;
    if d.pos != bytes.len() {
        return Err(CborError::TrailingBytes(d.pos));
    }
    *budget = d.items_left;
    Ok(v)
}

/// Strictly decodes the content of a tag-24 item (`#6.24(bstr .cbor T)`), returning the
/// embedded bytes and their decoded value.
pub fn untag24(v: Value, what: &str, limits: &Limits) -> Result<(Vec<u8>, Value), CborError> {
    let mut budget = limits.max_items;
    untag24_within(v, what, limits, &mut budget)
}

/// As [`untag24`], taking the content's items from a shared `budget` (see [`decode_within`]).
pub fn untag24_within(
    v: Value,
    what: &str,
    limits: &Limits,
    budget: &mut usize,
) -> Result<(Vec<u8>, Value), CborError> {
    match v {
        Value::Tag(TAG_ENCODED_CBOR, inner) => match *inner {
            Value::Bytes(b) => {
                let inner = decode_within(&b, limits, budget)?;
                Ok((b, inner))
            }
            _ => Err(wrong(what, "a tag-24 byte string")),
        },
        _ => Err(wrong(what, "a tag-24 embedded CBOR item")),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading typed structures

fn wrong(what: &str, expected: &str) -> CborError {
    CborError::WrongType {
        what: what.to_owned(),
        expected: expected.to_owned(),
    }
}

/// Reads the fields of a CBOR map with text keys, refusing unknown and missing ones.
///
/// ```
/// use tsunagi_protocol::cbor::{MapReader, Value};
/// let v = Value::Map(vec![(Value::Text("n".into()), Value::Integer(7.into()))]);
/// let mut r = MapReader::new(v, "example").unwrap();
/// assert_eq!(r.u64("n").unwrap(), 7);
/// r.finish().unwrap();
/// ```
#[derive(Debug)]
pub struct MapReader {
    what: String,
    entries: Vec<(String, Value)>,
}

impl MapReader {
    /// Starts reading `v`, which must be a map with text keys; `what` names it in errors.
    pub fn new(v: Value, what: &str) -> Result<Self, CborError> {
        let Value::Map(m) = v else {
            return Err(wrong(what, "a map"));
        };
        let entries = m
            .into_iter()
            .map(|(k, v)| match k {
                Value::Text(k) => Ok((k, v)),
                _ => Err(wrong(what, "a map with text keys")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            what: what.to_owned(),
            entries,
        })
    }

    fn field_name(&self, field: &str) -> String {
        format!("{}.{field}", self.what)
    }

    /// Removes and returns an optional field.
    pub fn opt(&mut self, field: &str) -> Option<Value> {
        let i = self.entries.iter().position(|(k, _)| k == field)?;
        Some(self.entries.swap_remove(i).1)
    }

    /// Removes and returns a required field.
    pub fn value(&mut self, field: &str) -> Result<Value, CborError> {
        self.opt(field).ok_or_else(|| CborError::MissingField {
            what: self.what.clone(),
            field: field.to_owned(),
        })
    }

    /// A required unsigned integer.
    pub fn u64(&mut self, field: &str) -> Result<u64, CborError> {
        match self.value(field)? {
            Value::Integer(i) => u64::try_from(i).ok(),
            _ => None,
        }
        .ok_or_else(|| wrong(&self.field_name(field), "an unsigned integer"))
    }

    /// A required text string.
    pub fn text(&mut self, field: &str) -> Result<String, CborError> {
        match self.value(field)? {
            Value::Text(t) => Ok(t),
            _ => Err(wrong(&self.field_name(field), "a text string")),
        }
    }

    /// A required byte string.
    pub fn bytes(&mut self, field: &str) -> Result<Vec<u8>, CborError> {
        match self.value(field)? {
            Value::Bytes(b) => Ok(b),
            _ => Err(wrong(&self.field_name(field), "a byte string")),
        }
    }

    /// A required byte string of exactly `N` bytes.
    pub fn byte_array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], CborError> {
        let b = self.bytes(field)?;
        b.try_into().map_err(|_| {
            wrong(
                &self.field_name(field),
                &format!("a byte string of {N} bytes"),
            )
        })
    }

    /// A required array.
    pub fn array(&mut self, field: &str) -> Result<Vec<Value>, CborError> {
        match self.value(field)? {
            Value::Array(a) => Ok(a),
            _ => Err(wrong(&self.field_name(field), "an array")),
        }
    }

    /// A required text field parsed with `FromStr`.
    pub fn parsed<T: std::str::FromStr>(&mut self, field: &str) -> Result<T, CborError>
    where
        T::Err: std::fmt::Display,
    {
        let t = self.text(field)?;
        t.parse()
            .map_err(|e: T::Err| wrong(&self.field_name(field), &format!("a valid value ({e})")))
    }

    /// Ends reading: any field not taken is unknown.
    pub fn finish(self) -> Result<(), CborError> {
        match self.entries.into_iter().next() {
            None => Ok(()),
            Some((field, _)) => Err(CborError::UnknownField {
                what: self.what,
                field,
            }),
        }
    }
}

/// `v` as an unsigned integer.
pub fn as_u64(v: &Value, what: &str) -> Result<u64, CborError> {
    match v {
        Value::Integer(i) => u64::try_from(*i).map_err(|_| wrong(what, "an unsigned integer")),
        _ => Err(wrong(what, "an unsigned integer")),
    }
}

/// A map with text keys, built in any order (the encoder sorts).
pub fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.to_owned()), v))
            .collect(),
    )
}

/// An unsigned integer value.
pub fn uint(n: u64) -> Value {
    Value::Integer(Integer::from(n))
}

// ---------------------------------------------------------------------------------------------
// JSON element values

/// Converts a JSON value (a document element) to CBOR. Floats are refused: no form has one.
pub fn from_json(v: &serde_json::Value, what: &str) -> Result<Value, CborError> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => {
            if let Some(u) = n.as_u64() {
                uint(u)
            } else if let Some(i) = n.as_i64() {
                Value::Integer(Integer::from(i))
            } else {
                return Err(wrong(
                    what,
                    "an integer (floating-point numbers are not used)",
                ));
            }
        }
        J::String(s) => Value::Text(s.clone()),
        J::Array(a) => Value::Array(
            a.iter()
                .map(|x| from_json(x, what))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(m) => Value::Map(
            m.iter()
                .map(|(k, x)| Ok((Value::Text(k.clone()), from_json(x, what)?)))
                .collect::<Result<_, CborError>>()?,
        ),
    })
}

/// Converts a CBOR element value back to JSON. Only what [`from_json`] produces is accepted.
pub fn to_json(v: &Value, what: &str) -> Result<serde_json::Value, CborError> {
    use serde_json::Value as J;
    Ok(match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Integer(i) => {
            let i = i128::from(*i);
            if let Ok(u) = u64::try_from(i) {
                J::from(u)
            } else if let Ok(s) = i64::try_from(i) {
                J::from(s)
            } else {
                return Err(wrong(what, "an integer within 64 bits"));
            }
        }
        Value::Text(t) => J::String(t.clone()),
        Value::Array(a) => J::Array(
            a.iter()
                .map(|x| to_json(x, what))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, x)| match k {
                    Value::Text(k) => Ok((k.clone(), to_json(x, what)?)),
                    _ => Err(wrong(what, "a map with text keys")),
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => return Err(wrong(what, "a JSON-compatible value")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(b: &[u8]) -> Result<Value, CborError> {
        decode(b, &Limits::default())
    }

    #[test]
    fn rfc8949_examples_round_trip() {
        // (value, expected hex) pairs from RFC 8949 Appendix A that are in our subset.
        let cases: Vec<(Value, &str)> = vec![
            (uint(0), "00"),
            (uint(23), "17"),
            (uint(24), "1818"),
            (uint(1000), "1903e8"),
            (uint(1_000_000), "1a000f4240"),
            (uint(u64::MAX), "1bffffffffffffffff"),
            (Value::Integer(Integer::from(-1i64)), "20"),
            (Value::Integer(Integer::from(-1000i64)), "3903e7"),
            (
                Value::Integer(Integer::try_from(-18_446_744_073_709_551_616i128).unwrap()),
                "3bffffffffffffffff",
            ),
            (Value::Bytes(vec![1, 2, 3, 4]), "4401020304"),
            (Value::Text("\u{6c34}".into()), "63e6b0b4"),
            (
                Value::Array(vec![uint(1), Value::Array(vec![uint(2), uint(3)])]),
                "8201820203",
            ),
            (Value::Bool(false), "f4"),
            (Value::Null, "f6"),
            (
                Value::Tag(
                    24,
                    Box::new(Value::Bytes(vec![0x64, 0x49, 0x45, 0x54, 0x46])),
                ),
                "d818456449455446",
            ),
        ];
        for (v, h) in cases {
            let bytes = encode(&v);
            assert_eq!(hex::encode(&bytes), h, "{v:?}");
            assert_eq!(dec(&bytes).unwrap(), v);
        }
    }

    #[test]
    fn maps_are_sorted_by_encoded_key() {
        // Shorter keys sort first under bytewise order of encodings: 10 < 100 < -1 < "z" < "aa".
        let m = Value::Map(vec![
            (Value::Text("aa".into()), uint(0)),
            (Value::Text("z".into()), uint(0)),
            (Value::Integer(Integer::from(-1i64)), uint(0)),
            (uint(100), uint(0)),
            (uint(10), uint(0)),
        ]);
        assert_eq!(hex::encode(encode(&m)), "a50a001864002000617a0062616100");
        assert!(dec(&encode(&m)).is_ok());
    }

    #[test]
    fn strictness() {
        let cases: &[(&str, CborError)] = &[
            ("0000", CborError::TrailingBytes(1)),
            ("1817", CborError::NonShortest(0)),
            ("190017", CborError::NonShortest(0)),
            ("5f4100ff", CborError::IndefiniteLength(0)),
            ("9f01ff", CborError::IndefiniteLength(0)),
            ("a2616101616101", CborError::DuplicateKey(4)),
            ("a2616201616101", CborError::UnsortedKeys(4)),
            (
                "c074323031332d30332d32315432303a30343a30305a",
                CborError::UnknownTag { tag: 0, offset: 0 },
            ),
            ("f93c00", CborError::Float(0)),
            (
                "f7",
                CborError::Simple {
                    value: 23,
                    offset: 0,
                },
            ),
            ("62c328", CborError::InvalidUtf8(0)),
            ("44010203", CborError::Truncated(4)),
            ("9bffffffffffffffff", CborError::Truncated(9)),
            (
                "d81801",
                CborError::WrongType {
                    what: "tag 24 at byte 0".into(),
                    expected: "a byte string".into(),
                },
            ),
            ("", CborError::Truncated(0)),
        ];
        for (h, e) in cases {
            assert_eq!(dec(&hex::decode(h).unwrap()).unwrap_err(), *e, "{h}");
        }
        let deep = [vec![0x81u8; 40], vec![0x00]].concat();
        assert_eq!(dec(&deep).unwrap_err(), CborError::TooDeep(25));
        let limits = Limits {
            max_bytes: 2,
            ..Limits::default()
        };
        assert_eq!(
            decode(&[0x43, 1, 2, 3], &limits).unwrap_err(),
            CborError::TooLarge { len: 4, max: 2 }
        );
    }

    /// Regression: nested containers that each claim the rest of the input reserved
    /// depth × input × 32 bytes (6 GiB for an 8 MiB envelope) before the truncation was found.
    /// The heap used is measured by the fuzz target `cbor_decode` (seed `nested_counts.cbor`);
    /// this crate forbids the unsafe code a counting allocator needs.
    #[test]
    fn claimed_counts_reserve_a_bounded_capacity() {
        assert_eq!(prealloc(3), 3);
        assert_eq!(prealloc(10_000), MAX_PREALLOC);
        assert_eq!(prealloc(u64::MAX), MAX_PREALLOC);
        // Each head claims every byte after it; the outer levels never get a second element.
        for (head, per_entry) in [(0x9a_u8, 1), (0xba, 2)] {
            let total = 1 << 20;
            let mut b = Vec::with_capacity(total);
            for _ in 0..24 {
                let claimed = (total - b.len() - 5) / per_entry;
                b.push(head);
                b.extend_from_slice(&(claimed as u32).to_be_bytes());
            }
            b.resize(total, 0);
            assert!(dec(&b).is_err());
        }
        // Containers longer than the preallocation still decode in full.
        let long: Vec<Value> = (0..1000).map(|_| uint(0)).collect();
        let long_map = Value::Map((0..1000).map(|i| (uint(i), Value::Null)).collect());
        for v in [Value::Array(long), long_map] {
            assert_eq!(dec(&encode(&v)).unwrap(), v);
        }
    }

    /// Regression (review): an input at the size limit made of one-byte array items decoded into
    /// 8 Mi values of 32 bytes, 256 MiB held (384 MiB while the vector grew), before anything
    /// looked at its shape.
    #[test]
    fn a_max_size_message_of_tiny_items_is_refused_at_the_item_limit() {
        // One array claiming all of them: refused at its head, before anything is allocated.
        let n: u32 = (DEFAULT_MAX_BYTES - 5) as u32;
        let mut b = vec![0x9a];
        b.extend_from_slice(&n.to_be_bytes());
        b.resize(b.len() + n as usize, 0x00);
        assert_eq!(b.len(), DEFAULT_MAX_BYTES);
        let e = dec(&b).unwrap_err();
        assert_eq!(
            e,
            CborError::TooManyItems {
                max: DEFAULT_MAX_ITEMS,
                offset: 0
            }
        );
        assert_eq!(
            e.to_string(),
            "CBOR input has more than the limit of 262144 data items (max_items), at byte 0"
        );
        // The same bytes as arrays of 131,000 items each, every one under the limit: counted
        // down, refused at the head of the third (1 + 131,001 + 131,001 items before it).
        let inner = 131_000_u32;
        let mut b = vec![0x98, 60];
        for _ in 0..60 {
            b.push(0x9a);
            b.extend_from_slice(&inner.to_be_bytes());
            b.resize(b.len() + inner as usize, 0x00);
        }
        assert!(b.len() <= DEFAULT_MAX_BYTES);
        assert_eq!(
            dec(&b).unwrap_err(),
            CborError::TooManyItems {
                max: DEFAULT_MAX_ITEMS,
                offset: 2 + 2 * (5 + inner as usize)
            }
        );
        // The most tiny items that decode: the tree holds no more than the size limit.
        let most = (DEFAULT_MAX_ITEMS - 1) as u32;
        let mut b = vec![0x9a];
        b.extend_from_slice(&most.to_be_bytes());
        b.resize(b.len() + most as usize, 0x00);
        let Value::Array(a) = dec(&b).unwrap() else {
            panic!("an array")
        };
        assert_eq!(a.len(), most as usize);
        let held = a.capacity() * std::mem::size_of::<Value>();
        assert!(held <= DEFAULT_MAX_BYTES, "{held} bytes of values held");
        // One more is one too many.
        b[1..5].copy_from_slice(&(most + 1).to_be_bytes());
        b.push(0x00);
        assert!(matches!(
            dec(&b),
            Err(CborError::TooManyItems { offset: 0, .. })
        ));
    }

    #[test]
    fn every_item_counts_and_a_shared_budget_spans_decodes() {
        let at_most = |max_items| Limits {
            max_items,
            ..Limits::default()
        };
        // [0, {1: 2}, 24(h'00')]: the array, 0, the map, 1, 2, the tag and its byte string.
        let v = hex::decode("8300a10102d8184100").unwrap();
        assert!(decode(&v, &at_most(7)).is_ok());
        assert_eq!(
            decode(&v, &at_most(6)).unwrap_err(),
            CborError::TooManyItems { max: 6, offset: 7 }
        );
        // A map claiming more entries than the budget has room for is refused at its head.
        let m = hex::decode("a200010203").unwrap();
        assert!(decode(&m, &at_most(5)).is_ok());
        assert_eq!(
            decode(&m, &at_most(4)).unwrap_err(),
            CborError::TooManyItems { max: 4, offset: 0 }
        );
        // Decodes sharing a budget: what one takes, the next has not.
        let limits = at_most(10);
        let mut budget = limits.max_items;
        assert!(decode_within(&v, &limits, &mut budget).is_ok());
        assert_eq!(budget, 3);
        assert_eq!(
            decode_within(&v, &limits, &mut budget).unwrap_err(),
            CborError::TooManyItems { max: 10, offset: 0 }
        );
        let mut budget = 3;
        let (_, inner) = untag24_within(
            tag24(&Value::Array(vec![uint(1), uint(2)])),
            "x",
            &limits,
            &mut budget,
        )
        .unwrap();
        assert_eq!(inner, Value::Array(vec![uint(1), uint(2)]));
        assert_eq!(budget, 0);
    }

    #[test]
    fn map_reader_refuses_unknown_missing_and_mistyped() {
        let v = map([("a", uint(1)), ("b", Value::Text("x".into()))]);
        let mut r = MapReader::new(v.clone(), "thing").unwrap();
        assert_eq!(r.u64("a").unwrap(), 1);
        assert_eq!(
            r.finish().unwrap_err().to_string(),
            "thing: unknown field \"b\""
        );
        let mut r = MapReader::new(v.clone(), "thing").unwrap();
        assert_eq!(
            r.u64("c").unwrap_err().to_string(),
            "thing: missing field \"c\""
        );
        assert_eq!(
            r.u64("b").unwrap_err().to_string(),
            "thing.b: expected an unsigned integer"
        );
    }

    #[test]
    fn json_round_trip_and_floats_refused() {
        let j: serde_json::Value =
            serde_json::from_str(r#"{"a":[1,-2,null,true,"水"],"b":{"c":""}}"#).unwrap();
        let c = from_json(&j, "x").unwrap();
        assert_eq!(to_json(&dec(&encode(&c)).unwrap(), "x").unwrap(), j);
        assert!(from_json(&serde_json::json!(1.5), "x").is_err());
    }
}
