//! Who is calling: opaque bearer tokens stored hashed, and the
//! [`Principal`] a request acts as.
//!
//! A token is `sl_` and 48 hex characters (192 random bits). The table
//! `sl_api_tokens` keeps only its SHA-256, its kind, its site and user, and
//! when it expires; `docs/http-api.md` says why opaque keys rather than
//! signed tokens (instant revocation, no signing key to guard or rotate, a
//! leaked table grants nothing). A random 192-bit secret needs no slow
//! password hash: SHA-256 cannot be reversed and guessing is hopeless.
//!
//! Verified tokens are cached in the process ([`Tokens`]), and every
//! process forgets a token as soon as it hears (LISTEN/NOTIFY) that it was
//! revoked, by `shareledger token revoke` or any other change of its row:
//! a revoked token is refused by the next request that follows the
//! notification, in every process. A process that cannot listen does not
//! use its cache.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shareledger_core::catalog::{PermissionFlag, SiteId, UserId};
use shareledger_events::Actor;
use shareledger_projections::access::AccessIndex;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// How long a verified token is trusted at most without asking the
/// database again. Revocations take effect before that, as soon as they
/// are heard (see [`Tokens`]); this bounds what a listening connection that
/// died silently could miss.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// Most verified tokens a process keeps (the least used go first).
const CACHE_CAPACITY: usize = 100_000;

/// The channel on which a trigger announces every change of
/// `sl_api_tokens` (migration `20261206000003_api_token_changes.sql`).
pub const REVOCATION_CHANNEL: &str = "sl_api_tokens";

/// The header a service token names the user it acts for with.
pub const ACT_AS_HEADER: &str = "shareledger-act-as";

/// What a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    User,
    Service,
    Auditor,
    Operator,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::User => "user",
            TokenKind::Service => "service",
            TokenKind::Auditor => "auditor",
            TokenKind::Operator => "operator",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "user" => TokenKind::User,
            "service" => TokenKind::Service,
            "auditor" => TokenKind::Auditor,
            "operator" => TokenKind::Operator,
            _ => return None,
        })
    }
}

/// A token's stored facts (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TokenRecord {
    pub token_id: Uuid,
    pub kind: TokenKind,
    pub site: Option<SiteId>,
    pub user: Option<UserId>,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token just issued: the secret is shown once and never stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    /// The secret (`sl_` and 48 hex digits): shown this once, stored only
    /// as its SHA-256.
    pub token: String,
    #[serde(flatten)]
    pub record: TokenRecord,
}

/// A token as listed: its facts and when it was last used (to within the
/// 10 s a process trusts a verification, [`CACHE_TTL`]; `null` if never).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TokenListing {
    #[serde(flatten)]
    pub record: TokenRecord,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Why a token cannot be issued.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a {kind} token needs {needs}")]
    Shape {
        kind: &'static str,
        needs: &'static str,
    },
    #[error("a token's lifetime must be between 1 minute and 10 years")]
    Lifetime,
    #[error("a token's name must be 1 to 200 characters, none of them a control character")]
    Name,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub kind: TokenKind,
    pub site: Option<SiteId>,
    pub user: Option<UserId>,
    pub name: String,
    pub lifetime: Duration,
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Issues a token and stores its hash.
pub async fn issue(pool: &PgPool, request: TokenRequest) -> Result<IssuedToken, TokenError> {
    insert(pool, request, None).await
}

/// Issues a token made from `parent` (a console session): revoking the
/// parent revokes it too ([`revoke`]).
pub async fn issue_from(
    pool: &PgPool,
    parent: Uuid,
    request: TokenRequest,
) -> Result<IssuedToken, TokenError> {
    insert(pool, request, Some(parent)).await
}

