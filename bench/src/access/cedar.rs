//! The access model (`docs/access-model.md`) as a Cedar policy set over
//! prebuilt Cedar entities: Cedar's best case, every entity of the world in
//! one [`Entities`] store with its transitive closure computed beforehand,
//! and every request built before it is timed.
//!
//! # Entities
//!
//! * `Site::"<site>"`; per site also `Partner::"<site>"` (everything shared
//!   with the site) and `RelSite::"<site>"` (everything the site's
//!   relationships reach).
//! * `Scorecard::"<id>"` `{ site }`, in its `Site`, and in
//!   `Share::"<scorecard>|<partner>"` for each partner it is shared with over
//!   an active link; each `Share` is in that partner's `Partner`.
//! * `Object::"<id>"` `{ site }`, in each scorecard it is placed on and in
//!   its container, so that `Object in Scorecard` is exactly *shows on*
//!   (R-SHARE-2) through Cedar's own transitive closure; and in
//!   `Rel::"<site>|<scorecard>"` for each live relationship of that site
//!   whose object it is: one per scorecard of the site where the
//!   relationship sits (its target scorecard, or the scorecards its target
//!   object shows on). Each `Rel` is in its site's `RelSite`.
//! * `User::"<id>"` `{ active, site, partner, rel_site, instance_admin,
//!   all_scorecards, add_edit_objects, sc_browser, sc_updater, sc_editor,
//!   sc_admin, own_assigned, assigned_shares, rel_assigned }`: the flags the
//!   rules read, the own scorecards assigned per level (and all of them), the
//!   partners' scorecards assigned to the user named as the `Share` they
//!   would be shared through (`<scorecard>|<user's site>`, which exists only
//!   while the scorecard is shared with the site), and the own assigned
//!   scorecards named as `Rel` (`<user's site>|<scorecard>`).
//!
//! The user's attributes are the user's own facts only; whether a share or
//! a relationship is live is in the hierarchy, as in the log. The one thing
//! precomputed outside Cedar is where a relationship to an aggregation sits:
//! the scorecards its target object shows on (Cedar cannot follow a
//! relationship's target and then that target's ancestors in one `in`).
//!
//! # Policies
//!
//! [`POLICIES`]: one `permit` per rule of the model page; actions `view`,
//! `update`, `edit`, `admin` (Browser to Scorecard Admin). Cedar's union of
//! permits is the model's "highest level" and its default deny the model's
//! "otherwise nothing".

use std::collections::{HashMap, HashSet};
use std::str::FromStr as _;

use anyhow::Context as _;
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression,
};
use rustc_hash::FxHashMap;
use shareledger_core::catalog::{AccessLevel, Action, PermissionFlag};

use super::world::{RelTarget, Thing, World};

/// The access model's rules as Cedar policies.
pub const POLICIES: &str = r#"
// Own site (R-USER-6: active users only). Instance Admin: Scorecard Admin
// on every own scorecard,
permit (principal, action, resource is Scorecard)
when { principal.active && resource.site == principal.site && principal.instance_admin };

// and on every own object that shows on a scorecard (or every own object,
// with All Scorecards).
permit (principal, action, resource is Object)
when {
  principal.active && resource.site == principal.site && principal.instance_admin &&
  (principal.all_scorecards || resource in principal.site)
};

// Levels assigned on own scorecards, on them and on what shows on them.
permit (principal, action, resource)
when { principal.active && resource.site == principal.site && resource in principal.sc_admin };

permit (principal, action in [Action::"view", Action::"update", Action::"edit"], resource)
when { principal.active && resource.site == principal.site && resource in principal.sc_editor };

permit (principal, action in [Action::"view", Action::"update"], resource)
when { principal.active && resource.site == principal.site && resource in principal.sc_updater };

permit (principal, action == Action::"view", resource)
when { principal.active && resource.site == principal.site && resource in principal.sc_browser };

// browse_all: All Scorecards, or Add/Edit Scorecard Objects with no own
// scorecard assigned (seed 001): every own scorecard,
permit (principal, action == Action::"view", resource is Scorecard)
when {
  principal.active && resource.site == principal.site &&
  (principal.all_scorecards || (principal.add_edit_objects && principal.own_assigned.isEmpty()))
};

// every own object with All Scorecards, every own object on a scorecard
// with browse_all.
permit (principal, action == Action::"view", resource is Object)
when {
  principal.active && resource.site == principal.site &&
  (principal.all_scorecards ||
   (principal.add_edit_objects && principal.own_assigned.isEmpty() && resource in principal.site))
};

// Partners' scorecards shared with the user's site: All Scorecards, or
// assigned (R-SHARE-5). Browser only.
permit (principal, action == Action::"view", resource is Scorecard)
when {
  principal.active && resource.site != principal.site && resource in principal.partner &&
  (principal.all_scorecards || resource in principal.assigned_shares)
};

