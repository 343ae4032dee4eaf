//! The OpenAPI 3.1 document, generated from the code: the query and
//! operations routes from their `#[utoipa::path]` annotations, and one path
//! per command from the command table (`commands::catalog`). It is served
//! at `/v1/openapi.json` and committed as `docs/openapi.json`; a test fails
//! when the committed copy is stale (`cargo run -- openapi > docs/openapi.json`
//! refreshes it).
//!
//! The annotations give each route's success; its failures are stated here,
//! in one table ([`failures`]): every error a route can answer, as
//! [`ApiError`] values whose status and `code` come from
//! [`ApiError::status_and_code`], so that the document cannot drift from
//! what the server sends. Each status's problem schema lists its codes.
//! Every route that takes a token also takes a service token with
//! `ShareLedger-Act-As` (a second security requirement), and every
//! unsigned integer states its range.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use shareledger_commands::CommandError;
use shareledger_core::catalog::{
    AccessLevel, InvalidValue, Link, ObjectId, PermissionFlag, RelationshipId, ScorecardId,
    SiteCode, SiteId, UserId, Username,
};
use shareledger_core::{DomainError, RowError};
use shareledger_events::envelope::InvalidInput;
use shareledger_events::store::LogError;
use shareledger_projections::access::{AccessError, Target};
use shareledger_projections::history::HistoryError;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ContentBuilder, OpenApi as Document, PathItem, Ref, RefOr, Required, Response, ResponseBuilder,
};
use utoipa::{Modify, OpenApi};
use uuid::Uuid;

use crate::commands;
use crate::error::{ApiError, Problem};

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
        crate::changes::changes,
        crate::access_changes::access_changes,
        crate::queries::check,
        crate::queries::lookup,
        crate::queries::viewers,
        crate::queries::explain,
        crate::queries::site,
        crate::queries::connections,
        crate::queries::pending_requests,
        crate::queries::shared_scorecards,
        crate::queries::users,
        crate::queries::user,
        crate::contents::scorecards,
        crate::contents::objects,
        crate::contents::relationships,
        crate::contents::shared_with,
        crate::contents::children,
        crate::partners::directory,
        crate::partners::request_connections,
        crate::self_registration::publish,
        crate::self_registration::withdraw,
        crate::self_registration::register,
        crate::audit::check,
        crate::audit::lookup,
        crate::audit::viewers,
        crate::audit::explain,
        crate::audit::diff,
        crate::audit::site_timeline,
        crate::audit::link_timeline,
        crate::audit::scorecard_timeline,
        crate::audit::verify,
        crate::tokens::issue,
        crate::tokens::list,
        crate::tokens::revoke,
        serve,
    ),
    components(schemas(
        Problem,
        commands::CommandResult,
        commands::WrittenEvent,
        crate::queries::TargetType,
        crate::queries::LookupKind,
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
                        "An opaque token `sl_…` issued by `shareledger token issue` or `POST /v1/tokens`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "act_as",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "ShareLedger-Act-As",
                "With a service token (and only with one): the id (a UUID) of the user of \
                 its site it acts for.",
            ))),
        );
    }
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
                "A UUID (bare or quoted); re-sending it with the same body returns the first result and writes nothing; with another body it is 422 idempotency_key_reused; while the first send runs, 409 idempotency_key_in_flight.",
            ))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String).format(
                Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Uuid,
                )),
            )))
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
    add_failures(&mut doc);
    add_act_as(&mut doc);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut json = serde_json::to_value(&doc).expect("the document serializes");
    bound_unsigned_integers(&mut json);
    close_tagged_bodies(&mut json);
    serde_json::from_value(json).expect("the document deserializes")
}

/// Request bodies that are enums tagged by a field (`#[serde(tag)]`) with
/// `deny_unknown_fields`: utoipa closes structs so, not an enum's
/// variants, so each variant is closed here (`additionalProperties:
/// false`), as the server refuses unknown fields.
const TAGGED_BODIES: &[&str] = &["IssueToken"];

fn close_tagged_bodies(json: &mut serde_json::Value) {
    for name in TAGGED_BODIES {
        let variants = json["components"]["schemas"][name]["oneOf"]
            .as_array_mut()
            .unwrap_or_else(|| panic!("{name} is a oneOf"));
        for variant in variants {
            variant["additionalProperties"] = serde_json::Value::Bool(false);
        }
    }
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
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    summary = "This document (OpenAPI 3.1).",
    responses((status = 200, description = "The document.", body = Object)),
    security(("bearer" = [])))]
pub async fn serve(_caller: crate::auth::Principal) -> Json<Document> {
    Json(document())
}

/// One way a route can fail: the error it answers (its status and code are
/// [`ApiError::status_and_code`]'s), and when.
struct Failure {
    error: ApiError,
    when: &'static str,
}

