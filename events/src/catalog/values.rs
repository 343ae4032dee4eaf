//! The domain's values, as events carry them: ids, site codes, usernames,
//! access levels, permission flags and role presets. Each parses: an invalid
//! one cannot be built, and deserializing one checks it again.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::identifiers::{self, shown, NameHazard};

/// Why a rejected site code is rejected, when it has a character that
/// looks like a valid one (an invisible one, a fullwidth letter, …).
fn site_code_hint(raw: &str) -> String {
    identifiers::hazard(raw.trim())
        .map(|hazard| format!("; it {hazard}"))
        .unwrap_or_default()
}

/// Why a domain value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("site code {} must be 2 to 16 ASCII letters, digits, '-' or '_', starting with a letter or digit{}", shown(.0), site_code_hint(.0))]
    SiteCode(String),
    #[error("username {} must be 1 to 254 visible characters without spaces", shown(.0))]
    Username(String),
    /// A name that parses but is not given to a new account: it could pass
    /// for another ([`identifiers::hazard`]).
    #[error("{field} {} {hazard}", shown(value))]
    LookAlike {
        field: &'static str,
        value: String,
        hazard: NameHazard,
    },
    #[error("{field} must be 1 to {max} characters and not blank")]
    Text { field: &'static str, max: usize },
    #[error("{0:?} is not an access level (browser, updater, editor, scorecard_admin)")]
    AccessLevel(String),
    #[error("{0:?} is not a permission flag")]
    PermissionFlag(String),
    #[error("{0:?} is not a role (administration, scorecard_builder, data_entry, presenter)")]
    Role(String),
    #[error("{0:?} is not an object kind (result, indicator, program, performance_measure)")]
    ObjectKind(String),
    #[error("seat limit must be at least 1")]
    SeatLimit,
    #[error("email {} must be local@domain: a local part of 1 to 64 visible characters, and 2 to 4 dot-separated labels of 1 to 63 visible characters, without spaces or a second @", shown(.0))]
    Email(String),
}

/// The characters `str::trim` removes (Unicode `White_Space`), as a regular
/// expression class body: every text value is trimmed before it is checked.
const WHITE_SPACE: &str =
    r"\t\n\x0b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// The control characters (`char::is_control`), as a class body.
const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";

/// Exactly the strings [`SiteCode::parse`] accepts, as an ECMA-262 (and
/// Python, and `regex` crate) pattern, for the API document.
pub fn site_code_pattern() -> String {
    format!("^[{WHITE_SPACE}]*[A-Za-z0-9][A-Za-z0-9_-]{{1,15}}[{WHITE_SPACE}]*$")
}

/// The strings [`Username::parse`] accepts, as a pattern. One difference a
/// pattern cannot state: the 254 characters are counted once lower-cased,
/// and `İ` (U+0130) lower-cases to two.
pub fn username_pattern() -> String {
    format!("^[{WHITE_SPACE}]*[^{WHITE_SPACE}{CONTROL}]{{1,254}}[{WHITE_SPACE}]*$")
}

/// Exactly the strings [`Name::parse`] accepts, as a pattern.
pub fn name_pattern() -> String {
    let max_inner = Name::MAX - 2;
    format!(
        "^[{WHITE_SPACE}]*[^{WHITE_SPACE}{CONTROL}](?:[^{CONTROL}]{{0,{max_inner}}}[^{WHITE_SPACE}{CONTROL}])?[{WHITE_SPACE}]*$"
    )
}

