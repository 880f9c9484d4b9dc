//! Checks real responses against `docs/openapi.yaml`: the status is documented for the
//! operation, the media type matches, the body validates against the documented schema and every
//! header documented as required is present.

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde_json::Value;

/// The OpenAPI document, and which documented responses a test has seen.
#[derive(Debug)]
pub struct OpenApi {
    doc: Value,
    seen: Mutex<BTreeSet<(String, String, String)>>,
}

/// JSON Pointer escaping of one reference token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

impl OpenApi {
    /// Loads the document from the repository.
    pub fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
        let text = std::fs::read_to_string(path).expect("read docs/openapi.yaml");
        let doc: Value = serde_norway::from_str(&text).expect("docs/openapi.yaml is YAML");
        Self {
            doc,
            seen: Mutex::default(),
        }
    }

    /// Follows a local `$ref` to the pointer it names; other values are their own pointer.
    fn resolve(&self, pointer: String) -> String {
        match self
            .doc
            .pointer(&pointer)
            .and_then(|v| v.get("$ref"))
            .and_then(Value::as_str)
        {
            Some(reference) => self.resolve(reference.trim_start_matches('#').to_owned()),
            None => pointer,
        }
    }

    /// Asserts that `response`, answered to `method path_template`, has the status `expected`
    /// and is as documented.
    pub fn expect(
        &self,
        path_template: &str,
        method: &str,
        expected: u16,
        response: &http::Response<String>,
    ) {
        assert_eq!(
            response.status().as_u16(),
            expected,
            "{} {path_template}: {}",
            method.to_uppercase(),
            response.body()
        );
        self.check(path_template, method, response);
    }

    /// Asserts that `response`, answered to `method path_template`, is as documented.
    pub fn check(&self, path_template: &str, method: &str, response: &http::Response<String>) {
        let status = response.status().as_u16().to_string();
        let operation = format!("/paths/{}/{}", escape(path_template), method.to_lowercase());
        let at = format!("{method} {path_template} → {status}");
        assert!(
            self.doc.pointer(&operation).is_some(),
            "{at}: operation not documented"
        );
        let documented = self.resolve(format!("{operation}/responses/{status}"));
        let spec = self
            .doc
            .pointer(&documented)
            .unwrap_or_else(|| panic!("{at}: status not documented; body {}", response.body()));

        let content_type = response.headers()[http::header::CONTENT_TYPE]
            .to_str()
            .unwrap();
        let content = spec
            .get("content")
            .and_then(Value::as_object)
            .expect("documented content");
        assert!(
            content.contains_key(content_type),
            "{at}: undocumented media type {content_type}"
        );
        let schema_pointer = self.resolve(format!(
            "{documented}/content/{}/schema",
            escape(content_type)
        ));
        let mut schema = self.doc.clone();
        schema["$ref"] = Value::String(format!("#{schema_pointer}"));
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{at}: schema does not compile: {e}"));
        let body: Value = serde_json::from_str(response.body()).expect("a JSON body");
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{at}: body {body} does not match the schema: {errors:?}"
        );

        for (name, _) in spec
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let header = self
                .doc
                .pointer(&self.resolve(format!("{documented}/headers/{}", escape(name))));
            let required = header
                .and_then(|h| h.get("required"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if required {
                assert!(
                    response.headers().contains_key(name.as_str()),
                    "{at}: required header {name} missing"
                );
            }
        }
        self.seen
            .lock()
            .unwrap()
            .insert((path_template.to_owned(), method.to_lowercase(), status));
    }

    /// Every documented (path, method, status).
    pub fn documented(&self) -> BTreeSet<(String, String, String)> {
        let mut all = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let Some(responses) = operation.get("responses").and_then(Value::as_object) else {
                    continue;
                };
                for status in responses.keys() {
                    all.insert((path.clone(), method.clone(), status.clone()));
                }
            }
        }
        all
    }

    /// The documented responses no check has seen yet.
    pub fn unseen(&self) -> BTreeSet<(String, String, String)> {
        let seen = self.seen.lock().unwrap();
        self.documented().difference(&seen).cloned().collect()
    }
}
