//! `POST /act/{Command}`: every console form that changes something.
//!
//! The form's fields are the command's body (`name[]` fields make a list;
//! empty fields are left out), and the body goes to the very handler that
//! serves `POST /v1/commands/{Command}`, with the session's principal and
//! the form's idempotency key: the console adds no second path to the log,
//! and a form sent twice is applied once. A form of switches says
//! `complement=off:on`: the list `off` then holds what it lists that `on`
//! does not (every flag not ticked is switched off). A field named in a
//! `bool` field is a switch: `true` when its box is ticked, `false` when it
//! is not (an unticked box sends nothing). The answer comes back as a
//! message on the page named by `back`, read at least as fresh as the
//! command's position (`at`), so the page shows what was just done.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde_json::{Map, Value};
use shareledger_core::catalog::SiteId;

use super::layout::Flash;
use super::session::{local_path, with_cookie, Session};
use crate::commands::{self, IDEMPOTENCY_KEY};
use crate::state::AppState;

/// Form fields that steer the console and are not the command's.
const CONTROL_FIELDS: [&str; 6] = ["csrf", "key", "back", "done", "complement", "bool"];

/// Turns a form into a command's JSON body.
fn body_of(fields: &[(String, String)]) -> Map<String, Value> {
    let mut body = Map::new();
    for (name, value) in fields {
        if CONTROL_FIELDS.contains(&name.as_str()) {
            continue;
        }
        if let Some(list) = name.strip_suffix("[]") {
            let entry = body
                .entry(list.to_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let (Value::Array(items), false) = (entry, value.is_empty()) {
                items.push(Value::String(value.clone()));
            }
        } else if !value.trim().is_empty() {
            body.insert(name.clone(), Value::String(value.clone()));
        }
    }
    if let Some((off, on)) = field(fields, "complement").and_then(|c| c.split_once(':')) {
        let on: Vec<Value> = match body.get(on) {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        if let Some(Value::Array(items)) = body.get_mut(off) {
            items.retain(|v| !on.contains(v));
        }
    }
    for (_, switch) in fields.iter().filter(|(n, _)| n == "bool") {
        let on = fields
            .iter()
            .any(|(n, v)| n == switch && matches!(v.as_str(), "true" | "on"));
        body.insert(switch.clone(), Value::Bool(on));
    }
    body
}

/// The headers of a JSON body sent to an API handler, with the form's
/// idempotency key.
pub(super) fn json_headers(key: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(key) = key.and_then(|k| HeaderValue::from_str(k).ok()) {
        headers.insert(IDEMPOTENCY_KEY, key);
    }
    headers
}

/// A console form's opening: the session's CSRF token checked, and the
/// page to come back to.
pub(super) fn opened(session: &Session, fields: &[(String, String)]) -> Result<String, Response> {
    session.check_csrf(field(fields, "csrf"))?;
    Ok(local_path(field(fields, "back")))
}

/// The site a form is about (its `site_id` field), or the refusal.
pub(super) fn site_of(fields: &[(String, String)]) -> Result<SiteId, Response> {
    field(fields, "site_id")
        .and_then(|s| s.parse().ok())
        .map(SiteId)
        .ok_or_else(|| super::layout::refusal(StatusCode::BAD_REQUEST, "The form names no site."))
}

/// An API handler's answer, read: its status and body.
pub(super) async fn read_answer(answer: Response) -> (StatusCode, Bytes) {
    let status = answer.status();
    let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    (status, bytes)
}

pub(super) fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `POST /act/{command}`.
pub async fn act(
    State(state): State<AppState>,
    command: Result<Path<String>, PathRejection>,
    session: Session,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let back = match opened(&session, &fields) {
        Ok(back) => back,
        Err(refusal) => return refusal,
    };
    let Ok(Path(command)) = command else {
        return super::layout::refusal(
            StatusCode::NOT_FOUND,
            "There is no such command: the address names none the console knows.",
        );
    };
    let headers = json_headers(field(&fields, "key"));
    let body = serde_json::to_vec(&Value::Object(body_of(&fields))).unwrap_or_default();
    let answer = commands::handle(
        State(state.clone()),
        Path(command.clone()),
        session.principal.clone(),
        headers,
        Ok(Bytes::from(body)),
    )
    .await
    .unwrap_or_else(IntoResponse::into_response);
    // A refused form is filled again with what it held (its own fields,
    // when they are few enough to travel in the message's cookie).
    let kept: Vec<(String, String)> = fields
        .iter()
        .filter(|(n, v)| !CONTROL_FIELDS.contains(&n.as_str()) && !v.is_empty())
        .cloned()
        .collect();
    let small = kept.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>() <= MAX_KEPT;
    let kept = small.then(|| (command.clone(), kept));
    back_with(answer, &command, field(&fields, "done"), &back, kept).await
}

/// The most text a refused form keeps (names and values): the message
/// travels in a cookie, which browsers cap at 4 KB.
const MAX_KEPT: usize = 1024;

/// An API answer as the console's next step: its message (`done`, or the
/// problem's detail) carried to the page `back`, read at least as fresh
/// as the answer's position.
pub(super) async fn back_with(
    answer: Response,
    command: &str,
    done: Option<&str>,
    back: &str,
    kept: Option<(String, Vec<(String, String)>)>,
) -> Response {
    let (status, bytes) = read_answer(answer).await;
    let (flash, at) = if status.is_success() {
        let position = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("position").and_then(Value::as_u64));
        let text = done
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{command}: done."));
        (Flash::ok(text), position)
    } else {
        let mut flash = refused(command, status, &bytes);
        flash.kept = kept;
        (flash, None)
    };
    redirect_with(&flash, back, at)
}

/// A redirect to `back` (read at least at `at`) that carries `flash`.
pub(super) fn redirect_with(flash: &Flash, back: &str, at: Option<u64>) -> Response {
    let target = match at {
        Some(p) => {
            let sep = if back.contains('?') { '&' } else { '?' };
            format!("{back}{sep}at={p}")
        }
        None => back.to_owned(),
    };
    with_cookie(Redirect::to(&target).into_response(), &flash.cookie())
}

/// A refused command's message: the problem's detail, and an import's
/// rows to correct.
pub(super) fn refused(command: &str, status: StatusCode, bytes: &[u8]) -> Flash {
    let problem: Option<ProblemView> = serde_json::from_slice(bytes).ok();
    match problem {
        Some(p) => {
            let all = p.errors.unwrap_or_default();
            let total = all.len();
            // The rows travel in a cookie: as many as fit, and how many
            // more there are.
            let mut size = 0;
            let rows: Vec<(u32, String, String)> = all
                .into_iter()
                .map(|r| (r.line, r.field, r.reason))
                .take_while(|(_, field, reason)| {
                    size += field.len() + reason.len() + 16;
                    size <= MAX_ROWS_TEXT
                })
                .collect();
            let mut text = format!("{command} was refused: {}", in_words(&p.detail));
            if rows.len() < total {
                text.push_str(&format!(
                    " The first {} of the {total} rows to correct are listed.",
                    rows.len()
                ));
            }
            Flash {
                ok: false,
                text,
                rows,
                table: None,
                kept: None,
            }
        }
        None => Flash::error(format!(
            "{command} was refused ({})",
            status.canonical_reason().unwrap_or("error")
        )),
    }
}

/// The most text a refused import's rows may hold in the message's cookie
/// (a browser drops a cookie over 4 KB, and the message is hex-encoded).
const MAX_ROWS_TEXT: usize = 1200;

/// A body's parse error as a person filled a form: without the JSON
/// parser's place in a body they never saw, and a missing field said as a
/// required one.
pub(super) fn in_words(detail: &str) -> String {
    let detail = detail
        .strip_prefix("the body does not fit this endpoint: ")
        .unwrap_or(detail);
    let detail = match detail.rfind(" at line ") {
        Some(at)
            if detail[at + 9..]
                .split(" column ")
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            &detail[..at]
        }
        _ => detail,
    };
    match detail
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        Some(field) => format!("{} is required", field.replace('_', " ")),
        None => detail.to_owned(),
    }
}

