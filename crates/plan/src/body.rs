//! A step's action body as JSON, serialized on its own.
//!
//! Resolving a step needs only its action's body (`ssh_exec: {command: ...}`), once
//! per step run. Serializing the whole [`Step`] to a JSON object and taking one key
//! out of it builds and drops every other field on the way; this serializer walks the
//! step's fields and serializes only the one named, exactly as `serde_json::to_value`
//! would have (same `Serialize` impls, same value). It knows nothing about the
//! actions themselves, so a new action key needs nothing here.

use serde::ser::{self, Impossible, Serialize, SerializeStruct, Serializer};
use serde_json::Value;

use super::Step;

/// The body of `step`'s action, as `serde_json::to_value(step)[step.action()]` gives it
/// (`Null` when the step has no action).
pub fn action_body(step: &Step) -> Value {
    field_of(step, step.action()).unwrap_or(Value::Null)
}

/// The JSON value of the field `name` of a struct, serialized alone. `None` when the
/// field is absent (or skipped when serializing) or `value` is not a struct.
pub fn field_of<T: Serialize + ?Sized>(value: &T, name: &str) -> Option<Value> {
    value.serialize(FieldPicker { name }).ok().flatten()
}

#[derive(Debug)]
struct NotAStruct;

impl std::fmt::Display for NotAStruct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("only a struct's fields can be picked")
    }
}

impl std::error::Error for NotAStruct {}

impl ser::Error for NotAStruct {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        NotAStruct
    }
}

struct FieldPicker<'a> {
    name: &'a str,
}

struct Picking<'a> {
    name: &'a str,
    found: Option<Value>,
}

impl SerializeStruct for Picking<'_> {
    type Ok = Option<Value>;
    type Error = NotAStruct;

    fn serialize_field<V: Serialize + ?Sized>(&mut self, key: &'static str, value: &V) -> Result<(), NotAStruct> {
        if key == self.name {
            self.found = Some(serde_json::to_value(value).map_err(|_| NotAStruct)?);
        }
        Ok(())
    }

    fn end(self) -> Result<Option<Value>, NotAStruct> {
        Ok(self.found)
    }
}

macro_rules! not_a_struct {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $arg),*) -> Result<Option<Value>, NotAStruct> { Err(NotAStruct) })*
    };
}

impl<'a> Serializer for FieldPicker<'a> {
    type Ok = Option<Value>;
    type Error = NotAStruct;
    type SerializeSeq = Impossible<Option<Value>, NotAStruct>;
    type SerializeTuple = Impossible<Option<Value>, NotAStruct>;
    type SerializeTupleStruct = Impossible<Option<Value>, NotAStruct>;
    type SerializeTupleVariant = Impossible<Option<Value>, NotAStruct>;
    type SerializeMap = Impossible<Option<Value>, NotAStruct>;
    type SerializeStruct = Picking<'a>;
    type SerializeStructVariant = Impossible<Option<Value>, NotAStruct>;

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Picking<'a>, NotAStruct> {
        Ok(Picking { name: self.name, found: None })
    }

    not_a_struct!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_some<V: Serialize + ?Sized>(self, _: &V) -> Result<Option<Value>, NotAStruct> {
        Err(NotAStruct)
    }

    fn serialize_newtype_struct<V: Serialize + ?Sized>(self, _: &'static str, _: &V) -> Result<Option<Value>, NotAStruct> {
        Err(NotAStruct)
    }

    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &V,
    ) -> Result<Option<Value>, NotAStruct> {
        Err(NotAStruct)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotAStruct> {
        Err(NotAStruct)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotAStruct> {
        Err(NotAStruct)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, NotAStruct> {
        Err(NotAStruct)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotAStruct> {
        Err(NotAStruct)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotAStruct> {
        Err(NotAStruct)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotAStruct> {
        Err(NotAStruct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_what_serializing_the_whole_step_gives_for_every_action() {
        let plan = crate::Plan::parse(
            "p.yaml",
            "plan: p\ntitle: P\nparameters:\n  x: 1\ncases:\n  - id: C\n    title: C\n    scas: { spec: TS 33.117, clause: \"4.2\", test_name: C, requirement: r }\n    purpose: p\n    expected: e\n    evidence: j\n    steps:\n      - ssh_exec: { command: \"echo ${param.x}\", expect_status: 0 }\n        name: run it\n        timeout_ms: 5000\n      - console_expect: { patterns: ['\\$ $'] }\n      - console_send: { text: hi }\n      - wait: { ms: 5 }\n      - set: { a: 1, b: [x, y] }\n      - power: { action: cycle, off_ms: 100 }\n      - ssh_audit: {}\n    restore:\n      - console_run: { command: \"true\" }\n",
        )
        .expect("the plan parses");
        let case = &plan.spec.cases[0];
        for step in case.steps.iter().chain(&case.restore) {
            let whole = serde_json::to_value(step).unwrap();
            assert_eq!(action_body(step), whole[step.action()], "{}", step.action());
        }
        assert_eq!(action_body(&Step::default()), Value::Null);
        assert_eq!(field_of(&3u8, "x"), None);
    }
}
