//! Three `jitgate serve` processes on one PostgreSQL database (`JITGATE_TEST_DATABASE_URL`,
//! a schema of their own): any request on any replica, one audit chain, revocations and
//! rotated keys seen everywhere, and a replica killed under load losing nothing a client got.
//! Without the variable the tests say they skipped (`JITGATE_TEST_REQUIRE_POSTGRES=1`: fail).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jitgate::clock::unix_now;
use jitgate::identity::DevIssuer;
use jitgate::store::Store;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_postgres::NoTls;

use super::{repo, skipped};

const KEK: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
const ISSUER: &str = "http://jitgate-replicas.test";

/// A schema of the test database, dropped with the cluster.
struct Schema {
    database: String,
    name: String,
    /// The database with every connection's `search_path` set to this schema.
    url: String,
}

impl Schema {
    async fn create(test: &str) -> Option<Self> {
        let Ok(url) = std::env::var("JITGATE_TEST_DATABASE_URL") else {
            assert!(
                std::env::var("JITGATE_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "JITGATE_TEST_REQUIRE_POSTGRES=1 but JITGATE_TEST_DATABASE_URL is not set"
            );
            skipped(
                test,
                "set JITGATE_TEST_DATABASE_URL to run the replica tests",
            );
            return None;
        };
        let (admin, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(connection);
        let name = format!(
            "jitgate_replicas_{}_{}",
            std::process::id(),
            unix_now() % 100_000
        ) + &test.len().to_string();
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        let separator = if url.contains('?') { '&' } else { '?' };
        let schema_url =
            format!("{url}{separator}options=-c%20search_path%3D{name}&application_name={name}");
        Some(Self {
            database: url,
            name,
            url: schema_url,
        })
    }
}

/// One `jitgate serve` process.
struct Replica {
    child: Child,
    base: String,
    config: PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cluster {
    replicas: Vec<Replica>,
    http: reqwest::Client,
    dir: TempDir,
    schema: Schema,
    /// Extra configuration every replica gets.
    extra: String,
}

impl Cluster {
    /// Three replicas sharing the database, one issuer and one data dir (the dev issuer's key).
    async fn start(test: &str) -> Option<Self> {
        Self::start_with(test, String::new()).await
    }

    /// [`Cluster::start`], with `extra` configuration for every replica.
    async fn start_with(test: &str, extra: String) -> Option<Self> {
        let schema = Schema::create(test).await?;
        let dir = TempDir::new().unwrap();
        let mut cluster = Self {
            replicas: Vec::new(),
            http: reqwest::Client::new(),
            dir,
            schema,
            extra,
        };
        for name in ["a", "b", "c"] {
            let replica = cluster.launch(name).await;
            cluster.replicas.push(replica);
        }
        Some(cluster)
    }

    async fn launch(&self, name: &str) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = self.dir.path().join(format!("{name}.toml"));
        let text = format!(
            "listen = \"127.0.0.1:{port}\"\nissuer = \"{ISSUER}\"\ndata_dir = {data:?}\n\
             database_url = {url:?}\n[policy]\ndir = {policies:?}\nschemas = {schemas:?}\n\
             [identity.dev]\nenabled = true\n[rate_limit]\nper_principal_per_minute = 1000000\n\
             {extra}",
            data = self.dir.path().join("data"),
            url = self.schema.url,
            policies = repo().join("policies"),
            schemas = repo().join("schemas"),
            extra = self.extra,
        );
        std::fs::write(&config, text).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_jitgate"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("JITGATE_KEY_ENCRYPTION_KEY", KEK)
            .env("JITGATE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let replica = Replica {
            child,
            base: format!("http://127.0.0.1:{port}"),
            config,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = self
                .http
                .get(format!("{}/readyz", replica.base))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return replica;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("replica {name} did not become ready");
    }

    fn token(&self, sub: &str, groups: &[&str]) -> String {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        DevIssuer::open(&self.dir.path().join("data"), unix_now())
            .unwrap()
            .mint(sub, &groups, true, Duration::from_secs(600), unix_now())
            .unwrap()
    }

    async fn post(&self, on: usize, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.replicas[on].base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, on: usize, path: &str, token: Option<&str>) -> Value {
        let mut request = self.http.get(format!("{}{path}", self.replicas[on].base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().json().await.unwrap()
    }

    async fn introspect(&self, on: usize, token: &str) -> bool {
        let admin = self.token("sam", &["security"]);
        let (status, body) = self
            .post(on, "/v1/tokens/introspect", &admin, json!({"token": token}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["active"].as_bool().unwrap()
    }

    async fn store(&self) -> Store {
        Store::open_existing(&self.schema.url, self.dir.path())
            .await
            .unwrap()
    }
}

/// The schema goes when its test ends (after the replicas, which `Cluster` declares first).
impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.database.clone(), self.name.clone());
        // Dropped inside the test's runtime: a thread and a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
                tokio::spawn(connection);
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
                    .await;
            });
        });
        let _ = dropped.join();
    }
}

