//! The OpenAPI 3.1 document, generated from the code: the query and
//! operations routes from their `#[utoipa::path]` annotations, and one path
//! per command from the command table (`commands::catalog`). It is served
//! at `/v1/openapi.json` and committed as `docs/openapi.json`; a test fails
//! when the committed copy is stale (`cargo run -- openapi > docs/openapi.json`
//! refreshes it).

use axum::Json;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, OpenApi as Document, PathItem, Ref, Required, ResponseBuilder,
};
use utoipa::{Modify, OpenApi};

use crate::commands;
use crate::error::Problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ShareLedger",
        description = "Who shares what with whom, and who can see it: commands, access questions (Q-1 to Q-4), dashboards (Q-5). Errors are RFC 9457 problem+json with a stable `code`.",
        license(name = "Apache-2.0")
    ),
    paths(
        crate::ops::health,
        crate::ops::ready,
        crate::ops::metrics,
        crate::ops::whoami,
        crate::ops::log_status,
        crate::queries::check,
        crate::queries::lookup,
        crate::queries::viewers,
        crate::queries::explain,
        crate::queries::site,
        crate::queries::connections,
        crate::queries::pending_requests,
        crate::queries::shared_scorecards,
        crate::queries::users,
        crate::audit::check,
        crate::audit::lookup,
        crate::audit::viewers,
        crate::audit::explain,
        crate::audit::diff,
        crate::audit::site_timeline,
        crate::audit::link_timeline,
        crate::audit::scorecard_timeline,
        crate::audit::verify,
    ),
    components(schemas(
        Problem,
        commands::CommandResult,
        commands::WrittenEvent,
        crate::queries::TargetType,
        crate::audit::DiffScope,
        shareledger_projections::dashboard::UserSort,
    )),
    modifiers(&Security)
)]
struct Api;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An opaque token `sl_…` issued by `shareledger token issue`.",
                    ))
                    .build(),
            ),
        );
    }
}

fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// Adds `POST /v1/commands/{Name}` for every command, and their schemas.
fn add_commands(doc: &mut Document) {
    let mut schemas = Vec::new();
    commands::schemas(&mut schemas);
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, schema) in schemas {
        components.schemas.entry(name).or_insert(schema);
    }
    for (name, summary, schema) in commands::catalog() {
        let key = ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::True)
            .description(Some(
                "A UUID; re-sending it returns the first result and writes nothing.",
            ))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String).format(
                Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Uuid,
                )),
            )))
            .build();
        let act_as = ParameterBuilder::new()
            .name("ShareLedger-Act-As")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "With a service token: the id of the user of its site it acts for.",
            ))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build();
        let result = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("CommandResult")))
                        .build(),
                )
                .build()
        };
        let operation = OperationBuilder::new()
            .operation_id(Some(name))
            .summary(Some(summary))
            .tag("commands")
            .parameter(key)
            .parameter(act_as)
            .request_body(Some(
                RequestBodyBuilder::new()
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(schema)))
                            .build(),
                    )
                    .required(Some(Required::True))
                    .build(),
            ))
            .response(
                "201",
                result("Written; `position` is the consistency token."),
            )
            .response(
                "200",
                result("The idempotency key was used before: the first send's result."),
            )
            .response(
                "400",
                problem_response("Malformed JSON, or a missing or bad Idempotency-Key."),
            )
            .response(
                "401",
                problem_response("No token, or a bad, revoked or expired one."),
            )
            .response(
                "403",
                problem_response("Not permitted (a domain rule or the token's kind)."),
            )
            .response("404", problem_response("Something named does not exist."))
            .response(
                "409",
                problem_response(
                    "Refused by the state (taken, exists, seat limit, …) or contended.",
                ),
            )
            .response("413", problem_response("The body is too large."))
            .response("415", problem_response("The body is not JSON."))
            .response(
                "422",
                problem_response("Unknown fields, wrong types or invalid values."),
            )
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .build();
        doc.paths.paths.insert(
            format!("/v1/commands/{name}"),
            PathItem::new(HttpMethod::Post, operation),
        );
    }
}

/// The whole document.
pub fn document() -> Document {
    let mut doc = Api::openapi();
    add_commands(&mut doc);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document as pretty JSON, as committed in `docs/openapi.json`.
pub fn document_json() -> String {
    let mut json = document()
        .to_pretty_json()
        .expect("the document serializes");
    json.push('\n');
    json
}

/// `GET /v1/openapi.json`: for any valid token.
pub async fn serve(_caller: crate::auth::Principal) -> Json<Document> {
    Json(document())
}
