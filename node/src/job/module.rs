//! A job's module as the plan holds it: its hash and size, and its bytes
//! once read. A job for the mesh reads a module whose hash is remembered
//! ([`FileHashes`]) only if the daemon's store lacks it: a warm `corral
//! run` of a 27.7 MB module spent 55 ms reading and hashing it.

use std::io::Read;
use std::path::{Path, PathBuf};

use corral_protocol::hash::ContentHash;

use crate::blobs::FileHashes;
use crate::runtime::WasmModule;
use crate::usage::UsageError;

/// A job's module.
#[derive(Clone, Debug)]
pub struct PlanModule {
    /// sha256 of its bytes.
    pub hash: ContentHash,
    /// Its size in bytes.
    pub size: u64,
    bytes: Bytes,
}

#[derive(Clone, Debug)]
enum Bytes {
    Read(WasmModule),
    /// Not read yet: at this path, checked to start as a module does.
    At(PathBuf),
}

impl PlanModule {
    /// A module already read.
    pub fn read(module: WasmModule) -> Self {
        Self {
            hash: module.hash,
            size: module.bytes.len() as u64,
            bytes: Bytes::Read(module),
        }
    }

    /// The module file at `path`, checked as [`load_module`] checks it but
    /// read only to hash it when `memo` does not remember its hash.
    pub fn locate(path: &Path, memo: &mut FileHashes) -> Result<Self, UsageError> {
        let cannot = |e: &dyn std::fmt::Display| {
            UsageError(format!("cannot read module {}: {e}", path.display()))
        };
        let meta = std::fs::metadata(path).map_err(|e| cannot(&e))?;
        if !meta.is_file() {
            // load_module says what is wrong.
            return load_module(path).map(Self::read);
        }
        let mut head = Vec::with_capacity(8);
        std::fs::File::open(path)
            .and_then(|f| f.take(8).read_to_end(&mut head))
            .map_err(|e| cannot(&e))?;
        WasmModule::check(&head, meta.len())
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        let (hash, size) = memo.hash(path).map_err(|e| cannot(&format!("{e:#}")))?;
        Ok(Self {
            hash,
            size,
            bytes: Bytes::At(path.to_path_buf()),
        })
    }

    /// The module's bytes, read now if they were not (and checked to be
    /// the bytes hashed).
    pub fn wasm(&self) -> anyhow::Result<WasmModule> {
        match &self.bytes {
            Bytes::Read(module) => Ok(module.clone()),
            Bytes::At(path) => {
                let module = load_module(path)?;
                anyhow::ensure!(
                    module.hash == self.hash,
                    "module {} changed while the job was being submitted: run again once it \
                     is written",
                    path.display()
                );
                Ok(module)
            }
        }
    }
}

/// Reads and checks the module file.
pub fn load_module(path: &Path) -> Result<WasmModule, UsageError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| UsageError(format!("cannot read module {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(UsageError(format!(
            "module {} is not a file",
            path.display()
        )));
    }
    if meta.len() > crate::runtime::MAX_MODULE_BYTES as u64 {
        return Err(UsageError(format!(
            "module {} is {} bytes; the limit is {}",
            path.display(),
            meta.len(),
            crate::runtime::MAX_MODULE_BYTES
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| UsageError(format!("cannot read module {}: {e}", path.display())))?;
    WasmModule::new(bytes).map_err(|e| UsageError(format!("{}: {e}", path.display())))
}
