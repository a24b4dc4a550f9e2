//! Watches on the Deployments and Pods of the pool namespaces (kube-runtime's watcher into
//! reflector stores), so a reconcile reads its pool from memory instead of asking the API
//! server every period, and a pod turning Ready or going away wakes its pool.
//!
//! A store answers only while its watch is *up*: listed in full and without an error
//! since. A watch error takes it down and starts it over (a new list); until it is up
//! again reads go to the API server directly, and fail as they did before watches, so a
//! broken watch is never read as a pool without pods.

use super::{PodState, PoolState, classify, pod_state};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::domain::Waker;

/// The pools to wake, by namespace: (deployment, waker).
type Wakers = Arc<Mutex<HashMap<String, Vec<(String, Waker)>>>>;

/// The first wait before a failed watch starts over; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The watches of every pool namespace, started at the first read in a namespace (so a
/// replica that never leads watches nothing).
pub struct Watches {
    client: Client,
    namespaces: Mutex<HashMap<String, Arc<NamespaceCache>>>,
    wakers: Wakers,
    up: prometheus::IntGaugeVec,
}

/// One namespace's Deployments and Pods, as watched.
struct NamespaceCache {
    deployments: Store<Deployment>,
    pods: Store<Pod>,
    deployments_up: Arc<AtomicBool>,
    pods_up: Arc<AtomicBool>,
    /// The scale this service last set per deployment, until the watch shows it (or
    /// something newer): (the deployment's resourceVersion before, replicas, after).
    written: Mutex<HashMap<String, Written>>,
}

#[derive(Debug, Clone)]
struct Written {
    before: Option<String>,
    replicas: u32,
    after: Option<String>,
}

impl Watches {
    /// `client` carries no read timeout shorter than a watch (the watcher notices a
    /// silent connection itself).
    pub fn new(client: Client, up: prometheus::IntGaugeVec) -> Self {
        Self {
            client,
            namespaces: Mutex::default(),
            wakers: Arc::default(),
            up,
        }
    }

    /// Wakes `wake` when a pod of the deployment turns Ready, starts terminating or is
    /// removed.
    pub fn follow(&self, namespace: &str, deployment: &str, wake: Waker) {
        self.wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(namespace.to_string())
            .or_default()
            .push((deployment.to_string(), wake));
    }

    /// The pool from the stores, or `None` while the namespace's watches are not up (the
    /// first call for a namespace starts them) or the deployment is not among them.
    pub fn read_pool(&self, namespace: &str, deployment: &str) -> Option<PoolState> {
        let cache = self.namespace(namespace);
        if !(cache.deployments_up.load(Ordering::SeqCst) && cache.pods_up.load(Ordering::SeqCst)) {
            return None;
        }
        let d = cache
            .deployments
            .get(&ObjectRef::new(deployment).within(namespace))?;
        let selector = selector_of(&d)?;
        let mut replicas = d.spec.replicas.unwrap_or(1).max(0) as u32;
        let mut resource_version = d.metadata.resource_version.clone();
        {
            let mut written = cache.written.lock().unwrap_or_else(|e| e.into_inner());
            match written.get(deployment) {
                // The watch has not shown our scale change yet: it stands.
                Some(w) if w.before == resource_version => {
                    replicas = w.replicas;
                    resource_version = w.after.clone();
                }
                Some(_) => {
                    written.remove(deployment);
                }
                None => {}
            }
        }
        let mut pods: Vec<PodState> = cache
            .pods
            .state()
            .into_iter()
            .filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
            .map(|p| pod_state(Pod::clone(&p)))
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        Some(PoolState {
            replicas,
            resource_version,
            selector: selector.to_string(),
            pods,
        })
    }

