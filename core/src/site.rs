//! A site and its users: the state folded from a `site-<id>` stream, the
//! authorization of whoever issues a command, and the decisions of the site
//! and user commands (R-USER-1 to R-USER-9, R-ONB-1 to R-ONB-3).

use std::collections::BTreeMap;
use std::sync::Arc;

use shareledger_events::catalog::identifiers::shown;
use shareledger_events::catalog::{
    AccessLevel, ConnectionEvent, Directions, Email, Link, Name, NewUser, PermissionFlag,
    Permissions, Role, ScorecardId, SeatLimit, SiteCode, SiteCodeEvent, SiteEvent, SiteId, UserId,
    UserOrigin, Username, UsernameKey,
};
use shareledger_events::Actor;

use crate::content::ContentState;
use crate::decision::{Context, Decided, Decision, Facts, Read, Write};
use crate::error::DomainError;

/// A user account as the site knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserState {
    pub id: UserId,
    pub username: Username,
    pub name: Name,
    pub email: Option<Email>,
    pub role: Role,
    pub permissions: Permissions,
    pub scorecard_access: BTreeMap<ScorecardId, AccessLevel>,
    pub active: bool,
    pub hide_organization_settings: bool,
}

impl UserState {
    pub fn has(&self, flag: PermissionFlag) -> bool {
        self.permissions.contains(&flag)
    }
}

/// Self-registration settings of a group site (R-ONB-2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelfRegistration {
    pub enabled: bool,
    pub model_site: Option<SiteId>,
    pub model_user: Option<UserId>,
    /// The SHA-256 (hex) of the published link's key, while one is out.
    pub link_hash: Option<String>,
    /// Sites registered through the link are children of the group.
    pub child_of_group: bool,
}

/// A site, folded from its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteState {
    pub id: SiteId,
    pub code: SiteCode,
    pub name: Name,
    pub seat_limit: SeatLimit,
    pub parent: Option<SiteId>,
    pub self_registration: SelfRegistration,
    pub two_factor_required: bool,
    /// Listed in the partner directory (seed 002).
    pub listed: bool,
    /// The site's users. This map and `usernames` are shared between
    /// copies of the state (the command service hands each decision a copy
    /// of its cached state: two reference counts, not every user); a change
    /// copies a map only while another copy still holds it.
    pub users: Arc<BTreeMap<UserId, UserState>>,
    /// The site's users by the comparison key of their username
    /// (`Username::key`): usernames that look alike share a key, so a new
    /// one is refused if its key is here. A log written before the key
    /// existed may hold two users with one key: the first keeps it.
    pub usernames: Arc<BTreeMap<UsernameKey, UserId>>,
}

impl SiteState {
    /// The user whose username is `username` or looks the same (one
    /// comparison key), if any.
    pub fn username_holder(&self, username: &Username) -> Option<&UserState> {
        self.usernames
            .get(&username.key())
            .and_then(|id| self.users.get(id))
    }

    /// `UsernameTaken` if a user of the site has this username,
    /// `UsernameLooksTaken` if one has a username that looks the same.
    pub fn check_username_free(&self, username: &Username) -> Result<(), DomainError> {
        match self.username_holder(username) {
            None => Ok(()),
            Some(holder) if holder.username == *username => {
                Err(DomainError::UsernameTaken(username.clone()))
            }
            Some(holder) => Err(DomainError::UsernameLooksTaken {
                username: username.clone(),
                existing: holder.username.clone(),
            }),
        }
    }

    /// Applies one event. `None` is the state before `SiteRegistered`.
    pub fn evolve(state: Option<SiteState>, event: &SiteEvent) -> Option<SiteState> {
        if let SiteEvent::SiteRegistered {
            site_id,
            code,
            name,
            seat_limit,
            parent,
        } = event
        {
            return Some(SiteState {
                id: *site_id,
                code: code.clone(),
                name: name.clone(),
                seat_limit: *seat_limit,
                parent: *parent,
                self_registration: SelfRegistration::default(),
                two_factor_required: false,
                listed: false,
                users: Arc::default(),
                usernames: Arc::default(),
            });
        }
        let mut s = state?;
        match event {
            SiteEvent::SiteRegistered { .. } => unreachable!("handled above"),
            SiteEvent::SeatLimitSet { seat_limit } => s.seat_limit = *seat_limit,
            SiteEvent::ParentSiteSet { parent } => s.parent = *parent,
            SiteEvent::SelfRegistrationConfigured {
                enabled,
                model_site,
                model_user,
            } => {
                s.self_registration = SelfRegistration {
                    enabled: *enabled,
                    model_site: *model_site,
                    model_user: *model_user,
                    ..s.self_registration.clone()
                }
            }
            SiteEvent::SelfRegistrationLinkSet {
                link_hash,
                child_of_group,
            } => {
                s.self_registration.link_hash = link_hash.clone();
                s.self_registration.child_of_group = *child_of_group;
            }
            SiteEvent::TwoFactorRequirementSet { required } => s.two_factor_required = *required,
            SiteEvent::DirectoryListingSet { listed } => s.listed = *listed,
            SiteEvent::UserAdded {
                user,
                scorecard_access,
                hide_organization_settings,
                ..
            } => {
                Arc::make_mut(&mut s.usernames)
                    .entry(user.username.key())
                    .or_insert(user.user_id);
                Arc::make_mut(&mut s.users).insert(
                    user.user_id,
                    UserState {
                        id: user.user_id,
                        username: user.username.clone(),
                        name: user.name.clone(),
                        email: user.email.clone(),
                        role: user.role,
                        permissions: user.permissions.clone(),
                        scorecard_access: scorecard_access.clone(),
                        active: true,
                        hide_organization_settings: *hide_organization_settings,
                    },
                );
            }
            SiteEvent::UserRoleChanged {
                user_id,
                role,
                permissions,
            } => {
                if let Some(u) = Arc::make_mut(&mut s.users).get_mut(user_id) {
                    u.role = *role;
                    u.permissions = permissions.clone();
                }
            }
            SiteEvent::UserPermissionsSet {
                user_id,
                permissions,
            } => {
                if let Some(u) = Arc::make_mut(&mut s.users).get_mut(user_id) {
                    u.permissions = permissions.clone();
                }
            }
            SiteEvent::UserDetailsChanged {
                user_id,
                name,
                email,
            } => {
                if let Some(u) = Arc::make_mut(&mut s.users).get_mut(user_id) {
                    u.name = name.clone();
                    u.email = email.clone();
                }
            }
            SiteEvent::ScorecardAccessGranted {
                user_id,
                scorecard_id,
                level,
            } => {
                if let Some(u) = Arc::make_mut(&mut s.users).get_mut(user_id) {
                    u.scorecard_access.insert(*scorecard_id, *level);
                }
            }
            SiteEvent::ScorecardAccessRevoked {
                user_id,
                scorecard_id,
            } => {
                if let Some(u) = Arc::make_mut(&mut s.users).get_mut(user_id) {
                    u.scorecard_access.remove(scorecard_id);
                }
            }
            SiteEvent::UserDeactivated { user_id } => {
                if let Some(u) = Arc::make_mut(&mut s.users).get_mut(user_id) {
                    u.active = false;
                }
            }
            SiteEvent::UserReactivated { user_id } => {
                if let Some(u) = Arc::make_mut(&mut s.users).get_mut(user_id) {
                    u.active = true;
                }
            }
            SiteEvent::OrganizationSettingsHiddenSet { user_id, hidden } => {
                if let Some(u) = Arc::make_mut(&mut s.users).get_mut(user_id) {
                    u.hide_organization_settings = *hidden;
                }
            }
        }
        Some(s)
    }

