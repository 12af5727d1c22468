//! `handoff check`: everything that can be wrong before anything runs, reported at once.
//!
//! It loads the config (with its sources and secrets), compiles every mapping (with its lookups
//! and target schemas) and parses every connector file; problems carry `file:line:col`.

use std::path::Path;

use crate::config::Config;
use crate::problem::Problem;

/// The shared database: reachable, the password right, the schema not newer than this
/// handoff; and a warning that `serve` does not run on it yet.
fn postgres_problems(config: &Config, report: &mut Report) {
    let location = "store.postgres".to_owned();
    if let Err(error) =
        crate::postgres::diagnose(&config.store.postgres, &crate::config::env_secrets)
    {
        report.problems.push(Problem {
            location: location.clone(),
            message: error.to_string(),
        });
    }
    report.warnings.push(Problem {
        location,
        message: "backend = \"postgres\": the schema and this check are ready, but `serve` \
                  runs only on the embedded backend in this release"
            .into(),
    });
}

/// What `check` found: problems (nothing runs until they are fixed) and warnings (it runs,
/// but probably not as meant).
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// Every problem in the config and the files it points to; no problems means all is well.
pub fn run(config_path: Option<&Path>) -> Report {
    let mut report = Report::default();
    let (config, origin) = match Config::load(config_path) {
        Ok(loaded) => loaded,
        Err(error) => {
            let message = format!("{error:#}");
            let location = match message.strip_prefix("environment variable ") {
                Some(_) => "environment".to_owned(),
                None => config_path.map_or("config".to_owned(), |p| p.display().to_string()),
            };
            report.problems.push(Problem { location, message });
            return report;
        }
    };
    let problems = &mut report.problems;
    problems.extend(
        crate::ingest::source_problems(&config, &origin, &crate::config::env_secrets)
            .into_iter()
            .map(|(name, message)| Problem {
                location: format!("sources.{name}"),
                message,
            }),
    );
    if config.store.backend == crate::config::Backend::Postgres {
        postgres_problems(&config, &mut report);
    }
    let problems = &mut report.problems;
    let loaded = crate::adapters::connector::load_dir(
        &config.connectors_dir,
        &crate::config::env_secrets,
        None,
    );
    let (connectors, all_loaded) = match loaded {
        Ok(connectors) => (connectors, true),
        Err(found) => {
            problems.extend(found);
            (Vec::new(), false)
        }
    };
    match crate::mapping::load_dir(&config.mappings_dir, &config.schemas_dir) {
        Ok((mappings, _)) => {
            let found = connector_problems(&mappings, &connectors, &config.connectors_dir);
            // A connector whose file is there but broken was reported above: no echo of it
            // for every mapping that targets it.
            let files = connector_files(&config.connectors_dir);
            problems.extend(found.into_iter().filter(|problem| {
                all_loaded
                    || !files
                        .iter()
                        .any(|f| problem.message.contains(&format!("{f:?}")))
            }));
            if all_loaded {
                report
                    .warnings
                    .extend(events_nobody_sends(&config, &connectors, &mappings));
            }
            report
                .warnings
                .extend(events_nobody_reads(&config, &mappings));
        }
        Err(found) => problems.extend(found),
    }
    report
}

/// Mappings that handle a source's events but read none of the places its events carry data:
/// the first steps of the mapping's `$.…` paths against the containers the source's own
/// pointers name (`object_id`, `version`, `when`: `/sObject/Id` names `sObject`). A mapping reading `$.data.*` for events whose
/// fields sit under `/sObject` maps nothing but errors.
fn events_nobody_reads(config: &Config, mappings: &[crate::mapping::Mapping]) -> Vec<Problem> {
    let step = regex::Regex::new(r"\$\.([A-Za-z_][A-Za-z0-9_]*)").expect("a valid pattern");
    let mut warnings = Vec::new();
    for (name, source) in &config.sources {
        let mut carries: Vec<&str> = [&source.object_id, &source.version]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .chain(source.events.iter().flat_map(|rule| {
                rule.when
                    .keys()
                    .map(String::as_str)
                    .chain(rule.object_id.as_deref())
                    .chain(rule.version.as_deref())
            }))
            // Only pointers that name a container (`/sObject/Id`): flat events say nothing.
            .filter(|pointer| pointer.matches('/').count() >= 2)
            .filter_map(|pointer| pointer.split('/').nth(1))
            .filter(|first| !first.is_empty())
            .collect();
        carries.sort_unstable();
        carries.dedup();
        if carries.is_empty() {
            continue;
        }
        let types: Vec<&str> = source
            .events
            .iter()
            .map(|r| r.event_type.as_str())
            .collect();
        for mapping in mappings.iter().filter(|m| {
            types.contains(&m.event.as_str()) && m.source.as_deref().is_none_or(|s| s == name)
        }) {
            let mut reads: Vec<&str> = mapping
                .fields
                .iter()
                .flat_map(|field| step.captures_iter(&field.text))
                .filter_map(|c| c.get(1).map(|m| m.as_str()))
                .collect();
            reads.sort_unstable();
            reads.dedup();
            if !reads.is_empty() && !reads.iter().any(|r| carries.contains(r)) {
                warnings.push(Problem {
                    location: format!("mapping {}", mapping.flow),
                    message: format!(
                        "reads $.{} but events from source {name:?} carry their data under /{}: \
                         it would map nothing from them",
                        reads.join(", $."),
                        carries.join(", /")
                    ),
                });
            }
        }
    }
    warnings
}

