use crate::helpers::{TOKEN, payload, spawn_app};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

fn body() -> String {
    payload::notification("job/app/", "app", 1, "STARTED", 1_700_000_000_000, 0, None).to_string()
}

fn sign(key: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn the_token_is_accepted_four_ways() {
    let app = spawn_app().await;
    let url = app.url("/webhooks/notification");
    let post = || {
        app.client
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body())
    };
    let cases = [
        ("query", post().query(&[("token", TOKEN)])),
        ("bearer", post().bearer_auth(TOKEN)),
        // The Notification plugin turns URL userinfo into basic auth.
        ("basic", post().basic_auth("jenkins", Some(TOKEN))),
        (
            "signature",
            post().header("X-Autopilot-Signature-256", sign(TOKEN, &body())),
        ),
    ];
    for (how, request) in cases {
        let resp = request.send().await.unwrap();
        assert!(resp.status().is_success(), "{how}: {}", resp.status());
    }
}

#[tokio::test]
async fn wrong_or_missing_credentials_get_401_and_store_nothing() {
    let app = spawn_app().await;
    let url = app.url("/webhooks/notification");
    let post = || {
        app.client
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body())
    };
    let cases = [
        ("none", post()),
        (
            "wrong query",
            post().query(&[("token", "not-the-token-at-all")]),
        ),
        ("wrong bearer", post().bearer_auth("x")),
        ("wrong basic", post().basic_auth("jenkins", Some("nope"))),
        ("user as token", post().basic_auth(TOKEN, None::<&str>)),
        (
            "bad signature",
            post().header("X-Autopilot-Signature-256", sign("other-key", &body())),
        ),
        // A right token does not rescue a wrong signature.
        (
            "bad signature, good token",
            post()
                .query(&[("token", TOKEN)])
                .header("X-Autopilot-Signature-256", "sha256=00"),
        ),
        (
            "malformed signature",
            post().header("X-Autopilot-Signature-256", "md5=abc"),
        ),
    ];
    for (how, request) in cases {
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{how}");
        assert!(resp.headers().contains_key("www-authenticate"), "{how}");
        let err: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(err["error"], "unauthorized", "{how}");
    }
    assert_eq!(app.row_counts().await.events, 0);
}