fn fails(error: ApiError, when: &'static str) -> Failure {
    Failure { error, when }
}

/// The failures of every route that takes a token: the token, and
/// `ShareLedger-Act-As`.
fn token() -> Vec<Failure> {
    vec![
        fails(ApiError::Unauthenticated, "no bearer token"),
        fails(
            ApiError::BadToken,
            "a token this service did not issue, or a revoked one",
        ),
        fails(ApiError::TokenExpired, "an expired token"),
        fails(
            ApiError::Forbidden(String::new()),
            "a service token without `ShareLedger-Act-As` naming a user of its site, or \
             `ShareLedger-Act-As` with another kind of token",
        ),
        fails(
            ApiError::Database(sqlx::Error::PoolTimedOut),
            "the database did not answer (down, restarting, unreachable): retry after \
             `Retry-After`",
        ),
        fails(
            ApiError::TimedOut { after_ms: 0 },
            "the request took longer than the service's bound (`--request-timeout-ms`)",
        ),
    ]
}

fn bad_query() -> Failure {
    fails(
        ApiError::InvalidQuery(String::new()),
        "a query parameter that is missing, unknown or does not parse",
    )
}

fn bad_path() -> Failure {
    fails(
        ApiError::InvalidPath(String::new()),
        "a path parameter that is not a UUID",
    )
}

fn bad_cursor() -> Failure {
    fails(
        ApiError::Access(AccessError::BadCursor(String::new())),
        "an `after` cursor this service did not give out for this list",
    )
}

fn not_history_reader() -> Failure {
    fails(
        ApiError::Forbidden(String::new()),
        "a user's token: history is read with auditor or operator tokens",
    )
}

fn unknown_user() -> Failure {
    fails(
        ApiError::Access(AccessError::UnknownUser(UserId(Uuid::nil()))),
        "a user that does not exist (then), or that the caller may not know of",
    )
}

fn unknown_target() -> Failure {
    fails(
        ApiError::Access(AccessError::UnknownTarget(Target::Scorecard(ScorecardId(
            Uuid::nil(),
        )))),
        "a target that does not exist (then), or that the caller's site cannot see",
    )
}

fn unknown_site() -> Failure {
    fails(
        ApiError::NotFound(String::new()),
        "a site (or link) this token cannot see",
    )
}

fn future(what: &'static str) -> Failure {
    fails(
        ApiError::History(HistoryError::Future { wanted: 1, head: 0 }),
        what,
    )
}

/// `min_position` on the access index (`/v1/access/*`).
fn fresh_index() -> Vec<Failure> {
    vec![
        future("`min_position` is beyond the log's head"),
        fails(
            ApiError::Access(AccessError::NotFreshEnough {
                wanted: 1,
                reached: 0,
                waited_ms: 0,
            }),
            "the access index did not reach `min_position` within the wait (retry after \
             `Retry-After`)",
        ),
        fails(
            ApiError::Access(AccessError::Stale {
                reached: 0,
                head: 0,
                state: String::new(),
            }),
            "the access index may be behind the log (its follower is not following, or did \
             not catch up in time): no answer rather than a possibly stale one",
        ),
    ]
}

/// `min_position` on the SQL read models (`/v1/sites/*`, timelines).
fn fresh_sql() -> Vec<Failure> {
    vec![
        future("`min_position` is beyond the log's head"),
        fails(
            ApiError::NotFreshEnough {
                position: 1,
                waited_ms: 0,
            },
            "the read models did not reach `min_position` within the wait (retry after \
             `Retry-After`)",
        ),
        fails(
            ApiError::Stale {
                what: String::new(),
                reached: 0,
                head: 0,
                state: String::new(),
            },
            "the read model, or for a user's token the access index that says what the user \
             may see, may be behind the log (not following, or not caught up in time): no \
             answer rather than a possibly stale one",
        ),
    ]
}

