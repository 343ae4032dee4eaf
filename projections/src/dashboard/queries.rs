//! The Q-5 dashboards, read from the live `dashboards` tables through the
//! views `rm.dash_*`: a site's connections in both directions with their
//! status ([`connections`]), the requests waiting for its approval
//! ([`pending_requests`]), what it shares with each partner
//! ([`shared_scorecards`], R-SHARE-7), its users, sortable, searchable and
//! paged ([`users`]), and its settings ([`site`], R-ONB-3).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shareledger_core::catalog::{
    AccessLevel, Email, Name, PermissionFlag, Role, ScorecardId, SiteCode, SiteId, UserId, Username,
};
use sqlx::PgPool;
use uuid::Uuid;

use super::corrupt;
use crate::ProjectionError;

/// The state of a share link (see `core::connection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LinkStatus {
    AwaitingApproval,
    Active,
    Denied,
    Cancelled,
    Revoked,
}

impl LinkStatus {
    fn parse(raw: &str) -> Result<Self, ProjectionError> {
        Ok(match raw {
            "awaiting_approval" => Self::AwaitingApproval,
            "active" => Self::Active,
            "denied" => Self::Denied,
            "cancelled" => Self::Cancelled,
            "revoked" => Self::Revoked,
            other => return Err(corrupt(format!("{other:?} is not a link status"))),
        })
    }
}

/// Which way a link goes, seen from the site asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LinkDirection {
    /// The site shares with the partner (site → partner).
    Outgoing,
    /// The partner shares with the site (partner → site).
    Incoming,
}

/// One share link of a site, in either direction (Q-5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Connection {
    pub direction: LinkDirection,
    /// The sharing site.
    pub from_site: SiteId,
    /// The site shared with.
    pub to_site: SiteId,
    pub partner: SiteId,
    pub partner_code: SiteCode,
    pub partner_name: String,
    pub status: LinkStatus,
    /// The site that (last) requested the link.
    pub requester: SiteId,
    pub requested_by_user: Option<UserId>,
    pub requested_at: DateTime<Utc>,
    /// The last decision on the link (approval, denial, cancellation,
    /// revocation), if any since the last request.
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by_site: Option<SiteId>,
    pub decided_by_user: Option<UserId>,
    /// How many scorecards are shared over the link now.
    pub shared_scorecards: i64,
    /// The last event that changed the link's status.
    pub last_position: u64,
    pub last_event_id: Uuid,
}

/// A link awaiting the site's approval: the partner requested it (Q-5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PendingRequest {
    /// `Incoming`: the partner offers to share with the site;
    /// `Outgoing`: the partner asks the site to share with it.
    pub direction: LinkDirection,
    pub from_site: SiteId,
    pub to_site: SiteId,
    pub partner: SiteId,
    pub partner_code: SiteCode,
    pub partner_name: String,
    pub requested_by_user: Option<UserId>,
    pub requested_at: DateTime<Utc>,
    pub last_event_id: Uuid,
}

/// One scorecard shared over a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SharedScorecard {
    pub scorecard_id: ScorecardId,
    pub name: String,
    /// The owner site's code (R-SHARE-6).
    pub owner_code: SiteCode,
    pub shared_at: DateTime<Utc>,
    pub shared_by_user: Option<UserId>,
    pub event_id: Uuid,
}

/// What a site shares with one partner over its active link (R-SHARE-7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartnerShares {
    pub partner: SiteId,
    pub partner_code: SiteCode,
    pub partner_name: String,
    /// Ordered by name; empty when the link is active but nothing is
    /// shared (R-CONN-7).
    pub scorecards: Vec<SharedScorecard>,
}

/// A site's self-registration settings (R-ONB-2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SelfRegistration {
    pub enabled: bool,
    pub model_site: Option<SiteId>,
    pub model_user: Option<UserId>,
    /// Whether a link key is published (its key is never shown again).
    pub link_published: bool,
    /// Whether sites registered through the link become the group's
    /// children.
    pub link_makes_children: bool,
}

