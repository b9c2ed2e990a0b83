//! The exports manifest (`molt_exports.json`): which entries a deployment enables, and with
//! what options. An entry the manifest does not list is answered NotFound; a manifest that
//! names an entry this worker does not have is refused at start-up, so a typo cannot silently
//! disable an endpoint.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Per-entry options.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EntryOptions {
    /// Deadline applied to calls that carry none (deadline 0); absent means no deadline.
    #[serde(default)]
    pub default_timeout_ms: Option<u64>,
    /// Whether a client may re-send a call to this entry after a worker restart. Informs
    /// clients; the worker runs the call the same way either way.
    #[serde(default)]
    pub idempotent: bool,
    /// Most calls of this entry admitted at once (queued or running); more are answered Busy.
    /// Absent means only the admission queue and the compute pool bound it.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
}

impl EntryOptions {
    /// The default timeout as a duration, if any.
    pub fn default_timeout(&self) -> Option<Duration> {
        self.default_timeout_ms
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis)
    }
}

impl fmt::Display for EntryOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.default_timeout_ms {
            Some(ms) if ms > 0 => write!(f, "default_timeout_ms={ms}")?,
            _ => f.write_str("no default timeout")?,
        }
        if let Some(limit) = self.max_concurrency {
            write!(f, ", max_concurrency={limit}")?;
        }
        if self.idempotent {
            f.write_str(", idempotent")?;
        }
        Ok(())
    }
}

/// A parsed manifest.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Enabled entries by name.
    pub entries: BTreeMap<String, EntryOptions>,
}

/// Why a manifest was refused; displayed as one line.
#[derive(Debug)]
pub enum ManifestError {
    /// The file could not be read.
    Read(std::io::Error),
    /// The file is not a valid manifest.
    Parse(serde_json::Error),
    /// The manifest names an entry this worker does not have.
    UnknownEntry {
        /// The name in the manifest.
        name: String,
        /// The names this worker knows.
        known: Vec<&'static str>,
    },
    /// A concurrency limit of zero would disable the entry; leave it out of the manifest.
    ZeroConcurrency(String),
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(err) => write!(f, "cannot read the exports manifest: {err}"),
            Self::Parse(err) => write!(f, "invalid exports manifest: {err}"),
            Self::UnknownEntry { name, known } => {
                write!(
                    f,
                    "exports manifest names unknown entry {name:?} (known: {})",
                    known.join(", ")
                )
            }
            Self::ZeroConcurrency(name) => {
                write!(
                    f,
                    "exports manifest: max_concurrency of {name:?} must be at least 1"
                )
            }
        }
    }
}

impl std::error::Error for ManifestError {}

impl Manifest {
    /// Parses a manifest and checks every name against `known`.
    pub fn parse(text: &str, known: &[&'static str]) -> Result<Self, ManifestError> {
        let manifest: Manifest = serde_json::from_str(text).map_err(ManifestError::Parse)?;
        for (name, options) in &manifest.entries {
            if !known.contains(&name.as_str()) {
                return Err(ManifestError::UnknownEntry {
                    name: name.clone(),
                    known: known.to_vec(),
                });
            }
            if options.max_concurrency == Some(0) {
                return Err(ManifestError::ZeroConcurrency(name.clone()));
            }
        }
        Ok(manifest)
    }

    /// Reads and parses the manifest at `path`.
    pub fn load(path: &Path, known: &[&'static str]) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(ManifestError::Read)?;
        Self::parse(&text, known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["echo", "spin"];

    #[test]
    fn options_default_when_left_out() {
        let manifest = Manifest::parse(r#"{"entries": {"echo": {}}}"#, KNOWN).unwrap();
        assert_eq!(manifest.entries["echo"], EntryOptions::default());
    }

    #[test]
    fn every_option_parses() {
        let text = r#"{"entries": {"spin": {"default_timeout_ms": 250, "idempotent": true, "max_concurrency": 2}}}"#;
        let options = &Manifest::parse(text, KNOWN).unwrap().entries["spin"];
        assert_eq!(options.default_timeout(), Some(Duration::from_millis(250)));
        assert!(options.idempotent);
        assert_eq!(options.max_concurrency, Some(2));
    }

    #[test]
    fn an_unknown_entry_is_refused_by_name() {
        let err = Manifest::parse(r#"{"entries": {"ecko": {}}}"#, KNOWN).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"exports manifest names unknown entry "ecko" (known: echo, spin)"#
        );
    }

    #[test]
    fn misspelled_options_are_refused() {
        assert!(Manifest::parse(r#"{"entries": {"echo": {"timeout": 5}}}"#, KNOWN).is_err());
    }

    #[test]
    fn zero_concurrency_is_refused() {
        assert!(
            Manifest::parse(r#"{"entries": {"echo": {"max_concurrency": 0}}}"#, KNOWN).is_err()
        );
    }

    #[test]
    fn the_shipped_manifests_name_only_known_entries() {
        let known: Vec<&'static str> = crate::entries::registry()
            .iter()
            .map(|entry| entry.name())
            .collect();
        for file in ["molt_exports.json", "molt_exports.test.json"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(file);
            Manifest::load(&path, &known).unwrap_or_else(|err| panic!("{file}: {err}"));
        }
    }
}