/// Every refusal of the domain's decisions. The `match` has no wildcard:
/// a new `DomainError` does not compile until it is listed here.
fn every_domain_error() -> Vec<DomainError> {
    use DomainError::*;
    let site = SiteId(Uuid::nil());
    let user = UserId(Uuid::nil());
    let scorecard = ScorecardId(Uuid::nil());
    let object = ObjectId(Uuid::nil());
    let code = SiteCode::parse("ACME").expect("a site code");
    let link = Link {
        from: site,
        to: site,
    };
    let all = vec![
        InvalidValue(self::InvalidValue::SeatLimit),
        UnknownActor { site },
        ActorInactive,
        NotPermitted {
            needed: PermissionFlag::ManageUsers,
        },
        CrossSite {
            actor_site: site,
            target_site: site,
        },
        ConnectionsUnavailable,
        NotAnIssuer,
        SiteNotFound(site),
        SiteExists(site),
        SiteCodeTaken(code.clone()),
        UnknownSiteCode(code),
        OwnSiteCode,
        ParentCycle,
        UserNotFound(user),
        UserExists(user),
        UsernameTaken(Username::parse("ann").expect("a username")),
        UsernameLooksTaken {
            username: Username::parse("ann").expect("a username"),
            existing: Username::parse("ann").expect("a username"),
        },
        UserInactive(user),
        UserActive(user),
        SeatLimitReached { limit: 1 },
        ImportRejected(vec![RowError {
            line: 1,
            field: String::new(),
            reason: String::new(),
        }]),
        SelfRegistrationNotConfigured,
        SelfRegistrationLinkInvalid,
        ScorecardNotFound(scorecard),
        ScorecardExists(scorecard),
        ObjectNotFound(object),
        ObjectExists(object),
        NotAContainer(object),
        ContainerNotEmpty(object),
        NotAMeasure(object),
        AlreadyPlaced { object, scorecard },
        NotPlaced { object, scorecard },
        AccessLevelTooLow {
            needed: AccessLevel::Browser,
        },
        SharedContentReadOnly,
        LinkNotActive { link },
        LinkPendingOrActive { link, other: None },
        NothingToApprove,
        NothingToCancel,
        AlreadyShared(scorecard),
        NotShared(scorecard),
        ObjectNotShared(object),
        RelationshipExists,
        RelationshipNotFound(RelationshipId(Uuid::nil())),
    ];
    for e in &all {
        match e {
            InvalidValue(_)
            | UnknownActor { .. }
            | ActorInactive
            | NotPermitted { .. }
            | CrossSite { .. }
            | ConnectionsUnavailable
            | NotAnIssuer
            | SiteNotFound(_)
            | SiteExists(_)
            | SiteCodeTaken(_)
            | UnknownSiteCode(_)
            | OwnSiteCode
            | ParentCycle
            | UserNotFound(_)
            | UserExists(_)
            | UsernameTaken(_)
            | UsernameLooksTaken { .. }
            | UserInactive(_)
            | UserActive(_)
            | SeatLimitReached { .. }
            | ImportRejected(_)
            | SelfRegistrationNotConfigured
            | SelfRegistrationLinkInvalid
            | ScorecardNotFound(_)
            | ScorecardExists(_)
            | ObjectNotFound(_)
            | ObjectExists(_)
            | NotAContainer(_)
            | ContainerNotEmpty(_)
            | NotAMeasure(_)
            | AlreadyPlaced { .. }
            | NotPlaced { .. }
            | AccessLevelTooLow { .. }
            | SharedContentReadOnly
            | LinkNotActive { .. }
            | LinkPendingOrActive { .. }
            | NothingToApprove
            | NothingToCancel
            | AlreadyShared(_)
            | NotShared(_)
            | ObjectNotShared(_)
            | RelationshipExists
            | RelationshipNotFound(_) => {}
        }
    }
    all
}

/// What a command can answer besides its result.
/// A JSON body that cannot be read as one (`parse_json`).
fn bad_body() -> Vec<Failure> {
    vec![
        fails(
            ApiError::MalformedJson(String::new()),
            "a body that is not JSON, or cannot be read",
        ),
        fails(
            ApiError::UnsupportedMediaType,
            "a body that is not `application/json` (or `application/*+json`)",
        ),
        fails(
            ApiError::PayloadTooLarge { limit: 0 },
            "a body larger than the service's limit (`--body-limit`, 1 MiB by default)",
        ),
        fails(
            ApiError::UnstorableText {
                path: String::new(),
            },
            "text holding a NUL character (U+0000), which cannot be stored",
        ),
    ]
}

fn command_failures() -> Vec<Failure> {
    let mut all = with(token(), bad_body());
    all.extend([
        fails(
            ApiError::Forbidden(String::new()),
            "an auditor's token: auditors issue no commands",
        ),
        fails(
            ApiError::MissingIdempotencyKey,
            "no `Idempotency-Key` header",
        ),
        fails(
            ApiError::BadIdempotencyKey,
            "an `Idempotency-Key` that is not a UUID",
        ),
        fails(
            ApiError::InvalidBody(String::new()),
            "an unknown or missing field, a wrong type, or a value outside its schema",
        ),
        fails(
            ApiError::Command(CommandError::Log(LogError::Invalid(
                InvalidInput::EventTooLarge { size: 0 },
            ))),
            "a value that makes an event larger than the log's 64 KiB",
        ),
        fails(
            ApiError::Command(CommandError::Contended { attempts: 0 }),
            "`contended`: the streams the command needs kept changing; send it again",
        ),
        fails(
            ApiError::IdempotencyKeyReused,
            "an `Idempotency-Key` sent before with another body (or for another command)",
        ),
        fails(
            ApiError::IdempotencyKeyInFlight,
            "an `Idempotency-Key` whose first send is still running: retry after `Retry-After` \
             for its answer",
        ),
    ]);
    for e in every_domain_error() {
        let error = ApiError::Command(CommandError::Domain(e));
        let when = match error.status_and_code().0.as_u16() {
            403 => "a domain rule refuses the actor (see `code`)",
            404 => "a site, user, scorecard or object the command names does not exist",
            409 => {
                "refused by the state: something exists, is taken, is (not) active, \
                    placed, shared … (see `code`)"
            }
            _ => {
                "a value the domain refuses; for `import_rejected`, `errors` lists the \
                  CSV's bad rows by line and field"
            }
        };
        all.push(fails(error, when));
    }
    all
}

