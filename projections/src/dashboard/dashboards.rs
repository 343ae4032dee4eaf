//! The `dashboards` read model (Q-5, R-SHARE-7, R-ONB-3): a site's settings,
//! its share links in both directions with their status, the scorecards
//! shared over each link, and its users with their role, flags and last
//! activity. [`super::queries`] answers the dashboards from it.
//!
//! Tables (in the generation schema; `rm.<table>` for consumers):
//!
//! * `dash_sites`: one row per site: code, name, seat limit, parent,
//!   two-factor requirement, self-registration settings.
//! * `dash_scorecards`: every scorecard's owner and name (to name shared
//!   scorecards).
//! * `dash_links`: one row per share link `from_site → to_site` ever
//!   requested: status (`awaiting_approval`, `active`, `denied`,
//!   `cancelled`, `revoked`), the requesting site and user and time, the
//!   last decision (time, site, user), the last event's position and id. A
//!   new request of the link resets the row.
//! * `dash_shared`: the scorecards shared over each link, with the
//!   scorecard's name and owner code. Only active links have rows: revoking
//!   (and a new request) empties the link's set.
//! * `dash_users`: one row per user account: username, name, role,
//!   permission flags (`text[]` of snake_case names), active, hide
//!   organisation settings, last activity (the time of the last event whose
//!   actor is this user), when and how it was added.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use shareledger_core::catalog::{ConnectionEvent, ContentEvent, SiteEvent, UserOrigin};
use shareledger_events::RecordedEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use super::schedule::Scheduler;
use super::Statistics;
use super::{actor_user, position, quoted, snake, write};
use crate::decode::{decode, Decoded, EventRef};
use crate::projection::SqlProjection;
use crate::ProjectionError;

/// The `dashboards` read model (Q-5).
#[derive(Debug, Default)]
pub struct Dashboards {
    statistics: Statistics,
}

impl Dashboards {
    /// Its name (checkpoint and generation schemas).
    pub const NAME: &'static str = "dashboards";
    /// Its tables, each shown as `rm.<table>`.
    pub const TABLES: &'static [&'static str] = &[
        "dash_sites",
        "dash_scorecards",
        "dash_links",
        "dash_shared",
        "dash_users",
        "dash_access",
    ];
}

#[async_trait]
impl SqlProjection for Dashboards {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// 2: users have an email (`dash_users.email`), and their levels per
    /// scorecard (`dash_access`); sites may be listed in the directory
    /// (`dash_sites.listed`) and publish a self-registration link (its
    /// key's hash, `dash_sites.self_registration_link_hash`).
    fn version(&self) -> u32 {
        2
    }

