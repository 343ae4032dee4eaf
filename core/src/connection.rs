//! Partner connections and scorecard sharing between two sites: the state
//! folded from a `connection-<lo>-<hi>` stream, and the decisions of the
//! connection and sharing commands (R-CONN-1 to R-CONN-7, R-SHARE-1,
//! R-SHARE-7).
//!
//! Two sites A and B have at most two *share links*, A→B ("A shares with B")
//! and B→A, each with its own [`LinkState`] and its own set of shared
//! scorecards. Both live in one stream so that a decision sees both
//! directions at once (R-CONN-5 needs that).
//!
//! The state machine of one link (X is the site that requested it, Y the
//! other one, who approves):
//!
//! | from                                     | event                                      | to                                     |
//! |------------------------------------------|--------------------------------------------|----------------------------------------|
//! | `None`, `Denied`, `Cancelled`, `Revoked` | `ConnectionRequested` by X                 | `AwaitingApproval { requested_by: X }` |
//! | `AwaitingApproval { requested_by: X }`   | `LinksActivated` by Y (approval, R-CONN-3) | `Active`                               |
//! | `AwaitingApproval { requested_by: X }`   | `LinksActivated` by Y's request (R-CONN-5) | `Active`                               |
//! | `AwaitingApproval { requested_by: X }`   | `ConnectionDenied` by Y                    | `Denied`                               |
//! | `AwaitingApproval { requested_by: X }`   | `ConnectionRequestCancelled` by X          | `Cancelled`                            |
//! | `Active`                                 | `ScorecardShared`, `ScorecardUnshared`     | `Active`, its shared set changed       |
//! | `Active`                                 | `LinkRevoked` by X or Y (R-CONN-4)         | `Revoked`, its shared set emptied      |
//!
//! Nothing else moves a link. In particular a `Denied`, `Cancelled` or
//! `Revoked` link only becomes `Active` again through a new request (and its
//! approval), and a new request starts from nothing shared (R-CONN-4,
//! R-CONN-6, R-CONN-7). Only an `Active` link has shared scorecards.
//!
//! [`ConnectionState::evolve`] is total: it never fails on stored history
//! (an event that does not fit is ignored). [`ConnectionState::can_apply`]
//! says whether an event is a legal next step; every decision here only
//! returns events it accepts.
//!
//! Every command is refused with [`DomainError::ConnectionsUnavailable`] for
//! an operator (an actor "not linked to an organisation profile", R-CONN-1),
//! and otherwise needs an active user with Instance Admin on the acting site
//! ([`authorize`], R-CONN-1, R-USER-6, R-USER-9).

use std::collections::{BTreeMap, BTreeSet};

use shareledger_events::catalog::{
    ConnectionEvent, Directions, Link, PermissionFlag, RemovalReason, ScorecardId, SiteCode, SiteId,
};
use shareledger_events::Actor;

use crate::decision::{Context, Decided, Decision, Facts, Read, Write};
use crate::error::DomainError;
use crate::site::{authorize, SiteState};

/// The state of one share link (one direction of a connection).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// Never requested.
    #[default]
    None,
    /// Requested by `requested_by`; the other site of the pair approves or
    /// denies, the requester may cancel (R-CONN-3).
    AwaitingApproval { requested_by: SiteId },
    /// Approved (or mutually requested, R-CONN-5): scorecards can be shared.
    Active,
    /// Denied by the approver.
    Denied,
    /// Cancelled by the requester before approval.
    Cancelled,
    /// Revoked by either site after it was active (R-CONN-4).
    Revoked,
}

impl LinkState {
    pub fn is_active(self) -> bool {
        self == LinkState::Active
    }

    /// Pending (awaiting approval) or active: what a new request may not ask
    /// for again (R-CONN-2).
    pub fn is_open(self) -> bool {
        matches!(self, LinkState::Active | LinkState::AwaitingApproval { .. })
    }
}

/// One link's state and the scorecards shared over it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct LinkEntry {
    state: LinkState,
    shared: BTreeSet<ScorecardId>,
}

static NOTHING_SHARED: BTreeSet<ScorecardId> = BTreeSet::new();

/// Both links between two sites, folded from their `connection-<lo>-<hi>`
/// stream. A never-written stream is [`ConnectionState::new`]: both links
/// [`LinkState::None`], nothing shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionState {
    lo: SiteId,
    hi: SiteId,
    /// `[lo→hi, hi→lo]`.
    entries: [LinkEntry; 2],
}

impl ConnectionState {
    /// The state of a pair whose stream has no events yet. The order of the
    /// two sites does not matter (as with `connection_stream`).
    pub fn new(a: SiteId, b: SiteId) -> Self {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        Self {
            lo,
            hi,
            entries: Default::default(),
        }
    }

    /// Folds the pair's whole stream.
    pub fn from_events<'a>(
        a: SiteId,
        b: SiteId,
        events: impl IntoIterator<Item = &'a ConnectionEvent>,
    ) -> Self {
        events
            .into_iter()
            .fold(ConnectionState::new(a, b), ConnectionState::evolve)
    }

    /// Applies one event. Total: a link outside the pair, or a step the
    /// state machine does not have, leaves the state as it was (see
    /// [`ConnectionState::can_apply`] for the strict check).
    pub fn evolve(mut state: ConnectionState, event: &ConnectionEvent) -> ConnectionState {
        if !state.can_apply(event) {
            return state;
        }
        match event {
            ConnectionEvent::ConnectionRequested {
                requester, links, ..
            } => {
                for link in links {
                    if let Some(entry) = state.entry_mut(*link) {
                        entry.state = LinkState::AwaitingApproval {
                            requested_by: *requester,
                        };
                        entry.shared.clear();
                    }
                }
            }
            ConnectionEvent::LinksActivated { links, .. } => {
                state.set_all(links, LinkState::Active);
            }
            ConnectionEvent::ConnectionDenied { links, .. } => {
                state.set_all(links, LinkState::Denied);
            }
            ConnectionEvent::ConnectionRequestCancelled { links, .. } => {
                state.set_all(links, LinkState::Cancelled);
            }
            ConnectionEvent::LinkRevoked { link, .. } => {
                if let Some(entry) = state.entry_mut(*link) {
                    entry.state = LinkState::Revoked;
                    entry.shared.clear();
                }
            }
            ConnectionEvent::ScorecardShared { link, scorecard_id } => {
                if let Some(entry) = state.entry_mut(*link) {
                    entry.shared.insert(*scorecard_id);
                }
            }
            ConnectionEvent::ScorecardUnshared {
                link, scorecard_id, ..
            } => {
                if let Some(entry) = state.entry_mut(*link) {
                    entry.shared.remove(scorecard_id);
                }
            }
        }
        state
    }

    /// Whether `event` is a legal next step from this state (the table in
    /// the module doc). A `ScorecardUnshared { because_link_revoked: true }`
    /// follows the `LinkRevoked` that already emptied the link's shared set:
    /// it is legal on a `Revoked` link.
    pub fn can_apply(&self, event: &ConnectionEvent) -> bool {
        let all_awaiting = |links: &[Link], pred: &dyn Fn(Link, SiteId) -> bool| {
            !links.is_empty()
                && distinct(links)
                && links.iter().all(|l| match self.link_state(*l) {
                    LinkState::AwaitingApproval { requested_by } => pred(*l, requested_by),
                    _ => false,
                })
        };
        match event {
            ConnectionEvent::ConnectionRequested {
                requester,
                partner,
                links,
                ..
            } => {
                requester != partner
                    && !links.is_empty()
                    && distinct(links)
                    && links.iter().all(|l| {
                        self.entry(*l).is_some()
                            && (l.from == *requester || l.from == *partner)
                            && (l.to == *requester || l.to == *partner)
                            && !self.link_state(*l).is_open()
                    })
            }
            ConnectionEvent::LinksActivated {
                approver, links, ..
            } => all_awaiting(links, &|l, by| by != *approver && l.involves(*approver)),
            ConnectionEvent::ConnectionDenied { denier, links } => {
                all_awaiting(links, &|l, by| by != *denier && l.involves(*denier))
            }
            ConnectionEvent::ConnectionRequestCancelled { requester, links } => {
                all_awaiting(links, &|_, by| by == *requester)
            }
            ConnectionEvent::LinkRevoked { revoker, link } => {
                self.link_state(*link).is_active() && link.involves(*revoker)
            }
            ConnectionEvent::ScorecardShared { link, scorecard_id } => {
                self.link_state(*link).is_active() && !self.shared(*link).contains(scorecard_id)
            }
            ConnectionEvent::ScorecardUnshared {
                link,
                scorecard_id,
                because_link_revoked: false,
            } => self.link_state(*link).is_active() && self.shared(*link).contains(scorecard_id),
            ConnectionEvent::ScorecardUnshared {
                link,
                because_link_revoked: true,
                ..
            } => self.link_state(*link) == LinkState::Revoked,
        }
    }

    /// The two sites of the pair (lower id first).
    pub fn sites(&self) -> [SiteId; 2] {
        [self.lo, self.hi]
    }

    /// The two links of the pair: `[lo→hi, hi→lo]`.
    pub fn links(&self) -> [Link; 2] {
        let forward = Link {
            from: self.lo,
            to: self.hi,
        };
        [forward, forward.reversed()]
    }

    /// Whether `site` is one of the pair.
    pub fn involves(&self, site: SiteId) -> bool {
        site == self.lo || site == self.hi
    }

    /// The other site of the pair, if `site` is one of it.
    pub fn partner_of(&self, site: SiteId) -> Option<SiteId> {
        if site == self.lo {
            Some(self.hi)
        } else if site == self.hi {
            Some(self.lo)
        } else {
            None
        }
    }

    /// The state of `link` (`None` for a link outside the pair).
    pub fn link_state(&self, link: Link) -> LinkState {
        self.entry(link).map(|e| e.state).unwrap_or_default()
    }

    /// The scorecards shared over `link` (empty unless it is active).
    pub fn shared(&self, link: Link) -> &BTreeSet<ScorecardId> {
        self.entry(link)
            .map(|e| &e.shared)
            .unwrap_or(&NOTHING_SHARED)
    }

    /// The links awaiting `site`'s approval: requested by the other site.
    /// The requester's offer (requester→`site`) comes first, as in its
    /// request.
    pub fn awaiting_approval_by(&self, site: SiteId) -> Vec<Link> {
        self.awaiting(|by| by != site && self.involves(site))
    }

    /// The links `site` requested that still await the other site's approval,
    /// its offer (`site`→partner) first.
    pub fn requested_by_awaiting(&self, site: SiteId) -> Vec<Link> {
        self.awaiting(|by| by == site)
    }

    fn awaiting(&self, pred: impl Fn(SiteId) -> bool) -> Vec<Link> {
        let mut links: Vec<(bool, Link)> = self
            .links()
            .into_iter()
            .filter_map(|l| match self.link_state(l) {
                LinkState::AwaitingApproval { requested_by } if pred(requested_by) => {
                    Some((l.from != requested_by, l))
                }
                _ => None,
            })
            .collect();
        links.sort();
        links.into_iter().map(|(_, l)| l).collect()
    }

    fn index(&self, link: Link) -> Option<usize> {
        if link.from == self.lo && link.to == self.hi {
            Some(0)
        } else if link.from == self.hi && link.to == self.lo {
            Some(1)
        } else {
            None
        }
    }

    fn entry(&self, link: Link) -> Option<&LinkEntry> {
        self.index(link).map(|i| &self.entries[i])
    }

    fn entry_mut(&mut self, link: Link) -> Option<&mut LinkEntry> {
        self.index(link).map(|i| &mut self.entries[i])
    }

    fn set_all(&mut self, links: &[Link], state: LinkState) {
        for link in links {
            if let Some(entry) = self.entry_mut(*link) {
                entry.state = state;
            }
        }
    }
}

