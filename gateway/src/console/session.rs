//! Console sessions: sign in with a token, get a session of your own.
//!
//! Signing in presents a user, auditor or operator token once; the console
//! then issues a **session token** of the same kind, site and user
//! (`console session`, 12 hours at most and never beyond the presented
//! token's expiry) and keeps its secret in an HttpOnly, SameSite=Strict
//! cookie. A session is therefore an ordinary token: every process accepts
//! it, `GET /v1/tokens` lists it, revoking it (or signing out, which
//! revokes it) ends it everywhere, and a deactivated user's session is
//! refused like their token. Nothing about sessions lives in one process.
//!
//! Every form carries a CSRF token derived from the session's secret (a
//! SHA-256 keyed by it): a page of another origin can neither read it nor
//! compute it, and the SameSite cookie is not sent with its requests
//! anyway. Forms without it, or with another session's, change nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use cookie::{Cookie, SameSite};
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use shareledger_core::catalog::SiteId;

use super::layout::{self, Flash};
use crate::auth::{self, Principal, TokenKind, TokenRecord, TokenRequest};
use crate::error::ApiError;
use crate::state::AppState;

/// The cookie holding a session token's secret.
pub const SESSION_COOKIE: &str = "sl_session";

/// What a session token's name adds to the name of the token it was made
/// from (the name an operator's commands are recorded under).
const SESSION_SUFFIX: &str = " (console)";

/// A session's name: its parent's, marked, within a name's 200 characters.
fn session_name(parent: &str) -> String {
    let kept: String = parent
        .chars()
        .take(200 - SESSION_SUFFIX.chars().count())
        .collect();
    format!("{kept}{SESSION_SUFFIX}")
}

/// The longest a console session lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// A signed-in person: who they are to the API, and their session.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub record: Arc<TokenRecord>,
    secret: String,
    /// How the person is shown: a username, `auditor`, or the operator's
    /// name.
    pub who: String,
    /// Their site's code and name, if they belong to one.
    pub home: Option<(SiteId, String, String)>,
    /// May read their site's administrative pages (a user with Instance
    /// Admin or Manage Users; auditors and operators read them all): which
    /// sections the navigation offers.
    pub reads_admin_pages: bool,
}

impl Session {
    /// The session token's secret, for the API calls made on the
    /// person's behalf that re-present it.
    pub fn bearer(&self) -> &str {
        &self.secret
    }

    /// The CSRF token every form of this session carries.
    pub fn csrf(&self) -> String {
        csrf_of(&self.secret)
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, presented: Option<&str>) -> Result<(), Response> {
        let expected = self.csrf();
        match presented {
            Some(p) if constant_time_eq(p.as_bytes(), expected.as_bytes()) => Ok(()),
            _ => Err(layout::refusal(
                StatusCode::FORBIDDEN,
                "This form is not from your session (its CSRF token is missing or wrong); nothing was changed. Reload the page and try again.",
            )),
        }
    }
}

