//! The domain's event catalog: every fact ShareLedger records, as typed,
//! past-tense events grouped by the stream they live in. Pure data.
//!
//! Streams (one per consistency boundary):
//! * `site-<id>`: a site's settings and its users ([`SiteEvent`]): seat
//!   limits and unique usernames hold because every user change of a site
//!   goes through this one stream.
//! * `sitecode-<CODE>`: the claim of a site code ([`SiteCodeEvent`]), so that
//!   codes are unique under concurrency.
//! * `content-<site id>`: a site's scorecards, objects, placements and its
//!   relationships to partners' shared objects ([`ContentEvent`]).
//! * `connection-<lower id>-<higher id>`: both share links between two sites,
//!   and the scorecards shared over each ([`ConnectionEvent`]).
//!
//! Every event has a type name (its variant name) and a schema version; all
//! are at version 1. `docs/events.md` has one line per event.

pub mod identifiers;
pub mod tags;
pub mod values;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use values::*;

/// A catalog event: its type name, schema version, and JSON object data.
pub trait DomainEvent: Serialize + DeserializeOwned + Sized {
    /// The stream category of this family of events.
    const CATEGORY: &'static str;

    /// The event's type name as stored.
    fn event_type(&self) -> &'static str;

    /// The schema version of this event's data.
    fn schema_version(&self) -> u32 {
        1
    }

    /// What the event is about, as stored in `stream` (see [`tags`]).
    fn tags_on(&self, stream: &str) -> Vec<crate::dcb::Tag>;

    /// The id this event creates, if it creates a user, a scorecard, an
    /// object or a relationship: such ids name one thing across all sites
    /// ([`ClaimedId`]).
    fn created_id(&self) -> Option<ClaimedId> {
        None
    }

    /// The event's data, a JSON object.
    fn data(&self) -> serde_json::Value {
        let mut tagged = serde_json::to_value(self).expect("catalog events serialize");
        tagged
            .get_mut("data")
            .map(serde_json::Value::take)
            .unwrap_or_else(|| serde_json::json!({}))
    }

    /// Rebuilds an event from its stored type, version and data.
    fn decode(
        event_type: &str,
        schema_version: u32,
        data: &serde_json::Value,
    ) -> Result<Self, DecodeError> {
        if schema_version != 1 {
            return Err(DecodeError::UnknownVersion {
                event_type: event_type.to_owned(),
                schema_version,
            });
        }
        serde_json::from_value(serde_json::json!({ "type": event_type, "data": data })).map_err(
            |e| DecodeError::Malformed {
                event_type: event_type.to_owned(),
                reason: e.to_string(),
            },
        )
    }
}

/// A stored event that does not decode into the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "event {event_type} has schema version {schema_version}, which this build does not know"
    )]
    UnknownVersion {
        event_type: String,
        schema_version: u32,
    },
    #[error("event {event_type} does not decode: {reason}")]
    Malformed { event_type: String, reason: String },
}

macro_rules! event_names {
    ($enum:ident { $($variant:ident),* $(,)? }) => {
        impl $enum {
            /// Every type name of this family.
            pub const TYPES: &'static [&'static str] = &[$(stringify!($variant)),*];
        }
        impl $enum {
            fn type_name(&self) -> &'static str {
                match self {
                    $($enum::$variant { .. } => stringify!($variant)),*
                }
            }
        }
    };
}

/// A user as added to a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub user_id: UserId,
    pub username: Username,
    pub name: Name,
    pub role: Role,
    pub permissions: Permissions,
    /// Absent in events written before users had an email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
}

/// How a user came to be on a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum UserOrigin {
    /// Added by a site admin (Add New User).
    Added,
    /// Added from an account on another site (Add Existing User).
    ExistingAccount { site_id: SiteId, user_id: UserId },
    /// One row of a CSV import.
    Imported { line: u32 },
    /// The first manager of a self-registered partner site, copied from the
    /// group's model user.
    SelfRegistered {
        model_site: SiteId,
        model_user: UserId,
    },
}

