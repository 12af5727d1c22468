//! The PostgreSQL backend against a real PostgreSQL: Debian's server binaries (tests/run.sh
//! installs the `postgresql` package when they are missing), `initdb` into a temporary
//! directory, a free port on 127.0.0.1, password authentication, stopped by its PID.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use handoff::config::PostgresConfig;
use handoff::postgres::{PgError, Postgres, schema};

/// A PostgreSQL server of this test's own.
pub struct PgServer {
    child: Option<Child>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

pub const PASSWORD: &str = "handoff-test-password";

/// How to run one of the server's programs (as `postgres` when the tests run as root: initdb
/// refuses root), its stderr into `<program>.log` in `dir`.
fn program(dir: &std::path::Path, name: &str) -> Command {
    let mut command = Command::new(server_binaries().join(name));
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::process::CommandExt;
        let (uid, gid) = postgres_user();
        command.uid(uid).gid(gid);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .unwrap();
    command.stdout(Stdio::null()).stderr(log);
    command
}

impl PgServer {
    pub fn start() -> PgServer {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            chown_postgres(dir.path());
        }
        let output = program(dir.path(), "initdb")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "handoff",
                "--auth=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "initdb: {}",
            std::fs::read_to_string(dir.path().join("initdb.log")).unwrap_or_default()
        );
        let mut server = PgServer {
            child: None,
            port: free_port(),
            _dir: dir,
        };
        server.launch();
        server
    }

    /// Starts the server on its data directory and port; returns once it accepts connections.
    fn launch(&mut self) {
        let dir = self._dir.path();
        let log = dir.join("postgres.log");
        let before = std::fs::read_to_string(&log).map_or(0, |l| l.len());
        let child = program(dir, "postgres")
            .args(["-D", dir.join("data").to_str().unwrap()])
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("unix_socket_directories={}", dir.display())])
            .spawn()
            .unwrap();
        self.child = Some(child);
        // The port opens before recovery ends ("the database system is starting up"): ready is
        // when the server says so in its log.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text[before.min(text.len())..].contains("ready to accept connections") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "PostgreSQL did not start: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// A fast shutdown (SIGINT), by PID.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            let _ = child.wait();
        }
    }

    /// Starts it again on the same data and port (after `stop`).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn url(&self, password: &str) -> String {
        format!(
            "postgres://handoff:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where `initdb` and `postgres` are: Debian keeps them off the PATH.
fn server_binaries() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect(
        "PostgreSQL's server binaries (Debian package postgresql; tests/run.sh installs it)",
    )
}

/// The `postgres` user's uid and gid (Debian's package creates it).
fn postgres_user() -> (u32, u32) {
    let name = std::ffi::CString::new("postgres").unwrap();
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !entry.is_null(),
        "no user postgres (Debian package postgresql creates it)"
    );
    unsafe { ((*entry).pw_uid, (*entry).pw_gid) }
}