    async fn create_tables(
        &self,
        conn: &mut PgConnection,
        schema: &str,
    ) -> Result<(), ProjectionError> {
        let s = quoted(schema);
        let ddl = format!(
            r#"
CREATE TABLE {s}.dash_sites (
    site_id uuid PRIMARY KEY,
    code text NOT NULL UNIQUE,
    name text NOT NULL,
    seat_limit bigint NOT NULL,
    parent uuid,
    two_factor_required boolean NOT NULL DEFAULT false,
    listed boolean NOT NULL DEFAULT false,
    self_registration_link_hash text UNIQUE,
    self_registration_child_of_group boolean NOT NULL DEFAULT false,
    self_registration_enabled boolean NOT NULL DEFAULT false,
    self_registration_model_site uuid,
    self_registration_model_user uuid,
    registered_at timestamptz NOT NULL,
    last_position bigint NOT NULL
);
CREATE INDEX ON {s}.dash_sites (parent) WHERE parent IS NOT NULL;

CREATE TABLE {s}.dash_scorecards (
    scorecard_id uuid PRIMARY KEY,
    site_id uuid NOT NULL,
    name text NOT NULL
);

CREATE TABLE {s}.dash_links (
    from_site uuid NOT NULL,
    to_site uuid NOT NULL,
    status text NOT NULL CHECK (status IN
        ('awaiting_approval', 'active', 'denied', 'cancelled', 'revoked')),
    requester uuid NOT NULL,
    requested_by_user uuid,
    requested_at timestamptz NOT NULL,
    decided_at timestamptz,
    decided_by_site uuid,
    decided_by_user uuid,
    last_position bigint NOT NULL,
    last_event_id uuid NOT NULL,
    PRIMARY KEY (from_site, to_site)
);
CREATE INDEX ON {s}.dash_links (to_site);

CREATE TABLE {s}.dash_shared (
    from_site uuid NOT NULL,
    to_site uuid NOT NULL,
    scorecard_id uuid NOT NULL,
    scorecard_name text NOT NULL,
    owner_code text NOT NULL,
    shared_at timestamptz NOT NULL,
    shared_by_user uuid,
    last_position bigint NOT NULL,
    event_id uuid NOT NULL,
    PRIMARY KEY (from_site, to_site, scorecard_id)
);

CREATE TABLE {s}.dash_users (
    site_id uuid NOT NULL,
    user_id uuid NOT NULL,
    username text NOT NULL,
    name text NOT NULL,
    email text,
    role text NOT NULL,
    permissions text[] NOT NULL,
    active boolean NOT NULL,
    hide_organization_settings boolean NOT NULL,
    last_activity timestamptz,
    added_at timestamptz NOT NULL,
    origin text NOT NULL,
    PRIMARY KEY (site_id, user_id),
    UNIQUE (site_id, username)
);
CREATE INDEX ON {s}.dash_users (user_id);

CREATE TABLE {s}.dash_access (
    site_id uuid NOT NULL,
    user_id uuid NOT NULL,
    scorecard_id uuid NOT NULL,
    level text NOT NULL,
    PRIMARY KEY (site_id, user_id, scorecard_id)
);
CREATE INDEX ON {s}.dash_users (site_id, lower(name), username);
CREATE INDEX ON {s}.dash_users
    (site_id, (COALESCE(last_activity, '-infinity'::timestamptz)), username);
CREATE INDEX ON {s}.dash_users (site_id, role, username);
CREATE INDEX ON {s}.dash_users (site_id, active, username);
"#
        );
        sqlx::Executor::execute(&mut *conn, ddl.as_str()).await?;
        Ok(())
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let s = quoted(schema);
        let mut scheduler = Scheduler::new(Kind::conflict);
        let mut ops = Vec::new();
        // The last activity of each user, (site, user) → time; written last,
        // when every user of the batch exists.
        let mut activity: HashMap<(Uuid, Uuid), DateTime<Utc>> = HashMap::new();
        for event in events {
            let origin = EventRef::of(event);
            if let Some(shareledger_events::Actor::User { user_id, site_id }) = &origin.actor {
                activity.insert((*site_id, *user_id), event.recorded_at);
            }
            if let Some(decoded) = decode(event)? {
                ops_of(decoded, event, &origin, &mut ops);
                for op in ops.drain(..) {
                    schedule(&mut scheduler, op);
                }
            }
        }
        for run in scheduler.finish() {
            write_run(conn, &s, &run).await?;
        }
        if !activity.is_empty() {
            let (keys, times): (Vec<(Uuid, Uuid)>, Vec<DateTime<Utc>>) =
                activity.into_iter().unzip();
            let (sites, users): (Vec<Uuid>, Vec<Uuid>) = keys.into_iter().unzip();
            write(&format!(
                "UPDATE {s}.dash_users u SET last_activity = v.at \
                 FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) AS v(site_id, user_id, at) \
                 WHERE u.site_id = v.site_id AND u.user_id = v.user_id"
            ))
            .bind(sites)
            .bind(users)
            .bind(times)
            .execute(&mut *conn)
            .await?;
        }
        self.statistics
            .after_apply(conn, schema, Self::TABLES, events.len())
            .await
    }
}

/// The kinds of [`Op`]: each kind's ops are merged into runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SiteRegistered,
    SitePatch,
    UserAdded,
    UserPatch,
    ScorecardCreated,
    Link,
    Share,
    ScorecardLifecycle,
    Access,
}

impl Kind {
    /// Whether ops of kinds `a` and `b` may not be swapped: a patch needs its
    /// site row; a share reads the scorecard's name and the owner's code; a
    /// link's (re)request or revocation empties its shared set. A user patch
    /// of a user added in the same batch is folded into the pending row
    /// ([`schedule`]), so user additions and patches commute.
    fn conflict(a: Kind, b: Kind) -> bool {
        use Kind::*;
        let pair = |x: Kind, y: Kind| (a == x && b == y) || (a == y && b == x);
        // A scorecard's rename or archive rewrites its rows, its shares and
        // the levels on it.
        a == ScorecardLifecycle
            || b == ScorecardLifecycle
            || pair(SiteRegistered, SitePatch)
            || pair(SiteRegistered, Share)
            || pair(ScorecardCreated, Share)
            || pair(Link, Share)
    }
}

/// Adds `op` to the scheduler, folding a user patch into the pending row of
/// a user added in this batch.
fn schedule(scheduler: &mut Scheduler<Kind, Op>, op: Op) {
    if let Op::UserPatch(patch) = &op {
        let added = scheduler.pending_mut(Kind::UserAdded).and_then(|ops| {
            ops.iter_mut().rev().find_map(|o| match o {
                Op::UserAdded(row) if row.site == patch.site && row.user == patch.user => Some(row),
                _ => None,
            })
        });
        if let Some(row) = added {
            row.patch(patch);
            return;
        }
    }
    let kind = op.kind();
    scheduler.push(kind, op);
}

/// One change to the tables; runs of one kind are written by one statement
/// (see [`write_run`]).
#[derive(Debug)]
enum Op {
    SiteRegistered(SiteRow),
    SitePatch(SitePatch),
    UserAdded(UserRow),
    UserPatch(UserPatch),
    ScorecardCreated {
        scorecard: Uuid,
        site: Uuid,
        name: String,
    },
    Link(LinkChange),
    /// A scorecard shared (`Some`) or unshared over a link; last-wins per key.
    Share {
        from: Uuid,
        to: Uuid,
        scorecard: Uuid,
        shared: Option<ShareRow>,
    },
    /// A scorecard renamed (`Some`) or archived (its row and shares go).
    ScorecardLifecycle {
        scorecard: Uuid,
        name: Option<String>,
    },
    /// A user's level on a scorecard set (`Some`) or removed; last-wins per
    /// key.
    Access {
        site: Uuid,
        user: Uuid,
        scorecard: Uuid,
        level: Option<String>,
    },
}