/// A site's settings (Q-5, R-ONB-1, R-ONB-3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteSummary {
    pub site_id: SiteId,
    pub code: SiteCode,
    pub name: String,
    pub seat_limit: u32,
    pub parent: Option<SiteId>,
    pub parent_code: Option<SiteCode>,
    pub two_factor_required: bool,
    /// Whether the site is listed in the partner directory (seed 002).
    pub listed: bool,
    pub self_registration: SelfRegistration,
    pub users: i64,
    pub active_users: i64,
    pub registered_at: DateTime<Utc>,
}

/// One user of a site (Q-5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserSummary {
    pub site_id: SiteId,
    pub user_id: UserId,
    pub username: Username,
    pub name: Name,
    /// The user's email, if one is recorded.
    pub email: Option<Email>,
    pub role: Role,
    pub permissions: BTreeSet<PermissionFlag>,
    pub active: bool,
    /// R-ONB-3.
    pub hide_organization_settings: bool,
    /// The later of the user's last event and last sign-in, if any.
    pub last_activity: Option<DateTime<Utc>>,
    /// When one of the user's tokens was last used (exact to about ten
    /// seconds), if ever.
    pub last_sign_in: Option<DateTime<Utc>>,
    pub added_at: DateTime<Utc>,
    /// How the account came to be: `added`, `existing_account`,
    /// `imported` or `self_registered`.
    pub origin: String,
}

/// What the users list is ordered by; ties are broken by username (unique
/// per site).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum UserSort {
    #[default]
    Username,
    /// Case-insensitively.
    Name,
    /// By the later of the last event and the last sign-in; users who never
    /// acted come first ascending, last descending.
    LastActivity,
    /// By the role's name (`administration`, `data_entry`, `presenter`,
    /// `scorecard_builder`).
    Role,
    /// Inactive first ascending, active first descending.
    Active,
    /// Case-insensitively; users with no email first ascending.
    Email,
    /// When the user was added.
    AddedAt,
}

impl UserSort {
    /// The sort key's SQL expression over `u`, its SQL type, and a tag for
    /// cursors.
    fn key(self) -> (&'static str, &'static str, &'static str) {
        match self {
            UserSort::Username => ("u.username", "text", "u"),
            UserSort::Name => ("lower(u.name)", "text", "n"),
            UserSort::LastActivity => (
                "COALESCE(u.last_activity, '-infinity'::timestamptz)",
                "timestamptz",
                "l",
            ),
            UserSort::Role => ("u.role", "text", "r"),
            UserSort::Active => ("u.active", "boolean", "a"),
            UserSort::Email => ("lower(COALESCE(u.email, ''))", "text", "e"),
            UserSort::AddedAt => ("u.added_at", "timestamptz", "t"),
        }
    }
}

/// The users list's question (Q-5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsersQuery {
    /// Only users whose username, name, email or role contains this,
    /// case-insensitively.
    pub search: Option<String>,
    pub sort: UserSort,
    pub descending: bool,
    /// Page size, clamped to `1..=MAX_USERS_PAGE` (0 means
    /// `DEFAULT_USERS_PAGE`).
    pub limit: u32,
    /// Where the page starts: a page's `UsersPage::next` cursor (the page
    /// after it) or `UsersPage::previous` (the page before it), for the
    /// same sort and direction (and the same filters, or pages skip or
    /// repeat).
    pub after: Option<String>,
    /// Only active (`Some(true)`, "hide inactive") or only deactivated users.
    pub active: Option<bool>,
    /// Only users of this role preset.
    pub role: Option<Role>,
    /// Only users holding this permission flag.
    pub flag: Option<PermissionFlag>,
}

/// The largest users page.
pub const MAX_USERS_PAGE: u32 = 1_000;
/// The users page size when none is asked for.
pub const DEFAULT_USERS_PAGE: u32 = 50;

/// One page of a site's users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsersPage {
    pub users: Vec<UserSummary>,
    /// How many users match the search (all pages).
    pub total: i64,
    /// The cursor of the next page, when more users follow.
    pub next: Option<String>,
    /// The cursor of the page before this one (passed as `after`), when
    /// users come before it.
    pub previous: Option<String>,
}