async fn insert(
    pool: &PgPool,
    request: TokenRequest,
    parent: Option<Uuid>,
) -> Result<IssuedToken, TokenError> {
    let TokenRequest {
        kind,
        site,
        user,
        name,
        lifetime,
    } = request;
    let shape = |needs| {
        Err(TokenError::Shape {
            kind: kind.as_str(),
            needs,
        })
    };
    match kind {
        TokenKind::User if site.is_none() || user.is_none() => return shape("a site and a user"),
        TokenKind::Service if site.is_none() || user.is_some() => {
            return shape("a site and no user")
        }
        TokenKind::Auditor if user.is_some() => return shape("no user (a site is optional)"),
        TokenKind::Operator if site.is_some() || user.is_some() => {
            return shape("no site and no user")
        }
        _ => {}
    }
    if lifetime < Duration::from_secs(60) || lifetime > Duration::from_secs(10 * 366 * 86_400) {
        return Err(TokenError::Lifetime);
    }
    let name = name.trim().to_owned();
    // A control character (a NUL above all, which PostgreSQL cannot
    // store) has no place in a name that is shown and recorded as an actor.
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(TokenError::Name);
    }
    let mut secret = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut secret);
    let token = format!("sl_{}", hex::encode(secret));
    let token_id = Uuid::now_v7();
    // Both times from the database's clock, as stored (microseconds): the
    // answer shows what a later listing shows, and the lifetime is exact.
    let (created_at, expires_at): (DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO sl_api_tokens (token_id, secret_hash, kind, site_id, user_id, name, expires_at, \
         parent_token_id) \
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), $8) \
         RETURNING created_at, expires_at",
    )
    .bind(token_id)
    .bind(&hash(&token)[..])
    .bind(kind.as_str())
    .bind(site.map(|s| s.0))
    .bind(user.map(|u| u.0))
    .bind(&name)
    .bind(lifetime.as_secs_f64())
    .bind(parent)
    .fetch_one(pool)
    .await?;
    Ok(IssuedToken {
        token,
        record: TokenRecord {
            token_id,
            kind,
            site,
            user,
            name,
            created_at,
            expires_at,
            revoked_at: None,
        },
    })
}

type Row = (
    Uuid,
    String,
    Option<Uuid>,
    Option<Uuid>,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

fn record(
    (token_id, kind, site, user, name, created_at, expires_at, revoked_at): Row,
) -> TokenRecord {
    TokenRecord {
        token_id,
        kind: TokenKind::parse(&kind).unwrap_or(TokenKind::Auditor),
        site: site.map(SiteId),
        user: user.map(UserId),
        name,
        created_at,
        expires_at,
        revoked_at,
    }
}

const COLUMNS: &str = "token_id, kind, site_id, user_id, name, created_at, expires_at, revoked_at";

/// Which tokens to list, one page at a time.
#[derive(Debug, Clone, Default)]
pub struct TokenQuery {
    pub site: Option<SiteId>,
    pub user: Option<UserId>,
    pub kind: Option<TokenKind>,
    /// At most this many (all when `None`).
    pub limit: Option<u32>,
    /// After this token, in the list's order (the last of the previous
    /// page); a token that does not exist is [`None`] from [`list_page`].
    pub after: Option<Uuid>,
}

/// Every token, or those of `site`, newest first, with their last use.
pub async fn list(pool: &PgPool, site: Option<SiteId>) -> Result<Vec<TokenListing>, sqlx::Error> {
    Ok(list_page(
        pool,
        &TokenQuery {
            site,
            ..TokenQuery::default()
        },
    )
    .await?
    .unwrap_or_default())
}

/// One page of tokens, newest first (ties by id), with their last use;
/// `None` when `after` names no token.
pub async fn list_page(
    pool: &PgPool,
    query: &TokenQuery,
) -> Result<Option<Vec<TokenListing>>, sqlx::Error> {
    type Listed = (
        Uuid,
        String,
        Option<Uuid>,
        Option<Uuid>,
        String,
        DateTime<Utc>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let after: Option<DateTime<Utc>> = match query.after {
        None => None,
        Some(token) => {
            let created: Option<DateTime<Utc>> =
                sqlx::query_scalar("SELECT created_at FROM sl_api_tokens WHERE token_id = $1")
                    .bind(token)
                    .fetch_optional(pool)
                    .await?;
            match created {
                Some(created) => Some(created),
                None => return Ok(None),
            }
        }
    };
    let rows: Vec<Listed> = sqlx::query_as(&format!(
        "SELECT {COLUMNS}, u.last_used_at \
         FROM sl_api_tokens LEFT JOIN sl_api_token_uses u USING (token_id) \
         WHERE ($1::uuid IS NULL OR site_id = $1) \
           AND ($2::uuid IS NULL OR user_id = $2) \
           AND ($3::text IS NULL OR kind = $3) \
           AND ($4::timestamptz IS NULL OR (created_at, token_id) < ($4, $5::uuid)) \
         ORDER BY created_at DESC, token_id DESC \
         LIMIT $6"
    ))
    .bind(query.site.map(|s| s.0))
    .bind(query.user.map(|u| u.0))
    .bind(query.kind.map(TokenKind::as_str))
    .bind(after)
    .bind(query.after)
    .bind(query.limit.map(i64::from))
    .fetch_all(pool)
    .await?;
    Ok(Some(
        rows.into_iter()
            .map(
                |(id, kind, site, user, name, created, expires, revoked, last_used_at)| {
                    TokenListing {
                        record: record((id, kind, site, user, name, created, expires, revoked)),
                        last_used_at,
                    }
                },
            )
            .collect(),
    ))
}

/// One token's facts, revoked or not.
pub async fn find(pool: &PgPool, token_id: Uuid) -> Result<Option<TokenRecord>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM sl_api_tokens WHERE token_id = $1"
    ))
    .bind(token_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(record))
}

