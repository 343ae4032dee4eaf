//! Where the private PostgreSQL cluster keeps its data when `DATABASE_URL`
//! is unset.
//!
//! PostgreSQL refuses to run as root, so when we are root the cluster runs
//! as the `postgres` system user (`local_pg`), and that user must be able
//! to pass through every directory above the data directory. A checkout in
//! root's home (mode 700, the usual home in a container) is out of its
//! reach. Then:
//!
//! * the default data directory (`.shareledger/pgdata`) moves to
//!   `/var/tmp/shareledger-<uid>/<checkout>-<hash>/pgdata`, one per
//!   checkout and kept between runs like the default, and the binary says
//!   where;
//! * a directory given with `--data-dir` (or `SHARELEDGER_DATA_DIR`) never
//!   moves: the error says, in one sentence, what to do.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use shareledger_events::store::local_pg::unprivileged_user;

/// The data directory when none is given, relative to the working directory.
pub const DEFAULT: &str = ".shareledger/pgdata";

/// Where the private cluster's data goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    pub path: PathBuf,
    /// Set when the default was out of the cluster user's reach: one
    /// sentence saying so, and where the data is instead.
    pub moved: Option<String>,
}

/// The data directory to use for `given` (`None`: the default).
pub fn resolve(given: Option<&Path>) -> anyhow::Result<DataDir> {
    let path = std::path::absolute(given.unwrap_or(Path::new(DEFAULT)))
        .context("resolving the data directory")?;
    let Some((uid, gid)) = unprivileged_user()? else {
        return Ok(DataDir { path, moved: None });
    };
    let Some(blocker) = blocked_at(&path, uid, gid) else {
        return Ok(DataDir { path, moved: None });
    };
    if given.is_some() {
        bail!(
            "the private PostgreSQL cluster runs as the `{}` system user (PostgreSQL refuses to \
             run as root), who cannot enter {} on the way to {}: pass a --data-dir that user can \
             reach, such as /var/tmp/shareledger/pgdata, or set DATABASE_URL",
            user_name(uid),
            blocker.display(),
            path.display()
        );
    }
    let moved = fallback(&path)?;
    let note = format!(
        "the private PostgreSQL cluster runs as the `{}` system user, who cannot enter {}: its \
         data is in {} instead of {}",
        user_name(uid),
        blocker.display(),
        moved.display(),
        path.display()
    );
    Ok(DataDir {
        path: moved,
        moved: Some(note),
    })
}

/// The first directory above `path` (outermost first) that the user
/// `uid`:`gid` cannot pass through, if any. Directories that do not exist
/// yet are created world-passable (mode 755 under the usual umask).
///
/// The cluster's processes have this user and group only (a process that
/// drops root's privileges loses its supplementary groups), so the mode
/// bits decide: the owner's, else the group's, else the others'.
pub fn blocked_at(path: &Path, uid: u32, gid: u32) -> Option<PathBuf> {
    let mut above: Vec<&Path> = path.ancestors().skip(1).collect();
    above.reverse();
    above
        .into_iter()
        .map_while(|dir| std::fs::metadata(dir).ok().map(|m| (dir, m)))
        .find(|(_, meta)| !may_pass(meta, uid, gid))
        .map(|(dir, _)| dir.to_owned())
}

fn may_pass(meta: &std::fs::Metadata, uid: u32, gid: u32) -> bool {
    let mode = meta.mode();
    let bit = if uid == 0 {
        return true;
    } else if meta.uid() == uid {
        0o100
    } else if meta.gid() == gid {
        0o010
    } else {
        0o001
    };
    meta.is_dir() && mode & bit != 0
}

