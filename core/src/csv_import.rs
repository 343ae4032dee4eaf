//! Parsing a users CSV file for ImportUsers (R-USER-8): every row is checked
//! before anything is applied, and every bad row is reported with its line,
//! field and reason.
//!
//! The file has a header naming at least `username`, `name` and `role`
//! (any order, any case), and optionally `email` (an empty cell: no
//! email); other columns are ignored. The records are read
//! by the `csv` crate (RFC 4180: a field may be quoted with `"`, and a
//! quoted field may hold commas, line breaks and doubled `""` for one
//! quote; a leading UTF-8 byte order mark is ignored). Blank lines are
//! skipped. A quote must open its field: in ` "a, b"` the space makes the
//! field unquoted, and the comma splits it.
//!
//! Line numbers are the file's, as an editor shows them: a record is
//! reported at the line it starts on, and a line break inside a quoted
//! field moves every later record down a line. A file adds at most
//! [`MAX_IMPORT_ROWS`] users.

use std::collections::BTreeMap;

use shareledger_events::catalog::{Email, Name, Role, UserId, Username};
use shareledger_events::envelope::MAX_EVENTS_PER_APPEND;

use crate::error::{DomainError, RowError};

/// One good row of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// 1-based line in the file (the header is line 1) where the row
    /// starts.
    pub line: u32,
    pub user_id: UserId,
    pub username: Username,
    pub name: Name,
    pub role: Role,
    pub email: Option<Email>,
}

const COLUMNS: [&str; 3] = ["username", "name", "role"];

/// The most users one import adds: each row writes two events (the user,
/// and the claim of its id), and one append holds at most
/// [`MAX_EVENTS_PER_APPEND`].
pub const MAX_IMPORT_ROWS: usize = MAX_EVENTS_PER_APPEND / 2;

/// Why a record cannot be read.
const NOT_CLOSED: &str = "a quoted field is not closed";

/// A line read after the file. The `csv` crate ends a quoted field that is
/// still open at the end of its input without an error; with this line
/// after the file, a file that ends outside quotes makes it a record of its
/// own, and one that ends inside a quoted field swallows it.
const AFTER_THE_FILE: &[u8] = b"\nend";

/// The file's records with the line each starts on (1-based, the file's
/// numbering), and whether the last one ends inside a quoted field that is
/// never closed (it then runs to the end of the file).
fn records(text: &str) -> Result<(Vec<(u32, csv::StringRecord)>, bool), RowError> {
    let input = [text.as_bytes(), AFTER_THE_FILE].concat();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input.as_slice());
    let mut records = Vec::new();
    for record in reader.records() {
        // Reading valid UTF-8 from memory with `flexible` on has no error
        // to give; should it give one anyway, it is the row's.
        let record = record.map_err(|e| RowError {
            line: e.position().map_or(1, |p| line_number(p.line())),
            field: "row".into(),
            reason: e.to_string(),
        })?;
        // A record's position is where the reader started reading it: just
        // after the record before, so before the blank lines it skipped.
        let (from, line) = record.position().map_or((0, 1), |p| (p.byte(), p.line()));
        let skipped = input
            .get(usize::try_from(from).unwrap_or(usize::MAX)..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'));
        let (start, line) = skipped.fold((from, line), |(start, line), b| {
            (start + 1, line + u64::from(*b == b'\n'))
        });
        if start >= text.len() as u64 {
            return Ok((records, false));
        }
        records.push((line_number(line), record));
    }
    Ok((records, true))
}

fn line_number(line: u64) -> u32 {
    u32::try_from(line).unwrap_or(u32::MAX)
}

/// A record that holds nothing: a line of spaces.
fn is_blank(record: &csv::StringRecord) -> bool {
    record.len() == 1 && record[0].trim().is_empty()
}

/// Namespace of the user ids derived from idempotency keys.
const USER_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x9d41_7c2e_5b3a_4f18_8e6d_0a1b_2c3d_4e5f);

