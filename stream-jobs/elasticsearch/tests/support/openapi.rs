//! A checker of requests and responses against Elastic's OpenAPI document of the Elasticsearch REST
//! API (`spec/elasticsearch-serverless-openapi.json.zst`, vendored unchanged).
//!
//! It is stricter than the document in one way, on purpose: an object schema with `properties`
//! and no `additionalProperties` is treated as **closed**, so a misspelt key is an error (the
//! document leaves objects open, which would let any typo through). `allOf` members are merged
//! before that check; `oneOf`/`anyOf` pass when one alternative passes, and a `discriminator`
//! picks its alternative by name.

#![allow(dead_code, unreachable_pub)]

use std::io::Read;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// SHA-256 of the uncompressed document (see `spec/README.md`).
pub const SPEC_SHA256: &str = "1bfcf1de99b4581814d75ed572fd69e7e1e355c6198777529848be8d6c5e5aa4";

pub struct Spec {
    root: Value,
}

impl Spec {
    /// Loads the vendored document and checks its hash.
    pub fn load() -> Spec {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/spec/elasticsearch-serverless-openapi.json.zst"
        );
        let file = std::fs::File::open(path).unwrap_or_else(|error| panic!("{path}: {error}"));
        let mut text = Vec::new();
        zstd::Decoder::new(file)
            .and_then(|mut decoder| decoder.read_to_end(&mut text))
            .unwrap_or_else(|error| panic!("{path}: {error}"));
        let digest: String = Sha256::digest(&text).iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(digest, SPEC_SHA256, "{path} is not the vendored document");
        Spec {
            root: serde_json::from_slice(&text).expect("the OpenAPI document is JSON"),
        }
    }

    pub fn paths(&self) -> impl Iterator<Item = &String> {
        self.root["paths"]
            .as_object()
            .into_iter()
            .flat_map(|paths| paths.keys())
    }

    /// The operation of `method` (lower case) on a concrete `path`: the template with the most
    /// literal segments that matches.
    pub fn operation(&self, method: &str, path: &str) -> Result<&Value, String> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut best: Option<(usize, &Value)> = None;
        for (template, item) in self.root["paths"].as_object().into_iter().flatten() {
            let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
            if parts.len() != segments.len() {
                continue;
            }
            let mut literal = 0;
            let matches = parts.iter().zip(&segments).all(|(part, segment)| {
                if part.starts_with('{') && part.ends_with('}') {
                    !segment.is_empty()
                } else {
                    literal += 1;
                    part == segment
                }
            });
            if matches && best.is_none_or(|(count, _)| literal > count) {
                best = Some((literal, item));
            }
        }
        let (_, item) = best.ok_or_else(|| format!("no path of the API matches {path}"))?;
        item.get(method.to_ascii_lowercase())
            .ok_or_else(|| format!("{path} has no {method} operation"))
    }

    fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        while let Some(reference) = value.get("$ref").and_then(Value::as_str) {
            value = self.pointer(reference);
        }
        value
    }

    /// Checks method, path, query parameter names and enum values, and a JSON body.
    pub fn check_request(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Vec<String> {
        let operation = match self.operation(method, path) {
            Ok(operation) => operation,
            Err(error) => return vec![error],
        };
        let mut errors = Vec::new();
        let parameters: Vec<&Value> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|parameter| self.resolve(parameter))
            .filter(|parameter| parameter["in"] == "query")
            .collect();
        for (name, value) in query {
            match parameters.iter().find(|parameter| parameter["name"] == name.as_str()) {
                None => errors.push(format!("{method} {path}: no query parameter {name:?}")),
                Some(parameter) => {
                    let schema = self.resolve(&parameter["schema"]);
                    let as_json = serde_json::from_str(value).unwrap_or(Value::String(value.clone()));
                    let mut found = Vec::new();
                    self.check(schema, &as_json, &format!("?{name}"), &mut found);
                    let mut as_string = Vec::new();
                    self.check(
                        schema,
                        &Value::String(value.clone()),
                        &format!("?{name}"),
                        &mut as_string,
                    );
                    if !found.is_empty() && !as_string.is_empty() {
                        errors.extend(found);
                    }
                }
            }
        }
        if let Some(body) = body {
            let Some(schema) = self.body_schema(operation) else {
                errors.push(format!("{method} {path} takes no body"));
                return errors;
            };
            self.check(schema, body, "body", &mut errors);
        }
        errors
    }

    /// The `application/json` schema of an operation's request body.
    pub fn body_schema<'a>(&'a self, operation: &'a Value) -> Option<&'a Value> {
        let body = self.resolve(operation.get("requestBody")?);
        let content = &body["content"];
        let schema = content
            .get("application/json")
            .or_else(|| content.get("application/x-ndjson"))?;
        Some(&schema["schema"])
    }

    /// The schema of the `status` response of an operation.
    pub fn response_schema<'a>(&'a self, operation: &'a Value, status: u16) -> Option<&'a Value> {
        let response = self.resolve(operation["responses"].get(status.to_string())?);
        Some(&response["content"]["application/json"]["schema"])
    }

    /// Checks `value` against the named component schema (`_global.bulk.OperationContainer`).
    pub fn check_named(&self, name: &str, value: &Value) -> Vec<String> {
        let schema = &self.root["components"]["schemas"][name];
        assert!(!schema.is_null(), "no schema {name}");
        let mut errors = Vec::new();
        self.check(schema, value, name, &mut errors);
        errors
    }

    pub fn check(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        self.check_inner(schema, value, at, errors, true);
    }

    fn check_inner(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>, closed: bool) {
        let schema = self.resolve(schema);
        if value.is_null() && schema["nullable"] == true {
            return;
        }
        if let Some(members) = schema["allOf"].as_array() {
            for member in members {
                self.check_inner(member, value, at, errors, false);
            }
            if closed {
                self.check_closed(schema, value, at, errors);
            }
        }
        let alternatives = schema["oneOf"].as_array().or_else(|| schema["anyOf"].as_array());
        if let Some(alternatives) = alternatives {
            if let Some(chosen) = self.discriminated(schema, value) {
                match chosen {
                    Ok(alternative) => self.check_inner(alternative, value, at, errors, true),
                    Err(error) => errors.push(format!("{at}: {error}")),
                }
            } else {
                let mut best: Option<Vec<String>> = None;
                for alternative in alternatives {
                    let mut found = Vec::new();
                    self.check_inner(alternative, value, at, &mut found, true);
                    if found.is_empty() {
                        best = None;
                        break;
                    }
                    if best.as_ref().is_none_or(|seen| found.len() < seen.len()) {
                        best = Some(found);
                    }
                }
                if let Some(found) = best {
                    errors.push(format!("{at}: matches no alternative; nearest: {}", found.join("; ")));
                }
            }
        }
        if let Some(options) = schema["enum"].as_array() {
            if !options.contains(value) {
                errors.push(format!("{at}: {value} is not one of {}", Value::Array(options.clone())));
            }
        }
        match schema["type"].as_str() {
            Some("object") => {
                let Some(object) = value.as_object() else {
                    errors.push(format!("{at}: expected an object, got {value}"));
                    return;
                };
                if let Some(required) = schema["required"].as_array() {
                    for name in required.iter().filter_map(Value::as_str) {
                        if !object.contains_key(name) {
                            errors.push(format!("{at}: missing required {name:?}"));
                        }
                    }
                }
                let properties = schema["properties"].as_object();
                for (key, item) in object {
                    if let Some(property) = properties.and_then(|properties| properties.get(key)) {
                        self.check_inner(property, item, &format!("{at}.{key}"), errors, true);
                    } else if let Some(extra) = schema
                        .get("additionalProperties")
                        .filter(|extra| extra.is_object() && !is_plain_object(self.resolve(extra)))
                    {
                        // A bare {"type": "object"} here is how the document renders
                        // UserDefinedValue (any JSON, as in `_meta`): it constrains nothing.
                        self.check_inner(extra, item, &format!("{at}.{key}"), errors, true);
                    }
                }
                if closed && schema.get("allOf").is_none() {
                    self.check_closed(schema, value, at, errors);
                }
                // A variant container ("exactly one of these kinds") is merged with common keys
                // by allOf: its key count is over its own properties only.
                let count = match properties {
                    Some(properties) => object.keys().filter(|key| properties.contains_key(*key)).count() as u64,
                    None => object.len() as u64,
                };
                if schema["minProperties"].as_u64().is_some_and(|min| count < min) {
                    errors.push(format!("{at}: fewer than {} keys", schema["minProperties"]));
                }
                if schema["maxProperties"].as_u64().is_some_and(|max| count > max) {
                    errors.push(format!("{at}: more than {} keys", schema["maxProperties"]));
                }
            }
            Some("array") => match value.as_array() {
                None => errors.push(format!("{at}: expected an array, got {value}")),
                Some(items) => {
                    for (position, item) in items.iter().enumerate() {
                        self.check_inner(&schema["items"], item, &format!("{at}[{position}]"), errors, true);
                    }
                }
            },
            Some("string") if !value.is_string() => errors.push(format!("{at}: expected a string, got {value}")),
            Some("number") if !value.is_number() => errors.push(format!("{at}: expected a number, got {value}")),
            Some("integer") if !(value.is_i64() || value.is_u64()) => {
                errors.push(format!("{at}: expected an integer, got {value}"))
            }
            Some("boolean") if !value.is_boolean() => errors.push(format!("{at}: expected a boolean, got {value}")),
            _ => {}
        }
    }

    /// The alternative a discriminator names, if the schema has one.
    fn discriminated(&self, schema: &Value, value: &Value) -> Option<Result<&Value, String>> {
        let discriminator = schema.get("discriminator")?;
        let property = discriminator["propertyName"].as_str()?;
        let name = value.get(property).and_then(Value::as_str)?;
        Some(match discriminator["mapping"].get(name).and_then(Value::as_str) {
            Some(reference) => Ok(self.pointer(reference)),
            None => Err(format!("{property} {name:?} is not a known kind")),
        })
    }

    fn pointer(&self, reference: &str) -> &Value {
        let mut node = &self.root;
        for part in reference.trim_start_matches("#/").split('/') {
            node = &node[part];
        }
        assert!(!node.is_null(), "dangling reference {reference}");
        node
    }

    /// Collects the property names an object schema allows, merged over `allOf`. The answer is
    /// [`Closure::Open`] if any part takes other keys (additional properties, alternatives),
    /// [`Closure::Closed`] if some part lists properties, and [`Closure::Neutral`] if no part
    /// says anything (a bare `{"type": "object"}`, an empty base type).
    fn allowed(&self, schema: &Value, names: &mut Map<String, Value>) -> Closure {
        let schema = self.resolve(schema);
        let open_extra = schema.get("additionalProperties").is_some_and(|extra| extra != false);
        if open_extra || schema["oneOf"].is_array() || schema["anyOf"].is_array() {
            return Closure::Open;
        }
        let mut closure = Closure::Neutral;
        if let Some(properties) = schema["properties"].as_object() {
            closure = Closure::Closed;
            for key in properties.keys() {
                names.insert(key.clone(), Value::Null);
            }
        }
        for member in schema["allOf"].as_array().into_iter().flatten() {
            match self.allowed(member, names) {
                Closure::Open => return Closure::Open,
                Closure::Closed => closure = Closure::Closed,
                Closure::Neutral => {}
            }
        }
        closure
    }

    fn check_closed(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let Some(object) = value.as_object() else {
            return;
        };
        let mut names = Map::new();
        if self.allowed(schema, &mut names) != Closure::Closed {
            return;
        }
        for key in object.keys() {
            if !names.contains_key(key) {
                errors.push(format!("{at}: unknown key {key:?}"));
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closure {
    Open,
    Closed,
    Neutral,
}

/// `{"type": "object"}` without properties: adds no names and does not open the object.
fn is_plain_object(schema: &Value) -> bool {
    schema["type"] == "object" && schema.get("properties").is_none() && schema.get("additionalProperties").is_none()
}