trait Involves {
    fn involves(self, site: SiteId) -> bool;
}

impl Involves for Link {
    fn involves(self, site: SiteId) -> bool {
        self.from == site || self.to == site
    }
}

fn distinct(links: &[Link]) -> bool {
    links.iter().collect::<BTreeSet<_>>().len() == links.len()
}

const INSTANCE_ADMIN: [PermissionFlag; 1] = [PermissionFlag::InstanceAdmin];

/// R-CONN-1: an operator has no organisation profile, so connections are
/// unavailable to it; a user needs Instance Admin on `site` (and to be an
/// active user of it: R-USER-6, R-USER-9).
fn authorize_connections(actor: &Actor, site: &SiteState) -> Result<(), DomainError> {
    if matches!(actor, Actor::Operator { .. }) {
        return Err(DomainError::ConnectionsUnavailable);
    }
    authorize(actor, site, &INSTANCE_ADMIN).map(|_| ())
}

/// The acting site must be `link.from`, the site whose scorecards are shared
/// (R-SHARE-1, R-USER-9).
fn sharing_site(site: &SiteState, link: Link) -> Result<(), DomainError> {
    if site.id != link.from {
        return Err(DomainError::CrossSite {
            actor_site: site.id,
            target_site: link.from,
        });
    }
    Ok(())
}

fn active(state: &ConnectionState, link: Link) -> Result<(), DomainError> {
    if !state.link_state(link).is_active() {
        return Err(DomainError::LinkNotActive { link });
    }
    Ok(())
}

/// RequestConnection (R-CONN-1, R-CONN-2, R-CONN-5, R-CONN-6): the
/// requester's Instance Admin asks `partner` (found by its site code) for
/// links. `Both` asks for requester→partner and partner→requester, `Offer`
/// for requester→partner only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestConnection {
    /// The requesting site.
    pub site_id: SiteId,
    /// The partner's site code.
    pub partner_code: SiteCode,
    pub directions: Directions,
}

impl RequestConnection {
    /// `requester` is the acting user's site, `partner` the state of the site
    /// `partner_code` names (`None`: no site has that code), `state` the
    /// pair's connection state.
    ///
    /// * Own code → [`DomainError::OwnSiteCode`]; unknown code →
    ///   [`DomainError::UnknownSiteCode`].
    /// * A requested link already active, or awaiting approval on the
    ///   requester's own request → [`DomainError::LinkPendingOrActive`]
    ///   (nothing is written, not even for the other direction).
    /// * A requested link awaiting the *requester's* approval (the partner
    ///   asked for it) is activated at once (R-CONN-5):
    ///   `LinksActivated { mutual_request: true }`.
    /// * Every other requested link (never requested, denied, cancelled,
    ///   revoked) goes into one `ConnectionRequested` and awaits the partner's
    ///   approval: a cancelled request is never auto-linked (R-CONN-6).
    pub fn decide(
        &self,
        actor: &Actor,
        requester: &SiteState,
        partner: Option<&SiteState>,
        state: &ConnectionState,
    ) -> Result<Vec<ConnectionEvent>, DomainError> {
        authorize_connections(actor, requester)?;
        if self.partner_code == requester.code || partner.is_some_and(|p| p.id == requester.id) {
            return Err(DomainError::OwnSiteCode);
        }
        let Some(partner) = partner else {
            return Err(DomainError::UnknownSiteCode(self.partner_code.clone()));
        };
        debug_assert!(
            state.involves(requester.id) && state.involves(partner.id),
            "connection state of another pair"
        );
        let offered = Link {
            from: requester.id,
            to: partner.id,
        };
        let requested: Vec<Link> = match self.directions {
            Directions::Both => vec![offered, offered.reversed()],
            Directions::Offer => vec![offered],
        };
        // A link already active, or awaiting the partner on this site's own
        // request, refuses the whole request; the refusal names the other
        // requested direction when that one could be asked for alone.
        let taken = |link: Link| match state.link_state(link) {
            LinkState::Active => true,
            LinkState::AwaitingApproval { requested_by } => requested_by == requester.id,
            _ => false,
        };
        if let Some(link) = requested.iter().copied().find(|l| taken(*l)) {
            let other = requested.iter().copied().find(|l| *l != link && !taken(*l));
            return Err(DomainError::LinkPendingOrActive { link, other });
        }
        let mut new = Vec::new();
        let mut mutual = Vec::new();
        for link in requested {
            match state.link_state(link) {
                LinkState::AwaitingApproval { .. } => mutual.push(link),
                _ => new.push(link),
            }
        }
        let mut events = Vec::new();
        if !new.is_empty() {
            events.push(ConnectionEvent::ConnectionRequested {
                requester: requester.id,
                partner: partner.id,
                directions: self.directions,
                links: new,
            });
        }
        if !mutual.is_empty() {
            events.push(ConnectionEvent::LinksActivated {
                approver: requester.id,
                links: mutual,
                mutual_request: true,
            });
        }
        Ok(events)
    }
}

/// The links from `partner` awaiting `site`'s approval, or `NothingToApprove`.
fn awaiting_from(
    state: &ConnectionState,
    site: SiteId,
    partner: SiteId,
) -> Result<Vec<Link>, DomainError> {
    let links: Vec<Link> = state
        .awaiting_approval_by(site)
        .into_iter()
        .filter(|l| l.involves(partner))
        .collect();
    if links.is_empty() {
        return Err(DomainError::NothingToApprove);
    }
    Ok(links)
}

/// ApproveConnection (R-CONN-1, R-CONN-3): the acting site's Instance Admin
/// approves every link `partner` requested that awaits its approval; they
/// all become active.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApproveConnection {
    /// The acting site.
    pub site_id: SiteId,
    pub partner: SiteId,
}

impl ApproveConnection {
    /// `site` is the approving (acting) site. Nothing awaiting →
    /// [`DomainError::NothingToApprove`].
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        state: &ConnectionState,
    ) -> Result<Vec<ConnectionEvent>, DomainError> {
        authorize_connections(actor, site)?;
        let links = awaiting_from(state, site.id, self.partner)?;
        Ok(vec![ConnectionEvent::LinksActivated {
            approver: site.id,
            links,
            mutual_request: false,
        }])
    }
}

/// DenyConnection (R-CONN-1, R-CONN-3): the acting site's Instance Admin
/// denies every link `partner` requested that awaits its approval.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DenyConnection {
    /// The acting site.
    pub site_id: SiteId,
    pub partner: SiteId,
}

impl DenyConnection {
    /// `site` is the denying (acting) site. Nothing awaiting →
    /// [`DomainError::NothingToApprove`].
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        state: &ConnectionState,
    ) -> Result<Vec<ConnectionEvent>, DomainError> {
        authorize_connections(actor, site)?;
        let links = awaiting_from(state, site.id, self.partner)?;
        Ok(vec![ConnectionEvent::ConnectionDenied {
            denier: site.id,
            links,
        }])
    }
}

/// CancelConnectionRequest (R-CONN-1, R-CONN-3, R-CONN-6): the requester's
/// Instance Admin cancels its links still awaiting `partner`'s approval. A
/// later request by the partner then waits for manual approval.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CancelConnectionRequest {
    /// The acting site.
    pub site_id: SiteId,
    pub partner: SiteId,
}