fn csrf_of(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"shareledger console csrf\0");
    h.update(secret.as_bytes());
    hex::encode(&h.finalize()[..16])
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The name of the token a session was made from (the session's own name
/// is that name and [`SESSION_SUFFIX`]).
fn holder(name: &str) -> &str {
    name.strip_suffix(SESSION_SUFFIX).unwrap_or(name)
}

/// Who the token's holder is, in words, and their site.
fn describe(
    state: &AppState,
    principal: &Principal,
    token_name: &str,
) -> (String, Option<(SiteId, String, String)>) {
    let index = state.access().read();
    let site = principal.site().map(|s| {
        let (code, name) = index
            .site_code_and_name_of(s)
            .map(|(c, n)| (c.as_str().to_owned(), n.as_str().to_owned()))
            .unwrap_or_else(|| (s.to_string(), String::new()));
        (s, code, name)
    });
    let who = match principal {
        Principal::User { user, .. } => index
            .person(*user)
            .map(|p| p.username.as_str().to_owned())
            .unwrap_or_else(|| user.to_string()),
        Principal::Auditor { site: None, .. } => format!("platform auditor {}", holder(token_name)),
        Principal::Auditor { .. } => format!("auditor {}", holder(token_name)),
        Principal::Operator { .. } => format!("operator {}", holder(token_name)),
    };
    (who, site)
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(secret) = session_cookie(&parts.headers) else {
            return Err(to_sign_in(parts, None));
        };
        let record = match state.tokens().verify(&secret).await {
            Ok(record) => record,
            Err(ApiError::BadToken | ApiError::Unauthenticated | ApiError::TokenExpired) => {
                return Err(to_sign_in(parts, Some(Reason::Ended)))
            }
            Err(other) => return Err(layout::api_refusal(other)),
        };
        let Some(principal) = Principal::of_own_token(&record) else {
            return Err(to_sign_in(parts, None));
        };
        // A deactivated user's session ends with the user (fail closed:
        // asked of an index that may answer).
        let reads_admin_pages = match principal {
            Principal::User { user, site, .. } => {
                let index = state
                    .access()
                    .fresh(None, state.options().freshness_timeout)
                    .await
                    .map_err(|e| layout::api_refusal(e.into()))?;
                if !index.user_facts(user).is_some_and(|f| f.active) {
                    return Err(to_sign_in(parts, Some(Reason::Deactivated)));
                }
                principal.administers(&index, site)
            }
            _ => true,
        };
        let (who, home) = describe(state, &principal, &record.name);
        Ok(Session {
            principal,
            record,
            secret,
            who,
            home,
            reads_admin_pages,
        })
    }
}

/// Why the sign-in page is shown: one of a few fixed messages, named in
/// its address by a code (never text from the address, which anyone could
/// write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Ended,
    Deactivated,
    SignedOut,
}

impl Reason {
    fn code(self) -> &'static str {
        match self {
            Reason::Ended => "ended",
            Reason::Deactivated => "deactivated",
            Reason::SignedOut => "signed_out",
        }
    }

    fn flash(self) -> Flash {
        match self {
            Reason::Ended => Flash::error(
                "Your session has ended (signed out, revoked or expired): sign in again.",
            ),
            Reason::Deactivated => {
                Flash::error("Your user has been deactivated: you can no longer sign in.")
            }
            Reason::SignedOut => Flash::ok("You are signed out."),
        }
    }
}

/// The sign-in page's redirect for a request without a live session.
fn to_sign_in(parts: &Parts, reason: Option<Reason>) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let mut location = format!("/sign-in?next={}", urlencode(&next));
    if let Some(r) = reason {
        location.push_str(&format!("&reason={}", r.code()));
    }
    let mut response = Redirect::to(&location).into_response();
    // A dead session's cookie goes.
    clear_session_cookie(&mut response);
    response
}

/// The session cookie's value, if the browser sent one.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE && !c.value().is_empty())
        .map(|c| c.value().to_owned())
}