    /// Notes a scale this service set (its resourceVersion before and after), so reads
    /// see it before the watch does.
    pub fn wrote_scale(
        &self,
        namespace: &str,
        deployment: &str,
        before: Option<String>,
        replicas: u32,
        after: Option<String>,
    ) {
        let cache = self.namespace(namespace);
        cache
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                deployment.to_string(),
                Written {
                    before,
                    replicas,
                    after,
                },
            );
    }

    fn namespace(&self, namespace: &str) -> Arc<NamespaceCache> {
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = namespaces.get(namespace) {
            return c.clone();
        }
        let deployments = Writer::<Deployment>::default();
        let pods = Writer::<Pod>::default();
        let cache = Arc::new(NamespaceCache {
            deployments: deployments.as_reader(),
            pods: pods.as_reader(),
            deployments_up: Arc::default(),
            pods_up: Arc::default(),
            written: Mutex::default(),
        });
        let wakers = self.wakers.clone();
        let ns = namespace.to_string();
        let deployments_reader = cache.deployments.clone();
        let on_pod = move |pod: &Pod, before: Option<Arc<Pod>>, removed: bool| {
            let was = before.map(|p| pod_state(Pod::clone(&p)));
            let now = pod_state(pod.clone());
            let wakes = removed
                || (now.ready && !was.as_ref().is_some_and(|w| w.ready))
                || (now.terminating && !was.as_ref().is_some_and(|w| w.terminating));
            if !wakes {
                return;
            }
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            let wakers = wakers.lock().unwrap_or_else(|e| e.into_inner());
            for (deployment, wake) in wakers.get(&ns).into_iter().flatten() {
                let owns = deployments_reader
                    .get(&ObjectRef::new(deployment).within(&ns))
                    .and_then(|d| selector_of(&d))
                    .is_some_and(|s| s.matches(&labels));
                if owns {
                    wake();
                }
            }
        };
        tokio::spawn(follow(
            Api::<Deployment>::namespaced(self.client.clone(), namespace),
            deployments,
            cache.deployments_up.clone(),
            self.up.with_label_values(&[namespace, "deployments"]),
            |_: &Deployment, _: Option<Arc<Deployment>>, _: bool| {},
        ));
        tokio::spawn(follow(
            Api::<Pod>::namespaced(self.client.clone(), namespace),
            pods,
            cache.pods_up.clone(),
            self.up.with_label_values(&[namespace, "pods"]),
            on_pod,
        ));
        namespaces.insert(namespace.to_string(), cache.clone());
        cache
    }
}

/// The Deployment's pod selector (`None` when it has none or it cannot be read).
fn selector_of(d: &Deployment) -> Option<Selector> {
    let selector = d.spec.selector.clone();
    Selector::try_from(selector).ok()
}

/// Keeps `writer` filled from a watch on `api`, for ever: `up` while listed in full and
/// without an error since; an error starts it over after a backoff. `changed` sees each
/// change after the list (the object, the store's copy before, whether it was removed).
async fn follow<K, F>(
    api: Api<K>,
    mut writer: Writer<K>,
    up: Arc<AtomicBool>,
    gauge: prometheus::IntGauge,
    changed: F,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    F: Fn(&K, Option<Arc<K>>, bool) + Send + 'static,
{
    let what = K::plural(&()).to_string();
    let namespace = api.namespace().unwrap_or_default().to_string();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    match &event {
                        watcher::Event::Apply(o) => {
                            changed(o, writer.as_reader().get(&ObjectRef::from_obj(o)), false)
                        }
                        watcher::Event::Delete(o) => {
                            changed(o, writer.as_reader().get(&ObjectRef::from_obj(o)), true)
                        }
                        _ => {}
                    }
                    writer.apply_watcher_event(&event);
                    if matches!(event, watcher::Event::InitDone) {
                        up.store(true, Ordering::SeqCst);
                        gauge.set(1);
                        backoff = FIRST_BACKOFF;
                        tracing::debug!(%namespace, %what, "watch listed");
                    }
                }
                Err(e) => {
                    up.store(false, Ordering::SeqCst);
                    gauge.set(0);
                    let e = match e {
                        watcher::Error::InitialListFailed(e)
                        | watcher::Error::WatchStartFailed(e)
                        | watcher::Error::WatchFailed(e) => {
                            classify(format!("watch of {what} in {namespace}"), e).to_string()
                        }
                        other => other.to_string(),
                    };
                    tracing::warn!(%namespace, %what, error = %e, retry_in = ?backoff, "watch failed: reading the API server directly until it is back");
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