// Partners' objects the user's site sees: All Scorecards; or on a shared
// scorecard assigned to the user; or reached by a relationship of the
// user's site that sits where the user has a level (an assigned scorecard;
// any scorecard for Instance Admin or browse_all). Browser only.
permit (principal, action == Action::"view", resource is Object)
when {
  principal.active && resource.site != principal.site && resource in principal.partner &&
  (principal.all_scorecards ||
   resource in principal.assigned_shares ||
   resource in principal.rel_assigned ||
   ((principal.instance_admin ||
     (principal.add_edit_objects && principal.own_assigned.isEmpty())) &&
    resource in principal.rel_site))
};
"#;

/// Cedar's side: the policies, the entities, and the names it needs.
pub struct CedarSide {
    policies: PolicySet,
    entities: Entities,
    authorizer: Authorizer,
    types: Types,
    actions: [EntityUid; 4],
    /// Entities in the store.
    pub entity_count: usize,
}

struct Types {
    site: EntityTypeName,
    partner: EntityTypeName,
    rel_site: EntityTypeName,
    share: EntityTypeName,
    rel: EntityTypeName,
    scorecard: EntityTypeName,
    object: EntityTypeName,
    user: EntityTypeName,
}

impl Types {
    fn new() -> anyhow::Result<Self> {
        let t = |name: &str| EntityTypeName::from_str(name).context("a Cedar type name");
        Ok(Self {
            site: t("Site")?,
            partner: t("Partner")?,
            rel_site: t("RelSite")?,
            share: t("Share")?,
            rel: t("Rel")?,
            scorecard: t("Scorecard")?,
            object: t("Object")?,
            user: t("User")?,
        })
    }
}

fn uid(ty: &EntityTypeName, id: impl std::fmt::Display) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id.to_string()))
}

fn entity_ref(uid: &EntityUid) -> RestrictedExpression {
    RestrictedExpression::new_entity_uid(uid.clone())
}

fn entity_set<'a>(uids: impl IntoIterator<Item = &'a EntityUid>) -> RestrictedExpression {
    RestrictedExpression::new_set(uids.into_iter().map(entity_ref))
}