/// Exactly the strings [`Email::parse`] accepts, as a pattern.
pub fn email_pattern() -> String {
    let part = format!("[^@.{WHITE_SPACE}{CONTROL}]{{1,63}}");
    format!(
        "^[{WHITE_SPACE}]*[^@{WHITE_SPACE}{CONTROL}]{{1,64}}@{part}(?:\\.{part}){{1,3}}[{WHITE_SPACE}]*$"
    )
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
            /// The stream-name form of this id: `<prefix>-<uuid>`.
            pub fn stream_suffix(&self) -> String {
                self.0.simple().to_string()
            }
            /// The stream category of this kind of id.
            pub const CATEGORY: &'static str = $prefix;
            /// The tag of the events about this id: `<prefix>:<uuid>`.
            pub fn tag(&self) -> crate::dcb::Tag {
                crate::dcb::Tag::of($prefix, self.0)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A site (tenant, instance, organisation profile).
    SiteId,
    "site"
);
id_type!(
    /// A user account on one site.
    UserId,
    "user"
);
id_type!(
    /// A scorecard, owned by one site.
    ScorecardId,
    "scorecard"
);
id_type!(
    /// A Result, Indicator, Program or Performance Measure, owned by one site.
    ObjectId,
    "object"
);
id_type!(
    /// A relationship: a partner's shared object placed on, or aggregated
    /// into, one of our own objects or scorecards.
    RelationshipId,
    "relationship"
);

/// For a text newtype with a `parse` constructor: `as_str`, `Display`, and a
/// `Deserialize` that parses (so a stored value is checked again on read).
macro_rules! parsed_text {
    ($name:ident) => {
        impl $name {
            /// The value as stored.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $name::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// A site's short, unique, case-insensitive code such as `ACME`. Stored in
/// upper case: `acme` and `ACME` are the same code.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SiteCode(InlineCode);

/// A site code's at most [`SiteCode::MAX_LEN`] ASCII bytes, held inline
/// (then zeros): a copy allocates nothing, and every item of a lookup
/// carries its site's code.
#[derive(Clone, PartialEq, Eq, Hash)]
struct InlineCode {
    bytes: [u8; SiteCode::MAX_LEN],
    len: u8,
}

impl SiteCode {
    /// The longest code, in bytes (ASCII).
    const MAX_LEN: usize = 16;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let code = raw.trim().to_ascii_uppercase();
        let ok = (2..=Self::MAX_LEN).contains(&code.len())
            && code.as_bytes()[0].is_ascii_alphanumeric()
            && code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            let mut bytes = [0; Self::MAX_LEN];
            bytes[..code.len()].copy_from_slice(code.as_bytes());
            Ok(Self(InlineCode {
                bytes,
                len: code.len() as u8,
            }))
        } else {
            Err(InvalidValue::SiteCode(raw.to_owned()))
        }
    }

    /// The value as stored.
    pub fn as_str(&self) -> &str {
        let code = &self.0;
        std::str::from_utf8(&code.bytes[..usize::from(code.len)]).expect("parse keeps ASCII")
    }
}

impl PartialOrd for SiteCode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SiteCode {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for SiteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SiteCode").field(&self.as_str()).finish()
    }
}

impl fmt::Display for SiteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SiteCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SiteCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SiteCode::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A username or email, unique per site, compared case-insensitively (stored
/// in lower case).
///
/// Parsing accepts every username ever stored. A username given to a new
/// account must also pass [`Username::check_new`] (nothing that could pass
/// for another name), and is unique by [`Username::key`]: two usernames
/// that look alike are one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let name = raw.trim().to_lowercase();
        let ok = !name.is_empty()
            && name.chars().count() <= 254
            && name.chars().all(|c| !c.is_whitespace() && !c.is_control());
        if ok {
            Ok(Self(name))
        } else {
            Err(InvalidValue::Username(raw.to_owned()))
        }
    }

    /// Refuses, for a new account, a username that could pass for another:
    /// an invisible character, a compatibility form (fullwidth letters),
    /// a character names do not use, or a part written in mixed scripts
    /// (see [`identifiers::hazard`]).
    pub fn check_new(&self) -> Result<(), InvalidValue> {
        match identifiers::hazard(&self.0) {
            None => Ok(()),
            Some(hazard) => Err(InvalidValue::LookAlike {
                field: "username",
                value: self.0.clone(),
                hazard,
            }),
        }
    }

    /// What usernames are told apart by: usernames with one key look alike
    /// (`аdmin` with a Cyrillic `а`, `ａdmin`, `admin` with a zero-width
    /// space, and `admin` share one). Derived, never stored.
    pub fn key(&self) -> UsernameKey {
        UsernameKey(identifiers::comparison_key(&self.0))
    }
}

/// The comparison key of a [`Username`] ([`Username::key`]): the UTS #39
/// skeleton of its NFKC form in lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UsernameKey(String);

impl UsernameKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

parsed_text!(Username);

