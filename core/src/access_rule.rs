//! The access rule: a user's level on a scorecard or an object, from the
//! facts the rule reads (R-USER-3, R-USER-4, R-USER-6, R-SHARE-2,
//! R-SHARE-3, R-SHARE-5; `docs/access-model.md`, "Targets and levels").
//!
//! This is the one definition of the level. Each caller gathers the facts
//! from its own state and asks [`level`]: the command side
//! ([`level_on_object`](crate::content::level_on_object), which authorizes
//! field changes), the access index of the read side (Q-1, and the levels
//! of) and its explanations (Q-4: each path's level is this
//! rule applied to that path's facts alone). The SQL query of the
//! persisted access tables (`level_sql`) cannot call Rust: one table of
//! cases (`core/tests/access_cases/`) holds it, and each of the others, to
//! the same answers.
//!
//! Gathering the facts is the caller's part: which scorecards an object
//! shows on (placed on them, or inside a container that shows on them,
//! R-SHARE-2), which are shared with the user's site over an active link,
//! which are assigned to the user, and whether a relationship of the user's
//! site gives access. The rule is what those facts give.

use shareledger_events::catalog::{AccessLevel, PermissionFlag};

use crate::site::UserState;

/// What the rule reads of the user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserFacts {
    /// Deactivated users have no access at all (R-USER-6).
    pub active: bool,
    /// Instance Admin: Scorecard Admin on everything of its own site it sees.
    pub instance_admin: bool,
    /// All Scorecards: every scorecard and object of its own site, objects
    /// on no scorecard included, and all that its site sees of partners'.
    pub all_scorecards: bool,
    /// Add/Edit Scorecard Objects: every scorecard of its own site when
    /// none of them is assigned to the user (seed 001's note).
    pub add_edit_scorecard_objects: bool,
    /// Whether any scorecard of the user's own site is assigned to the user
    /// (a partner's shared scorecard assigned to them does not count).
    pub own_assigned: bool,
}

impl UserFacts {
    /// The facts of a user of the command side; `own_assigned` is whether
    /// one of the scorecards assigned to the user is of its own site.
    pub fn of(user: &UserState, own_assigned: bool) -> Self {
        Self {
            active: user.active,
            instance_admin: user.has(PermissionFlag::InstanceAdmin),
            all_scorecards: user.has(PermissionFlag::AllScorecards),
            add_edit_scorecard_objects: user.has(PermissionFlag::AddEditScorecardObjects),
            own_assigned,
        }
    }

    /// `browse_all`: Browser on every scorecard of the user's own site (All
    /// Scorecards, or Add/Edit Scorecard Objects with none of them assigned).
    pub fn browses_all(&self) -> bool {
        self.all_scorecards || (self.add_edit_scorecard_objects && !self.own_assigned)
    }
}

/// What the rule reads of the target, as seen from the user's site.
#[derive(Clone, Copy)]
pub enum TargetFacts<'a> {
    /// A scorecard of the user's own site.
    OwnScorecard {
        /// The level assigned to the user on it, if any.
        assigned: Option<AccessLevel>,
    },
    /// An object of the user's own site.
    OwnObject {
        /// Whether it shows on a scorecard (placed on one, or inside a
        /// container that shows on one).
        shown: bool,
        /// The highest level assigned to the user on a scorecard it shows on.
        assigned: Option<AccessLevel>,
    },
    /// A scorecard of another site (a partner).
    PartnerScorecard {
        /// Whether its owner shares it with the user's site over an active link.
        shared: bool,
        /// Whether it is assigned to the user (at any level).
        assigned: bool,
    },
    /// An object of another site (a partner).
    PartnerObject {
        /// Whether the user's site sees it: it shows on a scorecard its
        /// owner shares with the site over an active link.
        seen: bool,
        /// Whether one of those shared scorecards it shows on is assigned
        /// to the user.
        assigned: bool,
        /// Whether a relationship of the user's site gives it: one whose
        /// object is this object or a container of it (transitively), whose
        /// object the site still sees, and whose target (a scorecard or an
        /// object of the user's site) the user has a level on, by this rule.
        /// Asked only when nothing else decides.
        related: &'a dyn Fn() -> bool,
    },
}

impl std::fmt::Debug for TargetFacts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OwnScorecard { assigned } => f
                .debug_struct("OwnScorecard")
                .field("assigned", assigned)
                .finish(),
            Self::OwnObject { shown, assigned } => f
                .debug_struct("OwnObject")
                .field("shown", shown)
                .field("assigned", assigned)
                .finish(),
            Self::PartnerScorecard { shared, assigned } => f
                .debug_struct("PartnerScorecard")
                .field("shared", shared)
                .field("assigned", assigned)
                .finish(),
            Self::PartnerObject { seen, assigned, .. } => f
                .debug_struct("PartnerObject")
                .field("seen", seen)
                .field("assigned", assigned)
                .finish_non_exhaustive(),
        }
    }
}

