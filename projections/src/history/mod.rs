//! Looking back: as of any past global position or time, and
//! diffs of who gained and lost access between two moments.
//!
//! **Design: scoped replay** (`docs/audit.md` says why). An answer about a
//! user or a target depends only on a few streams: the sites involved
//! (`site-*`: users, flags, assignments, codes), their content
//! (`content-*`: scorecards, objects, placements, relationships) and the
//! connections between them (`connection-*`). An as-of question reads those
//! streams up to the position and feeds them, in global order, to a fresh
//! [`AccessIndex`]: the very code that answers the live questions. So the
//! answer is exactly what a replay of the whole log up to that position
//! gives, without replaying the whole log. Which site a user or a target
//! belongs to comes from the event that created it (indexed by migration
//! `20261124000004_history_indexes.sql`); ids never move between sites.
//!
//! With a [`LiveArchive`] (`archive.rs`), the streams come from memory
//! instead of PostgreSQL whenever the archive has reached the position: the
//! same events, decoded once, so the same answers.
//!
//! **API boundary:** [`History`], [`LiveArchive`], [`Moment`], [`Scope`],
//! [`AccessDiff`], [`HistoryError`].

mod archive;

pub use archive::LiveArchive;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shareledger_core::catalog::{
    connection_stream, content_stream, site_stream, AccessLevel, Action, Link, SiteId, UserId,
};
use shareledger_events::store::{LogError, PgEventStore};
use shareledger_events::StreamName;
use uuid::Uuid;

use crate::access::{
    AccessError, AccessIndex, Explanation, LookupPage, LookupQuery, Target, Viewer, Visible,
    MAX_PAGE,
};
use crate::ProjectionError;

/// A past moment: a global position, or a time (the last position recorded
/// at or before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Moment {
    Position(u64),
    Time(DateTime<Utc>),
}

/// Why a question about the past has no answer.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("position {wanted} is beyond the log's head ({head})")]
    Future { wanted: u64, head: u64 },
    #[error("the diff's moments are out of order: {from} is after {to}")]
    Backwards { from: u64, to: u64 },
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl HistoryError {
    /// A stable code per variant, for the HTTP edge and the CLI.
    pub fn code(&self) -> &'static str {
        match self {
            HistoryError::Future { .. } => "future_position",
            HistoryError::Backwards { .. } => "moments_out_of_order",
            HistoryError::Access(e) => e.code(),
            HistoryError::Log(_) | HistoryError::Projection(_) | HistoryError::Database(_) => {
                "internal"
            }
        }
    }
}

/// What an as-of question needs of the sites around its centre (see
/// `History::replay`). With the archive, partners that cannot matter at the
/// position are left out; from the log, every partner is read.
#[derive(Debug, Clone, Copy)]
enum Needs<'a> {
    /// about one user of the centre and one target: the other
    /// site's content whatever the links (a target must be known to be
    /// judged, even if unseen), not its users.
    Pair,
    /// What the centre's users see (Q-2, user diffs): the content of the
    /// partners that share something with the centre, no partner's users.
    CentreUsersSee,
    /// Who sees the centre's content (Q-3, site and partner diffs): the
    /// users and content of the partners the centre shares something with.
    SeeCentre,
    /// Who sees one target of the centre (Q-3, target diffs): like
    /// `SeeCentre`, but a partner's content only if it is in `content_of`
    /// (the partners whose relationships can matter).
    SeeTarget { content_of: &'a BTreeSet<SiteId> },
    /// Any question about the centre's users or content: every partner's
    /// users and content.
    Everything,
}

/// An index of the streams one question needs, as of one position.
#[derive(Debug)]
pub struct PastIndex {
    pub position: u64,
    pub index: AccessIndex,
    /// How many events were replayed to build it.
    pub events: usize,
}

/// What a diff is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", content = "id", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Scope {
    /// Everything the user can see.
    User(UserId),
    /// Who sees the target.
    Target(Target),
    /// Who sees the site's content.
    Site(SiteId),
    /// Which of the partner's users see the site's content.
    Partner { site: SiteId, partner: SiteId },
}

/// One access that changed between two moments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessChange {
    pub user: UserId,
    /// The user's username (as of the later moment that knows it).
    pub username: Option<String>,
    pub user_site: SiteId,
    pub target: Target,
    /// The scorecard's or object's name (as of the later moment that knows
    /// it: an archived one keeps the name it had).
    pub target_name: Option<String>,
    pub owner: SiteId,
    /// The owner's site code (R-SHARE-6).
    pub owner_code: Option<String>,
    pub before: Option<AccessLevel>,
    pub after: Option<AccessLevel>,
}