/// A human-readable name (of a site, user, scorecard or object): 1 to 200
/// characters, not blank, trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub const MAX: usize = 200;
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > Self::MAX || name.chars().any(char::is_control)
        {
            return Err(InvalidValue::Text {
                field: "name",
                max: Self::MAX,
            });
        }
        Ok(Self(name.to_owned()))
    }
}

parsed_text!(Name);

/// A user's email address (seed 001), as a person types it: `local@domain`,
/// the local part 1 to 64 characters, the domain 2 to 4 dot-separated
/// labels of 1 to 63 characters, none of them white space, a control
/// character or a second `@`; trimmed. Kept as written (mail systems
/// compare local parts case-sensitively).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let email = raw.trim();
        let visible = |c: char| c != '@' && !c.is_whitespace() && !c.is_control();
        let label = |l: &str| {
            (1..=63).contains(&l.chars().count()) && l.chars().all(|c| visible(c) && c != '.')
        };
        let ok = email.split_once('@').is_some_and(|(local, domain)| {
            let labels: Vec<&str> = domain.split('.').collect();
            (1..=64).contains(&local.chars().count())
                && local.chars().all(visible)
                && (2..=4).contains(&labels.len())
                && labels.iter().all(|l| label(l))
        });
        if ok {
            Ok(Self(email.to_owned()))
        } else {
            Err(InvalidValue::Email(raw.to_owned()))
        }
    }
}

parsed_text!(Email);

/// How many active users a site may have (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SeatLimit(u32);

impl SeatLimit {
    pub fn new(seats: u32) -> Result<Self, InvalidValue> {
        if seats == 0 {
            Err(InvalidValue::SeatLimit)
        } else {
            Ok(Self(seats))
        }
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A whole number of seats: JSON's `25` and `25.0` are the same number (as
/// JSON Schema's `integer` says), so both are read; `25.5`, negative
/// numbers and numbers beyond `u32` are refused.
struct Seats;

impl serde::de::Visitor<'_> for Seats {
    type Value = u32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number of seats from 1 to 4294967295")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u32, E> {
        if v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v) {
            Ok(v as u32)
        } else {
            Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
        }
    }
}

impl<'de> Deserialize<'de> for SeatLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SeatLimit::new(d.deserialize_u32(Seats)?).map_err(serde::de::Error::custom)
    }
}

/// Per-scorecard access levels, ordered (R-USER-3):
/// Browser < Updater < Editor < Scorecard Admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AccessLevel {
    /// View, export, favourite, include in a briefing book.
    Browser,
    /// Also update-fields: series data, analysis, recommendations, status.
    Updater,
    /// Also edit-fields: owner, description, data source, charts.
    Editor,
    /// Also configure the scorecard and its access.
    ScorecardAdmin,
}

impl AccessLevel {
    pub const ALL: [AccessLevel; 4] = [
        AccessLevel::Browser,
        AccessLevel::Updater,
        AccessLevel::Editor,
        AccessLevel::ScorecardAdmin,
    ];
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw
            .trim()
            .to_ascii_lowercase()
            .replace([' ', '-'], "_")
            .as_str()
        {
            "browser" => Ok(Self::Browser),
            "updater" => Ok(Self::Updater),
            "editor" => Ok(Self::Editor),
            "scorecard_admin" | "admin" => Ok(Self::ScorecardAdmin),
            _ => Err(InvalidValue::AccessLevel(raw.to_owned())),
        }
    }
}

/// Shows a catalog enum by its name on the wire (`scorecard_admin`,
/// `manage_users`): the words the API and its errors use.
macro_rules! display_as_on_the_wire {
    ($($name:ty),* $(,)?) => {
        $(impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match serde_json::to_value(self) {
                    Ok(serde_json::Value::String(name)) => f.write_str(&name),
                    _ => Err(fmt::Error),
                }
            }
        })*
    };
}

display_as_on_the_wire!(AccessLevel, Action, PermissionFlag);

/// What a user asks to do with a scorecard or object (Q-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Action {
    View,
    Update,
    Edit,
    Admin,
}

impl Action {
    /// The lowest access level that allows this action (R-USER-3).
    pub fn required_level(self) -> AccessLevel {
        match self {
            Action::View => AccessLevel::Browser,
            Action::Update => AccessLevel::Updater,
            Action::Edit => AccessLevel::Editor,
            Action::Admin => AccessLevel::ScorecardAdmin,
        }
    }
}