/// Records that a token was used now (see `sl_api_token_uses`).
async fn record_use(pool: PgPool, token_id: Uuid) {
    let recorded = sqlx::query(
        "INSERT INTO sl_api_token_uses (token_id, last_used_at) VALUES ($1, now()) \
         ON CONFLICT (token_id) DO UPDATE SET last_used_at = EXCLUDED.last_used_at",
    )
    .bind(token_id)
    .execute(&pool)
    .await;
    if let Err(e) = recorded {
        tracing::debug!(error = %e, %token_id, "a token's use was not recorded");
    }
}

/// The statement that revokes a token and the tokens made from it (its
/// console sessions), returning each one's id and secret hash.
const REVOKE_WITH_SESSIONS: &str = "UPDATE sl_api_tokens SET revoked_at = now() \
     WHERE (token_id = $1 OR parent_token_id = $1) AND revoked_at IS NULL \
     RETURNING token_id, secret_hash";

/// Revokes a token and the console sessions made from it; false when there
/// is no such token (or it was revoked). A trigger announces each to every
/// serving process, which forgets it at once ([`Tokens`]).
pub async fn revoke(pool: &PgPool, token_id: Uuid) -> Result<bool, sqlx::Error> {
    let done: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(REVOKE_WITH_SESSIONS)
        .bind(token_id)
        .fetch_all(pool)
        .await?;
    Ok(done.iter().any(|(id, _)| *id == token_id))
}

/// Verified tokens by the SHA-256 of their secret, with when verified.
type Cache = quick_cache::sync::Cache<[u8; 32], (Arc<TokenRecord>, Instant)>;

/// What a process's revocation listener has done, for operators and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hearing {
    /// Listening now: the cache is used. When not, every request asks the
    /// database.
    pub listening: bool,
    /// How many times listening (re)started.
    pub sessions: u64,
    /// How many changes of `sl_api_tokens` were heard and acted on.
    pub heard: u64,
}

/// The cache and what tells whether it can be trusted.
struct Shared {
    cache: Cache,
    /// Set only while the listener hears every change of `sl_api_tokens`.
    listening: AtomicBool,
    /// Moves on with every eviction: a verification that read the database
    /// before it must not cache what it read.
    generation: AtomicU64,
    hearing: watch::Sender<Hearing>,
}

