//! Three handoff binaries on one real PostgreSQL (`[store] backend = "postgres"`), behind no
//! load balancer but the senders themselves (each event to any instance, again to another
//! when one fails), delivering to the recording ERP:
//!
//! - kill -9 one instance under load: every acknowledged event delivered, per record in
//!   order, no order created twice, its partitions re-owned within one lease period;
//! - SIGSTOP one instance past its lease, then SIGCONT: its settles are refused (it says so),
//!   and every repeat at the sink carries the same idempotency key;
//! - the same event posted to two instances at once is stored once;
//! - PostgreSQL restarted under load: the instances answer 503 while it is gone, keep running
//!   and resume; nothing acknowledged is lost.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use handoff::postgres::Postgres;

use crate::crash::Service;
use crate::delivery::{account, won};
use crate::fake_erp::{self, Fake, Mode};
use crate::postgres::{PASSWORD, PgServer, config, secrets};
use crate::support::*;

const CRM: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The instances' lease period, short for the tests.
const LEASE_SECS: u64 = 2;

struct Cluster {
    server: PgServer,
    fake: Arc<Fake>,
    dir: tempfile::TempDir,
    connectors: std::path::PathBuf,
    ports: Vec<u16>,
    instances: Vec<Option<Service>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    async fn start(count: usize) -> Cluster {
        let server = PgServer::start();
        let (fake, addr) = Fake::start().await;
        let dir = tempfile::tempdir().unwrap();
        let connectors = dir.path().join("connectors");
        std::fs::create_dir(&connectors).unwrap();
        fake_erp::connectors(&connectors, addr, 5);
        let mut cluster = Cluster {
            server,
            fake,
            dir,
            connectors,
            ports: (0..count).map(|_| free_port()).collect(),
            instances: Vec::new(),
        };
        for n in 0..count {
            let service = cluster.launch(n);
            cluster.instances.push(Some(service));
        }
        for port in cluster.ports.clone() {
            eventually(60, "an instance answers", async || {
                reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            })
            .await;
        }
        cluster
    }

    fn launch(&self, n: usize) -> Service {
        let dir = self.dir.path().join(format!("instance-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let url = self.server.url(PASSWORD);
        let lease = LEASE_SECS.to_string();
        Service::start_with(
            &dir,
            &self.connectors,
            self.ports[n],
            &[
                ("HANDOFF_STORE__BACKEND", "postgres"),
                ("DATABASE_URL", url.as_str()),
                ("HANDOFF_STORE__POSTGRES__LEASE_SECS", lease.as_str()),
                ("HANDOFF_LOG__LEVEL", "info"),
            ],
        )
    }

    fn pid(&self, n: usize) -> u32 {
        self.instances[n].as_ref().expect("running").pid()
    }

    fn log(&self, n: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("instance-{n}/handoff.log")))
            .unwrap_or_default()
    }

    async fn postgres(&self) -> Postgres {
        Postgres::new(&config(), &secrets(self.server.url(PASSWORD))).unwrap()
    }
}

/// A failing test shows the end of each instance's log (the temp dir goes with the test).
impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in 0..self.ports.len() {
                let log = self.log(n);
                let tail: Vec<&str> = log.lines().rev().take(80).collect();
                eprintln!("--- instance {n}, last lines of its log:");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
            eprintln!("--- the shared store:\n{}", self.store_state());
        }
    }
}

impl Cluster {
    /// The queue's state in the database, for a failing test's report.
    fn store_state(&self) -> String {
        let url = self.server.url(PASSWORD);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let pg = Postgres::new(&config(), &secrets(url)).unwrap();
                let Ok(client) = pg.client().await else {
                    return "(PostgreSQL does not answer)".to_owned();
                };
                let mut report = String::new();
                for sql in [
                    "SELECT json_agg(j)::text FROM (SELECT id, state, connector, order_key, part, \
                     in_doubt, attempts, due_at::text, reason::text FROM jobs ORDER BY id) j",
                    "SELECT json_agg(i)::text FROM (SELECT name, leased::text, \
                     (seen_until > now()) AS live FROM instances ORDER BY name) i",
                    "SELECT json_agg(p)::text FROM (SELECT part, owner, epoch, \
                     (lease_until > now()) AS live FROM parts ORDER BY part) p",
                    "SELECT json_agg(c)::text FROM (SELECT connector, owner, cursor::text, \
                     (lease_until > now()) AS live FROM poll_cursors) c",
                    "SELECT json_agg(e)::text FROM (SELECT id, xid::text FROM events ORDER BY id) e",
                ] {
                    match client.query_one(sql, &[]).await {
                        Ok(row) => report += &format!("{}\n", row.get::<_, Option<String>>(0).unwrap_or_default()),
                        Err(error) => report += &format!("{sql}: {error}\n"),
                    }
                }
                report
            })
        })
        .join()
        .unwrap_or_default()
    }
}

