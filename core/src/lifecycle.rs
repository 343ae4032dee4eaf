//! Renaming and archiving a site's scorecards and objects.
//!
//! A rename changes the name every answer carries from then on; answers as
//! of before keep the old one. An archive takes the thing out of every
//! answer from then on (answers as of before still hold it), and its id is
//! never used again. Archiving records its consequences in the same append,
//! each attributed to the system and caused by the archive: the thing's
//! placements (`ObjectRemovedFromScorecard`) and the site's own
//! relationships onto it (`RelationshipRemoved`, reason `target_archived`).
//! Partners' relationships to an archived object, or to objects that showed
//! only on an archived scorecard, are removed by the consequence worker, as
//! for any object that leaves what a partner sees (R-SHARE-4).
//!
//! Who may (R-USER-2, R-USER-3): renaming a scorecard configures it
//! (Add/Edit Scorecard Objects, or Scorecard Admin on that scorecard);
//! renaming an object edits it (Editor on it, as an edit-field); archiving
//! needs Delete Scorecard Objects. A partner's user gets
//! `shared_content_read_only` (R-SHARE-3). An object that still contains
//! objects is not archived: its objects are archived first
//! (`container_not_empty`), so nothing is left inside a thing that is gone.

use shareledger_events::catalog::{
    AccessLevel, ContentEvent, Name, ObjectId, PermissionFlag, RemovalReason, ScorecardId, SiteId,
};
use shareledger_events::Actor;

use crate::content::{
    acting_site, authorize_author, level_on_object, level_on_scorecard, object_command_reads,
    shared_elsewhere, ContentState, RelationshipTarget,
};
use crate::decision::{Context, Decided, Decision, Facts, Read, Write};
use crate::error::DomainError;
use crate::site::{authorize, SiteState};

/// Archiving needs Delete Scorecard Objects (seed 001).
const DELETER: [PermissionFlag; 1] = [PermissionFlag::DeleteScorecardObjects];

/// RenameScorecard: gives one of the site's scorecards a new name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RenameScorecard {
    pub site_id: SiteId,
    pub scorecard_id: ScorecardId,
    pub name: Name,
}

impl RenameScorecard {
    /// `site` is the acting site; `shared_with_actor` whether the scorecard
    /// is shared with it by `content`'s site.
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        content: &ContentState,
        shared_with_actor: bool,
    ) -> Result<Vec<ContentEvent>, DomainError> {
        refuse_partner(actor, site, shared_with_actor)?;
        authorize_configurer(actor, site, content, self.scorecard_id)?;
        if !content.scorecards.contains_key(&self.scorecard_id) {
            return Err(DomainError::ScorecardNotFound(self.scorecard_id));
        }
        Ok(vec![ContentEvent::ScorecardRenamed {
            scorecard_id: self.scorecard_id,
            name: self.name.clone(),
        }])
    }
}

/// ArchiveScorecard: takes one of the site's scorecards out of every answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArchiveScorecard {
    pub site_id: SiteId,
    pub scorecard_id: ScorecardId,
}

impl ArchiveScorecard {
    /// The archive, then its consequences: the placements on the scorecard
    /// and the site's links of partners' objects onto it.
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        content: &ContentState,
        shared_with_actor: bool,
    ) -> Result<Archived, DomainError> {
        refuse_partner(actor, site, shared_with_actor)?;
        authorize(actor, site, &DELETER)?;
        authorize_author_site(site, content)?;
        if !content.scorecards.contains_key(&self.scorecard_id) {
            return Err(DomainError::ScorecardNotFound(self.scorecard_id));
        }
        let mut consequences: Vec<ContentEvent> = content
            .placements
            .get(&self.scorecard_id)
            .into_iter()
            .flatten()
            .map(|object_id| ContentEvent::ObjectRemovedFromScorecard {
                object_id: *object_id,
                scorecard_id: self.scorecard_id,
            })
            .collect();
        consequences.extend(relationships_onto(
            content,
            RelationshipTarget::Scorecard(self.scorecard_id),
        ));
        Ok(Archived {
            archive: ContentEvent::ScorecardArchived {
                scorecard_id: self.scorecard_id,
            },
            consequences,
        })
    }
}

/// RenameObject: gives one of the site's objects a new name (an edit, so
/// Editor on it, R-USER-3).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RenameObject {
    pub site_id: SiteId,
    pub object_id: ObjectId,
    pub name: Name,
}

impl RenameObject {
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        content: &ContentState,
        shared_with_actor: bool,
    ) -> Result<Vec<ContentEvent>, DomainError> {
        refuse_partner(actor, site, shared_with_actor)?;
        let user = authorize(actor, site, &[])?;
        authorize_author_site(site, content)?;
        if !content.objects.contains_key(&self.object_id) {
            return Err(DomainError::ObjectNotFound(self.object_id));
        }
        if let Some(user) = user {
            let needed = AccessLevel::Editor;
            if level_on_object(user, content, self.object_id).is_none_or(|l| l < needed) {
                return Err(DomainError::AccessLevelTooLow { needed });
            }
        }
        Ok(vec![ContentEvent::ObjectRenamed {
            object_id: self.object_id,
            name: self.name.clone(),
        }])
    }
}