    /// Folds a whole stream.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a SiteEvent>) -> Option<SiteState> {
        events.into_iter().fold(None, SiteState::evolve)
    }

    /// How many users are active (they hold seats, R-USER-7).
    pub fn active_users(&self) -> usize {
        self.users.values().filter(|u| u.active).count()
    }

    /// The revocations that end every assignment of this site's users
    /// (active or not) to one of `scorecards`, in user then scorecard order
    /// (R-CONN-4: a revoked link's scorecards).
    pub fn assignments_ended(
        &self,
        scorecards: &std::collections::BTreeSet<ScorecardId>,
    ) -> Vec<SiteEvent> {
        self.users
            .values()
            .flat_map(|user| {
                user.scorecard_access
                    .keys()
                    .filter(|s| scorecards.contains(s))
                    .map(|scorecard_id| SiteEvent::ScorecardAccessRevoked {
                        user_id: user.id,
                        scorecard_id: *scorecard_id,
                    })
            })
            .collect()
    }

    fn free_seats(&self) -> usize {
        (self.seat_limit.get() as usize).saturating_sub(self.active_users())
    }

    fn user(&self, id: UserId) -> Result<&UserState, DomainError> {
        self.users.get(&id).ok_or(DomainError::UserNotFound(id))
    }

    /// A user that may be edited: it exists and is active (R-USER-6).
    fn editable_user(&self, id: UserId) -> Result<&UserState, DomainError> {
        let user = self.user(id)?;
        if !user.active {
            return Err(DomainError::UserInactive(id));
        }
        Ok(user)
    }
}

/// Who issues a command, checked against the site it acts on.
///
/// * An operator (platform staff) may do anything on any site.
/// * A user must belong to `site` (R-USER-9), be active (R-USER-6) and hold
///   one of `flags` (R-USER-5: Manage Users or Instance Admin; R-CONN-1:
///   Instance Admin).
/// * The system issues no commands; it only records consequences.
pub fn authorize<'s>(
    actor: &Actor,
    site: &'s SiteState,
    flags: &[PermissionFlag],
) -> Result<Option<&'s UserState>, DomainError> {
    match actor {
        Actor::Operator { .. } => Ok(None),
        Actor::System => Err(DomainError::NotAnIssuer),
        Actor::User { user_id, site_id } => {
            let actor_site = SiteId(*site_id);
            if actor_site != site.id {
                return Err(DomainError::CrossSite {
                    actor_site,
                    target_site: site.id,
                });
            }
            let user = site
                .users
                .get(&UserId(*user_id))
                .ok_or(DomainError::UnknownActor { site: site.id })?;
            if !user.active {
                return Err(DomainError::ActorInactive);
            }
            if flags.is_empty() || flags.iter().any(|f| user.has(*f)) {
                Ok(Some(user))
            } else {
                Err(DomainError::NotPermitted { needed: flags[0] })
            }
        }
    }
}

/// Only an Instance Admin (or an operator) may give Instance Admin: Manage
/// Users alone must not open R-CONN-1's gate to connections and sharing.
fn check_grants_instance_admin(
    actor: Option<&UserState>,
    granted: &Permissions,
    before: &Permissions,
) -> Result<(), DomainError> {
    let grants = granted.contains(&PermissionFlag::InstanceAdmin)
        && !before.contains(&PermissionFlag::InstanceAdmin);
    match actor {
        Some(user) if grants && !user.has(PermissionFlag::InstanceAdmin) => {
            Err(DomainError::NotPermitted {
                needed: PermissionFlag::InstanceAdmin,
            })
        }
        _ => Ok(()),
    }
}

/// R-USER-5: adding, editing, importing, deactivating or reactivating users.
const MANAGE_USERS: [PermissionFlag; 2] =
    [PermissionFlag::ManageUsers, PermissionFlag::InstanceAdmin];
/// Importing users needs Import/Export too (seed 001), or Instance Admin.
const IMPORT_USERS: [PermissionFlag; 2] =
    [PermissionFlag::ImportExport, PermissionFlag::InstanceAdmin];
/// Site settings are Instance Admin's (seed 001: "high-security sections").
const INSTANCE_ADMIN: [PermissionFlag; 1] = [PermissionFlag::InstanceAdmin];

/// RegisterSite: a new site with a unique code. An operator registers any
/// site; a group's Instance Admin registers child sites of the group (R-ONB-1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterSite {
    pub site_id: SiteId,
    pub code: SiteCode,
    pub name: Name,
    pub seat_limit: SeatLimit,
    #[serde(default)]
    pub parent: Option<SiteId>,
}

impl RegisterSite {
    /// `existing` is the state of `site_id`'s stream; `parent` the parent's
    /// state when one is named. The code's uniqueness is the command
    /// service's (it claims `sitecode-<CODE>` in the same append).
    pub fn decide(
        &self,
        actor: &Actor,
        existing: Option<&SiteState>,
        parent: Option<&SiteState>,
    ) -> Result<Vec<SiteEvent>, DomainError> {
        match (self.parent, parent) {
            (Some(id), None) => return Err(DomainError::SiteNotFound(id)),
            (Some(_), Some(p)) => {
                authorize(actor, p, &INSTANCE_ADMIN)?;
            }
            (None, _) => {
                if !matches!(actor, Actor::Operator { .. }) {
                    return Err(DomainError::NotPermitted {
                        needed: PermissionFlag::InstanceAdmin,
                    });
                }
            }
        }
        if existing.is_some() {
            return Err(DomainError::SiteExists(self.site_id));
        }
        Ok(vec![SiteEvent::SiteRegistered {
            site_id: self.site_id,
            code: self.code.clone(),
            name: self.name.clone(),
            seat_limit: self.seat_limit,
            parent: self.parent,
        }])
    }
}