#[tokio::test]
async fn a_generated_token_is_kept_private_under_the_data_dir() {
    use std::os::unix::fs::PermissionsExt;
    let (mut settings, dir) = crate::helpers::test_settings(crate::helpers::Db::Sqlite).await;
    settings.webhook.token = None;
    let app = crate::helpers::spawn_with(settings.clone()).await;
    let path = dir.path().join("webhook-token");
    let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(token.len() >= 32);
    let resp = app
        .client
        .post(app.url("/webhooks/notification"))
        .bearer_auth(&token)
        .header("Content-Type", "application/json")
        .body(body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // A restart keeps the same token.
    app.stop().await;
    let again = crate::helpers::spawn_with(settings).await;
    let resp = again
        .client
        .post(again.url("/webhooks/notification"))
        .bearer_auth(&token)
        .header("Content-Type", "application/json")
        .body(body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    drop(dir);
}

/// Sends `head` on a raw connection (and `then`, if any), and reads the answer's status
/// line within `within`: `None` when none came.
async fn raw(
    address: &str,
    head: String,
    then: &[u8],
    within: std::time::Duration,
) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = address.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(then).await.unwrap();
    let mut buf = vec![0u8; 512];
    match tokio::time::timeout(within, s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        _ => None,
    }
}

#[tokio::test]
async fn an_unauthenticated_body_is_never_waited_for_nor_read() {
    let app = spawn_app().await;
    // A megabyte announced, none sent: the token is missing, so the answer comes at once.
    let head =
        "POST /webhooks/notification HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 1000000\r\n\r\n"
            .to_string();
    let status = raw(&app.address, head, b"{", std::time::Duration::from_secs(3)).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 401 Unauthorized"));
    // The same with a wrong token.
    let head = "POST /webhooks/notification?token=wrong HTTP/1.1\r\nHost: x\r\n\
                Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
        .to_string();
    let status = raw(&app.address, head, b"", std::time::Duration::from_secs(3)).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 401 Unauthorized"));
    app.stop().await;
}

#[tokio::test]
async fn a_trickled_body_is_cut_off_with_408() {
    let (mut settings, dir) = crate::helpers::test_settings(crate::helpers::Db::Sqlite).await;
    settings.server.body_timeout = std::time::Duration::from_secs(1);
    let app = crate::helpers::spawn_with(settings).await;
    let head = format!(
        "POST /webhooks/notification?token={TOKEN} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    let started = std::time::Instant::now();
    let status = raw(
        &app.address,
        head,
        b"{\"name\"",
        std::time::Duration::from_secs(5),
    )
    .await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 408 Request Timeout"));
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    app.stop().await;
    drop(dir);
}

#[tokio::test]
async fn one_request_offers_one_token() {
    let app = spawn_app().await;
    let resp = app
        .client
        .post(app.url(&format!("/webhooks/notification?token=wrong&token={TOKEN}")))
        .header("Content-Type", "application/json")
        .body(body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let text = resp.text().await.unwrap();
    assert!(text.contains("one webhook token"), "{text}");
    // The right one alone is taken.
    let resp = app
        .client
        .post(app.url(&format!("/webhooks/notification?token={TOKEN}")))
        .header("Content-Type", "application/json")
        .body(body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    app.stop().await;
}

#[tokio::test]
async fn open_reads_answer_only_the_hosts_this_service_is_reached_by() {
    let app = spawn_app().await;
    let get = |host: &'static str| {
        let app = &app;
        async move {
            app.client
                .get(app.url("/api/v1/builds"))
                .header("Host", host)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Listening on loopback: its own names only (a rebound name is refused).
    assert_eq!(get("127.0.0.1:8080").await, 200);
    assert_eq!(get("localhost").await, 200);
    assert_eq!(get("[::1]:8080").await, 200);
    assert_eq!(get("evil.example").await, 403);
    assert_eq!(get("evil.example:8080").await, 403);
    // Webhooks and health are not reads.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .header("Host", "evil.example")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    app.stop().await;

    let (mut settings, _dir) = crate::helpers::test_settings(crate::helpers::Db::Sqlite).await;
    settings.auth.allowed_hosts = vec!["ci-autopilot.internal".into()];
    let app = crate::helpers::spawn_with(settings).await;
    let status = |host: &'static str| {
        let app = &app;
        async move {
            app.client
                .get(app.url("/api/v1/costs?range=24h"))
                .header("Host", host)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("ci-autopilot.internal:8080").await, 200);
    assert_eq!(status("127.0.0.1").await, 403);
    app.stop().await;
}

#[tokio::test]
async fn one_peer_cannot_hold_every_request_slot() {
    use tokio::io::AsyncWriteExt;
    let (mut settings, _dir) = crate::helpers::test_settings(crate::helpers::Db::Sqlite).await;
    settings.server.max_requests_per_peer = 2;
    settings.server.body_timeout = std::time::Duration::from_secs(2);
    let app = crate::helpers::spawn_with(settings).await;
    let addr = app.address.trim_start_matches("http://").to_string();
    // Two authenticated requests whose bodies never come hold this peer's two places.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(
            format!(
                "POST /webhooks/notification?token={TOKEN} HTTP/1.1\r\nHost: x\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        held.push(s);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let status = app.get_json("/healthz").await.0;
    assert_eq!(
        status, 503,
        "a third request from the same peer waits its turn"
    );
    // Once the body timeout frees them, the peer is answered again.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(app.get_json("/healthz").await.0, 200);
    drop(held);
    app.stop().await;
}
