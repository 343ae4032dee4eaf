//! everything a user can see, filtered, one page at a time, in
//! (owner site, target id) order.

use std::ops::Bound;

use shareledger_core::access_rule::{self as rule, TargetFacts};
use shareledger_core::catalog::{AccessLevel, PermissionFlag, SiteId, UserId};

use super::cursor::{format_cursor, parse_cursor};
use super::merge::{Item, Merge, Source};

use super::{key_target, target_key, AccessIndex, ScorecardInfo, TargetKey, UserInfo};
use crate::access::{AccessError, LookupPage, LookupQuery, Target, TargetKind, Visible};
use crate::access::{DEFAULT_PAGE, MAX_PAGE};

impl AccessIndex {
    /// everything the user can see, filtered, one page at a time,
    /// ordered by (owner site, target id).
    ///
    /// A page walks the candidate owner sites (the user's own and those
    /// sharing with it) in order from the cursor's site, takes from each
    /// what the user sees after the cursor, in order, and stops as soon as
    /// the page is full (one item more tells whether more follow). For the
    /// user's own site, when the user sees all of it (Instance Admin, browse
    /// all), that is a walk of the site's ordered targets from the cursor;
    /// otherwise, and for partners' sites, a k-way merge of the ordered
    /// shows sets the user sees through, each sought to the cursor (plus,
    /// on a partner's site, the objects under the site's visible
    /// relationships, gathered and sorted). A page costs about what it
    /// reads, not the site's whole visible set.
    pub fn lookup(&self, user_id: UserId, query: &LookupQuery) -> Result<LookupPage, AccessError> {
        let user = self.user(user_id)?;
        let after = query.after.as_deref().map(parse_cursor).transpose()?;
        let limit = match query.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let mut items: Vec<Visible> = Vec::new();
        if user.active {
            items.reserve(limit + 1);
            let mut owners: Vec<SiteId> = vec![user.site];
            if let Some(site) = self.sites.get(&user.site) {
                owners.extend(site.sharing_with_me.iter().copied());
            }
            owners.retain(|owner| {
                query.site.is_none_or(|s| s == *owner)
                    && after.is_none_or(|(site, _)| *owner >= site)
            });
            owners.sort_unstable();
            owners.dedup();
            let mut found: Vec<Item> = Vec::new();
            for owner in owners {
                let from = after.filter(|(site, _)| *site == owner).map(|(_, key)| key);
                let need = limit + 1 - items.len();
                found.clear();
                if owner == user.site {
                    self.own_page(user, query.kind, from, need, &mut found);
                } else {
                    self.foreign_page(user, owner, query.kind, from, need, &mut found);
                }
                if found.is_empty() {
                    continue;
                }
                let (code, origin_name) = self.site_code_and_name(owner);
                items.extend(found.drain(..).map(|(key, kind, level)| {
                    let target = key_target(key);
                    Visible {
                        name: self.target_name(target),
                        target,
                        kind,
                        site: owner,
                        origin_code: code.clone(),
                        origin_name: origin_name.clone(),
                        level,
                    }
                }));
                if items.len() > limit {
                    break;
                }
            }
        }
        let more = items.len() > limit;
        items.truncate(limit);
        let next = if more {
            items
                .last()
                .map(|v| format_cursor((v.site, target_key(v.target))))
        } else {
            None
        };
        Ok(LookupPage { items, next })
    }

