//! Streaming decode machinery: serde seeds that build prost messages straight from the
//! JSON tokens (no `serde_json::Value` tree), plus the error bookkeeping that turns a
//! failure into a JSON path.
//!
//! Why paths are recorded on the way out: keeping a path stack while descending would cost
//! work on every field of every good request. Instead the innermost visitor that fails
//! records its message in [`Cx`], and every enclosing field or array element appends its
//! own segment while the error unwinds. The happy path pays nothing.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{DecodeLimits, JsonDecodeError, LimitExceeded};

/// How deeply attribute values (`arrayValue`/`kvlistValue`) may nest. Chosen below the depth at which
/// serde_json's own 128-level guard would fire (each kvlist level is four JSON levels),
/// so a too-deep attribute gets this clear message with its path, never a stack overflow.
pub const MAX_VALUE_DEPTH: u32 = 24;

/// One step of a JSON path.
#[derive(Debug, Clone, Copy)]
pub(super) enum Seg {
    Field(&'static str),
    Index(usize),
}

#[derive(Debug)]
struct Failure {
    /// Innermost segment first.
    rev_path: Vec<Seg>,
    /// Our own message, or `None` when serde_json itself failed (syntax, end of input).
    message: Option<String>,
}

/// Decode context shared by every seed of one decode call.
#[derive(Default)]
pub(super) struct Cx {
    failure: RefCell<Option<Failure>>,
    depth: Cell<u32>,
    budget: Option<Budget>,
}

/// What a limited decode has built so far, checked as it grows so that a small body of
/// `{}`s cannot become millions of structs before anyone counts them.
struct Budget {
    limits: DecodeLimits,
    spans: Cell<u64>,
    bytes: Cell<u64>,
    exceeded: Cell<Option<LimitExceeded>>,
}

impl Cx {
    /// A context that stops decoding once `limits` are crossed. `text` (the body length)
    /// is charged up front: every string the decode copies comes from the body, so the
    /// body's length bounds them, and only the structs need counting.
    pub(super) fn limited(limits: DecodeLimits, text: u64) -> Self {
        Cx {
            budget: Some(Budget {
                limits,
                spans: Cell::new(0),
                bytes: Cell::new(text),
                exceeded: Cell::new(None),
            }),
            ..Cx::default()
        }
    }

    /// The limit that stopped the decode, if one did.
    pub(super) fn exceeded(&self) -> Option<LimitExceeded> {
        self.budget.as_ref().and_then(|b| b.exceeded.get())
    }

    /// Charges one element of `size` bytes (a span when `span`), failing once a limit is
    /// crossed.
    fn charge<E: de::Error>(&self, size: usize, span: bool) -> Result<(), E> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        let bytes = budget.bytes.get().saturating_add(size as u64);
        budget.bytes.set(bytes);
        let spans = budget.spans.get() + u64::from(span);
        budget.spans.set(spans);
        let exceeded = if spans > budget.limits.max_spans {
            LimitExceeded::Spans {
                limit: budget.limits.max_spans,
            }
        } else if bytes > budget.limits.max_decoded_size {
            LimitExceeded::DecodedSize {
                limit: budget.limits.max_decoded_size,
            }
        } else {
            return Ok(());
        };
        budget.exceeded.set(Some(exceeded));
        Err(self.fail(exceeded.to_string()))
    }
    /// Records `message` as the reason for failing (the innermost failure wins) and returns
    /// an error for serde to unwind with; its own text is never shown.
    pub(super) fn fail<E: de::Error>(&self, message: String) -> E {
        let mut slot = self.failure.borrow_mut();
        if slot.is_none() {
            *slot = Some(Failure {
                rev_path: Vec::new(),
                message: Some(message),
            });
        }
        E::custom("OTLP/JSON decode failed")
    }

    /// Passes `result` through; on error, notes that it happened inside `seg`.
    pub(super) fn within<T, E>(&self, result: Result<T, E>, seg: Seg) -> Result<T, E> {
        if result.is_err() {
            self.note().rev_path.push(seg);
        }
        result
    }

    /// Passes `result` through; on error, makes sure a failure is recorded at this level.
    pub(super) fn here<T, E>(&self, result: Result<T, E>) -> Result<T, E> {
        if result.is_err() {
            self.note();
        }
        result
    }