impl CancelConnectionRequest {
    /// `site` is the requesting (acting) site. No request awaiting →
    /// [`DomainError::NothingToCancel`].
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        state: &ConnectionState,
    ) -> Result<Vec<ConnectionEvent>, DomainError> {
        authorize_connections(actor, site)?;
        let links: Vec<Link> = state
            .requested_by_awaiting(site.id)
            .into_iter()
            .filter(|l| l.involves(self.partner))
            .collect();
        if links.is_empty() {
            return Err(DomainError::NothingToCancel);
        }
        Ok(vec![ConnectionEvent::ConnectionRequestCancelled {
            requester: site.id,
            links,
        }])
    }
}

/// RevokeSharing (R-CONN-1, R-CONN-4): either site's Instance Admin revokes
/// one active link (one direction; the other is left as it was). Every
/// scorecard shared over it is unshared at once, as a consequence.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokeSharing {
    /// The acting site: either end of the link.
    pub site_id: SiteId,
    /// The link's sharing site.
    pub from: SiteId,
    /// The link's receiving site.
    pub to: SiteId,
}

impl RevokeSharing {
    /// The link revoked.
    pub fn link(&self) -> Link {
        Link {
            from: self.from,
            to: self.to,
        }
    }
}

impl RevokeSharing {
    /// `site` is the revoking (acting) site. Emits `LinkRevoked`, then one
    /// `ScorecardUnshared { because_link_revoked: true }` per scorecard shared
    /// over the link (see [`is_consequence`]).
    ///
    /// * `site` not in the link → [`DomainError::CrossSite`].
    /// * Link not active → [`DomainError::LinkNotActive`].
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        state: &ConnectionState,
    ) -> Result<Vec<ConnectionEvent>, DomainError> {
        authorize_connections(actor, site)?;
        if !self.link().involves(site.id) {
            return Err(DomainError::CrossSite {
                actor_site: site.id,
                target_site: self.link().from,
            });
        }
        active(state, self.link())?;
        let revoked = ConnectionEvent::LinkRevoked {
            revoker: site.id,
            link: self.link(),
        };
        let unshared = state.shared(self.link()).iter().map(|scorecard_id| {
            ConnectionEvent::ScorecardUnshared {
                link: self.link(),
                scorecard_id: *scorecard_id,
                because_link_revoked: true,
            }
        });
        Ok(std::iter::once(revoked).chain(unshared).collect())
    }
}

/// ShareScorecard (R-CONN-1, R-SHARE-1): the sharing site's (`link.from`)
/// Instance Admin lets the partner see one of its own scorecards, over an
/// active link.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareScorecard {
    /// The sharing site.
    pub site_id: SiteId,
    pub partner: SiteId,
    pub scorecard_id: ScorecardId,
}

impl ShareScorecard {
    /// The link it shares over: the site's to the partner.
    pub fn link(&self) -> Link {
        Link {
            from: self.site_id,
            to: self.partner,
        }
    }
}

impl ShareScorecard {
    /// `site` is the acting site; `owned` whether `scorecard_id` is one of
    /// `link.from`'s own scorecards (the command service checks its content).
    ///
    /// * `site` is not `link.from` → [`DomainError::CrossSite`].
    /// * Link not active → [`DomainError::LinkNotActive`].
    /// * Not owned → [`DomainError::ScorecardNotFound`].
    /// * Shared already → [`DomainError::AlreadyShared`].
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        owned: bool,
        state: &ConnectionState,
    ) -> Result<Vec<ConnectionEvent>, DomainError> {
        authorize_connections(actor, site)?;
        sharing_site(site, self.link())?;
        active(state, self.link())?;
        if !owned {
            return Err(DomainError::ScorecardNotFound(self.scorecard_id));
        }
        if state.shared(self.link()).contains(&self.scorecard_id) {
            return Err(DomainError::AlreadyShared(self.scorecard_id));
        }
        Ok(vec![ConnectionEvent::ScorecardShared {
            link: self.link(),
            scorecard_id: self.scorecard_id,
        }])
    }
}

/// UnshareScorecard (R-CONN-1, R-SHARE-1): the sharing site's Instance Admin
/// takes one scorecard back from the partner.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnshareScorecard {
    /// The sharing site.
    pub site_id: SiteId,
    pub partner: SiteId,
    pub scorecard_id: ScorecardId,
}

impl UnshareScorecard {
    /// The link it shares over: the site's to the partner.
    pub fn link(&self) -> Link {
        Link {
            from: self.site_id,
            to: self.partner,
        }
    }
}

impl UnshareScorecard {
    /// `site` is the acting site.
    ///
    /// * `site` is not `link.from` → [`DomainError::CrossSite`].
    /// * Link not active → [`DomainError::LinkNotActive`].
    /// * Not shared → [`DomainError::NotShared`].
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        state: &ConnectionState,
    ) -> Result<Vec<ConnectionEvent>, DomainError> {
        authorize_connections(actor, site)?;
        sharing_site(site, self.link())?;
        active(state, self.link())?;
        if !state.shared(self.link()).contains(&self.scorecard_id) {
            return Err(DomainError::NotShared(self.scorecard_id));
        }
        Ok(vec![ConnectionEvent::ScorecardUnshared {
            link: self.link(),
            scorecard_id: self.scorecard_id,
            because_link_revoked: false,
        }])
    }
}

/// SetSharedScorecards, seed 000's "Edit Scorecards" (R-CONN-1, R-SHARE-1):
/// the whole set of scorecards the partner may see over an active link,
/// saved at once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetSharedScorecards {
    /// The sharing site.
    pub site_id: SiteId,
    pub partner: SiteId,
    pub scorecards: BTreeSet<ScorecardId>,
}

impl SetSharedScorecards {
    /// The link it shares over: the site's to the partner.
    pub fn link(&self) -> Link {
        Link {
            from: self.site_id,
            to: self.partner,
        }
    }
}

impl SetSharedScorecards {
    /// `site` is the acting site; `owned` the scorecards of `link.from`.
    /// Emits the difference: `ScorecardUnshared` for each scorecard leaving
    /// the set, then `ScorecardShared` for each one joining it (no change:
    /// no events).
    ///
    /// * `site` is not `link.from` → [`DomainError::CrossSite`].
    /// * Link not active → [`DomainError::LinkNotActive`].
    /// * A joining scorecard not owned → [`DomainError::ScorecardNotFound`]
    ///   (the first one, in id order).
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        owned: &BTreeSet<ScorecardId>,
        state: &ConnectionState,
    ) -> Result<Vec<ConnectionEvent>, DomainError> {
        authorize_connections(actor, site)?;
        sharing_site(site, self.link())?;
        active(state, self.link())?;
        let current = state.shared(self.link());
        if let Some(foreign) = self
            .scorecards
            .difference(current)
            .find(|s| !owned.contains(s))
        {
            return Err(DomainError::ScorecardNotFound(*foreign));
        }
        let unshared =
            current
                .difference(&self.scorecards)
                .map(|s| ConnectionEvent::ScorecardUnshared {
                    link: self.link(),
                    scorecard_id: *s,
                    because_link_revoked: false,
                });
        let shared =
            self.scorecards
                .difference(current)
                .map(|s| ConnectionEvent::ScorecardShared {
                    link: self.link(),
                    scorecard_id: *s,
                });
        Ok(unshared.chain(shared).collect())
    }
}

/// R-SHARE-7, "Scorecards You are Currently Sharing": per partner with an
/// active link from `site`, the scorecards `site` shares with it (an empty
/// set: the link is active but shares nothing, R-CONN-7). Partners without
/// an active link from `site` are left out. `states` are the connection
/// states of `site`'s pairs; states of other pairs are ignored.
pub fn shared_per_partner(
    site: SiteId,
    states: &[&ConnectionState],
) -> BTreeMap<SiteId, BTreeSet<ScorecardId>> {
    states
        .iter()
        .filter_map(|state| {
            let partner = state.partner_of(site)?;
            let link = Link {
                from: site,
                to: partner,
            };
            state
                .link_state(link)
                .is_active()
                .then(|| (partner, state.shared(link).clone()))
        })
        .collect()
}

/// Whether `event` is a consequence rather than a decision: the unshares a
/// revocation causes (R-CONN-4). The command service records them as caused
/// by the system, with the `LinkRevoked` event as their causation.
pub fn is_consequence(event: &ConnectionEvent) -> bool {
    matches!(
        event,
        ConnectionEvent::ScorecardUnshared {
            because_link_revoked: true,
            ..
        }
    )
}

/// R-CONN-1: connections are managed by a site's users, never by an
/// operator or the system on a site's behalf.
fn user_only(ctx: &Context) -> Result<(), DomainError> {
    match ctx.actor {
        Actor::User { .. } => Ok(()),
        _ => Err(DomainError::ConnectionsUnavailable),
    }
}

impl Decision for RequestConnection {
    const NAME: &'static str = "RequestConnection";
    const SUMMARY: &'static str = "Requests a connection with the partner of that site code, in both directions or as an offer (R-CONN-1, 2, 5, 6).";