impl Op {
    fn kind(&self) -> Kind {
        match self {
            Op::SiteRegistered(_) => Kind::SiteRegistered,
            Op::SitePatch(_) => Kind::SitePatch,
            Op::UserAdded(_) => Kind::UserAdded,
            Op::UserPatch(_) => Kind::UserPatch,
            Op::ScorecardCreated { .. } => Kind::ScorecardCreated,
            Op::Link(_) => Kind::Link,
            Op::Share { .. } => Kind::Share,
            Op::ScorecardLifecycle { .. } => Kind::ScorecardLifecycle,
            Op::Access { .. } => Kind::Access,
        }
    }
}

#[derive(Debug)]
struct SiteRow {
    site: Uuid,
    code: String,
    name: String,
    seat_limit: i64,
    parent: Option<Uuid>,
    at: DateTime<Utc>,
    position: i64,
}

/// Site settings that changed; `None` fields are unchanged.
#[derive(Debug, Clone, Default)]
struct SitePatch {
    site: Uuid,
    seat_limit: Option<i64>,
    parent: Option<Option<Uuid>>,
    two_factor: Option<bool>,
    listed: Option<bool>,
    /// (SHA-256 of the link's key, children of the group).
    link: Option<(Option<String>, bool)>,
    /// (enabled, model site, model user).
    self_registration: Option<(bool, Option<Uuid>, Option<Uuid>)>,
    position: i64,
}

impl SitePatch {
    fn new(site: Uuid, position: i64) -> Self {
        Self {
            site,
            position,
            ..Self::default()
        }
    }

    /// This patch followed by `later`.
    fn then(&mut self, later: &SitePatch) {
        self.seat_limit = later.seat_limit.or(self.seat_limit);
        self.parent = later.parent.or(self.parent);
        self.two_factor = later.two_factor.or(self.two_factor);
        self.listed = later.listed.or(self.listed);
        self.link = later.link.clone().or(self.link.take());
        self.self_registration = later.self_registration.or(self.self_registration);
        self.position = later.position;
    }
}

#[derive(Debug)]
struct UserRow {
    site: Uuid,
    user: Uuid,
    username: String,
    name: String,
    email: Option<String>,
    role: String,
    permissions: Vec<String>,
    active: bool,
    hidden: bool,
    at: DateTime<Utc>,
    origin: String,
}

impl UserRow {
    /// The row after `patch`.
    fn patch(&mut self, patch: &UserPatch) {
        if let Some(role) = &patch.role {
            self.role.clone_from(role);
        }
        if let Some(permissions) = &patch.permissions {
            self.permissions.clone_from(permissions);
        }
        if let Some((name, email)) = &patch.details {
            self.name.clone_from(name);
            self.email.clone_from(email);
        }
        self.active = patch.active.unwrap_or(self.active);
        self.hidden = patch.hidden.unwrap_or(self.hidden);
    }
}

/// User fields that changed; `None` fields are unchanged.
#[derive(Debug, Clone, Default)]
struct UserPatch {
    site: Uuid,
    user: Uuid,
    role: Option<String>,
    permissions: Option<Vec<String>>,
    active: Option<bool>,
    hidden: Option<bool>,
    /// The name and email (none: cleared), when they changed.
    details: Option<(String, Option<String>)>,
}

impl UserPatch {
    fn new(site: Uuid, user: Uuid) -> Self {
        Self {
            site,
            user,
            ..Self::default()
        }
    }

    /// This patch followed by `later`.
    fn then(&mut self, later: &UserPatch) {
        self.role = later.role.clone().or(self.role.take());
        self.permissions = later.permissions.clone().or(self.permissions.take());
        self.active = later.active.or(self.active);
        self.hidden = later.hidden.or(self.hidden);
        self.details = later.details.clone().or(self.details.take());
    }
}

/// A status change of one or more links, by one event.
#[derive(Debug)]
struct LinkChange {
    links: Vec<(Uuid, Uuid)>,
    kind: LinkChangeKind,
    at: DateTime<Utc>,
    by_user: Option<Uuid>,
    position: i64,
    event_id: Uuid,
}

#[derive(Debug)]
enum LinkChangeKind {
    /// A (new) request by `requester`: the links await approval, from nothing shared.
    Requested { requester: Uuid },
    /// A decision by `by_site`; `clears` when the links' shared sets end.
    Decided {
        status: &'static str,
        by_site: Uuid,
        clears: bool,
    },
}

#[derive(Debug, Clone)]
struct ShareRow {
    at: DateTime<Utc>,
    by_user: Option<Uuid>,
    position: i64,
    event_id: Uuid,
}

fn links_of(links: &[shareledger_core::catalog::Link]) -> Vec<(Uuid, Uuid)> {
    links.iter().map(|l| (l.from.0, l.to.0)).collect()
}

