//! Small facts the HTTP edge needs to authorize a question before asking
//! it: who a user is (site, active, flags), which site owns a target, and
//! whether a site may know a target exists (its own, or shared with it).

use shareledger_core::catalog::{
    Name, PermissionFlag, Permissions, SiteCode, SiteId, UserId, Username,
};

use super::{AccessIndex, Target};

/// What the index knows of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFacts {
    pub site: SiteId,
    pub active: bool,
    pub flags: Permissions,
}

/// A person as the index knows them: who to address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub user: UserId,
    pub site: SiteId,
    pub username: Username,
    pub name: Name,
    pub active: bool,
}

impl AccessIndex {
    /// The user's username, name, site and whether they are active.
    pub fn person(&self, user: UserId) -> Option<Person> {
        self.users.get(&user).map(|u| Person {
            user,
            site: u.site,
            username: u.username.clone(),
            name: u.name.clone(),
            active: u.active,
        })
    }

    /// The site's active Instance Admins, in id order.
    pub fn instance_admins(&self, site: SiteId) -> Vec<UserId> {
        let mut admins: Vec<UserId> = self
            .sites
            .get(&site)
            .map(|s| {
                s.users
                    .iter()
                    .filter(|u| {
                        self.users
                            .get(u)
                            .is_some_and(|u| u.active && u.has(PermissionFlag::InstanceAdmin))
                    })
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        admins.sort_unstable();
        admins
    }

    /// The site's code and name, if the index knows the site.
    pub fn site_code_and_name_of(&self, site: SiteId) -> Option<(SiteCode, Name)> {
        self.sites
            .get(&site)
            .map(|s| (s.code.clone(), s.name.clone()))
    }

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
