//! What each domain event is about: its tags, for append conditions
//! (`crate::dcb`). One place: the log stores these for every event it
//! writes (the command service tags each event from here) and for every
//! event stored before tags existed (`PgEventStore::migrate` derives them
//! with [`tags_of`]).
//!
//! * Every event of a site's streams (`site-<id>`, `content-<id>`) is tagged
//!   `site:<id>`; a connection stream's events `site:<a>` and `site:<b>`; a
//!   code claim `code:<CODE>` and `site:<id>`.
//! * Every id an event names is a tag of its own: `user:…`, `scorecard:…`,
//!   `object:…` (an object's container too), `relationship:…`, and the sites
//!   it names (a parent, a model site, a relationship's origin).
//! * `link:<from>><to>` for each link a connection event is about.

use crate::dcb::Tag;

use super::{
    ConnectionEvent, ContentEvent, DomainEvent, Link, SiteCode, SiteCodeEvent, SiteEvent, SiteId,
};

/// The tag of one direction of a connection.
pub fn link_tag(link: Link) -> Tag {
    Tag::of("link", format!("{}>{}", link.from.0, link.to.0))
}

/// The tag of a site code's claim.
pub fn code_tag(code: &SiteCode) -> Tag {
    Tag::of("code", code.as_str())
}

impl SiteEvent {
    /// The tags of this event of `site`'s stream.
    pub fn tags(&self, site: SiteId) -> Vec<Tag> {
        let mut tags = vec![site.tag()];
        match self {
            SiteEvent::SiteRegistered { parent, .. } | SiteEvent::ParentSiteSet { parent } => {
                tags.extend(parent.map(|p| p.tag()));
            }
            SiteEvent::SelfRegistrationConfigured {
                model_site,
                model_user,
                ..
            } => {
                tags.extend(model_site.map(|s| s.tag()));
                tags.extend(model_user.map(|u| u.tag()));
            }
            SiteEvent::SeatLimitSet { .. }
            | SiteEvent::SelfRegistrationLinkSet { .. }
            | SiteEvent::TwoFactorRequirementSet { .. }
            | SiteEvent::DirectoryListingSet { .. } => {}
            SiteEvent::UserAdded {
                user,
                scorecard_access,
                ..
            } => {
                tags.push(user.user_id.tag());
                tags.extend(scorecard_access.keys().map(|s| s.tag()));
            }
            SiteEvent::UserRoleChanged { user_id, .. }
            | SiteEvent::UserDetailsChanged { user_id, .. }
            | SiteEvent::UserPermissionsSet { user_id, .. }
            | SiteEvent::UserDeactivated { user_id }
            | SiteEvent::UserReactivated { user_id }
            | SiteEvent::OrganizationSettingsHiddenSet { user_id, .. } => {
                tags.push(user_id.tag());
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
                tags.push(user_id.tag());
                tags.push(scorecard_id.tag());
            }
        }
        tags
    }
}

impl ContentEvent {
    /// The tags of this event of `site`'s content stream.
    pub fn tags(&self, site: SiteId) -> Vec<Tag> {
        let mut tags = vec![site.tag()];
        match self {
            ContentEvent::ScorecardCreated { scorecard_id, .. }
            | ContentEvent::ScorecardRenamed { scorecard_id, .. }
            | ContentEvent::ScorecardArchived { scorecard_id } => tags.push(scorecard_id.tag()),
            ContentEvent::ObjectRenamed { object_id, .. }
            | ContentEvent::ObjectArchived { object_id } => tags.push(object_id.tag()),
            ContentEvent::ObjectCreated {
                object_id,
                container,
                ..
            } => {
                tags.push(object_id.tag());
                tags.extend(container.map(|c| c.tag()));
            }
            ContentEvent::ObjectPlacedOnScorecard {
                object_id,
                scorecard_id,
            }
            | ContentEvent::ObjectRemovedFromScorecard {
                object_id,
                scorecard_id,
            } => {
                tags.push(object_id.tag());
                tags.push(scorecard_id.tag());
            }
            ContentEvent::ObjectFieldUpdated { object_id, .. }
            | ContentEvent::ObjectFieldEdited { object_id, .. } => tags.push(object_id.tag()),
            ContentEvent::SharedObjectLinked {
                relationship_id,
                scorecard_id,
                origin_site,
                object_id,
            } => {
                tags.push(relationship_id.tag());
                tags.push(scorecard_id.tag());
                tags.push(origin_site.tag());
                tags.push(object_id.tag());
            }
            ContentEvent::SharedMeasureAggregated {
                relationship_id,
                into_object,
                origin_site,
                object_id,
            } => {
                tags.push(relationship_id.tag());
                tags.push(into_object.tag());
                tags.push(origin_site.tag());
                tags.push(object_id.tag());
            }
            ContentEvent::RelationshipRemoved {
                relationship_id, ..
            } => tags.push(relationship_id.tag()),
        }
        tags
    }
}

impl ConnectionEvent {
    /// The tags of this event of the connection stream of `a` and `b`.
    pub fn tags(&self, a: SiteId, b: SiteId) -> Vec<Tag> {
        let mut tags = vec![a.tag(), b.tag()];
        match self {
            ConnectionEvent::ConnectionRequested { links, .. }
            | ConnectionEvent::LinksActivated { links, .. }
            | ConnectionEvent::ConnectionDenied { links, .. }
            | ConnectionEvent::ConnectionRequestCancelled { links, .. } => {
                tags.extend(links.iter().map(|l| link_tag(*l)));
            }
            ConnectionEvent::LinkRevoked { link, .. } => tags.push(link_tag(*link)),
            ConnectionEvent::ScorecardShared { link, scorecard_id }
            | ConnectionEvent::ScorecardUnshared {
                link, scorecard_id, ..
            } => {
                tags.push(link_tag(*link));
                tags.push(scorecard_id.tag());
            }
        }
        tags
    }
}

