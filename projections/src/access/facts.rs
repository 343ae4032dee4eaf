//! Small facts the HTTP edge needs to authorize a question before asking
//! it: who a user is (site, active, flags), which site owns a target, and
//! whether a site may know a target exists (its own, or shared with it).

use shareledger_core::catalog::{Permissions, SiteId, UserId};

use super::{AccessIndex, Target};

/// What the index knows of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFacts {
    pub site: SiteId,
    pub active: bool,
    pub flags: Permissions,
}

impl AccessIndex {
    /// The user's site, whether they are active, and their flags.
    pub fn user_facts(&self, user: UserId) -> Option<UserFacts> {
        self.users.get(&user).map(|u| UserFacts {
            site: u.site,
            active: u.active,
            flags: u.flags.clone(),
        })
    }

    /// The site that owns the target, if the target is known.
    pub fn owner_of(&self, target: Target) -> Option<SiteId> {
        self.owner(target).ok()
    }

    /// True when the target is the site's own, or shows on a scorecard its
    /// owner shares with the site over an active link: what the site may
    /// know exists, whatever each of its users may see.
    pub fn site_knows(&self, site: SiteId, target: Target) -> bool {
        match self.owner(target) {
            Ok(owner) => owner == site || self.site_sees(site, owner, target),
            Err(_) => false,
        }
    }

    /// Every site the index knows, in id order.
    pub fn sites(&self) -> Vec<SiteId> {
        let mut sites: Vec<SiteId> = self.sites.keys().copied().collect();
        sites.sort_unstable();
        sites
    }

    /// The users of a site, in id order.
    pub fn users_of(&self, site: SiteId) -> Vec<UserId> {
        let mut users = self
            .sites
            .get(&site)
            .map(|s| s.users.clone())
            .unwrap_or_default();
        users.sort_unstable();
        users
    }
}
