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
