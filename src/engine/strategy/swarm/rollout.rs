//! A Compose file's `deploy.update_config` and `rollback_config` as
//! `docker stack deploy` sends them: parallelism 1 unless written, every
//! other field only as written (Swarm fills in its own defaults).

use bollard::models::{
    ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum,
};

use crate::model::spec::RolloutConfig;

pub(super) fn update_config(config: &RolloutConfig) -> ServiceSpecUpdateConfig {
    ServiceSpecUpdateConfig {
        parallelism: Some(config.parallelism.unwrap_or(1) as i64),
        delay: config.delay_ns,
        failure_action: config.failure_action.as_deref().map(|action| match action {
            "continue" => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
            "rollback" => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
            _ => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
        }),
        monitor: config.monitor_ns,
        max_failure_ratio: ratio(config),
        order: config.order.as_deref().map(|order| match order {
            "start-first" => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
            _ => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
        }),
    }
}

pub(super) fn rollback_config(config: &RolloutConfig) -> ServiceSpecRollbackConfig {
    ServiceSpecRollbackConfig {
        parallelism: Some(config.parallelism.unwrap_or(1) as i64),
        delay: config.delay_ns,
        failure_action: config.failure_action.as_deref().map(|action| match action {
            "continue" => ServiceSpecRollbackConfigFailureActionEnum::CONTINUE,
            _ => ServiceSpecRollbackConfigFailureActionEnum::PAUSE,
        }),
        monitor: config.monitor_ns,
        max_failure_ratio: ratio(config),
        order: config.order.as_deref().map(|order| match order {
            "start-first" => ServiceSpecRollbackConfigOrderEnum::START_FIRST,
            _ => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
        }),
    }
}

/// The ratio as written; the decoder has checked that it parses.
fn ratio(config: &RolloutConfig) -> Option<f64> {
    config
        .max_failure_ratio
        .as_deref()
        .and_then(|text| text.parse().ok())
}