/// Every failure of the route at `path` with `method` (`get`, `post`,
/// …), under a name shared by the
/// routes that fail alike (the document's reusable responses are named
/// `<name><status>`). `None` for the anonymous probes.
///
/// # Panics
///
/// On a path this table does not know: a new route states its failures
/// here before the document can be generated.
fn failures(path: &str, method: &str) -> Option<(&'static str, Vec<Failure>)> {
    let index_stale = || {
        fails(
            ApiError::Access(AccessError::Stale {
                reached: 0,
                head: 0,
                state: String::new(),
            }),
            "a user's token while the access index that says what the user may do is behind \
             the log: no answer rather than a possibly stale one",
        )
    };
    let not_manager = || {
        fails(
            ApiError::Forbidden(String::new()),
            "an auditor's token, or a user who is not an active Instance Admin or user manager \
             of their site; a user manager issuing another kind than `user`",
        )
    };
    let failures = match (path, method) {
        ("/v1/tokens", "post") => (
            "IssueToken",
            with(
                with(token(), bad_body()),
                vec![
                    not_manager(),
                    fails(
                        ApiError::InvalidBody(String::new()),
                        "an unknown or missing field, or a value outside its schema",
                    ),
                    fails(
                        ApiError::NotFound(String::new()),
                        "a user manager naming another site, or a user not on their site",
                    ),
                    fails(
                        ApiError::Command(CommandError::Domain(DomainError::UserInactive(UserId(
                            Uuid::nil(),
                        )))),
                        "a user manager issuing a token for a deactivated user (R-USER-6)",
                    ),
                    index_stale(),
                ],
            ),
        ),
        ("/v1/tokens", _) => (
            "ListTokens",
            with(
                token(),
                vec![
                    bad_query(),
                    fails(
                        ApiError::Access(AccessError::BadCursor(String::new())),
                        "an `after` that names no token",
                    ),
                    not_manager(),
                    fails(
                        ApiError::NotFound(String::new()),
                        "a user manager naming another site",
                    ),
                    index_stale(),
                ],
            ),
        ),
        ("/v1/tokens/{token_id}", _) => (
            "RevokeToken",
            with(
                token(),
                vec![
                    bad_path(),
                    not_manager(),
                    fails(
                        ApiError::NotFound(String::new()),
                        "no such token, or one the caller may not manage",
                    ),
                    index_stale(),
                ],
            ),
        ),
        ("/v1/sites/{site_id}/self-registration-link", "post") => (
            "PublishLink",
            with(
                with(token(), bad_body()),
                with(
                    vec![fails(
                        ApiError::InvalidBody(String::new()),
                        "an unknown field, or a value outside its schema",
                    )],
                    link_command_failures(),
                ),
            ),
        ),
        ("/v1/sites/{site_id}/self-registration-link", _) => {
            ("WithdrawLink", with(token(), link_command_failures()))
        }
        ("/v1/self-registration", _) => (
            "SelfRegistration",
            with(
                bad_body(),
                vec![
                    fails(
                        ApiError::RateLimited { retry_after: 1 },
                        "too many registrations from this address (or in all) in the last \
                         minute: wait `Retry-After` seconds",
                    ),
                    fails(
                        ApiError::MissingIdempotencyKey,
                        "no `Idempotency-Key` header",
                    ),
                    fails(
                        ApiError::BadIdempotencyKey,
                        "an `Idempotency-Key` that is not a UUID",
                    ),
                    fails(
                        ApiError::InvalidBody(String::new()),
                        "an unknown or missing field, or a value outside its schema",
                    ),
                    fails(
                        ApiError::Command(CommandError::Domain(
                            DomainError::SelfRegistrationLinkInvalid,
                        )),
                        "a key no group publishes now: unknown, rotated, turned off, or \
                         self-registration switched off",
                    ),
                    fails(
                        ApiError::Command(CommandError::Domain(DomainError::SiteCodeTaken(
                            SiteCode::parse("ACME").expect("a code"),
                        ))),
                        "the site code is taken, or the username is not one a new account \
                         may have (see `code`)",
                    ),
                    fails(
                        ApiError::Command(CommandError::Contended { attempts: 0 }),
                        "`contended`: send it again",
                    ),
                ],
            ),
        ),
        _ => return single_method_failures(path),
    };
    Some(failures)
}