impl SiteCodeEvent {
    /// The tags of a code claim.
    pub fn tags(&self) -> Vec<Tag> {
        match self {
            SiteCodeEvent::SiteCodeClaimed { code, site_id } => {
                normalized(vec![code_tag(code), site_id.tag()])
            }
        }
    }
}

fn site_of(hex: &str) -> Option<SiteId> {
    uuid::Uuid::try_parse(hex).ok().map(SiteId)
}

/// The site of a `<category>-<site>` stream.
fn stream_site(stream: &str) -> Option<SiteId> {
    site_of(stream.split_once('-')?.1)
}

/// The two sites of a `connection-<a>-<b>` stream.
fn stream_pair(stream: &str) -> Option<(SiteId, SiteId)> {
    let (a, b) = stream.split_once('-')?.1.split_once('-')?;
    Some((site_of(a)?, site_of(b)?))
}

/// Sorted, each once.
fn normalized(mut tags: Vec<Tag>) -> Vec<Tag> {
    tags.sort();
    tags.dedup();
    tags
}

impl SiteEvent {
    /// [`DomainEvent::tags_on`]: `stream` names the site.
    pub(crate) fn tags_on_stream(&self, stream: &str) -> Vec<Tag> {
        stream_site(stream).map_or_else(Vec::new, |site| normalized(self.tags(site)))
    }
}

impl ContentEvent {
    /// [`DomainEvent::tags_on`]: `stream` names the site.
    pub(crate) fn tags_on_stream(&self, stream: &str) -> Vec<Tag> {
        stream_site(stream).map_or_else(Vec::new, |site| normalized(self.tags(site)))
    }
}

impl ConnectionEvent {
    /// [`DomainEvent::tags_on`]: `stream` names both sites.
    pub(crate) fn tags_on_stream(&self, stream: &str) -> Vec<Tag> {
        stream_pair(stream).map_or_else(Vec::new, |(a, b)| normalized(self.tags(a, b)))
    }
}

/// The tags of a stored event, from its stream, type, version and data;
/// empty for a stream or an event that is not the catalog's (the log's own
/// lifecycle events, other applications' streams).
pub fn tags_of(
    stream: &str,
    event_type: &str,
    schema_version: u32,
    data: &serde_json::Value,
) -> Vec<Tag> {
    fn decoded<E: DomainEvent>(stream: &str, t: &str, v: u32, d: &serde_json::Value) -> Vec<Tag> {
        E::decode(t, v, d).map_or_else(|_| Vec::new(), |e| e.tags_on(stream))
    }
    match stream.split_once('-').map(|(category, _)| category) {
        Some("site") => decoded::<SiteEvent>(stream, event_type, schema_version, data),
        Some("content") => decoded::<ContentEvent>(stream, event_type, schema_version, data),
        Some("connection") => decoded::<ConnectionEvent>(stream, event_type, schema_version, data),
        Some("sitecode") => decoded::<SiteCodeEvent>(stream, event_type, schema_version, data),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{
        connection_stream, content_stream, site_code_stream, site_stream, ObjectId, ScorecardId,
        UserId,
    };

    fn stored<E: DomainEvent>(stream: &str, event: &E) -> Vec<Tag> {
        tags_of(
            stream,
            event.event_type(),
            event.schema_version(),
            &event.data(),
        )
    }

    #[test]
    fn a_stored_event_gets_the_tags_its_typed_event_has() {
        let (site, other) = (SiteId::new(), SiteId::new());
        let (user, object, container, scorecard) = (
            UserId::new(),
            ObjectId::new(),
            ObjectId::new(),
            ScorecardId::new(),
        );
        let granted = SiteEvent::ScorecardAccessGranted {
            user_id: user,
            scorecard_id: scorecard,
            level: crate::catalog::AccessLevel::Browser,
        };
        let mut expected = vec![site.tag(), user.tag(), scorecard.tag()];
        expected.sort();
        assert_eq!(stored(&site_stream(site), &granted), expected);

        let created = ContentEvent::ObjectCreated {
            object_id: object,
            kind: crate::catalog::ObjectKind::Indicator,
            name: crate::catalog::Name::parse("Reading").unwrap(),
            container: Some(container),
        };
        let mut expected = vec![site.tag(), object.tag(), container.tag()];
        expected.sort();
        assert_eq!(stored(&content_stream(site), &created), expected);

        let link = Link {
            from: site,
            to: other,
        };
        let shared = ConnectionEvent::ScorecardShared {
            link,
            scorecard_id: scorecard,
        };
        let mut expected = vec![site.tag(), other.tag(), link_tag(link), scorecard.tag()];
        expected.sort();
        assert_eq!(stored(&connection_stream(other, site), &shared), expected);

        let code = SiteCode::parse("ACME").unwrap();
        let claimed = SiteCodeEvent::SiteCodeClaimed {
            code: code.clone(),
            site_id: site,
        };
        let mut expected = vec![code_tag(&code), site.tag()];
        expected.sort();
        assert_eq!(stored(&site_code_stream(&code), &claimed), expected);
    }

    #[test]
    fn events_outside_the_catalog_have_no_tags() {
        let data = serde_json::json!({"x": 1});
        assert!(tags_of("orders-1", "OrderPlaced", 1, &data).is_empty());
        assert!(tags_of("$$site-1", "$StreamDeleted", 1, &data).is_empty());
        assert!(tags_of(&site_stream(SiteId::new()), "NoSuchEvent", 1, &data).is_empty());
    }
}
