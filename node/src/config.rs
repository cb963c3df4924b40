//! Where a node keeps its state: the data directory and what lives in it.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The resolved data directory of this node.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// `--data-dir` / `CORRAL_DATA_DIR` if given, else `$XDG_DATA_HOME/corral`
    /// (`~/.local/share/corral`). Created with mode 0700: it holds keys and
    /// compiled code that is loaded without re-validation.
    pub fn resolve(explicit: Option<PathBuf>) -> anyhow::Result<Self> {
        let root = match explicit {
            Some(dir) => dir,
            None => dirs::data_dir()
                .map(|d| d.join("corral"))
                .context("cannot find a data directory for this user; pass --data-dir DIR")?,
        };
        create_private_dir(&root)
            .with_context(|| format!("cannot create the data directory {}", root.display()))?;
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Compiled-module cache of the JIT.
    pub fn module_cache(&self) -> PathBuf {
        self.root.join("cache").join("modules")
    }
}

/// Creates `dir` (and parents) and makes it private to this user.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
