//! From events to timeline rows: which events are entries, which sites each
//! involves (one row per site, naming the other site as partner), the
//! command that caused it, its subjects and a one-line summary. Pure: what
//! earlier events established (site codes, scorecard owners and names,
//! usernames, relationships) comes in as [`Names`].

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use shareledger_core::catalog::{
    ConnectionEvent, ContentEvent, Directions, Link, RemovalReason, SiteEvent, SiteId, UserOrigin,
};
use shareledger_events::{Actor, RecordedEvent};
use uuid::Uuid;

use crate::decode::Decoded;

/// The command of a consequence until the projection knows its cause's
/// command (it then writes `consequence of <command>`); it stays when the
/// cause is not an entry.
pub(super) const CONSEQUENCE: &str = "consequence";

/// A relationship as built (R-SHARE-4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Relationship {
    /// The site whose shared object is used.
    pub origin: Uuid,
    pub object: Uuid,
    /// The scorecard it shows on (`SharedObjectLinked`).
    pub scorecard: Option<Uuid>,
    /// The aggregation it is used in (`SharedMeasureAggregated`).
    pub into_object: Option<Uuid>,
}

/// What earlier events established, as far as entries need it.
#[derive(Debug, Default)]
pub(super) struct Names {
    /// Site → code.
    pub sites: HashMap<Uuid, String>,
    /// Scorecard → (owner site, name).
    pub scorecards: HashMap<Uuid, (Uuid, String)>,
    /// Object → (owner site, name).
    pub objects: HashMap<Uuid, (Uuid, String)>,
    /// (site, user) → username.
    pub users: HashMap<(Uuid, Uuid), String>,
    /// (site, relationship) → relationship.
    pub relationships: HashMap<(Uuid, Uuid), Relationship>,
}

/// The ids a batch refers to, to load what the tables know of them.
#[derive(Debug, Default)]
pub(super) struct Refs {
    pub sites: HashSet<Uuid>,
    pub scorecards: HashSet<Uuid>,
    pub objects: HashSet<Uuid>,
    pub users: HashSet<(Uuid, Uuid)>,
    pub relationships: HashSet<(Uuid, Uuid)>,
}

/// What a batch defines, to be written to the name tables.
#[derive(Debug, Default)]
pub(super) struct Defined {
    pub sites: Vec<(Uuid, String)>,
    pub scorecards: Vec<(Uuid, Uuid, String)>,
    pub objects: Vec<(Uuid, Uuid, String)>,
    pub users: Vec<(Uuid, Uuid, String)>,
    pub relationships: Vec<((Uuid, Uuid), Relationship)>,
}

/// One row of `timeline_entries`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Row {
    pub site: Uuid,
    pub partner: Option<Uuid>,
    pub position: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub command: String,
    pub recorded_at: DateTime<Utc>,
    pub actor: Option<Actor>,
    pub correlation: Option<Uuid>,
    pub causation: Option<Uuid>,
    pub links: Vec<Link>,
    pub scorecard: Option<Uuid>,
    pub user: Option<Uuid>,
    pub object: Option<Uuid>,
    pub relationship: Option<Uuid>,
    pub summary: String,
}

/// The two sites of a `connection-<lo>-<hi>` stream.
pub(super) fn pair(stream: &str) -> Option<(Uuid, Uuid)> {
    let (lo, hi) = stream.strip_prefix("connection-")?.split_once('-')?;
    Some((Uuid::parse_str(lo).ok()?, Uuid::parse_str(hi).ok()?))
}

