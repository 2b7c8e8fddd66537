//! Trigger templates (minijinja, Jinja2 syntax) over the incoming request: `body` (the JSON
//! body, or the text when it is not JSON), `raw` (the body as text), `headers` (names in lower
//! case), `query`, `method` and `path`. Undefined values are errors, so a template that reads a
//! field the request lacks says so instead of rendering an empty string (`| default(...)`
//! makes a field optional).

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// What a template sees.
#[derive(Debug, Serialize)]
pub struct RequestView {
    pub body: serde_json::Value,
    pub raw: String,
    pub headers: BTreeMap<String, String>,
    pub query: BTreeMap<String, String>,
    pub method: String,
    pub path: String,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// Checks a template's syntax (at configuration load).
pub fn check(template: &str) -> Result<(), String> {
    environment().template_from_str(template).map(drop).map_err(|e| describe(&e))
}

/// Renders a template over a request.
pub fn render(template: &str, request: &RequestView) -> Result<String, String> {
    environment().render_str(template, request).map_err(|e| describe(&e))
}

/// The error with its cause and line, in one line.
fn describe(e: &minijinja::Error) -> String {
    let mut text = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        text.push_str(&format!(" (line {line})"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: serde_json::Value) -> RequestView {
        RequestView {
            raw: body.to_string(),
            body,
            headers: BTreeMap::from([("x-github-event".to_string(), "pull_request".to_string())]),
            query: BTreeMap::from([("ref".to_string(), "main".to_string())]),
            method: "POST".into(),
            path: "/webhooks/github-pr".into(),
        }
    }

    #[test]
    fn renders_body_headers_and_query() {
        let r = request(serde_json::json!({"pull_request": {"title": "Fix it"}, "sender": {"login": "ana"}}));
        let text = "PR {{ body.pull_request.title }} by {{ body.sender.login }} ({{ headers['x-github-event'] }}, {{ query.ref }})";
        assert_eq!(render(text, &r).unwrap(), "PR Fix it by ana (pull_request, main)");
        assert_eq!(render("{{ body.missing | default('none') }}", &r).unwrap(), "none");
    }

    #[test]
    fn errors_name_the_problem() {
        let r = request(serde_json::json!({}));
        let err = render("PR {{ body.pull_request.title }}", &r).unwrap_err();
        assert!(err.contains("undefined"), "{err}");
        let err = check("{{ body.title ").unwrap_err();
        assert!(err.contains("syntax error") && err.contains("line 1"), "{err}");
        assert!(check("{% if body.x %}{{ body.x }}{% endif %}").is_ok());
    }
}
