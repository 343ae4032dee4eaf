//! Notifications: the messages an email or chat service sends to the people
//! who must know of a change (issue 17, part 4), made from the log's events
//! and the access index as it stood at each event.
//!
//! | event                        | kind                           | addressed to                         |
//! |------------------------------|--------------------------------|--------------------------------------|
//! | `ConnectionRequested`        | `connection_requested`         | the partner's Instance Admins        |
//! | `ConnectionRequestCancelled` | `connection_request_cancelled` | the partner's Instance Admins        |
//! | `LinksActivated`             | `connection_approved`          | the other site's Instance Admins     |
//! | `ConnectionDenied`           | `connection_denied`            | the requester's Instance Admins      |
//! | `LinkRevoked`                | `link_revoked`                 | the other site's Instance Admins     |
//! | `ScorecardShared`            | `scorecard_shared`             | the receiving site's Instance Admins |
//! | `UserDeactivated`            | `user_deactivated`             | the user                             |
//!
//! Revocations and unshares that are the system's consequences of another
//! change make no notification of their own: the change that caused them
//! did. A notification with no one to address (a site with no active
//! Instance Admin) is still made, with no recipients, so that a service
//! can tell the site's operator.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use shareledger_core::catalog::{
    ConnectionEvent, Directions, Email, Name, SiteCode, SiteEvent, SiteId, UserId, Username,
};

use crate::access::AccessIndex;
use crate::decode::Decoded;

/// What a notification tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    ConnectionRequested,
    ConnectionRequestCancelled,
    ConnectionApproved,
    ConnectionDenied,
    LinkRevoked,
    ScorecardShared,
    UserDeactivated,
}

impl NotificationKind {
    /// The name used in subjects and in the table (`connection_requested`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectionRequested => "connection_requested",
            Self::ConnectionRequestCancelled => "connection_request_cancelled",
            Self::ConnectionApproved => "connection_approved",
            Self::ConnectionDenied => "connection_denied",
            Self::LinkRevoked => "link_revoked",
            Self::ScorecardShared => "scorecard_shared",
            Self::UserDeactivated => "user_deactivated",
        }
    }
}

/// A site as people know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteLabel {
    pub id: SiteId,
    pub code: Option<SiteCode>,
    pub name: Option<Name>,
}

/// One person a notification is addressed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub user_id: UserId,
    pub username: Username,
    pub name: Name,
    /// None: the user has no email on record.
    pub email: Option<Email>,
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub kind: NotificationKind,
    /// The site whose people are addressed.
    pub site: SiteLabel,
    pub recipients: Vec<Recipient>,
    /// The other site of a connection notification.
    pub partner: Option<SiteLabel>,
    /// The shared scorecard's name, for `scorecard_shared`.
    pub scorecard: Option<String>,
    /// One sentence, in the domain's words, ready to send.
    pub text: String,
}

/// Makes notifications from events. Keeps what the access index does not:
/// each user's email.
#[derive(Debug, Default)]
pub struct Notifier {
    emails: FxHashMap<UserId, Email>,
}

impl Notifier {
    /// Notes what a notification needs from an event (call for every
    /// event, in log order, with the index as it stands after the event).
    pub fn observe(&mut self, decoded: &Decoded) {
        if let Decoded::Site { event, .. } = decoded {
            let (user, email) = match event {
                SiteEvent::UserAdded { user, .. } => (user.user_id, user.email.clone()),
                SiteEvent::UserDetailsChanged { user_id, email, .. } => (*user_id, email.clone()),
                _ => return,
            };
            match email {
                Some(email) => self.emails.insert(user, email),
                None => self.emails.remove(&user),
            };
        }
    }