    /// The user's own site: up to `need` targets after `from`, in order.
    fn own_page(
        &self,
        user: &UserInfo,
        kind: Option<TargetKind>,
        from: Option<TargetKey>,
        need: usize,
        out: &mut Vec<Item>,
    ) {
        let Some(site) = self.sites.get(&user.site) else {
            return;
        };
        let wants = |k: TargetKind| kind.is_none_or(|w| w == k);
        let after = |key: &TargetKey| from.is_none_or(|f| *key > f);
        let facts = user.facts();
        let admin = facts.instance_admin;
        if admin || facts.browses_all() {
            // Every scorecard has a level, and every object that shows on a
            // scorecard (every object for All Scorecards): walk the site in
            // order from the cursor. Instance Admin: Scorecard Admin.
            // Otherwise an object's level is the highest assigned on a
            // scorecard it shows on, else Browser: the assigned scorecards'
            // shows, merged from the cursor, are read along with the walk.
            let mut assigned = (!admin && !user.assigned.is_empty()).then(|| {
                Merge::new(user.assigned.iter().filter_map(|(s, (level, _))| {
                    let shows = &self.scorecards.get(s)?.shows;
                    Some(Source::shows(shows, from, *level))
                }))
            });
            let range = match from {
                Some(key) => (Bound::Excluded(key), Bound::Unbounded),
                None => (Bound::Unbounded, Bound::Unbounded),
            };
            for (key, target) in site.targets.range(range) {
                if out.len() >= need {
                    break;
                }
                if !wants(target.kind) {
                    continue;
                }
                let level = match key_target(*key) {
                    Target::Scorecard(s) => self.own_scorecard_level(user, s),
                    Target::Object(_) => {
                        let assigned = assigned
                            .as_mut()
                            .and_then(|assigned| assigned.level_at(*key));
                        let shown = target.shown;
                        rule::level(&facts, TargetFacts::OwnObject { shown, assigned })
                    }
                };
                if let Some(level) = level {
                    out.push((*key, target.kind, level));
                }
            }
            return;
        }
        // Otherwise only the assigned scorecards of the site and what they
        // show, at the highest level assigned on a scorecard it shows on
        // (what the rule gives a user who neither is Instance Admin nor
        // browses all): their shows sets merged from the cursor, as far as
        // the page needs.
        let objects = kind != Some(TargetKind::Scorecard);
        let mut scorecards: Vec<Item> = Vec::new();
        let mut others: Vec<(&ScorecardInfo, AccessLevel)> = Vec::new();
        let mut sources: Vec<Source<'_>> = Vec::new();
        for (s, (level, _)) in &user.assigned {
            let Some(scorecard) = self.scorecards.get(s) else {
                continue;
            };
            if scorecard.site != user.site {
                others.push((scorecard, *level));
                continue;
            }
            let key = target_key(Target::Scorecard(*s));
            if wants(TargetKind::Scorecard) && after(&key) {
                scorecards.push((key, TargetKind::Scorecard, *level));
            }
            if objects {
                sources.push(Source::shows(&scorecard.shows, from, *level));
            }
        }
        scorecards.sort_unstable_by_key(|item| item.0);
        sources.push(Source::List(scorecards.iter()));
        let start = out.len();
        out.extend(
            Merge::new(sources)
                .filter(|(key, k, _)| wants(*k) && after(key))
                .take(need),
        );
        // Another site's scorecard assigned to the user counts too if one
        // of these objects shows on it.
        for (scorecard, level) in &others {
            for item in &mut out[start..] {
                if let (Target::Object(o), true) = (key_target(item.0), item.2 < *level) {
                    if scorecard.shows.contains_key(&o) {
                        item.2 = *level;
                    }
                }
            }
        }
    }

    /// A partner's site: up to `need` targets after `from`, in order: the
    /// shared scorecards' shows sets merged from the cursor (All Scorecards,
    /// assignments) and the objects under the site's visible relationships,
    /// as far as the page needs.
    fn foreign_page(
        &self,
        user: &UserInfo,
        owner: SiteId,
        kind: Option<TargetKind>,
        from: Option<TargetKey>,
        need: usize,
        out: &mut Vec<Item>,
    ) {
        let Some(shared) = self.shared(owner, user.site) else {
            return;
        };
        let wants = |k: TargetKind| kind.is_none_or(|w| w == k);
        let after = |key: &TargetKey| from.is_none_or(|f| *key > f);
        let all = user.has(PermissionFlag::AllScorecards);
        let objects = kind != Some(TargetKind::Scorecard);
        let mut scorecards: Vec<Item> = Vec::new();
        let mut related: Vec<Item> = Vec::new();
        let mut sources: Vec<Source<'_>> = Vec::new();
        for s in shared.keys() {
            if !(all || user.assigned.contains_key(s)) {
                continue;
            }
            let key = target_key(Target::Scorecard(*s));
            if wants(TargetKind::Scorecard) && after(&key) {
                scorecards.push((key, TargetKind::Scorecard, AccessLevel::Browser));
            }
            if !objects {
                continue;
            }
            if let Some(scorecard) = self.scorecards.get(s) {
                sources.push(Source::shows(&scorecard.shows, from, AccessLevel::Browser));
            }
        }
        if !all && objects {
            // Through relationships: the related object and what it contains,
            // as far as the site sees it. Gathered whole (it is not ordered)
            // and sorted.
            if let Some(site) = self.sites.get(&user.site) {
                for (object, rels) in &site.relationships_by_object {
                    if self.objects.get(object).is_none_or(|o| o.site != owner) {
                        continue;
                    }
                    if !rels.iter().any(|r| self.relationship_visible_to(user, *r)) {
                        continue;
                    }
                    let mut stack = vec![*object];
                    while let Some(id) = stack.pop() {
                        let Some(info) = self.objects.get(&id) else {
                            continue;
                        };
                        let key = target_key(Target::Object(id));
                        let k = TargetKind::Object(info.kind);
                        if wants(k)
                            && after(&key)
                            && info.shows_on.iter().any(|s| shared.contains_key(s))
                        {
                            related.push((key, k, AccessLevel::Browser));
                        }
                        stack.extend(info.children.iter().copied());
                    }
                }
            }
            related.sort_unstable_by_key(|item| item.0);
            related.dedup_by_key(|item| item.0);
        }
        scorecards.sort_unstable_by_key(|item| item.0);
        sources.push(Source::List(scorecards.iter()));
        sources.push(Source::List(related.iter()));
        out.extend(
            Merge::new(sources)
                .filter(|(key, k, _)| wants(*k) && after(key))
                .take(need),
        );
    }
}
