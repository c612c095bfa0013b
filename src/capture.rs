//! Keeping the message of a `Serialize` or `Deserialize` implementation
//! that fails.
//!
//! postcard's error type drops the text given to `Error::custom(msg)`: a
//! user's `S::Error::custom("no more widgets")` arrives as a bare
//! `SerdeSerCustom`. To keep the text, the value is (de)serialized through
//! a thin wrapper around postcard's serializer or deserializer whose error
//! type records it. Every call is forwarded unchanged, so the bytes on the
//! wire are postcard's; nested values are wrapped again on the way down,
//! so an error from any depth keeps its text.
//!
//! - In the child ([`Ser`]) the text is formatted, without allocating, into
//!   an [`ErrorText`] kept in a static ([`ChildMessage`]): `custom` is an
//!   associated function with nowhere else to put it, and the error itself
//!   stays one byte wide, as postcard's is, so that the success path does
//!   not change.
//! - In the parent ([`De`]) the error carries its text, and a slot on the
//!   caller's stack carries it across postcard's own frames (whose error
//!   type cannot hold it). The parent may allocate, but needs not: the
//!   allocation-free API decodes through the same wrapper.

use core::cell::Cell;
use core::fmt::{self, Display, Write as _};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use serde::de::{self, DeserializeSeed, Visitor};
use serde::ser::{self, Serialize};

use crate::errors::{ERROR_TEXT_CAPACITY, ErrorText};

/// The text of the error a [`Ser`] is carrying up, in this process.
///
/// Atomic bytes rather than a plain buffer: only the child writes it in
/// earnest (one serialization, on one thread, after the fork), but the
/// fuzz harness and unit tests serialize in ordinary multi-threaded
/// processes, where this keeps concurrent failures from being undefined
/// behaviour (their texts may mix; nothing relies on them there).
struct ChildMessage {
    /// A text is recorded for the failure on its way up: errors of the
    /// wrapped serializer met further up (postcard's, which only say that
    /// a nested value failed) do not replace it.
    pending: AtomicBool,
    len: AtomicU8,
    bytes: [AtomicU8; ERROR_TEXT_CAPACITY],
}

static CHILD_MESSAGE: ChildMessage = ChildMessage {
    pending: AtomicBool::new(false),
    len: AtomicU8::new(0),
    bytes: [const { AtomicU8::new(0) }; ERROR_TEXT_CAPACITY],
};

impl ChildMessage {
    fn set(&self, text: &ErrorText) {
        for (slot, &b) in self.bytes.iter().zip(text.as_bytes()) {
            slot.store(b, Ordering::Relaxed);
        }
        #[allow(clippy::cast_possible_truncation)] // at most ERROR_TEXT_CAPACITY
        self.len
            .store(text.as_bytes().len() as u8, Ordering::Relaxed);
        self.pending.store(true, Ordering::Relaxed);
    }

    fn get(&self) -> ErrorText {
        let len = usize::from(self.len.load(Ordering::Relaxed)).min(ERROR_TEXT_CAPACITY);
        let mut raw = [0u8; ERROR_TEXT_CAPACITY];
        for (b, slot) in raw.iter_mut().zip(&self.bytes[..len]) {
            *b = slot.load(Ordering::Relaxed);
        }
        ErrorText::from_utf8_lossy_prefix(&raw[..len])
    }
}

/// Formats `msg` into a new [`ErrorText`], cut to fit. Allocation-free
/// (unless `msg`'s own `Display` allocates).
fn text_of(msg: &dyn Display) -> ErrorText {
    let mut text = ErrorText::empty();
    let _ = write!(text, "{msg}");
    text
}

/// The message of the failure [`serialize`] last returned in this
/// process: the text given to `custom` for a user's error, the wrapped
/// serializer's description for one of its own.
pub(crate) fn ser_message() -> ErrorText {
    CHILD_MESSAGE.get()
}

/// Serializes `value` into `serializer` through [`Ser`], so that a failure
/// leaves its message for [`ser_message`]. Every failure is returned as
/// postcard's `SerdeSerCustom`.
#[inline]
pub(crate) fn serialize<T, F>(
    value: &T,
    serializer: &mut postcard::Serializer<F>,
) -> postcard::Result<()>
where
    T: Serialize + ?Sized,
    F: postcard::ser_flavors::Flavor,
{
    // Cleared only if set: a store would cost the child a copy-on-write
    // fault on every call, and a child starts with it clear.
    if CHILD_MESSAGE.pending.load(Ordering::Relaxed) {
        CHILD_MESSAGE.pending.store(false, Ordering::Relaxed);
    }
    value
        .serialize(Ser(serializer))
        .map_err(|SerError| postcard::Error::SerdeSerCustom)
}

