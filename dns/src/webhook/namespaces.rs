//! Namespace labels for selection, read from the API server through a small time-bounded cache.
//!
//! An AdmissionRequest does not carry the namespace's labels. The MutatingWebhookConfiguration's
//! `namespaceSelector` and `objectSelector` are ANDed, so they cannot express "pod label OR
//! namespace label" in one webhook; the webhook therefore decides itself and looks the
//! namespace up (RBAC: `get` on `namespaces`). Lookups happen only for pods their own labels
//! do not select, and an answer is reused for `ttl`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use tokio::time::Instant;

use super::Error;

/// Entries kept before expired ones are dropped; the cache only has to absorb bursts such as a
/// Deployment scaling up, not mirror the cluster.
const MAX_ENTRIES: usize = 1024;

type Labels = BTreeMap<String, String>;

/// Reads a namespace's labels, caching each answer for a while.
pub struct NamespaceLabels {
    api: Api<Namespace>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Labels)>>,
}

impl NamespaceLabels {
    /// Looks namespaces up through `client`; answers are reused for `ttl`.
    pub fn new(client: kube::Client, ttl: Duration) -> Self {
        Self {
            api: Api::all(client),
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The labels of `namespace`; a namespace that does not exist has none.
    pub async fn get(&self, namespace: &str) -> Result<Labels, Error> {
        let now = Instant::now();
        if let Some((fetched, labels)) = self.lock().get(namespace)
            && now.duration_since(*fetched) < self.ttl
        {
            return Ok(labels.clone());
        }
        let labels = self
            .api
            .get_opt(namespace)
            .await
            .map_err(|source| Error::NamespaceLookup {
                namespace: namespace.to_owned(),
                source: Box::new(source),
            })?
            .and_then(|ns| ns.metadata.labels)
            .unwrap_or_default();
        let mut cache = self.lock();
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, (fetched, _)| now.duration_since(*fetched) < self.ttl);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(namespace.to_owned(), (now, labels.clone()));
        Ok(labels)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Labels)>> {
        // The map holds plain data; a panic elsewhere cannot leave it half-updated.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::State;
    use axum::routing::get;
    use serde_json::json;

    use super::*;

    /// A fake API server whose namespace `web` gains a label after the first read.
    fn client(hits: Arc<AtomicUsize>) -> kube::Client {
        let router = Router::new()
            .route(
                "/api/v1/namespaces/web",
                get(|State(hits): State<Arc<AtomicUsize>>| async move {
                    let value = match hits.fetch_add(1, Ordering::SeqCst) {
                        0 => "off",
                        _ => "enabled",
                    };
                    axum::Json(json!({
                        "apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "web", "labels": {"causeway.io/dns": value}},
                    }))
                }),
            )
            .with_state(hits);
        kube::Client::new(router, "default")
    }

    #[tokio::test(start_paused = true)]
    async fn labels_are_reused_until_the_ttl_expires() {
        let hits = Arc::new(AtomicUsize::new(0));
        let namespaces = NamespaceLabels::new(client(hits.clone()), Duration::from_secs(10));
        let value = |labels: Labels| labels["causeway.io/dns"].clone();

        assert_eq!(value(namespaces.get("web").await.expect("read")), "off");
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(value(namespaces.get("web").await.expect("cached")), "off");
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            value(namespaces.get("web").await.expect("reread")),
            "enabled"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn failing_api_server_is_an_error() {
        let router = Router::new().fallback(|| async {
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "etcd is down",
            )
        });
        let namespaces = NamespaceLabels::new(kube::Client::new(router, "default"), Duration::ZERO);
        let error = namespaces.get("web").await.expect_err("no namespace API");
        assert_eq!(error.to_string(), "cannot read namespace web");
    }
}