fn chown_postgres(path: &std::path::Path) {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn config() -> PostgresConfig {
    PostgresConfig {
        url_env: "TEST_DATABASE_URL".into(),
        ..PostgresConfig::default()
    }
}

/// A pool on `server`'s database, its schema migrated.
pub async fn migrated(server: &PgServer) -> std::sync::Arc<Postgres> {
    let postgres =
        std::sync::Arc::new(Postgres::new(&config(), &secrets(server.url(PASSWORD))).unwrap());
    schema::migrate(&postgres).await.unwrap();
    postgres
}

/// A won opportunity `id` as ingest would journal it.
pub fn event(id: &str) -> handoff::envelope::Envelope {
    let data = serde_json::json!({ "id": id, "type": "opportunity.won" });
    handoff::envelope::Envelope {
        id: id.into(),
        source: "crm".into(),
        event_type: Some("opportunity.won".into()),
        ignored: false,
        object: Some("Opportunity".into()),
        object_id: Some(id.into()),
        version: Some("1".into()),
        signed_at: None,
        received_at: chrono::Utc::now(),
        raw_body: data.to_string(),
        data,
        data_is_raw_body: true,
    }
}

/// A config on the PostgreSQL backend with its data dir at `data_dir`, plus `more` TOML.
fn postgres_config(data_dir: &std::path::Path, more: &str) -> handoff::config::Config {
    handoff::config::Config::parse(
        &format!("[store]\nbackend = \"postgres\"\n{more}"),
        vec![("HANDOFF_DATA_DIR".into(), data_dir.display().to_string())],
    )
    .unwrap()
}

pub fn secrets(url: String) -> impl Fn(&str) -> Option<String> + Send + Sync {
    let table = HashMap::from([("TEST_DATABASE_URL".to_owned(), url)]);
    move |name: &str| table.get(name).cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_starting_together_apply_the_schema_once() {
    let server = PgServer::start();
    let lookup = secrets(server.url(PASSWORD));
    let postgres = std::sync::Arc::new(Postgres::new(&config(), &lookup).unwrap());
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let postgres = postgres.clone();
            tokio::spawn(async move { schema::migrate(&postgres).await })
        })
        .collect();
    let mut applied = Vec::new();
    for start in starts {
        applied.extend(start.await.unwrap().unwrap());
    }
    let all: Vec<i32> = schema::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(applied, all, "each migration applied by exactly one start");
    let client = postgres.client().await.unwrap();
    assert_eq!(
        schema::version(&client).await.unwrap(),
        Some(schema::LATEST)
    );
    let rows: i64 = client
        .query_one("SELECT count(*) FROM handoff_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, all.len() as i64);
    // The tables are there.
    for table in [
        "seen",
        "events",
        "jobs",
        "job_log",
        "parts",
        "xrefs",
        "poll_cursors",
    ] {
        let found: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await
            .unwrap()
            .get(0);
        assert!(found, "{table}");
    }
    // Starting again changes nothing.
    assert_eq!(schema::migrate(&postgres).await.unwrap(), Vec::<i32>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_newer_than_this_handoff_is_refused() {
    let server = PgServer::start();
    let lookup = secrets(server.url(PASSWORD));
    let postgres = Postgres::new(&config(), &lookup).unwrap();
    schema::migrate(&postgres).await.unwrap();
    let newer = schema::LATEST + 1;
    postgres
        .client()
        .await
        .unwrap()
        .execute(
            "INSERT INTO handoff_schema (version, name) VALUES ($1, 'from a newer handoff')",
            &[&newer],
        )
        .await
        .unwrap();
    let error = schema::migrate(&postgres).await.unwrap_err();
    assert!(
        matches!(error, PgError::TooNew { found, known } if found == newer && known == schema::LATEST),
        "{error}"
    );
    assert!(error.to_string().contains("newer than this handoff knows"));
    // `handoff check` says the same in one line.
    let config = config();
    let said = tokio::task::spawn_blocking(move || handoff::postgres::diagnose(&config, &lookup))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(said.contains(&format!("version {newer}")), "{said}");
}

/// A long envelope is compressed with lz4 (pglz cost ~4% of PostgreSQL's CPU in the orders
/// bench), in the partitions there at the migration and in those made later, and reads back
/// whole.
#[tokio::test(flavor = "multi_thread")]
async fn long_envelopes_are_compressed_with_lz4_in_every_partition() {
    let server = PgServer::start();
    let postgres = migrated(&server).await;
    let client = postgres.client().await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE events_p20990101 PARTITION OF events \
             FOR VALUES FROM ('2099-01-01') TO ('2099-01-02')",
        )
        .await
        .unwrap();
    let envelope: Vec<u8> = (0..100)
        .flat_map(|n| format!("{{\"Id\": \"00k{n:05}\", \"UnitPrice\": \"12.50\"}}").into_bytes())
        .collect();
    assert!(envelope.len() > 2_000);
    for (event, at) in [("today", "now()"), ("later", "'2099-01-01 12:00Z'")] {
        client
            .execute(
                &format!(
                    "INSERT INTO events (source, event_id, received_at, envelope) \
                     VALUES ('crm', $1, {at}, $2)"
                ),
                &[&event, &envelope],
            )
            .await
            .unwrap();
        // Read as stored (an INSERT's RETURNING sees the value before it is compressed).
        let row = client
            .query_one(
                "SELECT pg_column_compression(envelope), tableoid::regclass::text, envelope \
                 FROM events WHERE event_id = $1",
                &[&event],
            )
            .await
            .unwrap();
        let (method, partition, back): (Option<String>, String, Vec<u8>) =
            (row.get(0), row.get(1), row.get(2));
        assert_eq!(method.as_deref(), Some("lz4"), "{event} in {partition}");
        assert_eq!(back, envelope);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_says_what_is_wrong_in_one_line_without_the_password() {
    let server = PgServer::start();
    let diagnose = |url: Option<String>| {
        let lookup = move |name: &str| url.clone().filter(|_| name == "TEST_DATABASE_URL");
        handoff::postgres::diagnose(&config(), &lookup)
    };
    let (right, wrong, unreachable) = (
        server.url(PASSWORD),
        server.url("not-the-password"),
        format!(
            "postgres://handoff:{PASSWORD}@127.0.0.1:{}/postgres",
            free_port()
        ),
    );
    let said = tokio::task::spawn_blocking(move || {
        [
            diagnose(Some(right)).map_err(|e| e.to_string()),
            diagnose(Some(wrong)).map_err(|e| e.to_string()),
            diagnose(Some(unreachable)).map_err(|e| e.to_string()),
            diagnose(None).map_err(|e| e.to_string()),
            diagnose(Some("not a url at all ://".into())).map_err(|e| e.to_string()),
        ]
    })
    .await
    .unwrap();
    let [right, wrong, unreachable, unset, garbage] = said;
    assert!(
        right.as_ref().unwrap().contains("no handoff schema yet"),
        "{right:?}"
    );
    let wrong = wrong.unwrap_err();
    assert!(wrong.contains("password authentication failed"), "{wrong}");
    let unreachable = unreachable.unwrap_err();
    assert!(
        unreachable.starts_with("cannot connect to PostgreSQL at 127.0.0.1:"),
        "{unreachable}"
    );
    assert!(unset.unwrap_err().contains("TEST_DATABASE_URL is not set"));
    assert!(
        garbage
            .unwrap_err()
            .contains("does not hold a PostgreSQL connection URL")
    );
    for message in [&wrong, &unreachable] {
        assert!(
            !message.contains(PASSWORD) && !message.contains("not-the-password"),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }
}

#[test]
fn serve_on_postgres_without_its_url_names_the_variable_and_keeps_no_local_journal() {
    let dir = tempfile::tempdir().unwrap();
    let config = postgres_config(dir.path(), "");
    let error = handoff::app::App::build(
        &config,
        &handoff::config::Origin::File("test.toml".into()),
        &|_: &str| None,
    )
    .err()
    .expect("refused");
    assert!(
        error
            .to_string()
            .contains("environment variable DATABASE_URL is not set"),
        "{error}"
    );
    assert!(!dir.path().join("journal").exists(), "nothing was created");
}

/// A data dir whose journal runs ahead of its queue (a process killed after taking events and
/// before its router stored their jobs) moves with those events, placed after the router's
/// cursor, so the instances route them.
#[tokio::test(flavor = "multi_thread")]
async fn a_move_takes_the_events_the_embedded_router_had_not_routed_yet() {
    let server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = handoff::journal::Journal::open(dir.path(), 86_400, 1 << 20).unwrap();
        journal
            .append(vec![event("unrouted-1"), event("unrouted-2")])
            .await
            .unwrap();
    }
    let config = postgres_config(
        dir.path(),
        "[store.postgres]\nurl_env = \"TEST_DATABASE_URL\"\n",
    );
    let moved = handoff::postgres::import::move_to_postgres(
        &config,
        &secrets(server.url(PASSWORD)),
        &|_: &str| {},
    )
    .unwrap();
    assert_eq!(
        (moved.jobs, moved.events, moved.unrouted, moved.dedupe_keys),
        (0, 2, 2, 2)
    );
    // Both lie after the router's cursor, where the instances' router reads from.
    let postgres = migrated(&server).await;
    let client = postgres.client().await.unwrap();
    let ahead: i64 = client
        .query_one(
            "SELECT count(*) FROM events e, poll_cursors c WHERE c.connector = 'router' \
             AND (e.xid, e.id) > ((c.cursor->>'xid')::xid8, (c.cursor->>'id')::bigint)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ahead, 2);
}