/// SetSeatLimit (R-USER-7). Lowering it below the active users is allowed:
/// nobody is deactivated, but no one can be added or reactivated until
/// users are deactivated below the new limit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetSeatLimit {
    pub site_id: SiteId,
    pub seat_limit: SeatLimit,
}

impl SetSeatLimit {
    pub fn decide(&self, actor: &Actor, site: &SiteState) -> Result<Vec<SiteEvent>, DomainError> {
        authorize(actor, site, &INSTANCE_ADMIN)?;
        Ok(vec![SiteEvent::SeatLimitSet {
            seat_limit: self.seat_limit,
        }])
    }
}

/// SetParentSite (R-ONB-1). `ancestors` are the parent's ancestors, nearest
/// first, so that no cycle can form.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetParentSite {
    pub site_id: SiteId,
    #[serde(default)]
    pub parent: Option<SiteId>,
}

impl SetParentSite {
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        parent_chain: &[SiteId],
    ) -> Result<Vec<SiteEvent>, DomainError> {
        authorize(actor, site, &INSTANCE_ADMIN)?;
        if self.parent == Some(site.id) || parent_chain.contains(&site.id) {
            return Err(DomainError::ParentCycle);
        }
        Ok(vec![SiteEvent::ParentSiteSet {
            parent: self.parent,
        }])
    }
}

/// ConfigureSelfRegistration (R-ONB-2): turning it on needs a model user
/// (and its model site) that exists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigureSelfRegistration {
    pub site_id: SiteId,
    pub enabled: bool,
    #[serde(default)]
    pub model_site: Option<SiteId>,
    #[serde(default)]
    pub model_user: Option<UserId>,
}

impl ConfigureSelfRegistration {
    /// `model_site` is the state of the named model site, if any.
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        model_site: Option<&SiteState>,
    ) -> Result<Vec<SiteEvent>, DomainError> {
        authorize(actor, site, &INSTANCE_ADMIN)?;
        if self.enabled {
            let (Some(site_id), Some(user_id)) = (self.model_site, self.model_user) else {
                return Err(DomainError::SelfRegistrationNotConfigured);
            };
            let model = model_site.ok_or(DomainError::SiteNotFound(site_id))?;
            model.user(user_id)?;
        }
        Ok(vec![SiteEvent::SelfRegistrationConfigured {
            enabled: self.enabled,
            model_site: self.model_site,
            model_user: self.model_user,
        }])
    }
}

/// RequireTwoFactor (R-ONB-3).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequireTwoFactor {
    pub site_id: SiteId,
    pub required: bool,
}

impl RequireTwoFactor {
    pub fn decide(&self, actor: &Actor, site: &SiteState) -> Result<Vec<SiteEvent>, DomainError> {
        authorize(actor, site, &INSTANCE_ADMIN)?;
        Ok(vec![SiteEvent::TwoFactorRequirementSet {
            required: self.required,
        }])
    }
}

/// SetDirectoryListing (seed 002): the site chooses to be listed in the
/// partner directory, where other sites find it by name or code, or to
/// leave it. Unlisted (the default), it is found by its code alone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetDirectoryListing {
    pub site_id: SiteId,
    pub listed: bool,
}

impl SetDirectoryListing {
    pub fn decide(&self, actor: &Actor, site: &SiteState) -> Result<Vec<SiteEvent>, DomainError> {
        authorize(actor, site, &INSTANCE_ADMIN)?;
        Ok(vec![SiteEvent::DirectoryListingSet {
            listed: self.listed,
        }])
    }
}

/// A new account's id is free, its username neither taken nor like a taken
/// one, and not one that could pass for another (an invisible character,
/// a fullwidth letter, mixed scripts: `Username::check_new`).
fn check_new_user(site: &SiteState, user: &NewUser) -> Result<(), DomainError> {
    if site.users.contains_key(&user.user_id) {
        return Err(DomainError::UserExists(user.user_id));
    }
    site.check_username_free(&user.username)?;
    user.username.check_new()?;
    Ok(())
}

/// AddUser (Add New User): a user with a role preset's flags (R-USER-1),
/// within the seat limit (R-USER-7).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddUser {
    pub site_id: SiteId,
    pub user_id: UserId,
    pub username: Username,
    pub name: Name,
    pub role: Role,
    /// The user's email (seed 001), if known.
    #[serde(default)]
    pub email: Option<Email>,
}

impl AddUser {
    pub fn decide(&self, actor: &Actor, site: &SiteState) -> Result<Vec<SiteEvent>, DomainError> {
        let by = authorize(actor, site, &MANAGE_USERS)?;
        check_grants_instance_admin(by, &self.role.default_permissions(), &Permissions::new())?;
        let user = NewUser {
            user_id: self.user_id,
            username: self.username.clone(),
            name: self.name.clone(),
            role: self.role,
            permissions: self.role.default_permissions(),
            email: self.email.clone(),
        };
        check_new_user(site, &user)?;
        if site.free_seats() == 0 {
            return Err(DomainError::SeatLimitReached {
                limit: site.seat_limit.get(),
            });
        }
        Ok(vec![SiteEvent::UserAdded {
            user,
            origin: UserOrigin::Added,
            scorecard_access: BTreeMap::new(),
            hide_organization_settings: false,
        }])
    }
}

/// AddExistingUser: an account for a person who has one on another site,
/// with the same username, name and email, and a role on this site.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddExistingUser {
    pub site_id: SiteId,
    pub user_id: UserId,
    pub from_site: SiteId,
    pub from_user: UserId,
    pub role: Role,
}

impl AddExistingUser {
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        from_site: &SiteState,
    ) -> Result<Vec<SiteEvent>, DomainError> {
        authorize(actor, site, &MANAGE_USERS)?;
        if from_site.id == site.id {
            return Err(DomainError::UserExists(self.from_user));
        }
        let source = from_site.user(self.from_user)?;
        AddUser {
            site_id: site.id,
            user_id: self.user_id,
            username: source.username.clone(),
            name: source.name.clone(),
            role: self.role,
            email: source.email.clone(),
        }
        .decide(actor, site)
        .map(|events| {
            events
                .into_iter()
                .map(|e| match e {
                    SiteEvent::UserAdded {
                        user,
                        scorecard_access,
                        hide_organization_settings,
                        ..
                    } => SiteEvent::UserAdded {
                        user,
                        origin: UserOrigin::ExistingAccount {
                            site_id: from_site.id,
                            user_id: self.from_user,
                        },
                        scorecard_access,
                        hide_organization_settings,
                    },
                    other => other,
                })
                .collect()
        })
    }
}