fn site_code(raw: &str) -> Result<SiteCode, ProjectionError> {
    SiteCode::parse(raw).map_err(|e| corrupt(e.to_string()))
}

fn direction_of(site: SiteId, from: Uuid) -> LinkDirection {
    if from == site.0 {
        LinkDirection::Outgoing
    } else {
        LinkDirection::Incoming
    }
}

#[derive(sqlx::FromRow)]
struct ConnectionRecord {
    from_site: Uuid,
    to_site: Uuid,
    partner: Uuid,
    partner_code: String,
    partner_name: String,
    status: String,
    requester: Uuid,
    requested_by_user: Option<Uuid>,
    requested_at: DateTime<Utc>,
    decided_at: Option<DateTime<Utc>>,
    decided_by_site: Option<Uuid>,
    decided_by_user: Option<Uuid>,
    shared_scorecards: i64,
    last_position: i64,
    last_event_id: Uuid,
}

/// A page of a list of links: at most `limit` (all when `None`) after the
/// link `after` (the last of the previous page), in the list's order.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkPage {
    pub limit: Option<u32>,
    pub after: Option<(SiteId, SiteId)>,
}

/// A site's share links in both directions, with the partner's code and the
/// link's status, ordered by partner code, outgoing first (Q-5). Every link
/// ever requested is listed, whatever its status. A page at a time: `after`
/// a link not in the list is [`ProjectionError::BadCursor`].
pub async fn connections(
    pool: &PgPool,
    site: SiteId,
    page: LinkPage,
) -> Result<Vec<Connection>, ProjectionError> {
    if let Some((from, to)) = page.after {
        let listed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM rm.dash_links WHERE from_site = $1 AND to_site = $2 \
               AND (from_site = $3 OR to_site = $3))",
        )
        .bind(from.0)
        .bind(to.0)
        .bind(site.0)
        .fetch_one(pool)
        .await?;
        if !listed {
            return Err(ProjectionError::BadCursor(format!("{}.{}", from.0, to.0)));
        }
    }
    let records: Vec<ConnectionRecord> = sqlx::query_as(
        "SELECT l.from_site, l.to_site, p.site_id AS partner, p.code AS partner_code, \
           p.name AS partner_name, l.status, l.requester, l.requested_by_user, l.requested_at, \
           l.decided_at, l.decided_by_site, l.decided_by_user, \
           (SELECT count(*) FROM rm.dash_shared sh \
             WHERE sh.from_site = l.from_site AND sh.to_site = l.to_site) AS shared_scorecards, \
           l.last_position, l.last_event_id \
         FROM rm.dash_links l \
         JOIN rm.dash_sites p \
           ON p.site_id = CASE WHEN l.from_site = $1 THEN l.to_site ELSE l.from_site END \
         WHERE (l.from_site = $1 OR l.to_site = $1) \
           AND ($2::uuid IS NULL OR (p.code, l.from_site <> $1) > ( \
             SELECT c.code, cl.from_site <> $1 FROM rm.dash_links cl \
             JOIN rm.dash_sites c \
               ON c.site_id = CASE WHEN cl.from_site = $1 THEN cl.to_site ELSE cl.from_site END \
             WHERE cl.from_site = $2 AND cl.to_site = $3)) \
         ORDER BY p.code, l.from_site <> $1 \
         LIMIT $4",
    )
    .bind(site.0)
    .bind(page.after.map(|a| a.0 .0))
    .bind(page.after.map(|a| a.1 .0))
    .bind(page.limit.map(i64::from))
    .fetch_all(pool)
    .await?;
    records
        .into_iter()
        .map(|r| {
            Ok(Connection {
                direction: direction_of(site, r.from_site),
                from_site: SiteId(r.from_site),
                to_site: SiteId(r.to_site),
                partner: SiteId(r.partner),
                partner_code: site_code(&r.partner_code)?,
                partner_name: r.partner_name,
                status: LinkStatus::parse(&r.status)?,
                requester: SiteId(r.requester),
                requested_by_user: r.requested_by_user.map(UserId),
                requested_at: r.requested_at,
                decided_at: r.decided_at,
                decided_by_site: r.decided_by_site.map(SiteId),
                decided_by_user: r.decided_by_user.map(UserId),
                shared_scorecards: r.shared_scorecards,
                last_position: u64::try_from(r.last_position).unwrap_or_default(),
                last_event_id: r.last_event_id,
            })
        })
        .collect()
}

