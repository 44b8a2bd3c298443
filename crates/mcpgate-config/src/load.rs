//! Reading configuration from a file, a string or the embedded default.

use std::{fmt, path::Path};

use serde_json::Value;

use crate::{
    Config,
    validate::{Problem, schema_problems, semantic_problems},
};

/// The embedded default configuration: demo tools on loopback.
const DEFAULT_YAML: &str = include_str!("default.yaml");

/// Syntax of a configuration text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML (`.yaml`, `.yml`).
    Yaml,
    /// TOML (`.toml`).
    Toml,
    /// JSON (`.json`).
    Json,
}

impl Format {
    /// The format a file's extension names.
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Some(Self::Yaml),
            "toml" => Some(Self::Toml),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{origin}: {source}")]
    Io {
        /// File path.
        origin: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not YAML / TOML / JSON, or has an unknown extension.
    #[error("{origin}: {message}")]
    Syntax {
        /// File path or `<embedded default>`.
        origin: String,
        /// What the parser said, with its line and column.
        message: String,
    },
    /// The file parsed but is not a valid configuration.
    #[error("{origin}: {} problem(s)\n{}", problems.len(), ProblemList(problems))]
    Invalid {
        /// File path or `<embedded default>`.
        origin: String,
        /// Every problem found, each with its path.
        problems: Vec<Problem>,
    },
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// The embedded default configuration.
pub fn default_config() -> Result<Config, ConfigError> {
    parse_str(DEFAULT_YAML, Format::Yaml, "<embedded default>")
}

/// Read and validate a configuration file; the format comes from its extension.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let config = load_file_unchecked(path)?;
    let problems = semantic_problems(&config);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid { origin: path.display().to_string(), problems });
    }
    Ok(config)
}

/// Read a configuration file, checking its syntax and shape (the JSON Schema) but not what [`validate`]
/// checks — for callers that add the environment first and then report every remaining problem together.
///
/// [`validate`]: crate::validate
pub fn load_file_unchecked(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let format = Format::from_path(path).ok_or_else(|| ConfigError::Syntax {
        origin: origin.clone(),
        message: "unknown extension; use .yaml, .yml, .toml or .json".into(),
    })?;
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Io { origin: origin.clone(), source })?;
    parse_shape(&text, format, &origin)
}

/// Parse and validate a configuration text: syntax, then the JSON Schema (every violation, unknown fields
/// included), then the checks a schema cannot express. All problems are reported together.
pub fn parse_str(text: &str, format: Format, origin: &str) -> Result<Config, ConfigError> {
    let config = parse_shape(text, format, origin)?;
    let problems = semantic_problems(&config);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid { origin: origin.to_owned(), problems });
    }
    Ok(config)
}

/// Parse a configuration text, checking its syntax and shape but not what [`validate`] checks — like
/// [`load_file_unchecked`], for callers that apply the environment first.
///
/// [`validate`]: crate::validate
pub fn parse_str_unchecked(text: &str, format: Format, origin: &str) -> Result<Config, ConfigError> {
    parse_shape(text, format, origin)
}

/// Whether the document `input` holds an array where the config it gave (`parsed`, serialized) has something
/// else — an object, or nothing (a field serialized only when set). A cheap walk that spares most configs the
/// schema pass.
fn array_for_object(input: &Value, parsed: &Value) -> bool {
    match (input, parsed) {
        (Value::Array(items), Value::Array(parsed)) => {
            items.len() != parsed.len() || items.iter().zip(parsed).any(|(i, p)| array_for_object(i, p))
        }
        (Value::Array(_), _) => true,
        (Value::Object(fields), Value::Object(parsed)) => {
            fields.iter().any(|(key, value)| array_for_object(value, parsed.get(key).unwrap_or(&Value::Null)))
        }
        _ => false,
    }
}

/// Syntax and shape only: the text parses and the types (or, for every problem with its path, the JSON
/// Schema) accept it.
fn parse_shape(text: &str, format: Format, origin: &str) -> Result<Config, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax { origin: origin.to_owned(), message };
    let mut value: Value = match format {
        Format::Yaml => serde_yaml_ng::from_str(text).map_err(|e| syntax(e.to_string()))?,
        Format::Toml => toml::from_str(text).map_err(|e| syntax(e.to_string()))?,
        Format::Json => serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?,
    };
    if value.is_null() {
        value = Value::Object(Default::default());
    }
    let invalid = |problems| ConfigError::Invalid { origin: origin.to_owned(), problems };
    // The schema and the types agree, so a document the types accept needs no schema pass; one they refuse
    // gets it, for every problem with its path rather than serde's first. (Startup stays cheap: generating
    // and compiling the schema is most of a valid config's load time.)
    let config: Config = match serde_json::from_value(value.clone()) {
        // serde's derived structs also take an array (their fields in order), which the schema refuses: where
        // the document holds an array, the schema decides (found by the config fuzz target).
        Ok(config) if array_for_object(&value, &serde_json::to_value(&config).unwrap_or_default()) => {
            let problems = schema_problems(&value);
            if !problems.is_empty() {
                return Err(invalid(problems));
            }
            config
        }
        Ok(config) => config,
        Err(e) => {
            let problems = schema_problems(&value);
            return Err(invalid(if problems.is_empty() {
                vec![Problem::new("", e.to_string())]
            } else {
                problems
            }));
        }
    };
    Ok(config)
}
