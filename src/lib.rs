//! handoff keeps a CRM and an ERP in step.
//!
//! # Layout
//!
//! - `cli`      the command line: parse, load config, hand over
//! - `operate`  `handoff jobs …` / `handoff connectors …`: operator actions over the JSON API
//! - `app`      wiring: mappings → store → journal → sources → HTTP server, mapping reloads
//! - `config`   typed TOML config, `HANDOFF_*` overrides, validation
//! - `check`    `handoff check`: every config and file problem, with file:line:col
//! - `problem`  one problem (`file:line:col: message`) and reading YAML files, shared by
//!   `check`, `mapping` and `adapters`
//! - `postgres` the scale-out backend in PostgreSQL (so far: connection, schema, migrations)
//! - `store`    the data directory's sled database (small indexes, sandboxes) and its layout version
//! - `journal`  durable, deduplicated journal of accepted events; group commit
//! - `logging`  log setup; request values escaped in the text format
//! - `envelope` the canonical form of one accepted event
//! - `ingest`   `POST /hooks/{source}`: verify, parse, type, journal, answer
//! - `mapping`  YAML mappings: spec → compile (problems with file:line:col) → apply; reload; `expr`
//! - `queue`    the storage seam (`Queue`) and the embedded backend: the queue log beside the
//!   journal, order per key, retries, parking, holds, dead letters, snapshots, reclamation
//! - `send`     `handoff send SOURCE FILE`: sign an event file as its sender would and post it
//! - `serve`    the HTTP server loop: header and request timeouts, connections per address
//! - `sync`     the engine: router (journal → jobs), workers per connector, breaker, status back
//! - `adapters` the systems handoff talks to: REST connectors, the sandbox
//! - `dashboard` the operator's HTML pages, JSON API (errors always JSON), metrics and auth
//!
//! The data path and its invariants are described in ARCHITECTURE.md and README.md.

pub mod adapters;
pub mod app;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod envelope;
pub mod ingest;
pub mod journal;
pub mod logging;
pub mod mapping;
pub mod metrics;
pub mod operate;
pub mod postgres;
pub mod problem;
pub mod queue;
pub mod send;
pub mod serve;
pub mod store;
pub mod sync;