/// Events of a site and its users, in stream `site-<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", deny_unknown_fields)]
pub enum SiteEvent {
    /// A site was registered (by an operator, a group admin, or a partner's
    /// self-registration).
    SiteRegistered {
        site_id: SiteId,
        code: SiteCode,
        name: Name,
        seat_limit: SeatLimit,
        parent: Option<SiteId>,
    },
    SeatLimitSet {
        seat_limit: SeatLimit,
    },
    ParentSiteSet {
        parent: Option<SiteId>,
    },
    SelfRegistrationConfigured {
        enabled: bool,
        model_site: Option<SiteId>,
        model_user: Option<UserId>,
    },
    /// The group's published self-registration link (seed 003): only the
    /// SHA-256 (hex) of its key is recorded, never the key; none: the link
    /// is turned off. A new key replaces the last (rotation).
    SelfRegistrationLinkSet {
        link_hash: Option<String>,
        /// New sites are children of the group.
        child_of_group: bool,
    },
    TwoFactorRequirementSet {
        required: bool,
    },
    /// Whether the site is listed in the partner directory (seed 002):
    /// other sites find it there by name or code to request a connection.
    DirectoryListingSet {
        listed: bool,
    },
    UserAdded {
        user: NewUser,
        origin: UserOrigin,
        /// Per-scorecard access given at creation (copied from a model user).
        scorecard_access: std::collections::BTreeMap<ScorecardId, AccessLevel>,
        hide_organization_settings: bool,
    },
    UserRoleChanged {
        user_id: UserId,
        role: Role,
        permissions: Permissions,
    },
    /// The user's name and email (none: no email) from here on.
    UserDetailsChanged {
        user_id: UserId,
        name: Name,
        email: Option<Email>,
    },
    UserPermissionsSet {
        user_id: UserId,
        permissions: Permissions,
    },
    ScorecardAccessGranted {
        user_id: UserId,
        scorecard_id: ScorecardId,
        level: AccessLevel,
    },
    ScorecardAccessRevoked {
        user_id: UserId,
        scorecard_id: ScorecardId,
    },
    UserDeactivated {
        user_id: UserId,
    },
    UserReactivated {
        user_id: UserId,
    },
    OrganizationSettingsHiddenSet {
        user_id: UserId,
        hidden: bool,
    },
}
event_names!(SiteEvent {
    SiteRegistered,
    SeatLimitSet,
    ParentSiteSet,
    SelfRegistrationConfigured,
    SelfRegistrationLinkSet,
    TwoFactorRequirementSet,
    DirectoryListingSet,
    UserAdded,
    UserRoleChanged,
    UserDetailsChanged,
    UserPermissionsSet,
    ScorecardAccessGranted,
    ScorecardAccessRevoked,
    UserDeactivated,
    UserReactivated,
    OrganizationSettingsHiddenSet,
});

impl DomainEvent for SiteEvent {
    fn tags_on(&self, stream: &str) -> Vec<crate::dcb::Tag> {
        self.tags_on_stream(stream)
    }
    const CATEGORY: &'static str = "site";
    fn event_type(&self) -> &'static str {
        self.type_name()
    }
    fn created_id(&self) -> Option<ClaimedId> {
        match self {
            SiteEvent::UserAdded { user, .. } => Some(ClaimedId::User(user.user_id)),
            _ => None,
        }
    }
}

/// The claim of a site code, in stream `sitecode-<CODE>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", deny_unknown_fields)]
pub enum SiteCodeEvent {
    SiteCodeClaimed { code: SiteCode, site_id: SiteId },
}
event_names!(SiteCodeEvent { SiteCodeClaimed });

impl DomainEvent for SiteCodeEvent {
    fn tags_on(&self, _stream: &str) -> Vec<crate::dcb::Tag> {
        self.tags()
    }
    const CATEGORY: &'static str = "sitecode";
    fn event_type(&self) -> &'static str {
        self.type_name()
    }
}

/// The kinds of ids that name one thing across all sites, though each
/// thing lives in its site's stream (the read models and the API name them
/// alone). The command service appends the event that creates one on the
/// condition that no event created it before, on any site: the id's tag
/// ([`ClaimedId::tag`]) on one of the types that create such a thing
/// ([`ClaimedId::created_by`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimedId {
    User(UserId),
    Scorecard(ScorecardId),
    Object(ObjectId),
    Relationship(RelationshipId),
}

impl ClaimedId {
    /// The tag every event about this id carries.
    pub fn tag(&self) -> crate::dcb::Tag {
        match self {
            ClaimedId::User(id) => id.tag(),
            ClaimedId::Scorecard(id) => id.tag(),
            ClaimedId::Object(id) => id.tag(),
            ClaimedId::Relationship(id) => id.tag(),
        }
    }