/// The names of the connector files in `dir` (`erp` for `erp.yaml`).
fn connector_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            (path.extension()? == "yaml").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect()
}

/// Mappings that wait for an event no source produces (a typo in `on.event` or `on.source`):
/// they would never run. Status events come from an ERP's poller or a sandbox ERP too.
fn events_nobody_sends(
    config: &Config,
    connectors: &[crate::adapters::connector::Connector],
    mappings: &[crate::mapping::Mapping],
) -> Vec<Problem> {
    let mut produced: Vec<(String, String)> = config
        .sources
        .iter()
        .flat_map(|(name, source)| {
            source
                .events
                .iter()
                .map(move |rule| (name.clone(), rule.event_type.clone()))
        })
        .collect();
    for connector in connectors {
        let erp_sandbox =
            connector.sandbox.is_some() && connector.role == crate::adapters::connector::Role::Erp;
        if connector.poller.is_some() || erp_sandbox {
            produced.push((connector.name.clone(), "order_status.changed".into()));
        }
    }
    let mut known: Vec<&str> = produced.iter().map(|(_, t)| t.as_str()).collect();
    known.sort_unstable();
    known.dedup();
    mappings
        .iter()
        .filter(|m| {
            !produced.iter().any(|(source, event)| {
                *event == m.event && m.source.as_deref().is_none_or(|s| s == source)
            })
        })
        .map(|m| Problem {
            location: format!("mapping {}", m.flow),
            message: format!(
                "waits for event {:?}{} that no source produces, so it never runs (events: {})",
                m.event,
                m.source
                    .as_deref()
                    .map(|s| format!(" from source {s:?}"))
                    .unwrap_or_default(),
                known.join(", ")
            ),
        })
        .collect()
}

/// Mappings whose target connector has no file in the connectors directory, or cannot do
/// what the mapping asks of it (a stock hold on a connector with no availability check would
/// silently never hold).
pub fn connector_problems(
    mappings: &[crate::mapping::Mapping],
    connectors: &[crate::adapters::connector::Connector],
    dir: &Path,
) -> Vec<Problem> {
    let known: Vec<&str> = connectors.iter().map(|c| c.name.as_str()).collect();
    let mut problems = Vec::new();
    for mapping in mappings {
        let location = format!("mapping {}", mapping.flow);
        let Some(connector) = connectors.iter().find(|c| c.name == mapping.connector) else {
            problems.push(Problem {
                location,
                message: format!(
                    "target.connector {:?} has no file {}/{}.yaml (known: {})",
                    mapping.connector,
                    dir.display(),
                    mapping.connector,
                    known.join(", ")
                ),
            });
            continue;
        };
        if let Some(reconcile) = &mapping.reconcile {
            problems.extend(reconcile_problems(mapping, reconcile, connectors, dir));
        }
        if mapping.holds_for_stock() && !connector.adapter.checks_stock() {
            problems.push(Problem {
                location,
                message: format!(
                    "holds: stock needs a connector that can check stock, but {:?} ({}) cannot; \
                     remove the hold or target a connector that can (tryton)",
                    mapping.connector,
                    connector.adapter.kind()
                ),
            });
        }
    }
    problems
}

/// A `reconcile:` block whose source connector is missing, or whose list operations the
/// connectors do not have (found now, not when a run starts).
fn reconcile_problems(
    mapping: &crate::mapping::Mapping,
    reconcile: &crate::mapping::spec::ReconcileSpec,
    connectors: &[crate::adapters::connector::Connector],
    dir: &Path,
) -> Vec<Problem> {
    let location = format!("mapping {}", mapping.flow);
    let mut problems = Vec::new();
    for (what, name, operation) in [
        (
            "reconcile.source",
            &reconcile.source.connector,
            &reconcile.source.operation,
        ),
        ("reconcile.target", &mapping.connector, &reconcile.target),
    ] {
        let message = match connectors.iter().find(|c| &c.name == name) {
            None => format!(
                "{what}: connector {name:?} has no file {}/{name}.yaml",
                dir.display()
            ),
            Some(c) if !c.adapter.lists(operation) => format!(
                "{what}: connector {name:?} ({}) has no list operation {operation:?} (a `list:` \
                 operation in its file; Tryton lists {})",
                c.adapter.kind(),
                crate::adapters::tryton::listing_operations().join(", ")
            ),
            Some(_) => continue,
        };
        problems.push(Problem {
            location: location.clone(),
            message,
        });
    }
    problems
}

#[cfg(test)]
mod tests {
    #[test]
    fn yaml_syntax_errors_carry_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.yaml");
        std::fs::write(&path, "kind: rest\noperations:\n  name: [unclosed\n").unwrap();
        let secrets = |_: &str| None;
        let problems = crate::adapters::connector::load_dir(dir.path(), &secrets, None)
            .err()
            .unwrap();
        let problem = &problems[0];
        assert!(
            problem
                .location
                .starts_with(&format!("{}:", path.display())),
            "{problem}"
        );
        assert!(problem.location.matches(':').count() >= 2, "{problem}");
    }
}
