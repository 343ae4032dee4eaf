//! What each event changes in the tables, as ops of a few kinds, and how a
//! batch's ops are scheduled: which kinds commute, and the patches and
//! levels of a user added in the same batch folded into its addition.

use shareledger_core::catalog::{
    ConnectionEvent, ContentEvent, Link, PermissionFlag, Permissions, SiteEvent,
};
use uuid::Uuid;

use crate::dashboard::schedule::Scheduler;
use crate::dashboard::{level_code, snake};
use crate::decode::Decoded;

/// The flags of the model: (all scorecards, instance admin, add/edit
/// scorecard objects).
pub(super) type Flags = (bool, bool, bool);

fn flags(permissions: &Permissions) -> Flags {
    (
        permissions.contains(&PermissionFlag::AllScorecards),
        permissions.contains(&PermissionFlag::InstanceAdmin),
        permissions.contains(&PermissionFlag::AddEditScorecardObjects),
    )
}

/// The kinds of [`Op`]: each kind's ops are merged into runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    UserAdded,
    UserPatch,
    Access,
    ScorecardCreated,
    ObjectCreated,
    Placed,
    Removed,
    Relationship,
    Link,
    Share,
    Archived,
}

impl Kind {
    /// Whether ops of kinds `a` and `b` may not be swapped: placements and
    /// removals (of possibly the same pair); a link's (re)request or
    /// revocation and the shares over it (it empties its shared set).
    ///
    /// An archive conflicts with every kind. Everything else commutes. Object creations commute with placements
    /// and removals: a placement adds rows for the placed object and what
    /// `acc_objects` holds inside it, a removal recomputes the rows of what
    /// `acc_objects` holds inside the removed object, and a creation
    /// inherits the rows its ancestors have when it runs (new ancestors
    /// included); whichever runs first, the other completes the closure.
    /// (No statement reads `acc_scorecards`: rows carry their site.)
    /// Patches and levels of a user added in the same batch are folded into
    /// the pending addition ([`schedule`]).
    pub(super) fn conflict(a: Kind, b: Kind) -> bool {
        use Kind::*;
        let pair = |x: Kind, y: Kind| (a == x && b == y) || (a == y && b == x);
        // An archive deletes rows of every table: nothing moves across it.
        a == Archived || b == Archived || pair(Removed, Placed) || pair(Link, Share)
    }
}

/// Adds `op` to the scheduler, folding a patch or a level of a user added
/// in this batch into its pending addition.
pub(super) fn schedule(scheduler: &mut Scheduler<Kind, Op>, op: Op) {
    let target = match &op {
        Op::UserPatch { user, .. } | Op::Access { user, .. } => Some(*user),
        _ => None,
    };
    if let Some(target) = target {
        let added = scheduler.pending_mut(Kind::UserAdded).and_then(|ops| {
            ops.iter_mut().rev().find(|o| match o {
                Op::UserAdded { user, .. } => *user == target,
                _ => false,
            })
        });
        if let Some(Op::UserAdded {
            flags,
            active,
            access,
            ..
        }) = added
        {
            match op {
                Op::UserPatch {
                    flags: new_flags,
                    active: new_active,
                    ..
                } => {
                    *flags = new_flags.unwrap_or(*flags);
                    *active = new_active.unwrap_or(*active);
                }
                Op::Access {
                    scorecard, level, ..
                } => {
                    access.retain(|(s, _)| *s != scorecard);
                    if let Some(level) = level {
                        access.push((scorecard, level));
                    }
                }
                _ => unreachable!("only patches and levels are folded"),
            }
            return;
        }
    }
    let kind = op.kind();
    scheduler.push(kind, op);
}