/// What making or withdrawing a self-registration link can answer.
fn link_command_failures() -> Vec<Failure> {
    vec![
        bad_path(),
        fails(
            ApiError::Forbidden(String::new()),
            "an auditor's token: auditors issue no commands",
        ),
        fails(
            ApiError::Command(CommandError::Domain(DomainError::NotPermitted {
                needed: shareledger_core::catalog::PermissionFlag::InstanceAdmin,
            })),
            "a user of the group who is not an Instance Admin (R-CONN-1's gate)",
        ),
        fails(
            ApiError::Command(CommandError::Domain(DomainError::CrossSite {
                actor_site: SiteId(Uuid::nil()),
                target_site: SiteId(Uuid::nil()),
            })),
            "a user of another site (R-USER-9)",
        ),
        fails(
            ApiError::Command(CommandError::Domain(DomainError::SiteNotFound(SiteId(
                Uuid::nil(),
            )))),
            "no such site",
        ),
        fails(
            ApiError::Command(CommandError::Domain(
                DomainError::SelfRegistrationNotConfigured,
            )),
            "self-registration is not on with a model user (make a key only after \
             `ConfigureSelfRegistration`)",
        ),
    ]
}

/// `base` and then `more`.
fn with(mut base: Vec<Failure>, more: Vec<Failure>) -> Vec<Failure> {
    base.extend(more);
    base
}

