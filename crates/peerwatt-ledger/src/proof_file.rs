//! The JSON file form of an inclusion proof (`peerwatt ledger prove` writes it,
//! `peerwatt ledger check-proof` reads it). Hex strings carry the exact signed bytes.

use crate::InclusionProof;
use peerwatt_core::{Decode, Encode, Hash, Signed, TreeHead};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The format tag every proof file carries.
pub const FORMAT: &str = "peerwatt-inclusion-proof/1";

/// An inclusion proof as JSON.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProofFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// The public id of the ledger's owner (informational; the signatures decide).
    pub node: String,
    /// The entry's sequence number.
    pub seq: u64,
    /// The signed ledger entry, hex.
    pub entry: String,
    /// The signed tree head the proof leads to, hex.
    pub tree_head: String,
    /// The tree head's size (informational, must match the signed head).
    pub tree_size: u64,
    /// The tree head's root, hex (informational, must match the signed head).
    pub root: String,
    /// The audit path, leaf to root, hex.
    pub path: Vec<String>,
}

/// A proof file that cannot be read as a proof.
#[derive(Debug, Error)]
pub enum ProofFileError {
    /// Not this format.
    #[error("not a peerwatt inclusion proof (format {0:?})")]
    Format(String),
    /// A field is not valid hex or not the right length.
    #[error("field {0} is not valid")]
    Field(&'static str),
    /// The informational fields disagree with the signed head.
    #[error("the tree_size/root/node fields do not match the signed tree head")]
    Inconsistent,
}

impl ProofFile {
    /// The file form of `proof`.
    pub fn from_proof(proof: &InclusionProof) -> ProofFile {
        ProofFile {
            format: FORMAT.to_owned(),
            node: proof.head.signer().to_string(),
            seq: proof.seq,
            entry: hex::encode(&proof.entry),
            tree_head: hex::encode(proof.head.to_bytes()),
            tree_size: proof.head.body().size,
            root: proof.head.body().root.to_hex(),
            path: proof.path.iter().map(Hash::to_hex).collect(),
        }
    }

    /// The proof inside, after checking the file's own consistency (not the proof itself).
    pub fn to_proof(&self) -> Result<InclusionProof, ProofFileError> {
        if self.format != FORMAT {
            return Err(ProofFileError::Format(self.format.clone()));
        }
        let entry = hex::decode(&self.entry).map_err(|_| ProofFileError::Field("entry"))?;
        let head_bytes = hex::decode(&self.tree_head).map_err(|_| ProofFileError::Field("tree_head"))?;
        let head = Signed::<TreeHead>::from_bytes(&head_bytes).map_err(|_| ProofFileError::Field("tree_head"))?;
        let path = self
            .path
            .iter()
            .map(|h| {
                let bytes = hex::decode(h).map_err(|_| ProofFileError::Field("path"))?;
                Ok(Hash(bytes.try_into().map_err(|_| ProofFileError::Field("path"))?))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if head.body().size != self.tree_size
            || head.body().root.to_hex() != self.root
            || head.signer().to_string() != self.node
        {
            return Err(ProofFileError::Inconsistent);
        }
        Ok(InclusionProof { entry, seq: self.seq, head, path })
    }
}