/// The user's level on the target, `None` for no access.
///
/// * Only active users have access (R-USER-6).
/// * An own scorecard: Scorecard Admin for an Instance Admin; otherwise
///   the level assigned on it; otherwise Browser if the user browses all.
/// * An own object: Scorecard Admin for an Instance Admin if it shows on a
///   scorecard or the user has All Scorecards; otherwise the highest level
///   assigned on a scorecard it shows on; otherwise Browser with All
///   Scorecards (objects on no scorecard included, R-USER-4), or if it
///   shows on a scorecard and the user browses all.
/// * A partner's scorecard: Browser when it is shared with the user's site
///   and the user has All Scorecards or it is assigned to them.
/// * A partner's object: Browser when the user's site sees it and the user
///   has All Scorecards, or a shared scorecard it shows on is assigned to
///   them, or a relationship gives it (R-SHARE-5).
///
/// Partners' content is never more than Browser (R-SHARE-3, R-SHARE-5).
pub fn level(user: &UserFacts, target: TargetFacts<'_>) -> Option<AccessLevel> {
    if !user.active {
        return None;
    }
    let browser = |given: bool| given.then_some(AccessLevel::Browser);
    match target {
        TargetFacts::OwnScorecard { assigned } => {
            if user.instance_admin {
                Some(AccessLevel::ScorecardAdmin)
            } else {
                assigned.or(browser(user.browses_all()))
            }
        }
        TargetFacts::OwnObject { shown, assigned } => {
            if user.instance_admin && (shown || user.all_scorecards) {
                Some(AccessLevel::ScorecardAdmin)
            } else {
                assigned.or(browser(
                    user.all_scorecards || (shown && user.browses_all()),
                ))
            }
        }
        TargetFacts::PartnerScorecard { shared, assigned } => {
            browser(shared && (user.all_scorecards || assigned))
        }
        TargetFacts::PartnerObject {
            seen,
            assigned,
            related,
        } => browser(seen && (user.all_scorecards || assigned || related())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AccessLevel::{Browser, Editor, ScorecardAdmin, Updater};

    fn active() -> UserFacts {
        UserFacts {
            active: true,
            ..UserFacts::default()
        }
    }

    #[test]
    fn a_deactivated_user_has_nothing_whatever_else_holds() {
        let user = UserFacts {
            active: false,
            instance_admin: true,
            all_scorecards: true,
            add_edit_scorecard_objects: true,
            own_assigned: false,
        };
        let yes = || true;
        for target in [
            TargetFacts::OwnScorecard {
                assigned: Some(Editor),
            },
            TargetFacts::OwnObject {
                shown: true,
                assigned: Some(Editor),
            },
            TargetFacts::PartnerScorecard {
                shared: true,
                assigned: true,
            },
            TargetFacts::PartnerObject {
                seen: true,
                assigned: true,
                related: &yes,
            },
        ] {
            assert_eq!(level(&user, target), None, "{target:?}");
        }
    }

    #[test]
    fn partners_content_is_browser_at_most_and_relationships_are_asked_last() {
        let admin = UserFacts {
            instance_admin: true,
            all_scorecards: true,
            ..active()
        };
        let never = || panic!("not asked when All Scorecards decides");
        assert_eq!(
            level(
                &admin,
                TargetFacts::PartnerObject {
                    seen: true,
                    assigned: true,
                    related: &never,
                }
            ),
            Some(Browser)
        );
        let unseen = || panic!("not asked when the site does not see the object");
        assert_eq!(
            level(
                &active(),
                TargetFacts::PartnerObject {
                    seen: false,
                    assigned: false,
                    related: &unseen,
                }
            ),
            None
        );
        assert_eq!(
            level(
                &active(),
                TargetFacts::PartnerScorecard {
                    shared: true,
                    assigned: true,
                }
            ),
            Some(Browser)
        );
    }

    #[test]
    fn an_assigned_level_is_kept_below_instance_admin() {
        let user = active();
        for assigned in [Browser, Updater, Editor, ScorecardAdmin] {
            assert_eq!(
                level(
                    &user,
                    TargetFacts::OwnObject {
                        shown: true,
                        assigned: Some(assigned),
                    }
                ),
                Some(assigned)
            );
        }
    }
}