/// ChangeUserRole: a new preset, which resets the flags to its defaults (R-USER-1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeUserRole {
    pub site_id: SiteId,
    pub user_id: UserId,
    pub role: Role,
}

impl ChangeUserRole {
    pub fn decide(&self, actor: &Actor, site: &SiteState) -> Result<Vec<SiteEvent>, DomainError> {
        let by = authorize(actor, site, &MANAGE_USERS)?;
        let user = site.editable_user(self.user_id)?;
        check_grants_instance_admin(by, &self.role.default_permissions(), &user.permissions)?;
        Ok(vec![SiteEvent::UserRoleChanged {
            user_id: self.user_id,
            role: self.role,
            permissions: self.role.default_permissions(),
        }])
    }
}

/// ChangeUserDetails: a user's name and email (seed 001's Edit User). The
/// email given replaces the one recorded; none given clears it. The
/// username, which people sign in with, does not change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeUserDetails {
    pub site_id: SiteId,
    pub user_id: UserId,
    pub name: Name,
    #[serde(default)]
    pub email: Option<Email>,
}

impl ChangeUserDetails {
    pub fn decide(&self, actor: &Actor, site: &SiteState) -> Result<Vec<SiteEvent>, DomainError> {
        authorize(actor, site, &MANAGE_USERS)?;
        site.editable_user(self.user_id)?;
        Ok(vec![SiteEvent::UserDetailsChanged {
            user_id: self.user_id,
            name: self.name.clone(),
            email: self.email.clone(),
        }])
    }
}

/// SetPermissionFlags: switch flags one by one after the preset (R-USER-1, R-USER-2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetPermissionFlags {
    pub site_id: SiteId,
    pub user_id: UserId,
    #[serde(default)]
    pub enable: std::collections::BTreeSet<PermissionFlag>,
    #[serde(default)]
    pub disable: std::collections::BTreeSet<PermissionFlag>,
}

impl SetPermissionFlags {
    pub fn decide(&self, actor: &Actor, site: &SiteState) -> Result<Vec<SiteEvent>, DomainError> {
        let by = authorize(actor, site, &MANAGE_USERS)?;
        let user = site.editable_user(self.user_id)?;
        let mut permissions = user.permissions.clone();
        permissions.extend(self.enable.iter().copied());
        permissions.retain(|f| !self.disable.contains(f));
        check_grants_instance_admin(by, &permissions, &user.permissions)?;
        Ok(vec![SiteEvent::UserPermissionsSet {
            user_id: self.user_id,
            permissions,
        }])
    }
}

/// GrantScorecardAccess: a per-scorecard level for a user (R-USER-3). The
/// scorecard must be one of the site's own, or a partner's scorecard shared
/// with the site (then at most Browser, R-SHARE-5): the command service
/// checks which and passes `max_level`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrantScorecardAccess {
    pub site_id: SiteId,
    pub user_id: UserId,
    pub scorecard_id: ScorecardId,
    pub level: AccessLevel,
    /// The scorecard's site, when it is a partner's (shared with this site).
    #[serde(default)]
    pub owner_site: Option<SiteId>,
}

/// R-USER-5 and R-USER-3: a user manager (Manage Users or Instance Admin)
/// changes anyone's access to any scorecard; a user whose level on one of
/// the site's own scorecards is Scorecard Admin ("configure the scorecard
/// and its access") changes access to that scorecard. `actor_level` is the
/// actor's level on the scorecard (`None` for a partner's scorecard).
fn authorize_access_change(
    actor: &Actor,
    site: &SiteState,
    actor_level: Option<AccessLevel>,
) -> Result<(), DomainError> {
    match authorize(actor, site, &MANAGE_USERS) {
        Err(refused) if actor_level == Some(AccessLevel::ScorecardAdmin) => {
            authorize(actor, site, &[]).map(|_| ()).map_err(|_| refused)
        }
        other => other.map(|_| ()),
    }
}

impl GrantScorecardAccess {
    /// `max_level` is `Some(ScorecardAdmin)` for an own scorecard,
    /// `Some(Browser)` for a partner's scorecard shared with this site, and
    /// `None` when the scorecard is neither; `actor_level` the actor's
    /// level on an own scorecard ([`authorize_access_change`]).
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        max_level: Option<AccessLevel>,
        actor_level: Option<AccessLevel>,
    ) -> Result<Vec<SiteEvent>, DomainError> {
        authorize_access_change(actor, site, actor_level)?;
        site.editable_user(self.user_id)?;
        let max = max_level.ok_or(DomainError::ScorecardNotFound(self.scorecard_id))?;
        if self.level > max {
            return Err(DomainError::SharedContentReadOnly);
        }
        Ok(vec![SiteEvent::ScorecardAccessGranted {
            user_id: self.user_id,
            scorecard_id: self.scorecard_id,
            level: self.level,
        }])
    }
}

/// RevokeScorecardAccess.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokeScorecardAccess {
    pub site_id: SiteId,
    pub user_id: UserId,
    pub scorecard_id: ScorecardId,
}

impl RevokeScorecardAccess {
    /// `actor_level` is the actor's level on the scorecard when it is one
    /// of the site's own ([`authorize_access_change`]).
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        actor_level: Option<AccessLevel>,
    ) -> Result<Vec<SiteEvent>, DomainError> {
        authorize_access_change(actor, site, actor_level)?;
        let user = site.editable_user(self.user_id)?;
        if !user.scorecard_access.contains_key(&self.scorecard_id) {
            return Err(DomainError::ScorecardNotFound(self.scorecard_id));
        }
        Ok(vec![SiteEvent::ScorecardAccessRevoked {
            user_id: self.user_id,
            scorecard_id: self.scorecard_id,
        }])
    }
}

/// DeactivateUser (R-USER-6): all access gone at once, settings kept.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeactivateUser {
    pub site_id: SiteId,
    pub user_id: UserId,
}

impl DeactivateUser {
    pub fn decide(&self, actor: &Actor, site: &SiteState) -> Result<Vec<SiteEvent>, DomainError> {
        authorize(actor, site, &MANAGE_USERS)?;
        site.editable_user(self.user_id)?;
        Ok(vec![SiteEvent::UserDeactivated {
            user_id: self.user_id,
        }])
    }
}