    /// The event types that create a thing of this kind (those whose
    /// [`DomainEvent::created_id`] is of this kind).
    pub fn created_by(&self) -> &'static [&'static str] {
        match self {
            ClaimedId::User(_) => &["UserAdded"],
            ClaimedId::Scorecard(_) => &["ScorecardCreated"],
            ClaimedId::Object(_) => &["ObjectCreated"],
            ClaimedId::Relationship(_) => &["SharedObjectLinked", "SharedMeasureAggregated"],
        }
    }
}

/// Which field of an object a change touches (R-USER-3): update-fields change
/// every reporting period, edit-fields stay across periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ObjectField {
    // update-fields
    SeriesData,
    Analysis,
    Recommendations,
    Status,
    // edit-fields
    Owner,
    Description,
    DataSource,
    Chart,
}

impl ObjectField {
    /// The access level a change of this field needs.
    pub fn required_level(self) -> AccessLevel {
        match self {
            ObjectField::SeriesData
            | ObjectField::Analysis
            | ObjectField::Recommendations
            | ObjectField::Status => AccessLevel::Updater,
            _ => AccessLevel::Editor,
        }
    }
}

/// Why a relationship was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalReason {
    /// The share link it was built on was revoked (R-CONN-4).
    LinkRevoked,
    /// The scorecard that made the object visible was unshared (R-SHARE-4).
    ScorecardUnshared,
    /// The object left every scorecard shared with this site (R-SHARE-4).
    ObjectNoLongerShared,
    /// The site took it off itself (`UnlinkSharedObject`).
    RemovedBySite,
    /// The site archived the scorecard or the aggregation it was in.
    TargetArchived,
}

/// Events of a site's content, in stream `content-<site id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", deny_unknown_fields)]
pub enum ContentEvent {
    ScorecardCreated {
        scorecard_id: ScorecardId,
        name: Name,
    },
    ObjectCreated {
        object_id: ObjectId,
        kind: ObjectKind,
        name: Name,
        container: Option<ObjectId>,
    },
    ScorecardRenamed {
        scorecard_id: ScorecardId,
        name: Name,
    },
    ObjectRenamed {
        object_id: ObjectId,
        name: Name,
    },
    /// The scorecard is gone from every answer from here on; its placements
    /// and the site's relationships onto it are removed as consequences in
    /// the same append.
    ScorecardArchived {
        scorecard_id: ScorecardId,
    },
    /// The object is gone from every answer from here on; its placements
    /// and the site's aggregations into it are removed as consequences in
    /// the same append (partners' relationships to it by the consequence
    /// worker).
    ObjectArchived {
        object_id: ObjectId,
    },
    ObjectPlacedOnScorecard {
        object_id: ObjectId,
        scorecard_id: ScorecardId,
    },
    ObjectRemovedFromScorecard {
        object_id: ObjectId,
        scorecard_id: ScorecardId,
    },
    /// An update-field changed (series data, analysis, recommendations, status).
    ObjectFieldUpdated {
        object_id: ObjectId,
        field: ObjectField,
        value: String,
    },
    /// An edit-field changed (owner, description, data source, chart).
    ObjectFieldEdited {
        object_id: ObjectId,
        field: ObjectField,
        value: String,
    },
    /// A partner's shared object was placed on one of this site's scorecards.
    SharedObjectLinked {
        relationship_id: RelationshipId,
        scorecard_id: ScorecardId,
        origin_site: SiteId,
        object_id: ObjectId,
    },
    /// A partner's shared Indicator or Performance Measure was used in one of
    /// this site's aggregations (an own Indicator or Performance Measure).
    SharedMeasureAggregated {
        relationship_id: RelationshipId,
        into_object: ObjectId,
        origin_site: SiteId,
        object_id: ObjectId,
    },
    /// A relationship was removed because this site lost access to its object.
    RelationshipRemoved {
        relationship_id: RelationshipId,
        reason: RemovalReason,
    },
}
event_names!(ContentEvent {
    ScorecardCreated,
    ObjectCreated,
    ScorecardRenamed,
    ObjectRenamed,
    ScorecardArchived,
    ObjectArchived,
    ObjectPlacedOnScorecard,
    ObjectRemovedFromScorecard,
    ObjectFieldUpdated,
    ObjectFieldEdited,
    SharedObjectLinked,
    SharedMeasureAggregated,
    RelationshipRemoved,
});

