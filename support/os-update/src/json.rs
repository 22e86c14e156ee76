//! Reading untrusted JSON defensively: a nesting bound checked before anything is parsed, and
//! maps that refuse a repeated key (which `serde_json` would otherwise resolve silently to the
//! last one, so two readers of one signed manifest could see two different file lists).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// Whether no object or array in `bytes` nests deeper than `max` (`{}` is 1). Strings are
/// skipped with their escapes; the bytes need not be valid JSON (the parser decides that).
pub(crate) fn nesting_within(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Deserializes a JSON object into a map, refusing a key that appears twice.
pub(crate) fn unique_map<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    deserializer.deserialize_map(UniqueMap(PhantomData))
}

/// [`unique_map`] of an optional (absent or `null`) object; absent is empty.
pub(crate) fn optional_unique_map<'de, D, V>(
    deserializer: D,
) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Wrapper<V>(BTreeMap<String, V>);
    impl<'de, V: Deserialize<'de>> Deserialize<'de> for Wrapper<V> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            unique_map(deserializer).map(Wrapper)
        }
    }
    Ok(Option::<Wrapper<V>>::deserialize(deserializer)?
        .map(|wrapper| wrapper.0)
        .unwrap_or_default())
}

/// A list of objects, each read with [`unique_map`].
pub(crate) fn unique_maps<'de, D, V>(deserializer: D) -> Result<Vec<BTreeMap<String, V>>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Wrapper<V>(BTreeMap<String, V>);
    impl<'de, V: Deserialize<'de>> Deserialize<'de> for Wrapper<V> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            unique_map(deserializer).map(Wrapper)
        }
    }
    Ok(Vec::<Wrapper<V>>::deserialize(deserializer)?
        .into_iter()
        .map(|wrapper| wrapper.0)
        .collect())
}

struct UniqueMap<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueMap<V> {
    type Value = BTreeMap<String, V>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object without repeated keys")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = BTreeMap::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "key `{key}` appears twice"
                )));
            }
            let value = access.next_value()?;
            map.insert(key, value);
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_counts_containers_outside_strings() {
        assert!(nesting_within(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(!nesting_within(br#"{"a":[1,{"b":2}]}"#, 2));
        assert!(nesting_within(br#"{"a":"[[[[{{{{\"[["}"#, 1));
        assert!(!nesting_within(&[b'['; 100], 99));
    }

    #[derive(Debug, serde::Deserialize)]
    struct Holder {
        #[serde(deserialize_with = "unique_map")]
        map: BTreeMap<String, u8>,
        #[serde(default, deserialize_with = "optional_unique_map")]
        optional: BTreeMap<String, u8>,
    }

    #[test]
    fn a_repeated_key_is_refused() {
        let ok: Holder = serde_json::from_str(r#"{"map":{"a":1,"b":2},"optional":null}"#).unwrap();
        assert_eq!(ok.map.len(), 2);
        assert!(ok.optional.is_empty());
        let error = serde_json::from_str::<Holder>(r#"{"map":{"a":1,"a":2}}"#).unwrap_err();
        assert!(error.to_string().contains("`a` appears twice"), "{error}");
        assert!(serde_json::from_str::<Holder>(r#"{"map":{},"optional":{"x":1,"x":1}}"#).is_err());
    }
}