/// ReactivateUser (R-USER-6, R-USER-7): settings come back; needs a free seat.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReactivateUser {
    pub site_id: SiteId,
    pub user_id: UserId,
}

impl ReactivateUser {
    pub fn decide(&self, actor: &Actor, site: &SiteState) -> Result<Vec<SiteEvent>, DomainError> {
        authorize(actor, site, &MANAGE_USERS)?;
        if site.user(self.user_id)?.active {
            return Err(DomainError::UserActive(self.user_id));
        }
        if site.free_seats() == 0 {
            return Err(DomainError::SeatLimitReached {
                limit: site.seat_limit.get(),
            });
        }
        Ok(vec![SiteEvent::UserReactivated {
            user_id: self.user_id,
        }])
    }
}

/// HideOrganizationSettings (R-ONB-3): per manager.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HideOrganizationSettings {
    pub site_id: SiteId,
    pub user_id: UserId,
    pub hidden: bool,
}

impl HideOrganizationSettings {
    pub fn decide(&self, actor: &Actor, site: &SiteState) -> Result<Vec<SiteEvent>, DomainError> {
        authorize(actor, site, &MANAGE_USERS)?;
        site.editable_user(self.user_id)?;
        Ok(vec![SiteEvent::OrganizationSettingsHiddenSet {
            user_id: self.user_id,
            hidden: self.hidden,
        }])
    }
}

/// ImportUsers (R-USER-8): every row checked first; one bad row rejects the
/// whole file with an error per bad row; a good file adds every row, within
/// the seat limit (R-USER-7).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportUsers {
    pub site_id: SiteId,
    /// The file: a header row, then one user per row.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[^\x00]*$"))]
    pub csv: String,
}

impl ImportUsers {
    /// The decision on the file's rows, once parsed.
    pub fn decide_rows(
        actor: &Actor,
        site: &SiteState,
        rows: &[crate::csv_import::ImportRow],
    ) -> Result<Vec<SiteEvent>, DomainError> {
        let by = authorize(actor, site, &MANAGE_USERS)?;
        for row in rows {
            check_grants_instance_admin(by, &row.role.default_permissions(), &Permissions::new())?;
        }
        let mut errors = Vec::new();
        // The file's usernames by comparison key: two rows that look alike
        // are one username twice.
        let mut seen: BTreeMap<UsernameKey, (&Username, u32)> = BTreeMap::new();
        let mut ids = std::collections::BTreeSet::new();
        for row in rows {
            if site.users.contains_key(&row.user_id) || !ids.insert(row.user_id) {
                return Err(DomainError::UserExists(row.user_id));
            }
        }
        for row in rows {
            let username_error = |reason: String| crate::error::RowError {
                line: row.line,
                field: "username".into(),
                reason,
            };
            if let Err(taken) = site.check_username_free(&row.username) {
                let reason = match taken {
                    DomainError::UsernameLooksTaken { existing, .. } => format!(
                        "{} looks the same as {existing}, which is taken on this site",
                        shown(row.username.as_str())
                    ),
                    _ => format!("{} is taken on this site", row.username),
                };
                errors.push(username_error(reason));
            } else if let Some((first, line)) = seen.get(&row.username.key()) {
                errors.push(username_error(if *first == &row.username {
                    format!("{} appears already on line {line}", row.username)
                } else {
                    format!(
                        "{} looks the same as {first} on line {line}",
                        shown(row.username.as_str())
                    )
                }));
            } else if let Err(invalid) = row.username.check_new() {
                errors.push(username_error(invalid.to_string()));
            } else {
                seen.insert(row.username.key(), (&row.username, row.line));
            }
        }
        if !errors.is_empty() {
            return Err(DomainError::ImportRejected(errors));
        }
        if rows.len() > site.free_seats() {
            return Err(DomainError::SeatLimitReached {
                limit: site.seat_limit.get(),
            });
        }
        Ok(rows
            .iter()
            .map(|row| SiteEvent::UserAdded {
                user: NewUser {
                    user_id: row.user_id,
                    username: row.username.clone(),
                    name: row.name.clone(),
                    role: row.role,
                    permissions: row.role.default_permissions(),
                    email: row.email.clone(),
                },
                origin: UserOrigin::Imported { line: row.line },
                scorecard_access: BTreeMap::new(),
                hide_organization_settings: false,
            })
            .collect())
    }
}

/// SetSelfRegistrationLink (seed 003): the group's Instance Admin publishes
/// a self-registration link, rotates its key (the last key stops working),
/// or turns it off (`link_hash` none). The key itself is made and shown by
/// the gateway, once; the log keeps only its SHA-256. Not an HTTP command
/// body: `POST /v1/sites/{site_id}/self-registration-link` makes the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSelfRegistrationLink {
    pub site_id: SiteId,
    /// SHA-256 (hex) of the new key; none turns the link off.
    pub link_hash: Option<String>,
    pub child_of_group: bool,
}

impl SetSelfRegistrationLink {
    pub fn decide(&self, actor: &Actor, site: &SiteState) -> Result<Vec<SiteEvent>, DomainError> {
        authorize(actor, site, &INSTANCE_ADMIN)?;
        let config = &site.self_registration;
        if self.link_hash.is_some()
            && !(config.enabled && config.model_site.is_some() && config.model_user.is_some())
        {
            return Err(DomainError::SelfRegistrationNotConfigured);
        }
        Ok(vec![SiteEvent::SelfRegistrationLinkSet {
            link_hash: self.link_hash.clone(),
            child_of_group: self.child_of_group,
        }])
    }
}

/// SelfRegisterPartner (R-ONB-2, seed 003): a partner creates its own site
/// from the group's self-registration, with a first manager copied from
/// the model user: role, flags and restrictions. Of the model's scorecard
/// access, what means something on the new site is kept: the model site's
/// own scorecards the model user has a level on are shared with the new
/// site over a link from the model site (the group itself, or the template
/// site it names), active at once (the partner agreed by registering), and
/// the manager is a Browser on each (R-SHARE-5); the model's other levels
/// (on scorecards the new site cannot see) are not copied.
///
/// Sent by an operator (or a user) on the partner's behalf through
/// `POST /v1/commands/SelfRegisterPartner`; or by anyone holding the
/// group's published link through `POST /v1/self-registration`, which
/// sets `via_link` to the SHA-256 of the key presented: the decision then
/// refuses a key that is not the group's current one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SelfRegisterPartner {
    /// The group whose self-registration is used.
    pub group_site: SiteId,
    pub site_id: SiteId,
    pub code: SiteCode,
    pub name: Name,
    pub seat_limit: SeatLimit,
    pub manager_id: UserId,
    pub manager_username: Username,
    pub manager_name: Name,
    #[serde(default)]
    pub manager_email: Option<Email>,
    /// Make the new site a child of the group (through the link: as the
    /// link says).
    #[serde(default)]
    pub child_of_group: bool,
    /// The SHA-256 (hex) of the link key presented; never in a body.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub via_link: Option<String>,
}