impl DomainEvent for ContentEvent {
    fn tags_on(&self, stream: &str) -> Vec<crate::dcb::Tag> {
        self.tags_on_stream(stream)
    }
    const CATEGORY: &'static str = "content";
    fn event_type(&self) -> &'static str {
        self.type_name()
    }
    fn created_id(&self) -> Option<ClaimedId> {
        match self {
            ContentEvent::ScorecardCreated { scorecard_id, .. } => {
                Some(ClaimedId::Scorecard(*scorecard_id))
            }
            ContentEvent::ObjectCreated { object_id, .. } => Some(ClaimedId::Object(*object_id)),
            ContentEvent::SharedObjectLinked {
                relationship_id, ..
            }
            | ContentEvent::SharedMeasureAggregated {
                relationship_id, ..
            } => Some(ClaimedId::Relationship(*relationship_id)),
            _ => None,
        }
    }
}

/// One direction of a partner connection: `from` shares with `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Link {
    pub from: SiteId,
    pub to: SiteId,
}

/// "from site <id> to site <id>": the direction, in the domain's words.
impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "from site {} to site {}", self.from, self.to)
    }
}

impl Link {
    pub fn reversed(self) -> Link {
        Link {
            from: self.to,
            to: self.from,
        }
    }
}

/// Which directions a connection request asks for (R-CONN-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Directions {
    /// The requester offers its data and asks for the partner's (Clear Impact's default).
    Both,
    /// The requester only offers its data (a consortium's Connections).
    Offer,
}

/// Events of the links between two sites, in stream `connection-<lo>-<hi>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", deny_unknown_fields)]
pub enum ConnectionEvent {
    /// `requester` asked `partner` for these links; each awaits the partner's approval.
    ConnectionRequested {
        requester: SiteId,
        partner: SiteId,
        directions: Directions,
        links: Vec<Link>,
    },
    /// Links became active: approved by `approver`, or at once because the
    /// approver itself requested them while they were awaiting it (R-CONN-5).
    LinksActivated {
        approver: SiteId,
        links: Vec<Link>,
        mutual_request: bool,
    },
    ConnectionDenied {
        denier: SiteId,
        links: Vec<Link>,
    },
    ConnectionRequestCancelled {
        requester: SiteId,
        links: Vec<Link>,
    },
    LinkRevoked {
        revoker: SiteId,
        link: Link,
    },
    ScorecardShared {
        link: Link,
        scorecard_id: ScorecardId,
    },
    ScorecardUnshared {
        link: Link,
        scorecard_id: ScorecardId,
        /// Set when the unshare is a consequence of the link's revocation.
        because_link_revoked: bool,
    },
}
event_names!(ConnectionEvent {
    ConnectionRequested,
    LinksActivated,
    ConnectionDenied,
    ConnectionRequestCancelled,
    LinkRevoked,
    ScorecardShared,
    ScorecardUnshared,
});

impl DomainEvent for ConnectionEvent {
    fn tags_on(&self, stream: &str) -> Vec<crate::dcb::Tag> {
        self.tags_on_stream(stream)
    }
    const CATEGORY: &'static str = "connection";
    fn event_type(&self) -> &'static str {
        self.type_name()
    }
}

/// The stream of a site's settings and users.
pub fn site_stream(site: SiteId) -> String {
    format!("site-{}", site.stream_suffix())
}

/// The stream that claims a site code.
pub fn site_code_stream(code: &SiteCode) -> String {
    format!("sitecode-{}", code.as_str())
}

/// The stream of a site's scorecards, objects and relationships.
pub fn content_stream(site: SiteId) -> String {
    format!("content-{}", site.stream_suffix())
}