/// The child's error: empty, so as small as postcard's. Its text is in
/// [`CHILD_MESSAGE`].
#[derive(Debug)]
pub(crate) struct SerError;

impl Display for SerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Display::fmt(&ser_message(), f)
    }
}

impl ser::StdError for SerError {}

impl ser::Error for SerError {
    #[cold]
    fn custom<T: Display>(msg: T) -> Self {
        CHILD_MESSAGE.set(&text_of(&msg));
        Self
    }
}

/// An error of the wrapped serializer: its own description, unless it only
/// carries up a failure whose text is already recorded.
#[cold]
#[allow(clippy::needless_pass_by_value)] // the function `map_err` calls
fn into_ser<E: ser::Error>(e: E) -> SerError {
    if !CHILD_MESSAGE.pending.load(Ordering::Relaxed) {
        CHILD_MESSAGE.set(&text_of(&e));
    }
    SerError
}

/// A serializer that forwards to `S` (postcard's) with [`SerError`] as its
/// error type.
pub(crate) struct Ser<S>(S);

/// A value to be serialized through [`Ser`] by a serializer that is not
/// one: what the wrapper hands postcard for every nested value.
struct Nested<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for Nested<'_, T> {
    #[inline]
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The text is already in CHILD_MESSAGE; postcard's error type
        // (`S::Error` here) carries the failure up.
        self.0
            .serialize(Ser(s))
            .map_err(<S::Error as ser::Error>::custom)
    }
}

/// Forwards a method whose arguments are plain values.
macro_rules! forward_ser {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[inline]
        fn $name(self, $($arg: $ty),*) -> Result<Self::Ok, Self::Error> {
            self.0.$name($($arg),*).map_err(into_ser)
        }
    )*};
}

impl<S: ser::Serializer> ser::Serializer for Ser<S> {
    type Ok = S::Ok;
    type Error = SerError;
    type SerializeSeq = Ser<S::SerializeSeq>;
    type SerializeTuple = Ser<S::SerializeTuple>;
    type SerializeTupleStruct = Ser<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Ser<S::SerializeTupleVariant>;
    type SerializeMap = Ser<S::SerializeMap>;
    type SerializeStruct = Ser<S::SerializeStruct>;
    type SerializeStructVariant = Ser<S::SerializeStructVariant>;

