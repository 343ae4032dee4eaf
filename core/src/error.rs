//! The one error type of the decisions: every way a command can be refused
//! for a domain reason, each with a stable code (for the HTTP edge's
//! problem+json) and the rule it enforces.

use serde::Serialize;
use shareledger_events::catalog::identifiers::shown;
use shareledger_events::catalog::{
    InvalidValue, Link, ObjectId, PermissionFlag, RelationshipId, ScorecardId, SiteCode, SiteId,
    UserId, Username,
};

/// One bad row of a CSV import (R-USER-8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// 1-based line of the file (the header is line 1).
    pub line: u32,
    pub field: String,
    pub reason: String,
}

/// Why a command was refused. Nothing is written when a decision returns one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error(transparent)]
    InvalidValue(#[from] InvalidValue),
    #[error("the acting user is not known on site {site}")]
    UnknownActor { site: SiteId },
    #[error(
        "the acting user is deactivated: every command is refused until reactivation (R-USER-6)"
    )]
    ActorInactive,
    #[error("this needs the {needed} permission (R-CONN-1, R-USER-5)")]
    NotPermitted { needed: PermissionFlag },
    #[error("a user of site {actor_site} cannot act on site {target_site}'s own data (R-USER-9)")]
    CrossSite {
        actor_site: SiteId,
        target_site: SiteId,
    },
    #[error("connections are unavailable: the acting user is not linked to a site (R-CONN-1)")]
    ConnectionsUnavailable,
    #[error("only a user or an operator can issue commands")]
    NotAnIssuer,
    #[error("site {0} does not exist")]
    SiteNotFound(SiteId),
    #[error("site {0} exists already")]
    SiteExists(SiteId),
    #[error("site code {0} is taken")]
    SiteCodeTaken(SiteCode),
    #[error("no site has code {0} (R-CONN-2)")]
    UnknownSiteCode(SiteCode),
    #[error("a site cannot connect with itself (R-CONN-2)")]
    OwnSiteCode,
    #[error("a site cannot be its own parent, or a parent of its own parent")]
    ParentCycle,
    #[error("user {0} does not exist on this site")]
    UserNotFound(UserId),
    #[error("user {0} exists already")]
    UserExists(UserId),
    #[error("username {0} is taken on this site")]
    UsernameTaken(Username),
    /// A new username that looks the same as a taken one (one comparison
    /// key, `Username::key`): `аdmin` with a Cyrillic `а` beside `admin`.
    #[error("username {} looks the same as {existing}, which is taken on this site", shown(username.as_str()))]
    UsernameLooksTaken {
        username: Username,
        existing: Username,
    },
    #[error("user {0} is deactivated and cannot be edited until reactivated (R-USER-6)")]
    UserInactive(UserId),
    #[error("user {0} is active already")]
    UserActive(UserId),
    #[error("the site's seat limit of {limit} active users is reached (R-USER-7)")]
    SeatLimitReached { limit: u32 },
    #[error("{} bad row(s) in the import; nothing was applied (R-USER-8)", bad_rows(.0))]
    ImportRejected(Vec<RowError>),
    #[error("self-registration is not enabled with a model user on this site (R-ONB-2)")]
    SelfRegistrationNotConfigured,
    #[error("this self-registration link is not one a group publishes now (R-ONB-2)")]
    SelfRegistrationLinkInvalid,
    #[error("scorecard {0} does not exist on this site")]
    ScorecardNotFound(ScorecardId),
    #[error("scorecard {0} exists already")]
    ScorecardExists(ScorecardId),
    #[error("object {0} does not exist on this site")]
    ObjectNotFound(ObjectId),
    #[error("object {0} exists already")]
    ObjectExists(ObjectId),
    #[error("object {0} still contains objects: archive them first")]
    ContainerNotEmpty(ObjectId),
    #[error("object {0} is not a container (only Results and Programs contain objects)")]
    NotAContainer(ObjectId),
    #[error("object {0} is not an Indicator or Performance Measure")]
    NotAMeasure(ObjectId),
    #[error("object {object} is on scorecard {scorecard} already")]
    AlreadyPlaced {
        object: ObjectId,
        scorecard: ScorecardId,
    },
    #[error("object {object} is not on scorecard {scorecard}")]
    NotPlaced {
        object: ObjectId,
        scorecard: ScorecardId,
    },
    #[error("this needs at least {needed} access to the scorecard (R-USER-3)")]
    AccessLevelTooLow {
        needed: shareledger_events::catalog::AccessLevel,
    },
    #[error("shared content is read-only to partners (R-SHARE-3)")]
    SharedContentReadOnly,
    #[error("the link {link} is not active (R-SHARE-1)")]
    LinkNotActive { link: Link },
    #[error(
        "the link {link} is pending or active already (R-CONN-2){}",
        other_direction(other)
    )]
    LinkPendingOrActive {
        link: Link,
        /// The other direction the request asked for, when it is free: it
        /// can be asked for alone.
        other: Option<Link>,
    },
    #[error("nothing awaits this site's approval from that partner (R-CONN-3)")]
    NothingToApprove,
    #[error("this site has no request awaiting the partner's approval (R-CONN-3)")]
    NothingToCancel,
    #[error("scorecard {0} is shared over this link already")]
    AlreadyShared(ScorecardId),
    #[error("scorecard {0} is not shared over this link")]
    NotShared(ScorecardId),
    #[error("object {0} is not visible to this site through any shared scorecard (R-SHARE-4)")]
    ObjectNotShared(ObjectId),
    #[error("that relationship exists already")]
    RelationshipExists,
    #[error("this site has no such relationship {0}")]
    RelationshipNotFound(RelationshipId),
}