#[derive(sqlx::FromRow)]
struct PendingRecord {
    from_site: Uuid,
    to_site: Uuid,
    partner: Uuid,
    partner_code: String,
    partner_name: String,
    requested_by_user: Option<Uuid>,
    requested_at: DateTime<Utc>,
    last_event_id: Uuid,
}

/// The links awaiting `site`'s approval: requested by the partner, so `site`
/// approves or denies them (R-CONN-3). Oldest request first, then by
/// partner code, the partner's offer (incoming) before its ask. A page at a
/// time: `after` a link not awaiting `site` is
/// [`ProjectionError::BadCursor`].
pub async fn pending_requests(
    pool: &PgPool,
    site: SiteId,
    page: LinkPage,
) -> Result<Vec<PendingRequest>, ProjectionError> {
    if let Some((from, to)) = page.after {
        let listed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM rm.dash_links WHERE from_site = $1 AND to_site = $2 \
               AND (from_site = $3 OR to_site = $3) AND requester <> $3 \
               AND status = 'awaiting_approval')",
        )
        .bind(from.0)
        .bind(to.0)
        .bind(site.0)
        .fetch_one(pool)
        .await?;
        if !listed {
            return Err(ProjectionError::BadCursor(format!("{}.{}", from.0, to.0)));
        }
    }
    let records: Vec<PendingRecord> = sqlx::query_as(
        "SELECT l.from_site, l.to_site, p.site_id AS partner, p.code AS partner_code, \
           p.name AS partner_name, l.requested_by_user, l.requested_at, l.last_event_id \
         FROM rm.dash_links l \
         JOIN rm.dash_sites p ON p.site_id = l.requester \
         WHERE (l.from_site = $1 OR l.to_site = $1) \
           AND l.status = 'awaiting_approval' AND l.requester <> $1 \
           AND ($2::uuid IS NULL OR (l.requested_at, p.code, l.from_site = $1) > ( \
             SELECT cl.requested_at, c.code, cl.from_site = $1 FROM rm.dash_links cl \
             JOIN rm.dash_sites c ON c.site_id = cl.requester \
             WHERE cl.from_site = $2 AND cl.to_site = $3)) \
         ORDER BY l.requested_at, p.code, l.from_site = $1 \
         LIMIT $4",
    )
    .bind(site.0)
    .bind(page.after.map(|a| a.0 .0))
    .bind(page.after.map(|a| a.1 .0))
    .bind(page.limit.map(i64::from))
    .fetch_all(pool)
    .await?;
    records
        .into_iter()
        .map(|r| {
            Ok(PendingRequest {
                direction: direction_of(site, r.from_site),
                from_site: SiteId(r.from_site),
                to_site: SiteId(r.to_site),
                partner: SiteId(r.partner),
                partner_code: site_code(&r.partner_code)?,
                partner_name: r.partner_name,
                requested_by_user: r.requested_by_user.map(UserId),
                requested_at: r.requested_at,
                last_event_id: r.last_event_id,
            })
        })
        .collect()
}

#[derive(sqlx::FromRow)]
struct SharedRecord {
    partner: Uuid,
    partner_code: String,
    partner_name: String,
    scorecard_id: Option<Uuid>,
    scorecard_name: Option<String>,
    owner_code: Option<String>,
    shared_at: Option<DateTime<Utc>>,
    shared_by_user: Option<Uuid>,
    event_id: Option<Uuid>,
}

