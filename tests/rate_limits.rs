//! Rate limits over HTTP: headers on every limited response, 429 past the limit naming it,
//! separate counters per scope id, `/health` never limited, and limits shared by two instances
//! on one Redis.

mod common;

use common::*;
use serde_json::{json, Value};

/// (status, X-RateLimit-Limit, -Remaining, -Reset, Retry-After, body) of one request.
struct Limited {
    status: u16,
    limit: Option<u64>,
    remaining: Option<u64>,
    reset: Option<u64>,
    retry_after: Option<u64>,
    body: Value,
}

async fn get(s: &Server, path: &str, headers: &[(&str, &str)]) -> Limited {
    let mut request = s.client.get(s.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let number = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()?.parse().ok());
    Limited {
        status: response.status().as_u16(),
        limit: number("x-ratelimit-limit"),
        remaining: number("x-ratelimit-remaining"),
        reset: number("x-ratelimit-reset"),
        retry_after: number("retry-after"),
        body: response.json().await.unwrap_or(Value::Null),
    }
}

/// Runs `attempt` until it reports that all its requests fell in one window (a fixed window may
/// end in the middle of a test; the counts then start over).
async fn in_one_window<F, Fut>(attempt: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..3 {
        if attempt().await {
            return;
        }
    }
    panic!("three attempts straddled a window boundary");
}

#[tokio::test]
async fn requests_past_the_ip_limit_get_429_with_headers() {
    in_one_window(|| async {
        let s = Server::start_with(CONFIG, ":memory:", &["--rate-limit", "ip=3/1h"]).await;
        let mut resets = Vec::new();
        for remaining in [2, 1, 0] {
            let r = get(&s, "/agents", &[]).await;
            assert_eq!((r.status, r.limit, r.remaining), (200, Some(3), Some(remaining)), "{}", r.body);
            resets.push(r.reset.expect("X-RateLimit-Reset"));
        }
        let over = get(&s, "/agents/echo", &[]).await;
        resets.push(over.reset.unwrap());
        if resets.windows(2).any(|w| w[0] != w[1]) {
            return false;
        }
        assert_eq!((over.status, over.remaining), (429, Some(0)), "{}", over.body);
        let now = switchyard::clock::now_ms() / 1000;
        assert!(over.reset.unwrap() > now && over.reset.unwrap() <= now + 3600, "reset is the window's end");
        let retry = over.retry_after.expect("Retry-After");
        assert!((1..=3600).contains(&retry), "{retry}");
        assert_eq!(over.body["limit"], "ip", "{}", over.body);
        assert_eq!(over.body["error"], "rate limit exceeded: 3 requests per 1h per ip");
        // JSON-RPC is limited too, and the answer is the same plain 429.
        let (status, body) = s.post_json("echo", &json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/get"})).await;
        assert_eq!(status, 429, "{body}");
        for _ in 0..20 {
            let health = get(&s, "/health", &[]).await;
            assert_eq!((health.status, health.limit), (200, None), "/health is never limited");
        }
        true
    })
    .await;
}

#[tokio::test]
async fn sessions_and_apps_are_counted_apart() {
    in_one_window(|| async {
        let args = ["--auth-secret", ADMIN_SECRET, "--rate-limit", "session=2/1h,app=5/1h"];
        let s = Server::start_with(CONFIG, ":memory:", &args).await;
        let app = json!({"name": "limited", "config_json": {"agents": {"echo": {"type": "echo"}}}});
        let (status, created) = s.admin("POST", "/admin/apps", Some(app)).await;
        assert_eq!(status, 201, "{created}");
        let token = format!("Bearer {}", created["access_token"].as_str().unwrap());
        // The admin call above counted once against the default app.
        let a1 = get(&s, "/agents", &[("x-session-id", "a")]).await;
        let a2 = get(&s, "/agents", &[("x-session-id", "a")]).await;
        let a3 = get(&s, "/agents", &[("x-session-id", "a")]).await;
        let b1 = get(&s, "/agents", &[("x-session-id", "b")]).await;
        let t1 = get(&s, "/agents", &[("authorization", &token)]).await;
        let plain = get(&s, "/agents", &[]).await;
        let windows: Vec<_> = [&a1, &a2, &a3, &b1, &t1, &plain].iter().map(|r| r.reset).collect();
        if windows.windows(2).any(|w| w[0] != w[1]) {
            return false;
        }
        assert_eq!([a1.status, a2.status, a3.status], [200, 200, 429], "session a: 2 per window");
        assert_eq!(a3.body["limit"], "session", "{}", a3.body);
        assert_eq!(b1.status, 200, "session b has its own count: {}", b1.body);
        // Headers show the limit closest to its end: for b1 the default app's (its 5th request:
        // the admin call, a1, a2, a3, b1), not the session's (1 of 2).
        assert_eq!((b1.limit, b1.remaining), (Some(5), Some(0)));
        assert_eq!(
            (a1.limit, a1.remaining),
            (Some(2), Some(1)),
            "a1: the session's (1 of 2) before the app's (2 of 5)"
        );
        assert_eq!((t1.status, t1.limit, t1.remaining), (200, Some(5), Some(4)), "the token's app has its own count");
        // The default app's 6th request.
        assert_eq!((plain.status, plain.body["limit"].as_str()), (429, Some("app")), "{}", plain.body);
        true
    })
    .await;
}

#[tokio::test]
async fn instances_on_one_redis_share_the_limits() {
    let redis = std::sync::Arc::new(common::redis::RedisServer::start());
    in_one_window(|| async {
        let prefix = format!("limits-{}", uuid());
        let args = ["--rate-limit", "ip=5/1h"];
        let a = Server::start_on_redis(CONFIG, &redis, &prefix, &args).await;
        let b = Server::start_on_redis(CONFIG, &redis, &prefix, &args).await;
        let mut seen = Vec::new();
        for server in [&a, &b, &a, &b, &a, &b, &a] {
            seen.push(get(server, "/agents", &[]).await);
        }
        if seen.windows(2).any(|w| w[0].reset != w[1].reset) {
            return false;
        }
        let statuses: Vec<u16> = seen.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429], "5 in all, whichever instance answers");
        let remaining: Vec<Option<u64>> = seen.iter().map(|r| r.remaining).collect();
        assert_eq!(remaining, [Some(4), Some(3), Some(2), Some(1), Some(0), Some(0), Some(0)]);
        true
    })
    .await;
}
