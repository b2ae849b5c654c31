//! Label-filtered listings of what the bench made. An error lists
//! nothing: every caller polls again or cleans up again, so a failed
//! listing only costs a round.

use std::collections::HashMap;

use bollard::models::{ContainerSummary, Network, Service};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListServicesOptionsBuilder,
};

use crate::bench::Bench;

/// Docker's `label` filter for `selector` (`KEY` or `KEY=VALUE`).
fn label_filter(selector: &str) -> HashMap<&'static str, Vec<String>> {
    HashMap::from([("label", vec![selector.to_string()])])
}

impl Bench {
    /// Containers, running or not, matching the label `selector`.
    pub async fn containers_labelled(&self, selector: &str) -> Vec<ContainerSummary> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&label_filter(selector))
            .build();
        self.docker
            .list_containers(Some(options))
            .await
            .unwrap_or_default()
    }

    /// Services matching the label `selector`.
    pub async fn services_labelled(&self, selector: &str) -> Vec<Service> {
        let options = ListServicesOptionsBuilder::default()
            .filters(&label_filter(selector))
            .build();
        self.docker
            .list_services(Some(options))
            .await
            .unwrap_or_default()
    }

    /// Networks matching the label `selector`.
    pub async fn networks_labelled(&self, selector: &str) -> Vec<Network> {
        let options = ListNetworksOptionsBuilder::default()
            .filters(&label_filter(selector))
            .build();
        self.docker
            .list_networks(Some(options))
            .await
            .unwrap_or_default()
    }
}