    /// The requester and the code; once the code is read, the partner and
    /// the pair's links.
    fn reads(&self, _: &Context, facts: &Facts) -> Vec<Read> {
        let code = Read::SiteCode(self.partner_code.clone());
        let mut reads = vec![Read::Site(self.site_id)];
        if let Some(partner) = facts
            .has(&code)
            .then(|| facts.site_code(&self.partner_code))
            .flatten()
        {
            reads.push(Read::Site(partner));
            reads.push(Read::Connection(self.site_id, partner));
        }
        reads.push(code);
        reads
    }

    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        user_only(ctx)?;
        let requester = facts.existing_site(self.site_id)?;
        let partner = facts.site_code(&self.partner_code);
        // An unknown code has no pair: decide against an empty one with a
        // site that cannot exist, so that authorization is checked before
        // the code is reported unknown.
        let empty;
        let state = match partner {
            Some(partner) => facts.connection(self.site_id, partner),
            None => {
                empty = ConnectionState::new(self.site_id, SiteId(uuid::Uuid::nil()));
                &empty
            }
        };
        let events = self.decide(
            &ctx.actor,
            requester,
            partner.and_then(|p| facts.site(p)),
            state,
        )?;
        Ok(match partner {
            Some(partner) => Decided::write(Write::Connection(self.site_id, partner, events)),
            None => Decided::default(),
        })
    }
}

/// Commands decided on the acting site and the pair's links.
macro_rules! decided_on_the_pair {
    ($($command:ident: $summary:literal),* $(,)?) => {$(
        impl Decision for $command {
            const NAME: &'static str = stringify!($command);
            const SUMMARY: &'static str = $summary;
            fn reads(&self, _: &Context, _: &Facts) -> Vec<Read> {
                vec![Read::Site(self.site_id), Read::Connection(self.site_id, self.partner)]
            }
            fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
                user_only(ctx)?;
                let site = facts.existing_site(self.site_id)?;
                let state = facts.connection(self.site_id, self.partner);
                let events = self.decide(&ctx.actor, site, state)?;
                Ok(Decided::write(Write::Connection(self.site_id, self.partner, events)))
            }
        }
    )*};
}

decided_on_the_pair!(
    ApproveConnection: "Approves what the partner requested (R-CONN-3).",
    DenyConnection: "Denies what the partner requested (R-CONN-3).",
    CancelConnectionRequest: "Cancels the site's own pending request to the partner (R-CONN-3).",
);

impl Decision for RevokeSharing {
    const NAME: &'static str = "RevokeSharing";
    const SUMMARY: &'static str = "Revokes one direction of a connection; its shares and the relationships on them go too (R-CONN-4).";

    /// The acting site, the link's pair, and the receiving site: its users
    /// and its content.
    fn reads(&self, _: &Context, _: &Facts) -> Vec<Read> {
        vec![
            Read::Site(self.site_id),
            Read::Connection(self.from, self.to),
            Read::Site(self.to),
            Read::Content(self.to),
        ]
    }

    /// R-CONN-4: the receiving site loses, in the same append and for good,
    /// every relationship built on what the link shared, and its users'
    /// assignments to the scorecards it shared: a new request starts from
    /// nothing shared, and a scorecard shared again is assigned again.
    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        user_only(ctx)?;
        let site = facts.existing_site(self.site_id)?;
        let state = facts.connection(self.from, self.to);
        let events = self.decide(&ctx.actor, site, state)?;
        let lost = facts.content(self.to).relationships_lost(
            self.from,
            &Default::default(),
            RemovalReason::LinkRevoked,
        );
        let unassigned = facts
            .site(self.to)
            .map(|receiver| receiver.assignments_ended(state.shared(self.link())))
            .unwrap_or_default();
        Ok(
            Decided::write(Write::Connection(self.from, self.to, events))
                .and(Write::ContentConsequences(self.to, lost))
                .and(Write::SiteConsequences(self.to, unassigned)),
        )
    }
}

/// What a sharing command reads: the acting site, the sharing site's
/// content (what it owns), the pair's links, and the partner's content
/// (the relationships that lose their object go in the same append).
fn sharing_reads(ctx: &Context, link: Link) -> Vec<Read> {
    vec![
        Read::Site(ctx.actor_site().unwrap_or(link.from)),
        Read::Content(link.from),
        Read::Connection(link.from, link.to),
        Read::Content(link.to),
    ]
}

/// The connection events, and the partner's relationships that lost their
/// object through them (R-SHARE-4), in one decision.
fn with_relationships_lost(facts: &Facts, link: Link, events: Vec<ConnectionEvent>) -> Decided {
    let after = events.iter().fold(
        facts.connection(link.from, link.to).clone(),
        ConnectionState::evolve,
    );
    let still_visible = facts.content(link.from).visible_through(after.shared(link));
    let lost = facts.content(link.to).relationships_lost(
        link.from,
        &still_visible,
        RemovalReason::ScorecardUnshared,
    );
    Decided::write(Write::Connection(link.from, link.to, events))
        .and(Write::ContentConsequences(link.to, lost))
}

/// The site a sharing command acts for.
fn sharing_site_state<'a>(
    ctx: &Context,
    facts: &'a Facts,
    link: Link,
) -> Result<&'a SiteState, DomainError> {
    facts.existing_site(ctx.actor_site().unwrap_or(link.from))
}

impl Decision for ShareScorecard {
    const NAME: &'static str = "ShareScorecard";
    const SUMMARY: &'static str =
        "Shares one of the site's scorecards with a partner over an active link (R-SHARE-1).";

    fn reads(&self, ctx: &Context, _: &Facts) -> Vec<Read> {
        sharing_reads(ctx, self.link())
    }

    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        let link = self.link();
        let site = sharing_site_state(ctx, facts, link)?;
        let owned = facts
            .content(link.from)
            .scorecards
            .contains_key(&self.scorecard_id);
        let events = self.decide(
            &ctx.actor,
            site,
            owned,
            facts.connection(link.from, link.to),
        )?;
        Ok(with_relationships_lost(facts, link, events))
    }
}

impl Decision for UnshareScorecard {
    const NAME: &'static str = "UnshareScorecard";
    const SUMMARY: &'static str = "Stops sharing a scorecard with a partner; relationships that lose their only path go too (R-SHARE-4).";

    fn reads(&self, ctx: &Context, _: &Facts) -> Vec<Read> {
        sharing_reads(ctx, self.link())
    }

    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        let link = self.link();
        let site = sharing_site_state(ctx, facts, link)?;
        let events = self.decide(&ctx.actor, site, facts.connection(link.from, link.to))?;
        Ok(with_relationships_lost(facts, link, events))
    }
}

impl Decision for SetSharedScorecards {
    const NAME: &'static str = "SetSharedScorecards";
    const SUMMARY: &'static str = "Sets the whole set of scorecards shared with a partner at once (\"Edit Scorecards\", R-SHARE-7).";

    fn reads(&self, ctx: &Context, _: &Facts) -> Vec<Read> {
        sharing_reads(ctx, self.link())
    }

    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        let link = self.link();
        let site = sharing_site_state(ctx, facts, link)?;
        let owned: BTreeSet<ScorecardId> = facts
            .content(link.from)
            .scorecards
            .keys()
            .copied()
            .collect();
        let events = self.decide(
            &ctx.actor,
            site,
            &owned,
            facts.connection(link.from, link.to),
        )?;
        Ok(with_relationships_lost(facts, link, events))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use shareledger_events::catalog::{
        Name, NewUser, Role, SeatLimit, SiteEvent, UserId, UserOrigin, Username,
    };

    use super::*;

    /// A site with an Instance Admin, a Scorecard Builder (no Instance Admin)
    /// and a deactivated admin.
    struct Site {
        state: SiteState,
        admin: Actor,
        builder: Actor,
        inactive_admin: Actor,
    }

    impl Site {
        fn new(code: &str) -> Site {
            let id = SiteId::new();
            let (admin, builder, inactive) = (UserId::new(), UserId::new(), UserId::new());
            let user = |user_id: UserId, username: &str, role: Role| SiteEvent::UserAdded {
                user: NewUser {
                    user_id,
                    username: Username::parse(username).unwrap(),
                    name: Name::parse(username).unwrap(),
                    role,
                    permissions: role.default_permissions(),
                    email: None,
                },
                origin: UserOrigin::Added,
                scorecard_access: BTreeMap::new(),
                hide_organization_settings: false,
            };
            let state = SiteState::from_events(&[
                SiteEvent::SiteRegistered {
                    site_id: id,
                    code: SiteCode::parse(code).unwrap(),
                    name: Name::parse(code).unwrap(),
                    seat_limit: SeatLimit::new(10).unwrap(),
                    parent: None,
                },
                user(admin, "admin", Role::Administration),
                user(builder, "builder", Role::ScorecardBuilder),
                user(inactive, "gone", Role::Administration),
                SiteEvent::UserDeactivated { user_id: inactive },
            ])
            .unwrap();
            let actor = |u: UserId| Actor::User {
                user_id: u.0,
                site_id: id.0,
            };
            Site {
                state,
                admin: actor(admin),
                builder: actor(builder),
                inactive_admin: actor(inactive),
            }
        }

        fn id(&self) -> SiteId {
            self.state.id
        }

        fn code(&self) -> &SiteCode {
            &self.state.code
        }
    }

    /// Sites A and B (the pair under test) and C (a third site).
    struct World {
        a: Site,
        b: Site,
        c: Site,
    }

    impl World {
        fn new() -> World {
            World {
                a: Site::new("ALPHA"),
                b: Site::new("BETA"),
                c: Site::new("GAMMA"),
            }
        }

        fn ab(&self) -> Link {
            Link {
                from: self.a.id(),
                to: self.b.id(),
            }
        }

        fn ba(&self) -> Link {
            self.ab().reversed()
        }