/// The user id of the `row`-th good row (0-based, in file order) of a CSV
/// import sent under `key`: re-sending the same file with the same key
/// names the same users, so the re-send is idempotent.
pub fn imported_user_id(key: uuid::Uuid, row: usize) -> UserId {
    let mut name = key.as_bytes().to_vec();
    name.extend_from_slice(&(row as u64).to_be_bytes());
    UserId(uuid::Uuid::new_v5(&USER_ID_NAMESPACE, &name))
}

/// Parses a users CSV. `new_id` gives each row's user id. Returns every good
/// row, or [`DomainError::ImportRejected`] with one error per bad field.
pub fn parse_users_csv(
    text: &str,
    new_id: impl FnMut() -> UserId,
) -> Result<Vec<ImportRow>, DomainError> {
    let (rows, errors) = parse_users_rows(text, new_id)?;
    if !errors.is_empty() {
        return Err(DomainError::ImportRejected(errors));
    }
    Ok(rows)
}

/// [`parse_users_csv`], keeping the good rows beside the bad rows' errors
/// (so that the rows can be checked against the site too, and every bad
/// row reported at once). A file that cannot be read as a users file at
/// all (empty, no header, a header without a required column) is refused.
pub fn parse_users_rows(
    text: &str,
    mut new_id: impl FnMut() -> UserId,
) -> Result<(Vec<ImportRow>, Vec<RowError>), DomainError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let reject = |line, field: &str, reason: String| {
        DomainError::ImportRejected(vec![RowError {
            line,
            field: field.into(),
            reason,
        }])
    };
    let (records, last_unclosed) =
        records(text).map_err(|e| DomainError::ImportRejected(vec![e]))?;
    let unclosed_at = if last_unclosed {
        records.last().map(|(line, _)| *line)
    } else {
        None
    };
    let mut records = records.into_iter().filter(|(_, r)| !is_blank(r));
    let Some((header_line, header)) = records.next() else {
        return Err(reject(1, "header", "the file is empty".into()));
    };
    if unclosed_at == Some(header_line) {
        return Err(reject(header_line, "header", NOT_CLOSED.into()));
    }
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
                    header_line,
                    column,
                    format!("the header has no {column} column"),
                ))
            }
        }
    }
    let email_column = header
        .iter()
        .position(|h| h.trim().eq_ignore_ascii_case("email"));
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<Username, u32> = BTreeMap::new();
    let mut data_rows = 0;
    for (line, fields) in records {
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
        if unclosed_at == Some(line) {
            // It runs to the end of the file: none of its fields can be
            // trusted, and no record follows it.
            errors.push(RowError {
                line,
                field: "row".into(),
                reason: NOT_CLOSED.into(),
            });
            break;
        }
        let get = |column: &str| fields.get(index[column]).map(str::trim).unwrap_or("");
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
        let email = match email_column
            .and_then(|i| fields.get(i))
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            None => Ok(None),
            Some(raw) => Email::parse(raw)
                .map(Some)
                .map_err(|e| bad("email", e.to_string())),
        };
        if let (Ok(username), Ok(name), Ok(role), Ok(email)) = (username, name, role, email) {
            rows.push(ImportRow {
                line,
                user_id: new_id(),
                username,
                name,
                role,
                email,
            });
        }
    }
    Ok((rows, errors))
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
    fn blank_lines_anywhere_are_skipped_and_counted() {
        let csv = "\n  \r\nusername,name,role\n\n   \nann@a.org,Ann,wizard\r\n\r\n\"bob@a.org\",Bob,x\n\n";
        let Err(DomainError::ImportRejected(errors)) = parse_users_csv(csv, UserId::new) else {
            panic!("expected ImportRejected");
        };
        let found: Vec<(u32, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(found, vec![(6, "role"), (8, "role")]);
        let Err(DomainError::ImportRejected(errors)) =
            parse_users_csv("\n\nname,role\n", UserId::new)
        else {
            panic!("expected ImportRejected");
        };
        assert_eq!((errors[0].line, errors[0].field.as_str()), (3, "username"));
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
}
