//! Connection tests of destinations, shared by `tracecast check`, start-up, reload and the
//! readiness check of idle destinations ([`crate::health`]).

use std::time::Duration;

use tracecast_core::ComponentId;

use crate::pipeline::used_exporters;
use crate::registry::{self, ValidatedConfig};

/// Longest a single destination's test may take.
const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The result of testing one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationResult {
    pub id: ComponentId,
    /// `Ok` or the reason in plain words.
    pub outcome: Result<(), String>,
}

impl std::fmt::Display for DestinationResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Ok(()) => write!(f, "ok      {}", self.id),
            Err(why) => write!(f, "FAILED  {}: {why}", self.id),
        }
    }
}

/// Tests every exporter that some pipeline uses, concurrently.
pub async fn test_destinations(config: &ValidatedConfig) -> Vec<DestinationResult> {
    test_some_destinations(config, None).await
}

/// Tests the used exporters, or only those in `only` (a reload tests what changed).
pub async fn test_some_destinations(
    config: &ValidatedConfig,
    only: Option<&[ComponentId]>,
) -> Vec<DestinationResult> {
    let used = used_exporters(config)
        .into_iter()
        .filter(|id| only.is_none_or(|o| o.contains(id)))
        .filter_map(|id| config.exporters.get(&id).map(|cfg| (id, cfg.clone())));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (id, cfg)) in used.enumerate() {
        tasks.spawn(async move {
            let outcome = match registry::build_exporter(&id, &cfg) {
                Err(e) => Err(format!("{e:#}")),
                Ok(exporter) => {
                    match tokio::time::timeout(TEST_TIMEOUT, exporter.test_connection()).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!(
                            "no answer within {}s; is the endpoint reachable?",
                            TEST_TIMEOUT.as_secs()
                        )),
                    }
                }
            };
            (i, DestinationResult { id, outcome })
        });
    }
    let mut results = tasks.join_all().await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}