        /// The A–B pair after `events`.
        fn given(&self, events: &[ConnectionEvent]) -> ConnectionState {
            ConnectionState::from_events(self.a.id(), self.b.id(), events)
        }

        /// `from` requests the pair's connection.
        fn request(
            &self,
            actor: &Actor,
            from: &Site,
            to: &Site,
            directions: Directions,
            state: &ConnectionState,
        ) -> Result<Vec<ConnectionEvent>, DomainError> {
            RequestConnection {
                site_id: from.id(),
                partner_code: to.code().clone(),
                directions,
            }
            .decide(actor, &from.state, Some(&to.state), state)
        }

        /// A requested both links and B approved them.
        fn active_both(&self) -> Vec<ConnectionEvent> {
            vec![
                ConnectionEvent::ConnectionRequested {
                    requester: self.a.id(),
                    partner: self.b.id(),
                    directions: Directions::Both,
                    links: vec![self.ab(), self.ba()],
                },
                ConnectionEvent::LinksActivated {
                    approver: self.b.id(),
                    links: vec![self.ab(), self.ba()],
                    mutual_request: false,
                },
            ]
        }
    }

    /// Folds `events` onto `state`, checking each is a legal next step.
    fn then(state: &ConnectionState, events: &[ConnectionEvent]) -> ConnectionState {
        events.iter().fold(state.clone(), |s, e| {
            assert!(s.can_apply(e), "{e:?} does not apply to {s:?}");
            ConnectionState::evolve(s, e)
        })
    }

    #[test]
    fn r_conn_1_only_instance_admins_request() {
        let w = World::new();
        let state = w.given(&[]);
        assert_eq!(
            w.request(&w.a.builder, &w.a, &w.b, Directions::Both, &state),
            Err(DomainError::NotPermitted {
                needed: PermissionFlag::InstanceAdmin
            })
        );
        assert!(w
            .request(&w.a.admin, &w.a, &w.b, Directions::Both, &state)
            .is_ok());
        let active = w.given(&w.active_both());
        assert_eq!(
            ApproveConnection {
                site_id: w.b.id(),
                partner: w.a.id()
            }
            .decide(&w.b.builder, &w.b.state, &w.given(&w.active_both()[..1])),
            Err(DomainError::NotPermitted {
                needed: PermissionFlag::InstanceAdmin
            })
        );
        assert_eq!(
            RevokeSharing {
                site_id: w.b.id(),
                from: w.a.id(),
                to: w.b.id()
            }
            .decide(&w.b.builder, &w.b.state, &active),
            Err(DomainError::NotPermitted {
                needed: PermissionFlag::InstanceAdmin
            })
        );
        assert_eq!(
            ShareScorecard {
                site_id: w.a.id(),
                partner: w.b.id(),
                scorecard_id: ScorecardId::new()
            }
            .decide(&w.a.builder, &w.a.state, true, &active),
            Err(DomainError::NotPermitted {
                needed: PermissionFlag::InstanceAdmin
            })
        );
    }

    #[test]
    fn r_conn_1_user_without_site_gets_connections_unavailable() {
        let w = World::new();
        let operator = Actor::Operator { name: "ops".into() };
        let pending = w.given(&w.active_both()[..1]);
        let active = w.given(&w.active_both());
        let unavailable = Err(DomainError::ConnectionsUnavailable);
        assert_eq!(
            w.request(&operator, &w.a, &w.b, Directions::Both, &pending),
            unavailable
        );
        assert_eq!(
            ApproveConnection {
                site_id: w.b.id(),
                partner: w.a.id()
            }
            .decide(&operator, &w.b.state, &pending),
            unavailable
        );
        assert_eq!(
            DenyConnection {
                site_id: w.b.id(),
                partner: w.a.id()
            }
            .decide(&operator, &w.b.state, &pending),
            unavailable
        );
        assert_eq!(
            CancelConnectionRequest {
                site_id: w.a.id(),
                partner: w.b.id()
            }
            .decide(&operator, &w.a.state, &pending),
            unavailable
        );
        assert_eq!(
            RevokeSharing {
                site_id: w.a.id(),
                from: w.a.id(),
                to: w.b.id()
            }
            .decide(&operator, &w.a.state, &active),
            unavailable
        );
        let scorecard = ScorecardId::new();
        assert_eq!(
            ShareScorecard {
                site_id: w.a.id(),
                partner: w.b.id(),
                scorecard_id: scorecard
            }
            .decide(&operator, &w.a.state, true, &active),
            unavailable
        );
        assert_eq!(
            UnshareScorecard {
                site_id: w.a.id(),
                partner: w.b.id(),
                scorecard_id: scorecard
            }
            .decide(&operator, &w.a.state, &active),
            unavailable
        );
        assert_eq!(
            SetSharedScorecards {
                site_id: w.a.id(),
                partner: w.b.id(),
                scorecards: BTreeSet::from([scorecard])
            }
            .decide(&operator, &w.a.state, &BTreeSet::from([scorecard]), &active),
            unavailable
        );
    }

    #[test]
    fn r_user_6_inactive_admin_is_refused() {
        let w = World::new();
        assert_eq!(
            w.request(
                &w.a.inactive_admin,
                &w.a,
                &w.b,
                Directions::Both,
                &w.given(&[])
            ),
            Err(DomainError::ActorInactive)
        );
        assert_eq!(
            ApproveConnection {
                site_id: w.b.id(),
                partner: w.a.id()
            }
            .decide(
                &w.b.inactive_admin,
                &w.b.state,
                &w.given(&w.active_both()[..1])
            ),
            Err(DomainError::ActorInactive)
        );
        assert_eq!(
            RevokeSharing {
                site_id: w.a.id(),
                from: w.a.id(),
                to: w.b.id()
            }
            .decide(&w.a.inactive_admin, &w.a.state, &w.given(&w.active_both())),
            Err(DomainError::ActorInactive)
        );
    }

    #[test]
    fn r_user_9_user_of_another_site_is_refused() {
        let w = World::new();
        let pending = w.given(&w.active_both()[..1]);
        let active = w.given(&w.active_both());
        let cross = |actor_site: &Site, target_site: &Site| {
            Err(DomainError::CrossSite {
                actor_site: actor_site.id(),
                target_site: target_site.id(),
            })
        };
        // C's admin, acting on A's site, B's site.
        assert_eq!(
            w.request(&w.c.admin, &w.a, &w.b, Directions::Both, &w.given(&[])),
            cross(&w.c, &w.a)
        );
        assert_eq!(
            ApproveConnection {
                site_id: w.b.id(),
                partner: w.a.id()
            }
            .decide(&w.c.admin, &w.b.state, &pending),
            cross(&w.c, &w.b)
        );
        // C's admin on its own site, revoking a link between A and B.
        assert_eq!(
            RevokeSharing {
                site_id: w.c.id(),
                from: w.a.id(),
                to: w.b.id()
            }
            .decide(&w.c.admin, &w.c.state, &active),
            cross(&w.c, &w.a)
        );
        // B's admin sharing over A→B (A's scorecards).
        assert_eq!(
            ShareScorecard {
                site_id: w.a.id(),
                partner: w.b.id(),
                scorecard_id: ScorecardId::new()
            }
            .decide(&w.b.admin, &w.b.state, true, &active),
            cross(&w.b, &w.a)
        );
        assert_eq!(
            SetSharedScorecards {
                site_id: w.a.id(),
                partner: w.b.id(),
                scorecards: BTreeSet::new()
            }
            .decide(&w.b.admin, &w.b.state, &BTreeSet::new(), &active),
            cross(&w.b, &w.a)
        );
    }

    #[test]
    fn r_conn_2_unknown_own_or_duplicate_code_is_rejected() {
        let w = World::new();
        let fresh = w.given(&[]);
        // Unknown code.
        let nobody = SiteCode::parse("NOBODY").unwrap();
        assert_eq!(
            RequestConnection {
                site_id: w.a.id(),
                partner_code: nobody.clone(),
                directions: Directions::Both
            }
            .decide(&w.a.admin, &w.a.state, None, &fresh),
            Err(DomainError::UnknownSiteCode(nobody))
        );
        // Own code, in any case.
        assert_eq!(
            RequestConnection {
                site_id: w.a.id(),
                partner_code: SiteCode::parse("alpha").unwrap(),
                directions: Directions::Both
            }
            .decide(
                &w.a.admin,
                &w.a.state,
                Some(&w.a.state),
                &ConnectionState::new(w.a.id(), w.a.id())
            ),
            Err(DomainError::OwnSiteCode)
        );
        // The same pending request again.
        let pending = w.given(&w.active_both()[..1]);
        assert_eq!(
            w.request(&w.a.admin, &w.a, &w.b, Directions::Both, &pending),
            Err(DomainError::LinkPendingOrActive {
                link: w.ab(),
                other: None
            })
        );
        assert_eq!(
            w.request(&w.a.admin, &w.a, &w.b, Directions::Offer, &pending),
            Err(DomainError::LinkPendingOrActive {
                link: w.ab(),
                other: None
            })
        );
        // Active links, requested by either site.
        let active = w.given(&w.active_both());
        assert_eq!(
            w.request(&w.a.admin, &w.a, &w.b, Directions::Both, &active),
            Err(DomainError::LinkPendingOrActive {
                link: w.ab(),
                other: None
            })
        );
        assert_eq!(
            w.request(&w.b.admin, &w.b, &w.a, Directions::Offer, &active),
            Err(DomainError::LinkPendingOrActive {
                link: w.ba(),
                other: None
            })
        );
        // One direction active, the other revoked: still rejected (nothing
        // written), as `Both` names the active one too.
        let half = then(
            &active,
            &[ConnectionEvent::LinkRevoked {
                revoker: w.a.id(),
                link: w.ba(),
            }],
        );
        assert_eq!(
            w.request(&w.a.admin, &w.a, &w.b, Directions::Both, &half),
            Err(DomainError::LinkPendingOrActive {
                link: w.ab(),
                // B→A is free: the refusal says it can be asked for alone.
                other: Some(w.ba())
            })
        );
    }