/// The stream of the links between two sites (order does not matter).
pub fn connection_stream(a: SiteId, b: SiteId) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("connection-{}-{}", lo.stream_suffix(), hi.stream_suffix())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn round_trip<E: DomainEvent + PartialEq + std::fmt::Debug>(samples: Vec<E>, types: &[&str]) {
        let mut seen = BTreeSet::new();
        for event in samples {
            let data = event.data();
            assert!(data.is_object(), "{} data is an object", event.event_type());
            let back = E::decode(event.event_type(), event.schema_version(), &data).unwrap();
            assert_eq!(back, event);
            seen.insert(event.event_type());
        }
        let all: BTreeSet<&str> = types.iter().copied().collect();
        assert_eq!(seen, all, "every event type has a sample");
    }

    #[test]
    fn every_site_event_round_trips() {
        let user = UserId::new();
        let site = SiteId::new();
        let scorecard = ScorecardId::new();
        round_trip(
            vec![
                SiteEvent::SiteRegistered {
                    site_id: site,
                    code: SiteCode::parse("ACME").unwrap(),
                    name: Name::parse("Acme").unwrap(),
                    seat_limit: SeatLimit::new(5).unwrap(),
                    parent: Some(SiteId::new()),
                },
                SiteEvent::SeatLimitSet {
                    seat_limit: SeatLimit::new(9).unwrap(),
                },
                SiteEvent::ParentSiteSet { parent: None },
                SiteEvent::SelfRegistrationConfigured {
                    enabled: true,
                    model_site: Some(site),
                    model_user: Some(user),
                },
                SiteEvent::TwoFactorRequirementSet { required: true },
                SiteEvent::SelfRegistrationLinkSet {
                    link_hash: Some("ab".repeat(32)),
                    child_of_group: true,
                },
                SiteEvent::DirectoryListingSet { listed: true },
                SiteEvent::UserDetailsChanged {
                    user_id: user,
                    name: Name::parse("Ann Lee").unwrap(),
                    email: Some(Email::parse("ann@acme.org").unwrap()),
                },
                SiteEvent::UserAdded {
                    user: NewUser {
                        user_id: user,
                        username: Username::parse("ann@acme.org").unwrap(),
                        name: Name::parse("Ann").unwrap(),
                        role: Role::DataEntry,
                        permissions: Role::DataEntry.default_permissions(),
                        email: Some(Email::parse("ann@acme.org").unwrap()),
                    },
                    origin: UserOrigin::Imported { line: 3 },
                    scorecard_access: BTreeMap::from([(scorecard, AccessLevel::Editor)]),
                    hide_organization_settings: false,
                },
                SiteEvent::UserRoleChanged {
                    user_id: user,
                    role: Role::Presenter,
                    permissions: Role::Presenter.default_permissions(),
                },
                SiteEvent::UserPermissionsSet {
                    user_id: user,
                    permissions: BTreeSet::from([PermissionFlag::AllScorecards]),
                },
                SiteEvent::ScorecardAccessGranted {
                    user_id: user,
                    scorecard_id: scorecard,
                    level: AccessLevel::Updater,
                },
                SiteEvent::ScorecardAccessRevoked {
                    user_id: user,
                    scorecard_id: scorecard,
                },
                SiteEvent::UserDeactivated { user_id: user },
                SiteEvent::UserReactivated { user_id: user },
                SiteEvent::OrganizationSettingsHiddenSet {
                    user_id: user,
                    hidden: true,
                },
            ],
            SiteEvent::TYPES,
        );
    }

    #[test]
    fn every_site_code_event_round_trips() {
        round_trip(
            vec![SiteCodeEvent::SiteCodeClaimed {
                code: SiteCode::parse("acme").unwrap(),
                site_id: SiteId::new(),
            }],
            SiteCodeEvent::TYPES,
        );
    }

    /// Every event that creates an id is of a type its kind names as
    /// creating it, and carries the id's tag: the command service's
    /// condition on those finds every creation.
    #[test]
    fn every_creating_event_is_found_by_its_ids_tag_and_types() {
        let (site, scorecard, object) = (SiteId::new(), ScorecardId::new(), ObjectId::new());
        let content = content_stream(site);
        let user = SiteEvent::UserAdded {
            user: NewUser {
                user_id: UserId::new(),
                username: Username::parse("ann@acme.org").unwrap(),
                name: Name::parse("Ann").unwrap(),
                role: Role::DataEntry,
                permissions: Role::DataEntry.default_permissions(),
                email: None,
            },
            origin: UserOrigin::Imported { line: 3 },
            scorecard_access: BTreeMap::new(),
            hide_organization_settings: false,
        };
        let content_events = [
            ContentEvent::ScorecardCreated {
                scorecard_id: scorecard,
                name: Name::parse("S").unwrap(),
            },
            ContentEvent::ObjectCreated {
                object_id: object,
                kind: ObjectKind::Indicator,
                name: Name::parse("O").unwrap(),
                container: None,
            },
            ContentEvent::SharedObjectLinked {
                relationship_id: RelationshipId::new(),
                scorecard_id: scorecard,
                origin_site: SiteId::new(),
                object_id: ObjectId::new(),
            },
            ContentEvent::SharedMeasureAggregated {
                relationship_id: RelationshipId::new(),
                into_object: object,
                origin_site: SiteId::new(),
                object_id: ObjectId::new(),
            },
        ];
        let mut seen = vec![(
            user.created_id(),
            user.event_type(),
            user.tags_on(&site_stream(site)),
        )];
        seen.extend(
            content_events
                .iter()
                .map(|e| (e.created_id(), e.event_type(), e.tags_on(&content))),
        );
        for (id, event_type, tags) in seen {
            let id = id.expect("each of these creates an id");
            assert!(id.created_by().contains(&event_type), "{event_type}");
            assert!(
                tags.contains(&id.tag()),
                "{event_type} carries its id's tag"
            );
        }
    }

    #[test]
    fn every_content_event_round_trips() {
        let object = ObjectId::new();
        let scorecard = ScorecardId::new();
        let relationship = RelationshipId::new();
        round_trip(
            vec![
                ContentEvent::ScorecardCreated {
                    scorecard_id: scorecard,
                    name: Name::parse("Corporate").unwrap(),
                },
                ContentEvent::ObjectCreated {
                    object_id: object,
                    kind: ObjectKind::Indicator,
                    name: Name::parse("Literacy rate").unwrap(),
                    container: Some(ObjectId::new()),
                },
                ContentEvent::ScorecardRenamed {
                    scorecard_id: scorecard,
                    name: Name::parse("Corporate 2027").unwrap(),
                },
                ContentEvent::ObjectRenamed {
                    object_id: object,
                    name: Name::parse("Literacy %").unwrap(),
                },
                ContentEvent::ScorecardArchived {
                    scorecard_id: scorecard,
                },
                ContentEvent::ObjectArchived { object_id: object },
                ContentEvent::ObjectPlacedOnScorecard {
                    object_id: object,
                    scorecard_id: scorecard,
                },
                ContentEvent::ObjectRemovedFromScorecard {
                    object_id: object,
                    scorecard_id: scorecard,
                },
                ContentEvent::ObjectFieldUpdated {
                    object_id: object,
                    field: ObjectField::Analysis,
                    value: "up".into(),
                },
                ContentEvent::ObjectFieldEdited {
                    object_id: object,
                    field: ObjectField::Owner,
                    value: "Ann".into(),
                },
                ContentEvent::SharedObjectLinked {
                    relationship_id: relationship,
                    scorecard_id: scorecard,
                    origin_site: SiteId::new(),
                    object_id: object,
                },
                ContentEvent::SharedMeasureAggregated {
                    relationship_id: relationship,
                    into_object: ObjectId::new(),
                    origin_site: SiteId::new(),
                    object_id: object,
                },
                ContentEvent::RelationshipRemoved {
                    relationship_id: relationship,
                    reason: RemovalReason::LinkRevoked,
                },
            ],
            ContentEvent::TYPES,
        );
    }

    #[test]
    fn every_connection_event_round_trips() {
        let link = Link {
            from: SiteId::new(),
            to: SiteId::new(),
        };
        round_trip(
            vec![
                ConnectionEvent::ConnectionRequested {
                    requester: link.from,
                    partner: link.to,
                    directions: Directions::Both,
                    links: vec![link, link.reversed()],
                },
                ConnectionEvent::LinksActivated {
                    approver: link.to,
                    links: vec![link],
                    mutual_request: false,
                },
                ConnectionEvent::ConnectionDenied {
                    denier: link.to,
                    links: vec![link],
                },
                ConnectionEvent::ConnectionRequestCancelled {
                    requester: link.from,
                    links: vec![link],
                },
                ConnectionEvent::LinkRevoked {
                    revoker: link.to,
                    link,
                },
                ConnectionEvent::ScorecardShared {
                    link,
                    scorecard_id: ScorecardId::new(),
                },
                ConnectionEvent::ScorecardUnshared {
                    link,
                    scorecard_id: ScorecardId::new(),
                    because_link_revoked: true,
                },
            ],
            ConnectionEvent::TYPES,
        );
    }

    #[test]
    fn unknown_versions_and_malformed_data_do_not_decode() {
        assert!(matches!(
            SiteEvent::decode("SeatLimitSet", 2, &serde_json::json!({"seat_limit": 3})),
            Err(DecodeError::UnknownVersion { .. })
        ));
        assert!(matches!(
            SiteEvent::decode("SeatLimitSet", 1, &serde_json::json!({"seat_limit": 0})),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            SiteEvent::decode("NoSuchEvent", 1, &serde_json::json!({})),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn connection_streams_do_not_depend_on_argument_order() {
        let (a, b) = (SiteId::new(), SiteId::new());
        assert_eq!(connection_stream(a, b), connection_stream(b, a));
        assert!(crate::StreamName::parse(connection_stream(a, b)).is_ok());
        assert!(
            crate::StreamName::parse(site_code_stream(&SiteCode::parse("a-b_1").unwrap())).is_ok()
        );
    }
}
