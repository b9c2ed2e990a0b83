//! The exports manifest (`molt_exports.json`): which entries a deployment enables, with what
//! options, and the app's own settings sections. An entry the manifest does not list is
//! answered NotFound; a manifest that names an entry this worker does not have is refused at
//! start-up, so a typo cannot silently disable an endpoint. docs/operations.md has the format.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Per-entry options.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EntryOptions {
    /// Deadline applied to calls that carry none (deadline 0); absent means no deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_timeout_ms: Option<u64>,
    /// Whether a client may re-send a call to this entry after a worker restart. Informs
    /// clients; the worker runs the call the same way either way.
    #[serde(default)]
    pub idempotent: bool,
    /// Most calls of this entry admitted at once (queued or running); more are answered Busy.
    /// Absent means only the admission queue and the compute pool bound it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Largest payload a call may carry, in bytes; a larger one is answered InvalidInput
    /// before it is decoded. Absent means only the frame limit bounds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payload_bytes: Option<u64>,
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
        if let Some(bytes) = self.max_payload_bytes {
            write!(f, ", max_payload_bytes={bytes}")?;
        }
        if self.idempotent {
            f.write_str(", idempotent")?;
        }
        Ok(())
    }
}

/// A parsed manifest.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Enabled entries by name.
    pub entries: BTreeMap<String, EntryOptions>,
    /// The app's own settings, by section (read at start-up through `Startup::settings`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, serde_json::Value>,
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
        known: Vec<String>,
    },
    /// A concurrency limit of zero would disable the entry; leave it out of the manifest.
    ZeroConcurrency(String),
    /// Neither `--exports` nor an embedded manifest says what to enable.
    Missing,
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
            Self::Missing => f.write_str(
                "no exports manifest: pass --exports PATH (this worker embeds no default)",
            ),
        }
    }
}

impl std::error::Error for ManifestError {}

impl Manifest {
    /// Parses a manifest and checks every name against `known`.
    pub fn parse(text: &str, known: &[&str]) -> Result<Self, ManifestError> {
        let manifest: Manifest = serde_json::from_str(text).map_err(ManifestError::Parse)?;
        for (name, options) in &manifest.entries {
            if !known.contains(&name.as_str()) {
                return Err(ManifestError::UnknownEntry {
                    name: name.clone(),
                    known: known.iter().map(|&name| name.to_owned()).collect(),
                });
            }
            if options.max_concurrency == Some(0) {
                return Err(ManifestError::ZeroConcurrency(name.clone()));
            }
        }
        Ok(manifest)
    }

    /// Reads and parses the manifest at `path`, or else parses `embedded`.
    pub fn load(
        path: Option<&Path>,
        embedded: Option<&str>,
        known: &[&str],
    ) -> Result<Self, ManifestError> {
        match (path, embedded) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(ManifestError::Read)?;
                Self::parse(&text, known)
            }
            (None, Some(text)) => Self::parse(text, known),
            (None, None) => Err(ManifestError::Missing),
        }
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
        let text = r#"{"entries": {"spin": {"default_timeout_ms": 250, "idempotent": true, "max_concurrency": 2, "max_payload_bytes": 9}}}"#;
        let options = &Manifest::parse(text, KNOWN).unwrap().entries["spin"];
        assert_eq!(options.default_timeout(), Some(Duration::from_millis(250)));
        assert!(options.idempotent);
        assert_eq!(options.max_concurrency, Some(2));
        assert_eq!(options.max_payload_bytes, Some(9));
    }

    #[test]
    fn settings_sections_are_kept_for_the_app() {
        let text = r#"{"entries": {}, "settings": {"database": {"pool_size": 4}}}"#;
        let manifest = Manifest::parse(text, KNOWN).unwrap();
        assert_eq!(manifest.settings["database"]["pool_size"], 4);
    }

    #[test]
    fn a_printed_manifest_parses_back_to_itself() {
        let text =
            r#"{"entries": {"spin": {"max_concurrency": 2}, "echo": {}}, "settings": {"x": [1]}}"#;
        let manifest = Manifest::parse(text, KNOWN).unwrap();
        let printed = serde_json::to_string(&manifest).unwrap();
        assert_eq!(Manifest::parse(&printed, KNOWN).unwrap(), manifest);
    }

    #[test]
    fn an_embedded_manifest_is_used_unless_a_path_is_given() {
        let embedded = r#"{"entries": {"echo": {}}}"#;
        let manifest = Manifest::load(None, Some(embedded), KNOWN).unwrap();
        assert!(manifest.entries.contains_key("echo"));
        assert!(matches!(
            Manifest::load(None, None, KNOWN),
            Err(ManifestError::Missing)
        ));
        assert!(matches!(
            Manifest::load(
                Some(Path::new("/nonexistent/m.json")),
                Some(embedded),
                KNOWN
            ),
            Err(ManifestError::Read(_))
        ));
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
}