/// The permission flags of seed 001 (R-USER-2, plus Compyle Access, which
/// the seed lists and the rule omits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PermissionFlag {
    AddCommentary,
    EditScorecardObjectNotes,
    EmbedScorecard,
    AddEditScorecardObjects,
    DeleteScorecardObjects,
    AddEditAction,
    DeleteActions,
    DataEntry,
    EditGraphSettings,
    UpdateStatus,
    AddToDos,
    InstanceAdmin,
    Settings,
    ManageUsers,
    ScorecardDefaults,
    LanguageEditor,
    CalendarManager,
    ImportExport,
    AllScorecards,
    /// Seed 001 lists it; R-USER-2 does not. The seed wins (DOMAIN.md).
    CompyleAccess,
    ViewReports,
    AddEditReport,
}

impl PermissionFlag {
    pub const ALL: [PermissionFlag; 22] = [
        PermissionFlag::AddCommentary,
        PermissionFlag::EditScorecardObjectNotes,
        PermissionFlag::EmbedScorecard,
        PermissionFlag::AddEditScorecardObjects,
        PermissionFlag::DeleteScorecardObjects,
        PermissionFlag::AddEditAction,
        PermissionFlag::DeleteActions,
        PermissionFlag::DataEntry,
        PermissionFlag::EditGraphSettings,
        PermissionFlag::UpdateStatus,
        PermissionFlag::AddToDos,
        PermissionFlag::InstanceAdmin,
        PermissionFlag::Settings,
        PermissionFlag::ManageUsers,
        PermissionFlag::ScorecardDefaults,
        PermissionFlag::LanguageEditor,
        PermissionFlag::CalendarManager,
        PermissionFlag::ImportExport,
        PermissionFlag::AllScorecards,
        PermissionFlag::CompyleAccess,
        PermissionFlag::ViewReports,
        PermissionFlag::AddEditReport,
    ];

    /// The admin-level settings that *Scorecard Builder* lacks (R-USER-1).
    pub const ADMIN_LEVEL: [PermissionFlag; 8] = [
        PermissionFlag::InstanceAdmin,
        PermissionFlag::Settings,
        PermissionFlag::ManageUsers,
        PermissionFlag::ScorecardDefaults,
        PermissionFlag::LanguageEditor,
        PermissionFlag::CalendarManager,
        PermissionFlag::ImportExport,
        PermissionFlag::AddEditReport,
    ];

    /// Parses the snake_case name (`manage_users`) or seed 001's label
    /// (`Manage Users`, `Add/Edit Scorecard Objects`, `Add To-Do's`).
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let key: String = raw
            .trim()
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        PermissionFlag::ALL
            .into_iter()
            .find(|flag| {
                let name = serde_json::to_value(flag).expect("flags serialize");
                let name: String = name
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .collect();
                name == key
            })
            .ok_or_else(|| InvalidValue::PermissionFlag(raw.to_owned()))
    }
}

/// A set of permission flags.
pub type Permissions = BTreeSet<PermissionFlag>;

/// The four role presets of seed 001 (R-USER-1). A preset sets default flags;
/// flags can then be switched one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// Access to everything.
    Administration,
    /// Everything but admin-level settings.
    ScorecardBuilder,
    /// Comment, enter data, manage actions.
    DataEntry,
    /// Comment and manage actions.
    Presenter,
}

impl Role {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw
            .trim()
            .to_ascii_lowercase()
            .replace([' ', '-'], "_")
            .as_str()
        {
            "administration" | "administrator" | "admin" => Ok(Self::Administration),
            "scorecard_builder" => Ok(Self::ScorecardBuilder),
            "data_entry" => Ok(Self::DataEntry),
            "presenter" => Ok(Self::Presenter),
            _ => Err(InvalidValue::Role(raw.to_owned())),
        }
    }

    /// The flags this preset turns on.
    pub fn default_permissions(self) -> Permissions {
        use PermissionFlag::*;
        let actions = [
            AddCommentary,
            AddEditAction,
            DeleteActions,
            UpdateStatus,
            AddToDos,
        ];
        match self {
            Role::Administration => PermissionFlag::ALL.into_iter().collect(),
            Role::ScorecardBuilder => PermissionFlag::ALL
                .into_iter()
                .filter(|f| !PermissionFlag::ADMIN_LEVEL.contains(f))
                .collect(),
            Role::DataEntry => actions.into_iter().chain([DataEntry]).collect(),
            Role::Presenter => actions.into_iter().collect(),
        }
    }
}

