//! Integration tests: the real service on 127.0.0.1, one module per area.

mod api_errors;
mod browser;
mod cli;
mod conformance;
mod connectors;
mod crash;
mod delivery;
mod disk_full;
mod docker;
mod durability;
mod fake_erp;
mod fakes;
mod holds;
mod ingest;
mod isolation;
mod operate;
mod outage;
mod quick_start;
mod reference;
mod reload;
mod security;
mod support;
mod tryton;
mod tryton_money;
mod tryton_ours;
mod upgrade;