/// Adds the ids `decoded` refers to.
pub(super) fn refer(refs: &mut Refs, stream: &str, decoded: &Decoded) {
    match decoded {
        Decoded::Site { site, event } => {
            refs.sites.insert(site.0);
            match event {
                SiteEvent::SiteRegistered {
                    parent: Some(p), ..
                }
                | SiteEvent::ParentSiteSet { parent: Some(p) } => {
                    refs.sites.insert(p.0);
                }
                SiteEvent::SelfRegistrationConfigured {
                    model_site: Some(s),
                    model_user,
                    ..
                } => {
                    refs.sites.insert(s.0);
                    if let Some(u) = model_user {
                        refs.users.insert((s.0, u.0));
                    }
                }
                SiteEvent::ScorecardAccessGranted {
                    user_id,
                    scorecard_id,
                    ..
                }
                | SiteEvent::ScorecardAccessRevoked {
                    user_id,
                    scorecard_id,
                } => {
                    refs.users.insert((site.0, user_id.0));
                    refs.scorecards.insert(scorecard_id.0);
                }
                SiteEvent::UserRoleChanged { user_id, .. }
                | SiteEvent::UserDetailsChanged { user_id, .. }
                | SiteEvent::UserPermissionsSet { user_id, .. }
                | SiteEvent::UserDeactivated { user_id }
                | SiteEvent::UserReactivated { user_id }
                | SiteEvent::OrganizationSettingsHiddenSet { user_id, .. } => {
                    refs.users.insert((site.0, user_id.0));
                }
                _ => {}
            }
        }
        Decoded::SiteCode(_) => {}
        Decoded::Content { site, event } => {
            refs.sites.insert(site.0);
            match event {
                ContentEvent::ObjectPlacedOnScorecard {
                    object_id,
                    scorecard_id,
                }
                | ContentEvent::ObjectRemovedFromScorecard {
                    object_id,
                    scorecard_id,
                } => {
                    refs.objects.insert(object_id.0);
                    refs.scorecards.insert(scorecard_id.0);
                }
                ContentEvent::SharedObjectLinked {
                    scorecard_id,
                    origin_site,
                    object_id,
                    ..
                } => {
                    refs.sites.insert(origin_site.0);
                    refs.objects.insert(object_id.0);
                    refs.scorecards.insert(scorecard_id.0);
                }
                ContentEvent::SharedMeasureAggregated {
                    into_object,
                    origin_site,
                    object_id,
                    ..
                } => {
                    refs.sites.insert(origin_site.0);
                    refs.objects.insert(object_id.0);
                    refs.objects.insert(into_object.0);
                }
                ContentEvent::RelationshipRemoved {
                    relationship_id, ..
                } => {
                    refs.relationships.insert((site.0, relationship_id.0));
                }
                ContentEvent::ScorecardRenamed { scorecard_id, .. }
                | ContentEvent::ScorecardArchived { scorecard_id } => {
                    refs.scorecards.insert(scorecard_id.0);
                }
                ContentEvent::ObjectRenamed { object_id, .. }
                | ContentEvent::ObjectArchived { object_id } => {
                    refs.objects.insert(object_id.0);
                }
                _ => {}
            }
        }
        Decoded::Connection(event) => {
            if let Some((a, b)) = pair(stream) {
                refs.sites.insert(a);
                refs.sites.insert(b);
            }
            if let ConnectionEvent::ScorecardShared { scorecard_id, .. }
            | ConnectionEvent::ScorecardUnshared { scorecard_id, .. } = event
            {
                refs.scorecards.insert(scorecard_id.0);
            }
        }
    }
}

impl Names {
    /// Records what `decoded` defines (in `names` and in `defined`).
    pub(super) fn learn(&mut self, decoded: &Decoded, defined: &mut Defined) {
        match decoded {
            Decoded::Site { site, event } => match event {
                SiteEvent::SiteRegistered { code, .. } => {
                    let code = code.as_str().to_owned();
                    self.sites.insert(site.0, code.clone());
                    defined.sites.push((site.0, code));
                }
                SiteEvent::UserAdded { user, .. } => {
                    let username = user.username.as_str().to_owned();
                    self.users
                        .insert((site.0, user.user_id.0), username.clone());
                    defined.users.push((site.0, user.user_id.0, username));
                }
                _ => {}
            },
            Decoded::Content { site, event } => match event {
                ContentEvent::ScorecardCreated { scorecard_id, name } => {
                    let name = name.as_str().to_owned();
                    self.scorecards
                        .insert(scorecard_id.0, (site.0, name.clone()));
                    defined.scorecards.push((scorecard_id.0, site.0, name));
                }
                ContentEvent::ObjectCreated {
                    object_id, name, ..
                } => {
                    let name = name.as_str().to_owned();
                    self.objects.insert(object_id.0, (site.0, name.clone()));
                    defined.objects.push((object_id.0, site.0, name));
                }
                ContentEvent::SharedObjectLinked {
                    relationship_id,
                    scorecard_id,
                    origin_site,
                    object_id,
                } => {
                    let r = Relationship {
                        origin: origin_site.0,
                        object: object_id.0,
                        scorecard: Some(scorecard_id.0),
                        into_object: None,
                    };
                    self.relationships
                        .insert((site.0, relationship_id.0), r.clone());
                    defined.relationships.push(((site.0, relationship_id.0), r));
                }
                ContentEvent::SharedMeasureAggregated {
                    relationship_id,
                    into_object,
                    origin_site,
                    object_id,
                } => {
                    let r = Relationship {
                        origin: origin_site.0,
                        object: object_id.0,
                        scorecard: None,
                        into_object: Some(into_object.0),
                    };
                    self.relationships
                        .insert((site.0, relationship_id.0), r.clone());
                    defined.relationships.push(((site.0, relationship_id.0), r));
                }
                _ => {}
            },
            Decoded::SiteCode(_) | Decoded::Connection(_) => {}
        }
    }