/// "Scorecards you are currently sharing", per partner (R-SHARE-7): for
/// every active link `site → partner`, the scorecards shared over it.
/// Partners by code, scorecards by name.
pub async fn shared_scorecards(
    pool: &PgPool,
    site: SiteId,
) -> Result<Vec<PartnerShares>, ProjectionError> {
    let records: Vec<SharedRecord> = sqlx::query_as(
        "SELECT p.site_id AS partner, p.code AS partner_code, p.name AS partner_name, \
           sh.scorecard_id, sh.scorecard_name, sh.owner_code, sh.shared_at, sh.shared_by_user, \
           sh.event_id \
         FROM rm.dash_links l \
         JOIN rm.dash_sites p ON p.site_id = l.to_site \
         LEFT JOIN rm.dash_shared sh ON sh.from_site = l.from_site AND sh.to_site = l.to_site \
         WHERE l.from_site = $1 AND l.status = 'active' \
         ORDER BY p.code, sh.scorecard_name, sh.scorecard_id",
    )
    .bind(site.0)
    .fetch_all(pool)
    .await?;
    let mut out: Vec<PartnerShares> = Vec::new();
    for r in records {
        if out.last().is_none_or(|last| last.partner.0 != r.partner) {
            out.push(PartnerShares {
                partner: SiteId(r.partner),
                partner_code: site_code(&r.partner_code)?,
                partner_name: r.partner_name,
                scorecards: Vec::new(),
            });
        }
        if let (Some(id), Some(name), Some(owner), Some(at), Some(event_id)) = (
            r.scorecard_id,
            r.scorecard_name,
            r.owner_code,
            r.shared_at,
            r.event_id,
        ) {
            let partner = out.last_mut().expect("pushed above");
            partner.scorecards.push(SharedScorecard {
                scorecard_id: ScorecardId(id),
                name,
                owner_code: site_code(&owner)?,
                shared_at: at,
                shared_by_user: r.shared_by_user.map(UserId),
                event_id,
            });
        }
    }
    Ok(out)
}

#[derive(sqlx::FromRow)]
struct SiteRecord {
    site_id: Uuid,
    code: String,
    name: String,
    seat_limit: i64,
    parent: Option<Uuid>,
    parent_code: Option<String>,
    two_factor_required: bool,
    self_registration_enabled: bool,
    self_registration_model_site: Option<Uuid>,
    self_registration_model_user: Option<Uuid>,
    link_published: bool,
    link_makes_children: bool,
    listed: bool,
    users: i64,
    active_users: i64,
    registered_at: DateTime<Utc>,
}

/// A site's settings and user counts (R-ONB-3: whether two-factor sign-in is
/// required), or `None` for an unknown site.
pub async fn site(pool: &PgPool, site: SiteId) -> Result<Option<SiteSummary>, ProjectionError> {
    let record: Option<SiteRecord> = sqlx::query_as(
        "SELECT s.site_id, s.code, s.name, s.seat_limit, s.parent, p.code AS parent_code, \
           s.two_factor_required, s.self_registration_enabled, s.self_registration_model_site, \
           s.self_registration_model_user, \
           s.self_registration_link_hash IS NOT NULL AS link_published, \
           s.self_registration_child_of_group AS link_makes_children, s.listed, \
           (SELECT count(*) FROM rm.dash_users u WHERE u.site_id = s.site_id) AS users, \
           (SELECT count(*) FROM rm.dash_users u WHERE u.site_id = s.site_id AND u.active) \
             AS active_users, \
           s.registered_at \
         FROM rm.dash_sites s LEFT JOIN rm.dash_sites p ON p.site_id = s.parent \
         WHERE s.site_id = $1",
    )
    .bind(site.0)
    .fetch_optional(pool)
    .await?;
    record
        .map(|r| {
            Ok(SiteSummary {
                site_id: SiteId(r.site_id),
                code: site_code(&r.code)?,
                name: r.name,
                seat_limit: u32::try_from(r.seat_limit)
                    .map_err(|_| corrupt(format!("seat limit {}", r.seat_limit)))?,
                parent: r.parent.map(SiteId),
                parent_code: r.parent_code.as_deref().map(site_code).transpose()?,
                two_factor_required: r.two_factor_required,
                listed: r.listed,
                self_registration: SelfRegistration {
                    enabled: r.self_registration_enabled,
                    model_site: r.self_registration_model_site.map(SiteId),
                    model_user: r.self_registration_model_user.map(UserId),
                    link_published: r.link_published,
                    link_makes_children: r.link_makes_children,
                },
                users: r.users,
                active_users: r.active_users,
                registered_at: r.registered_at,
            })
        })
        .transpose()
}