/// `/var/tmp/shareledger-<our uid>/<checkout>-<hash of path>/pgdata`,
/// its directories created passable (711) and checked to be ours alone.
fn fallback(path: &Path) -> anyhow::Result<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let base = PathBuf::from(format!("/var/tmp/shareledger-{euid}"));
    let checkout = path
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkout".into());
    let hash = Sha256::digest(path.as_os_str().as_encoded_bytes());
    let hash: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    let dir = base.join(format!("{checkout}-{hash}"));
    for d in [&base, &dir] {
        private_passable_dir(d, euid)?;
    }
    Ok(dir.join("pgdata"))
}

/// Creates `dir` (mode 711: others may pass, not list), or checks that the
/// one there is a directory of ours that no one else may write: `/var/tmp`
/// is everyone's.
fn private_passable_dir(dir: &Path, euid: u32) -> anyhow::Result<()> {
    match std::fs::DirBuilder::new().mode(0o711).create(dir) {
        Ok(()) => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
                .with_context(|| format!("setting the mode of {}", dir.display()))?;
            return Ok(());
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    let meta =
        std::fs::symlink_metadata(dir).with_context(|| format!("inspecting {}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != euid || meta.mode() & 0o022 != 0 {
        bail!(
            "{} is not a directory of this user that only it may write: remove it, or pass \
             --data-dir or DATABASE_URL",
            dir.display()
        );
    }
    Ok(())
}

/// The name of user `uid`, for messages.
fn user_name(uid: u32) -> String {
    // SAFETY: getpwuid returns null or a pointer to a static record whose
    // name we copy out at once.
    unsafe {
        let entry = libc::getpwuid(uid);
        if entry.is_null() {
            return uid.to_string();
        }
        std::ffi::CStr::from_ptr((*entry).pw_name)
            .to_string_lossy()
            .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user and group that own nothing here.
    const STRANGER: (u32, u32) = (54_321, 54_321);

    fn dir_with_mode(parent: &Path, name: &str, mode: u32) -> PathBuf {
        let dir = parent.join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        dir
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "shareledger-private-cluster-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn a_directory_only_its_owner_may_enter_blocks_others() {
        let root = scratch("blocks");
        let home = dir_with_mode(&root, "home", 0o700);
        let data = home.join("checkout/.shareledger/pgdata");
        let (uid, gid) = STRANGER;
        assert_eq!(blocked_at(&data, uid, gid), Some(home.clone()));
        // Its owner passes; root passes everywhere.
        let meta = std::fs::metadata(&home).unwrap();
        assert_eq!(blocked_at(&data, meta.uid(), meta.gid()), None);
        assert_eq!(blocked_at(&data, 0, 0), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn passable_directories_do_not_block_whatever_is_below_them() {
        let root = scratch("passes");
        let home = dir_with_mode(&root, "home", 0o711);
        let group = dir_with_mode(&home, "group", 0o750);
        let (uid, _) = STRANGER;
        // Others may pass `home` (711); `group` lets its group pass only.
        let data = group.join("pgdata");
        let group_gid = std::fs::metadata(&group).unwrap().gid();
        assert_eq!(blocked_at(&data, uid, group_gid), None);
        assert_eq!(blocked_at(&data, uid, group_gid + 1), Some(group.clone()));
        // The data directory itself and what does not exist yet are not
        // judged: the cluster creates and owns them.
        let unborn = home.join("not/yet/pgdata");
        assert_eq!(blocked_at(&unborn, uid, group_gid + 1), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_shared_directory_that_others_may_write_is_refused() {
        let root = scratch("shared");
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        let ours = root.join("ours");
        private_passable_dir(&ours, euid).unwrap();
        assert_eq!(
            std::fs::metadata(&ours).unwrap().mode() & 0o777,
            0o711,
            "created passable, not listable"
        );
        // Again: it is ours and private, so it is used as it is.
        private_passable_dir(&ours, euid).unwrap();
        let open = dir_with_mode(&root, "open", 0o777);
        assert!(private_passable_dir(&open, euid).is_err());
        let file = root.join("file");
        std::fs::write(&file, "").unwrap();
        assert!(private_passable_dir(&file, euid).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