    /// Records a rename, after the batch's entry for it is made (so that
    /// the entry names the old name and the new).
    pub(super) fn learn_rename(&mut self, decoded: &Decoded, defined: &mut Defined) {
        let Decoded::Content { site, event } = decoded else {
            return;
        };
        match event {
            ContentEvent::ScorecardRenamed { scorecard_id, name } => {
                let name = name.as_str().to_owned();
                self.scorecards
                    .insert(scorecard_id.0, (site.0, name.clone()));
                defined.scorecards.push((scorecard_id.0, site.0, name));
            }
            ContentEvent::ObjectRenamed { object_id, name } => {
                let name = name.as_str().to_owned();
                self.objects.insert(object_id.0, (site.0, name.clone()));
                defined.objects.push((object_id.0, site.0, name));
            }
            _ => {}
        }
    }

    fn code(&self, site: Uuid) -> String {
        self.sites
            .get(&site)
            .cloned()
            .unwrap_or_else(|| format!("site {site}"))
    }

    fn link(&self, link: &Link) -> String {
        format!("{}→{}", self.code(link.from.0), self.code(link.to.0))
    }

    fn links(&self, links: &[Link]) -> String {
        links
            .iter()
            .map(|l| self.link(l))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn scorecard(&self, scorecard: Uuid) -> String {
        match self.scorecards.get(&scorecard) {
            Some((_, name)) => format!("“{name}”"),
            None => format!("scorecard {scorecard}"),
        }
    }

    fn object(&self, object: Uuid) -> String {
        match self.objects.get(&object) {
            Some((_, name)) => format!("“{name}”"),
            None => format!("object {object}"),
        }
    }

    fn user(&self, site: Uuid, user: Uuid) -> String {
        self.users
            .get(&(site, user))
            .cloned()
            .unwrap_or_else(|| format!("user {user}"))
    }
}

/// A catalog enum's name as people read it: its wire name's words
/// (`data_entry` → `data entry`, `scorecard_admin` → `scorecard admin`).
fn words<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s.replace('_', " "),
        Ok(other) => other.to_string(),
        Err(_) => String::from("?"),
    }
}

/// What an event says, before it is spread over the sites it involves.
struct Fact {
    /// The sites whose timelines show it (repeats are dropped).
    involved: Vec<Uuid>,
    command: &'static str,
    links: Vec<Link>,
    scorecard: Option<Uuid>,
    user: Option<Uuid>,
    object: Option<Uuid>,
    relationship: Option<Uuid>,
    summary: String,
}

impl Fact {
    fn new(involved: Vec<Uuid>, command: &'static str, summary: String) -> Self {
        Self {
            involved,
            command,
            links: Vec::new(),
            scorecard: None,
            user: None,
            object: None,
            relationship: None,
            summary,
        }
    }
}