    #[test]
    fn r_conn_2_both_requests_both_directions() {
        let w = World::new();
        let state = w.given(&[]);
        let events = w
            .request(&w.a.admin, &w.a, &w.b, Directions::Both, &state)
            .unwrap();
        assert_eq!(events, w.active_both()[..1]);
        let state = then(&state, &events);
        let awaiting = LinkState::AwaitingApproval {
            requested_by: w.a.id(),
        };
        assert_eq!(state.link_state(w.ab()), awaiting);
        assert_eq!(state.link_state(w.ba()), awaiting);
        assert_eq!(state.awaiting_approval_by(w.b.id()).len(), 2);
        assert_eq!(state.awaiting_approval_by(w.a.id()), vec![]);
        assert_eq!(state.requested_by_awaiting(w.a.id()).len(), 2);
        assert_eq!(state.requested_by_awaiting(w.b.id()), vec![]);
    }

    #[test]
    fn r_conn_2_offer_requests_one_direction() {
        let w = World::new();
        let state = w.given(&[]);
        let events = w
            .request(&w.a.admin, &w.a, &w.b, Directions::Offer, &state)
            .unwrap();
        assert_eq!(
            events,
            vec![ConnectionEvent::ConnectionRequested {
                requester: w.a.id(),
                partner: w.b.id(),
                directions: Directions::Offer,
                links: vec![w.ab()],
            }]
        );
        let state = then(&state, &events);
        assert_eq!(
            state.link_state(w.ab()),
            LinkState::AwaitingApproval {
                requested_by: w.a.id()
            }
        );
        assert_eq!(state.link_state(w.ba()), LinkState::None);
        assert_eq!(state.awaiting_approval_by(w.b.id()), vec![w.ab()]);
    }

    #[test]
    fn r_conn_3_approve_activates_deny_denies_cancel_cancels() {
        let w = World::new();
        let pending = w.given(&w.active_both()[..1]);
        let both = vec![w.ab(), w.ba()];

        // B approves: both links active.
        let approved = ApproveConnection {
            site_id: w.b.id(),
            partner: w.a.id(),
        }
        .decide(&w.b.admin, &w.b.state, &pending)
        .unwrap();
        assert_eq!(approved, w.active_both()[1..]);
        let active = then(&pending, &approved);
        assert!(both.iter().all(|l| active.link_state(*l).is_active()));
        // The requester cannot approve its own request.
        assert_eq!(
            ApproveConnection {
                site_id: w.a.id(),
                partner: w.b.id()
            }
            .decide(&w.a.admin, &w.a.state, &pending),
            Err(DomainError::NothingToApprove)
        );

        // B denies: both links denied.
        let denied = DenyConnection {
            site_id: w.b.id(),
            partner: w.a.id(),
        }
        .decide(&w.b.admin, &w.b.state, &pending)
        .unwrap();
        assert_eq!(
            denied,
            vec![ConnectionEvent::ConnectionDenied {
                denier: w.b.id(),
                links: both.clone(),
            }]
        );
        let after = then(&pending, &denied);
        assert!(both
            .iter()
            .all(|l| after.link_state(*l) == LinkState::Denied));
        assert_eq!(
            DenyConnection {
                site_id: w.b.id(),
                partner: w.a.id()
            }
            .decide(&w.b.admin, &w.b.state, &after),
            Err(DomainError::NothingToApprove)
        );

        // A cancels: both links cancelled; B cannot cancel A's request.
        assert_eq!(
            CancelConnectionRequest {
                site_id: w.b.id(),
                partner: w.a.id()
            }
            .decide(&w.b.admin, &w.b.state, &pending),
            Err(DomainError::NothingToCancel)
        );
        let cancelled = CancelConnectionRequest {
            site_id: w.a.id(),
            partner: w.b.id(),
        }
        .decide(&w.a.admin, &w.a.state, &pending)
        .unwrap();
        assert_eq!(
            cancelled,
            vec![ConnectionEvent::ConnectionRequestCancelled {
                requester: w.a.id(),
                links: both.clone(),
            }]
        );
        let after = then(&pending, &cancelled);
        assert!(both
            .iter()
            .all(|l| after.link_state(*l) == LinkState::Cancelled));

        // Nothing to act on once active.
        assert_eq!(
            ApproveConnection {
                site_id: w.b.id(),
                partner: w.a.id()
            }
            .decide(&w.b.admin, &w.b.state, &active),
            Err(DomainError::NothingToApprove)
        );
        assert_eq!(
            CancelConnectionRequest {
                site_id: w.a.id(),
                partner: w.b.id()
            }
            .decide(&w.a.admin, &w.a.state, &active),
            Err(DomainError::NothingToCancel)
        );
    }

    #[test]
    fn r_conn_4_revoke_one_direction_unshares_its_scorecards() {
        let w = World::new();
        let (s1, s2, t1) = (ScorecardId::new(), ScorecardId::new(), ScorecardId::new());
        let mut history = w.active_both();
        history.extend([
            ConnectionEvent::ScorecardShared {
                link: w.ab(),
                scorecard_id: s1,
            },
            ConnectionEvent::ScorecardShared {
                link: w.ab(),
                scorecard_id: s2,
            },
            ConnectionEvent::ScorecardShared {
                link: w.ba(),
                scorecard_id: t1,
            },
        ]);
        let state = w.given(&history);

        // B (the receiving site) revokes A→B.
        let events = RevokeSharing {
            site_id: w.b.id(),
            from: w.a.id(),
            to: w.b.id(),
        }
        .decide(&w.b.admin, &w.b.state, &state)
        .unwrap();
        let mut expected = vec![ConnectionEvent::LinkRevoked {
            revoker: w.b.id(),
            link: w.ab(),
        }];
        expected.extend(
            [s1, s2]
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|scorecard_id| ConnectionEvent::ScorecardUnshared {
                    link: w.ab(),
                    scorecard_id,
                    because_link_revoked: true,
                }),
        );
        assert_eq!(events, expected);
        assert_eq!(
            events.iter().map(is_consequence).collect::<Vec<_>>(),
            vec![false, true, true]
        );

        let after = then(&state, &events);
        assert_eq!(after.link_state(w.ab()), LinkState::Revoked);
        assert!(after.shared(w.ab()).is_empty());
        // B→A is left as it was.
        assert!(after.link_state(w.ba()).is_active());
        assert_eq!(after.shared(w.ba()), &BTreeSet::from([t1]));

