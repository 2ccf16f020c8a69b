//! The rigs a lab host serves: every rig file of its rigs directory, loaded and kept
//! with its exact bytes. The server plans a job against the bytes it was advertised
//! (`rig_sha256` of an assignment); an assignment for bytes that are no longer the
//! file's is refused, since the rig it was planned for is not the one on the bench.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proofrig_model::rig::{Rig, RigError};
use proofrig_proto::advert::RigAdvert;
use proofrig_proto::bytes::sha256_hex;

/// One served rig, loaded (`rig.path` and `rig.bytes` are its file and exact bytes),
/// with the digest of those bytes.
#[derive(Debug, Clone)]
pub struct ServedRig {
    pub sha256: String,
    pub rig: Rig,
}

#[derive(Debug, thiserror::Error)]
pub enum RigsError {
    #[error("cannot read the rigs directory {path}: {source}; give the directory holding this lab host's rig files")]
    Read { path: String, source: std::io::Error },
    #[error(transparent)]
    Rig(#[from] RigError),
    #[error("rig `{rig}` is described twice, in {first} and {second}; a rig is known by the `rig:` name in its file, so keep one")]
    Twice { rig: String, first: String, second: String },
}

/// The rigs of one lab host, by name.
#[derive(Debug, Clone, Default)]
pub struct ServedRigs {
    rigs: BTreeMap<String, ServedRig>,
}

impl ServedRigs {
    /// Every `*.yaml` / `*.yml` file of `dir`: each must load (the same located
    /// errors as `proofrig rig check`), and no two may name the same rig.
    pub fn load(dir: &Path) -> Result<ServedRigs, RigsError> {
        let read = |source| RigsError::Read { path: dir.display().to_string(), source };
        let mut paths: Vec<PathBuf> =
            std::fs::read_dir(dir).map_err(read)?.map(|entry| entry.map(|e| e.path())).collect::<Result<_, _>>().map_err(read)?;
        paths.retain(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"));
        paths.sort();
        let mut rigs: BTreeMap<String, ServedRig> = BTreeMap::new();
        for path in paths {
            let rig = Rig::load(&path)?;
            let served = ServedRig { sha256: sha256_hex(&rig.bytes), rig };
            let name = served.rig.name().to_string();
            if let Some(first) = rigs.get(&name) {
                return Err(RigsError::Twice {
                    rig: name,
                    first: first.rig.path.display().to_string(),
                    second: path.display().to_string(),
                });
            }
            rigs.insert(name, served);
        }
        Ok(ServedRigs { rigs })
    }

    pub fn get(&self, name: &str) -> Option<&ServedRig> {
        self.rigs.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.rigs.keys().map(String::as_str)
    }

    /// What the lab host tells the server it serves: each rig file's exact bytes
    /// (which carry secret references only, never values) and digest.
    pub fn adverts(&self) -> Vec<RigAdvert> {
        self.rigs.iter().map(|(name, s)| RigAdvert::new(name.clone(), s.rig.path.display().to_string(), s.rig.bytes.clone())).collect()
    }
}