/// Who gained, lost or changed which access between two positions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessDiff {
    pub scope: Scope,
    pub from: u64,
    pub to: u64,
    pub gained: Vec<AccessChange>,
    pub lost: Vec<AccessChange>,
    /// Still visible, at another level.
    pub changed: Vec<AccessChange>,
}

/// The access model as of any past moment.
#[derive(Debug, Clone)]
pub struct History {
    store: PgEventStore,
    archive: Option<LiveArchive>,
}

fn stream(name: String) -> StreamName {
    StreamName::parse(&name).expect("catalog stream names are valid")
}

/// The site of the earliest of creation events (stream name, position).
fn first_site(rows: Vec<(String, i64)>) -> Option<SiteId> {
    rows.into_iter()
        .min_by_key(|(_, position)| *position)
        .and_then(|(name, _)| site_of_stream(&name))
}

/// The site of a `site-…`/`content-…` stream name.
fn site_of_stream(name: &str) -> Option<SiteId> {
    let suffix = name.split_once('-')?.1;
    Uuid::parse_str(suffix).ok().map(SiteId)
}

impl History {
    /// Looks back through the log in PostgreSQL.
    pub fn new(store: PgEventStore) -> Self {
        Self {
            store,
            archive: None,
        }
    }

    /// Looks back through `archive` where it has reached the position asked
    /// about, through the log in PostgreSQL otherwise.
    pub fn with_archive(store: PgEventStore, archive: LiveArchive) -> Self {
        Self {
            store,
            archive: Some(archive),
        }
    }

    /// The archive, if it holds everything up to `position`.
    fn archive_at(&self, position: u64) -> Option<&LiveArchive> {
        self.archive.as_ref().filter(|a| a.covers(position))
    }

    /// The global position a moment stands for. A position beyond the head
    /// is refused; a time maps to the last position recorded at or before it.
    pub async fn position(&self, moment: Moment) -> Result<u64, HistoryError> {
        match moment {
            Moment::Position(p) => {
                let head = self.store.head_position().await?;
                if p > head {
                    return Err(HistoryError::Future { wanted: p, head });
                }
                Ok(p)
            }
            Moment::Time(t) => Ok(self.store.position_at(t).await?),
        }
    }