/// ArchiveObject: takes one of the site's objects out of every answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArchiveObject {
    pub site_id: SiteId,
    pub object_id: ObjectId,
}

impl ArchiveObject {
    /// The archive, then its consequences: the object's placements and the
    /// site's aggregations of partners' measures into it.
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        content: &ContentState,
        shared_with_actor: bool,
    ) -> Result<Archived, DomainError> {
        refuse_partner(actor, site, shared_with_actor)?;
        authorize(actor, site, &DELETER)?;
        authorize_author_site(site, content)?;
        if !content.objects.contains_key(&self.object_id) {
            return Err(DomainError::ObjectNotFound(self.object_id));
        }
        if content
            .objects
            .values()
            .any(|o| o.container == Some(self.object_id))
        {
            return Err(DomainError::ContainerNotEmpty(self.object_id));
        }
        let mut consequences: Vec<ContentEvent> = content
            .placements
            .iter()
            .filter(|(_, placed)| placed.contains(&self.object_id))
            .map(
                |(scorecard_id, _)| ContentEvent::ObjectRemovedFromScorecard {
                    object_id: self.object_id,
                    scorecard_id: *scorecard_id,
                },
            )
            .collect();
        consequences.extend(relationships_onto(
            content,
            RelationshipTarget::Aggregation(self.object_id),
        ));
        Ok(Archived {
            archive: ContentEvent::ObjectArchived {
                object_id: self.object_id,
            },
            consequences,
        })
    }
}

/// An archive and what it removes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub archive: ContentEvent,
    pub consequences: Vec<ContentEvent>,
}

impl Archived {
    /// The archive as the command's own event, its consequences as the
    /// system's, on the site's content stream.
    fn into_decided(self, site: SiteId) -> Decided {
        Decided::content(site, vec![self.archive])
            .and(Write::ContentConsequences(site, self.consequences))
    }
}

/// The site's relationships whose target is `target`, removed.
fn relationships_onto(content: &ContentState, target: RelationshipTarget) -> Vec<ContentEvent> {
    content
        .relationships
        .iter()
        .filter(|(_, r)| r.target == target)
        .map(|(id, _)| ContentEvent::RelationshipRemoved {
            relationship_id: *id,
            reason: RemovalReason::TargetArchived,
        })
        .collect()
}

/// A partner's user changing what another site shares with its site
/// (`shared_with_actor`, never true of the site's own things): read-only
/// (R-SHARE-3), once the user's own standing is checked.
fn refuse_partner(
    actor: &Actor,
    site: &SiteState,
    shared_with_actor: bool,
) -> Result<(), DomainError> {
    if shared_with_actor {
        authorize(actor, site, &[])?;
        return Err(DomainError::SharedContentReadOnly);
    }
    Ok(())
}

/// The acting site must own the content (R-USER-9).
fn authorize_author_site(site: &SiteState, content: &ContentState) -> Result<(), DomainError> {
    if site.id != content.site {
        return Err(DomainError::CrossSite {
            actor_site: site.id,
            target_site: content.site,
        });
    }
    Ok(())
}

/// Configuring a scorecard (R-USER-3): Add/Edit Scorecard Objects, or
/// Scorecard Admin on that scorecard.
fn authorize_configurer(
    actor: &Actor,
    site: &SiteState,
    content: &ContentState,
    scorecard: ScorecardId,
) -> Result<(), DomainError> {
    match authorize_author(actor, site, content) {
        Err(refused @ DomainError::NotPermitted { .. }) => {
            authorize_author_site(site, content)?;
            let level = authorize(actor, site, &[])?
                .and_then(|user| level_on_scorecard(user, content, scorecard));
            if level == Some(AccessLevel::ScorecardAdmin) {
                Ok(())
            } else {
                Err(refused)
            }
        }
        other => other,
    }
}

/// What a command on a scorecard of `site_id` reads: the acting site, the
/// content, and for another site's user their connection (is it shared
/// with them?); for a user naming a site that does not hold the scorecard,
/// whose it is and whether its owner shares it with them (R-SHARE-3,
/// whatever site is named).
fn scorecard_command_reads(
    ctx: &Context,
    facts: &Facts,
    site_id: SiteId,
    scorecard: ScorecardId,
) -> Vec<Read> {
    let acting = acting_site(ctx, site_id);
    let mut reads = vec![Read::Site(acting), Read::Content(site_id)];
    if acting != site_id {
        reads.push(Read::Connection(site_id, acting));
    }
    let named = Read::Content(site_id);
    if ctx.actor_site().is_some()
        && facts.has(&named)
        && !facts.content(site_id).scorecards.contains_key(&scorecard)
    {
        let owner = Read::ScorecardOwner(scorecard);
        if facts.has(&owner) {
            if let Some(owner) = facts.scorecard_owner(scorecard).filter(|o| *o != acting) {
                reads.push(Read::Connection(owner, acting));
            }
        }
        reads.push(owner);
    }
    reads
}