#[derive(sqlx::FromRow)]
struct UserRecord {
    site_id: Uuid,
    user_id: Uuid,
    username: String,
    name: String,
    email: Option<String>,
    role: String,
    permissions: Vec<String>,
    active: bool,
    hide_organization_settings: bool,
    last_activity: Option<DateTime<Utc>>,
    last_sign_in: Option<DateTime<Utc>>,
    added_at: DateTime<Utc>,
    origin: String,
    sort_key: String,
}

/// A site's users (`$1`) as the users queries read them: the read model's
/// rows, with the last use of each user's tokens (a sign-in) and the
/// later of it and the last event as `last_activity`.
const SITE_USERS: &str = "(SELECT d.site_id, d.user_id, d.username, d.name, d.email, d.role, \
       d.permissions, d.active, d.hide_organization_settings, d.added_at, d.origin, \
       GREATEST(d.last_activity, si.last_sign_in) AS last_activity, si.last_sign_in \
     FROM rm.dash_users d \
     LEFT JOIN LATERAL (SELECT max(us.last_used_at) AS last_sign_in \
       FROM sl_api_tokens t JOIN sl_api_token_uses us USING (token_id) \
       WHERE t.site_id = d.site_id AND t.user_id = d.user_id) si ON true \
     WHERE d.site_id = $1) u";

impl UserRecord {
    fn summary(self) -> Result<UserSummary, ProjectionError> {
        let r = self;
        Ok(UserSummary {
            site_id: SiteId(r.site_id),
            user_id: UserId(r.user_id),
            username: Username::parse(&r.username).map_err(|e| corrupt(e.to_string()))?,
            name: Name::parse(&r.name).map_err(|e| corrupt(e.to_string()))?,
            email: r
                .email
                .as_deref()
                .map(|e| Email::parse(e).map_err(|e| corrupt(e.to_string())))
                .transpose()?,
            role: Role::parse(&r.role).map_err(|e| corrupt(e.to_string()))?,
            permissions: r
                .permissions
                .iter()
                .map(|f| PermissionFlag::parse(f).map_err(|e| corrupt(e.to_string())))
                .collect::<Result<_, _>>()?,
            active: r.active,
            hide_organization_settings: r.hide_organization_settings,
            last_activity: r.last_activity,
            last_sign_in: r.last_sign_in,
            added_at: r.added_at,
            origin: r.origin,
        })
    }
}

/// One user with their level on each scorecard assigned to them (seed 001's
/// Edit User, seed 004's per-scorecard users).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserDetail {
    pub user: UserSummary,
    /// By scorecard name: the site's own scorecards and partners' shared
    /// ones (R-SHARE-5), each with its owner (R-SHARE-6). Archived
    /// scorecards are not listed.
    pub scorecard_access: Vec<ScorecardLevel>,
}

/// A user's level on one scorecard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScorecardLevel {
    pub scorecard_id: ScorecardId,
    pub name: Name,
    pub owner_site: SiteId,
    pub owner_code: SiteCode,
    pub level: AccessLevel,
}

/// One user of a site, with their per-scorecard levels; `None` if the site
/// has no such user.
pub async fn user(
    pool: &PgPool,
    site: SiteId,
    user: UserId,
) -> Result<Option<UserDetail>, ProjectionError> {
    let record: Option<UserRecord> = sqlx::query_as(&format!(
        "SELECT u.site_id, u.user_id, u.username, u.name, u.email, u.role, u.permissions, \
               u.active, u.hide_organization_settings, u.last_activity, u.last_sign_in, \
               u.added_at, u.origin, u.username AS sort_key \
             FROM {SITE_USERS} WHERE u.user_id = $2"
    ))
    .bind(site.0)
    .bind(user.0)
    .fetch_optional(pool)
    .await?;
    let Some(record) = record else {
        return Ok(None);
    };
    let levels: Vec<(Uuid, String, Uuid, String, String)> = sqlx::query_as(
        "SELECT a.scorecard_id, sc.name, sc.site_id, s.code, a.level \
         FROM rm.dash_access a \
         JOIN rm.dash_scorecards sc ON sc.scorecard_id = a.scorecard_id \
         JOIN rm.dash_sites s ON s.site_id = sc.site_id \
         WHERE a.site_id = $1 AND a.user_id = $2 \
         ORDER BY lower(sc.name), a.scorecard_id",
    )
    .bind(site.0)
    .bind(user.0)
    .fetch_all(pool)
    .await?;
    let scorecard_access = levels
        .into_iter()
        .map(|(scorecard, name, owner, code, level)| {
            Ok(ScorecardLevel {
                scorecard_id: ScorecardId(scorecard),
                name: Name::parse(&name).map_err(|e| corrupt(e.to_string()))?,
                owner_site: SiteId(owner),
                owner_code: site_code(&code)?,
                level: AccessLevel::parse(&level).map_err(|e| corrupt(e.to_string()))?,
            })
        })
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    Ok(Some(UserDetail {
        user: record.summary()?,
        scorecard_access,
    }))
}

