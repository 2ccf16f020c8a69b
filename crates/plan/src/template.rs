//! `${...}` references in plan values.
//!
//! A plan says `${audit.ciphers}` or `${device.declared.open_tcp_ports}` rather than
//! hard-coding values, so one plan runs on any vendor's device. A string that is
//! exactly one reference takes the referenced value with its type (a list stays a
//! list); references inside a longer string are interpolated as text.

use serde_json::Value;

/// A `${...}` reference found in a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The dotted path, e.g. `audit.ciphers` or `ports[0]`.
    pub path: String,
    /// Byte range of `${...}` in the string.
    pub start: usize,
    pub end: usize,
}

impl Reference {
    /// The first segment: `param`, `device`, or a capture name.
    pub fn root(&self) -> &str {
        self.path.split(['.', '[']).next().unwrap_or("")
    }
}

/// Every reference in a string, or the position of an unclosed `${`.
pub fn references(text: &str) -> Result<Vec<Reference>, usize> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("${") {
        let start = from + found;
        let Some(close) = text[start..].find('}') else { return Err(start) };
        let end = start + close + 1;
        out.push(Reference { path: text[start + 2..end - 1].trim().to_string(), start, end });
        from = end;
    }
    Ok(out)
}

/// Every reference in a JSON value (strings anywhere inside it).
pub fn references_in_value(value: &Value) -> Result<Vec<Reference>, usize> {
    let mut out = Vec::new();
    match value {
        Value::String(s) => out.extend(references(s)?),
        Value::Array(items) => {
            for item in items {
                out.extend(references_in_value(item)?);
            }
        }
        Value::Object(map) => {
            for item in map.values() {
                out.extend(references_in_value(item)?);
            }
        }
        _ => {}
    }
    Ok(out)
}

/// Look a dotted path up in a JSON scope.
pub fn lookup<'a>(scope: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = scope;
    for segment in path.split('.') {
        let (name, indexes) = match segment.find('[') {
            Some(at) => (&segment[..at], &segment[at..]),
            None => (segment, ""),
        };
        if !name.is_empty() {
            current = current.get(name)?;
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            let i: usize = index.trim_end_matches(']').parse().ok()?;
            current = current.get(i)?;
        }
    }
    Some(current)
}

/// Why a reference could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`${{{path}}}` refers to nothing{}", if known.is_empty() { String::new() } else { format!(" (known here: {known})") })]
pub struct Unresolved {
    pub path: String,
    pub known: String,
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Resolve every reference in a string against `scope`.
pub fn resolve_str(text: &str, scope: &Value) -> Result<Value, Unresolved> {
    let refs = references(text).map_err(|_| Unresolved { path: text.to_string(), known: String::new() })?;
    let find = |r: &Reference| {
        lookup(scope, &r.path).ok_or_else(|| Unresolved {
            path: r.path.clone(),
            known: scope.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default(),
        })
    };
    if refs.len() == 1 && refs[0].start == 0 && refs[0].end == text.len() {
        return find(&refs[0]).cloned();
    }
    let mut out = String::new();
    let mut last = 0;
    for r in &refs {
        out.push_str(&text[last..r.start]);
        out.push_str(&text_of(find(r)?));
        last = r.end;
    }
    out.push_str(&text[last..]);
    Ok(Value::String(out))
}

/// Resolve every reference inside a JSON value.
pub fn resolve_value(value: &Value, scope: &Value) -> Result<Value, Unresolved> {
    Ok(match value {
        Value::String(s) => resolve_str(s, scope)?,
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve_value(v, scope)).collect::<Result<_, _>>()?),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| Ok((k.clone(), resolve_value(v, scope)?))).collect::<Result<_, Unresolved>>()?)
        }
        other => other.clone(),
    })
}

/// [`resolve_value`] in place: only the strings that hold a reference are replaced,
/// everything else is left as it is (no copy of the value is built).
pub fn resolve_in_place(value: &mut Value, scope: &Value) -> Result<(), Unresolved> {
    match value {
        Value::String(s) if s.contains("${") => {
            let resolved = resolve_str(s, scope)?;
            *value = resolved;
        }
        Value::Array(items) => {
            for item in items {
                resolve_in_place(item, scope)?;
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                resolve_in_place(item, scope)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Resolve a string and require text as the result.
pub fn resolve_text(text: &str, scope: &Value) -> Result<String, Unresolved> {
    resolve_str(text, scope).map(|v| text_of(&v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_whole_reference_keeps_its_type_and_partial_ones_interpolate() {
        let scope = json!({"audit": {"ciphers": ["a", "b"]}, "param": {"user": "root", "port": 22}});
        assert_eq!(resolve_str("${audit.ciphers}", &scope).unwrap(), json!(["a", "b"]));
        assert_eq!(resolve_str("ssh ${param.user}@host -p ${param.port}", &scope).unwrap(), json!("ssh root@host -p 22"));
        assert_eq!(resolve_str("${audit.ciphers[1]}", &scope).unwrap(), json!("b"));
        assert_eq!(resolve_str("no refs", &scope).unwrap(), json!("no refs"));
    }

    #[test]
    fn resolving_in_place_gives_what_resolving_a_copy_gives() {
        let scope = json!({"audit": {"ciphers": ["a", "b"]}, "param": {"user": "root", "port": 22}});
        for value in [
            json!({"command": "ssh ${param.user}@host -p ${param.port}", "list": "${audit.ciphers}", "n": 3, "plain": "x"}),
            json!(["${param.port}", {"deep": ["${audit.ciphers[0]}", null, true]}, "no refs"]),
            json!({"a": "${nothing.here}", "b": "${param.user}"}),
            json!({"a": "x ${oops", "b": "${param.user}"}),
            json!("${param.user}"),
        ] {
            let mut in_place = value.clone();
            let result = resolve_in_place(&mut in_place, &scope).map(|()| in_place);
            assert_eq!(result, resolve_value(&value, &scope), "{value}");
        }
    }

    #[test]
    fn unknown_references_say_what_is_known() {
        let scope = json!({"param": {}, "device": {}});
        let err = resolve_str("${audt.ciphers}", &scope).unwrap_err();
        assert_eq!(err.path, "audt.ciphers");
        assert!(err.to_string().contains("param"));
        assert_eq!(references("x ${oops"), Err(2));
    }
}