/// The kinds of scorecard objects (seed 000). Results and Programs are
/// containers; Indicators and Performance Measures can be aggregated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ObjectKind {
    Result,
    Indicator,
    Program,
    PerformanceMeasure,
}

impl ObjectKind {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw
            .trim()
            .to_ascii_lowercase()
            .replace([' ', '-'], "_")
            .as_str()
        {
            "result" => Ok(Self::Result),
            "indicator" => Ok(Self::Indicator),
            "program" => Ok(Self::Program),
            "performance_measure" => Ok(Self::PerformanceMeasure),
            _ => Err(InvalidValue::ObjectKind(raw.to_owned())),
        }
    }
    /// Results and Programs can contain other objects.
    pub fn is_container(self) -> bool {
        matches!(self, ObjectKind::Result | ObjectKind::Program)
    }
    /// Indicators and Performance Measures can be used in aggregations.
    pub fn is_measure(self) -> bool {
        matches!(self, ObjectKind::Indicator | ObjectKind::PerformanceMeasure)
    }
}

/// The API document's schemas of the values that parse: each states exactly
/// what the value's `parse` accepts (the patterns above; `SeatLimit`'s
/// range), so that a client can check a body before sending it.
#[cfg(feature = "openapi")]
mod schemas {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;

    use super::*;