/// The ops of one decoded event.
fn ops_of(decoded: Decoded, event: &RecordedEvent, origin: &EventRef, ops: &mut Vec<Op>) {
    let pos = position(event);
    let at = event.recorded_at;
    let by_user = actor_user(origin.actor.as_ref());
    match decoded {
        Decoded::Site { site, event: e } => {
            let site = site.0;
            match e {
                SiteEvent::SiteRegistered {
                    site_id,
                    code,
                    name,
                    seat_limit,
                    parent,
                } => ops.push(Op::SiteRegistered(SiteRow {
                    site: site_id.0,
                    code: code.as_str().to_owned(),
                    name: name.as_str().to_owned(),
                    seat_limit: i64::from(seat_limit.get()),
                    parent: parent.map(|p| p.0),
                    at,
                    position: pos,
                })),
                SiteEvent::SeatLimitSet { seat_limit } => ops.push(Op::SitePatch(SitePatch {
                    seat_limit: Some(i64::from(seat_limit.get())),
                    ..SitePatch::new(site, pos)
                })),
                SiteEvent::ParentSiteSet { parent } => ops.push(Op::SitePatch(SitePatch {
                    parent: Some(parent.map(|p| p.0)),
                    ..SitePatch::new(site, pos)
                })),
                SiteEvent::SelfRegistrationConfigured {
                    enabled,
                    model_site,
                    model_user,
                } => ops.push(Op::SitePatch(SitePatch {
                    self_registration: Some((
                        enabled,
                        model_site.map(|s| s.0),
                        model_user.map(|u| u.0),
                    )),
                    ..SitePatch::new(site, pos)
                })),
                SiteEvent::TwoFactorRequirementSet { required } => {
                    ops.push(Op::SitePatch(SitePatch {
                        two_factor: Some(required),
                        ..SitePatch::new(site, pos)
                    }))
                }
                SiteEvent::SelfRegistrationLinkSet {
                    link_hash,
                    child_of_group,
                } => ops.push(Op::SitePatch(SitePatch {
                    link: Some((link_hash, child_of_group)),
                    ..SitePatch::new(site, pos)
                })),
                SiteEvent::DirectoryListingSet { listed } => ops.push(Op::SitePatch(SitePatch {
                    listed: Some(listed),
                    ..SitePatch::new(site, pos)
                })),
                SiteEvent::UserAdded {
                    user,
                    origin,
                    hide_organization_settings,
                    scorecard_access,
                } => ops.extend(
                    scorecard_access
                        .iter()
                        .map(|(scorecard, level)| Op::Access {
                            site,
                            user: user.user_id.0,
                            scorecard: scorecard.0,
                            level: Some(snake(level)),
                        })
                        .chain([Op::UserAdded(UserRow {
                            site,
                            user: user.user_id.0,
                            username: user.username.as_str().to_owned(),
                            name: user.name.as_str().to_owned(),
                            email: user.email.as_ref().map(|e| e.as_str().to_owned()),
                            role: snake(&user.role),
                            permissions: user.permissions.iter().map(snake).collect(),
                            active: true,
                            hidden: hide_organization_settings,
                            at,
                            origin: match origin {
                                UserOrigin::Added => "added",
                                UserOrigin::ExistingAccount { .. } => "existing_account",
                                UserOrigin::Imported { .. } => "imported",
                                UserOrigin::SelfRegistered { .. } => "self_registered",
                            }
                            .to_owned(),
                        })]),
                ),
                SiteEvent::UserRoleChanged {
                    user_id,
                    role,
                    permissions,
                } => ops.push(Op::UserPatch(UserPatch {
                    role: Some(snake(&role)),
                    permissions: Some(permissions.iter().map(snake).collect()),
                    ..UserPatch::new(site, user_id.0)
                })),
                SiteEvent::UserPermissionsSet {
                    user_id,
                    permissions,
                } => ops.push(Op::UserPatch(UserPatch {
                    permissions: Some(permissions.iter().map(snake).collect()),
                    ..UserPatch::new(site, user_id.0)
                })),
                SiteEvent::ScorecardAccessGranted {
                    user_id,
                    scorecard_id,
                    level,
                } => ops.push(Op::Access {
                    site,
                    user: user_id.0,
                    scorecard: scorecard_id.0,
                    level: Some(snake(&level)),
                }),
                SiteEvent::ScorecardAccessRevoked {
                    user_id,
                    scorecard_id,
                } => ops.push(Op::Access {
                    site,
                    user: user_id.0,
                    scorecard: scorecard_id.0,
                    level: None,
                }),
                SiteEvent::UserDetailsChanged {
                    user_id,
                    name,
                    email,
                } => ops.push(Op::UserPatch(UserPatch {
                    details: Some((
                        name.as_str().to_owned(),
                        email.map(|e| e.as_str().to_owned()),
                    )),
                    ..UserPatch::new(site, user_id.0)
                })),
                SiteEvent::UserDeactivated { user_id } => ops.push(Op::UserPatch(UserPatch {
                    active: Some(false),
                    ..UserPatch::new(site, user_id.0)
                })),
                SiteEvent::UserReactivated { user_id } => ops.push(Op::UserPatch(UserPatch {
                    active: Some(true),
                    ..UserPatch::new(site, user_id.0)
                })),
                SiteEvent::OrganizationSettingsHiddenSet { user_id, hidden } => {
                    ops.push(Op::UserPatch(UserPatch {
                        hidden: Some(hidden),
                        ..UserPatch::new(site, user_id.0)
                    }))
                }
            }
        }
        Decoded::Content {
            site,
            event: ContentEvent::ScorecardCreated { scorecard_id, name },
        } => ops.push(Op::ScorecardCreated {
            scorecard: scorecard_id.0,
            site: site.0,
            name: name.as_str().to_owned(),
        }),
        Decoded::Content {
            event: ContentEvent::ScorecardRenamed { scorecard_id, name },
            ..
        } => ops.push(Op::ScorecardLifecycle {
            scorecard: scorecard_id.0,
            name: Some(name.as_str().to_owned()),
        }),
        Decoded::Content {
            event: ContentEvent::ScorecardArchived { scorecard_id },
            ..
        } => ops.push(Op::ScorecardLifecycle {
            scorecard: scorecard_id.0,
            name: None,
        }),
        Decoded::Content { .. } | Decoded::SiteCode(_) => {}
        Decoded::Connection(e) => {
            let change = |links: Vec<(Uuid, Uuid)>, kind| {
                Op::Link(LinkChange {
                    links,
                    kind,
                    at,
                    by_user,
                    position: pos,
                    event_id: event.event_id,
                })
            };
            let decided = |status, by_site: shareledger_core::catalog::SiteId, clears| {
                LinkChangeKind::Decided {
                    status,
                    by_site: by_site.0,
                    clears,
                }
            };
            match e {
                ConnectionEvent::ConnectionRequested {
                    requester, links, ..
                } => ops.push(change(
                    links_of(&links),
                    LinkChangeKind::Requested {
                        requester: requester.0,
                    },
                )),
                ConnectionEvent::LinksActivated {
                    approver, links, ..
                } => ops.push(change(links_of(&links), decided("active", approver, false))),
                ConnectionEvent::ConnectionDenied { denier, links } => {
                    ops.push(change(links_of(&links), decided("denied", denier, false)))
                }
                ConnectionEvent::ConnectionRequestCancelled { requester, links } => ops.push(
                    change(links_of(&links), decided("cancelled", requester, false)),
                ),
                ConnectionEvent::LinkRevoked { revoker, link } => {
                    ops.push(change(links_of(&[link]), decided("revoked", revoker, true)))
                }
                ConnectionEvent::ScorecardShared { link, scorecard_id } => ops.push(Op::Share {
                    from: link.from.0,
                    to: link.to.0,
                    scorecard: scorecard_id.0,
                    shared: Some(ShareRow {
                        at,
                        by_user,
                        position: pos,
                        event_id: event.event_id,
                    }),
                }),
                ConnectionEvent::ScorecardUnshared {
                    link, scorecard_id, ..
                } => ops.push(Op::Share {
                    from: link.from.0,
                    to: link.to.0,
                    scorecard: scorecard_id.0,
                    shared: None,
                }),
            }
        }
    }
}