/// One change to the tables; runs of one kind are written by a few
/// statements (see [`write_run`](super::write::write_run)).
#[derive(Debug)]
pub(super) enum Op {
    UserAdded {
        user: Uuid,
        site: Uuid,
        flags: Flags,
        active: bool,
        access: Vec<(Uuid, i16)>,
    },
    /// Flags and/or active changed; merged last-wins per user.
    UserPatch {
        user: Uuid,
        flags: Option<Flags>,
        active: Option<bool>,
    },
    /// A level set (`Some`) or removed (`None`); merged last-wins per key.
    Access {
        user: Uuid,
        scorecard: Uuid,
        level: Option<i16>,
    },
    ScorecardCreated {
        scorecard: Uuid,
        site: Uuid,
    },
    ObjectCreated {
        object: Uuid,
        site: Uuid,
        kind: String,
        container: Option<Uuid>,
    },
    Placed {
        object: Uuid,
        scorecard: Uuid,
        site: Uuid,
    },
    Removed {
        object: Uuid,
        scorecard: Uuid,
    },
    /// A relationship built (`Some`) or removed (`None`); last-wins per id.
    Relationship {
        id: Uuid,
        row: Option<RelationshipRow>,
    },
    /// A link's activity; `clears` empties its shared set. Merged per link:
    /// the last activity, and cleared if any op clears (no share can come
    /// between within a run).
    Link {
        from: Uuid,
        to: Uuid,
        active: bool,
        clears: bool,
    },
    /// A scorecard shared (`true`) or unshared; last-wins per key.
    Share {
        from: Uuid,
        to: Uuid,
        scorecard: Uuid,
        shared: bool,
    },
    /// A scorecard archived: its rows go from every table (its own site's
    /// users' levels on it included).
    ScorecardArchived {
        scorecard: Uuid,
        site: Uuid,
    },
    /// An object archived (with nothing inside it): its rows go.
    ObjectArchived {
        object: Uuid,
    },
}

