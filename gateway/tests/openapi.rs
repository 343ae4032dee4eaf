//! The committed API document (`docs/openapi.json`) is the one the code
//! generates. `UPDATE_OPENAPI=1 cargo test -p shareledger-gateway --test
//! openapi` rewrites it; the normal run fails when it is stale.

use std::path::PathBuf;

fn committed() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

#[test]
fn docs_openapi_json_is_the_generated_document() {
    let generated = shareledger_gateway::openapi::document_json();
    let path = committed();
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} cannot be read ({e}): run `UPDATE_OPENAPI=1 cargo test -p shareledger-gateway --test openapi`",
            path.display()
        )
    });
    assert!(
        on_disk == generated,
        "docs/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test -p shareledger-gateway --test openapi` and commit it"
    );
}

#[test]
fn the_document_has_a_post_path_for_every_command() {
    let doc: serde_json::Value =
        serde_json::from_str(&shareledger_gateway::openapi::document_json()).expect("JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for name in shareledger_gateway::commands::NAMES {
        let operation = &doc["paths"][format!("/v1/commands/{name}")]["post"];
        assert_eq!(operation["operationId"], serde_json::json!(name));
        let schema = &operation["requestBody"]["content"]["application/json"]["schema"]["$ref"];
        let schema = schema.as_str().expect("a body schema");
        let schema_name = schema.rsplit('/').next().unwrap();
        assert!(
            doc["components"]["schemas"][schema_name].is_object(),
            "{name}: {schema}"
        );
        for status in ["200", "201", "400", "401", "403", "413", "415", "422"] {
            assert!(
                operation["responses"][status].is_object(),
                "{name}: {status}"
            );
        }
    }
}

/// The generated document as JSON.
fn generated() -> serde_json::Value {
    serde_json::from_str(&shareledger_gateway::openapi::document_json()).expect("JSON")
}

/// Every `$ref` anywhere in `value`, with the JSON path it was found at.
fn refs<'a>(value: &'a serde_json::Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", serde_json::Value::String(r)) => out.push((at.clone(), r)),
                    _ => refs(v, format!("{at}/{key}"), out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_reference_resolves_within_the_document() {
    let doc = generated();
    let mut found = Vec::new();
    refs(&doc, String::new(), &mut found);
    assert!(found.len() > 100, "the document refers to its components");
    let dangling: Vec<_> = found
        .iter()
        .filter(|(_, r)| {
            // Local JSON pointers only: `#/components/schemas/Name`.
            let Some(pointer) = r.strip_prefix('#') else {
                return true;
            };
            doc.pointer(pointer).is_none()
        })
        .collect();
    assert!(dangling.is_empty(), "dangling references: {dangling:#?}");
}

/// The `{name}`s of a path template.
fn template_names(path: &str) -> std::collections::BTreeSet<&str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

#[test]
fn path_parameters_are_exactly_the_templates_names_and_the_rest_are_query_or_header() {
    let doc = generated();
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() > 30);
    for (path, item) in paths {
        let names = template_names(path);
        for (method, operation) in item.as_object().expect("a path item") {
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut in_path = std::collections::BTreeSet::new();
            let mut seen = std::collections::BTreeSet::new();
            for p in &parameters {
                let name = p["name"].as_str().expect("a name");
                let place = p["in"].as_str().expect("an `in`");
                assert!(
                    seen.insert((name.to_owned(), place.to_owned())),
                    "{method} {path}: {name} in {place} twice"
                );
                match place {
                    "path" => {
                        assert!(
                            names.contains(name),
                            "{method} {path}: path parameter {name} is not in the template"
                        );
                        assert_eq!(
                            p["required"],
                            serde_json::json!(true),
                            "{method} {path}: {name}"
                        );
                        in_path.insert(name);
                    }
                    "query" | "header" => {}
                    other => panic!("{method} {path}: {name} in {other}"),
                }
            }
            assert_eq!(
                in_path, names,
                "{method} {path}: every name of the template is a path parameter"
            );
        }
    }
}

#[test]
fn every_secured_route_answers_401_and_403_and_errors_are_problems() {
    let doc = generated();
    let responses = &doc["components"]["responses"];
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            let answers = operation["responses"].as_object().expect("responses");
            if secured {
                for status in ["401", "403"] {
                    assert!(answers.contains_key(status), "{method} {path}: no {status}");
                }
            }
            assert!(
                answers.keys().any(|s| s.starts_with('2')),
                "{method} {path}: no success"
            );
            for (status, response) in answers {
                if status.starts_with('2') || path == "/ready" {
                    continue;
                }
                // Inline, or a reusable response of components/responses.
                let response = match response["$ref"].as_str() {
                    Some(r) => &responses[r.rsplit('/').next().unwrap()],
                    None => response,
                };
                let content = &response["content"];
                assert!(
                    content["application/problem+json"].is_object(),
                    "{method} {path}: {status} is not problem+json: {response}"
                );
                assert_eq!(
                    content.as_object().map(|c| c.len()),
                    Some(1),
                    "{method} {path}: {status} has one media type"
                );
            }
        }
    }
}