impl SelfRegisterPartner {
    /// `group` is the site whose self-registration is used; `model_site`
    /// its configured model site's state and `model_content` that site's
    /// content.
    pub fn decide(
        &self,
        group: &SiteState,
        model_content: &ContentState,
        model_site: Option<&SiteState>,
        existing: Option<&SiteState>,
    ) -> Result<SelfRegistered, DomainError> {
        let config = &group.self_registration;
        let (true, Some(model_site_id), Some(model_user_id)) =
            (config.enabled, config.model_site, config.model_user)
        else {
            return Err(DomainError::SelfRegistrationNotConfigured);
        };
        let child_of_group = match &self.via_link {
            Some(hash) if config.link_hash.as_ref() == Some(hash) => config.child_of_group,
            Some(_) => return Err(DomainError::SelfRegistrationLinkInvalid),
            None => self.child_of_group,
        };
        let model_site = model_site.ok_or(DomainError::SiteNotFound(model_site_id))?;
        let model = model_site.user(model_user_id)?;
        if existing.is_some() {
            return Err(DomainError::SiteExists(self.site_id));
        }
        self.manager_username.check_new()?;
        // The model site's own scorecards the model has a level on: shared
        // with the new site, the manager a Browser on each.
        let shared: Vec<ScorecardId> = model
            .scorecard_access
            .keys()
            .filter(|s| {
                model_content.site == model_site_id && model_content.scorecards.contains_key(s)
            })
            .copied()
            .collect();
        let site = vec![
            SiteEvent::SiteRegistered {
                site_id: self.site_id,
                code: self.code.clone(),
                name: self.name.clone(),
                seat_limit: self.seat_limit,
                parent: child_of_group.then_some(group.id),
            },
            SiteEvent::UserAdded {
                user: NewUser {
                    user_id: self.manager_id,
                    username: self.manager_username.clone(),
                    name: self.manager_name.clone(),
                    role: model.role,
                    permissions: model.permissions.clone(),
                    email: self.manager_email.clone(),
                },
                origin: UserOrigin::SelfRegistered {
                    model_site: model_site_id,
                    model_user: model_user_id,
                },
                scorecard_access: shared.iter().map(|s| (*s, AccessLevel::Browser)).collect(),
                hide_organization_settings: model.hide_organization_settings,
            },
        ];
        let mut connection = Vec::new();
        if !shared.is_empty() {
            let link = Link {
                from: model_site_id,
                to: self.site_id,
            };
            connection.push(ConnectionEvent::ConnectionRequested {
                requester: model_site_id,
                partner: self.site_id,
                directions: Directions::Offer,
                links: vec![link],
            });
            connection.push(ConnectionEvent::LinksActivated {
                approver: self.site_id,
                links: vec![link],
                mutual_request: false,
            });
            connection.extend(shared.iter().map(|s| ConnectionEvent::ScorecardShared {
                link,
                scorecard_id: *s,
            }));
        }
        Ok(SelfRegistered { site, connection })
    }
}

/// What a self-registration writes: the new site with its manager, and the
/// model site's link to it with its shares (none when nothing is shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfRegistered {
    pub site: Vec<SiteEvent>,
    /// Of the pair (model site, new site).
    pub connection: Vec<ConnectionEvent>,
}

/// R-USER-5's gate (Manage Users or Instance Admin), checked before a
/// refusal that would otherwise answer an unauthorized actor (a missing
/// source site, a CSV file's bad rows).
fn authorize_user_manager(actor: &Actor, site: &SiteState) -> Result<(), DomainError> {
    authorize(actor, site, &MANAGE_USERS).map(|_| ())
}

/// Commands decided on their site's state alone.
macro_rules! decided_on_the_site {
    ($($command:ident $([creates $($field:literal),+])?: $summary:literal),* $(,)?) => {$(
        impl Decision for $command {
            const NAME: &'static str = stringify!($command);
            const SUMMARY: &'static str = $summary;
            $(const CREATES: &'static [&'static str] = &[$($field),+];)?
            fn reads(&self, _: &Context, _: &Facts) -> Vec<Read> {
                vec![Read::Site(self.site_id)]
            }
            fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
                let site = facts.existing_site(self.site_id)?;
                Ok(Decided::site(self.site_id, self.decide(&ctx.actor, site)?))
            }
        }
    )*};
}

decided_on_the_site!(
    SetSeatLimit: "Sets how many active users the site may have (R-USER-7).",
    RequireTwoFactor: "Requires (or stops requiring) two-factor sign-in on the site (R-ONB-3).",
    SetSelfRegistrationLink: "Publishes, rotates or turns off the group's self-registration link (seed 003).",
    SetDirectoryListing: "Lists the site in the partner directory, or takes it out (Instance Admin; seed 002).",
    AddUser [creates "user_id"]: "Adds a user to the site with a role preset (R-USER-1, R-USER-7).",
    ChangeUserRole: "Changes a user's role preset (R-USER-1).",
    ChangeUserDetails: "Changes a user's name and email (R-USER-5).",
    SetPermissionFlags: "Switches a user's permission flags on and off (R-USER-2).",
    DeactivateUser: "Deactivates a user: they see nothing and can do nothing until reactivated (R-USER-6).",
    ReactivateUser: "Reactivates a user, within the seat limit (R-USER-7).",
    HideOrganizationSettings: "Hides (or shows) the organisation settings from a user.",
);

impl Decision for RegisterSite {
    const NAME: &'static str = "RegisterSite";
    const CREATES: &'static [&'static str] = &["site_id"];
    const SUMMARY: &'static str =
        "Registers a site with a unique code (operators; a group's Instance Admin for child sites, R-ONB-1).";

    fn reads(&self, _: &Context, _: &Facts) -> Vec<Read> {
        let mut reads = vec![Read::Site(self.site_id), Read::SiteCode(self.code.clone())];
        reads.extend(self.parent.map(Read::Site));
        reads
    }

    /// Claims the code (`sitecode-<CODE>`) and creates the site in one
    /// append: a taken code is `SiteCodeTaken`, even under concurrency.
    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        if facts.site_code(&self.code).is_some() {
            return Err(DomainError::SiteCodeTaken(self.code.clone()));
        }
        let parent = self.parent.and_then(|p| facts.site(p));
        let events = self.decide(&ctx.actor, facts.site(self.site_id), parent)?;
        Ok(claim_code(
            Decided::site(self.site_id, events),
            self.site_id,
            &self.code,
        ))
    }
}

