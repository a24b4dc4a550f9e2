//! One rule for every payload: JSON with a key twice in one object is refused, naming the
//! key's path. serde's derived structs refuse a repeated field, but a payload read as a
//! `Value` keeps the last one silently: two senders' readings of the same body would then
//! differ, and a guard that checked the first value could be passed by the second.

use super::IngestError;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Walks a JSON document, refusing an object with a repeated key.
struct UniqueKeys;

impl<'de> de::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(DuplicateKey(key)));
            }
            map.next_value_seed(Nested)?;
        }
        Ok(UniqueKeys)
    }
}

struct Nested;

impl<'de> DeserializeSeed<'de> for Nested {
    type Value = UniqueKeys;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<UniqueKeys, D::Error> {
        d.deserialize_any(UniqueKeysVisitor)
    }
}

struct DuplicateKey(String);

impl fmt::Display for DuplicateKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{DUPLICATE}{}", self.0)
    }
}

const DUPLICATE: &str = "duplicate key: ";

/// Refuses a body with a key twice in one object (400 naming the key's path), and
/// reports malformed JSON with the parser's position.
pub(crate) fn check_unique_keys(body: &[u8]) -> Result<(), IngestError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, UniqueKeys>(&mut de) {
        Ok(_) => de.end().map_err(|e| IngestError::Malformed(e.to_string())),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.to_string();
            match msg.find(DUPLICATE) {
                Some(i) => {
                    let rest = &msg[i + DUPLICATE.len()..];
                    let key = rest.find(" at line ").map_or(rest, |j| &rest[..j]);
                    let field = if path.is_empty() || path == "." {
                        key.to_string()
                    } else {
                        format!("{path}.{key}")
                    };
                    Err(IngestError::invalid(
                        &field,
                        "appears twice in one object; send each key once",
                    ))
                }
                None => Err(IngestError::Malformed(msg)),
            }
        }
    }
}

/// Parses a body as a JSON value under the one rule for repeated keys.
pub(crate) fn value(body: &[u8]) -> Result<serde_json::Value, IngestError> {
    check_unique_keys(body)?;
    serde_json::from_slice(body).map_err(|e| IngestError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(body: &str) -> Result<(), String> {
        check_unique_keys(body.as_bytes()).map_err(|e| match e {
            IngestError::Invalid { field, .. } => field,
            IngestError::Malformed(m) => format!("malformed: {m}"),
        })
    }

    #[test]
    fn a_repeated_key_is_refused_with_its_path_at_any_depth() {
        assert_eq!(field(r#"{"a":1,"b":{"c":[1,{"d":2}]}}"#), Ok(()));
        assert_eq!(field(r#"{"a":1,"a":2}"#), Err("a".into()));
        assert_eq!(
            field(r#"{"build":{"number":1,"number":2}}"#),
            Err("build.number".into())
        );
        assert_eq!(
            field(r#"{"queueCauses":[{"type":"x"},{"type":"y","type":"z"}]}"#),
            Err("queueCauses[1].type".into())
        );
        // The same key in two objects is no repeat.
        assert_eq!(field(r#"[{"a":1},{"a":1}]"#), Ok(()));
        assert!(field(r#"{"a":1"#).unwrap_err().starts_with("malformed"));
        assert!(field(r#"{"a":1} x"#).unwrap_err().starts_with("malformed"));
    }
}