/// The failures of the routes with one method, by path.
fn single_method_failures(path: &str) -> Option<(&'static str, Vec<Failure>)> {
    let may_not_ask = || {
        fails(
            ApiError::Forbidden(String::new()),
            "asking about a user the caller may not ask about (only the user and their \
             site's administrators may)",
        )
    };
    let failures = match path {
        "/health" | "/ready" => return None,
        "/v1/whoami" | "/v1/openapi.json" => ("Token", token()),
        "/metrics" | "/v1/log/status" => (
            "OperatorsAndAuditors",
            with(
                token(),
                vec![fails(
                    ApiError::Forbidden(String::new()),
                    "a user's token: this is for operators and auditors",
                )],
            ),
        ),
        "/v1/audit/verify" => ("Verify", with(token(), vec![not_history_reader()])),
        "/v1/access/check" | "/v1/access/explain" => (
            "Access",
            with(
                token(),
                with(
                    vec![bad_query(), may_not_ask(), unknown_user(), unknown_target()],
                    fresh_index(),
                ),
            ),
        ),
        "/v1/access/lookup" => (
            "Lookup",
            with(
                token(),
                with(
                    vec![bad_query(), bad_cursor(), may_not_ask(), unknown_user()],
                    fresh_index(),
                ),
            ),
        ),
        "/v1/access/viewers" => (
            "Viewers",
            with(
                token(),
                with(
                    vec![
                        bad_query(),
                        fails(
                            ApiError::Forbidden(String::new()),
                            "the caller does not administer the target's owner site",
                        ),
                        unknown_target(),
                    ],
                    fresh_index(),
                ),
            ),
        ),
        "/v1/sites/{site_id}/users" => (
            "Users",
            with(
                token(),
                with(
                    vec![
                        bad_query(),
                        bad_path(),
                        bad_cursor(),
                        fails(
                            ApiError::Forbidden(String::new()),
                            "a user of the site who is neither an Instance Admin nor a user \
                             manager",
                        ),
                        unknown_site(),
                    ],
                    fresh_sql(),
                ),
            ),
        ),
        "/v1/sites/{site_id}/connections" | "/v1/sites/{site_id}/pending-requests" => (
            "LinkList",
            with(
                token(),
                with(
                    vec![
                        bad_query(),
                        bad_cursor(),
                        bad_path(),
                        fails(
                            ApiError::Forbidden(String::new()),
                            "a user of the site who is neither an Instance Admin nor a user \
                             manager",
                        ),
                        unknown_site(),
                    ],
                    fresh_sql(),
                ),
            ),
        ),
        "/v1/sites/{site_id}/users/{user_id}" => (
            "UserDetail",
            with(
                token(),
                with(
                    vec![
                        bad_query(),
                        bad_path(),
                        fails(
                            ApiError::Forbidden(String::new()),
                            "a user of the site who is neither an Instance Admin nor a user \
                             manager",
                        ),
                        fails(
                            ApiError::NotFound(String::new()),
                            "a site this token cannot see, or a user the site does not have",
                        ),
                    ],
                    fresh_sql(),
                ),
            ),
        ),
        "/v1/changes" => (
            "Changes",
            with(
                token(),
                vec![
                    bad_query(),
                    fails(
                        ApiError::Forbidden(String::new()),
                        "a user who is neither an Instance Admin nor a user manager of their site",
                    ),
                    future("`after` (or `Last-Event-ID`) is beyond the log's head"),
                    fails(
                        ApiError::Access(AccessError::Stale {
                            reached: 0,
                            head: 0,
                            state: String::new(),
                        }),
                        "a user's token while the access index that says what the user may see \
                         is behind the log",
                    ),
                ],
            ),
        ),
        "/v1/access-changes" => (
            "AccessChanges",
            with(
                token(),
                vec![
                    bad_query(),
                    fails(
                        ApiError::Forbidden(String::new()),
                        "a user who administers no site, asking for another user's changes",
                    ),
                    future("`after` is beyond the log's head"),
                    fails(
                        ApiError::Access(AccessError::Stale {
                            reached: 0,
                            head: 0,
                            state: String::new(),
                        }),
                        "a user's token while the access index that says what the user may see \
                         is behind the log",
                    ),
                    fails(
                        ApiError::Unavailable(String::new()),
                        "this process does not compute the feed (`serve --no-derived-feeds`)",
                    ),
                ],
            ),
        ),
        "/v1/directory" => (
            "Directory",
            with(token(), with(vec![bad_query(), bad_cursor()], fresh_sql())),
        ),
        "/v1/sites/{site_id}/connection-requests" => (
            "RequestConnections",
            with(
                with(token(), bad_body()),
                vec![
                    bad_path(),
                    fails(
                        ApiError::Forbidden(String::new()),
                        "an auditor's token: auditors issue no commands",
                    ),
                    fails(
                        ApiError::MissingIdempotencyKey,
                        "no `Idempotency-Key` header",
                    ),
                    fails(
                        ApiError::BadIdempotencyKey,
                        "an `Idempotency-Key` that is not a UUID",
                    ),
                    fails(
                        ApiError::InvalidBody(String::new()),
                        "an unknown or missing field, a bad code, no code, or more than 50 \
                         (each partner's own refusal is its outcome's `problem`)",
                    ),
                ],
            ),
        ),
        "/v1/sites/{site_id}/scorecards"
        | "/v1/sites/{site_id}/objects"
        | "/v1/sites/{site_id}/relationships"
        | "/v1/sites/{site_id}/shared-with"
        | "/v1/sites/{site_id}/children" => (
            "SiteList",
            with(
                token(),
                with(
                    vec![
                        fails(
                            ApiError::InvalidQuery(String::new()),
                            "a query parameter that is missing, unknown or does not parse; \
                             `limit=0`",
                        ),
                        bad_cursor(),
                        bad_path(),
                        fails(
                            ApiError::Forbidden(String::new()),
                            "a user of the site who is neither an Instance Admin nor a user \
                             manager",
                        ),
                        unknown_site(),
                    ],
                    fresh_sql(),
                ),
            ),
        ),
        "/v1/sites/{site_id}" | "/v1/sites/{site_id}/shared-scorecards" => (
            "Site",
            with(
                token(),
                with(
                    vec![
                        bad_query(),
                        bad_path(),
                        fails(
                            ApiError::Forbidden(String::new()),
                            "a user of the site who is neither an Instance Admin nor a user \
                             manager",
                        ),
                        unknown_site(),
                    ],
                    fresh_sql(),
                ),
            ),
        ),
        "/v1/audit/as-of/check" | "/v1/audit/as-of/explain" => (
            "AsOf",
            with(
                token(),
                vec![
                    bad_query(),
                    not_history_reader(),
                    unknown_user(),
                    unknown_target(),
                    future("`at_position` is beyond the log's head"),
                ],
            ),
        ),
        "/v1/audit/as-of/lookup" => (
            "AsOfLookup",
            with(
                token(),
                vec![
                    bad_query(),
                    bad_cursor(),
                    not_history_reader(),
                    unknown_user(),
                    future("`at_position` is beyond the log's head"),
                ],
            ),
        ),
        "/v1/audit/as-of/viewers" => (
            "AsOfViewers",
            with(
                token(),
                vec![
                    bad_query(),
                    not_history_reader(),
                    unknown_target(),
                    future("`at_position` is beyond the log's head"),
                ],
            ),
        ),
        "/v1/audit/diff" => (
            "Diff",
            with(
                token(),
                vec![
                    bad_query(),
                    fails(
                        ApiError::History(HistoryError::Backwards { from: 1, to: 0 }),
                        "`from` is after `to`",
                    ),
                    not_history_reader(),
                    unknown_user(),
                    unknown_target(),
                    unknown_site(),
                    future("a moment's position is beyond the log's head"),
                ],
            ),
        ),
        "/v1/audit/timeline/sites/{site_id}" | "/v1/audit/timeline/links" => (
            "Timeline",
            with(
                token(),
                with(
                    vec![
                        bad_query(),
                        bad_path(),
                        bad_cursor(),
                        not_history_reader(),
                        unknown_site(),
                    ],
                    fresh_sql(),
                ),
            ),
        ),
        "/v1/audit/timeline/scorecards/{scorecard_id}" => (
            "ScorecardTimeline",
            with(
                token(),
                with(
                    vec![
                        bad_query(),
                        bad_path(),
                        bad_cursor(),
                        not_history_reader(),
                        unknown_target(),
                    ],
                    fresh_sql(),
                ),
            ),
        ),
        command if command.starts_with("/v1/commands/") => ("Command", command_failures()),
        other => panic!("the API document does not know the failures of {other}"),
    };
    Some(failures)
}