/// The timeline rows of one event (none when it is not an entry).
pub(super) fn rows(event: &RecordedEvent, decoded: &Decoded, names: &Names) -> Vec<Row> {
    let fact = match decoded {
        Decoded::Site { site, event } => site_fact(site.0, event, names),
        Decoded::SiteCode(_) => None,
        Decoded::Content { site, event } => content_fact(site.0, event, names),
        Decoded::Connection(c) => pair(&event.stream).map(|p| connection_fact(p, c, names)),
    };
    let Some(fact) = fact else {
        return Vec::new();
    };
    let metadata = event.typed_metadata().ok();
    let causation = metadata.as_ref().and_then(|m| m.causation_id);
    let command = match causation {
        Some(_) => CONSEQUENCE,
        None => fact.command,
    };
    let mut involved: Vec<Uuid> = Vec::with_capacity(fact.involved.len());
    for site in &fact.involved {
        if !involved.contains(site) {
            involved.push(*site);
        }
    }
    involved
        .iter()
        .map(|&site| Row {
            site,
            partner: involved.iter().copied().find(|&other| other != site),
            position: i64::try_from(event.global_position).unwrap_or(i64::MAX),
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            command: command.to_owned(),
            recorded_at: event.recorded_at,
            actor: metadata.as_ref().map(|m| m.actor.clone()),
            correlation: metadata.as_ref().map(|m| m.correlation_id),
            causation,
            links: fact.links.clone(),
            scorecard: fact.scorecard,
            user: fact.user,
            object: fact.object,
            relationship: fact.relationship,
            summary: fact.summary.clone(),
        })
        .collect()
}

