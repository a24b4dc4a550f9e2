//! Two service processes on one PostgreSQL, the fake Jenkins and the fake Kubernetes API
//! server: one leads and scales, both take webhooks; when the leader is killed the other
//! takes over.

use crate::fake_jenkins::{self, FakeJenkins};
use crate::fake_kube::FakeKube;
use crate::helpers::{TOKEN, fresh_postgres_url};
use crate::scaling::{NS, eventually};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Replica {
    child: Child,
    base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(config: &std::path::Path, data: &std::path::Path, name: &str) -> Replica {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"))
        .args(["serve", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data.join(name))
        .env("AUTOPILOT_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "AUTOPILOT_JENKINS__CONTROLLERS__PROD__API_TOKEN",
            fake_jenkins::API_TOKEN,
        )
        .env("POD_NAME", name)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the service");
    Replica {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

async fn get(client: &reqwest::Client, url: String) -> Option<Value> {
    client.get(url).send().await.ok()?.json().await.ok()
}

async fn metric(client: &reqwest::Client, r: &Replica, line: &str) -> Option<i64> {
    let text = client
        .get(format!("{}/metrics", r.base))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(line))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_the_other_takes_over_when_it_dies() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let jenkins = FakeJenkins::start().await;
    let kube = FakeKube::start().await;
    jenkins.add_agent("agent-linux-a", "linux", 1, 1);
    kube.add_deployment(NS, "agent-linux", &["agent-linux-a"]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.write_kubeconfig(dir.path());
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("service.yaml"),
        format!(
            "database:\n  url: \"{}\"\nwebhook:\n  token: \"{TOKEN}\"\n\
             leader_election: {{mode: postgres, retry_every: 300ms, renew_deadline: 2s}}\n\
             kubernetes: {{mode: apply, kubeconfig: \"{}\"}}\n\
             jenkins:\n  controllers:\n    prod: {{url: \"{}\", user: {}, timeout: 2s}}\n\
             scaling:\n  reconcile_interval: 1s\n  pools:\n    linux: {{controller: prod, label: linux, namespace: {NS}, \
             deployment: agent-linux, executors_per_agent: 1, min: 1, max: 10}}\n",
            fresh_postgres_url().await,
            kubeconfig.display(),
            jenkins.url,
            fake_jenkins::USER
        ),
    )
    .unwrap();
    let client = reqwest::Client::new();
    let a = start(&config, dir.path(), "replica-a");
    let b = start(&config, dir.path(), "replica-b");
    let mut replicas = vec![a, b];

    // Exactly one leads, and both know which.
    let mut leader_name = String::new();
    eventually(
        "one leader, known to both",
        Duration::from_secs(30),
        async || {
            let mut roles = Vec::new();
            for r in &replicas {
                match get(&client, format!("{}/api/v1/status", r.base)).await {
                    Some(s) => roles.push(s),
                    None => return false,
                }
            }
            let leaders: Vec<&Value> = roles.iter().filter(|s| s["role"] == "leader").collect();
            if leaders.len() == 1 && roles.iter().all(|s| s["leader"] == leaders[0]["identity"]) {
                leader_name = leaders[0]["identity"].as_str().unwrap().to_string();
                true
            } else {
                false
            }
        },
    )
    .await;
    let (li, fi) = if leader_name == "replica-a" {
        (0, 1)
    } else {
        (1, 0)
    };
    assert_eq!(
        metric(&client, &replicas[li], "autopilot_leader ").await,
        Some(1)
    );
    assert_eq!(
        metric(&client, &replicas[fi], "autopilot_leader ").await,
        Some(0)
    );

    // Builds queue; the follower takes the webhook, the leader scales.
    jenkins.set_queue("linux", 1..=2);
    let resp = client
        .post(format!(
            "{}/webhooks/cloudevents?controller=prod&token={TOKEN}",
            replicas[fi].base
        ))
        .header("Content-Type", "application/json")
        .header("ce-id", "q1")
        .header("ce-type", "org.jenkinsci.queue.entered_waiting")
        .body(json!({"ciUrl": "https://ci.example.com/", "displayName": "app", "entryTime": 1_700_000_000_000i64,
            "jenkinsQueueId": 1, "status": "ENTERED_WAITING",
            "queueCauses": [{"reasonForWaiting": "Waiting for next available executor on ‘linux’"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    eventually(
        "the leader scaled to 3",
        Duration::from_secs(15),
        async || kube.replicas(NS, "agent-linux") == 3,
    )
    .await;
    let ups = r#"autopilot_pool_scale_events_total{direction="up",pool="linux"} "#;
    assert_eq!(metric(&client, &replicas[li], ups).await, Some(1));
    assert_eq!(
        metric(&client, &replicas[fi], ups).await,
        None,
        "the follower never scales"
    );

    // The leader dies (kill -9): the other takes over within the lease and scales.
    replicas[li].child.kill().unwrap();
    replicas[li].child.wait().unwrap();
    let killed = Instant::now();
    let survivor = replicas.remove(fi);
    eventually("the survivor leads", Duration::from_secs(15), async || {
        get(&client, format!("{}/api/v1/status", survivor.base))
            .await
            .is_some_and(|s| s["role"] == "leader")
    })
    .await;
    let took = killed.elapsed();
    jenkins.set_queue("linux", 1..=4);
    eventually(
        "the new leader scaled to 5",
        Duration::from_secs(15),
        async || kube.replicas(NS, "agent-linux") == 5,
    )
    .await;
    assert!(took < Duration::from_secs(15), "took over in {took:?}");
    println!("the survivor led {took:?} after the leader was killed");
}
