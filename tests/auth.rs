//! Authentication, apps and visibility over HTTP: the admin secret, the apps API, app tokens
//! (minting, verification, revocation, key rotation), tenant routing, and forged tokens.

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use switchyard::auth::{keys, Claims};

const AUTH_CONFIG: &str = "
agents:
  echo:
    type: echo
    end_state: completed
    skills:
      - {id: echo, name: Echo}
      - {id: secret-skill, name: Secret skill, visibility: internal}
  inner:
    type: echo
    visibility: internal
    end_state: completed
  hidden:
    type: echo
    visibility: private
    end_state: completed
";

const APP_CONFIG: &str = r#"{"agents": {"helper": {"type": "echo", "visibility": "internal", "end_state": "completed"},
                               "open": {"type": "echo", "end_state": "completed"},
                               "vault": {"type": "echo", "visibility": "private", "end_state": "completed"}}}"#;

async fn start() -> Server {
    Server::start_with(AUTH_CONFIG, ":memory:", &["--auth-secret", ADMIN_SECRET]).await
}

/// Creates an app; returns (app id, token).
async fn create_app(s: &Server, name: &str) -> (String, String) {
    let (status, body) = s.admin("POST", "/admin/apps", Some(json!({"name": name, "config_json": APP_CONFIG}))).await;
    assert_eq!(status, 201, "{body}");
    (body["app"]["id"].as_str().unwrap().to_string(), body["access_token"].as_str().unwrap().to_string())
}

async fn send_as(s: &Server, token: Option<&str>, agent: &str) -> (u16, Value) {
    s.call_as(token, agent, "message/send", json!({"message": user_message("hello there")})).await
}

fn assert_unauthorized(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(body, &json!({"error": "Unauthorized"}), "{what}: nothing more is said");
}

#[tokio::test]
async fn admin_api_exists_only_with_a_secret_and_needs_it() {
    let open = Server::start_with(AUTH_CONFIG, ":memory:", &[]).await;
    for path in ["/admin/apps", "/admin/queue/stats", "/admin/jwks"] {
        assert_eq!(open.request("GET", path, Some(ADMIN_SECRET), None).await.0, 404, "{path} without --auth-secret");
    }
    assert_eq!(open.get_json("/.well-known/jwks.json").await.0, 200, "the JWKS is always public");

    let s = start().await;
    // Near misses of the secret too: the comparison is of SHA-256 digests in constant time, so
    // no prefix, extension or case change gets further than a wrong secret.
    let prefix = &ADMIN_SECRET[..ADMIN_SECRET.len() - 1];
    let extended = format!("{ADMIN_SECRET}x");
    let upper = ADMIN_SECRET.to_uppercase();
    let near_misses = [
        (None, "no credentials"),
        (Some("wrong"), "wrong secret"),
        (Some(""), "empty bearer"),
        (Some(prefix), "the secret less its last byte"),
        (Some(extended.as_str()), "the secret with a byte more"),
        (Some(upper.as_str()), "the secret in capitals"),
    ];
    for (bearer, what) in near_misses {
        let (status, body, challenge) = s.request("GET", "/admin/apps", bearer, None).await;
        assert_unauthorized(status, &body, what);
        assert_eq!(challenge.as_deref(), Some("Bearer"), "{what}");
    }
    let basic = s.client.get(s.url("/admin/apps")).header("authorization", format!("Basic {ADMIN_SECRET}"));
    assert_eq!(basic.send().await.unwrap().status(), 401, "only the Bearer scheme");
    let lower = s.client.get(s.url("/admin/apps")).header("authorization", format!("bearer {ADMIN_SECRET}"));
    assert_eq!(lower.send().await.unwrap().status(), 200, "the scheme is case-insensitive");
    let (status, jwks, _) = s.request("GET", "/admin/jwks", None, None).await;
    assert_eq!(status, 200, "public key material needs no secret: {jwks}");
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
        (Some("EC"), Some("P-256"), Some("ES256"))
    );
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kid"].as_str().map(str::len), Some(43), "RFC 7638 SHA-256 thumbprint: {key}");
    assert!(key.get("d").is_none(), "no private material: {key}");

    let (_, health) = s.get_json("/health").await;
    assert_eq!(health["auth"]["enabled"], true, "{health}");
    assert_eq!(health["auth"]["type"], "jwt", "{health}");
    assert_eq!(health["auth"]["issuer"], "switchyard", "without --public-url: {health}");
    assert_eq!(health["admin"]["enabled"], true, "{health}");
    assert_eq!(open.get_json("/health").await.1["auth"]["enabled"], false);
}