/// A value percent-encoded for a URL's query.
pub(super) fn urlencode(raw: &str) -> String {
    percent_encoding::utf8_percent_encode(raw, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A local path to go to after signing in or acting: only this site's
/// own pages (a path, never `//host` or a scheme).
pub(super) fn local_path(raw: Option<&str>) -> String {
    match raw {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.to_owned(),
        _ => "/".to_owned(),
    }
}

#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
    /// A [`Reason`]'s code; any other text is not shown.
    reason: Option<String>,
}

/// `GET /sign-in`.
pub async fn sign_in_page(axum::extract::Query(q): axum::extract::Query<SignInQuery>) -> Response {
    sign_in_form(
        q.reason
            .and_then(|r| serde_json::from_value::<Reason>(serde_json::Value::String(r)).ok())
            .map(Reason::flash),
        &local_path(q.next.as_deref()),
        StatusCode::OK,
    )
}

fn sign_in_form(flash: Option<Flash>, next: &str, status: StatusCode) -> Response {
    let body = html! {
        section.card.narrow {
            h1 { "Sign in to ShareLedger" }
            p { "Paste a token: a user's (" code { "shareledger token issue --kind user" } ", or "
                code { "POST /v1/tokens" } "), an auditor's or an operator's. The console starts a session of its own for it; the token is not kept in the browser." }
            form method="post" action="/sign-in" {
                input type="hidden" name="next" value=(next);
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="off" required
                    placeholder="sl_…" spellcheck="false";
                button.primary type="submit" { "Sign in" }
            }
        }
    };
    (status, layout::bare("Sign in", flash, body)).into_response()
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    token: String,
    next: Option<String>,
}

/// `POST /sign-in`: verifies the token and starts a session.
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let next = local_path(form.next.as_deref());
    let refused = |message: &str| {
        sign_in_form(
            Some(Flash::error(message.to_owned())),
            &next,
            StatusCode::UNAUTHORIZED,
        )
    };
    let record = match state.tokens().verify(form.token.trim()).await {
        Ok(record) => record,
        Err(ApiError::BadToken | ApiError::Unauthenticated | ApiError::TokenExpired) => {
            return refused("That token is not valid: it is unknown, expired or revoked.")
        }
        Err(other) => return layout::api_refusal(other),
    };
    if record.kind == TokenKind::Service {
        return refused(
            "A service token acts for the users of its site and names none: sign in with a user's token.",
        );
    }
    let remaining = (record.expires_at - Utc::now())
        .to_std()
        .unwrap_or_default()
        .min(SESSION_LIFETIME);
    if remaining < Duration::from_secs(60) {
        return refused("That token expires within a minute: issue a new one.");
    }
    if let Some(user) = record.user {
        let index = state.access().read();
        if !index.user_facts(user).is_some_and(|f| f.active) {
            return refused("That token's user is deactivated.");
        }
    }
    let issued = match auth::issue_from(
        state.pool(),
        record.token_id,
        TokenRequest {
            kind: record.kind,
            site: record.site,
            user: record.user,
            name: session_name(&record.name),
            lifetime: remaining,
        },
    )
    .await
    {
        Ok(issued) => issued,
        Err(e) => return layout::api_refusal(ApiError::Internal(e.to_string())),
    };
    let cookie = Cookie::build((SESSION_COOKIE, issued.token))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(behind_https(&headers))
        .max_age(cookie::time::Duration::seconds(remaining.as_secs() as i64))
        .build();
    with_cookie(Redirect::to(&next).into_response(), &cookie)
}

/// True when a proxy says the browser reached us over HTTPS: the cookie is
/// then marked Secure.
pub(super) fn behind_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

#[derive(Debug, Deserialize)]
pub struct SignOutForm {
    csrf: Option<String>,
}

/// `POST /sign-out`: revokes the session's token and forgets the cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<SignOutForm>,
) -> Response {
    if let Err(refusal) = session.check_csrf(form.csrf.as_deref()) {
        return refusal;
    }
    if let Err(e) = state.tokens().revoke(session.record.token_id).await {
        return layout::api_refusal(ApiError::Internal(e.to_string()));
    }
    let mut response = Redirect::to("/sign-in?reason=signed_out").into_response();
    clear_session_cookie(&mut response);
    response
}

/// Adds a `Set-Cookie` to a response.
pub(super) fn with_cookie(mut response: Response, cookie: &Cookie<'_>) -> Response {
    if let Ok(v) = cookie.to_string().parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// Tells the browser to forget the session cookie.
fn clear_session_cookie(response: &mut Response) {
    let gone = Cookie::build((SESSION_COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(cookie::time::Duration::ZERO)
        .build();
    if let Ok(v) = gone.to_string().parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/users?x=1")), "/users?x=1");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "users",
            "/\\evil",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn a_csrf_token_is_the_sessions_own() {
        assert_eq!(csrf_of("sl_a"), csrf_of("sl_a"));
        assert_ne!(csrf_of("sl_a"), csrf_of("sl_b"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