/// A users-list cursor: the sort it belongs to, a row's key, and which
/// side of that row the page lies on (`backwards`: the page before it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct UsersCursor {
    tag: String,
    descending: bool,
    backwards: bool,
    key: String,
    username: String,
}

impl UsersCursor {
    /// `<tag><a|d>.<hex key>.<hex username>`; the direction's letter in
    /// capitals for the page before the row.
    fn encode(&self) -> String {
        let direction = match (self.descending, self.backwards) {
            (false, false) => 'a',
            (true, false) => 'd',
            (false, true) => 'A',
            (true, true) => 'D',
        };
        format!(
            "{}{direction}.{}.{}",
            self.tag,
            hex::encode(&self.key),
            hex::encode(&self.username)
        )
    }

    fn decode(raw: &str) -> Option<Self> {
        let mut parts = raw.split('.');
        let (head, key, username) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || head.len() != 2 {
            return None;
        }
        let (tag, dir) = head.split_at(1);
        let (descending, backwards) = match dir {
            "a" => (false, false),
            "d" => (true, false),
            "A" => (false, true),
            "D" => (true, true),
            _ => return None,
        };
        Some(Self {
            tag: tag.to_owned(),
            descending,
            backwards,
            key: unhex(key)?,
            username: unhex(username)?,
        })
    }
}

fn unhex(raw: &str) -> Option<String> {
    String::from_utf8(hex::decode(raw).ok()?).ok()
}