#[tokio::test]
async fn apps_are_created_validated_updated_and_deleted() {
    let s = start().await;
    let (status, list) = s.admin("GET", "/admin/apps", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["apps"].as_array().map(|a| a.len()), Some(1), "only the default app: {list}");
    assert_eq!((list["apps"][0]["id"].as_str(), list["apps"][0]["name"].as_str()), (Some("default"), Some("default")));

    let (status, created) =
        s.admin("POST", "/admin/apps", Some(json!({"name": "team-a", "config_json": APP_CONFIG}))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["token_type"], "bearer");
    assert_eq!(created["issuer"], s.get_json("/health").await.1["auth"]["issuer"]);
    assert_eq!(created["app"]["name"], "team-a");
    for field in ["id", "config_json", "created_at", "updated_at"] {
        assert!(created["app"][field].is_string(), "{field}: {created}");
    }
    let id = created["app"]["id"].as_str().unwrap().to_string();
    let token = created["access_token"].as_str().unwrap().to_string();

    let cases = [
        (json!({"name": "team-a", "config_json": APP_CONFIG}), 409, "already exists"),
        (json!({"name": "bad name!", "config_json": APP_CONFIG}), 400, "name"),
        (json!({"name": "x".repeat(65), "config_json": APP_CONFIG}), 400, "name"),
        (json!({"config_json": APP_CONFIG}), 400, "name is required"),
        (json!({"name": "team-b"}), 400, "config_json is required"),
        (json!({"name": "team-b", "config_json": 7}), 400, "config_json"),
        (
            json!({"name": "team-b", "config_json": {"agents": {"helper": {"type": "llmm"}}}}),
            400,
            r#"agents.helper.type: unknown agent type "llmm""#,
        ),
        (json!({"name": "team-b", "config_json": {"agents": {}}}), 400, "agents: at least one agent"),
        (json!({"name": "team-b", "config_json": APP_CONFIG, "colour": 1}), 400, "colour"),
    ];
    for (body, want_status, want_text) in cases {
        let (status, answer) = s.admin("POST", "/admin/apps", Some(body.clone())).await;
        assert_eq!(status, want_status, "{body} → {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(want_text), "{body}: {error:?} should say {want_text:?}");
    }
    let (status, body, _) = s.request("POST", "/admin/apps", Some(ADMIN_SECRET), None).await;
    assert_eq!(status, 400, "no body: {body}");

    let (status, shown) = s.admin("GET", &format!("/admin/apps/{id}"), None).await;
    assert_eq!((status, shown["name"].as_str()), (200, Some("team-a")), "{shown}");
    assert_eq!(s.admin("GET", "/admin/apps/app_nope", None).await.0, 404);
    assert_eq!(s.admin("GET", "/admin/apps", None).await.1["apps"].as_array().map(|a| a.len()), Some(2));

    // The new configuration applies at once: `open` is gone, `fresh` answers.
    assert_eq!(send_as(&s, Some(&token), "open").await.0, 200);
    let update =
        json!({"name": "team-a2", "config_json": {"agents": {"fresh": {"type": "echo", "end_state": "completed"}}}});
    let (status, updated) = s.admin("PUT", &format!("/admin/apps/{id}"), Some(update)).await;
    assert_eq!((status, updated["name"].as_str()), (200, Some("team-a2")), "{updated}");
    assert_eq!(send_as(&s, Some(&token), "open").await.0, 404);
    let (status, task) = send_as(&s, Some(&token), "fresh").await;
    assert_eq!((status, task["result"]["status"]["state"].as_str()), (200, Some("completed")), "{task}");
    let bad = json!({"config_json": {"agents": {"x": {"type": "echo", "visibility": "secretive"}}}});
    let (status, body) = s.admin("PUT", &format!("/admin/apps/{id}"), Some(bad)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.starts_with("agents.x.visibility:")), "{body}");
    assert_eq!(s.admin("PUT", &format!("/admin/apps/{id}"), Some(json!({}))).await.0, 400, "nothing to update");
    assert_eq!(s.admin("PUT", "/admin/apps/app_nope", Some(json!({"name": "z"}))).await.0, 404);

    let (status, body) = s.admin("DELETE", "/admin/apps/default", None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(s.admin("PUT", "/admin/apps/default", Some(json!({"name": "other"}))).await.0, 403);
    // A turn of the app is running when it is deleted: it is stopped and its task removed.
    let slow = json!({"config_json": {"agents": {"fresh": {"type": "echo", "chunk_delay_ms": 200}}}});
    assert_eq!(s.admin("PUT", &format!("/admin/apps/{id}"), Some(slow)).await.0, 200);
    let params = json!({"message": user_message("one two three four five six seven eight nine ten"),
                        "configuration": {"blocking": false}});
    let (status, running) = s.call_as(Some(&token), "fresh", "message/send", params).await;
    assert_eq!(status, 200, "{running}");
    let running_stats = s.admin("GET", "/admin/queue/stats", None).await.1;
    assert_eq!(s.admin("DELETE", &format!("/admin/apps/{id}"), None).await, (204, Value::Null));
    for _ in 0..100 {
        let stats = s.admin("GET", "/admin/queue/stats", None).await.1;
        if stats["canceled"] == running_stats["canceled"].as_u64().unwrap_or(0) + 1 && stats["running"] == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let stats = s.admin("GET", "/admin/queue/stats", None).await.1;
    assert_eq!(
        (stats["canceled"].as_u64(), stats["running"].as_u64(), stats["pending"].as_u64()),
        (Some(1), Some(0), Some(0)),
        "the deleted app's turn was stopped: {stats}"
    );
    assert_eq!(s.admin("DELETE", &format!("/admin/apps/{id}"), None).await.0, 404);
    assert_eq!(s.admin("GET", &format!("/admin/apps/{id}"), None).await.0, 404);
    let (status, body) = send_as(&s, Some(&token), "fresh").await;
    assert_unauthorized(status, &body, "a deleted app's token");
    // The name is free again.
    assert_eq!(
        s.admin("POST", "/admin/apps", Some(json!({"name": "team-a2", "config_json": APP_CONFIG}))).await.0,
        201
    );
}

#[tokio::test]
async fn visibility_decides_who_sees_and_calls_each_agent() {
    let s = start().await;
    let (_, token) = create_app(&s, "team-v").await;

    // Anonymous callers: public only.
    assert_eq!(send_as(&s, None, "echo").await.0, 200);
    let (status, body) = send_as(&s, None, "inner").await;
    assert_unauthorized(status, &body, "anonymous on an internal agent");
    assert_eq!(send_as(&s, None, "hidden").await.0, 404);
    assert_eq!(s.get_json("/agents/hidden").await.0, 404);
    assert_eq!(s.request("GET", "/agents/inner", None, None).await.0, 401);
    let (_, listed) = s.get_json("/agents").await;
    let names = |list: &Value| -> Vec<String> {
        list["agents"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names(&listed), ["echo"], "{listed}");

    // The admin secret: the default app, private agents included (but never listed).
    assert_eq!(send_as(&s, Some(ADMIN_SECRET), "inner").await.0, 200);
    let (status, task) = send_as(&s, Some(ADMIN_SECRET), "hidden").await;
    assert_eq!((status, task["result"]["status"]["state"].as_str()), (200, Some("completed")), "{task}");
    let (_, listed, _) = s.request("GET", "/agents", Some(ADMIN_SECRET), None).await;
    assert_eq!(names(&listed), ["echo", "inner"], "{listed}");

    // An app token: that app's agents; internal yes, private no; the default app's agents are
    // not this app's.
    let (_, listed, _) = s.request("GET", "/agents", Some(&token), None).await;
    assert_eq!(names(&listed), ["helper", "open"], "{listed}");
    assert_eq!(send_as(&s, Some(&token), "helper").await.0, 200);
    assert_eq!(send_as(&s, Some(&token), "vault").await.0, 404);
    assert_eq!(send_as(&s, Some(&token), "echo").await.0, 404, "the default app's agent");
    assert_eq!(send_as(&s, None, "helper").await.0, 404, "anonymous callers reach the default app");
    let (status, card, _) = s.request("GET", "/.well-known/agent-card.json", Some(&token), None).await;
    assert_eq!((status, card["name"].as_str()), (200, Some("helper")), "the app's default agent: {card}");
}

#[tokio::test]
async fn tasks_of_one_app_are_invisible_to_another() {
    let s = start().await;
    let (_, token_a) = create_app(&s, "team-x").await;
    let (_, token_b) = create_app(&s, "team-y").await;
    let (_, task) = send_as(&s, Some(&token_a), "open").await;
    let task_id = task["result"]["id"].as_str().unwrap().to_string();
    let (status, got) = s.call_as(Some(&token_a), "open", "tasks/get", json!({"id": task_id})).await;
    assert_eq!((status, got["result"]["id"].as_str()), (200, Some(task_id.as_str())), "{got}");
    for (token, agent) in [(Some(token_b.as_str()), "open"), (None, "echo"), (Some(ADMIN_SECRET), "echo")] {
        let (status, got) = s.call_as(token, agent, "tasks/get", json!({"id": task_id})).await;
        assert_eq!((status, got["error"]["code"].as_i64()), (200, Some(-32001)), "{agent}: {got}");
        let (_, canceled) = s.call_as(token, agent, "tasks/cancel", json!({"id": task_id})).await;
        assert_eq!(canceled["error"]["code"], -32001, "{canceled}");
        let continued = json!({"message": {"role": "user", "messageId": uuid(), "taskId": task_id,
                                           "parts": [{"kind": "text", "text": "more"}]}});
        let (_, continued) = s.call_as(token, agent, "message/send", continued).await;
        assert_eq!(continued["error"]["code"], -32001, "{continued}");
    }
    let events = s.request("GET", &format!("/agents/open/tasks/{task_id}/events"), Some(&token_b), None).await;
    assert_eq!(events.0, 404, "{events:?}");
}

#[tokio::test]
async fn agent_cards_name_the_scheme_and_the_extended_card_needs_credentials() {
    let s = start().await;
    let (_, card) = s.get_json("/.well-known/agent-card.json").await;
    assert_valid("AgentCard", &card);
    assert_eq!(card["supportsAuthenticatedExtendedCard"], true);
    assert_eq!(card["securitySchemes"]["bearer"]["type"], "http", "{card}");
    assert_eq!(card["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(card["securitySchemes"]["bearer"]["bearerFormat"], "JWT");
    let skills: Vec<&str> = card["skills"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(skills, ["echo"], "internal skills are not in the public card");

    let (status, body, challenge) = s
        .request(
            "POST",
            "/agents/echo",
            None,
            Some(&json!({"jsonrpc": "2.0", "id": 9, "method": "agent/getAuthenticatedExtendedCard"})),
        )
        .await;
    assert_eq!((status, challenge.as_deref()), (401, Some("Bearer")), "{body}");
    assert_eq!((body["id"].as_i64(), body["error"]["code"].as_i64()), (Some(9), Some(-32600)), "{body}");

    let (status, body) = s.call_as(Some(ADMIN_SECRET), "echo", "agent/getAuthenticatedExtendedCard", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let extended = &body["result"];
    assert_valid("AgentCard", extended);
    let skills: Vec<&str> = extended["skills"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(skills, ["echo", "secret-skill"], "{extended}");

    // Without authentication there is no extended card and no scheme.
    let open = Server::start_with(AUTH_CONFIG, ":memory:", &[]).await;
    let (_, card) = open.get_json("/agents/echo").await;
    assert_eq!(card["supportsAuthenticatedExtendedCard"], false);
    assert!(card.get("securitySchemes").is_none(), "{card}");
    assert_eq!(open.error("echo", "agent/getAuthenticatedExtendedCard", json!({})).await["code"], -32007);
}

#[tokio::test]
async fn regenerated_tokens_can_revoke_the_older_ones() {
    let s = start().await;
    let (id, first) = create_app(&s, "team-r").await;
    let (status, second) = s.admin("POST", &format!("/admin/apps/{id}/token"), None).await;
    assert_eq!(status, 200, "{second}");
    let second = second["access_token"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    assert_eq!(send_as(&s, Some(&first), "helper").await.0, 200, "a new token does not revoke by itself");
    assert_eq!(send_as(&s, Some(&second), "helper").await.0, 200);

    let (status, third) = s.admin("POST", &format!("/admin/apps/{id}/token?revoke_previous=true"), None).await;
    assert_eq!(status, 200, "{third}");
    let third = third["access_token"].as_str().unwrap().to_string();
    for (token, what) in [(&first, "first"), (&second, "second")] {
        let (status, body) = send_as(&s, Some(token), "helper").await;
        assert_unauthorized(status, &body, what);
    }
    assert_eq!(send_as(&s, Some(&third), "helper").await.0, 200);
    assert_eq!(s.admin("POST", &format!("/admin/apps/{id}/token?revoke_previous=maybe"), None).await.0, 400);
    assert_eq!(s.admin("POST", "/admin/apps/app_nope/token", None).await.0, 404);
}

#[tokio::test]
async fn rotated_keys_keep_older_tokens_valid() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--auth-secret", ADMIN_SECRET, "--issuer", "https://switchyard.test"];
    let mut s = Server::start_with(AUTH_CONFIG, dir.path().to_str().unwrap(), &args).await;
    let (id, old) = create_app(&s, "team-k").await;
    let old_kid = jsonwebtoken::decode_header(&old).unwrap().kid.unwrap();

    let (status, rotated) = s.admin("POST", "/admin/keys/rotate", None).await;
    assert_eq!(status, 200, "{rotated}");
    let new_kid = rotated["kid"].as_str().unwrap().to_string();
    assert_ne!(new_kid, old_kid);
    let (_, jwks) = s.get_json("/.well-known/jwks.json").await;
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, [new_kid.as_str(), old_kid.as_str()], "newest first, both present");

    let (_, fresh) = s.admin("POST", &format!("/admin/apps/{id}/token"), None).await;
    let fresh = fresh["access_token"].as_str().unwrap().to_string();
    assert_eq!(jsonwebtoken::decode_header(&fresh).unwrap().kid.as_deref(), Some(new_kid.as_str()));
    assert_eq!(send_as(&s, Some(&old), "helper").await.0, 200, "signed with the previous key");
    assert_eq!(send_as(&s, Some(&fresh), "helper").await.0, 200);

    // Keys and apps survive a restart, and so do the tokens.
    s.terminate();
    let s = s.restart(&args);
    assert_eq!(s.get_json("/.well-known/jwks.json").await.1, jwks);
    assert_eq!(send_as(&s, Some(&old), "helper").await.0, 200);
    assert_eq!(send_as(&s, Some(&fresh), "helper").await.0, 200);
}

/// A PKCS#8 PEM file holding a fresh key, and that key's record.
fn key_file(dir: &std::path::Path) -> (std::path::PathBuf, switchyard::store::tenants::KeyRecord) {
    let record = keys::generate().unwrap();
    let path = dir.join("signing.pem");
    std::fs::write(&path, format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", record.pkcs8))
        .unwrap();
    (path, record)
}

fn sign(record: &switchyard::store::tenants::KeyRecord, kid: &str, claims: &Claims) -> String {
    sign_claims(record, kid, &serde_json::to_value(claims).unwrap())
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn forged_expired_and_mangled_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, key) = key_file(dir.path());
    let s = Server::start_with(
        AUTH_CONFIG,
        ":memory:",
        &["--auth-secret", ADMIN_SECRET, "--signing-key", pem.to_str().unwrap()],
    )
    .await;
    let (id, token) = create_app(&s, "team-f").await;
    let (other_id, _) = create_app(&s, "team-g").await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let kid = header.kid.clone().unwrap();
    assert_eq!(kid, key.kid, "the server signs with the configured key");
    let claims: Claims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.tenant_id.as_str(), claims.aud.as_str()),
        (id.as_str(), id.as_str(), "switchyard")
    );
    assert!(claims.nbf <= claims.iat && claims.exp > claims.iat && !claims.jti.is_empty(), "{claims:?}");
    assert_eq!(claims.exp - claims.iat, 30 * 86_400, "default lifetime 30 days");
    // A token the test signs with the server's key and the same claims is accepted: the
    // refusals below are about what each one changes.
    assert_eq!(send_as(&s, Some(&sign(&key, &kid, &claims)), "helper").await.0, 200);

    let now = switchyard::clock::now_ms() / 1000;
    let with = |change: &dyn Fn(&mut Claims)| {
        let mut c = claims.clone();
        change(&mut c);
        sign(&key, &kid, &c)
    };
    let stranger = keys::generate().unwrap();
    let jwk = s.get_json("/.well-known/jwks.json").await.1["keys"][0].clone();
    let hs256 = |secret: &[u8]| {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.clone());
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(secret)).unwrap()
    };
    let payload = token.split('.').nth(1).unwrap().to_string();
    let signature = token.split('.').nth(2).unwrap().to_string();
    let mut tampered = claims.clone();
    tampered.tenant_id = other_id.clone();
    tampered.sub = other_id.clone();
    let forged: Vec<(String, &str)> = vec![
        (
            with(&|c| {
                c.exp = now - 3600;
                c.iat = now - 7200;
                c.nbf = now - 7200
            }),
            "expired",
        ),
        (with(&|c| c.nbf = now + 3600), "not yet valid"),
        (with(&|c| c.iss = "https://evil.example".into()), "wrong issuer"),
        (with(&|c| c.aud = "someone-else".into()), "wrong audience"),
        (with(&|c| c.tenant_id = other_id.clone()), "tenant differs from subject"),
        (with(&|c| c.tenant_id = "app_nope".into()), "unknown app"),
        (sign(&stranger, &kid, &claims), "another key under the server's kid"),
        (sign(&stranger, &stranger.kid, &claims), "another key under its own kid"),
        (format!("{}.{payload}.", segment(&json!({"alg": "none", "typ": "JWT", "kid": kid}))), "alg none"),
        (
            format!("{}.{payload}.{signature}", segment(&json!({"alg": "HS256", "typ": "JWT", "kid": kid}))),
            "alg swapped",
        ),
        (hs256(jwk.to_string().as_bytes()), "HS256 keyed with the public JWK"),
        (hs256(&URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap()), "HS256 keyed with the public x"),
        (hs256(ADMIN_SECRET.as_bytes()), "the admin secret sent as a JWT"),
        (
            format!(
                "{}.{}.{signature}",
                token.split('.').next().unwrap(),
                segment(&serde_json::to_value(&tampered).unwrap())
            ),
            "tampered payload",
        ),
        (token[..token.len() - 6].to_string(), "truncated signature"),
        (token.rsplit_once('.').unwrap().0.to_string(), "signature dropped"),
        ("not-a-token".into(), "garbage"),
        (format!("{token}x"), "trailing byte"),
    ];
    for (bad, what) in &forged {
        for agent in ["helper", "open"] {
            let (status, body) = send_as(&s, Some(bad), agent).await;
            assert_unauthorized(status, &body, &format!("{what} on {agent}"));
        }
        let (status, body, _) = s.request("GET", "/admin/apps", Some(bad), None).await;
        assert_unauthorized(status, &body, &format!("{what} on the admin API"));
    }
    assert_eq!(send_as(&s, Some(&token), "helper").await.0, 200, "the real token still works");
}

#[tokio::test]
async fn apps_and_keys_changed_on_one_instance_apply_on_another() {
    let redis = std::sync::Arc::new(common::redis::RedisServer::start());
    let prefix = format!("apps-{}", uuid());
    let args = ["--auth-secret", ADMIN_SECRET];
    let a = Server::start_on_redis(AUTH_CONFIG, &redis, &prefix, &args).await;
    let b = Server::start_on_redis(AUTH_CONFIG, &redis, &prefix, &args).await;
    assert_eq!(a.get_json("/.well-known/jwks.json").await.1, b.get_json("/.well-known/jwks.json").await.1, "one key");

    let (id, token) = create_app(&a, "shared").await;
    let (status, task) = send_as(&b, Some(&token), "helper").await;
    assert_eq!((status, task["result"]["status"]["state"].as_str()), (200, Some("completed")), "{task}");
    let (_, listed) = b.admin("GET", "/admin/apps", None).await;
    assert_eq!(listed["apps"].as_array().map(|a| a.len()), Some(2), "{listed}");

    let renamed = json!({"config_json": {"agents": {"fresh": {"type": "echo", "end_state": "completed"}}}});
    assert_eq!(a.admin("PUT", &format!("/admin/apps/{id}"), Some(renamed)).await.0, 200);
    wait_until(|| async { send_as(&b, Some(&token), "fresh").await.0 == 200 }, "the update reaches b").await;

    let (_, rotated) = a.admin("POST", "/admin/keys/rotate", None).await;
    let (_, fresh) = a.admin("POST", &format!("/admin/apps/{id}/token?revoke_previous=true"), None).await;
    let fresh = fresh["access_token"].as_str().unwrap().to_string();
    assert_eq!(jsonwebtoken::decode_header(&fresh).unwrap().kid.as_deref(), rotated["kid"].as_str());
    assert_eq!(send_as(&b, Some(&fresh), "fresh").await.0, 200, "a token signed with the new key verifies on b");
    wait_until(|| async { send_as(&b, Some(&token), "fresh").await.0 == 401 }, "the revocation reaches b").await;

    assert_eq!(b.admin("DELETE", &format!("/admin/apps/{id}"), None).await.0, 204);
    wait_until(|| async { send_as(&a, Some(&fresh), "fresh").await.0 == 401 }, "the deletion reaches a").await;
}

async fn wait_until<F, Fut>(check: F, what: &str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 5 s");
}

/// A token with any claims, signed ES256 by `record` under `kid`.
fn sign_claims(record: &switchyard::store::tenants::KeyRecord, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    let der = STANDARD.decode(&record.pkcs8).unwrap();
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&der)).unwrap()
}

// Multi-threaded: the issuer's endpoint must answer while the test waits for the server to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_an_external_issuer_are_accepted_beside_our_own() {
    // The issuer's JWKS endpoint: an ES256 key, and a symmetric key that must never be used.
    let idp = keys::generate().unwrap();
    let jwk = keys::SigningKey::from_record(&idp).unwrap().jwk;
    let jwks = json!({"keys": [jwk.clone(), {"kty": "oct", "k": URL_SAFE_NO_PAD.encode("shared"), "kid": "hmac", "alg": "HS256"}]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let routes = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, routes).await });
    let args = [
        "--auth-secret",
        ADMIN_SECRET,
        "--auth-jwks-url",
        &jwks_url,
        "--auth-issuer",
        "https://idp.test",
        "--auth-audience",
        "agents-api",
    ];
    let s = Server::start_with(AUTH_CONFIG, ":memory:", &args).await;
    let (app_id, own) = create_app(&s, "team-o").await;

    let now = switchyard::clock::now_ms() / 1000;
    let valid = json!({"iss": "https://idp.test", "aud": "agents-api", "sub": "user-42", "iat": now, "exp": now + 600});
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = valid.clone();
        change(&mut claims);
        sign_claims(&idp, &idp.kid, &claims)
    };
    let token = sign_claims(&idp, &idp.kid, &valid);
    assert_eq!(send_as(&s, Some(&token), "inner").await.0, 200, "the default app's internal agent");
    let routed = with(&|c| c["tenant_id"] = json!(app_id));
    assert_eq!(send_as(&s, Some(&routed), "helper").await.0, 200, "tenant_id routes to the app");
    assert_eq!(send_as(&s, Some(&own), "helper").await.0, 200, "the server's own tokens still work");

    let hmac = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("hmac".into());
        jsonwebtoken::encode(&h, &valid, &EncodingKey::from_secret(b"shared")).unwrap()
    };
    let keyed_with_jwk = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(idp.kid.clone());
        jsonwebtoken::encode(&h, &valid, &EncodingKey::from_secret(jwk.to_string().as_bytes())).unwrap()
    };
    let refused = [
        (with(&|c| c["aud"] = json!("someone-else")), "wrong audience"),
        (with(&|c| c["iss"] = json!("https://evil.test")), "wrong issuer"),
        (with(&|c| c["exp"] = json!(now - 3600)), "expired"),
        (with(&|c| c.as_object_mut().unwrap().remove("sub").map(drop).unwrap_or(())), "no subject"),
        (with(&|c| c["tenant_id"] = json!("app_nope")), "unknown app"),
        (hmac, "a symmetric key published in the JWKS"),
        (keyed_with_jwk, "HS256 keyed with the public JWK"),
        (sign_claims(&keys::generate().unwrap(), &idp.kid, &valid), "another key under the issuer's kid"),
    ];
    for (bad, what) in &refused {
        let (status, body) = send_as(&s, Some(bad), "inner").await;
        assert_unauthorized(status, &body, what);
    }
}
