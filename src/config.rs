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
    /// Lets other services start the agent with a webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerConfig>,
}

/// A webhook trigger: `POST /webhooks/{agent}` (or `path`) starts a task of the agent.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// The trigger type; only `webhook` for now.
    #[serde(rename = "type")]
    pub kind: TriggerKind,
    /// The URL path (starting with `/webhooks/`); default `/webhooks/{agent}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Accepted HTTP methods; default `[POST]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Shared secret the sender signs with; `${NAME}` reads the environment variable NAME.
    /// Without a secret, anyone may call the trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// How requests are signed; default `hmac-sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureScheme>,
    /// The header of an `hmac-sha256` signature; default `X-Webhook-Signature`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_header: Option<String>,
    /// How the request becomes the agent's message.
    #[serde(default)]
    pub input: TriggerInput,
    /// How the sender is answered.
    #[serde(default)]
    pub response: TriggerResponse,
}

/// Trigger types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TriggerKind {
    Webhook,
}

/// Signature schemes of incoming webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureScheme {
    /// Hex HMAC-SHA256 of the body (optionally `sha256=`), in `signature_header`.
    HmacSha256,
    /// GitHub's `X-Hub-Signature-256: sha256=<hex>`.
    Github,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`; 5-minute
    /// tolerance, replays refused.
    StandardWebhooks,
}

/// Templates (Jinja2 syntax) over `body`, `raw`, `headers`, `query`, `method` and `path`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerInput {
    /// The message text; default: the raw body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The context id (tasks with the same one share a session); default: a new context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
}

/// How a webhook is answered.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerResponse {
    #[serde(default)]
    pub mode: ResponseMode,
    /// How long `sync` waits for the turn to end before answering 202 (e.g. 30s).
    #[serde(default = "default_trigger_timeout")]
    pub timeout: String,
    /// Where `callback` POSTs the finished task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Let the sender choose the callback URL with an `X-Callback-URL` header.
    #[serde(default)]
    pub allow_callback_header: bool,
    /// Standard Webhooks secret (`whsec_...`) callbacks are signed with; default: `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_secret: Option<String>,
}

impl Default for TriggerResponse {
    fn default() -> Self {
        TriggerResponse {
            mode: ResponseMode::default(),
            timeout: default_trigger_timeout(),
            callback_url: None,
            allow_callback_header: false,
            callback_secret: None,
        }
    }
}

fn default_trigger_timeout() -> String {
    "30s".into()
}

/// Response modes of a webhook trigger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResponseMode {
    /// Wait for the turn to end (up to `timeout`) and answer with the agent's output.
    #[default]
    Sync,
    /// Answer 202 with the task id at once.
    Async,
    /// Answer 202 at once; POST the task to the callback URL when the turn ends.
    Callback,
}

impl TriggerConfig {
    /// The accepted methods, upper case.
    pub fn methods(&self) -> Vec<String> {
        match self.methods.is_empty() {
            true => vec!["POST".into()],
            false => self.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
        }
    }

    pub fn accepts(&self, method: &str) -> bool {
        self.methods().iter().any(|m| m.eq_ignore_ascii_case(method))
    }