/// Writes a run of ops of one kind.
async fn write_run(conn: &mut PgConnection, s: &str, run: &[Op]) -> Result<(), ProjectionError> {
    match &run[0] {
        Op::SiteRegistered(_) => {
            let rows: Vec<&SiteRow> = run
                .iter()
                .filter_map(|op| match op {
                    Op::SiteRegistered(r) => Some(r),
                    _ => None,
                })
                .collect();
            write(&format!(
                "INSERT INTO {s}.dash_sites (site_id, code, name, seat_limit, parent, \
                   registered_at, last_position) \
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int8[], \
                   $5::uuid[], $6::timestamptz[], $7::int8[])"
            ))
            .bind(rows.iter().map(|r| r.site).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.code.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.name.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.seat_limit).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.parent).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.position).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        Op::SitePatch(_) => {
            let mut merged: HashMap<Uuid, SitePatch> = HashMap::new();
            for op in run {
                if let Op::SitePatch(p) = op {
                    merged
                        .entry(p.site)
                        .and_modify(|m| m.then(p))
                        .or_insert_with(|| p.clone());
                }
            }
            let patches: Vec<SitePatch> = merged.into_values().collect();
            write(&format!(
                "UPDATE {s}.dash_sites d SET \
                   seat_limit = COALESCE(v.seat_limit, d.seat_limit), \
                   parent = CASE WHEN v.set_parent THEN v.parent ELSE d.parent END, \
                   two_factor_required = COALESCE(v.two_factor, d.two_factor_required), \
                   self_registration_enabled = \
                     CASE WHEN v.set_sr THEN v.sr_enabled ELSE d.self_registration_enabled END, \
                   self_registration_model_site = \
                     CASE WHEN v.set_sr THEN v.sr_site ELSE d.self_registration_model_site END, \
                   self_registration_model_user = \
                     CASE WHEN v.set_sr THEN v.sr_user ELSE d.self_registration_model_user END, \
                   listed = COALESCE(v.listed, d.listed), \
                   self_registration_link_hash = \
                     CASE WHEN v.set_link THEN v.link_hash ELSE d.self_registration_link_hash END, \
                   self_registration_child_of_group = CASE WHEN v.set_link THEN v.link_children \
                     ELSE d.self_registration_child_of_group END, \
                   last_position = v.position \
                 FROM unnest($1::uuid[], $2::int8[], $3::bool[], $4::uuid[], $5::bool[], \
                   $6::bool[], $7::bool[], $8::uuid[], $9::uuid[], $10::int8[], $11::bool[], \
                   $12::bool[], $13::text[], $14::bool[]) \
                   AS v(site_id, seat_limit, set_parent, parent, two_factor, set_sr, \
                        sr_enabled, sr_site, sr_user, position, listed, set_link, link_hash, \
                        link_children) \
                 WHERE d.site_id = v.site_id"
            ))
            .bind(patches.iter().map(|p| p.site).collect::<Vec<_>>())
            .bind(patches.iter().map(|p| p.seat_limit).collect::<Vec<_>>())
            .bind(
                patches
                    .iter()
                    .map(|p| p.parent.is_some())
                    .collect::<Vec<_>>(),
            )
            .bind(
                patches
                    .iter()
                    .map(|p| p.parent.flatten())
                    .collect::<Vec<_>>(),
            )
            .bind(patches.iter().map(|p| p.two_factor).collect::<Vec<_>>())
            .bind(
                patches
                    .iter()
                    .map(|p| p.self_registration.is_some())
                    .collect::<Vec<_>>(),
            )
            .bind(
                patches
                    .iter()
                    .map(|p| p.self_registration.is_some_and(|r| r.0))
                    .collect::<Vec<_>>(),
            )
            .bind(
                patches
                    .iter()
                    .map(|p| p.self_registration.and_then(|r| r.1))
                    .collect::<Vec<_>>(),
            )
            .bind(
                patches
                    .iter()
                    .map(|p| p.self_registration.and_then(|r| r.2))
                    .collect::<Vec<_>>(),
            )
            .bind(patches.iter().map(|p| p.position).collect::<Vec<_>>())
            .bind(patches.iter().map(|p| p.listed).collect::<Vec<_>>())
            .bind(patches.iter().map(|p| p.link.is_some()).collect::<Vec<_>>())
            .bind(
                patches
                    .iter()
                    .map(|p| p.link.as_ref().and_then(|l| l.0.clone()))
                    .collect::<Vec<_>>(),
            )
            .bind(
                patches
                    .iter()
                    .map(|p| p.link.as_ref().is_some_and(|l| l.1))
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *conn)
            .await?;
        }
        Op::UserAdded(_) => {
            let rows: Vec<&UserRow> = run
                .iter()
                .filter_map(|op| match op {
                    Op::UserAdded(r) => Some(r),
                    _ => None,
                })
                .collect();
            // text[] per row travels as one comma-joined text (flag names
            // have no commas); an empty set is ''.
            write(&format!(
                "INSERT INTO {s}.dash_users (site_id, user_id, username, name, role, \
                   permissions, active, hide_organization_settings, added_at, origin, email) \
                 SELECT v.site_id, v.user_id, v.username, v.name, v.role, \
                   string_to_array(v.permissions, ','), v.active, v.hidden, v.at, v.origin, \
                   v.email \
                 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
                   $6::text[], $7::bool[], $8::bool[], $9::timestamptz[], $10::text[], \
                   $11::text[]) \
                   AS v(site_id, user_id, username, name, role, permissions, active, hidden, \
                        at, origin, email)"
            ))
            .bind(rows.iter().map(|r| r.site).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.user).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.username.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.name.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.role.clone()).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|r| r.permissions.join(","))
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|r| r.active).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.hidden).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.origin.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.email.clone()).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        Op::UserPatch(_) => {
            let mut merged: HashMap<(Uuid, Uuid), UserPatch> = HashMap::new();
            for op in run {
                if let Op::UserPatch(p) = op {
                    merged
                        .entry((p.site, p.user))
                        .and_modify(|m| m.then(p))
                        .or_insert_with(|| p.clone());
                }
            }
            let patches: Vec<UserPatch> = merged.into_values().collect();
            write(&format!(
                "UPDATE {s}.dash_users u SET \
                   role = COALESCE(v.role, u.role), \
                   permissions = COALESCE(string_to_array(v.permissions, ','), u.permissions), \
                   active = COALESCE(v.active, u.active), \
                   hide_organization_settings = COALESCE(v.hidden, u.hide_organization_settings), \
                   name = CASE WHEN v.details THEN v.name ELSE u.name END, \
                   email = CASE WHEN v.details THEN v.email ELSE u.email END \
                 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bool[], \
                   $6::bool[], $7::bool[], $8::text[], $9::text[]) \
                   AS v(site_id, user_id, role, permissions, active, hidden, details, name, email) \
                 WHERE u.site_id = v.site_id AND u.user_id = v.user_id"
            ))
            .bind(patches.iter().map(|p| p.site).collect::<Vec<_>>())
            .bind(patches.iter().map(|p| p.user).collect::<Vec<_>>())
            .bind(patches.iter().map(|p| p.role.clone()).collect::<Vec<_>>())
            .bind(
                patches
                    .iter()
                    .map(|p| p.permissions.as_ref().map(|f| f.join(",")))
                    .collect::<Vec<_>>(),
            )
            .bind(patches.iter().map(|p| p.active).collect::<Vec<_>>())
            .bind(patches.iter().map(|p| p.hidden).collect::<Vec<_>>())
            .bind(
                patches
                    .iter()
                    .map(|p| p.details.is_some())
                    .collect::<Vec<_>>(),
            )
            .bind(
                patches
                    .iter()
                    .map(|p| p.details.as_ref().map(|d| d.0.clone()))
                    .collect::<Vec<_>>(),
            )
            .bind(
                patches
                    .iter()
                    .map(|p| p.details.as_ref().and_then(|d| d.1.clone()))
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *conn)
            .await?;
        }
        Op::Access { .. } => {
            let mut merged: HashMap<(Uuid, Uuid, Uuid), Option<String>> = HashMap::new();
            for op in run {
                if let Op::Access {
                    site,
                    user,
                    scorecard,
                    level,
                } = op
                {
                    merged.insert((*site, *user, *scorecard), level.clone());
                }
            }
            let mut set: (Vec<Uuid>, Vec<Uuid>, Vec<Uuid>, Vec<String>) = Default::default();
            let mut removed: (Vec<Uuid>, Vec<Uuid>, Vec<Uuid>) = Default::default();
            for ((site, user, scorecard), level) in merged {
                match level {
                    Some(level) => {
                        set.0.push(site);
                        set.1.push(user);
                        set.2.push(scorecard);
                        set.3.push(level);
                    }
                    None => {
                        removed.0.push(site);
                        removed.1.push(user);
                        removed.2.push(scorecard);
                    }
                }
            }
            write(&format!(
                "INSERT INTO {s}.dash_access (site_id, user_id, scorecard_id, level) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[]) \
                 ON CONFLICT (site_id, user_id, scorecard_id) DO UPDATE SET level = EXCLUDED.level"
            ))
            .bind(&set.0)
            .bind(&set.1)
            .bind(&set.2)
            .bind(&set.3)
            .execute(&mut *conn)
            .await?;
            write(&format!(
                "DELETE FROM {s}.dash_access a \
                 USING unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS v(site_id, user_id, scorecard_id) \
                 WHERE a.site_id = v.site_id AND a.user_id = v.user_id \
                   AND a.scorecard_id = v.scorecard_id"
            ))
            .bind(&removed.0)
            .bind(&removed.1)
            .bind(&removed.2)
            .execute(&mut *conn)
            .await?;
        }
        Op::ScorecardLifecycle { .. } => {
            for op in run {
                if let Op::ScorecardLifecycle { scorecard, name } = op {
                    scorecard_lifecycle(conn, s, *scorecard, name.as_deref()).await?;
                }
            }
        }
        Op::ScorecardCreated { .. } => {
            let mut ids = Vec::with_capacity(run.len());
            let mut sites = Vec::with_capacity(run.len());
            let mut names = Vec::with_capacity(run.len());
            for op in run {
                if let Op::ScorecardCreated {
                    scorecard,
                    site,
                    name,
                } = op
                {
                    ids.push(*scorecard);
                    sites.push(*site);
                    names.push(name.clone());
                }
            }
            write(&format!(
                "INSERT INTO {s}.dash_scorecards (scorecard_id, site_id, name) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[])"
            ))
            .bind(ids)
            .bind(sites)
            .bind(names)
            .execute(&mut *conn)
            .await?;
        }
        Op::Link(_) => {
            // Status changes are rare: one statement per event.
            for op in run {
                if let Op::Link(change) = op {
                    write_link_change(conn, s, change).await?;
                }
            }
        }
        Op::Share { .. } => {
            let mut merged: HashMap<(Uuid, Uuid, Uuid), Option<&ShareRow>> = HashMap::new();
            for op in run {
                if let Op::Share {
                    from,
                    to,
                    scorecard,
                    shared,
                } = op
                {
                    merged.insert((*from, *to, *scorecard), shared.as_ref());
                }
            }
            let (mut froms, mut tos, mut scorecards) = (vec![], vec![], vec![]);
            let (mut ats, mut by_users, mut positions, mut event_ids) =
                (vec![], vec![], vec![], vec![]);
            let (mut gone_froms, mut gone_tos, mut gone_scorecards) = (vec![], vec![], vec![]);
            for ((from, to, scorecard), shared) in merged {
                match shared {
                    Some(row) => {
                        froms.push(from);
                        tos.push(to);
                        scorecards.push(scorecard);
                        ats.push(row.at);
                        by_users.push(row.by_user);
                        positions.push(row.position);
                        event_ids.push(row.event_id);
                    }
                    None => {
                        gone_froms.push(from);
                        gone_tos.push(to);
                        gone_scorecards.push(scorecard);
                    }
                }
            }
            // Keys are distinct: the delete and the upsert commute. The
            // command service shares only scorecards of the link's sharing
            // site, created (and so written here) before.
            if !gone_froms.is_empty() {
                write(&format!(
                    "DELETE FROM {s}.dash_shared d \
                     USING unnest($1::uuid[], $2::uuid[], $3::uuid[]) \
                       AS v(from_site, to_site, scorecard_id) \
                     WHERE d.from_site = v.from_site AND d.to_site = v.to_site \
                       AND d.scorecard_id = v.scorecard_id"
                ))
                .bind(gone_froms)
                .bind(gone_tos)
                .bind(gone_scorecards)
                .execute(&mut *conn)
                .await?;
            }
            if !froms.is_empty() {
                write(&format!(
                    "INSERT INTO {s}.dash_shared (from_site, to_site, scorecard_id, \
                       scorecard_name, owner_code, shared_at, shared_by_user, last_position, \
                       event_id) \
                     SELECT v.from_site, v.to_site, v.scorecard_id, sc.name, st.code, v.at, \
                       v.by_user, v.position, v.event_id \
                     FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[], \
                       $5::uuid[], $6::int8[], $7::uuid[]) \
                       AS v(from_site, to_site, scorecard_id, at, by_user, position, event_id) \
                     JOIN {s}.dash_scorecards sc ON sc.scorecard_id = v.scorecard_id \
                     JOIN {s}.dash_sites st ON st.site_id = sc.site_id \
                     ON CONFLICT (from_site, to_site, scorecard_id) DO UPDATE SET \
                       shared_at = EXCLUDED.shared_at, \
                       shared_by_user = EXCLUDED.shared_by_user, \
                       last_position = EXCLUDED.last_position, event_id = EXCLUDED.event_id"
                ))
                .bind(froms)
                .bind(tos)
                .bind(scorecards)
                .bind(ats)
                .bind(by_users)
                .bind(positions)
                .bind(event_ids)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(())
}

/// Writes one event's status change of its links (one statement).
async fn write_link_change(
    conn: &mut PgConnection,
    s: &str,
    change: &LinkChange,
) -> Result<(), ProjectionError> {
    let (froms, tos): (Vec<Uuid>, Vec<Uuid>) = change.links.iter().copied().unzip();
    match change.kind {
        LinkChangeKind::Requested { requester } => {
            // A new request starts from nothing shared (R-CONN-4).
            write(&format!(
                "WITH v AS (SELECT * FROM unnest($1::uuid[], $2::uuid[]) AS v(from_site, to_site)), \
                 cleared AS (DELETE FROM {s}.dash_shared d USING v \
                   WHERE d.from_site = v.from_site AND d.to_site = v.to_site) \
                 INSERT INTO {s}.dash_links (from_site, to_site, status, requester, \
                   requested_by_user, requested_at, last_position, last_event_id) \
                 SELECT v.from_site, v.to_site, 'awaiting_approval', $3, $4, $5, $6, $7 FROM v \
                 ON CONFLICT (from_site, to_site) DO UPDATE SET \
                   status = EXCLUDED.status, requester = EXCLUDED.requester, \
                   requested_by_user = EXCLUDED.requested_by_user, \
                   requested_at = EXCLUDED.requested_at, \
                   decided_at = NULL, decided_by_site = NULL, decided_by_user = NULL, \
                   last_position = EXCLUDED.last_position, last_event_id = EXCLUDED.last_event_id"
            ))
            .bind(froms)
            .bind(tos)
            .bind(requester)
            .bind(change.by_user)
            .bind(change.at)
            .bind(change.position)
            .bind(change.event_id)
            .execute(&mut *conn)
            .await?;
        }
        LinkChangeKind::Decided {
            status,
            by_site,
            clears,
        } => {
            write(&format!(
                "WITH v AS (SELECT * FROM unnest($1::uuid[], $2::uuid[]) AS v(from_site, to_site)), \
                 cleared AS (DELETE FROM {s}.dash_shared d USING v \
                   WHERE $8 AND d.from_site = v.from_site AND d.to_site = v.to_site) \
                 UPDATE {s}.dash_links l SET status = $3, decided_at = $4, decided_by_site = $5, \
                   decided_by_user = $6, last_position = $7, last_event_id = $9 \
                 FROM v WHERE l.from_site = v.from_site AND l.to_site = v.to_site"
            ))
            .bind(froms)
            .bind(tos)
            .bind(status)
            .bind(change.at)
            .bind(by_site)
            .bind(change.by_user)
            .bind(change.position)
            .bind(clears)
            .bind(change.event_id)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// A rename updates the scorecard's name where it is shown; an archive
/// deletes its row and its shares (gone from every answer).
async fn scorecard_lifecycle(
    conn: &mut PgConnection,
    s: &str,
    scorecard: Uuid,
    name: Option<&str>,
) -> Result<(), ProjectionError> {
    let statements: &[&str] = match name {
        Some(_) => &[
            "UPDATE {s}.dash_scorecards SET name = $2 WHERE scorecard_id = $1",
            "UPDATE {s}.dash_shared SET scorecard_name = $2 WHERE scorecard_id = $1",
        ],
        None => &[
            "DELETE FROM {s}.dash_shared WHERE scorecard_id = $1",
            "DELETE FROM {s}.dash_access WHERE scorecard_id = $1",
            "DELETE FROM {s}.dash_scorecards WHERE scorecard_id = $1",
        ],
    };
    for statement in statements {
        let sql = statement.replace("{s}", s);
        let query = write(&sql).bind(scorecard);
        match name {
            Some(name) => query.bind(name).execute(&mut *conn).await?,
            None => query.execute(&mut *conn).await?,
        };
    }
    Ok(())
}