/// Whether the scorecard is shared with the acting site, by the site named
/// or (R-SHARE-3, whatever site is named) by its owner.
fn scorecard_shared_with_actor(
    facts: &Facts,
    acting: SiteId,
    site_id: SiteId,
    scorecard: ScorecardId,
) -> bool {
    let by_named = acting != site_id && facts.shared_with(site_id, acting).contains(&scorecard);
    let owner = Read::ScorecardOwner(scorecard);
    let by_owner = facts.has(&owner)
        && facts
            .scorecard_owner(scorecard)
            .filter(|o| *o != acting && *o != site_id)
            .is_some_and(|o| facts.shared_with(o, acting).contains(&scorecard));
    by_named || by_owner
}

/// Whether the object is shared with the acting site, by the site named or
/// (R-SHARE-3, whatever site is named) by its owner.
fn object_shared_with_actor(
    ctx: &Context,
    facts: &Facts,
    acting: SiteId,
    site_id: SiteId,
    object: ObjectId,
) -> bool {
    shared_elsewhere(ctx, facts, acting, site_id, object)
        || (acting != site_id && facts.visible_to(site_id, acting).contains(&object))
}

impl Decision for RenameScorecard {
    const NAME: &'static str = "RenameScorecard";
    const SUMMARY: &'static str =
        "Renames one of the site's scorecards (Add/Edit Scorecard Objects, or Scorecard Admin on it; R-USER-3).";

    fn reads(&self, ctx: &Context, facts: &Facts) -> Vec<Read> {
        scorecard_command_reads(ctx, facts, self.site_id, self.scorecard_id)
    }

    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        let acting = acting_site(ctx, self.site_id);
        let site = facts.existing_site(acting)?;
        let shared = scorecard_shared_with_actor(facts, acting, self.site_id, self.scorecard_id);
        let events = self.decide(&ctx.actor, site, facts.content(self.site_id), shared)?;
        Ok(Decided::content(self.site_id, events))
    }
}

impl Decision for ArchiveScorecard {
    const NAME: &'static str = "ArchiveScorecard";
    const SUMMARY: &'static str = "Archives one of the site's scorecards: gone from every answer from now on; its placements and the site's links onto it are removed with it (Delete Scorecard Objects).";

    fn reads(&self, ctx: &Context, facts: &Facts) -> Vec<Read> {
        scorecard_command_reads(ctx, facts, self.site_id, self.scorecard_id)
    }

    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        let acting = acting_site(ctx, self.site_id);
        let site = facts.existing_site(acting)?;
        let shared = scorecard_shared_with_actor(facts, acting, self.site_id, self.scorecard_id);
        let archived = self.decide(&ctx.actor, site, facts.content(self.site_id), shared)?;
        Ok(archived.into_decided(self.site_id))
    }
}

impl Decision for RenameObject {
    const NAME: &'static str = "RenameObject";
    const SUMMARY: &'static str =
        "Renames one of the site's objects (Editor on it, R-USER-3; read-only to partners, R-SHARE-3).";

    fn reads(&self, ctx: &Context, facts: &Facts) -> Vec<Read> {
        object_command_reads(ctx, facts, self.site_id, self.object_id)
    }

    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        let acting = acting_site(ctx, self.site_id);
        let site = facts.existing_site(acting)?;
        let shared = object_shared_with_actor(ctx, facts, acting, self.site_id, self.object_id);
        let events = self.decide(&ctx.actor, site, facts.content(self.site_id), shared)?;
        Ok(Decided::content(self.site_id, events))
    }
}

impl Decision for ArchiveObject {
    const NAME: &'static str = "ArchiveObject";
    const SUMMARY: &'static str = "Archives one of the site's objects (none may be inside it): gone from every answer from now on; its placements and the site's aggregations into it are removed with it, partners' relationships to it by the consequence worker (Delete Scorecard Objects).";

    fn reads(&self, ctx: &Context, facts: &Facts) -> Vec<Read> {
        object_command_reads(ctx, facts, self.site_id, self.object_id)
    }

    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        let acting = acting_site(ctx, self.site_id);
        let site = facts.existing_site(acting)?;
        let shared = object_shared_with_actor(ctx, facts, acting, self.site_id, self.object_id);
        let archived = self.decide(&ctx.actor, site, facts.content(self.site_id), shared)?;
        Ok(archived.into_decided(self.site_id))
    }
}