    fn note(&self) -> std::cell::RefMut<'_, Failure> {
        std::cell::RefMut::map(self.failure.borrow_mut(), |slot| {
            slot.get_or_insert_with(|| Failure {
                rev_path: Vec::new(),
                message: None,
            })
        })
    }

    /// Turns serde_json's error plus what was recorded into the public error.
    pub(super) fn into_error(self, err: serde_json::Error) -> JsonDecodeError {
        let failure = self.failure.into_inner();
        let (rev_path, message) = match failure {
            Some(f) => (f.rev_path, f.message),
            None => (Vec::new(), None),
        };
        let message = message.unwrap_or_else(|| match err.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("invalid JSON: {err}")
            }
            _ => err.to_string(),
        });
        JsonDecodeError {
            path: path_string(&rev_path),
            message,
        }
    }

    /// Enters one level of nested `AnyValue`, refusing to go past [`MAX_VALUE_DEPTH`].
    fn enter<E: de::Error>(&self) -> Result<(), E> {
        let depth = self.depth.get() + 1;
        if depth > MAX_VALUE_DEPTH {
            return Err(self.fail(format!(
                "attribute values nest deeper than {MAX_VALUE_DEPTH} levels"
            )));
        }
        self.depth.set(depth);
        Ok(())
    }

    fn leave(&self) {
        self.depth.set(self.depth.get().saturating_sub(1));
    }
}

/// `resourceSpans[0].scopeSpans[1].spans[3].traceId`; `$` for the document itself.
fn path_string(rev_path: &[Seg]) -> String {
    if rev_path.is_empty() {
        return "$".to_owned();
    }
    let mut out = String::new();
    for seg in rev_path.iter().rev() {
        match seg {
            Seg::Field(name) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(itoa::Buffer::new().format(*i));
                out.push(']');
            }
        }
    }
    out
}

/// Any JSON value, with containers already skipped: what leaf fields inspect.
pub(super) enum Scalar<'de> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'de, str>),
    Array,
    Object,
}

impl Scalar<'_> {
    /// "a string", "an array": for "expected X, got Y" messages.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::U64(_) | Scalar::I64(_) | Scalar::F64(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Array => "an array",
            Scalar::Object => "an object",
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::I64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F64(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

/// Turns one JSON scalar into a field value. `Err` holds the message (no path).
pub(super) trait Parse: Copy {
    type Out;
    fn parse(self, value: Scalar<'_>) -> Result<Self::Out, String>;
}

/// Seed for a leaf field parsed by `P`.
#[derive(Clone, Copy)]
pub(super) struct Leaf<'c, P> {
    cx: &'c Cx,
    parse: P,
}

impl<'c, P> Leaf<'c, P> {
    pub(super) fn new(cx: &'c Cx, parse: P) -> Self {
        Leaf { cx, parse }
    }
}

impl<'de, P: Parse> DeserializeSeed<'de> for Leaf<'_, P> {
    type Value = P::Out;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<P::Out, D::Error> {
        let value = d.deserialize_any(ScalarVisitor)?;
        self.parse.parse(value).map_err(|m| self.cx.fail(m))
    }
}

/// A prost message decodable field by field.
pub(super) trait Msg: Default {
    type Field: Copy;
    /// The field a JSON key names (lowerCamelCase or the proto's snake_case), if known.
    fn field(key: &str) -> Option<Self::Field>;
    /// The lowerCamelCase name used in error paths.
    fn field_name(field: Self::Field) -> &'static str;
    /// Reads the value of `field` from `map` (exactly one `next_value*` call).
    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        field: Self::Field,
        map: &mut A,
        cx: &Cx,
    ) -> Result<(), A::Error>;
}

/// Seed for a message field; `null` gives `None`.
pub(super) struct OptObj<'c, M> {
    cx: &'c Cx,
    root: bool,
    _m: PhantomData<fn() -> M>,
}

impl<M> Clone for OptObj<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<M> Copy for OptObj<'_, M> {}

impl<'c, M> OptObj<'c, M> {
    pub(super) fn new(cx: &'c Cx) -> Self {
        OptObj {
            cx,
            root: false,
            _m: PhantomData,
        }
    }
    /// The document itself: must be an object, `null` included.
    pub(super) fn root(cx: &'c Cx) -> Self {
        OptObj {
            cx,
            root: true,
            _m: PhantomData,
        }
    }
}

/// Seed for a message that is always present (repeated elements, oneof members); `null`
/// gives the default message.
pub(super) struct Obj<'c, M>(OptObj<'c, M>);

impl<M> Clone for Obj<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<M> Copy for Obj<'_, M> {}

impl<'c, M> Obj<'c, M> {
    pub(super) fn new(cx: &'c Cx) -> Self {
        Obj(OptObj::new(cx))
    }
}

impl<'de, M: Msg> DeserializeSeed<'de> for Obj<'_, M> {
    type Value = M;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<M, D::Error> {
        Ok(self.0.deserialize(d)?.unwrap_or_default())
    }
}