/// The reusable response for one status of a group of failures: a
/// problem whose `status` and `code` are those the failures answer.
fn problem_response(status: u16, failures: &[&Failure]) -> Response {
    let codes: BTreeSet<&str> = failures
        .iter()
        .map(|f| f.error.status_and_code().1)
        .collect();
    let mut whens: Vec<&str> = Vec::new();
    for f in failures {
        if !whens.contains(&f.when) {
            whens.push(f.when);
        }
    }
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name("Problem"))
        .item(
            ObjectBuilder::new()
                .property(
                    "status",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .enum_values(Some([status])),
                )
                .property(
                    "code",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(codes.iter().copied())),
                ),
        );
    let mut response = ResponseBuilder::new()
        .description(format!("{reason}: {}.", whens.join("; ")))
        .content(
            "application/problem+json",
            ContentBuilder::new().schema(Some(schema)).build(),
        );
    let header = |description: &str, schema: ObjectBuilder| {
        HeaderBuilder::new()
            .schema(schema)
            .description(Some(description))
            .build()
    };
    if status == 401 {
        response = response.header(
            "WWW-Authenticate",
            header(
                "`Bearer realm=\"shareledger\"`.",
                ObjectBuilder::new().schema_type(Type::String),
            ),
        );
    }
    if status == 503 {
        response = response.header(
            "Retry-After",
            header(
                "Seconds to wait before retrying.",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9]+$")),
            ),
        );
    }
    response.build()
}

/// Replaces every route's problem responses by those of [`failures`],
/// registered once per name and status in `components/responses`.
fn add_failures(doc: &mut Document) {
    let mut reusable: BTreeMap<String, RefOr<Response>> = BTreeMap::new();
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, operation) in operations(item) {
            let Some((name, failures)) = failures(path, method) else {
                continue;
            };
            let mut by_status: BTreeMap<u16, Vec<&Failure>> = BTreeMap::new();
            for f in &failures {
                by_status
                    .entry(f.error.status_and_code().0.as_u16())
                    .or_default()
                    .push(f);
            }
            let responses = &mut operation.responses.responses;
            responses.retain(|status, _| status.starts_with('2'));
            for (status, failures) in &by_status {
                let component = format!("{name}{status}");
                reusable
                    .entry(component.clone())
                    .or_insert_with(|| problem_response(*status, failures).into());
                responses.insert(
                    status.to_string(),
                    Ref::new(format!("#/components/responses/{component}")).into(),
                );
            }
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.responses.extend(reusable);
}

/// The operations of a path item, with their methods.
fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|o| (method, o)))
}

/// Lets every route that takes a token take a service token with
/// `ShareLedger-Act-As` too: a second security requirement (both schemes),
/// since the header is a credential, valid with a service token only.
fn add_act_as(doc: &mut Document) {
    for item in doc.paths.paths.values_mut() {
        for (_, operation) in operations(item) {
            let Some(security) = operation.security.as_mut() else {
                continue;
            };
            if security.is_empty() {
                continue;
            }
            security.push(
                SecurityRequirement::new("bearer", Vec::<String>::new())
                    .add("act_as", Vec::<String>::new()),
            );
        }
    }
}

