//! Parsing a users CSV file for ImportUsers (R-USER-8): every row is checked
//! before anything is applied, and every bad row is reported with its line,
//! field and reason.
//!
//! The file has a header naming at least `username`, `name` and `role`
//! (any order, any case); other columns are ignored. Fields may be quoted
//! with `"` (a doubled `""` inside quotes is one quote). Blank lines are
//! skipped. A file adds at most [`MAX_IMPORT_ROWS`] users.

use std::collections::BTreeMap;

use shareledger_events::catalog::{Name, Role, UserId, Username};
use shareledger_events::envelope::MAX_EVENTS_PER_APPEND;

use crate::error::{DomainError, RowError};

/// One good row of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// 1-based line in the file (the header is line 1).
    pub line: u32,
    pub user_id: UserId,
    pub username: Username,
    pub name: Name,
    pub role: Role,
}

const COLUMNS: [&str; 3] = ["username", "name", "role"];

/// The most users one import adds: each row writes two events (the user,
/// and the claim of its id), and one append holds at most
/// [`MAX_EVENTS_PER_APPEND`].
pub const MAX_IMPORT_ROWS: usize = MAX_EVENTS_PER_APPEND / 2;

/// Splits one CSV line into fields, or says why it cannot.
fn split(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    fields.push(field);
    Ok(fields)
}

/// Parses a users CSV. `new_id` gives each row's user id. Returns every good
/// row, or [`DomainError::ImportRejected`] with one error per bad field.
pub fn parse_users_csv(
    text: &str,
    mut new_id: impl FnMut() -> UserId,
) -> Result<Vec<ImportRow>, DomainError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i as u32 + 1, l));
    let reject = |line, field: &str, reason: String| {
        DomainError::ImportRejected(vec![RowError {
            line,
            field: field.into(),
            reason,
        }])
    };
    let Some((_, header)) = lines.next() else {
        return Err(reject(1, "header", "the file is empty".into()));
    };
    let header =
        split(header.trim_start_matches('\u{feff}')).map_err(|r| reject(1, "header", r))?;
    let mut index = BTreeMap::new();
    for column in COLUMNS {
        match header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(column))
        {
            Some(i) => {
                index.insert(column, i);
            }
            None => {
                return Err(reject(
                    1,
                    column,
                    format!("the header has no {column} column"),
                ))
            }
        }
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<Username, u32> = BTreeMap::new();
    let mut data_rows = 0;
    for (line, text) in lines {
        if text.trim().is_empty() {
            continue;
        }
        data_rows += 1;
        if data_rows > MAX_IMPORT_ROWS {
            errors.push(RowError {
                line,
                field: "row".into(),
                reason: format!(
                    "an import adds at most {MAX_IMPORT_ROWS} users: split the file from here"
                ),
            });
            break;
        }
        let fields = match split(text) {
            Ok(f) => f,
            Err(reason) => {
                errors.push(RowError {
                    line,
                    field: "row".into(),
                    reason,
                });
                continue;
            }
        };
        let get = |column: &str| fields.get(index[column]).map(|s| s.trim()).unwrap_or("");
        let mut bad = |field: &str, reason: String| {
            errors.push(RowError {
                line,
                field: field.into(),
                reason,
            })
        };
        let username = Username::parse(get("username")).map_err(|e| bad("username", e.to_string()));
        // A username seen on an earlier line is a duplicate even when that
        // line has other bad fields.
        let username = match username {
            Ok(u) => match seen.get(&u) {
                Some(first) => {
                    bad("username", format!("{u} appears already on line {first}"));
                    Err(())
                }
                None => {
                    seen.insert(u.clone(), line);
                    Ok(u)
                }
            },
            Err(()) => Err(()),
        };
        let name = Name::parse(get("name")).map_err(|e| bad("name", e.to_string()));
        let role = Role::parse(get("role")).map_err(|e| bad("role", e.to_string()));
        if let (Ok(username), Ok(name), Ok(role)) = (username, name, role) {
            rows.push(ImportRow {
                line,
                user_id: new_id(),
                username,
                name,
                role,
            });
        }
    }
    if !errors.is_empty() {
        return Err(DomainError::ImportRejected(errors));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_file_parses_every_row() {
        let csv = "Username,Name,Role,Office\nann@a.org,Ann Lee,Data Entry,HQ\n\n\"bob@a.org\",\"Bob, Jr.\",presenter,\n";
        let rows = parse_users_csv(csv, UserId::new).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[1].line, 4);
        assert_eq!(rows[1].name.as_str(), "Bob, Jr.");
        assert_eq!(rows[1].role, Role::Presenter);
    }

    #[test]
    fn bad_rows_are_reported_by_line_and_field() {
        let csv = "username,name,role\nann@a.org,Ann,data entry\nbad user,Bob,presenter\ncy@a.org,,wizard\nann@a.org,Ann2,presenter\n\"open,x,y\n";
        let Err(DomainError::ImportRejected(errors)) = parse_users_csv(csv, UserId::new) else {
            panic!("expected ImportRejected");
        };
        let found: Vec<(u32, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(
            found,
            vec![
                (3, "username"),
                (4, "name"),
                (4, "role"),
                (5, "username"),
                (6, "row")
            ]
        );
    }

    #[test]
    fn a_file_adds_at_most_max_import_rows_users() {
        let file = |n: usize| {
            let mut csv = String::from("username,name,role\n");
            for i in 0..n {
                csv.push_str(&format!("u{i}@a.org,U {i},presenter\n"));
            }
            csv
        };
        assert_eq!(
            parse_users_csv(&file(MAX_IMPORT_ROWS), UserId::new)
                .unwrap()
                .len(),
            MAX_IMPORT_ROWS
        );
        let Err(DomainError::ImportRejected(errors)) =
            parse_users_csv(&file(MAX_IMPORT_ROWS + 1), UserId::new)
        else {
            panic!("expected ImportRejected");
        };
        let over = MAX_IMPORT_ROWS as u32 + 2;
        assert_eq!(
            errors
                .iter()
                .map(|e| (e.line, e.field.as_str()))
                .collect::<Vec<_>>(),
            vec![(over, "row")]
        );
    }

    #[test]
    fn a_header_without_required_columns_is_rejected() {
        let Err(DomainError::ImportRejected(errors)) =
            parse_users_csv("username,name\nx,y\n", UserId::new)
        else {
            panic!("expected ImportRejected");
        };
        assert_eq!(errors[0].line, 1);
        assert_eq!(errors[0].field, "role");
        assert!(parse_users_csv("", UserId::new).is_err());
    }
}