fn site_fact(site: Uuid, event: &SiteEvent, names: &Names) -> Option<Fact> {
    let code = names.code(site);
    let user_fact = |user: Uuid, command: &'static str, what: String| {
        let mut fact = Fact::new(vec![site], command, what);
        fact.user = Some(user);
        fact
    };
    Some(match event {
        SiteEvent::SiteRegistered {
            name,
            seat_limit,
            parent,
            ..
        } => {
            let under = parent
                .map(|p| format!(", under {}", names.code(p.0)))
                .unwrap_or_default();
            Fact::new(
                vec![site],
                "RegisterSite",
                format!(
                    "site {code} (“{}”) registered with {} seats{under}",
                    name.as_str(),
                    seat_limit.get()
                ),
            )
        }
        SiteEvent::SeatLimitSet { seat_limit } => Fact::new(
            vec![site],
            "SetSeatLimit",
            format!("{code}'s seat limit set to {}", seat_limit.get()),
        ),
        SiteEvent::ParentSiteSet { parent } => Fact::new(
            vec![site],
            "SetParentSite",
            match parent {
                Some(p) => format!("{code} placed under {}", names.code(p.0)),
                None => format!("{code} no longer has a parent site"),
            },
        ),
        SiteEvent::SelfRegistrationLinkSet {
            link_hash,
            child_of_group,
        } => {
            Fact::new(
                vec![site],
                "SetSelfRegistrationLink",
                match (link_hash, child_of_group) {
                    (Some(_), true) => {
                        format!("{code} published a new self-registration link (new sites its children)")
                    }
                    (Some(_), false) => format!("{code} published a new self-registration link"),
                    (None, _) => format!("{code} turned its self-registration link off"),
                },
            )
        }
        SiteEvent::SelfRegistrationConfigured {
            enabled,
            model_site,
            model_user,
        } => Fact::new(
            vec![site],
            "ConfigureSelfRegistration",
            match (enabled, model_site, model_user) {
                (true, Some(s), Some(u)) => format!(
                    "{code} turned self-registration on, modelled on {} of {}",
                    names.user(s.0, u.0),
                    names.code(s.0)
                ),
                (true, _, _) => format!("{code} turned self-registration on"),
                (false, _, _) => format!("{code} turned self-registration off"),
            },
        ),
        SiteEvent::DirectoryListingSet { listed } => Fact::new(
            vec![site],
            "SetDirectoryListing",
            if *listed {
                format!("{code} listed in the partner directory")
            } else {
                format!("{code} no longer listed in the partner directory")
            },
        ),
        SiteEvent::TwoFactorRequirementSet { required } => Fact::new(
            vec![site],
            "RequireTwoFactor",
            if *required {
                format!("{code} requires two-factor sign-in")
            } else {
                format!("{code} no longer requires two-factor sign-in")
            },
        ),
        SiteEvent::UserAdded { user, origin, .. } => {
            let (command, how) = match origin {
                UserOrigin::Added => ("AddUser", String::new()),
                UserOrigin::ExistingAccount { site_id, .. } => (
                    "AddExistingUser",
                    format!(" (existing account of {})", names.code(site_id.0)),
                ),
                UserOrigin::Imported { line } => {
                    ("ImportUsers", format!(" (CSV import, line {line})"))
                }
                UserOrigin::SelfRegistered { .. } => {
                    ("SelfRegisterPartner", " (self-registration)".to_owned())
                }
            };
            user_fact(
                user.user_id.0,
                command,
                format!(
                    "user {} added to {code} as {}{how}",
                    user.username.as_str(),
                    words(&user.role)
                ),
            )
        }
        SiteEvent::UserDetailsChanged {
            user_id,
            name,
            email,
        } => user_fact(
            user_id.0,
            "ChangeUserDetails",
            format!(
                "{}'s name set to “{}”, {}",
                names.user(site, user_id.0),
                name.as_str(),
                match email {
                    Some(email) => format!("email to {}", email.as_str()),
                    None => "no email".to_owned(),
                }
            ),
        ),
        SiteEvent::UserRoleChanged { user_id, role, .. } => user_fact(
            user_id.0,
            "ChangeUserRole",
            format!(
                "{}'s role changed to {}",
                names.user(site, user_id.0),
                words(role)
            ),
        ),
        SiteEvent::UserPermissionsSet {
            user_id,
            permissions,
        } => {
            let flags: Vec<String> = permissions.iter().map(words).collect();
            user_fact(
                user_id.0,
                "SetPermissionFlags",
                format!(
                    "{}'s permission flags set to [{}]",
                    names.user(site, user_id.0),
                    flags.join(", ")
                ),
            )
        }
        SiteEvent::ScorecardAccessGranted {
            user_id,
            scorecard_id,
            level,
        } => {
            let mut fact = user_fact(
                user_id.0,
                "GrantScorecardAccess",
                format!(
                    "{} given {} on {}{}",
                    names.user(site, user_id.0),
                    words(level),
                    names.scorecard(scorecard_id.0),
                    owned_by(site, scorecard_id.0, names)
                ),
            );
            fact.scorecard = Some(scorecard_id.0);
            fact.involved.extend(owner(site, scorecard_id.0, names));
            fact
        }
        SiteEvent::ScorecardAccessRevoked {
            user_id,
            scorecard_id,
        } => {
            let mut fact = user_fact(
                user_id.0,
                "RevokeScorecardAccess",
                format!(
                    "{} no longer has access to {}{}",
                    names.user(site, user_id.0),
                    names.scorecard(scorecard_id.0),
                    owned_by(site, scorecard_id.0, names)
                ),
            );
            fact.scorecard = Some(scorecard_id.0);
            fact.involved.extend(owner(site, scorecard_id.0, names));
            fact
        }
        SiteEvent::UserDeactivated { user_id } => user_fact(
            user_id.0,
            "DeactivateUser",
            format!("{} deactivated", names.user(site, user_id.0)),
        ),
        SiteEvent::UserReactivated { user_id } => user_fact(
            user_id.0,
            "ReactivateUser",
            format!("{} reactivated", names.user(site, user_id.0)),
        ),
        SiteEvent::OrganizationSettingsHiddenSet { user_id, hidden } => user_fact(
            user_id.0,
            "HideOrganizationSettings",
            format!(
                "organisation settings {} for {}",
                if *hidden { "hidden" } else { "shown" },
                names.user(site, user_id.0)
            ),
        ),
    })
}

/// The owner of a scorecard, when it is another site than `site`.
fn owner(site: Uuid, scorecard: Uuid, names: &Names) -> Option<Uuid> {
    names
        .scorecards
        .get(&scorecard)
        .map(|(owner, _)| *owner)
        .filter(|owner| *owner != site)
}

/// " (of CODE)" for a partner's scorecard.
fn owned_by(site: Uuid, scorecard: Uuid, names: &Names) -> String {
    owner(site, scorecard, names)
        .map(|o| format!(" of {}", names.code(o)))
        .unwrap_or_default()
}