async fn scalar(postgres: &Postgres, sql: &str) -> i64 {
    let client = postgres.client().await.unwrap();
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Posts one event to the instances in turn, starting with `first`, until one answers 2xx
/// (a sender retries the same event id); returns the status of every try.
async fn deliver(
    client: &reqwest::Client,
    ports: &[u16],
    first: usize,
    id: &str,
    body: &str,
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for n in (first..).map(|n| n % ports.len()) {
        let mut request = client
            .post(format!("http://127.0.0.1:{}/hooks/crm", ports[n]))
            .timeout(Duration::from_secs(5))
            .body(body.to_owned());
        for (name, value) in standard_webhooks(CRM, id, now(), body) {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => return statuses,
            Ok(response) => statuses.push(response.status().as_u16()),
            Err(_) => statuses.push(0),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

/// Per account, `versions` updates in order and then a won opportunity, accounts in
/// parallel, each event to the next instance; returns every status that was not 2xx.
fn load(
    ports: Vec<u16>,
    accounts: usize,
    versions: usize,
    prefix: &'static str,
    pace: (u64, u64),
) -> tokio::task::JoinHandle<Vec<u16>> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut senders = Vec::new();
        for a in 0..accounts {
            let (client, ports) = (client.clone(), ports.clone());
            senders.push(tokio::spawn(async move {
                let mut refused = Vec::new();
                let id = format!("{prefix}{a:02}");
                for v in 0..versions {
                    let version = format!("2026-11-20T10:{v:02}:00Z");
                    let body = account(&id, &version, &format!("v{v:02}"));
                    let event = format!("{prefix}-acc-{a}-{v}");
                    refused.extend(deliver(&client, &ports, a + v, &event, &body).await);
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(pace.0..pace.1))).await;
                }
                let body = won(&format!("006{prefix}{a:02}"), &id, "2026-11-20T11:00:00Z");
                refused
                    .extend(deliver(&client, &ports, a, &format!("{prefix}-opp-{a}"), &body).await);
                refused
            }));
        }
        let mut refused = Vec::new();
        for sender in senders {
            refused.extend(sender.await.unwrap());
        }
        refused
    })
}