impl Shared {
    /// Forgets one token (by the SHA-256 of its secret).
    fn forget(&self, key: &[u8; 32]) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.remove(key);
    }

    /// Forgets every token.
    fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.clear();
    }

    /// Acts on a notification of `sl_api_tokens_changed`: the hex SHA-256
    /// of a changed token's secret, or `*` for all.
    fn changed(&self, payload: &str) {
        match decode_hex(payload) {
            Some(key) => self.forget(&key),
            None => self.forget_all(),
        }
        self.hearing.send_modify(|h| h.heard += 1);
    }

    fn set_listening(&self, listening: bool) {
        if listening {
            // Whatever was verified before listening may have missed a
            // revocation: forget it, then trust the cache again.
            self.forget_all();
            self.listening.store(true, Ordering::SeqCst);
        } else {
            self.listening.store(false, Ordering::SeqCst);
            self.forget_all();
        }
        self.hearing.send_modify(|h| {
            h.listening = listening;
            if listening {
                h.sessions += 1;
            }
        });
    }
}

fn decode_hex(digits: &str) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(digits, &mut key).ok()?;
    Some(key)
}

/// Ends the listener task when the last `Tokens` goes.
struct ListenerTask(JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Verifies bearer tokens, with a cache that every revocation empties at
/// once, in every process.
///
/// Each `Tokens` listens (`LISTEN sl_api_tokens`, on a connection of its
/// own) for the notifications that a trigger on `sl_api_tokens` sends when
/// a token is revoked, changed or deleted, and forgets that token as soon
/// as it hears it. Only while it listens is the cache used: when the
/// listening connection is lost, the cache is emptied and every request
/// asks the database until listening again (then the cache is emptied
/// once more), so a notification missed meanwhile cannot leave a revoked
/// token working. An entry is trusted [`CACHE_TTL`] at most, in case the
/// connection dies without a word.
#[derive(Clone)]
pub struct Tokens {
    pool: PgPool,
    shared: Arc<Shared>,
    _listener: Arc<ListenerTask>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("hearing", &*self.shared.hearing.borrow())
            .field("cached", &self.shared.cache.len())
            .finish()
    }
}

impl Tokens {
    /// Starts verifying with `pool` and listening for revocations (on the
    /// current tokio runtime).
    pub fn new(pool: PgPool) -> Self {
        let shared = Arc::new(Shared {
            cache: Cache::new(CACHE_CAPACITY),
            listening: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            hearing: watch::channel(Hearing::default()).0,
        });
        let task = tokio::spawn(listen(pool.clone(), Arc::downgrade(&shared)));
        Self {
            pool,
            shared,
            _listener: Arc::new(ListenerTask(task)),
        }
    }

    /// Forgets every cached verification.
    pub fn clear(&self) {
        self.shared.forget_all();
    }

    /// What the revocation listener has done, as it changes.
    pub fn hearing(&self) -> watch::Receiver<Hearing> {
        self.shared.hearing.subscribe()
    }

    /// Revokes a token (see [`revoke`]) and forgets it here at once; the
    /// other processes hear of it. False when there is no such token (or it
    /// was revoked).
    pub async fn revoke(&self, token_id: Uuid) -> Result<bool, sqlx::Error> {
        let done: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(REVOKE_WITH_SESSIONS)
            .bind(token_id)
            .fetch_all(&self.pool)
            .await?;
        for (_, hash) in &done {
            if let Ok(key) = <[u8; 32]>::try_from(hash.as_slice()) {
                self.shared.forget(&key);
            }
        }
        Ok(done.iter().any(|(id, _)| *id == token_id))
    }

