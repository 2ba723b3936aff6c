//! `$AGENTFS_HOME` (default `~/.agentfs`): where every file of the contract
//! lives, and the ownership and mode rules that keep other users out of it.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::env;

/// Errors about the home directory, each naming the fix.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("cannot tell where agentfs keeps its files: HOME is not set; set AGENTFS_HOME to a directory")]
    NoHome,
    #[error("AGENTFS_HOME must be an absolute path, got {0:?}")]
    Relative(PathBuf),
    #[error("{} is not a directory; remove it or set AGENTFS_HOME elsewhere", .0.display())]
    NotADirectory(PathBuf),
    #[error("{} is a symlink; agentfs refuses it; replace it with a directory", .0.display())]
    Symlink(PathBuf),
    #[error("{} belongs to uid {owner}, not to you (uid {me}); fix: chown {me} {}", .path.display(), .path.display())]
    NotOwned { path: PathBuf, owner: u32, me: u32 },
    #[error("{} is writable by group or others (mode {mode:04o}); fix: chmod 700 {}", .path.display(), .path.display())]
    Writable { path: PathBuf, mode: u32 },
    #[error("cannot create {}: {source}; fix the permissions or set AGENTFS_HOME to a writable directory", .path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot read {}: {source}", .path.display())]
    Stat { path: PathBuf, source: io::Error },
}

/// The agentfs home directory and the paths in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `$AGENTFS_HOME`, else `$HOME/.agentfs`.
    pub fn from_env() -> Result<Home, HomeError> {
        match std::env::var_os(env::HOME) {
            Some(v) if !v.is_empty() => Home::at(PathBuf::from(v)),
            _ => {
                let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or(HomeError::NoHome)?;
                Home::at(PathBuf::from(home).join(".agentfs"))
            }
        }
    }

    pub fn at(root: PathBuf) -> Result<Home, HomeError> {
        if !root.is_absolute() {
            return Err(HomeError::Relative(root));
        }
        Ok(Home { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn lib_dir(&self) -> PathBuf {
        self.root.join("lib")
    }
    pub fn router_sock(&self) -> PathBuf {
        self.root.join("router.sock")
    }
    pub fn router_pid(&self) -> PathBuf {
        self.root.join("router.pid")
    }
    pub fn routes_file(&self) -> PathBuf {
        self.root.join("routes.json")
    }
    pub fn router_log(&self) -> PathBuf {
        self.logs_dir().join("router.log")
    }
    /// `services/`: one record per background instance's supervisor (see [`crate::service`]).
    pub fn services_dir(&self) -> PathBuf {
        self.root.join("services")
    }
    /// `logs/<app>.<instance>.log`: a background instance's output (`agentfs up`, `wrap --log`).
    pub fn app_log(&self, app: &crate::Label, instance: &crate::Label) -> PathBuf {
        self.logs_dir().join(format!("{app}.{instance}.log"))
    }
    pub fn shim_log(&self, pid: u32) -> PathBuf {
        self.logs_dir().join(format!("shim.{pid}.log"))
    }

    /// Creates home, `run/`, `logs/` and `services/` (mode 0700) where missing and checks
    /// that each is a directory of ours that no one else can write.
    /// A missing home is made with its missing parents (those with the
    /// default mode, the home itself 0700).
    pub fn ensure(&self) -> Result<(), HomeError> {
        if let Some(parent) = self.root.parent().filter(|p| !p.exists()) {
            fs::create_dir_all(parent).map_err(|source| HomeError::Create { path: parent.to_owned(), source })?;
        }
        for dir in [self.root.clone(), self.run_dir(), self.logs_dir(), self.services_dir()] {
            ensure_private_dir(&dir)?;
        }
        Ok(())
    }

    /// Checks home and `run/` without creating anything.
    pub fn check(&self) -> Result<(), HomeError> {
        check_private_dir(&self.root)?;
        check_private_dir(&self.run_dir())
    }
}

/// Creates `dir` with mode 0700 if missing, then checks it.
pub fn ensure_private_dir(dir: &Path) -> Result<(), HomeError> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(HomeError::Create { path: dir.to_owned(), source }),
    }
    check_private_dir(dir)
}

/// A directory (not a symlink) owned by us and not group/world-writable.
pub fn check_private_dir(dir: &Path) -> Result<(), HomeError> {
    let meta = fs::symlink_metadata(dir).map_err(|source| HomeError::Stat { path: dir.to_owned(), source })?;
    if meta.file_type().is_symlink() {
        return Err(HomeError::Symlink(dir.to_owned()));
    }
    if !meta.is_dir() {
        return Err(HomeError::NotADirectory(dir.to_owned()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(HomeError::NotOwned { path: dir.to_owned(), owner: meta.uid(), me });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(HomeError::Writable { path: dir.to_owned(), mode });
    }
    Ok(())
}

/// Sets mode 0600 on a file we created (sockets, records).
pub fn make_private(path: &Path) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn ensure_creates_private_dirs() {
        let t = TempDir::new("home");
        let home = Home::at(t.path().join("h")).unwrap();
        home.ensure().unwrap();
        for d in [home.root().to_owned(), home.run_dir(), home.logs_dir()] {
            let mode = fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        home.check().unwrap();
    }

    #[test]
    fn ensure_makes_missing_parents() {
        let t = TempDir::new("home");
        let home = Home::at(t.path().join("a/b/c")).unwrap();
        home.ensure().unwrap();
        assert_eq!(fs::metadata(home.root()).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(home.run_dir().is_dir());
    }

    #[test]
    fn writable_or_foreign_dirs_are_refused() {
        let t = TempDir::new("home");
        let home = Home::at(t.path().join("h")).unwrap();
        home.ensure().unwrap();
        fs::set_permissions(home.run_dir(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = home.check().unwrap_err();
        assert!(matches!(err, HomeError::Writable { .. }), "{err}");
        assert!(err.to_string().contains("chmod 700"), "{err}");
    }

    #[test]
    fn symlinks_and_files_are_refused() {
        let t = TempDir::new("home");
        let real = t.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(check_private_dir(&link), Err(HomeError::Symlink(_))));
        let file = t.path().join("file");
        fs::write(&file, b"").unwrap();
        assert!(matches!(ensure_private_dir(&file), Err(HomeError::NotADirectory(_))));
    }

    #[test]
    fn relative_home_is_refused() {
        assert!(matches!(Home::at(PathBuf::from("rel")), Err(HomeError::Relative(_))));
    }
}