/// How many rows of an import have errors (a row may have several).
fn bad_rows(errors: &[RowError]) -> usize {
    errors
        .iter()
        .map(|e| e.line)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// The fix a refused two-way request has: ask for the free direction alone.
fn other_direction(other: &Option<Link>) -> String {
    match other {
        Some(link) => format!(
            "; the other direction is free: to ask for it alone, site {} requests with directions \"offer\"",
            link.from
        ),
        None => String::new(),
    }
}

impl DomainError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        use DomainError::*;
        match self {
            InvalidValue(_) => "invalid_value",
            UnknownActor { .. } => "unknown_actor",
            ActorInactive => "actor_inactive",
            NotPermitted { .. } => "not_permitted",
            CrossSite { .. } => "cross_site",
            ConnectionsUnavailable => "connections_unavailable",
            NotAnIssuer => "not_an_issuer",
            SiteNotFound(_) => "site_not_found",
            SiteExists(_) => "site_exists",
            SiteCodeTaken(_) => "site_code_taken",
            UnknownSiteCode(_) => "unknown_site_code",
            OwnSiteCode => "own_site_code",
            ParentCycle => "parent_cycle",
            UserNotFound(_) => "user_not_found",
            UserExists(_) => "user_exists",
            UsernameTaken(_) | UsernameLooksTaken { .. } => "username_taken",
            UserInactive(_) => "user_inactive",
            UserActive(_) => "user_active",
            SeatLimitReached { .. } => "seat_limit_reached",
            ImportRejected(_) => "import_rejected",
            SelfRegistrationNotConfigured => "self_registration_not_configured",
            SelfRegistrationLinkInvalid => "self_registration_link_invalid",
            ScorecardNotFound(_) => "scorecard_not_found",
            ScorecardExists(_) => "scorecard_exists",
            ObjectNotFound(_) => "object_not_found",
            ObjectExists(_) => "object_exists",
            ContainerNotEmpty(_) => "container_not_empty",
            NotAContainer(_) => "not_a_container",
            NotAMeasure(_) => "not_a_measure",
            AlreadyPlaced { .. } => "already_placed",
            NotPlaced { .. } => "not_placed",
            AccessLevelTooLow { .. } => "access_level_too_low",
            SharedContentReadOnly => "shared_content_read_only",
            LinkNotActive { .. } => "link_not_active",
            LinkPendingOrActive { .. } => "link_pending_or_active",
            NothingToApprove => "nothing_to_approve",
            NothingToCancel => "nothing_to_cancel",
            AlreadyShared(_) => "already_shared",
            NotShared(_) => "not_shared",
            ObjectNotShared(_) => "object_not_shared",
            RelationshipExists => "relationship_exists",
            RelationshipNotFound(_) => "relationship_not_found",
        }
    }
}

#[cfg(test)]
mod tests {
    use shareledger_events::catalog::AccessLevel;

    use super::*;

    /// Details speak the domain: flags and levels by their names on the
    /// wire, links as directions between sites; never Rust debug text.
    #[test]
    fn details_name_flags_levels_and_links_in_the_domains_words() {
        let (from, to) = (SiteId::new(), SiteId::new());
        let cases = [
            (
                DomainError::NotPermitted {
                    needed: PermissionFlag::ManageUsers,
                },
                "this needs the manage_users permission (R-CONN-1, R-USER-5)".to_owned(),
            ),
            (
                DomainError::AccessLevelTooLow {
                    needed: AccessLevel::ScorecardAdmin,
                },
                "this needs at least scorecard_admin access to the scorecard (R-USER-3)".to_owned(),
            ),
            (
                DomainError::LinkNotActive {
                    link: Link { from, to },
                },
                format!("the link from site {from} to site {to} is not active (R-SHARE-1)"),
            ),
            (
                DomainError::LinkPendingOrActive {
                    link: Link { from, to },
                    other: None,
                },
                format!(
                    "the link from site {from} to site {to} is pending or active already (R-CONN-2)"
                ),
            ),
            (
                DomainError::LinkPendingOrActive {
                    link: Link { from, to },
                    other: Some(Link { from: to, to: from }),
                },
                format!(
                    "the link from site {from} to site {to} is pending or active already (R-CONN-2); \
                     the other direction is free: to ask for it alone, site {to} requests with \
                     directions \"offer\""
                ),
            ),
        ];
        for (error, detail) in cases {
            let shown = error.to_string();
            assert_eq!(shown, detail);
            assert!(
                !shown.contains("SiteId(") && !shown.contains('{'),
                "{shown}"
            );
        }
    }
}