/// Every account's last version and its order reached the ERP, updates took effect in order
/// and once each, and no order was made twice.
async fn check_books(fake: &Fake, prefix: &str, accounts: usize, versions: usize) {
    eventually(90, "every acknowledged event delivered", async || {
        let books = fake.books();
        (0..accounts)
            .all(|a| {
                books
                    .customers
                    .get(&format!("{prefix}{a:02}"))
                    .is_some_and(|c| c["name"] == format!("v{:02}", versions - 1))
                    && books.orders.contains_key(&format!("006{prefix}{a:02}"))
            })
            .then_some(())
    })
    .await;
    let books = fake.books();
    assert_eq!(books.duplicate_orders, 0, "no order created twice");
    for (code, history) in &books.customer_history {
        let mut sorted = history.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            history, &sorted,
            "updates of {code} took effect in order, once each"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_instance_loses_nothing_and_its_partitions_move_within_a_lease() {
    let mut cluster = Cluster::start(3).await;
    let pg = cluster.postgres().await;
    // Shared by three, and every partition held (while a share moves, an instance has given
    // some back before another takes them).
    eventually(30, "the partitions shared by three", async || {
        let owners_and_held = scalar(
            &pg,
            "SELECT count(DISTINCT owner) * 100 + count(*) FROM parts WHERE lease_until > now()",
        )
        .await;
        (owners_and_held == 3 * 100 + 64).then_some(())
    })
    .await;
    // Any instance's API shows every instance and the partitions each holds (asked again
    // while a share is on the move: under a CPU shortage a renewal can come late, and the
    // partition changes hands).
    let url = format!("http://127.0.0.1:{}/api/v1/overview", cluster.ports[0]);
    let members = eventually(
        30,
        "the overview shows three instances holding 64",
        async || {
            let overview: serde_json::Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
            let members = overview["instances"].as_array()?.clone();
            let partitions: usize = members
                .iter()
                .map(|m| m["partitions"].as_array().map_or(0, Vec::len))
                .sum();
            (members.len() == 3 && partitions == 64).then_some(members)
        },
    )
    .await;
    assert_eq!(
        members
            .iter()
            .filter(|m| m["this_instance"] == true)
            .count(),
        1
    );
    let load = load(cluster.ports.clone(), 12, 8, "K", (20, 120));
    eventually(60, "deliveries under way", async || {
        (cluster.fake.books().received.len() > 30).then_some(())
    })
    .await;

    // kill -9 the third instance; the senders go on to the others.
    let victim = format!("-{}-", cluster.pid(2));
    let held: i64 = {
        let client = pg.client().await.unwrap();
        client
            .query_one(
                "SELECT count(*) FROM parts WHERE strpos(owner, $1) > 0",
                &[&victim],
            )
            .await
            .unwrap()
            .get(0)
    };
    assert!(held > 0, "the victim held partitions");
    cluster.instances[2].take().unwrap().kill();
    let killed = Instant::now();
    let moved = eventually(30, "its partitions re-owned", async || {
        let client = pg.client().await.unwrap();
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM parts WHERE strpos(owner, $1) > 0 OR owner IS NULL \
                 OR lease_until <= now()",
                &[&victim],
            )
            .await
            .unwrap()
            .get(0);
        (left == 0).then(|| killed.elapsed())
    })
    .await;
    eprintln!("the killed instance's {held} partitions were re-owned {moved:?} after the kill");
    assert!(
        moved <= Duration::from_secs(LEASE_SECS) + Duration::from_millis(1500),
        "re-owned within one lease period ({LEASE_SECS} s) and a renewal round: {moved:?}"
    );

    tokio::time::timeout(Duration::from_secs(120), load)
        .await
        .expect("the load finishes")
        .unwrap();
    check_books(&cluster.fake, "K", 12, 8).await;
    {
        let books = cluster.fake.books();
        assert_eq!(books.orders.len(), 12);
        eprintln!(
            "kill -9: {} requests to the ERP, {} replays answered by idempotency",
            books.received.len(),
            books.replays
        );
    }
    eventually(30, "no job left open", async || {
        (scalar(&pg, "SELECT count(*) FROM jobs").await == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_stopped_past_its_lease_has_its_settles_refused_and_repeats_keep_their_key() {
    let mut cluster = Cluster::start(2).await;
    let pg = cluster.postgres().await;
    eventually(30, "the partitions shared by two", async || {
        let owners = scalar(
            &pg,
            "SELECT count(DISTINCT owner) FROM parts WHERE lease_until > now()",
        )
        .await;
        (owners == 2).then_some(())
    })
    .await;
    // Slow answers: the stopped instance has deliveries in flight when it stops.
    cluster
        .fake
        .set_mode(Mode::Slow(Duration::from_millis(1500)));
    let load = load(vec![cluster.ports[0]], 16, 3, "P", (5, 30));
    let stopped = cluster.pid(1) as i32;
    let victim = format!("-{stopped}-");
    // It has jobs leased (and, with 1.5 s answers, deliveries in flight) when it stops.
    eventually(
        60,
        "the second instance has deliveries in flight",
        async || {
            let client = pg.client().await.ok()?;
            let leased: i64 = client
                .query_one(
                    "SELECT coalesce(sum(cardinality(leased)), 0)::bigint FROM instances \
                     WHERE strpos(name, $1) > 0",
                    &[&victim],
                )
                .await
                .ok()?
                .get(0);
            (leased > 0 && cluster.fake.books().received.len() > 10).then_some(())
        },
    )
    .await;
    unsafe { libc::kill(stopped, libc::SIGSTOP) };
    // Past its lease: the other instance takes its partitions and runs its jobs again.
    tokio::time::sleep(Duration::from_secs(LEASE_SECS * 2 + 1)).await;
    let client = pg.client().await.unwrap();
    let still: i64 = client
        .query_one(
            "SELECT count(*) FROM parts WHERE strpos(owner, $1) > 0 AND lease_until > now()",
            &[&victim],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(still, 0, "the stopped instance holds nothing any more");
    unsafe { libc::kill(stopped, libc::SIGCONT) };
    cluster.fake.set_mode(Mode::Normal);

    tokio::time::timeout(Duration::from_secs(120), load)
        .await
        .expect("the load finishes")
        .unwrap();
    check_books(&cluster.fake, "P", 16, 3).await;
    let refused = eventually(
        20,
        "the woken instance reports its refused settles",
        async || {
            let log = cluster.log(1);
            let count = log.matches("settle refused").count();
            (count > 0).then_some(count)
        },
    )
    .await;
    // Every request for one order carried one idempotency key: the repeat is recognisable.
    let books = cluster.fake.books();
    let mut keys: HashMap<String, HashSet<String>> = HashMap::new();
    for received in books
        .received
        .iter()
        .filter(|r| r.path == "/orders" && r.method == "POST")
    {
        let reference = received.body["reference"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        keys.entry(reference)
            .or_default()
            .extend(received.key.clone());
    }
    for (reference, keys) in &keys {
        assert_eq!(
            keys.len(),
            1,
            "{reference}: one idempotency key, got {keys:?}"
        );
    }
    eprintln!(
        "SIGSTOP past the lease: {refused} settles refused, {} requests, {} replays answered by idempotency",
        books.received.len(),
        books.replays
    );
    drop(books);
    cluster.instances.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_posted_to_two_instances_at_once_is_stored_once() {
    let cluster = Cluster::start(2).await;
    let pg = cluster.postgres().await;
    let client = reqwest::Client::new();
    for round in 0..20 {
        let id = format!("twice-{round}");
        let body = won(&format!("006TW{round:02}"), "001TW", "2026-11-20T11:00:00Z");
        let post = |port: u16| {
            let mut request = client
                .post(format!("http://127.0.0.1:{port}/hooks/crm"))
                .body(body.clone());
            for (name, value) in standard_webhooks(CRM, &id, now(), &body) {
                request = request.header(name, value);
            }
            request.send()
        };
        // Both requests in flight at once.
        let (first, second) = tokio::join!(post(cluster.ports[0]), post(cluster.ports[1]));
        assert!(first.unwrap().status().is_success());
        assert!(second.unwrap().status().is_success());
    }
    assert_eq!(
        scalar(
            &pg,
            "SELECT count(*) FROM events WHERE event_id LIKE 'twice-%'"
        )
        .await,
        20,
        "each event stored once"
    );
    assert_eq!(
        scalar(&pg, "SELECT count(DISTINCT event) FROM (SELECT event FROM jobs UNION ALL SELECT (job->>'seq')::bigint FROM finished) j").await,
        scalar(&pg, "SELECT count(*) FROM (SELECT event FROM jobs UNION ALL SELECT (job->>'seq')::bigint FROM finished) j").await,
        "one job per event and flow"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_means_503s_then_everything_delivered() {
    let mut cluster = Cluster::start(2).await;
    let load = load(cluster.ports.clone(), 8, 10, "R", (100, 250));
    eventually(60, "deliveries under way", async || {
        (cluster.fake.books().received.len() > 10).then_some(())
    })
    .await;
    cluster.server.stop();
    // While it is gone, the instances answer, with 503 for events and for readiness.
    let client = reqwest::Client::new();
    let body = account("001GONE", "2026-11-20T10:00:00Z", "gone");
    let mut request = client
        .post(format!("http://127.0.0.1:{}/hooks/crm", cluster.ports[0]))
        .body(body.clone());
    for (name, value) in standard_webhooks(CRM, "while-gone", now(), &body) {
        request = request.header(name, value);
    }
    let status = request.send().await.unwrap().status().as_u16();
    assert_eq!(status, 503, "an event is refused while PostgreSQL is gone");
    let ready = reqwest::get(format!("http://127.0.0.1:{}/readyz", cluster.ports[1]))
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(ready, 503);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.server.restart();

    let refused = tokio::time::timeout(Duration::from_secs(120), load)
        .await
        .expect("the load finishes")
        .unwrap();
    check_books(&cluster.fake, "R", 8, 10).await;
    assert!(
        refused.contains(&503),
        "the senders saw 503s while it was gone: {refused:?}"
    );
    for n in 0..2 {
        assert!(
            !cluster.instances[n].as_mut().unwrap().exited(),
            "instance {n} kept running"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_installation_moves_to_postgres_and_goes_on_where_it_stopped() {
    let server = PgServer::start();
    let (fake, addr) = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let connectors = dir.path().join("connectors");
    std::fs::create_dir(&connectors).unwrap();
    fake_erp::connectors(&connectors, addr, 5);
    let old = dir.path().join("embedded");
    std::fs::create_dir(&old).unwrap();
    let port = free_port();
    let client = reqwest::Client::new();

    // The single process delivers the customers, then the ERP goes away: the orders wait.
    let service = Service::start(&old, &connectors, port);
    for a in 0..4 {
        let body = account(&format!("M{a:02}"), "2026-11-20T10:00:00Z", "moved");
        deliver(&client, &[port], 0, &format!("m-acc-{a}"), &body).await;
    }
    eventually(30, "the customers delivered", async || {
        (fake.books().customers.len() == 4).then_some(())
    })
    .await;
    fake.set_mode(Mode::Unavailable(None));
    for a in 0..4 {
        let body = won(
            &format!("006M{a:02}"),
            &format!("M{a:02}"),
            "2026-11-20T11:00:00Z",
        );
        deliver(&client, &[port], 0, &format!("m-opp-{a}"), &body).await;
    }
    eventually(30, "the orders retrying", async || {
        let response = client
            .get(format!("http://127.0.0.1:{port}/api/v1/overview"))
            .send()
            .await
            .ok()?;
        let overview: serde_json::Value = response.json().await.ok()?;
        (overview["waiting"]["erp"]["retrying"].as_u64() == Some(4)).then_some(())
    })
    .await;
    service.kill();

    // The move, with the embedded service stopped (killed: it recovers the store first).
    let url = server.url(PASSWORD);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["move-to-postgres", "--config"])
        .arg(old.join("config.toml"))
        .env("HANDOFF_DATA_DIR", old.join("data"))
        .env("HANDOFF_CONNECTORS_DIR", &connectors)
        .env("HANDOFF_STORE__BACKEND", "postgres")
        .env("DATABASE_URL", &url)
        .envs(crate::support::secrets())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Every acknowledged order moves: with its job, or (killed before the embedded router
    // stored its last slice) as an event still to route.
    let count = |after: &str| -> usize {
        let (_, rest) = said.split_once(after).expect(after);
        rest.trim_start()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (jobs, unrouted) = (count("moved"), count("events ("));
    assert_eq!(jobs + unrouted, 4, "{said}");
    assert!(said.contains(", 0 dead letters, 4 events ("), "{said}");
    assert!(!said.contains(&url) && !said.contains(PASSWORD), "{said}");

    // An instance on PostgreSQL delivers the orders to the customers made before the move.
    fake.set_mode(Mode::Normal);
    let new = dir.path().join("instance");
    std::fs::create_dir(&new).unwrap();
    let port = free_port();
    let _instance = Service::start_with(
        &new,
        &connectors,
        port,
        &[
            ("HANDOFF_STORE__BACKEND", "postgres"),
            ("DATABASE_URL", url.as_str()),
            ("HANDOFF_STORE__POSTGRES__LEASE_SECS", "2"),
        ],
    );
    eventually(60, "the waiting orders delivered", async || {
        (fake.books().orders.len() == 4).then_some(())
    })
    .await;
    {
        let books = fake.books();
        assert_eq!(books.duplicate_orders, 0);
        for a in 0..4 {
            let (_, order) = &books.orders[&format!("006M{a:02}")];
            assert_eq!(
                order["customer"],
                format!("C-M{a:02}"),
                "the moved cross-reference"
            );
        }
    }
    // A sender retrying an event the old process took gets the duplicate answer.
    let body = won("006M00", "M00", "2026-11-20T11:00:00Z");
    deliver(&client, &[port], 0, "m-opp-0", &body).await;
    let pg = Postgres::new(&config(), &secrets(url.clone())).unwrap();
    assert_eq!(scalar(&pg, "SELECT count(*) FROM events").await, 4);
    eventually(30, "nothing left open", async || {
        (scalar(&pg, "SELECT count(*) FROM jobs").await == 0).then_some(())
    })
    .await;
}