    /// Checks what serde cannot: the path, templates, timeout, secrets and callback settings.
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| ConfigError { path: format!("{at}.{key}"), message };
        if let Some(path) = &self.path {
            let rest = path.strip_prefix("/webhooks/").unwrap_or("");
            if rest.is_empty() || rest.ends_with('/') || rest.contains("//") || path.contains(['?', '#', ' ']) {
                return Err(err("path", format!("must be /webhooks/ followed by a path, got {path:?}")));
            }
        }
        for method in &self.methods {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(err("methods", format!("not an HTTP method: {method:?}")));
            }
        }
        for (key, value) in [("secret", &self.secret), ("response.callback_secret", &self.response.callback_secret)] {
            if let Some(secret) = value {
                match resolve_env(secret) {
                    Ok(resolved) if resolved.is_empty() => return Err(err(key, "must not be empty".into())),
                    Ok(_) => {}
                    Err(e) => return Err(err(key, e)),
                }
            }
        }
        if self.signature.is_some() && self.secret.is_none() {
            return Err(err("signature", "needs a secret to check signatures with".into()));
        }
        if let Some(header) = &self.signature_header {
            if axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(err("signature_header", format!("not a header name: {header:?}")));
            }
        }
        for (key, template) in [("input.template", &self.input.template), ("input.context_id", &self.input.context_id)]
        {
            if let Some(template) = template {
                crate::webhooks::template::check(template).map_err(|e| err(key, e))?;
            }
        }
        parse_duration(&self.response.timeout).map_err(|e| err("response.timeout", e))?;
        let r = &self.response;
        if r.mode == ResponseMode::Callback && r.callback_url.is_none() && !r.allow_callback_header {
            return Err(err(
                "response.callback_url",
                "callback mode needs a callback_url or allow_callback_header".into(),
            ));
        }
        if let Some(url) = &r.callback_url {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => return Err(err("response.callback_url", format!("not an http(s) URL: {url:?}"))),
            }
        }
        Ok(())
    }
}

impl TriggerResponse {
    /// How long sync mode waits (validated at load).
    pub fn timeout(&self) -> std::time::Duration {
        parse_duration(&self.timeout).unwrap_or(std::time::Duration::from_secs(30))
    }
}

/// Replaces each `${NAME}` with the environment variable NAME; an unset variable is an error.
pub fn resolve_env(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
        let name = &after[..end];
        let value = std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
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
        let mut paths = std::collections::HashSet::new();
        for (name, agent) in &self.agents.0 {
            if let Some(trigger) = &agent.trigger {
                let at = format!("agents.{name}.trigger");
                trigger.validate(&at)?;
                if let Some(path) = &trigger.path {
                    if !paths.insert(path.clone()) {
                        return Err(ConfigError {
                            path: format!("{at}.path"),
                            message: format!("{path} is the path of another agent's trigger"),
                        });
                    }
                }
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
    fn triggers_are_checked_with_the_path_of_the_offending_key() {
        let agent = |trigger: &str| format!("agents:\n  hook:\n    type: echo\n    trigger: {trigger}\n");
        let ok =
            Config::parse(&agent("{type: webhook, secret: s, signature: github, input: {template: 'x {{ body.a }}'}}"));
        assert!(ok.is_ok(), "{ok:?}");
        for (trigger, path, needle) in [
            ("{type: webhook, input: {template: '{{ body.a '}}", "agents.hook.trigger.input.template", "syntax error"),
            ("{type: webhook, path: /hooks/x}", "agents.hook.trigger.path", "/webhooks/"),
            ("{type: webhook, secret: '${SWITCHYARD_SURELY_UNSET_VAR}'}", "agents.hook.trigger.secret", "not set"),
            ("{type: webhook, signature: github}", "agents.hook.trigger.signature", "needs a secret"),
            ("{type: webhook, response: {timeout: soon}}", "agents.hook.trigger.response.timeout", "invalid duration"),
            ("{type: webhook, response: {mode: callback}}", "agents.hook.trigger.response.callback_url", "callback"),
            ("{type: webhook, methods: ['PO ST']}", "agents.hook.trigger.methods", "HTTP method"),
            ("{type: cron}", "agents.hook.trigger.type", "unknown variant"),
            ("{type: webhook, signature: md5, secret: s}", "agents.hook.trigger.signature", "unknown variant"),
        ] {
            let err = Config::parse(&agent(trigger)).unwrap_err();
            assert_eq!(err.path, path, "{trigger}: {err}");
            assert!(err.message.contains(needle), "{trigger}: {err}");
        }
        // PATH is always set (setting a variable here would race other test threads).
        let path = std::env::var("PATH").unwrap();
        assert_eq!(resolve_env("a-${PATH}-b").unwrap(), format!("a-{path}-b"));
        assert!(resolve_env("${UNCLOSED").is_err());
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