impl Schema {
    /// Runs `sql` in this schema, as an operator at the database would.
    async fn execute(&self, sql: &str) {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap();
    }
}

/// Polls `done` until it holds, for up to 30 s.
async fn wait_until(done: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "waited 30 s for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn write_orders() -> Value {
    json!({"action": "write", "resource": "Database::\"orders\"", "reason": "INC-7"})
}

fn read_orders() -> Value {
    json!({"action": "read", "resource": "Database::\"orders\"", "reason": "INC-7"})
}

/// Asked on A, approved on B, minted on C; two approvers racing on A and B for the one
/// place: one wins, the other hears 409; a revocation made on A is refused by B and C at once.
#[tokio::test]
async fn any_request_goes_to_any_replica() {
    let Some(cluster) = Cluster::start("replicas::any_request_goes_to_any_replica").await else {
        return;
    };
    let alice = cluster.token("alice", &["oncall"]);
    let (status, pending) = cluster
        .post(0, "/v1/access-requests", &alice, write_orders())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    let id = pending["request_id"].as_str().unwrap().to_owned();
    let approve = format!("/v1/access-requests/{id}/approve");
    let (dave, erin) = (
        cluster.token("dave", &["dba"]),
        cluster.token("erin", &["dba"]),
    );
    let (first, second) = tokio::join!(
        cluster.post(0, &approve, &dave, json!({"comment": "a"})),
        cluster.post(1, &approve, &erin, json!({"comment": "b"})),
    );
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "{first:?} {second:?}"
    );
    let (status, minted) = cluster
        .post(
            2,
            &format!("/v1/access-requests/{id}/token"),
            &alice,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let token = minted["access_token"].as_str().unwrap().to_owned();
    for on in 0..3 {
        assert!(
            cluster.introspect(on, &token).await,
            "active on replica {on}"
        );
    }

    let admin = cluster.token("sam", &["security"]);
    let (status, body) = cluster
        .post(
            0,
            "/v1/revocations",
            &admin,
            json!({"request_id": id, "reason": "done"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let revoked = Instant::now();
    for on in [1, 2] {
        assert!(
            !cluster.introspect(on, &token).await,
            "revoked on replica {on}"
        );
        let feed = cluster.get(on, "/v1/revocations", Some(&admin)).await;
        assert!(feed.to_string().contains(&id), "{feed}");
    }
    assert!(revoked.elapsed() < Duration::from_secs(1));
}

/// A key rotated through A's configuration is served by B and C (each follows the
/// database's keys every 10 s) and signs their tokens.
#[tokio::test]
async fn keys_rotated_on_one_replica_are_served_by_all() {
    let Some(cluster) =
        Cluster::start("replicas::keys_rotated_on_one_replica_are_served_by_all").await
    else {
        return;
    };
    let kids = |jwks: &Value| -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let before = kids(&cluster.get(0, "/.well-known/jwks.json", None).await);
    assert_eq!(before.len(), 1);
    for on in [1, 2] {
        assert_eq!(
            kids(&cluster.get(on, "/.well-known/jwks.json", None).await),
            before
        );
    }
    let rotated = Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["keys", "rotate", "--config"])
        .arg(&cluster.replicas[0].config)
        .env("JITGATE_KEY_ENCRYPTION_KEY", KEK)
        .output()
        .unwrap();
    assert!(rotated.status.success(), "{rotated:?}");
    let new_kid = String::from_utf8_lossy(&rotated.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(25);
    for on in 0..3 {
        loop {
            let served = kids(&cluster.get(on, "/.well-known/jwks.json", None).await);
            if served.contains(&new_kid) {
                assert!(
                    served.contains(&before[0]),
                    "the old key stays for its tokens"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica {on} never served {new_kid}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let alice = cluster.token("alice", &["oncall"]);
    let (status, issued) = cluster
        .post(1, "/v1/access-requests", &alice, read_orders())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let header = jsonwebtoken::decode_header(issued["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));
}

/// Clients load all three replicas; C is killed with SIGKILL half-way. A and B keep serving,
/// every token any client received has its request and `token.issued` record, and the chain
/// verifies.
#[tokio::test]
async fn a_replica_killed_under_load_loses_nothing_a_client_received() {
    let Some(mut cluster) =
        Cluster::start("replicas::a_replica_killed_under_load_loses_nothing_a_client_received")
            .await
    else {
        return;
    };
    let alice = cluster.token("alice", &["oncall"]);
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..6 {
        let url = format!("{}/v1/access-requests", cluster.replicas[client % 3].base);
        let (http, alice) = (cluster.http.clone(), alice.clone());
        let (received, stop) = (received.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sent = http
                    .post(&url)
                    .bearer_auth(&alice)
                    .json(&read_orders())
                    .send();
                let Ok(response) = sent.await else {
                    // C is gone: its clients stop, the others go on.
                    return;
                };
                if response.status() == StatusCode::CREATED {
                    let body: Value = response.json().await.unwrap();
                    let id = body["request_id"].as_str().unwrap().to_owned();
                    received.lock().unwrap().push(id);
                }
            }
        }));
    }
    let count = || received.lock().unwrap().len();
    wait_until(|| count() >= 60, "tokens from all three replicas").await;
    let killed = cluster.replicas.remove(2);
    drop(killed); // SIGKILL, then reaped
    let at_kill = count();
    wait_until(
        || count() >= at_kill + 60,
        "A and B serving after C was killed",
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let received = received.lock().unwrap().clone();
    let store = cluster.store().await;
    let events = store.audit_events().await.unwrap();
    for request_id in &received {
        let stored = store.request(request_id).await.unwrap();
        assert_eq!(stored.unwrap().record.status, "issued", "{request_id}");
        assert!(
            events.iter().any(|e| e.kind == "token.issued"
                && e.request_id.as_deref() == Some(request_id.as_str())),
            "no token.issued event for {request_id}"
        );
    }
    let report = store
        .verify_audit()
        .await
        .unwrap()
        .expect("the chain verifies");
    assert!(report.events >= received.len() as u64 * 2, "{report:?}");
    // The command operators run: the chain and every signed head in it, checked with the
    // public keys the database keeps (no key-encryption key needed).
    let verified = Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["audit", "verify", "--config"])
        .arg(&cluster.replicas[0].config)
        .output()
        .unwrap();
    assert!(verified.status.success(), "{verified:?}");
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(said.contains("signed head"), "{said}");
}

/// The database refusing writes: requests are 503 with no token and `/readyz` still answers;
/// every connection dropped (a database restart): the replicas reconnect by themselves. No
/// replica is restarted.
#[tokio::test]
async fn the_database_failing_stops_issuing_and_its_return_resumes_it() {
    let Some(cluster) =
        Cluster::start("replicas::the_database_failing_stops_issuing_and_its_return_resumes_it")
            .await
    else {
        return;
    };
    let alice = cluster.token("alice", &["oncall"]);
    let ask = |on| cluster.post(on, "/v1/access-requests", &alice, read_orders());
    assert_eq!(ask(0).await.0, StatusCode::CREATED);
    cluster
        .schema
        .execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'disk full'; END $$; \
             CREATE TRIGGER refuse BEFORE INSERT ON audit_events \
             FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .await;
    for on in 0..3 {
        let (status, body) = ask(on).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.get("access_token").is_none(), "{body}");
    }
    cluster
        .schema
        .execute("DROP TRIGGER refuse ON audit_events")
        .await;
    for on in 0..3 {
        assert_eq!(ask(on).await.0, StatusCode::CREATED, "replica {on} resumes");
    }

    let name = cluster.schema.name.clone();
    cluster
        .schema
        .execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = '{name}' AND pid != pg_backend_pid()"
        ))
        .await;
    for on in 0..3 {
        let mut answers = Vec::new();
        loop {
            let (status, _) = ask(on).await;
            answers.push(status);
            if status == StatusCode::CREATED {
                break;
            }
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(
                answers.len() < 5,
                "replica {on} does not recover: {answers:?}"
            );
        }
    }
    let store = cluster.store().await;
    assert!(store.verify_audit().await.unwrap().is_ok());
}

/// A notification is posted once, however many replicas deliver from the outbox: each claims
/// what it posts. The receiver is down at first, so that every replica's delivery task finds
/// the same retries falling due at once.
#[tokio::test]
async fn a_webhook_is_delivered_once_with_three_replicas() {
    let inbox = super::webhooks::Inbox::default();
    let addr = super::webhooks::Receiver::start("127.0.0.1:0", inbox.clone())
        .await
        .stop()
        .await;
    let hook =
        format!("[[webhooks]]\nurl = \"http://{addr}/json\"\nsecret = \"s3cret-for-the-test\"\n");
    let Some(cluster) = Cluster::start_with(
        "replicas::a_webhook_is_delivered_once_with_three_replicas",
        hook,
    )
    .await
    else {
        return;
    };
    let alice = cluster.token("alice", &["oncall"]);
    let mut ids = Vec::new();
    for on in 0..3 {
        let (status, pending) = cluster
            .post(on, "/v1/access-requests", &alice, write_orders())
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
        ids.push(pending["request_id"].as_str().unwrap().to_owned());
    }
    let store = cluster.store().await;
    // Every first attempt fails; then the receiver comes back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while store
        .due_deliveries(i64::MAX, 10)
        .await
        .unwrap()
        .iter()
        .any(|d| d.attempts == 0)
    {
        assert!(Instant::now() < deadline, "no attempt was made");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _receiver = super::webhooks::Receiver::start(&addr.to_string(), inbox.clone()).await;
    let delivered = || inbox.lock().unwrap().len();
    wait_until(|| delivered() >= 3, "three notifications").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.next_delivery_ms().await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the outbox never emptied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received = inbox.lock().unwrap();
    let mut bodies: Vec<String> = received.iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies.len(), 3, "each notification once: {bodies:#?}");
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 3);
    for id in &ids {
        assert!(
            received
                .iter()
                .any(|r| r.event() == "request.pending" && r.body.contains(id.as_str())),
            "{id}"
        );
    }
}

/// `jitgate migrate` brings an empty schema up to date and is a no-op the second time; `audit
/// verify` on the migrated, empty database reports an empty chain rather than an error.
#[tokio::test]
async fn jitgate_migrate_prepares_the_database_alone() {
    let Some(schema) =
        Schema::create("replicas::jitgate_migrate_prepares_the_database_alone").await
    else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("jitgate.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = {:?}\ndata_dir = {:?}\n[policy]\ndir = {:?}\nschemas = {:?}\n",
            schema.url,
            dir.path().join("data"),
            repo().join("policies"),
            repo().join("schemas"),
        ),
    )
    .unwrap();
    let jitgate = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_jitgate"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let missing = jitgate(&["audit", "verify"]);
    assert!(
        !missing.status.success(),
        "an empty schema is no database: {missing:?}"
    );
    for _ in 0..2 {
        let migrated = jitgate(&["migrate"]);
        assert!(migrated.status.success(), "{migrated:?}");
        assert!(String::from_utf8_lossy(&migrated.stdout).contains("up to date"));
    }
    let verified = jitgate(&["audit", "verify"]);
    assert!(verified.status.success(), "{verified:?}");
}
