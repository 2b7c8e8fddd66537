//! The agents configuration (`config.yaml`): its types, loading and validation.
//!
//! The YAML shape is a contract that tools outside the project rely on; `GET /schema` serves the
//! JSON Schema generated from these types.

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Agent served at `/.well-known/agent-card.json`; default: the first agent in file order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_agent: Option<String>,
    /// Agents by name; the name is the path segment in `/agents/{name}`.
    pub agents: Agents,
}

/// Agents in file order (order decides the default agent).
#[derive(Debug, Clone, Default, JsonSchema)]
pub struct Agents(#[schemars(with = "BTreeMap<String, AgentConfig>")] pub Vec<(String, AgentConfig)>);

/// One agent.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The agent runtime.
    #[serde(rename = "type")]
    pub kind: AgentKind,
    /// Shown in the agent card.
    #[serde(default)]
    pub description: String,
    /// Who may see and call the agent (enforced once authentication is enabled).
    #[serde(default)]
    pub visibility: Visibility,
    /// State in which the echo agent ends each turn.
    #[serde(default)]
    pub end_state: EndState,
    /// Delay between streamed chunks, in milliseconds.
    #[serde(default)]
    pub chunk_delay_ms: u64,
    /// Skills listed in the agent card.
    #[serde(default)]
    pub skills: Vec<SkillConfig>,
}

/// Agent runtimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    /// Replies with the user's text, streamed word by word.
    Echo,
}

impl<'de> Deserialize<'de> for AgentKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        match name.as_str() {
            "echo" => Ok(AgentKind::Echo),
            other => Err(serde::de::Error::custom(format!("unknown agent type {other:?} (known types: echo)"))),
        }
    }
}

/// Who may see and call an agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Listed and callable by everyone.
    #[default]
    Public,
    /// Callable with a valid token only.
    Internal,
    /// Never listed; callable with the admin secret only.
    Private,
}

/// The state an echo turn ends in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EndState {
    /// The task stays open for more messages.
    #[default]
    InputRequired,
    /// The task ends.
    Completed,
}

/// A skill in the agent card.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SkillConfig {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub examples: Vec<String>,
    /// `internal` skills are listed only in the authenticated extended card; `private` ones
    /// in no card.
    #[serde(default)]
    pub visibility: Visibility,
}

impl<'de> Deserialize<'de> for Agents {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Agents;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of agent names to agent configurations")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Agents, A::Error> {
                let mut agents = Vec::new();
                while let Some((name, agent)) = map.next_entry::<String, AgentConfig>()? {
                    if agents.iter().any(|(n, _)| n == &name) {
                        return Err(serde::de::Error::custom(format!("duplicate agent `{name}`")));
                    }
                    agents.push((name, agent));
                }
                Ok(Agents(agents))
            }
        }
        d.deserialize_map(Visitor)
    }
}

impl Serialize for Agents {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, agent) in &self.0 {
            map.serialize_entry(name, agent)?;
        }
        map.end()
    }
}

/// A configuration error with the path of the offending key.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Dotted path of the offending key (`agents.echo.type`), or the file for I/O errors.
    pub path: String,
    pub message: String,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { path: path.display().to_string(), message: format!("cannot read: {e}") })?;
        Config::parse(&text)
    }

    /// Parses and validates YAML (JSON is YAML too).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let de = serde_yaml::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let text = inner.to_string();
            // serde_yaml starts nested errors with the path too; say it once.
            let text = match text.split_once(": ") {
                Some((head, rest)) if !head.is_empty() && path.starts_with(head) => rest.to_string(),
                _ => text,
            };
            let message = match inner.location() {
                Some(loc) => format!("{} (line {}, column {})", strip_location(&text), loc.line(), loc.column()),
                None => text,
            };
            ConfigError { path: if path == "." { "config".into() } else { path }, message }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.agents.0.is_empty() {
            return Err(ConfigError { path: "agents".into(), message: "at least one agent is required".into() });
        }
        for (name, _) in &self.agents.0 {
            if !is_valid_agent_name(name) {
                return Err(ConfigError {
                    path: format!("agents.{name}"),
                    message: "agent names are 1-64 letters, digits, `-` or `_`".into(),
                });
            }
        }
        if let Some(default) = &self.default_agent {
            if self.agent(default).is_none() {
                return Err(ConfigError {
                    path: "default_agent".into(),
                    message: format!("no agent named `{default}` in agents"),
                });
            }
        }
        Ok(())
    }

    /// The agent with this name.
    pub fn agent(&self, name: &str) -> Option<&AgentConfig> {
        self.agents.0.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    /// Name of the agent served at the host's well-known card.
    pub fn default_agent_name(&self) -> &str {
        self.default_agent.as_deref().unwrap_or_else(|| self.agents.0[0].0.as_str())
    }

    /// The JSON Schema of the configuration file, generated from these types.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Config)).unwrap_or_default()
    }
}

/// serde_yaml appends "at line X column Y"; the path already says where, keep one location.
fn strip_location(message: &str) -> &str {
    match message.find(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

/// Agent names are URL path segments: 1-64 of letters, digits, `-`, `_`.
pub fn is_valid_agent_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_agent_type_names_the_key() {
        let err = Config::parse("agents:\n  helper:\n    type: llmm\n").unwrap_err();
        assert_eq!(err.path, "agents.helper.type");
        assert!(err.message.starts_with(r#"unknown agent type "llmm""#), "{}", err.message);
    }

    #[test]
    fn default_agent_is_first_in_file_order() {
        let c = Config::parse("agents:\n  zeta: {type: echo}\n  alpha: {type: echo}\n").unwrap();
        assert_eq!(c.default_agent_name(), "zeta");
    }

    #[test]
    fn unknown_default_agent_is_rejected() {
        let err = Config::parse("default_agent: nope\nagents:\n  a: {type: echo}\n").unwrap_err();
        assert_eq!(err.path, "default_agent");
    }

    #[test]
    fn unknown_key_is_rejected_with_its_path() {
        let err = Config::parse("agents:\n  a: {type: echo, colour: red}\n").unwrap_err();
        assert_eq!(err.path, "agents.a.colour");
        assert!(err.message.contains("colour"), "{}", err.message);
    }
}

/// Parses a duration such as `500ms`, `30s`, `15m`, `12h` or `7d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("invalid duration `{text}`: expected e.g. 30s, 15m, 7d"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        other => return Err(format!("invalid duration unit `{other}` in `{text}`: use ms, s, m, h or d")),
    };
    Ok(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod schema_file {
    use super::Config;

    /// `proto-schemas/config.schema.json` is the generated schema, committed for tools outside
    /// the project; it must not drift from the types. `UPDATE_SCHEMAS=1 cargo test` rewrites it.
    #[test]
    fn committed_config_schema_matches_the_types() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/proto-schemas/config.schema.json");
        let generated = serde_json::to_string_pretty(&Config::json_schema()).unwrap() + "\n";
        if std::env::var_os("UPDATE_SCHEMAS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(committed == generated, "{path} is stale: run `UPDATE_SCHEMAS=1 cargo test --release --lib`");
    }
}