/// Gives every unsigned integer (`format` `uint8` … `uint64`, which the
/// Rust types give) its range: what the server parses is exactly that.
/// (utoipa spells these formats `u-int8` … `u-int64`; they are written the
/// usual way.)
fn bound_unsigned_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            let format = map.get("format").and_then(|f| f.as_str());
            let (max, name) = match format {
                Some("u-int8" | "uint8") => (u64::from(u8::MAX), "uint8"),
                Some("u-int16" | "uint16") => (u64::from(u16::MAX), "uint16"),
                Some("u-int32" | "uint32") => (u64::from(u32::MAX), "uint32"),
                Some("u-int64" | "uint64") => (u64::MAX, "uint64"),
                _ => (0, ""),
            };
            if !name.is_empty() {
                map.insert("format".into(), serde_json::json!(name));
                map.entry("minimum").or_insert(serde_json::json!(0));
                map.entry("maximum").or_insert(serde_json::json!(max));
            }
            for v in map.values_mut() {
                bound_unsigned_integers(v);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(bound_unsigned_integers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// One of every `ApiError` the server can answer, the domain's through
    /// [`every_domain_error`]. The `match` has no wildcard: a new variant
    /// does not compile until it is listed here, and then the test below
    /// asks for it in the table of [`failures`].
    fn every_api_error() -> Vec<ApiError> {
        use ApiError::*;
        let mut all = vec![
            Unauthenticated,
            BadToken,
            TokenExpired,
            Forbidden(String::new()),
            NotFound(String::new()),
            MalformedJson(String::new()),
            InvalidBody(String::new()),
            UnsupportedMediaType,
            PayloadTooLarge { limit: 0 },
            InvalidQuery(String::new()),
            InvalidPath(String::new()),
            MissingIdempotencyKey,
            BadIdempotencyKey,
            UnknownCommand(String::new()),
            NoRoute(String::new()),
            MethodNotAllowed,
            Command(CommandError::Contended { attempts: 0 }),
            Command(CommandError::Log(LogError::Invalid(
                InvalidInput::EventTooLarge { size: 0 },
            ))),
            Access(AccessError::UnknownUser(UserId(Uuid::nil()))),
            Access(AccessError::BadCursor(String::new())),
            Access(AccessError::NotFreshEnough {
                wanted: 1,
                reached: 0,
                waited_ms: 0,
            }),
            Access(AccessError::Stale {
                reached: 0,
                head: 0,
                state: String::new(),
            }),
            History(HistoryError::Future { wanted: 1, head: 0 }),
            History(HistoryError::Backwards { from: 1, to: 0 }),
            NotFreshEnough {
                position: 1,
                waited_ms: 0,
            },
            Stale {
                what: String::new(),
                reached: 0,
                head: 0,
                state: String::new(),
            },
            Unavailable(String::new()),
            TimedOut { after_ms: 0 },
            Database(sqlx::Error::PoolTimedOut),
            UnstorableText {
                path: String::new(),
            },
            IdempotencyKeyReused,
            IdempotencyKeyInFlight,
            RateLimited { retry_after: 1 },
            Internal(String::new()),
        ];
        all.extend(
            every_domain_error()
                .into_iter()
                .map(|e| Command(CommandError::Domain(e))),
        );
        for e in &all {
            match e {
                Unauthenticated
                | BadToken
                | TokenExpired
                | Forbidden(_)
                | NotFound(_)
                | MalformedJson(_)
                | InvalidBody(_)
                | UnsupportedMediaType
                | PayloadTooLarge { .. }
                | InvalidQuery(_)
                | InvalidPath(_)
                | MissingIdempotencyKey
                | BadIdempotencyKey
                | UnknownCommand(_)
                | NoRoute(_)
                | MethodNotAllowed
                | Command(_)
                | Access(_)
                | History(_)
                | NotFreshEnough { .. }
                | Stale { .. }
                | Unavailable(_)
                | TimedOut { .. }
                | ReadModel(_)
                | Database(_)
                | Backend(_)
                | UnstorableText { .. }
                | IdempotencyKeyReused
                | IdempotencyKeyInFlight
                | RateLimited { .. }
                | Internal(_) => {}
            }
        }
        all
    }

    /// Every status and code the server can answer is some route's, in the
    /// document; but those no route of the document answers: a path or
    /// method that is not one (`no_route`, `method_not_allowed`,
    /// `unknown_command`), `unavailable` (not produced), and `internal`
    /// (a bug, never documented).
    #[test]
    fn every_error_the_server_answers_is_in_some_routes_failures() {
        let mut doc = document();
        let mut listed = BTreeSet::new();
        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, _) in operations(item) {
                for f in failures(path, method).map(|(_, f)| f).unwrap_or_default() {
                    let (status, code) = f.error.status_and_code();
                    listed.insert((status.as_u16(), code));
                }
            }
        }
        let unlisted: Vec<_> = every_api_error()
            .iter()
            .map(|e| {
                let (status, code) = e.status_and_code();
                (status.as_u16(), code)
            })
            .filter(|(_, code)| {
                !matches!(
                    *code,
                    "no_route"
                        | "method_not_allowed"
                        | "unknown_command"
                        | "unavailable"
                        | "internal"
                )
            })
            .filter(|answer| !listed.contains(answer))
            .collect();
        assert!(
            unlisted.is_empty(),
            "answered but in no route's failures: {unlisted:?}"
        );
    }
}
