//! every user of every site with a level on a target.

use std::collections::BTreeSet;

use shareledger_core::catalog::SiteId;

use super::AccessIndex;
use crate::access::{AccessError, Target, Viewer};

impl AccessIndex {
    /// every user of every site with a level on the target, ordered by
    /// (site, user).
    pub fn viewers(&self, target: Target) -> Result<Vec<Viewer>, AccessError> {
        let owner = self.owner(target)?;
        let mut sites: BTreeSet<SiteId> = BTreeSet::from([owner]);
        if let Some(info) = self.sites.get(&owner) {
            for partner in &info.sharing_to {
                if self.site_sees(*partner, owner, target) {
                    sites.insert(*partner);
                }
            }
        }
        let mut viewers = Vec::new();
        for site in sites {
            let Some(info) = self.sites.get(&site) else {
                continue;
            };
            for user_id in &info.users {
                let Some(user) = self.users.get(user_id) else {
                    continue;
                };
                if let Some(level) = self.level_of(user, owner, target) {
                    viewers.push(Viewer {
                        site,
                        user: *user_id,
                        level,
                        username: user.username.clone(),
                        name: user.name.clone(),
                        site_code: info.code.clone(),
                    });
                }
            }
        }
        viewers.sort_unstable();
        Ok(viewers)
    }
}