/// `search` as an `ILIKE` pattern matching it anywhere, literally.
pub(crate) fn contains_pattern(search: &str) -> String {
    let mut pattern = String::with_capacity(search.len() + 2);
    pattern.push('%');
    for c in search.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A site's users (Q-5): username, name, email, role, flags, active, last
/// activity (events and sign-ins);
/// filtered by `query.search` (username, name, email or role contains it,
/// case-insensitively; a role as on the wire, `data_entry`, or as people
/// read it, `data entry`), by active or not, role and flag; ordered by `query.sort` (ties by username) in either
/// direction, one page at a time (keyset: pass `next` back as `after`).
pub async fn users(
    pool: &PgPool,
    site: SiteId,
    query: &UsersQuery,
) -> Result<UsersPage, ProjectionError> {
    let (key, key_type, tag) = query.sort.key();
    let from = match &query.after {
        None => None,
        Some(raw) => Some(
            UsersCursor::decode(raw)
                .filter(|c| c.tag == tag && c.descending == query.descending)
                .ok_or_else(|| ProjectionError::BadCursor(raw.clone()))?,
        ),
    };
    // Paging back reads the other way from the cursor, then turns round.
    let backwards = from.as_ref().is_some_and(|c| c.backwards);
    let limit = match query.limit {
        0 => DEFAULT_USERS_PAGE,
        n => n.min(MAX_USERS_PAGE),
    };
    let pattern = query
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(contains_pattern);
    let filter = "u.site_id = $1 \
        AND ($2::text IS NULL OR u.username ILIKE $2 OR u.name ILIKE $2 \
             OR u.email ILIKE $2 OR u.role ILIKE $2 OR replace(u.role, '_', ' ') ILIKE $2) \
        AND ($3::boolean IS NULL OR u.active = $3) \
        AND ($4::text IS NULL OR u.role = $4) \
        AND ($5::text IS NULL OR $5 = ANY(u.permissions))";
    let role = query.role.as_ref().map(super::snake);
    let flag = query.flag.as_ref().map(super::snake);
    let (cmp, dir) = if query.descending != backwards {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let sql = format!(
        "SELECT u.site_id, u.user_id, u.username, u.name, u.email, u.role, u.permissions, u.active, \
           u.hide_organization_settings, u.last_activity, u.last_sign_in, u.added_at, u.origin, \
           ({key})::text AS sort_key \
         FROM {SITE_USERS} \
         WHERE {filter} \
           AND ($6::text IS NULL OR ({key}, u.username) {cmp} ($6::{key_type}, $7::text)) \
         ORDER BY {key} {dir}, u.username {dir} \
         LIMIT $8"
    );
    let mut records: Vec<UserRecord> = sqlx::query_as(&sql)
        .bind(site.0)
        .bind(pattern.as_deref())
        .bind(query.active)
        .bind(role.as_deref())
        .bind(flag.as_deref())
        .bind(from.as_ref().map(|c| c.key.clone()))
        .bind(from.as_ref().map(|c| c.username.clone()))
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await
        .map_err(|e| match (&query.after, &e) {
            // A cursor's key that is not of its sort's type (a timestamp,
            // a boolean) or holds NUL: PostgreSQL's data exceptions (class
            // 22) here come from the cursor, which this service did not
            // give out.
            (Some(raw), sqlx::Error::Database(db))
                if db.code().is_some_and(|c| c.starts_with("22")) =>
            {
                ProjectionError::BadCursor(raw.clone())
            }
            _ => e.into(),
        })?;
    let total: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM rm.dash_users u WHERE {filter}"
    ))
    .bind(site.0)
    .bind(pattern.as_deref())
    .bind(query.active)
    .bind(role.as_deref())
    .bind(flag.as_deref())
    .fetch_one(pool)
    .await?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    if backwards {
        records.reverse();
    }
    let at = |record: &UserRecord, backwards: bool| {
        UsersCursor {
            tag: tag.to_owned(),
            descending: query.descending,
            backwards,
            key: record.sort_key.clone(),
            username: record.username.clone(),
        }
        .encode()
    };
    // Read forwards, more rows mean a next page, and a cursor means rows
    // before; read backwards, the other way round.
    let (later, earlier) = if backwards {
        (true, more)
    } else {
        (more, from.is_some())
    };
    let next = records.last().filter(|_| later).map(|r| at(r, false));
    let previous = records.first().filter(|_| earlier).map(|r| at(r, true));
    let users = records
        .into_iter()
        .map(UserRecord::summary)
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    Ok(UsersPage {
        users,
        total,
        next,
        previous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_any_text() {
        for (descending, backwards) in [(false, false), (true, false), (false, true), (true, true)]
        {
            let cursor = UsersCursor {
                tag: "l".into(),
                descending,
                backwards,
                key: "2026-01-02 03:04:05.123456+00".into(),
                username: "a.b:c@d".into(),
            };
            assert_eq!(UsersCursor::decode(&cursor.encode()), Some(cursor));
        }
        // The encoding given out (callers keep cursors): lowercase hex of
        // the UTF-8 bytes.
        let given = UsersCursor {
            tag: "n".into(),
            descending: false,
            backwards: false,
            key: "Zoë".into(),
            username: "a@b".into(),
        };
        assert_eq!(given.encode(), "na.5a6fc3ab.614062");
        assert_eq!(
            UsersCursor::decode("na.5A6FC3AB.614062").map(|c| c.key),
            Some("Zoë".into())
        );
        for bad in [
            "",
            "x",
            "ld.zz.00",
            "lx.00.00",
            "lX.00.00",
            "ld.0.00",
            "ld.00.00.00",
        ] {
            assert_eq!(UsersCursor::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn search_patterns_match_literally() {
        assert_eq!(contains_pattern("ann"), "%ann%");
        assert_eq!(contains_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
