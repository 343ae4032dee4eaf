//! The Partner Portal's self-registration page (seed 003, R-ONB-2): the
//! address a group publishes (`/register?key=…`), where a partner, with
//! no account yet, registers its organisation and first manager.
//!
//! The form goes to the API's own `POST /v1/self-registration` handler
//! (its rate limits, its checks, its one command), so the page adds no
//! second path to the log. The link key is the only credential: no
//! session, no cookie is involved, so there is nothing for another site to
//! forge. A refused registration shows the form again with what was typed
//! and the reason beside it; a registration made shows the manager's first
//! token once, and signs in with it at a click.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, Extensions, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::act::{in_words, json_headers, read_answer};
use super::layout::{self, Flash};
use crate::self_registration::{self, LinkGroup};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct RegisterQuery {
    key: Option<String>,
}

/// What the form holds (kept when a registration is refused).
#[derive(Debug, Default, Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    key: String,
    /// The registration's idempotency key: the same form sent twice
    /// registers once.
    #[serde(default)]
    attempt: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    manager_username: String,
    #[serde(default)]
    manager_name: String,
    #[serde(default)]
    manager_email: String,
}

/// `GET /register?key=…`.
pub async fn page(
    State(state): State<AppState>,
    q: Result<Query<RegisterQuery>, QueryRejection>,
) -> Response {
    let key = q.ok().and_then(|Query(q)| q.key).unwrap_or_default();
    match self_registration::group_of(&state, key.trim()).await {
        Ok(Some(group)) => form_page(
            &group,
            &RegisterForm {
                key: key.trim().to_owned(),
                attempt: uuid::Uuid::new_v4().to_string(),
                ..RegisterForm::default()
            },
            None,
            StatusCode::OK,
        ),
        Ok(None) => not_valid(),
        Err(e) => layout::api_refusal(e),
    }
}

/// The answer to a key that is unknown, rotated or switched off: the same
/// whatever the reason (as the API's 404).
fn not_valid() -> Response {
    layout::refusal(
        StatusCode::NOT_FOUND,
        "This registration link is not valid: it may have been replaced or turned off. Ask the organisation that sent it for a new one.",
    )
}

fn form_page(
    group: &LinkGroup,
    form: &RegisterForm,
    flash: Option<Flash>,
    status: StatusCode,
) -> Response {
    let body = html! {
        section.card.narrow {
            h1 { "Register your organisation" }
            p { "with " strong { (group.name) } " " span.site-tag { (group.code) }
                ". You get a site of your own and its first manager's account; "
                (group.code) " chose what a new manager starts with." }
            form.stack method="post" action="/register" data-testid="register" {
                input type="hidden" name="key" value=(form.key);
                input type="hidden" name="attempt" value=(form.attempt);
                fieldset {
                    legend { "Your organisation" }
                    (text_field("name", "Organisation name", &form.name, true, "organization"))
                    (text_field("code", "Site code (letters, digits, - or _)", &form.code, true, "off"))
                }
                fieldset {
                    legend { "Its first manager: you" }
                    (text_field("manager_name", "Your name", &form.manager_name, true, "name"))
                    (text_field("manager_username", "Username", &form.manager_username, true, "username"))
                    (text_field("manager_email", "Email (optional)", &form.manager_email, false, "email"))
                }
                button.primary type="submit" { "Register" }
            }
        }
    };
    let mut response = layout::bare("Register your organisation", flash, body);
    *response.status_mut() = status;
    response
}

fn text_field(name: &str, label: &str, value: &str, required: bool, complete: &str) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            input id=(name) name=(name) value=(value) required[required] autocomplete=(complete) spellcheck="false";
        }
    }
}

/// `POST /register`.
pub async fn register(
    State(state): State<AppState>,
    extensions: Extensions,
    Form(form): Form<RegisterForm>,
) -> Response {
    let group = match self_registration::group_of(&state, form.key.trim()).await {
        Ok(Some(group)) => group,
        Ok(None) => return not_valid(),
        Err(e) => return layout::api_refusal(e),
    };
    let mut body = json!({
        "link_key": form.key.trim(),
        "code": form.code.trim(),
        "name": form.name.trim(),
        "manager_username": form.manager_username.trim(),
        "manager_name": form.manager_name.trim(),
    });
    if !form.manager_email.trim().is_empty() {
        body["manager_email"] = json!(form.manager_email.trim());
    }
    // The request's extensions carry the caller's address, which the API's
    // handler rate-limits by.
    let answer = self_registration::register(
        State(state.clone()),
        extensions,
        json_headers(Some(&form.attempt)),
        Ok(Bytes::from(body.to_string())),
    )
    .await
    .unwrap_or_else(IntoResponse::into_response);
    let (status, bytes) = read_answer(answer).await;
    let answered: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        let detail = answered
            .get("detail")
            .and_then(Value::as_str)
            .map(in_words)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        return form_page(
            &group,
            &form,
            Some(Flash::error(format!("Not registered: {detail}"))),
            status,
        );
    }
    registered(&group, &form, &answered)
}

/// The registration made: the manager's first token, shown once, and a
/// button that signs in with it.
fn registered(group: &LinkGroup, form: &RegisterForm, answered: &Value) -> Response {
    let token = answered.pointer("/token/token").and_then(Value::as_str);
    let body = html! {
        section.card.narrow data-testid="registered" {
            h1 { "Registered" }
            p { strong { (form.name.trim()) } " " span.site-tag { (form.code.trim()) }
                " is registered with " (group.name) ", and " strong { (form.manager_username.trim()) } " is its manager." }
            @if let Some(token) = token {
                p { "Your token, to sign in here or to call the API. Copy it now: it is shown this once." }
                div.field {
                    label for="token" { "Token" }
                    input #token type="text" readonly value=(token) spellcheck="false";
                }
                form method="post" action="/sign-in" {
                    input type="hidden" name="token" value=(token);
                    input type="hidden" name="next" value="/";
                    button.primary type="submit" { "Continue to the console" }
                }
            } @else {
                p { "This registration was already made: its token was shown then. "
                    a href="/sign-in" { "Sign in" } " with it." }
            }
        }
    };
    let mut response = layout::bare("Registered", None, body);
    *response.status_mut() = StatusCode::CREATED;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
