//! Starts the real application on port 0 with a fresh store and talks to it over HTTP.

use jenkins_autopilot::config::Settings;
use jenkins_autopilot::startup::Application;
use secrecy::SecretString;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Once;

pub const TOKEN: &str = "test-webhook-token-0123456789";
/// HS256 secret of the test apps' API tokens.
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123456789";

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub data_dir: PathBuf,
    handle: actix_web::dev::ServerHandle,
    _dir: Option<tempfile::TempDir>,
}

static TRACING: Once = Once::new();

fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            let settings = Settings::load(None, Vec::new()).unwrap();
            jenkins_autopilot::telemetry::init(&settings.logging);
        }
    });
}

/// A connection of the test's own to the SQLite store in the app's data directory `dir`.
pub async fn sqlite_in(dir: &std::path::Path) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    let db_url = format!("sqlite://{}", dir.join("autopilot.db").display());
    <sqlx::AnyConnection as sqlx::Connection>::connect(&db_url)
        .await
        .unwrap()
}

/// A port free on 127.0.0.1 now, for a service process a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh PostgreSQL database on the server named by TEST_DATABASE_URL
/// (`scripts/test` starts one and sets it).
pub async fn fresh_postgres_url() -> String {
    let admin = std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL is not set: run the tests with ./scripts/test, which starts PostgreSQL",
    );
    let name = format!("autopilot_test_{}", hex::encode(rand::random::<[u8; 8]>()));
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    let base = admin.rsplit_once('/').expect("URL with a database").0;
    format!("{base}/{name}")
}

/// The PostgreSQL URL of settings made by `test_settings(Db::Postgres)`.
pub fn postgres_url(settings: &Settings) -> String {
    use secrecy::ExposeSecret;
    settings
        .database
        .url
        .as_ref()
        .expect("a PostgreSQL test app's settings name its database")
        .expose_secret()
        .to_string()
}

/// Database settings: the defaults, with `url` when given.
pub fn database_settings(url: Option<String>) -> jenkins_autopilot::config::DatabaseSettings {
    let mut db = Settings::load(None, Vec::new()).unwrap().database;
    db.url = url.map(SecretString::from);
    db
}

/// Settings for a test app: port 0, a temporary data directory, the known token.
pub async fn test_settings(db: Db) -> (Settings, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::load(None, Vec::new()).unwrap();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.data_dir = dir.path().to_path_buf();
    settings.webhook.token = Some(SecretString::from(TOKEN));
    settings.auth.jwt_secret = Some(SecretString::from(JWT_SECRET));
    // Deterministic whatever the machine has: tests that want a cluster give a kubeconfig.
    settings.kubernetes.mode = jenkins_autopilot::config::KubernetesMode::DryRun;
    if db == Db::Postgres {
        settings.database.url = Some(SecretString::from(fresh_postgres_url().await));
    }
    (settings, dir)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_on(Db::Sqlite).await
}

pub async fn spawn_app_on(db: Db) -> TestApp {
    let (settings, dir) = test_settings(db).await;
    let mut app = spawn_with(settings).await;
    app._dir = Some(dir);
    app
}

/// Starts the app with these settings (the caller keeps the data directory alive).
pub async fn spawn_with(settings: Settings) -> TestApp {
    init_tracing();
    let app = Application::build(settings.clone())
        .await
        .expect("build the app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.server_handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        data_dir: settings.server.data_dir.clone(),
        settings,
        handle,
        _dir: None,
    }
}

impl TestApp {
    /// Stops the server and hands back its temporary directory.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.handle.stop(true).await;
        self._dir.take()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// POSTs JSON to a webhook with the token as `?token=`.
    pub async fn post_webhook(&self, path: &str, body: &Value) -> reqwest::Response {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.client
            .post(self.url(&format!("{path}{sep}token={TOKEN}")))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    pub async fn post_notification(&self, body: &Value) -> reqwest::Response {
        self.post_webhook("/webhooks/notification", body).await
    }

    pub async fn post_statistics(&self, body: &Value) -> reqwest::Response {
        self.post_webhook("/webhooks/statistics", body).await
    }

    /// A binary-mode CloudEvent.
    pub async fn post_cloudevent(
        &self,
        ce_type: &str,
        id: &str,
        data: &Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/webhooks/cloudevents?token={TOKEN}")))
            .header("Content-Type", "application/json")
            .header("ce-specversion", "1.0")
            .header("ce-id", id)
            .header("ce-type", ce_type)
            .header("ce-source", "job/app")
            .body(data.to_string())
            .send()
            .await
            .expect("request")
    }

    /// An API token of this app with `scopes`, valid for an hour.
    pub fn jwt(&self, scopes: &[jenkins_autopilot::tokens::Scope]) -> String {
        jenkins_autopilot::tokens::TokenKeys::load(&self.settings.auth, &self.data_dir)
            .unwrap()
            .issue(
                "test",
                scopes,
                std::time::Duration::from_secs(3600),
                chrono::Utc::now().timestamp(),
            )
            .unwrap()
    }

    /// `/metrics` in the text format.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("a text body")
    }