fn content_fact(site: Uuid, event: &ContentEvent, names: &Names) -> Option<Fact> {
    let code = names.code(site);
    Some(match event {
        ContentEvent::ScorecardCreated { scorecard_id, name } => {
            let mut fact = Fact::new(
                vec![site],
                "CreateScorecard",
                format!("{code} created scorecard “{}”", name.as_str()),
            );
            fact.scorecard = Some(scorecard_id.0);
            fact
        }
        ContentEvent::ObjectPlacedOnScorecard {
            object_id,
            scorecard_id,
        } => {
            let mut fact = Fact::new(
                vec![site],
                "PlaceObjectOnScorecard",
                format!(
                    "{code} placed {} on {}",
                    names.object(object_id.0),
                    names.scorecard(scorecard_id.0)
                ),
            );
            fact.scorecard = Some(scorecard_id.0);
            fact.object = Some(object_id.0);
            fact
        }
        ContentEvent::ObjectRemovedFromScorecard {
            object_id,
            scorecard_id,
        } => {
            let mut fact = Fact::new(
                vec![site],
                "RemoveObjectFromScorecard",
                format!(
                    "{code} removed {} from {}",
                    names.object(object_id.0),
                    names.scorecard(scorecard_id.0)
                ),
            );
            fact.scorecard = Some(scorecard_id.0);
            fact.object = Some(object_id.0);
            fact
        }
        ContentEvent::SharedObjectLinked {
            relationship_id,
            scorecard_id,
            origin_site,
            object_id,
        } => {
            let mut fact = Fact::new(
                vec![site, origin_site.0],
                "LinkSharedObject",
                format!(
                    "{code} placed {}'s {} on {}",
                    names.code(origin_site.0),
                    names.object(object_id.0),
                    names.scorecard(scorecard_id.0)
                ),
            );
            fact.links = vec![Link {
                from: *origin_site,
                to: SiteId(site),
            }];
            fact.scorecard = Some(scorecard_id.0);
            fact.object = Some(object_id.0);
            fact.relationship = Some(relationship_id.0);
            fact
        }
        ContentEvent::SharedMeasureAggregated {
            relationship_id,
            into_object,
            origin_site,
            object_id,
        } => {
            let mut fact = Fact::new(
                vec![site, origin_site.0],
                "UseSharedMeasureInAggregation",
                format!(
                    "{code} used {}'s {} in {}",
                    names.code(origin_site.0),
                    names.object(object_id.0),
                    names.object(into_object.0)
                ),
            );
            fact.links = vec![Link {
                from: *origin_site,
                to: SiteId(site),
            }];
            fact.object = Some(object_id.0);
            fact.relationship = Some(relationship_id.0);
            fact
        }
        ContentEvent::RelationshipRemoved {
            relationship_id,
            reason,
        } => {
            let why = match reason {
                RemovalReason::LinkRevoked => "the link was revoked",
                RemovalReason::ScorecardUnshared => "the scorecard was unshared",
                RemovalReason::ObjectNoLongerShared => "the object is no longer shared",
                RemovalReason::RemovedBySite => "the site removed it",
                RemovalReason::TargetArchived => "what it was in was archived",
            };
            let built = names.relationships.get(&(site, relationship_id.0));
            // The site's own removal is its command's; any other removal is
            // a consequence of what took the object away.
            let command = match (reason, built) {
                (RemovalReason::RemovedBySite, Some(r)) if r.scorecard.is_none() => {
                    "StopUsingSharedMeasure"
                }
                (RemovalReason::RemovedBySite, _) => "UnlinkSharedObject",
                _ => CONSEQUENCE,
            };
            let mut fact = match built {
                Some(r) => {
                    let mut fact = Fact::new(
                        vec![site, r.origin],
                        command,
                        format!(
                            "{code} lost its relationship to {}'s {} ({why})",
                            names.code(r.origin),
                            names.object(r.object)
                        ),
                    );
                    fact.links = vec![Link {
                        from: SiteId(r.origin),
                        to: SiteId(site),
                    }];
                    fact.scorecard = r.scorecard;
                    fact.object = Some(r.object);
                    fact
                }
                None => Fact::new(
                    vec![site],
                    command,
                    format!("{code} lost relationship {} ({why})", relationship_id.0),
                ),
            };
            fact.relationship = Some(relationship_id.0);
            fact
        }
        ContentEvent::ScorecardRenamed { scorecard_id, name } => {
            let mut fact = Fact::new(
                vec![site],
                "RenameScorecard",
                format!(
                    "{code} renamed {} to “{}”",
                    names.scorecard(scorecard_id.0),
                    name.as_str()
                ),
            );
            fact.scorecard = Some(scorecard_id.0);
            fact
        }
        ContentEvent::ScorecardArchived { scorecard_id } => {
            let mut fact = Fact::new(
                vec![site],
                "ArchiveScorecard",
                format!("{code} archived {}", names.scorecard(scorecard_id.0)),
            );
            fact.scorecard = Some(scorecard_id.0);
            fact
        }
        ContentEvent::ObjectRenamed { object_id, name } => {
            let mut fact = Fact::new(
                vec![site],
                "RenameObject",
                format!(
                    "{code} renamed {} to “{}”",
                    names.object(object_id.0),
                    name.as_str()
                ),
            );
            fact.object = Some(object_id.0);
            fact
        }
        ContentEvent::ObjectArchived { object_id } => {
            let mut fact = Fact::new(
                vec![site],
                "ArchiveObject",
                format!("{code} archived {}", names.object(object_id.0)),
            );
            fact.object = Some(object_id.0);
            fact
        }
        ContentEvent::ObjectCreated { .. }
        | ContentEvent::ObjectFieldUpdated { .. }
        | ContentEvent::ObjectFieldEdited { .. } => return None,
    })
}

