//! The node's private key, kept in a Secret `causeway-tunnel-key-<node>` of the local cluster.
//!
//! Created on first start; read back on every start (so a restarted pod keeps its identity
//! and no peer has to change); replaced by a rotation. The key never appears in logs: only
//! its public half is ever printed.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::names;
use crate::wg::{KeyError, PrivateKey, PublicKey};

/// Field of the Secret's `data` holding the key, base64 as `wg genkey` prints it.
pub const KEY_FIELD: &str = "privateKey";
/// Annotation with the key's creation time, in Unix seconds (for `rotateInterval`).
pub const CREATED_ANNOTATION: &str = "causeway.io/key-created-unix";

/// Errors of reading or writing the key Secret.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The API request failed.
    #[error("secret {namespace}/{name}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// The Secret exists but holds no usable key.
    #[error("secret {namespace}/{name}: data.{KEY_FIELD}: {reason}")]
    BadKey {
        namespace: String,
        name: String,
        reason: String,
    },
}

/// A key as read from the Secret.
#[derive(Clone, Debug)]
pub struct StoredKey {
    pub key: PrivateKey,
    /// When it was generated (Unix seconds), if recorded.
    pub created_unix: Option<u64>,
}

/// The key Secret of one node.
#[derive(Clone)]
pub struct KeyStore {
    api: Api<Secret>,
    namespace: String,
    name: String,
    node: String,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl KeyStore {
    pub fn new(client: Client, namespace: &str, node: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
            name: names::secret_name(node),
            node: node.into(),
        }
    }

    /// The Secret's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn api_err(&self, source: kube::Error) -> KeyStoreError {
        KeyStoreError::Api {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    fn parse(&self, secret: &Secret) -> Result<StoredKey, KeyStoreError> {
        let bad = |reason: String| KeyStoreError::BadKey {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            reason,
        };
        let raw = secret
            .data
            .as_ref()
            .and_then(|d| d.get(KEY_FIELD))
            .ok_or_else(|| bad("missing".into()))?;
        let text = std::str::from_utf8(&raw.0).map_err(|_| bad("not text".into()))?;
        let key = PrivateKey::from_base64(text).map_err(|e: KeyError| bad(e.to_string()))?;
        let created_unix = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CREATED_ANNOTATION))
            .and_then(|v| v.parse().ok());
        Ok(StoredKey { key, created_unix })
    }

    fn secret_for(&self, key: &PrivateKey) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([
                    (
                        names::MANAGED_BY.0.to_string(),
                        names::MANAGED_BY.1.to_string(),
                    ),
                    (
                        names::NODE_LABEL.to_string(),
                        names::label_value(&self.node),
                    ),
                ])),
                annotations: Some(BTreeMap::from([(
                    CREATED_ANNOTATION.to_string(),
                    now_unix().to_string(),
                )])),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(
                KEY_FIELD.to_string(),
                ByteString(key.to_base64().into_bytes()),
            )])),
            ..Default::default()
        }
    }

    /// The stored key, if the Secret exists.
    pub async fn read(&self) -> Result<Option<StoredKey>, KeyStoreError> {
        match self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.api_err(e))?
        {
            Some(s) => self.parse(&s).map(Some),
            None => Ok(None),
        }
    }

    /// The stored key, generating and storing one on first start. Returns whether it was
    /// created now.
    pub async fn load_or_create(&self) -> Result<(StoredKey, bool), KeyStoreError> {
        if let Some(k) = self.read().await? {
            return Ok((k, false));
        }
        let key = PrivateKey::generate();
        match self
            .api
            .create(&PostParams::default(), &self.secret_for(&key))
            .await
        {
            Ok(s) => {
                tracing::info!(secret = self.name, public_key = %key.public_key(), "generated the node's key");
                Ok((self.parse(&s)?, true))
            }
            // Another start of ours won the race: use its key.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let k = self.read().await?.ok_or_else(|| KeyStoreError::BadKey {
                    namespace: self.namespace.clone(),
                    name: self.name.clone(),
                    reason: "vanished after a conflict".into(),
                })?;
                Ok((k, false))
            }
            Err(e) => Err(self.api_err(e)),
        }
    }

    /// Replaces the key by a fresh one; returns the new public key. The running tunnel
    /// notices the change, reconfigures its device and republishes its TunnelEndpoint.
    pub async fn rotate(&self) -> Result<PublicKey, KeyStoreError> {
        let key = PrivateKey::generate();
        let mut secret = self.secret_for(&key);
        match self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.api_err(e))?
        {
            Some(current) => {
                // Optimistic concurrency: a concurrent rotation makes this fail, not interleave.
                secret.metadata.resource_version = current.metadata.resource_version;
                self.api
                    .replace(&self.name, &PostParams::default(), &secret)
                    .await
                    .map_err(|e| self.api_err(e))?;
            }
            None => {
                self.api
                    .create(&PostParams::default(), &secret)
                    .await
                    .map_err(|e| self.api_err(e))?;
            }
        }
        tracing::info!(secret = self.name, public_key = %key.public_key(), "rotated the node's key");
        Ok(key.public_key())
    }
}