    /// One sample's value in `/metrics`: `name` is the sample as printed (with its labels).
    pub async fn metric(&self, name: &str) -> Option<i64> {
        metric_value(&self.metrics().await, name)
    }

    /// GET with a bearer token.
    pub async fn get_authed(&self, path: &str, token: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    }

    /// POST JSON with a bearer token.
    pub async fn post_authed(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn builds(&self, query: &str) -> Vec<Value> {
        let (status, body) = self.get_json(&format!("/api/v1/builds{query}")).await;
        assert_eq!(status, 200, "{body}");
        body["builds"].as_array().cloned().unwrap_or_default()
    }

    pub async fn build(&self, controller: &str, job: &str, number: u64) -> Value {
        let (status, body) = self
            .get_json(&format!("/api/v1/builds/{controller}/{job}/{number}"))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn queue(&self) -> Vec<Value> {
        let (status, body) = self.get_json("/api/v1/queue").await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// Rows in the store, read through the library's store.
    pub async fn row_counts(&self) -> jenkins_autopilot::store::RowCounts {
        let store =
            jenkins_autopilot::store::Store::connect(&self.settings.database, &self.data_dir)
                .await
                .unwrap();
        let counts = store.row_counts().await.unwrap();
        store.close().await;
        counts
    }
}

/// Payloads shaped exactly as the plugins send them.
pub mod payload {
    use serde_json::{Value, json};

    pub const ROOT: &str = "https://ci.example.com/";

    /// Notification plugin JobState (Gson, snake_case, nulls dropped).
    pub fn notification(
        job_url: &str,
        name: &str,
        number: u64,
        phase: &str,
        timestamp: i64,
        duration: i64,
        status: Option<&str>,
    ) -> Value {
        let mut build = json!({
            "full_url": format!("{ROOT}{job_url}{number}/"),
            "number": number,
            "queue_id": 1000 + number,
            "timestamp": timestamp,
            "duration": duration,
            "phase": phase,
            "url": format!("{job_url}{number}/"),
            "scm": {"url": "https://github.com/example/app.git", "branch": "origin/main", "commit": "4f5e6d7c", "changes": [], "culprits": []},
            "parameters": {"DEPLOY": "false"},
            "log": "",
            "notes": "",
            "artifacts": {}
        });
        if let Some(s) = status {
            build["status"] = json!(s);
        }
        json!({"name": name, "display_name": name, "url": job_url, "build": build})
    }

    /// CloudEvents plugin QueueModel.
    pub fn ce_queue(
        id: u64,
        name: &str,
        status: &str,
        entry: i64,
        exit: Option<i64>,
        why: Option<&str>,
    ) -> Value {
        let mut v = json!({
            "ciUrl": ROOT, "displayName": name, "entryTime": entry, "exitTime": exit,
            "startedBy": "admin", "jenkinsQueueId": id, "status": status,
            "duration": exit.map(|x| x - entry).unwrap_or(0)
        });
        if let Some(w) = why {
            v["queueCauses"] = json!([{"reasonForWaiting": w, "type": "entered_waiting"}]);
        }
        v
    }

    /// CloudEvents plugin JobModel with its BuildModel.
    pub fn ce_job(
        job_url: &str,
        number: u64,
        queue_id: u64,
        phase: &str,
        timestamp: i64,
        duration: i64,
        status: Option<&str>,
    ) -> Value {
        let name = job_url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default();
        json!({
            "userId": null, "userName": null, "name": name, "displayName": name, "url": job_url,
            "build": {
                "fullUrl": format!("{ROOT}{job_url}{number}/"), "number": number, "queueId": queue_id,
                "timestamp": timestamp, "duration": duration, "phase": phase, "status": status,
                "url": format!("{job_url}{number}/"), "displayName": null, "parameters": null,
                "scmState": {"url": null, "branch": null, "commit": null}
            }
        })
    }
}

/// A build seen by the Statistics plugin on `controller=prod`: started on `label` after
/// `wait` ms in the queue, finalized with `result` after `ms`.
#[allow(clippy::too_many_arguments)]
pub async fn statistics_build(
    app: &TestApp,
    job: &str,
    n: u64,
    label: &str,
    start: i64,
    wait: i64,
    ms: i64,
    result: &str,
) {
    let started = serde_json::json!({"ciUrl": payload::ROOT, "jobName": job, "fullJobName": job, "number": n,
        "slaveInfo": {"slaveName": "agent-1", "label": label, "executor": "0"}, "startTime": start,
        "endTime": 0, "startedUserId": "SCM", "startedUserName": "SYSTEM", "result": "INPROGRESS",
        "duration": 0, "parameters": {}, "scmInfo": {}, "queueTime": wait,
        "buildUrl": format!("job/{job}/{n}/"), "contextId": 1, "buildCause": "SCM", "buildFailureCauses": []});
    let mut finalized = started.clone();
    finalized["result"] = serde_json::json!(result);
    finalized["duration"] = serde_json::json!(ms);
    finalized["slaveInfo"] = serde_json::json!({});
    for body in [started, finalized] {
        let resp = app
            .post_webhook("/webhooks/statistics?controller=prod", &body)
            .await;
        assert_eq!(resp.status().as_u16(), 200);
    }
}

/// A dry-run scaling decision of pool `linux` from `current` to `desired` replicas.
pub fn dry_run_decision(
    at: i64,
    seq: i64,
    current: u32,
    desired: u32,
) -> jenkins_autopilot::store::DecisionRecord {
    jenkins_autopilot::store::DecisionRecord {
        pool: "linux".into(),
        decided_at: jenkins_autopilot::domain::Timestamp::from_millis(at).unwrap(),
        seq,
        trigger: jenkins_autopilot::scaling::plan::Trigger::Periodic,
        current: Some(current),
        recommended: Some(desired),
        desired: Some(desired),
        rule: jenkins_autopilot::scaling::Rule::Demand,
        reason: "test".into(),
        outcome: jenkins_autopilot::domain::Outcome::DryRun,
        error: None,
        inputs: Default::default(),
    }
}

/// Records scaling decisions straight into the app's store, as if its pools had made them.
pub async fn record_decisions(
    app: &TestApp,
    decisions: &[jenkins_autopilot::store::DecisionRecord],
) {
    let store = jenkins_autopilot::store::Store::connect(&app.settings.database, &app.data_dir)
        .await
        .unwrap();
    for d in decisions {
        store.insert_decision(d).await.unwrap();
    }
    store.close().await;
}

/// Test settings with controller `prod` (nothing listening: its pools' reconciles hold)
/// and pool `linux` (1 executor, 1 CPU and 2Gi agents), reconciling hourly.
pub async fn pool_settings(db: Db) -> (Settings, tempfile::TempDir) {
    let (mut settings, dir) = test_settings(db).await;
    settings.jenkins.controllers.insert(
        "prod".into(),
        jenkins_autopilot::config::JenkinsControllerSettings {
            url: "http://127.0.0.1:9/".parse().unwrap(),
            user: None,
            api_token: None,
            timeout: std::time::Duration::from_millis(200),
            retries: 0,
        },
    );
    settings.scaling.reconcile_interval = std::time::Duration::from_secs(3600);
    // The recorded histories of these tests lie months back: keep their decisions from
    // the retention purge, which runs at start.
    settings.scaling.decision_retention = std::time::Duration::from_secs(100 * 365 * 86_400);
    let pool: jenkins_autopilot::config::PoolSettings = serde_yaml::from_str(
        "{controller: prod, label: linux, namespace: ci, deployment: agents, agent: {cpu: '1', memory: 2Gi}}",
    )
    .unwrap();
    settings.scaling.pools.insert("linux".into(), pool);
    (settings, dir)
}

/// One sample's value in the `/metrics` of the service at `base`; `None` when it does
/// not answer or has no such sample.
pub async fn metric_at(client: &reqwest::Client, base: &str, name: &str) -> Option<i64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    metric_value(&text, name)
}

/// One sample's value in a `/metrics` text: `name` is the sample as printed (with its
/// labels); `None` when there is no such sample.
pub fn metric_value(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