/// Writes the claim of `code` for `site` too.
fn claim_code(decided: Decided, site: SiteId, code: &SiteCode) -> Decided {
    decided.and(Write::SiteCode(
        code.clone(),
        vec![SiteCodeEvent::SiteCodeClaimed {
            code: code.clone(),
            site_id: site,
        }],
    ))
}

/// How many levels of parents [`SetParentSite`] follows above the new
/// parent. A deeper hierarchy is refused as a possible cycle.
pub const MAX_HIERARCHY_DEPTH: usize = 64;

/// The new parent's ancestors as far as they are read, nearest first.
struct ParentChain {
    /// The ancestors above the parent (up to the moving site, if met).
    ancestors: Vec<SiteId>,
    /// The next site to read, when the chain goes on above what is read.
    unread: Option<SiteId>,
    /// Deeper than [`MAX_HIERARCHY_DEPTH`].
    too_deep: bool,
}

impl SetParentSite {
    /// Follows the parents up from the new parent through `facts`. A cycle
    /// already in the stored hierarchy is followed once, never forever.
    fn chain(&self, facts: &Facts) -> ParentChain {
        let mut chain = ParentChain {
            ancestors: Vec::new(),
            unread: None,
            too_deep: false,
        };
        let Some(parent) = self.parent else {
            return chain;
        };
        if !facts.has(&Read::Site(parent)) {
            chain.unread = Some(parent);
            return chain;
        }
        let mut seen = std::collections::BTreeSet::from([parent]);
        let mut next = facts.site(parent).and_then(|s| s.parent);
        while let Some(id) = next {
            if id == self.site_id {
                // Moving under a descendant: the decision refuses.
                chain.ancestors.push(id);
                break;
            }
            if !seen.insert(id) {
                // A cycle in stored data, above this site.
                break;
            }
            if chain.ancestors.len() == MAX_HIERARCHY_DEPTH {
                chain.too_deep = true;
                break;
            }
            chain.ancestors.push(id);
            if !facts.has(&Read::Site(id)) {
                chain.unread = Some(id);
                break;
            }
            next = facts.site(id).and_then(|s| s.parent);
        }
        chain
    }
}

impl Decision for SetParentSite {
    const NAME: &'static str = "SetParentSite";
    const SUMMARY: &'static str = "Sets or clears the site's parent (R-ONB-1).";

    /// The site, the new parent and its ancestors, up to
    /// [`MAX_HIERARCHY_DEPTH`] levels: every one of them unchanged when the
    /// move is recorded, so that two concurrent moves cannot form a cycle.
    fn reads(&self, _: &Context, facts: &Facts) -> Vec<Read> {
        let chain = self.chain(facts);
        let mut reads: Vec<Read> = std::iter::once(self.site_id)
            .chain(self.parent)
            .chain(chain.ancestors.into_iter().filter(|id| *id != self.site_id))
            .chain(chain.unread)
            .map(Read::Site)
            .collect();
        // The unread site is the parent or the last ancestor, just before
        // it: named once, so that it is loaded once.
        reads.dedup();
        reads
    }

    /// A parent that does not exist is `SiteNotFound` (after
    /// authorization); a deeper hierarchy is `ParentCycle`.
    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        let site = facts.existing_site(self.site_id)?;
        let chain = self.chain(facts);
        let events = self.decide(&ctx.actor, site, &chain.ancestors)?;
        if let Some(parent) = self.parent {
            facts.existing_site(parent)?;
        }
        if chain.too_deep {
            return Err(DomainError::ParentCycle);
        }
        Ok(Decided::site(self.site_id, events))
    }
}

impl Decision for ConfigureSelfRegistration {
    const NAME: &'static str = "ConfigureSelfRegistration";
    const SUMMARY: &'static str =
        "Enables or disables partner self-registration with a model site and user (R-ONB-2).";

    /// The model site too, when one is named: the model user the decision
    /// found is still there when the setting is recorded.
    fn reads(&self, _: &Context, _: &Facts) -> Vec<Read> {
        std::iter::once(self.site_id)
            .chain(self.model_site)
            .map(Read::Site)
            .collect()
    }

    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        let site = facts.existing_site(self.site_id)?;
        let model = self.model_site.and_then(|id| facts.site(id));
        Ok(Decided::site(
            self.site_id,
            self.decide(&ctx.actor, site, model)?,
        ))
    }
}

impl Decision for AddExistingUser {
    const NAME: &'static str = "AddExistingUser";
    const CREATES: &'static [&'static str] = &["user_id"];
    const SUMMARY: &'static str = "Adds an existing user of another site (R-USER-9).";

    /// The source site too: the copied username and name are the ones the
    /// decision read.
    fn reads(&self, _: &Context, _: &Facts) -> Vec<Read> {
        vec![Read::Site(self.site_id), Read::Site(self.from_site)]
    }

    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        let target = facts.existing_site(self.site_id)?;
        let Some(source) = facts.site(self.from_site) else {
            authorize_user_manager(&ctx.actor, target)?;
            return Err(DomainError::SiteNotFound(self.from_site));
        };
        Ok(Decided::site(
            self.site_id,
            self.decide(&ctx.actor, target, source)?,
        ))
    }
}

impl GrantScorecardAccess {
    /// The scorecard's site: the site's own unless a partner's is named.
    pub fn owner(&self) -> SiteId {
        self.owner_site.unwrap_or(self.site_id)
    }
}

impl Decision for GrantScorecardAccess {
    const NAME: &'static str = "GrantScorecardAccess";
    const SUMMARY: &'static str = "Grants a user a level on a scorecard of the site (user managers; a Scorecard Admin of it, R-USER-3), or of a partner that shares it (Browser only, R-SHARE-5).";

    /// The owner's content, and, for a partner's scorecard, what the
    /// partner shares with the site.
    fn reads(&self, _: &Context, _: &Facts) -> Vec<Read> {
        let owner = self.owner();
        let mut reads = vec![Read::Site(self.site_id), Read::Content(owner)];
        if owner != self.site_id {
            reads.push(Read::Connection(owner, self.site_id));
        }
        reads
    }

