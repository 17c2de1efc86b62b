//! report-operator: a Kubernetes operator that has reporting APIs generate billing and
//! usage reports and publishes each report's download URL in a Secret.

pub mod api;
pub mod backend;
pub mod controller;
pub mod delivery;
pub mod docs;
pub mod plugin;
pub mod schedule;