    fn text(description: &str, pattern: String, example: &str) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
            .pattern(Some(pattern))
            .examples([serde_json::json!(example)])
            .into()
    }

    impl utoipa::PartialSchema for SiteCode {
        fn schema() -> RefOr<Schema> {
            text(
                "A site's short, unique, case-insensitive code such as `ACME`: 2 to 16 ASCII \
                 letters, digits, `-` or `_`, starting with a letter or digit (surrounding white \
                 space is ignored). Stored in upper case: `acme` and `ACME` are the same code.",
                site_code_pattern(),
                "ACME",
            )
        }
    }
    impl utoipa::ToSchema for SiteCode {}

    impl utoipa::PartialSchema for Username {
        fn schema() -> RefOr<Schema> {
            text(
                "A username or email, unique per site, compared case-insensitively: 1 to 254 \
                 characters once lower-cased, none of them white space or a control character \
                 (surrounding white space is ignored). Stored in lower case.",
                username_pattern(),
                "ann@acme.org",
            )
        }
    }
    impl utoipa::ToSchema for Username {}

    impl utoipa::PartialSchema for Name {
        fn schema() -> RefOr<Schema> {
            text(
                "A human-readable name (of a site, user, scorecard or object): 1 to 200 \
                 characters once trimmed, no control characters.",
                name_pattern(),
                "Acme Foundation",
            )
        }
    }
    impl utoipa::ToSchema for Name {}

    impl utoipa::PartialSchema for Email {
        fn schema() -> RefOr<Schema> {
            text(
                "A user's email address: `local@domain`, the local part 1 to 64 characters, the \
                 domain 2 to 4 dot-separated labels of 1 to 63 characters, none of them white \
                 space, a control character or a second `@` (surrounding white space is \
                 ignored). Kept as written.",
                email_pattern(),
                "ann@acme.org",
            )
        }
    }
    impl utoipa::ToSchema for Email {}

    impl utoipa::PartialSchema for SeatLimit {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some(
                    "How many active users a site may have: 1 to 4294967295.",
                ))
                .minimum(Some(1))
                .maximum(Some(u32::MAX))
                .examples([serde_json::json!(25)])
                .into()
        }
    }
    impl utoipa::ToSchema for SeatLimit {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_codes_are_case_insensitive_and_checked() {
        assert_eq!(
            SiteCode::parse("acme").unwrap(),
            SiteCode::parse("ACME").unwrap()
        );
        assert_eq!(SiteCode::parse(" Acme-1 ").unwrap().as_str(), "ACME-1");
        for bad in ["", "A", "-AB", "has space", "toolongcode_1234567", "ÄBC"] {
            assert!(SiteCode::parse(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<SiteCode>("\"x\"").is_err());
    }

    #[test]
    fn usernames_are_case_insensitive_without_spaces() {
        assert_eq!(
            Username::parse("Ann@Example.org").unwrap().as_str(),
            "ann@example.org"
        );
        assert!(Username::parse("").is_err());
        assert!(Username::parse("two words").is_err());
        assert!(Username::parse(&"a".repeat(255)).is_err());
    }

    #[test]
    fn usernames_stored_before_the_look_alike_rules_still_parse_and_are_keyed() {
        // The log is immutable: a look-alike stored before keeps loading,
        // and its key is the name it imitates.
        for stored in [
            "\u{430}dmin@fund.example",
            "admin\u{200b}@fund.example",
            "\u{ff41}dmin@fund.example",
        ] {
            let parsed: Username = serde_json::from_value(serde_json::json!(stored)).unwrap();
            assert_eq!(parsed.as_str(), stored);
            assert!(parsed.check_new().is_err(), "{stored:?} is no new username");
            assert_eq!(
                parsed.key(),
                Username::parse("admin@fund.example").unwrap().key()
            );
        }
        let err = Username::parse("admin\u{200b}@fund.example")
            .unwrap()
            .check_new()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "username admin<U+200B>@fund.example has an invisible character (U+200B) at position 6"
        );
    }

    #[test]
    fn site_codes_that_look_valid_say_why_not() {
        let message = |raw: &str| SiteCode::parse(raw).unwrap_err().to_string();
        assert!(
            message("ACME\u{200b}").contains("ACME<U+200B>")
                && message("ACME\u{200b}").contains("invisible character (U+200B) at position 5"),
            "{}",
            message("ACME\u{200b}")
        );
        assert!(
            message("\u{ff21}CME").contains("type acme instead"),
            "{}",
            message("\u{ff21}CME")
        );
        assert!(
            message("\u{410}CME").contains("Cyrillic and Latin"),
            "{}",
            message("\u{410}CME")
        );
    }

    #[test]
    fn seat_limits_are_whole_numbers_from_1_to_u32_max() {
        let read = |json: &str| serde_json::from_str::<SeatLimit>(json).map(SeatLimit::get);
        assert_eq!(read("25").unwrap(), 25);
        assert_eq!(read("25.0").unwrap(), 25);
        assert_eq!(read("2.5e1").unwrap(), 25);
        assert_eq!(read("4294967295").unwrap(), u32::MAX);
        assert_eq!(read("4294967295.0").unwrap(), u32::MAX);
        for bad in [
            "0",
            "0.0",
            "-0.0",
            "-1",
            "25.5",
            "4294967296",
            "4294967296.0",
            "1e300",
            "\"5\"",
            "null",
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn access_levels_are_ordered() {
        assert!(AccessLevel::Browser < AccessLevel::Updater);
        assert!(AccessLevel::Updater < AccessLevel::Editor);
        assert!(AccessLevel::Editor < AccessLevel::ScorecardAdmin);
        assert_eq!(Action::Update.required_level(), AccessLevel::Updater);
        assert_eq!(
            AccessLevel::parse("Scorecard Admin").unwrap(),
            AccessLevel::ScorecardAdmin
        );
    }

    #[test]
    fn flags_parse_from_seed_labels() {
        assert_eq!(
            PermissionFlag::parse("Manage Users").unwrap(),
            PermissionFlag::ManageUsers
        );
        assert_eq!(
            PermissionFlag::parse("Add/Edit Scorecard Objects").unwrap(),
            PermissionFlag::AddEditScorecardObjects
        );
        assert_eq!(
            PermissionFlag::parse("Add To-Do's").unwrap(),
            PermissionFlag::AddToDos
        );
        assert_eq!(
            PermissionFlag::parse("all_scorecards").unwrap(),
            PermissionFlag::AllScorecards
        );
        assert!(PermissionFlag::parse("Fly").is_err());
    }

    #[test]
    fn role_presets_set_the_seed_defaults() {
        use PermissionFlag::*;
        assert_eq!(Role::Administration.default_permissions().len(), 22);
        let builder = Role::ScorecardBuilder.default_permissions();
        assert!(builder.contains(&AllScorecards) && builder.contains(&AddEditScorecardObjects));
        assert!(!builder.contains(&InstanceAdmin) && !builder.contains(&ManageUsers));
        let entry = Role::DataEntry.default_permissions();
        assert!(entry.contains(&DataEntry) && entry.contains(&AddCommentary));
        assert!(!entry.contains(&AllScorecards));
        let presenter = Role::Presenter.default_permissions();
        assert!(presenter.contains(&AddCommentary) && !presenter.contains(&DataEntry));
    }

    /// The patterns the API document states accept exactly what `parse`
    /// accepts: strings built from the characters at the edges of each rule
    /// (white space that is trimmed, control characters, non-ASCII letters,
    /// `İ` aside for usernames), at the lengths around each limit.
    mod patterns {
        use proptest::prelude::*;

        use super::super::*;

        const CHARS: &[char] = &[
            'a', 'Z', '0', '9', '-', '_', '.', '@', ' ', '\t', '\n', '\u{b}', '\u{c}', '\r',
            '\u{85}', '\u{a0}', '\u{1680}', '\u{2000}', '\u{200a}', '\u{200b}', '\u{2028}',
            '\u{3000}', '\u{feff}', '\u{0}', '\u{1}', '\u{1c}', '\u{1f}', '\u{7f}', '\u{9f}', 'é',
            'Ä', 'ß', '😀',
        ];

        fn piece(max: usize) -> impl Strategy<Value = String> {
            proptest::collection::vec(proptest::sample::select(CHARS), 0..max)
                .prop_map(|c| c.into_iter().collect())
        }

        /// Edges, then a run of one character long enough to cross a limit.
        fn candidate() -> impl Strategy<Value = String> {
            (
                piece(4),
                proptest::sample::select(CHARS),
                0usize..260,
                piece(4),
            )
                .prop_map(|(head, fill, n, tail)| {
                    let mut s = head;
                    s.extend(std::iter::repeat_n(fill, n));
                    s.push_str(&tail);
                    s
                })
        }

        fn agree(pattern: &str, parses: impl Fn(&str) -> bool, s: &str) {
            let re = regex::Regex::new(pattern).expect("the pattern compiles");
            assert_eq!(re.is_match(s), parses(s), "{pattern} on {s:?}");
        }

        proptest! {
            #[test]
            fn site_codes(s in candidate()) {
                agree(&site_code_pattern(), |s| SiteCode::parse(s).is_ok(), &s);
            }

            #[test]
            fn usernames(s in candidate()) {
                agree(&username_pattern(), |s| Username::parse(s).is_ok(), &s);
            }

            #[test]
            fn names(s in candidate()) {
                agree(&name_pattern(), |s| Name::parse(s).is_ok(), &s);
            }
        }

        #[test]
        fn at_the_limits() {
            let code = site_code_pattern();
            let user = username_pattern();
            let name = name_pattern();
            for (s, code_ok, user_ok, name_ok) in [
                ("", false, false, false),
                ("A", false, true, true),
                (" AB\n", true, true, true),
                ("-AB", false, true, true),
                ("a b", false, false, true),
                ("a\tb", false, false, false),
            ] {
                agree(&code, |s| SiteCode::parse(s).is_ok(), s);
                agree(&user, |s| Username::parse(s).is_ok(), s);
                agree(&name, |s| Name::parse(s).is_ok(), s);
                assert_eq!(SiteCode::parse(s).is_ok(), code_ok, "{s:?}");
                assert_eq!(Username::parse(s).is_ok(), user_ok, "{s:?}");
                assert_eq!(Name::parse(s).is_ok(), name_ok, "{s:?}");
            }
            for n in [15, 16, 17, 199, 200, 201, 253, 254, 255] {
                let s = "x".repeat(n);
                let padded = format!(" {s}\u{3000}");
                for s in [&s, &padded] {
                    agree(&code, |s| SiteCode::parse(s).is_ok(), s);
                    agree(&user, |s| Username::parse(s).is_ok(), s);
                    agree(&name, |s| Name::parse(s).is_ok(), s);
                }
            }
        }
    }
}