    /// The token's record, if it is ours, unrevoked and unexpired.
    pub async fn verify(&self, bearer: &str) -> Result<Arc<TokenRecord>, ApiError> {
        if !bearer.starts_with("sl_") || bearer.len() != 51 {
            return Err(ApiError::BadToken);
        }
        let key = hash(bearer);
        let shared = &self.shared;
        let cached = if shared.listening.load(Ordering::SeqCst) {
            shared
                .cache
                .get(&key)
                .filter(|(_, at)| at.elapsed() < CACHE_TTL)
                .map(|(record, _)| record)
        } else {
            None
        };
        let record = match cached {
            Some(record) => record,
            None => {
                let generation = shared.generation.load(Ordering::SeqCst);
                let row: Option<Row> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM sl_api_tokens WHERE secret_hash = $1"
                ))
                .bind(&key[..])
                .fetch_optional(&self.pool)
                .await?;
                let record = Arc::new(record(row.ok_or(ApiError::BadToken)?));
                // A use is recorded whenever the database is asked (at
                // least every CACHE_TTL per token), off the request's path;
                // a revoked or expired token's refusal is no use.
                if record.revoked_at.is_none() && record.expires_at > Utc::now() {
                    tokio::spawn(record_use(self.pool.clone(), record.token_id));
                }
                if shared.listening.load(Ordering::SeqCst) {
                    shared
                        .cache
                        .insert(key, (Arc::clone(&record), Instant::now()));
                    // A change heard (or listening lost) since the read:
                    // what was read may be stale, so it is not kept.
                    if shared.generation.load(Ordering::SeqCst) != generation
                        || !shared.listening.load(Ordering::SeqCst)
                    {
                        shared.cache.remove(&key);
                    }
                }
                record
            }
        };
        if record.revoked_at.is_some() {
            return Err(ApiError::BadToken);
        }
        if record.expires_at <= Utc::now() {
            return Err(ApiError::TokenExpired);
        }
        Ok(record)
    }
}

/// Listens for changes of `sl_api_tokens` for as long as the `Tokens` that
/// started it lives, again and again if the connection is lost.
async fn listen(pool: PgPool, shared: Weak<Shared>) {
    // A connection of its own, outside the service's pool.
    let own = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with((*pool.connect_options()).clone());
    let mut backoff = Duration::from_millis(50);
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&own).await?;
            listener.listen(REVOCATION_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match listening {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for token revocations; every request asks the database meanwhile");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        match shared.upgrade() {
            Some(shared) => shared.set_listening(true),
            None => return,
        }
        let lost = loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => match shared.upgrade() {
                    Some(shared) => shared.changed(notification.payload()),
                    None => return,
                },
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        match shared.upgrade() {
            Some(shared) => shared.set_listening(false),
            None => return,
        }
        tracing::warn!(error = ?lost.map(|e| e.to_string()), "lost the token revocation listener; listening again");
        drop(listener);
    }
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user of a site, directly or through a service token of that site.
    User {
        site: SiteId,
        user: UserId,
        token: Uuid,
    },
    /// Reads history and access answers of one site, or of all (`None`).
    Auditor { site: Option<SiteId>, token: Uuid },
    /// Runs the platform.
    Operator { name: String, token: Uuid },
}

impl Principal {
    /// The actor commands are issued as; auditors issue none.
    pub fn actor(&self) -> Result<Actor, ApiError> {
        match self {
            Principal::User { site, user, .. } => Ok(Actor::User {
                user_id: user.0,
                site_id: site.0,
            }),
            Principal::Operator { name, .. } => Ok(Actor::Operator {
                name: format!("api:{name}"),
            }),
            Principal::Auditor { .. } => Err(ApiError::Forbidden(
                "auditor tokens read; they issue no commands".into(),
            )),
        }
    }

    /// True for whoever may read everything (operators, platform auditors).
    pub fn reads_everything(&self) -> bool {
        matches!(
            self,
            Principal::Operator { .. } | Principal::Auditor { site: None, .. }
        )
    }

    /// May this caller read site `site`'s administrative views (its users,
    /// connections, shares, who sees its content)? Operators and auditors of
    /// the site; users of the site with Instance Admin or Manage Users.
    pub fn administers(&self, index: &AccessIndex, site: SiteId) -> bool {
        match self {
            Principal::Operator { .. } | Principal::Auditor { site: None, .. } => true,
            Principal::Auditor { site: Some(s), .. } => *s == site,
            Principal::User { site: s, user, .. } => {
                *s == site
                    && index.user_facts(*user).is_some_and(|f| {
                        f.site == site
                            && f.active
                            && (f.flags.contains(&PermissionFlag::InstanceAdmin)
                                || f.flags.contains(&PermissionFlag::ManageUsers))
                    })
            }
        }
    }