        // Revoking again, or sharing over the revoked link, is refused.
        assert_eq!(
            RevokeSharing {
                site_id: w.a.id(),
                from: w.a.id(),
                to: w.b.id()
            }
            .decide(&w.a.admin, &w.a.state, &after),
            Err(DomainError::LinkNotActive { link: w.ab() })
        );
        assert_eq!(
            ShareScorecard {
                site_id: w.a.id(),
                partner: w.b.id(),
                scorecard_id: s1
            }
            .decide(&w.a.admin, &w.a.state, true, &after),
            Err(DomainError::LinkNotActive { link: w.ab() })
        );
        // A revokes B→A too, with nothing else to unshare on A→B.
        let events = RevokeSharing {
            site_id: w.a.id(),
            from: w.b.id(),
            to: w.a.id(),
        }
        .decide(&w.a.admin, &w.a.state, &after)
        .unwrap();
        assert_eq!(
            events,
            vec![
                ConnectionEvent::LinkRevoked {
                    revoker: w.a.id(),
                    link: w.ba(),
                },
                ConnectionEvent::ScorecardUnshared {
                    link: w.ba(),
                    scorecard_id: t1,
                    because_link_revoked: true,
                },
            ]
        );
    }

    #[test]
    fn r_conn_4_new_request_after_revoke_starts_from_nothing_shared() {
        let w = World::new();
        let s1 = ScorecardId::new();
        let mut history = w.active_both();
        history.push(ConnectionEvent::ScorecardShared {
            link: w.ab(),
            scorecard_id: s1,
        });
        for link in [w.ab(), w.ba()] {
            history.push(ConnectionEvent::LinkRevoked {
                revoker: w.a.id(),
                link,
            });
        }
        history.push(ConnectionEvent::ScorecardUnshared {
            link: w.ab(),
            scorecard_id: s1,
            because_link_revoked: true,
        });
        let revoked = w.given(&history);

        let request = w
            .request(&w.a.admin, &w.a, &w.b, Directions::Both, &revoked)
            .unwrap();
        assert_eq!(request, w.active_both()[..1]);
        let pending = then(&revoked, &request);
        let approve = ApproveConnection {
            site_id: w.b.id(),
            partner: w.a.id(),
        }
        .decide(&w.b.admin, &w.b.state, &pending)
        .unwrap();
        let active = then(&pending, &approve);
        assert!(active.link_state(w.ab()).is_active());
        assert!(active.shared(w.ab()).is_empty());
        assert_eq!(
            shared_per_partner(w.a.id(), &[&active]),
            BTreeMap::from([(w.b.id(), BTreeSet::new())])
        );
    }

    #[test]
    fn r_conn_5_mutual_requests_link_at_once() {
        let w = World::new();
        // A offered A→B; B now requests both: A→B activates at once (B
        // approves it by asking), B→A awaits A's approval.
        let offered = w.given(&[ConnectionEvent::ConnectionRequested {
            requester: w.a.id(),
            partner: w.b.id(),
            directions: Directions::Offer,
            links: vec![w.ab()],
        }]);
        let events = w
            .request(&w.b.admin, &w.b, &w.a, Directions::Both, &offered)
            .unwrap();
        assert_eq!(
            events,
            vec![
                ConnectionEvent::ConnectionRequested {
                    requester: w.b.id(),
                    partner: w.a.id(),
                    directions: Directions::Both,
                    links: vec![w.ba()],
                },
                ConnectionEvent::LinksActivated {
                    approver: w.b.id(),
                    links: vec![w.ab()],
                    mutual_request: true,
                },
            ]
        );
        let after = then(&offered, &events);
        assert!(after.link_state(w.ab()).is_active());
        assert_eq!(
            after.link_state(w.ba()),
            LinkState::AwaitingApproval {
                requested_by: w.b.id()
            }
        );

        // A asked for both; B asks for both: everything active, no approval.
        let pending = w.given(&w.active_both()[..1]);
        let events = w
            .request(&w.b.admin, &w.b, &w.a, Directions::Both, &pending)
            .unwrap();
        assert_eq!(
            events,
            vec![ConnectionEvent::LinksActivated {
                approver: w.b.id(),
                links: vec![w.ba(), w.ab()],
                mutual_request: true,
            }]
        );
        let after = then(&pending, &events);
        assert!(after.link_state(w.ab()).is_active() && after.link_state(w.ba()).is_active());
    }

    #[test]
    fn r_conn_6_request_after_cancel_waits_for_approval() {
        let w = World::new();
        let mut history = w.active_both()[..1].to_vec();
        history.push(ConnectionEvent::ConnectionRequestCancelled {
            requester: w.a.id(),
            links: vec![w.ab(), w.ba()],
        });
        let cancelled = w.given(&history);
        let events = w
            .request(&w.b.admin, &w.b, &w.a, Directions::Both, &cancelled)
            .unwrap();
        assert_eq!(
            events,
            vec![ConnectionEvent::ConnectionRequested {
                requester: w.b.id(),
                partner: w.a.id(),
                directions: Directions::Both,
                links: vec![w.ba(), w.ab()],
            }]
        );
        let after = then(&cancelled, &events);
        let awaiting = LinkState::AwaitingApproval {
            requested_by: w.b.id(),
        };
        assert_eq!(after.link_state(w.ab()), awaiting);
        assert_eq!(after.link_state(w.ba()), awaiting);
        // Nothing is linked until A approves by hand.
        assert!(!after.link_state(w.ab()).is_active() && !after.link_state(w.ba()).is_active());
        assert_eq!(after.awaiting_approval_by(w.a.id()), vec![w.ba(), w.ab()]);
        let approved = ApproveConnection {
            site_id: w.a.id(),
            partner: w.b.id(),
        }
        .decide(&w.a.admin, &w.a.state, &after)
        .unwrap();
        assert_eq!(
            approved,
            vec![ConnectionEvent::LinksActivated {
                approver: w.a.id(),
                links: vec![w.ba(), w.ab()],
                mutual_request: false,
            }]
        );
    }

    #[test]
    fn r_conn_7_active_link_shares_nothing_by_default() {
        let w = World::new();
        let active = w.given(&w.active_both());
        assert!(active.shared(w.ab()).is_empty());
        assert!(active.shared(w.ba()).is_empty());
        assert_eq!(
            shared_per_partner(w.b.id(), &[&active]),
            BTreeMap::from([(w.a.id(), BTreeSet::new())])
        );
    }

    #[test]
    fn r_share_1_only_own_scorecards_over_active_links() {
        let w = World::new();
        let own = ScorecardId::new();
        let foreign = ScorecardId::new();
        let share = |scorecard_id| ShareScorecard {
            site_id: w.a.id(),
            partner: w.b.id(),
            scorecard_id,
        };
        // Not active yet.
        let pending = w.given(&w.active_both()[..1]);
        assert_eq!(
            share(own).decide(&w.a.admin, &w.a.state, true, &pending),
            Err(DomainError::LinkNotActive { link: w.ab() })
        );
        let active = w.given(&w.active_both());
        // Another site's scorecard.
        assert_eq!(
            share(foreign).decide(&w.a.admin, &w.a.state, false, &active),
            Err(DomainError::ScorecardNotFound(foreign))
        );
        // An own one.
        let events = share(own)
            .decide(&w.a.admin, &w.a.state, true, &active)
            .unwrap();
        assert_eq!(
            events,
            vec![ConnectionEvent::ScorecardShared {
                link: w.ab(),
                scorecard_id: own,
            }]
        );
        let shared = then(&active, &events);
        assert_eq!(shared.shared(w.ab()), &BTreeSet::from([own]));
        assert_eq!(
            share(own).decide(&w.a.admin, &w.a.state, true, &shared),
            Err(DomainError::AlreadyShared(own))
        );
        // Unshare.
        let unshare = |scorecard_id| UnshareScorecard {
            site_id: w.a.id(),
            partner: w.b.id(),
            scorecard_id,
        };
        assert_eq!(
            unshare(foreign).decide(&w.a.admin, &w.a.state, &shared),
            Err(DomainError::NotShared(foreign))
        );
        let events = unshare(own)
            .decide(&w.a.admin, &w.a.state, &shared)
            .unwrap();
        assert_eq!(
            events,
            vec![ConnectionEvent::ScorecardUnshared {
                link: w.ab(),
                scorecard_id: own,
                because_link_revoked: false,
            }]
        );
        assert!(!is_consequence(&events[0]));
        assert!(then(&shared, &events).shared(w.ab()).is_empty());
        assert_eq!(
            unshare(own).decide(&w.a.admin, &w.a.state, &pending),
            Err(DomainError::LinkNotActive { link: w.ab() })
        );

        // Edit Scorecards: the whole set at once.
        let (s2, s3) = (ScorecardId::new(), ScorecardId::new());
        let owned = BTreeSet::from([own, s2, s3]);
        let set = |scorecards: &[ScorecardId]| SetSharedScorecards {
            site_id: w.a.id(),
            partner: w.b.id(),
            scorecards: scorecards.iter().copied().collect(),
        };
        assert_eq!(
            set(&[s2, foreign]).decide(&w.a.admin, &w.a.state, &owned, &shared),
            Err(DomainError::ScorecardNotFound(foreign))
        );
        assert_eq!(
            set(&[s2]).decide(&w.a.admin, &w.a.state, &owned, &pending),
            Err(DomainError::LinkNotActive { link: w.ab() })
        );
        let events = set(&[s2, s3])
            .decide(&w.a.admin, &w.a.state, &owned, &shared)
            .unwrap();
        let mut expected = vec![ConnectionEvent::ScorecardUnshared {
            link: w.ab(),
            scorecard_id: own,
            because_link_revoked: false,
        }];
        expected.extend(BTreeSet::from([s2, s3]).into_iter().map(|scorecard_id| {
            ConnectionEvent::ScorecardShared {
                link: w.ab(),
                scorecard_id,
            }
        }));
        assert_eq!(events, expected);
        let edited = then(&shared, &events);
        assert_eq!(edited.shared(w.ab()), &BTreeSet::from([s2, s3]));
        assert_eq!(
            set(&[s2, s3]).decide(&w.a.admin, &w.a.state, &owned, &edited),
            Ok(vec![])
        );
    }

    #[test]
    fn r_share_1_different_partners_get_different_scorecards() {
        let w = World::new();
        let (s1, s2) = (ScorecardId::new(), ScorecardId::new());
        let owned = BTreeSet::from([s1, s2]);
        let ac = Link {
            from: w.a.id(),
            to: w.c.id(),
        };
        let with_b = w.given(&w.active_both());
        let with_c = ConnectionState::from_events(
            w.a.id(),
            w.c.id(),
            &[
                ConnectionEvent::ConnectionRequested {
                    requester: w.a.id(),
                    partner: w.c.id(),
                    directions: Directions::Offer,
                    links: vec![ac],
                },
                ConnectionEvent::LinksActivated {
                    approver: w.c.id(),
                    links: vec![ac],
                    mutual_request: false,
                },
            ],
        );
        let to_b = SetSharedScorecards {
            site_id: w.a.id(),
            partner: w.b.id(),
            scorecards: BTreeSet::from([s1]),
        }
        .decide(&w.a.admin, &w.a.state, &owned, &with_b)
        .unwrap();
        let to_c = SetSharedScorecards {
            site_id: ac.from,
            partner: ac.to,
            scorecards: BTreeSet::from([s2]),
        }
        .decide(&w.a.admin, &w.a.state, &owned, &with_c)
        .unwrap();
        let with_b = then(&with_b, &to_b);
        let with_c = then(&with_c, &to_c);
        assert_eq!(with_b.shared(w.ab()), &BTreeSet::from([s1]));
        assert_eq!(with_c.shared(ac), &BTreeSet::from([s2]));
        // The B–A pair's state knows nothing of the A→C link.
        assert!(with_b.shared(ac).is_empty());
        assert_eq!(with_b.link_state(ac), LinkState::None);
    }

    #[test]
    fn r_share_7_lists_scorecards_shared_per_partner() {
        let w = World::new();
        let (s1, s2, t1) = (ScorecardId::new(), ScorecardId::new(), ScorecardId::new());
        let ac = Link {
            from: w.a.id(),
            to: w.c.id(),
        };
        let mut history = w.active_both();
        history.extend([
            ConnectionEvent::ScorecardShared {
                link: w.ab(),
                scorecard_id: s1,
            },
            ConnectionEvent::ScorecardShared {
                link: w.ba(),
                scorecard_id: t1,
            },
        ]);
        let with_b = w.given(&history);
        let with_c = ConnectionState::from_events(
            w.c.id(),
            w.a.id(),
            &[
                ConnectionEvent::ConnectionRequested {
                    requester: w.a.id(),
                    partner: w.c.id(),
                    directions: Directions::Both,
                    links: vec![ac, ac.reversed()],
                },
                ConnectionEvent::LinksActivated {
                    approver: w.c.id(),
                    links: vec![ac, ac.reversed()],
                    mutual_request: false,
                },
                ConnectionEvent::ScorecardShared {
                    link: ac,
                    scorecard_id: s1,
                },
                ConnectionEvent::ScorecardShared {
                    link: ac,
                    scorecard_id: s2,
                },
            ],
        );
        // A pair where A's link only awaits approval: not listed.
        let d = Site::new("DELTA");
        let with_d = ConnectionState::from_events(
            w.a.id(),
            d.id(),
            &[ConnectionEvent::ConnectionRequested {
                requester: w.a.id(),
                partner: d.id(),
                directions: Directions::Offer,
                links: vec![Link {
                    from: w.a.id(),
                    to: d.id(),
                }],
            }],
        );
        let states = [&with_b, &with_c, &with_d];
        assert_eq!(
            shared_per_partner(w.a.id(), &states),
            BTreeMap::from([
                (w.b.id(), BTreeSet::from([s1])),
                (w.c.id(), BTreeSet::from([s1, s2])),
            ])
        );
        // B shares t1 with A; C shares nothing with A; D has no link to A.
        assert_eq!(
            shared_per_partner(w.b.id(), &states),
            BTreeMap::from([(w.a.id(), BTreeSet::from([t1]))])
        );
        assert_eq!(
            shared_per_partner(w.c.id(), &states),
            BTreeMap::from([(w.a.id(), BTreeSet::new())])
        );
        assert_eq!(shared_per_partner(d.id(), &states), BTreeMap::new());
    }

    #[test]
    fn evolve_ignores_steps_the_state_machine_does_not_have() {
        let w = World::new();
        let fresh = w.given(&[]);
        let bogus = [
            // Activating a link nobody requested.
            ConnectionEvent::LinksActivated {
                approver: w.b.id(),
                links: vec![w.ab()],
                mutual_request: false,
            },
            // Sharing over a link that is not active.
            ConnectionEvent::ScorecardShared {
                link: w.ab(),
                scorecard_id: ScorecardId::new(),
            },
            // A link outside the pair.
            ConnectionEvent::ConnectionRequested {
                requester: w.a.id(),
                partner: w.c.id(),
                directions: Directions::Offer,
                links: vec![Link {
                    from: w.a.id(),
                    to: w.c.id(),
                }],
            },
        ];
        for event in &bogus {
            assert!(!fresh.can_apply(event), "{event:?}");
            assert_eq!(ConnectionState::evolve(fresh.clone(), event), fresh);
        }
        // The requester cannot approve its own request.
        let pending = w.given(&w.active_both()[..1]);
        assert!(!pending.can_apply(&ConnectionEvent::LinksActivated {
            approver: w.a.id(),
            links: vec![w.ab()],
            mutual_request: false,
        }));
    }

    // ---- property: random command sequences by both sites' admins ----

    #[derive(Debug, Clone)]
    enum Cmd {
        Request(usize, Directions),
        Approve(usize),
        Deny(usize),
        Cancel(usize),
        Revoke(usize, usize),
        Share(usize, usize, usize),
        Unshare(usize, usize, usize),
        SetShared(usize, usize, u8),
    }

    fn cmd() -> impl Strategy<Value = Cmd> {
        let site = 0..2usize;
        let link = 0..2usize;
        let scorecard = 0..SCORECARDS;
        let directions = prop_oneof![Just(Directions::Both), Just(Directions::Offer)];
        // Weighted so that links get active and scorecards shared often.
        prop_oneof![
            2 => (site.clone(), directions).prop_map(|(s, d)| Cmd::Request(s, d)),
            3 => site.clone().prop_map(Cmd::Approve),
            1 => site.clone().prop_map(Cmd::Deny),
            1 => site.clone().prop_map(Cmd::Cancel),
            1 => (site.clone(), link.clone()).prop_map(|(s, l)| Cmd::Revoke(s, l)),
            4 => (site.clone(), link.clone(), scorecard.clone())
                .prop_map(|(s, l, c)| Cmd::Share(s, l, c)),
            2 => (site.clone(), link.clone(), scorecard).prop_map(|(s, l, c)| Cmd::Unshare(s, l, c)),
            2 => (site, link, any::<u8>()).prop_map(|(s, l, m)| Cmd::SetShared(s, l, m)),
        ]
    }

    /// Scorecards in play: the first half A's, the second half B's.
    const SCORECARDS: usize = 6;

    proptest! {
        #[test]
        fn random_commands_keep_the_link_state_machine(cmds in proptest::collection::vec(cmd(), 0..60)) {
            let w = World::new();
            let sites = [&w.a, &w.b];
            let links = [w.ab(), w.ba()];
            let scorecards: Vec<ScorecardId> = (0..SCORECARDS).map(|_| ScorecardId::new()).collect();
            let owned_by = |site: SiteId| -> BTreeSet<ScorecardId> {
                let half = if site == w.a.id() { 0 } else { 1 };
                scorecards[half * SCORECARDS / 2..(half + 1) * SCORECARDS / 2]
                    .iter()
                    .copied()
                    .collect()
            };
            let mut state = w.given(&[]);
            for cmd in cmds {
                let result = match cmd {
                    Cmd::Request(s, directions) => {
                        let (me, other) = (sites[s], sites[1 - s]);
                        w.request(&me.admin, me, other, directions, &state)
                    }
                    Cmd::Approve(s) => ApproveConnection {
                        site_id: sites[s].id(),
                        partner: sites[1 - s].id(),
                    }
                    .decide(&sites[s].admin, &sites[s].state, &state),
                    Cmd::Deny(s) => DenyConnection {
                        site_id: sites[s].id(),
                        partner: sites[1 - s].id(),
                    }
                    .decide(&sites[s].admin, &sites[s].state, &state),
                    Cmd::Cancel(s) => CancelConnectionRequest {
                        site_id: sites[s].id(),
                        partner: sites[1 - s].id(),
                    }
                    .decide(&sites[s].admin, &sites[s].state, &state),
                    Cmd::Revoke(s, l) => RevokeSharing {
                        site_id: sites[s].id(),
                        from: links[l].from,
                        to: links[l].to,
                    }
                    .decide(&sites[s].admin, &sites[s].state, &state),
                    Cmd::Share(s, l, c) => ShareScorecard {
                        site_id: links[l].from,
                        partner: links[l].to,
                        scorecard_id: scorecards[c],
                    }
                    .decide(
                        &sites[s].admin,
                        &sites[s].state,
                        owned_by(links[l].from).contains(&scorecards[c]),
                        &state,
                    ),
                    Cmd::Unshare(s, l, c) => UnshareScorecard {
                        site_id: links[l].from,
                        partner: links[l].to,
                        scorecard_id: scorecards[c],
                    }
                    .decide(&sites[s].admin, &sites[s].state, &state),
                    Cmd::SetShared(s, l, mask) => SetSharedScorecards {
                        site_id: links[l].from,
                        partner: links[l].to,
                        scorecards: (0..SCORECARDS)
                            .filter(|i| mask & (1 << i) != 0)
                            .map(|i| scorecards[i])
                            .collect(),
                    }
                    .decide(&sites[s].admin, &sites[s].state, &owned_by(links[l].from), &state),
                };
                let Ok(events) = result else { continue };
                for event in &events {
                    prop_assert!(state.can_apply(event), "{:?} does not apply to {:?}", event, state);
                    let next = ConnectionState::evolve(state.clone(), event);
                    if !is_consequence(event) {
                        prop_assert_ne!(&next, &state, "{:?} changed nothing", event);
                    }
                    for link in links {
                        let (before, after) = (state.link_state(link), next.link_state(link));
                        // Only an active link shares anything, and only its owner's scorecards.
                        prop_assert!(next.shared(link).is_empty() || after.is_active());
                        prop_assert!(next.shared(link).is_subset(&owned_by(link.from)));
                        // Active only from awaiting approval (or staying active).
                        if after.is_active() {
                            prop_assert!(
                                matches!(before, LinkState::Active | LinkState::AwaitingApproval { .. }),
                                "{:?} -> Active", before
                            );
                        }
                        // Out of a closed state only through a new request.
                        if matches!(before, LinkState::Revoked | LinkState::Denied | LinkState::Cancelled)
                            && after != before
                        {
                            prop_assert!(
                                matches!(event, ConnectionEvent::ConnectionRequested { .. }),
                                "{:?} left {:?} by {:?}", link, before, event
                            );
                            prop_assert!(next.shared(link).is_empty());
                        }
                    }
                    state = next;
                }
            }
        }
    }
}
