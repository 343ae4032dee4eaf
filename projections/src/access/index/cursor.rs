//! Q-2's opaque cursors: the last item's key (owner site, target key), as
//! text, and back.

use shareledger_core::catalog::SiteId;

use super::TargetKey;
use crate::access::AccessError;

pub(super) fn format_cursor((site, (id, tag)): (SiteId, TargetKey)) -> String {
    format!("{}.{}.{}", site.0.simple(), tag, id.simple())
}

pub(super) fn parse_cursor(raw: &str) -> Result<(SiteId, TargetKey), AccessError> {
    let bad = || AccessError::BadCursor(raw.to_owned());
    let mut parts = raw.split('.');
    let (Some(site), Some(tag), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let site = uuid::Uuid::try_parse(site).map_err(|_| bad())?;
    let tag: u8 = match tag {
        "0" => 0,
        "1" => 1,
        _ => return Err(bad()),
    };
    let id = uuid::Uuid::try_parse(id).map_err(|_| bad())?;
    Ok((SiteId(site), (id, tag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let key = (SiteId::new(), (uuid::Uuid::new_v4(), 1));
        assert_eq!(parse_cursor(&format_cursor(key)).unwrap(), key);
        for bad in ["", "x", "a.b.c", "a.1.b.c"] {
            assert!(matches!(parse_cursor(bad), Err(AccessError::BadCursor(_))));
        }
        let mut tampered = format_cursor(key);
        tampered.replace_range(33..34, "7");
        assert!(parse_cursor(&tampered).is_err());
    }
}