    forward_ser! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_i128(v: i128);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_u128(v: u128);
        serialize_f32(v: f32);
        serialize_f64(v: f64);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_bytes(v: &[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, SerError> {
        self.0.serialize_some(&Nested(value)).map_err(into_ser)
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, SerError> {
        self.0
            .serialize_newtype_struct(name, &Nested(value))
            .map_err(into_ser)
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, SerError> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Nested(value))
            .map_err(into_ser)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, SerError> {
        self.0.serialize_seq(len).map(Ser).map_err(into_ser)
    }

    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, SerError> {
        self.0.serialize_tuple(len).map(Ser).map_err(into_ser)
    }

    #[inline]
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, SerError> {
        self.0
            .serialize_tuple_struct(name, len)
            .map(Ser)
            .map_err(into_ser)
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, SerError> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(Ser)
            .map_err(into_ser)
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, SerError> {
        self.0.serialize_map(len).map(Ser).map_err(into_ser)
    }

    #[inline]
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, SerError> {
        self.0
            .serialize_struct(name, len)
            .map(Ser)
            .map_err(into_ser)
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, SerError> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(Ser)
            .map_err(into_ser)
    }

    // postcard's own `collect_str` formats without allocating; serde's
    // default would allocate a `String`.
    #[inline]
    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<S::Ok, SerError> {
        self.0.collect_str(value).map_err(into_ser)
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// Implements one of serde's compound serializer traits for `Ser<S>`.
macro_rules! compound {
    ($trait:ident, $method:ident($($key:ident: $kty:ty),*)) => {
        impl<S: ser::$trait> ser::$trait for Ser<S> {
            type Ok = S::Ok;
            type Error = SerError;

            #[inline]
            fn $method<T: Serialize + ?Sized>(
                &mut self,
                $($key: $kty,)*
                value: &T,
            ) -> Result<(), SerError> {
                self.0.$method($($key,)* &Nested(value)).map_err(into_ser)
            }

            #[inline]
            fn end(self) -> Result<S::Ok, SerError> {
                self.0.end().map_err(into_ser)
            }
        }
    };
}

compound!(SerializeSeq, serialize_element());
compound!(SerializeTuple, serialize_element());
compound!(SerializeTupleStruct, serialize_field());
compound!(SerializeTupleVariant, serialize_field());
compound!(SerializeStruct, serialize_field(key: &'static str));
compound!(SerializeStructVariant, serialize_field(key: &'static str));

impl<S: ser::SerializeMap> ser::SerializeMap for Ser<S> {
    type Ok = S::Ok;
    type Error = SerError;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), SerError> {
        self.0.serialize_key(&Nested(key)).map_err(into_ser)
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        self.0.serialize_value(&Nested(value)).map_err(into_ser)
    }

    #[inline]
    fn end(self) -> Result<S::Ok, SerError> {
        self.0.end().map_err(into_ser)
    }
}

// ---------------------------------------------------------------------------
// The parent's side.

/// Where a [`DeError`]'s text waits while postcard's error type, which
/// cannot hold it, carries the failure up through postcard's own frames.
type Slot = Cell<Option<ErrorText>>;

/// Deserializes a `T` from `deserializer` through [`De`]; a failure comes
/// back with its message.
pub(crate) fn deserialize<'de, T, D>(deserializer: D) -> Result<T, ErrorText>
where
    T: de::Deserialize<'de>,
    D: de::Deserializer<'de>,
{
    let slot = Slot::new(None);
    T::deserialize(De {
        inner: deserializer,
        slot: &slot,
    })
    .map_err(|e| e.0)
}

/// The parent's error: its text.
#[derive(Debug)]
pub(crate) struct DeError(ErrorText);

impl Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Display::fmt(&self.0, f)
    }
}

impl de::StdError for DeError {}

impl de::Error for DeError {
    #[cold]
    fn custom<T: Display>(msg: T) -> Self {
        Self(text_of(&msg))
    }
}

/// An error of the wrapped deserializer: the text a deeper [`DeError`]
/// left in the slot when it crossed postcard's frames, or else the
/// wrapped deserializer's own description.
#[cold]
fn from_inner<E: Display>(e: &E, slot: &Slot) -> DeError {
    DeError(slot.take().unwrap_or_else(|| text_of(e)))
}

/// A [`DeError`] leaving through a frame whose error type is `E`: its text
/// waits in the slot.
#[cold]
fn to_outer<E: de::Error>(e: DeError, slot: &Slot) -> E {
    let outer = E::custom(&e.0);
    slot.set(Some(e.0));
    outer
}

/// A deserializer that forwards to `D` (postcard's) with [`DeError`] as
/// its error type.
struct De<'s, D> {
    inner: D,
    slot: &'s Slot,
}

/// Wraps what postcard hands a visitor or a seed, so that what a user's
/// `Deserialize` sees is a [`De`] again.
struct Wrap<'s, T> {
    inner: T,
    slot: &'s Slot,
}

impl<'s, T> Wrap<'s, T> {
    fn new(inner: T, slot: &'s Slot) -> Self {
        Self { inner, slot }
    }
}

macro_rules! forward_de {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $name<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, DeError> {
            let slot = self.slot;
            self.inner
                .$name($($arg,)* Wrap::new(visitor, slot))
                .map_err(|e| from_inner(&e, slot))
        }
    )*};
}

impl<'de, D: de::Deserializer<'de>> de::Deserializer<'de> for De<'_, D> {
    type Error = DeError;

    forward_de! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($name:ident($ty:ty);)*) => {$(
        fn $name<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            let slot = self.slot;
            self.inner.$name(v).map_err(|e| to_outer(e, slot))
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
    }

    #[cfg(feature = "alloc")]
    fn visit_string<E: de::Error>(self, v: alloc::string::String) -> Result<V::Value, E> {
        let slot = self.slot;
        self.inner.visit_string(v).map_err(|e| to_outer(e, slot))
    }

    #[cfg(feature = "alloc")]
    fn visit_byte_buf<E: de::Error>(self, v: alloc::vec::Vec<u8>) -> Result<V::Value, E> {
        let slot = self.slot;
        self.inner.visit_byte_buf(v).map_err(|e| to_outer(e, slot))
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        let slot = self.slot;
        self.inner.visit_none().map_err(|e| to_outer(e, slot))
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        let slot = self.slot;
        self.inner.visit_unit().map_err(|e| to_outer(e, slot))
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let slot = self.slot;
        self.inner
            .visit_some(De { inner: d, slot })
            .map_err(|e| to_outer(e, slot))
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let slot = self.slot;
        self.inner
            .visit_newtype_struct(De { inner: d, slot })
            .map_err(|e| to_outer(e, slot))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let slot = self.slot;
        self.inner
            .visit_seq(Wrap::new(seq, slot))
            .map_err(|e| to_outer(e, slot))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let slot = self.slot;
        self.inner
            .visit_map(Wrap::new(map, slot))
            .map_err(|e| to_outer(e, slot))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let slot = self.slot;
        self.inner
            .visit_enum(Wrap::new(data, slot))
            .map_err(|e| to_outer(e, slot))
    }
}

/// A seed handed to postcard: it deserializes through a [`De`].
struct Seed<'s, T> {
    inner: T,
    slot: &'s Slot,
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, T> {
    type Value = T::Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<T::Value, D::Error> {
        let slot = self.slot;
        self.inner
            .deserialize(De { inner: d, slot })
            .map_err(|e| to_outer(e, slot))
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Wrap<'_, A> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let slot = self.slot;
        self.inner
            .next_element_seed(Seed { inner: seed, slot })
            .map_err(|e| from_inner(&e, slot))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Wrap<'_, A> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let slot = self.slot;
        self.inner
            .next_key_seed(Seed { inner: seed, slot })
            .map_err(|e| from_inner(&e, slot))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, DeError> {
        let slot = self.slot;
        self.inner
            .next_value_seed(Seed { inner: seed, slot })
            .map_err(|e| from_inner(&e, slot))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 's, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Wrap<'s, A> {
    type Error = DeError;
    type Variant = Wrap<'s, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), DeError> {
        let slot = self.slot;
        self.inner
            .variant_seed(Seed { inner: seed, slot })
            .map(|(value, variant)| (value, Wrap::new(variant, slot)))
            .map_err(|e| from_inner(&e, slot))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Wrap<'_, A> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        let slot = self.slot;
        self.inner.unit_variant().map_err(|e| from_inner(&e, slot))
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        let slot = self.slot;
        self.inner
            .newtype_variant_seed(Seed { inner: seed, slot })
            .map_err(|e| from_inner(&e, slot))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, DeError> {
        let slot = self.slot;
        self.inner
            .tuple_variant(len, Wrap::new(visitor, slot))
            .map_err(|e| from_inner(&e, slot))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let slot = self.slot;
        self.inner
            .struct_variant(fields, Wrap::new(visitor, slot))
            .map_err(|e| from_inner(&e, slot))
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    extern crate std;

    use super::*;
    use postcard::ser_flavors::Flavor;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::vec::Vec;

    /// Fails with a custom message deep inside a structure.
    struct Deep;

    impl Serialize for Deep {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            use serde::ser::Error;
            Err(S::Error::custom(format_args!("deep failure {}", 7)))
        }
    }

    #[derive(Serialize)]
    struct Outer {
        a: u8,
        inner: Vec<Option<(u8, Deep)>>,
    }

    #[test]
    fn a_custom_message_from_any_depth_is_kept_and_the_bytes_are_postcards() {
        let value = Outer {
            a: 1,
            inner: std::vec![Some((2, Deep))],
        };
        let mut s = postcard::Serializer {
            output: postcard::ser_flavors::AllocVec::new(),
        };
        let e = serialize(&value, &mut s).unwrap_err();
        assert_eq!(e, postcard::Error::SerdeSerCustom);
        assert_eq!(ser_message(), "deep failure 7");

        // A value that succeeds writes exactly postcard's bytes.
        let ok = (
            1u32,
            "two",
            [Some(3u8), None],
            std::collections::BTreeMap::from([(4u8, 5i64)]),
        );
        let mut s = postcard::Serializer {
            output: postcard::ser_flavors::AllocVec::new(),
        };
        serialize(&ok, &mut s).unwrap();
        assert_eq!(
            s.output.finalize().unwrap(),
            postcard::to_allocvec(&ok).unwrap()
        );
    }

    #[derive(Debug, PartialEq)]
    struct Picky(u8);

    impl<'de> Deserialize<'de> for Picky {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let v = u8::deserialize(d)?;
            if v > 9 {
                return Err(de::Error::custom(format_args!("{v} is more than nine")));
            }
            Ok(Picky(v))
        }
    }

    #[derive(Debug, PartialEq, Deserialize, Serialize)]
    enum Shape {
        Many(Vec<(u8, u8)>),
    }

    fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ErrorText> {
        deserialize(&mut postcard::Deserializer::from_bytes(bytes))
    }

    #[test]
    fn a_custom_message_from_any_depth_is_kept_in_the_parent() {
        let bytes = postcard::to_allocvec(&(1u8, std::vec![Some(3u8), Some(12u8)])).unwrap();
        let e = decode::<(u8, Vec<Option<Picky>>)>(&bytes).unwrap_err();
        assert_eq!(e, "12 is more than nine");
        // postcard's own errors keep postcard's description.
        let e = decode::<bool>(&[7]).unwrap_err();
        assert_eq!(
            e,
            std::format!("{}", postcard::Error::DeserializeBadBool).as_str()
        );
        // And values decode as postcard decodes them.
        let shape = Shape::Many(std::vec![(1, 2), (3, 4)]);
        let bytes = postcard::to_allocvec(&shape).unwrap();
        assert_eq!(decode::<Shape>(&bytes), Ok(shape));
    }
}