    /// May this caller ask about user `user`'s access? Themselves, or the
    /// administrators of the user's site.
    pub fn may_ask_about(&self, index: &AccessIndex, user: UserId) -> bool {
        if let Principal::User { user: me, .. } = self {
            if *me == user {
                return true;
            }
        }
        match index.user_facts(user) {
            Some(facts) => self.administers(index, facts.site),
            None => self.reads_everything(),
        }
    }

    /// The site whose view limits what this caller may learn exists.
    pub fn site(&self) -> Option<SiteId> {
        match self {
            Principal::User { site, .. } => Some(*site),
            Principal::Auditor { site, .. } => *site,
            Principal::Operator { .. } => None,
        }
    }

    /// The user this caller is, if a user.
    pub fn user(&self) -> Option<UserId> {
        match self {
            Principal::User { user, .. } => Some(*user),
            _ => None,
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(ApiError::Unauthenticated)?;
        let value = header.to_str().map_err(|_| ApiError::BadToken)?;
        let bearer = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(ApiError::Unauthenticated)?
            .trim();
        let record = state.tokens().verify(bearer).await?;
        let act_as = parts.headers.get(ACT_AS_HEADER);
        match record.kind {
            TokenKind::Service => {
                let raw = act_as.ok_or_else(|| {
                    ApiError::Forbidden(format!(
                        "a service token acts for a user of its site: name one in {ACT_AS_HEADER}"
                    ))
                })?;
                let user = raw
                    .to_str()
                    .ok()
                    .and_then(|s| Uuid::parse_str(s.trim()).ok())
                    .map(UserId)
                    .ok_or_else(|| {
                        ApiError::Forbidden(format!("{ACT_AS_HEADER} must be a user id (UUID)"))
                    })?;
                let site = record.site.expect("service tokens have a site");
                let belongs = state
                    .access()
                    .read()
                    .user_facts(user)
                    .is_some_and(|f| f.site == site);
                if !belongs {
                    return Err(ApiError::Forbidden(
                        "a service token acts only for users of its own site".into(),
                    ));
                }
                Ok(Principal::User {
                    site,
                    user,
                    token: record.token_id,
                })
            }
            _ if act_as.is_some() => Err(ApiError::Forbidden(format!(
                "only service tokens may send {ACT_AS_HEADER}"
            ))),
            _ => Ok(Principal::of_own_token(&record).expect("not a service token")),
        }
    }
}

impl Principal {
    /// Who a token speaks for when it names its holder itself: a user,
    /// auditor or operator token. A service token names no one (it acts
    /// for a user named per request), so it gives `None`.
    pub fn of_own_token(record: &TokenRecord) -> Option<Principal> {
        match record.kind {
            TokenKind::Service => None,
            TokenKind::User => Some(Principal::User {
                site: record.site.expect("user tokens have a site"),
                user: record.user.expect("user tokens have a user"),
                token: record.token_id,
            }),
            TokenKind::Auditor => Some(Principal::Auditor {
                site: record.site,
                token: record.token_id,
            }),
            TokenKind::Operator => Some(Principal::Operator {
                name: record.name.clone(),
                token: record.token_id,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_names_one_token_by_its_hashs_64_hex_digits() {
        let key = hash("sl_00");
        assert_eq!(decode_hex(&hex::encode(key)), Some(key));
        assert_eq!(
            decode_hex(&hex::encode(key).to_uppercase()),
            Some(key),
            "PostgreSQL's encode() is lowercase; uppercase is the same hash"
        );
        // Anything else (`*`, a cut or longer payload) forgets every token.
        for other in [
            "*",
            "",
            &hex::encode(key)[1..],
            &format!("{}00", hex::encode(key)),
        ] {
            assert_eq!(decode_hex(other), None, "{other:?}");
        }
    }
}