impl CedarSide {
    /// Parses the policies and builds every entity of `world`.
    pub fn build(world: &World) -> anyhow::Result<Self> {
        let policies: PolicySet = POLICIES
            .parse()
            .map_err(|e| anyhow::anyhow!("the Cedar policies do not parse: {e}"))?;
        let types = Types::new()?;
        let t = &types;
        let site_uid = |s: u32| uid(&t.site, world.sites[s as usize].id);
        let scorecard_uid = |s: u32| uid(&t.scorecard, world.scorecards[s as usize].id);
        let object_uid = |o: u32| uid(&t.object, world.objects[o as usize].id);
        let share_uid = |s: u32, to: u32| {
            uid(
                &t.share,
                format_args!(
                    "{}|{}",
                    world.scorecards[s as usize].id, world.sites[to as usize].id
                ),
            )
        };
        let rel_uid = |site: u32, s: u32| {
            uid(
                &t.rel,
                format_args!(
                    "{}|{}",
                    world.sites[site as usize].id, world.scorecards[s as usize].id
                ),
            )
        };
        let mut entities: Vec<Entity> = Vec::new();
        for site in &world.sites {
            for ty in [&t.site, &t.partner, &t.rel_site] {
                entities.push(Entity::new_no_attrs(uid(ty, site.id), HashSet::new()));
            }
        }
        // Shares: each scorecard in the shares that show it to a partner.
        let mut scorecard_shares: FxHashMap<u32, Vec<EntityUid>> = FxHashMap::default();
        for (&(_, to), link) in &world.links {
            if !link.active {
                continue;
            }
            for s in &link.shared {
                let share = share_uid(*s, to);
                entities.push(Entity::new_no_attrs(
                    share.clone(),
                    HashSet::from([uid(&t.partner, world.sites[to as usize].id)]),
                ));
                scorecard_shares.entry(*s).or_default().push(share);
            }
        }
        // Relationships: the related object in a Rel per scorecard where the
        // relationship sits.
        let mut object_rels: FxHashMap<u32, Vec<EntityUid>> = FxHashMap::default();
        let mut rels: HashSet<EntityUid> = HashSet::new();
        for r in world.relationships.iter().filter(|r| r.live) {
            let sits_on = match r.target {
                RelTarget::Scorecard(s) => vec![s],
                RelTarget::Aggregation(o) => world.shows_on(o),
            };
            for s in sits_on {
                let rel = rel_uid(r.site, s);
                if rels.insert(rel.clone()) {
                    entities.push(Entity::new_no_attrs(
                        rel.clone(),
                        HashSet::from([uid(&t.rel_site, world.sites[r.site as usize].id)]),
                    ));
                }
                object_rels.entry(r.object).or_default().push(rel);
            }
        }
        for (i, scorecard) in world.scorecards.iter().enumerate() {
            let mut parents = HashSet::from([site_uid(scorecard.site)]);
            parents.extend(scorecard_shares.remove(&(i as u32)).unwrap_or_default());
            let attrs = HashMap::from([("site".to_owned(), entity_ref(&site_uid(scorecard.site)))]);
            entities.push(
                Entity::new(scorecard_uid(i as u32), attrs, parents)
                    .context("a Cedar scorecard")?,
            );
        }
        for (i, object) in world.objects.iter().enumerate() {
            let mut parents: HashSet<EntityUid> =
                object.placed.iter().map(|s| scorecard_uid(*s)).collect();
            parents.extend(object.container.map(object_uid));
            parents.extend(object_rels.remove(&(i as u32)).unwrap_or_default());
            let attrs = HashMap::from([("site".to_owned(), entity_ref(&site_uid(object.site)))]);
            entities
                .push(Entity::new(object_uid(i as u32), attrs, parents).context("a Cedar object")?);
        }
        for user in &world.users {
            let site = user.site;
            let site_id = world.sites[site as usize].id;
            let mut by_level: [Vec<EntityUid>; 4] = Default::default();
            let mut own = Vec::new();
            let mut shares = Vec::new();
            let mut rel_assigned = Vec::new();
            for (s, level) in &user.assigned {
                if world.scorecards[*s as usize].site == site {
                    let slot = match level {
                        AccessLevel::Browser => 0,
                        AccessLevel::Updater => 1,
                        AccessLevel::Editor => 2,
                        AccessLevel::ScorecardAdmin => 3,
                    };
                    by_level[slot].push(scorecard_uid(*s));
                    own.push(scorecard_uid(*s));
                    rel_assigned.push(rel_uid(site, *s));
                } else {
                    shares.push(share_uid(*s, site));
                }
            }
            let flag = |f: PermissionFlag| RestrictedExpression::new_bool(user.has(f));
            let attrs = HashMap::from([
                (
                    "active".to_owned(),
                    RestrictedExpression::new_bool(user.active),
                ),
                ("site".to_owned(), entity_ref(&uid(&t.site, site_id))),
                ("partner".to_owned(), entity_ref(&uid(&t.partner, site_id))),
                (
                    "rel_site".to_owned(),
                    entity_ref(&uid(&t.rel_site, site_id)),
                ),
                (
                    "instance_admin".to_owned(),
                    flag(PermissionFlag::InstanceAdmin),
                ),
                (
                    "all_scorecards".to_owned(),
                    flag(PermissionFlag::AllScorecards),
                ),
                (
                    "add_edit_objects".to_owned(),
                    flag(PermissionFlag::AddEditScorecardObjects),
                ),
                ("sc_browser".to_owned(), entity_set(&by_level[0])),
                ("sc_updater".to_owned(), entity_set(&by_level[1])),
                ("sc_editor".to_owned(), entity_set(&by_level[2])),
                ("sc_admin".to_owned(), entity_set(&by_level[3])),
                ("own_assigned".to_owned(), entity_set(&own)),
                ("assigned_shares".to_owned(), entity_set(&shares)),
                ("rel_assigned".to_owned(), entity_set(&rel_assigned)),
            ]);
            entities.push(
                Entity::new(uid(&t.user, user.id), attrs, HashSet::new())
                    .context("a Cedar user")?,
            );
        }
        let entity_count = entities.len();
        let entities = Entities::from_entities(entities, None).context("the Cedar entities")?;
        let action = |name: &str| {
            EntityUid::from_str(&format!("Action::\"{name}\"")).context("a Cedar action")
        };
        let actions = [
            action("view")?,
            action("update")?,
            action("edit")?,
            action("admin")?,
        ];
        Ok(Self {
            policies,
            entities,
            authorizer: Authorizer::new(),
            types,
            actions,
            entity_count,
        })
    }

    /// The request "may `user` do `action` on `thing`".
    pub fn request(
        &self,
        world: &World,
        user: u32,
        thing: Thing,
        action: Action,
    ) -> anyhow::Result<Request> {
        let principal = uid(&self.types.user, world.users[user as usize].id);
        let resource = match thing {
            Thing::Scorecard(s) => uid(&self.types.scorecard, world.scorecards[s as usize].id),
            Thing::Object(o) => uid(&self.types.object, world.objects[o as usize].id),
        };
        let action = self.actions[match action {
            Action::View => 0,
            Action::Update => 1,
            Action::Edit => 2,
            Action::Admin => 3,
        }]
        .clone();
        Request::new(principal, action, resource, Context::empty(), None).context("a Cedar request")
    }

    /// Cedar's decision, and whether any policy failed to evaluate (a bug
    /// of the encoding, reported by the caller).
    pub fn decide(&self, request: &Request) -> (bool, bool) {
        let response = self
            .authorizer
            .is_authorized(request, &self.policies, &self.entities);
        let failed = response.diagnostics().errors().next().is_some();
        (response.decision() == Decision::Allow, failed)
    }
}