impl Op {
    fn kind(&self) -> Kind {
        match self {
            Op::UserAdded { .. } => Kind::UserAdded,
            Op::UserPatch { .. } => Kind::UserPatch,
            Op::Access { .. } => Kind::Access,
            Op::ScorecardCreated { .. } => Kind::ScorecardCreated,
            Op::ObjectCreated { .. } => Kind::ObjectCreated,
            Op::Placed { .. } => Kind::Placed,
            Op::Removed { .. } => Kind::Removed,
            Op::Relationship { .. } => Kind::Relationship,
            Op::Link { .. } => Kind::Link,
            Op::Share { .. } => Kind::Share,
            Op::ScorecardArchived { .. } | Op::ObjectArchived { .. } => Kind::Archived,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct RelationshipRow {
    pub(super) site: Uuid,
    pub(super) origin: Uuid,
    pub(super) object: Uuid,
    pub(super) target_scorecard: Option<Uuid>,
    pub(super) target_object: Option<Uuid>,
}

fn link_ops(links: &[Link], active: bool, clears: bool, ops: &mut Vec<Op>) {
    ops.extend(links.iter().map(|l| Op::Link {
        from: l.from.0,
        to: l.to.0,
        active,
        clears,
    }));
}

/// The ops of one decoded event.
pub(super) fn ops_of(decoded: Decoded, ops: &mut Vec<Op>) {
    match decoded {
        Decoded::Site { site, event } => match event {
            SiteEvent::UserAdded {
                user,
                scorecard_access,
                ..
            } => ops.push(Op::UserAdded {
                user: user.user_id.0,
                site: site.0,
                flags: flags(&user.permissions),
                active: true,
                access: scorecard_access
                    .iter()
                    .map(|(s, l)| (s.0, level_code(*l)))
                    .collect(),
            }),
            SiteEvent::UserRoleChanged {
                user_id,
                permissions,
                ..
            }
            | SiteEvent::UserPermissionsSet {
                user_id,
                permissions,
            } => ops.push(Op::UserPatch {
                user: user_id.0,
                flags: Some(flags(&permissions)),
                active: None,
            }),
            SiteEvent::UserDeactivated { user_id } => ops.push(Op::UserPatch {
                user: user_id.0,
                flags: None,
                active: Some(false),
            }),
            SiteEvent::UserReactivated { user_id } => ops.push(Op::UserPatch {
                user: user_id.0,
                flags: None,
                active: Some(true),
            }),
            SiteEvent::ScorecardAccessGranted {
                user_id,
                scorecard_id,
                level,
            } => ops.push(Op::Access {
                user: user_id.0,
                scorecard: scorecard_id.0,
                level: Some(level_code(level)),
            }),
            SiteEvent::ScorecardAccessRevoked {
                user_id,
                scorecard_id,
            } => ops.push(Op::Access {
                user: user_id.0,
                scorecard: scorecard_id.0,
                level: None,
            }),
            SiteEvent::SiteRegistered { .. }
            | SiteEvent::UserDetailsChanged { .. }
            | SiteEvent::DirectoryListingSet { .. }
            | SiteEvent::SelfRegistrationLinkSet { .. }
            | SiteEvent::SeatLimitSet { .. }
            | SiteEvent::ParentSiteSet { .. }
            | SiteEvent::SelfRegistrationConfigured { .. }
            | SiteEvent::TwoFactorRequirementSet { .. }
            | SiteEvent::OrganizationSettingsHiddenSet { .. } => {}
        },
        Decoded::Content { site, event } => match event {
            ContentEvent::ScorecardCreated { scorecard_id, .. } => ops.push(Op::ScorecardCreated {
                scorecard: scorecard_id.0,
                site: site.0,
            }),
            ContentEvent::ObjectCreated {
                object_id,
                kind,
                container,
                ..
            } => ops.push(Op::ObjectCreated {
                object: object_id.0,
                site: site.0,
                kind: snake(&kind),
                container: container.map(|c| c.0),
            }),
            ContentEvent::ObjectPlacedOnScorecard {
                object_id,
                scorecard_id,
            } => ops.push(Op::Placed {
                object: object_id.0,
                scorecard: scorecard_id.0,
                site: site.0,
            }),
            ContentEvent::ObjectRemovedFromScorecard {
                object_id,
                scorecard_id,
            } => ops.push(Op::Removed {
                object: object_id.0,
                scorecard: scorecard_id.0,
            }),
            ContentEvent::SharedObjectLinked {
                relationship_id,
                scorecard_id,
                origin_site,
                object_id,
            } => ops.push(Op::Relationship {
                id: relationship_id.0,
                row: Some(RelationshipRow {
                    site: site.0,
                    origin: origin_site.0,
                    object: object_id.0,
                    target_scorecard: Some(scorecard_id.0),
                    target_object: None,
                }),
            }),
            ContentEvent::SharedMeasureAggregated {
                relationship_id,
                into_object,
                origin_site,
                object_id,
            } => ops.push(Op::Relationship {
                id: relationship_id.0,
                row: Some(RelationshipRow {
                    site: site.0,
                    origin: origin_site.0,
                    object: object_id.0,
                    target_scorecard: None,
                    target_object: Some(into_object.0),
                }),
            }),
            ContentEvent::RelationshipRemoved {
                relationship_id, ..
            } => ops.push(Op::Relationship {
                id: relationship_id.0,
                row: None,
            }),
            ContentEvent::ScorecardArchived { scorecard_id } => ops.push(Op::ScorecardArchived {
                scorecard: scorecard_id.0,
                site: site.0,
            }),
            ContentEvent::ObjectArchived { object_id } => ops.push(Op::ObjectArchived {
                object: object_id.0,
            }),
            ContentEvent::ObjectFieldUpdated { .. }
            | ContentEvent::ObjectFieldEdited { .. }
            | ContentEvent::ScorecardRenamed { .. }
            | ContentEvent::ObjectRenamed { .. } => {}
        },
        Decoded::Connection(event) => match event {
            ConnectionEvent::ConnectionRequested { links, .. } => {
                link_ops(&links, false, true, ops)
            }
            ConnectionEvent::LinksActivated { links, .. } => link_ops(&links, true, false, ops),
            ConnectionEvent::ConnectionDenied { links, .. }
            | ConnectionEvent::ConnectionRequestCancelled { links, .. } => {
                link_ops(&links, false, false, ops)
            }
            ConnectionEvent::LinkRevoked { link, .. } => link_ops(&[link], false, true, ops),
            ConnectionEvent::ScorecardShared { link, scorecard_id } => ops.push(Op::Share {
                from: link.from.0,
                to: link.to.0,
                scorecard: scorecard_id.0,
                shared: true,
            }),
            ConnectionEvent::ScorecardUnshared {
                link, scorecard_id, ..
            } => ops.push(Op::Share {
                from: link.from.0,
                to: link.to.0,
                scorecard: scorecard_id.0,
                shared: false,
            }),
        },
        Decoded::SiteCode(_) => {}
    }
}