/// The parts of a [`Problem`] the console shows.
#[derive(serde::Deserialize)]
struct ProblemView {
    detail: String,
    #[serde(default)]
    errors: Option<Vec<RowView>>,
}

#[derive(serde::Deserialize)]
struct RowView {
    line: u32,
    field: String,
    reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(raw: &[(&str, &str)]) -> Vec<(String, String)> {
        raw.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_form_becomes_the_commands_body_without_the_consoles_fields() {
        let body = body_of(&pairs(&[
            ("csrf", "x"),
            ("key", "k"),
            ("back", "/partners"),
            ("site_id", "s"),
            ("email", ""),
            ("scorecards[]", "a"),
            ("scorecards[]", "b"),
        ]));
        assert_eq!(
            Value::Object(body),
            json!({"site_id": "s", "scorecards": ["a", "b"]})
        );
    }

    #[test]
    fn a_parse_error_is_said_without_the_parsers_place() {
        assert_eq!(
            in_words(
                "the body does not fit this endpoint: missing field `name` at line 1 column 150"
            ),
            "name is required"
        );
        assert_eq!(
            in_words("the body does not fit this endpoint: email must be local@domain at line 1 column 164"),
            "email must be local@domain"
        );
        assert_eq!(
            in_words("this needs the instance_admin permission (R-CONN-1)"),
            "this needs the instance_admin permission (R-CONN-1)"
        );
    }

    #[test]
    fn switches_off_are_what_is_not_switched_on() {
        let body = body_of(&pairs(&[
            ("complement", "disable:enable"),
            ("disable[]", "a"),
            ("disable[]", "b"),
            ("disable[]", "c"),
            ("enable[]", "b"),
        ]));
        assert_eq!(
            Value::Object(body),
            json!({"disable": ["a", "c"], "enable": ["b"]})
        );
    }

    #[test]
    fn a_switch_is_true_when_ticked_and_false_when_not() {
        let ticked = body_of(&pairs(&[("bool", "listed"), ("listed", "true")]));
        assert_eq!(Value::Object(ticked), json!({"listed": true}));
        let unticked = body_of(&pairs(&[("bool", "listed"), ("site_id", "s")]));
        assert_eq!(
            Value::Object(unticked),
            json!({"listed": false, "site_id": "s"})
        );
    }

    #[test]
    fn a_refused_imports_rows_fit_the_messages_cookie() {
        let errors: Vec<Value> = (1..=500)
            .map(|line| json!({"line": line, "field": "role", "reason": "role must be one of administration, scorecard_builder, data_entry, presenter"}))
            .collect();
        let problem = json!({"detail": "2 rows are invalid", "errors": errors});
        let flash = refused(
            "ImportUsers",
            StatusCode::UNPROCESSABLE_ENTITY,
            problem.to_string().as_bytes(),
        );
        assert!(!flash.rows.is_empty() && flash.rows.len() < 500);
        assert!(flash
            .text
            .contains(&format!("The first {} of the 500 rows", flash.rows.len())));
        let cookie = flash.cookie().to_string();
        assert!(cookie.len() < 4000, "{} bytes", cookie.len());
    }

    #[test]
    fn an_empty_list_is_sent_as_an_empty_list() {
        // Edit Scorecards with every box cleared shares nothing: the list
        // must be present and empty, not missing.
        let body = body_of(&pairs(&[("scorecards[]", "")]));
        assert_eq!(Value::Object(body), json!({"scorecards": []}));
    }
}
