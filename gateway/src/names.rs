//! Problem details in the domain's words: the ids a domain error names
//! (sites, users, scorecards, objects) replaced by what people call them
//! (`site ALPHA`, `user ann@acme.org`, `scorecard “Outcomes”`), from the
//! access index. Tenancy holds: a caller of a site is told sites' codes and
//! the names of its own site's users and things only; any other id (of
//! another site, or that the index does not know) stays as the caller sent
//! it. Operators are told every name.

use shareledger_core::catalog::SiteId;
use shareledger_projections::access::AccessIndex;
use uuid::Uuid;

/// `detail` with every id the caller (of site `viewer`; `None`: an operator)
/// may be told of replaced by its name.
pub fn speak(detail: &str, index: &AccessIndex, viewer: Option<SiteId>) -> String {
    let mut out = String::with_capacity(detail.len());
    let mut rest = detail;
    while let Some(at) = next_uuid(rest) {
        out.push_str(&rest[..at]);
        let token = &rest[at..at + 36];
        match Uuid::parse_str(token)
            .ok()
            .and_then(|id| index.label_for(id, viewer))
        {
            Some(label) => out.push_str(&label),
            None => out.push_str(token),
        }
        rest = &rest[at + 36..];
    }
    out.push_str(rest);
    out
}

/// Where the next hyphenated UUID in `text` starts.
fn next_uuid(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(35)).find(|&i| {
        let candidate = &bytes[i..i + 36];
        let boundary_before = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let boundary_after = bytes.get(i + 36).is_none_or(|b| !b.is_ascii_alphanumeric());
        boundary_before
            && boundary_after
            && candidate.iter().enumerate().all(|(n, b)| match n {
                8 | 13 | 18 | 23 => *b == b'-',
                _ => b.is_ascii_hexdigit(),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_uuid_and_only_uuids() {
        let id = "8e03978e-40d5-43e8-bc93-6e878fcdf7a1";
        assert_eq!(next_uuid(&format!("site {id} x")), Some(5));
        assert_eq!(next_uuid("no id here"), None);
        assert_eq!(next_uuid(&format!("x{id}")), None);
        let unknown = format!("user {id} does not exist on this site");
        assert_eq!(speak(&unknown, &AccessIndex::new(), None), unknown);
    }
}