    /// The notifications an event makes, with the index as it stands after
    /// the event.
    pub fn notify(&self, index: &AccessIndex, decoded: &Decoded) -> Vec<Notification> {
        let site = |id: SiteId| {
            let (code, name) = index.site_code_and_name_of(id).unzip();
            SiteLabel { id, code, name }
        };
        let called = |label: &SiteLabel| match (&label.name, &label.code) {
            (Some(name), Some(code)) => format!("{name} ({code})"),
            _ => format!("site {}", label.id),
        };
        let admins = |id: SiteId| -> Vec<Recipient> {
            index
                .instance_admins(id)
                .into_iter()
                .filter_map(|user| self.recipient(index, user))
                .collect()
        };
        let to_site = |kind, addressed: SiteId, other: SiteId, text: &dyn Fn(&str) -> String| {
            let partner = site(other);
            Notification {
                kind,
                text: text(&called(&partner)),
                site: site(addressed),
                recipients: admins(addressed),
                partner: Some(partner),
                scorecard: None,
            }
        };
        let other_of = |links: &[shareledger_core::catalog::Link], me: SiteId| {
            links.iter().flat_map(|l| [l.from, l.to]).find(|s| *s != me)
        };
        match decoded {
            Decoded::Connection(event) => match event {
                ConnectionEvent::ConnectionRequested {
                    requester,
                    partner,
                    directions,
                    ..
                } => {
                    let what = match directions {
                        Directions::Both => "to share scorecards both ways",
                        Directions::Offer => "to share its scorecards with your site",
                    };
                    vec![to_site(
                        NotificationKind::ConnectionRequested,
                        *partner,
                        *requester,
                        &|p| format!("{p} asks to connect with your site {what}."),
                    )]
                }
                ConnectionEvent::ConnectionRequestCancelled { requester, links } => {
                    other_of(links, *requester)
                        .map(|partner| {
                            to_site(
                                NotificationKind::ConnectionRequestCancelled,
                                partner,
                                *requester,
                                &|p| format!("{p} cancelled its connection request."),
                            )
                        })
                        .into_iter()
                        .collect()
                }
                ConnectionEvent::LinksActivated {
                    approver, links, ..
                } => other_of(links, *approver)
                    .map(|requester| {
                        to_site(
                            NotificationKind::ConnectionApproved,
                            requester,
                            *approver,
                            &|p| format!("{p} approved the connection with your site."),
                        )
                    })
                    .into_iter()
                    .collect(),
                ConnectionEvent::ConnectionDenied { denier, links } => other_of(links, *denier)
                    .map(|requester| {
                        to_site(
                            NotificationKind::ConnectionDenied,
                            requester,
                            *denier,
                            &|p| format!("{p} denied your connection request."),
                        )
                    })
                    .into_iter()
                    .collect(),
                ConnectionEvent::LinkRevoked { revoker, link } => {
                    let other = if link.from == *revoker {
                        link.to
                    } else {
                        link.from
                    };
                    let direction = if link.from == *revoker {
                        "its sharing with your site"
                    } else {
                        "your site's sharing with it"
                    };
                    vec![to_site(
                        NotificationKind::LinkRevoked,
                        other,
                        *revoker,
                        &|p| format!("{p} revoked {direction}."),
                    )]
                }
                ConnectionEvent::ScorecardShared { link, scorecard_id } => {
                    let name = index
                        .plain_name(scorecard_id.0)
                        .unwrap_or_else(|| format!("scorecard {scorecard_id}"));
                    let mut n = to_site(
                        NotificationKind::ScorecardShared,
                        link.to,
                        link.from,
                        &|p| format!("{p} shared the scorecard {name} with your site."),
                    );
                    n.scorecard = Some(name.clone());
                    vec![n]
                }
                _ => Vec::new(),
            },
            Decoded::Site {
                site: id,
                event: SiteEvent::UserDeactivated { user_id },
            } => {
                let label = site(*id);
                vec![Notification {
                    kind: NotificationKind::UserDeactivated,
                    text: format!("Your account on {} was deactivated.", called(&label)),
                    site: label,
                    recipients: self.recipient(index, *user_id).into_iter().collect(),
                    partner: None,
                    scorecard: None,
                }]
            }
            _ => Vec::new(),
        }
    }

    fn recipient(&self, index: &AccessIndex, user: UserId) -> Option<Recipient> {
        index.person(user).map(|p| Recipient {
            user_id: user,
            username: p.username,
            name: p.name,
            email: self.emails.get(&user).cloned(),
        })
    }
}