    /// The site a user belonged to, if they existed at `position`.
    pub async fn site_of_user(
        &self,
        user: UserId,
        position: u64,
    ) -> Result<Option<SiteId>, HistoryError> {
        if let Some(archive) = self.archive_at(position) {
            return Ok(archive.site_of_user(user, position));
        }
        // No ORDER BY … LIMIT: with it PostgreSQL may walk the log in global
        // order hoping for an early match instead of using the partial
        // index. An id is created once; the earliest creation wins anyway.
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT stream_name, global_position FROM sl_events \
             WHERE event_type = 'UserAdded' AND (data -> 'user' ->> 'user_id') = $1 \
               AND global_position <= $2",
        )
        .bind(user.0.to_string())
        .bind(position as i64)
        .fetch_all(self.store.pool())
        .await?;
        Ok(first_site(rows))
    }

    /// The site a target belonged to, if it existed at `position`.
    pub async fn owner_of(
        &self,
        target: Target,
        position: u64,
    ) -> Result<Option<SiteId>, HistoryError> {
        if let Some(archive) = self.archive_at(position) {
            return Ok(archive.owner_of(target, position));
        }
        let (sql, id) = match target {
            Target::Scorecard(id) => (
                "SELECT stream_name, global_position FROM sl_events \
                 WHERE event_type = 'ScorecardCreated' AND (data ->> 'scorecard_id') = $1 \
                   AND global_position <= $2",
                id.0,
            ),
            Target::Object(id) => (
                "SELECT stream_name, global_position FROM sl_events \
                 WHERE event_type = 'ObjectCreated' AND (data ->> 'object_id') = $1 \
                   AND global_position <= $2",
                id.0,
            ),
        };
        let rows: Vec<(String, i64)> = sqlx::query_as(sql)
            .bind(id.to_string())
            .bind(position as i64)
            .fetch_all(self.store.pool())
            .await?;
        Ok(first_site(rows))
    }

    /// The sites `site` has (or had) a connection stream with (at least
    /// those it had at `position`).
    async fn partners(
        &self,
        site: SiteId,
        position: u64,
    ) -> Result<BTreeSet<SiteId>, HistoryError> {
        if let Some(archive) = self.archive_at(position) {
            return Ok(archive.partners(site));
        }
        let suffix = site.stream_suffix();
        let names = self.store.stream_names("connection-", &suffix).await?;
        let mut partners = BTreeSet::new();
        for name in names {
            for part in name.trim_start_matches("connection-").split('-') {
                if part != suffix {
                    if let Ok(id) = Uuid::parse_str(part) {
                        partners.insert(SiteId(id));
                    }
                }
            }
        }
        Ok(partners)
    }

    /// Replays, up to `position`, the centre's site and content streams, the
    /// connection streams between `centre` and each other site of `sites`,
    /// and of each other site what the question `needs` (below). Of a site
    /// whose users cannot matter, only `SiteRegistered` (its code) is read.
    async fn replay(
        &self,
        centre: SiteId,
        sites: &BTreeSet<SiteId>,
        position: u64,
        needs: Needs<'_>,
    ) -> Result<PastIndex, HistoryError> {
        let archive = self.archive_at(position);
        // Whether `link` is active with something shared over it at the
        // position: known at once from the archive; without it, assumed.
        let shares = |connection: &str, from: SiteId, to: SiteId| {
            archive
                .is_none_or(|archive| archive.shares_over(connection, Link { from, to }, position))
        };
        let mut streams = Vec::with_capacity(sites.len() * 3);
        let mut codes_only = Vec::new();
        for &site in sites {
            if site == centre {
                streams.push(site_stream(site));
                streams.push(content_stream(site));
                continue;
            }
            let connection = connection_stream(centre, site);
            let (users, content) = match needs {
                Needs::Pair => (false, true),
                // The centre's users see nothing of a partner's content
                // unless the partner shares something with the centre over
                // an active link (R-SHARE-1, R-CONN-4).
                Needs::CentreUsersSee => (false, shares(&connection, site, centre)),
                // Likewise, a partner's users see nothing of the centre's
                // content (and its relationships to it give nothing) unless
                // the centre shares something with the partner.
                Needs::SeeCentre => {
                    let seen = shares(&connection, centre, site);
                    (seen, seen)
                }
                Needs::SeeTarget { content_of } => {
                    let seen = shares(&connection, centre, site);
                    (seen, seen && content_of.contains(&site))
                }
                Needs::Everything => (true, true),
            };
            if users {
                streams.push(site_stream(site));
            } else {
                codes_only.push(site_stream(site));
            }
            if content {
                streams.push(content_stream(site));
            }
            streams.push(connection);
        }
        let mut index = AccessIndex::new();
        if let Some(archive) = archive {
            let events = archive.replay(&streams, &codes_only, position, |event| {
                index.apply_decoded(&event.provenance, &event.decoded)
            })?;
            return Ok(PastIndex {
                position,
                index,
                events,
            });
        }
        let streams: Vec<StreamName> = streams.into_iter().map(stream).collect();
        let codes_only: Vec<StreamName> = codes_only.into_iter().map(stream).collect();
        let events = self
            .store
            .read_streams_until(&streams, &codes_only, &["SiteRegistered"], position)
            .await?;
        for event in &events {
            index.apply(event)?;
        }
        Ok(PastIndex {
            position,
            index,
            events: events.len(),
        })
    }

    /// The index of everything `centre` and its partners hold, at `position`:
    /// enough for any question about a user of `centre` or
    /// about who sees `centre`'s content.
    pub async fn index_around(
        &self,
        centre: SiteId,
        position: u64,
    ) -> Result<PastIndex, HistoryError> {
        let mut sites = self.partners(centre, position).await?;
        sites.insert(centre);
        self.replay(centre, &sites, position, Needs::Everything)
            .await
    }

    /// Like [`History::index_around`], for who sees `centre`'s content
    /// only: with the archive, the partners `centre` shares nothing
    /// with at `position` are left out (their users could see none of it).
    async fn index_seeing(&self, centre: SiteId, position: u64) -> Result<PastIndex, HistoryError> {
        let mut sites = self.partners(centre, position).await?;
        sites.insert(centre);
        self.replay(centre, &sites, position, Needs::SeeCentre)
            .await
    }

    /// Like [`History::index_seeing`], for who sees one `target` of `owner`
    /// only: with the archive, the partners left out are also those
    /// shared nothing the target can show on at `position`, and of those
    /// kept only the ones that related the target (or a container of it)
    /// are read with their content.
    async fn index_seeing_target(
        &self,
        owner: SiteId,
        target: Target,
        position: u64,
    ) -> Result<PastIndex, HistoryError> {
        let Some(archive) = self.archive_at(position) else {
            return self.index_seeing(owner, position).await;
        };
        let seeing = archive.partners_seeing(owner, target, position);
        let content_of: BTreeSet<SiteId> = seeing
            .iter()
            .filter(|(_, related)| **related)
            .map(|(site, _)| *site)
            .collect();
        let mut sites: BTreeSet<SiteId> = seeing.into_keys().collect();
        sites.insert(owner);
        self.replay(
            owner,
            &sites,
            position,
            Needs::SeeTarget {
                content_of: &content_of,
            },
        )
        .await
    }

    /// Like [`History::index_around`], for what `centre`'s own users see
    /// only: the partners' users are left out, and so (with the
    /// archive) is the content of partners sharing nothing with `centre` at
    /// `position`, which a check on it would call unknown.
    pub async fn index_for_users_of(
        &self,
        centre: SiteId,
        position: u64,
    ) -> Result<PastIndex, HistoryError> {
        let mut sites = self.partners(centre, position).await?;
        sites.insert(centre);
        self.replay(centre, &sites, position, Needs::CentreUsersSee)
            .await
    }

    /// The index for questions about `user`, or `UnknownUser` if they did
    /// not exist at `position`.
    async fn index_for_user(&self, user: UserId, position: u64) -> Result<PastIndex, HistoryError> {
        let site = self
            .site_of_user(user, position)
            .await?
            .ok_or(AccessError::UnknownUser(user))?;
        self.index_for_users_of(site, position).await
    }

    /// The index for questions about `user` and `target` alone:
    /// the user's site and the target's owner, and the connection between
    /// them. What the user's site holds of other partners (relationships to
    /// their objects) cannot change the user's access to this target.
    pub async fn index_for_pair(
        &self,
        user: UserId,
        target: Target,
        position: u64,
    ) -> Result<PastIndex, HistoryError> {
        let (site, owner) = tokio::try_join!(
            self.site_of_user(user, position),
            self.owner_of(target, position)
        )?;
        let site = site.ok_or(AccessError::UnknownUser(user))?;
        let mut sites = BTreeSet::from([site]);
        sites.extend(owner);
        self.replay(site, &sites, position, Needs::Pair).await
    }

    /// Q-1 as of a moment: the user's level on the target.
    pub async fn level(
        &self,
        at: Moment,
        user: UserId,
        target: Target,
    ) -> Result<(u64, Option<AccessLevel>), HistoryError> {
        let position = self.position(at).await?;
        let past = self.index_for_pair(user, target, position).await?;
        Ok((position, past.index.level(user, target)?))
    }

    /// Q-1 as of a moment: may the user take the action on the target?
    pub async fn check(
        &self,
        at: Moment,
        user: UserId,
        target: Target,
        action: Action,
    ) -> Result<(u64, bool), HistoryError> {
        let position = self.position(at).await?;
        let past = self.index_for_pair(user, target, position).await?;
        Ok((position, past.index.check(user, target, action)?))
    }

    /// Q-2 as of a moment: one page of what the user could see.
    pub async fn lookup(
        &self,
        at: Moment,
        user: UserId,
        query: &LookupQuery,
    ) -> Result<(u64, LookupPage), HistoryError> {
        let position = self.position(at).await?;
        let past = self.index_for_user(user, position).await?;
        Ok((position, past.index.lookup(user, query)?))
    }

    /// Q-3 as of a moment: who could see the target.
    pub async fn viewers(
        &self,
        at: Moment,
        target: Target,
    ) -> Result<(u64, Vec<Viewer>), HistoryError> {
        let position = self.position(at).await?;
        let owner = self
            .owner_of(target, position)
            .await?
            .ok_or(AccessError::UnknownTarget(target))?;
        let past = self.index_seeing_target(owner, target, position).await?;
        Ok((position, past.index.viewers(target)?))
    }

    /// Q-4 as of a moment: why the user could (or could not) see the target.
    pub async fn explain(
        &self,
        at: Moment,
        user: UserId,
        target: Target,
    ) -> Result<(u64, Explanation), HistoryError> {
        let position = self.position(at).await?;
        let past = self.index_for_pair(user, target, position).await?;
        Ok((position, past.index.explain(user, target)?))
    }

    /// Who gained, lost or changed access in `scope` between two moments.
    pub async fn diff(
        &self,
        scope: Scope,
        from: Moment,
        to: Moment,
    ) -> Result<AccessDiff, HistoryError> {
        let from = self.position(from).await?;
        let to = self.position(to).await?;
        if from > to {
            return Err(HistoryError::Backwards { from, to });
        }
        let (before, names_before) = self.accesses(scope, from).await?;
        let (after, mut names) = self.accesses(scope, to).await?;
        for (id, name) in names_before {
            names.entry(id).or_insert(name);
        }
        let name = |id: Uuid| names.get(&id).cloned();
        let mut diff = AccessDiff {
            scope,
            from,
            to,
            gained: Vec::new(),
            lost: Vec::new(),
            changed: Vec::new(),
        };
        let keys: BTreeSet<_> = before.keys().chain(after.keys()).copied().collect();
        for key in keys {
            let (b, a) = (before.get(&key), after.get(&key));
            let (user, target) = key;
            let facts = a.or(b).expect("a key of either side");
            let target_id = match target {
                Target::Scorecard(s) => s.0,
                Target::Object(o) => o.0,
            };
            let change = AccessChange {
                user,
                username: name(user.0),
                user_site: facts.0,
                target,
                target_name: name(target_id),
                owner: facts.1,
                owner_code: name(facts.1 .0),
                before: b.map(|f| f.2),
                after: a.map(|f| f.2),
            };
            match (b, a) {
                (None, Some(_)) => diff.gained.push(change),
                (Some(_), None) => diff.lost.push(change),
                (Some(x), Some(y)) if x.2 != y.2 => diff.changed.push(change),
                _ => {}
            }
        }
        Ok(diff)
    }

    /// Every (user, target) access in scope at `position`, with the user's
    /// site, the target's owner and the level, and the names of the users,
    /// targets and owners named (by id). Out of existence is empty.
    async fn accesses(
        &self,
        scope: Scope,
        position: u64,
    ) -> Result<(Accesses, BTreeMap<Uuid, String>), HistoryError> {
        let mut out = BTreeMap::new();
        let mut names = BTreeMap::new();
        let mut name_all = |index: &AccessIndex, out: &Accesses| {
            for ((user, target), (_, owner, _)) in out {
                let target = match target {
                    Target::Scorecard(s) => s.0,
                    Target::Object(o) => o.0,
                };
                for id in [user.0, target, owner.0] {
                    if let std::collections::btree_map::Entry::Vacant(entry) = names.entry(id) {
                        if let Some(name) = index.plain_name(id) {
                            entry.insert(name);
                        }
                    }
                }
            }
        };
        match scope {
            Scope::User(user) => {
                let Some(site) = self.site_of_user(user, position).await? else {
                    return Ok((out, names));
                };
                let past = self.index_for_users_of(site, position).await?;
                for item in complete_lookup(&past.index, user, None)? {
                    out.insert((user, item.target), (site, item.site, item.level));
                }
                name_all(&past.index, &out);
            }
            Scope::Target(target) => {
                let Some(owner) = self.owner_of(target, position).await? else {
                    return Ok((out, names));
                };
                let past = self.index_seeing_target(owner, target, position).await?;
                for v in past.index.viewers(target)? {
                    out.insert((v.user, target), (v.site, owner, v.level));
                }
                name_all(&past.index, &out);
            }
            Scope::Site(site) | Scope::Partner { site, .. } => {
                let only = match scope {
                    Scope::Partner { partner, .. } => Some(partner),
                    _ => None,
                };
                let past = self.index_seeing(site, position).await?;
                for viewer_site in past.index.sites() {
                    if only.is_some_and(|p| p != viewer_site) {
                        continue;
                    }
                    for user in past.index.users_of(viewer_site) {
                        for item in complete_lookup(&past.index, user, Some(site))? {
                            out.insert((user, item.target), (viewer_site, site, item.level));
                        }
                    }
                }
                name_all(&past.index, &out);
            }
        }
        Ok((out, names))
    }
}

/// Every (user, target) access in scope: the user's site, the target's
/// owner, the level.
type Accesses = BTreeMap<(UserId, Target), (SiteId, SiteId, AccessLevel)>;

/// Every page of a lookup.
fn complete_lookup(
    index: &AccessIndex,
    user: UserId,
    site: Option<SiteId>,
) -> Result<Vec<Visible>, AccessError> {
    let mut items = Vec::new();
    let mut query = LookupQuery {
        site,
        kind: None,
        after: None,
        limit: MAX_PAGE,
    };
    loop {
        let page = index.lookup(user, &query)?;
        items.extend(page.items);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(items),
        }
    }
}