impl<'de, M: Msg> DeserializeSeed<'de> for OptObj<'_, M> {
    type Value = Option<M>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<M>, D::Error> {
        d.deserialize_any(self)
    }
}

/// Implements the visitor methods for JSON kinds a container seed does not accept.
macro_rules! reject_kinds {
    ($($method:ident($ty:ty) => $kind:literal),* $(,)?) => {
        $(fn $method<E: de::Error>(self, _v: $ty) -> Result<Self::Value, E> {
            Err(self.reject($kind))
        })*
    };
}

impl<'de, M: Msg> Visitor<'de> for OptObj<'_, M> {
    type Value = Option<M>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<M>, E> {
        if self.root {
            return Err(self.cx.fail("expected a JSON object, got null".to_owned()));
        }
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<M>, A::Error> {
        let cx = self.cx;
        let mut msg = M::default();
        while let Some(key) = cx.here(map.next_key_seed(KeySeed::<M>(PhantomData)))? {
            match key {
                Some(field) => {
                    cx.within(
                        msg.read(field, &mut map, cx),
                        Seg::Field(M::field_name(field)),
                    )?;
                }
                // Unknown fields are ignored (newer OTLP versions add fields).
                None => {
                    cx.here(map.next_value::<IgnoredAny>())?;
                }
            }
        }
        Ok(Some(msg))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<Option<M>, A::Error> {
        Err(self.reject("an array"))
    }
    reject_kinds!(
        visit_bool(bool) => "a boolean",
        visit_i64(i64) => "a number",
        visit_u64(u64) => "a number",
        visit_f64(f64) => "a number",
        visit_str(&str) => "a string",
    );
}

impl<M> OptObj<'_, M> {
    fn reject<E: de::Error>(&self, got: &str) -> E {
        let what = if self.root {
            "a JSON object"
        } else {
            "an object"
        };
        self.cx.fail(format!("expected {what}, got {got}"))
    }
}

/// Seed for an object key: maps it to `M`'s field, `None` when unknown.
struct KeySeed<M>(PhantomData<fn() -> M>);

impl<'de, M: Msg> DeserializeSeed<'de> for KeySeed<M> {
    type Value = Option<M::Field>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, M: Msg> Visitor<'de> for KeySeed<M> {
    type Value = Option<M::Field>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(M::field(key))
    }
}

/// Seed for a repeated field: a JSON array of `S`; `null` gives an empty list. Every
/// element is charged to the decode's budget (see [`Cx::limited`]).
#[derive(Clone, Copy)]
pub(super) struct List<'c, S> {
    cx: &'c Cx,
    elem: S,
    /// Whether the elements are spans (counted against `max_spans` too).
    spans: bool,
}

impl<'c, S> List<'c, S> {
    pub(super) fn new(cx: &'c Cx, elem: S) -> Self {
        List {
            cx,
            elem,
            spans: false,
        }
    }
    /// The `spans` list of a `ScopeSpans`.
    pub(super) fn spans(cx: &'c Cx, elem: S) -> Self {
        List {
            cx,
            elem,
            spans: true,
        }
    }
    fn reject<E: de::Error>(&self, got: &str) -> E {
        self.cx.fail(format!("expected an array, got {got}"))
    }
}

impl<'de, S: DeserializeSeed<'de> + Copy> DeserializeSeed<'de> for List<'_, S> {
    type Value = Vec<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: DeserializeSeed<'de> + Copy> Visitor<'de> for List<'_, S> {
    type Value = Vec<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = self
            .cx
            .within(seq.next_element_seed(self.elem), Seg::Index(out.len()))?
        {
            out.push(v);
            self.cx
                .charge(std::mem::size_of::<S::Value>(), self.spans)?;
        }
        Ok(out)
    }
    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<Self::Value, A::Error> {
        Err(self.reject("an object"))
    }
    reject_kinds!(
        visit_bool(bool) => "a boolean",
        visit_i64(i64) => "a number",
        visit_u64(u64) => "a number",
        visit_f64(f64) => "a number",
        visit_str(&str) => "a string",
    );
}

/// Seed for one nested `AnyValue` (an attribute value or an array element), counting depth.
#[derive(Clone, Copy)]
pub(super) struct Nested<'c, S> {
    cx: &'c Cx,
    inner: S,
}

impl<'c, S> Nested<'c, S> {
    pub(super) fn new(cx: &'c Cx, inner: S) -> Self {
        Nested { cx, inner }
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Nested<'_, S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.cx.enter()?;
        let out = self.inner.deserialize(d)?;
        self.cx.leave();
        Ok(out)
    }
}