fn connection_fact((a, b): (Uuid, Uuid), event: &ConnectionEvent, names: &Names) -> Fact {
    let (command, links, summary, scorecard) = match event {
        ConnectionEvent::ConnectionRequested {
            requester,
            partner,
            directions,
            links,
        } => (
            "RequestConnection",
            links.clone(),
            format!(
                "{} requested a connection with {} ({}): {}",
                names.code(requester.0),
                names.code(partner.0),
                match directions {
                    Directions::Both => "both directions",
                    Directions::Offer => "offer",
                },
                names.links(links)
            ),
            None,
        ),
        ConnectionEvent::LinksActivated {
            approver,
            links,
            mutual_request,
        } => {
            if *mutual_request {
                (
                    "RequestConnection",
                    links.clone(),
                    format!(
                        "{} active at once: {} requested what was awaiting its approval",
                        names.links(links),
                        names.code(approver.0)
                    ),
                    None,
                )
            } else {
                (
                    "ApproveConnection",
                    links.clone(),
                    format!("{} approved {}", names.code(approver.0), names.links(links)),
                    None,
                )
            }
        }
        ConnectionEvent::ConnectionDenied { denier, links } => (
            "DenyConnection",
            links.clone(),
            format!("{} denied {}", names.code(denier.0), names.links(links)),
            None,
        ),
        ConnectionEvent::ConnectionRequestCancelled { requester, links } => (
            "CancelConnectionRequest",
            links.clone(),
            format!(
                "{} cancelled its request of {}",
                names.code(requester.0),
                names.links(links)
            ),
            None,
        ),
        ConnectionEvent::LinkRevoked { revoker, link } => (
            "RevokeSharing",
            vec![*link],
            format!("{} revoked {}", names.code(revoker.0), names.link(link)),
            None,
        ),
        ConnectionEvent::ScorecardShared { link, scorecard_id } => (
            "ShareScorecard",
            vec![*link],
            format!(
                "{} shared {} with {}",
                names.code(link.from.0),
                names.scorecard(scorecard_id.0),
                names.code(link.to.0)
            ),
            Some(scorecard_id.0),
        ),
        ConnectionEvent::ScorecardUnshared {
            link,
            scorecard_id,
            because_link_revoked,
        } => (
            "UnshareScorecard",
            vec![*link],
            format!(
                "{} no longer shares {} with {}{}",
                names.code(link.from.0),
                names.scorecard(scorecard_id.0),
                names.code(link.to.0),
                if *because_link_revoked {
                    " (the link was revoked)"
                } else {
                    ""
                }
            ),
            Some(scorecard_id.0),
        ),
    };
    let mut fact = Fact::new(vec![a, b], command, summary);
    fact.links = links;
    fact.scorecard = scorecard;
    fact
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_streams_name_their_pair() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let stream = format!("connection-{}-{}", a.simple(), b.simple());
        assert_eq!(pair(&stream), Some((a, b)));
        assert_eq!(pair("connection-x-y"), None);
        assert_eq!(pair(&format!("site-{}", a.simple())), None);
    }
}