    /// Any level on an own scorecard; at most Browser on a partner's
    /// scorecard shared with this site (R-USER-3, R-SHARE-5).
    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        let site = facts.existing_site(self.site_id)?;
        let owner = self.owner();
        let max_level = if owner == self.site_id {
            facts
                .content(owner)
                .scorecards
                .contains_key(&self.scorecard_id)
                .then_some(AccessLevel::ScorecardAdmin)
        } else {
            facts
                .shared_with(owner, self.site_id)
                .contains(&self.scorecard_id)
                .then_some(AccessLevel::Browser)
        };
        let actor_level = (owner == self.site_id)
            .then(|| actor_level_on(ctx, site, facts, self.scorecard_id))
            .flatten();
        Ok(Decided::site(
            self.site_id,
            self.decide(&ctx.actor, site, max_level, actor_level)?,
        ))
    }
}

/// The acting user's level on `scorecard`, one of `site`'s own (its
/// content read), when the actor is a user of `site`.
fn actor_level_on(
    ctx: &Context,
    site: &SiteState,
    facts: &Facts,
    scorecard: ScorecardId,
) -> Option<AccessLevel> {
    let Actor::User { user_id, site_id } = ctx.actor else {
        return None;
    };
    let user = site
        .users
        .get(&UserId(user_id))
        .filter(|_| site_id == site.id.0)?;
    crate::content::level_on_scorecard(user, facts.content(site.id), scorecard)
}

/// Whether the actor is a user of `site` without Manage Users or Instance
/// Admin: their right to change access depends on their level on the
/// scorecard, read from the site's content.
fn needs_scorecard_level(ctx: &Context, site: Option<&SiteState>) -> bool {
    matches!(ctx.actor, Actor::User { .. })
        && site.is_some_and(|s| authorize(&ctx.actor, s, &MANAGE_USERS).is_err())
}

impl Decision for RevokeScorecardAccess {
    const NAME: &'static str = "RevokeScorecardAccess";
    const SUMMARY: &'static str = "Revokes a user's access to a scorecard (user managers; a Scorecard Admin of it, R-USER-3).";

    /// The site, and, for an actor who is not a user manager, the site's
    /// content: their level on the scorecard decides.
    fn reads(&self, ctx: &Context, facts: &Facts) -> Vec<Read> {
        let site = Read::Site(self.site_id);
        let mut reads = vec![site.clone()];
        if facts.has(&site) && needs_scorecard_level(ctx, facts.site(self.site_id)) {
            reads.push(Read::Content(self.site_id));
        }
        reads
    }

    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        let site = facts.existing_site(self.site_id)?;
        let actor_level = needs_scorecard_level(ctx, Some(site))
            .then(|| actor_level_on(ctx, site, facts, self.scorecard_id))
            .flatten();
        Ok(Decided::site(
            self.site_id,
            self.decide(&ctx.actor, site, actor_level)?,
        ))
    }
}

impl Decision for ImportUsers {
    const NAME: &'static str = "ImportUsers";
    const SUMMARY: &'static str =
        "Imports users from CSV text: all rows or none, bad rows reported by line and field (R-USER-8).";

    fn reads(&self, _: &Context, _: &Facts) -> Vec<Read> {
        vec![Read::Site(self.site_id)]
    }

    /// The actor's right to import is checked first (R-USER-5), then every
    /// row. User ids derive from the idempotency key
    /// ([`crate::csv_import::imported_user_id`]): a re-send is idempotent.
    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        let site = facts.existing_site(self.site_id)?;
        authorize_user_manager(&ctx.actor, site)?;
        // Seed 001: Import/Export "can access the Import Users admin page".
        authorize(&ctx.actor, site, &IMPORT_USERS)?;
        let mut row = 0;
        let (rows, mut errors) = crate::csv_import::parse_users_rows(&self.csv, || {
            row += 1;
            crate::csv_import::imported_user_id(ctx.key, row - 1)
        })?;
        // The good rows are checked against the site too, so that one
        // answer lists every bad row: a bad field and a taken username.
        match Self::decide_rows(&ctx.actor, site, &rows) {
            Ok(events) if errors.is_empty() => Ok(Decided::site(self.site_id, events)),
            Err(DomainError::ImportRejected(more)) => {
                errors.extend(more);
                errors.sort_by_key(|e| e.line);
                Err(DomainError::ImportRejected(errors))
            }
            Err(other) if errors.is_empty() => Err(other),
            _ => Err(DomainError::ImportRejected(errors)),
        }
    }
}

impl Decision for SelfRegisterPartner {
    const NAME: &'static str = "SelfRegisterPartner";
    const CREATES: &'static [&'static str] = &["site_id", "manager_id"];
    const SUMMARY: &'static str =
        "A partner registers itself with a group that enabled self-registration (R-ONB-2).";

    /// The group, the new site and its code; once the group is read, its
    /// model site, that site's content, and its connection with the new
    /// site.
    fn reads(&self, _: &Context, facts: &Facts) -> Vec<Read> {
        let mut reads = vec![
            Read::Site(self.group_site),
            Read::Site(self.site_id),
            Read::SiteCode(self.code.clone()),
        ];
        if facts.has(&Read::Site(self.group_site)) {
            let model = facts
                .site(self.group_site)
                .and_then(|g| g.self_registration.model_site);
            if let Some(model) = model {
                reads.push(Read::Site(model));
                reads.push(Read::Content(model));
                reads.push(Read::Connection(model, self.site_id));
            }
        }
        reads
    }

    /// Creates the site (a child of the group when asked, or as the link
    /// says) with its first manager, claims its code in the same append, as
    /// [`RegisterSite`] does, and opens the group's link to it with what is
    /// shared. The system issues no commands.
    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        if matches!(ctx.actor, Actor::System) {
            return Err(DomainError::NotAnIssuer);
        }
        let group = facts.existing_site(self.group_site)?;
        let model_id = group.self_registration.model_site;
        let model = model_id.and_then(|id| facts.site(id));
        let empty = ContentState::empty(self.group_site);
        let model_content = model_id.map_or(&empty, |id| facts.content(id));
        let registered = self.decide(group, model_content, model, facts.site(self.site_id))?;
        if facts.site_code(&self.code).is_some() {
            return Err(DomainError::SiteCodeTaken(self.code.clone()));
        }
        Ok(claim_code(
            Decided::site(self.site_id, registered.site),
            self.site_id,
            &self.code,
        )
        .and(Write::Connection(
            model_id.unwrap_or(self.group_site),
            self.site_id,
            registered.connection,
        )))
    }
}
