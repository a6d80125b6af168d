//! The JSON shapes a client may send, held to what the API documents. serde's derive is more
//! lenient than the contract: it also takes a struct from an array of its field values in
//! order (`["default", "threat", …]`), where a field's meaning would depend on its position and
//! a client's bug would file a report with fields swapped. These helpers take an object only.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Deserialises `T`, a struct, from a JSON object only; anything else is a type error ("expected
/// an object") at its path.
pub fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_map(ObjectOnly(PhantomData))
}

/// [`object`] for an optional field: `null` (or, with `#[serde(default)]`, no field) is `None`.
pub fn optional_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_option(OptionalObject(PhantomData))
}

/// [`object`] for each item of a list.
pub fn list_of_objects<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let items = Vec::<Object<T>>::deserialize(deserializer)?;
    Ok(items.into_iter().map(|Object(item)| item).collect())
}

/// A body or field that must be an object: `Object<ReportWire>`.
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        object(deserializer).map(Object)
    }
}

struct ObjectOnly<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOnly<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

struct OptionalObject<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for OptionalObject<T> {
    type Value = Option<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object or null")
    }

    fn visit_none<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        object(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pair {
        first: String,
        #[serde(default, deserialize_with = "optional_object")]
        inner: Option<Inner>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        value: u8,
    }

    fn parse(json: &str) -> Result<Pair, String> {
        serde_json::from_str::<Object<Pair>>(json)
            .map(|Object(pair)| pair)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn objects_are_taken_as_derive_takes_them() {
        assert_eq!(
            parse(r#"{"first": "a", "inner": {"value": 7}}"#).unwrap(),
            Pair {
                first: "a".into(),
                inner: Some(Inner { value: 7 })
            }
        );
        assert_eq!(
            parse(r#"{"first": "a", "inner": null}"#).unwrap().inner,
            None
        );
        assert_eq!(parse(r#"{"first": "a"}"#).unwrap().inner, None);
        assert!(
            parse(r#"{"first": "a", "second": 1}"#)
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(
            parse(r#"{}"#)
                .unwrap_err()
                .contains("missing field `first`")
        );
    }

    #[test]
    fn a_list_takes_objects_only() {
        #[derive(Deserialize)]
        struct List {
            #[serde(deserialize_with = "list_of_objects")]
            items: Vec<Inner>,
        }
        let parsed: List =
            serde_json::from_str(r#"{"items": [{"value": 1}, {"value": 2}]}"#).unwrap();
        assert_eq!(parsed.items, [Inner { value: 1 }, Inner { value: 2 }]);
        let error = serde_json::from_str::<List>(r#"{"items": [{"value": 1}, [2]]}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("expected an object"), "{error}");
    }

    #[test]
    fn arrays_in_place_of_objects_are_type_errors() {
        // What serde's derive alone accepts.
        assert_eq!(
            serde_json::from_str::<Pair>(r#"["a", null]"#)
                .unwrap()
                .first,
            "a"
        );
        assert_eq!(
            serde_json::from_str::<Inner>("[7]").unwrap(),
            Inner { value: 7 }
        );

        for json in [
            r#"["a", null]"#,
            r#"{"first": "a", "inner": [7]}"#,
            r#""a""#,
            r#"{"first": "a", "inner": 7}"#,
        ] {
            let error = parse(json).unwrap_err();
            assert!(error.starts_with("invalid type"), "{json}: {error}");
            assert!(error.contains("expected an object"), "{json}: {error}");
        }
    }
}
