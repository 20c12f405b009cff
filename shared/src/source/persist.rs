//! Last-known-good state of remote clusters, kept on disk across restarts.
//!
//! A remote's data is written to `<stateDir>/cluster-<name>.json` after it has been fully
//! listed from the cluster's API, and read back at start: a binary that restarts while
//! that API is down serves the saved state (marked stale) instead of nothing. A fresh
//! full list replaces it and the file is written again.
//!
//! The file is JSON with a format version; an unknown version, a file of another cluster
//! or a corrupt file is logged with its name and ignored (the cluster then starts empty,
//! as without a state directory). Writes are atomic (temporary file in the same
//! directory, fsync, rename, fsync of the directory), and bounded: at most one per
//! debounce interval per cluster, and none when the data equals what was last written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::metrics::SourceMetrics;
use crate::model::{ClusterData, EndpointSlice, Node, Service, TunnelEndpoint};

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u64 = 1;

/// Why a state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The file exists but could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not JSON of the state-file schema (truncated, hand-edited, ...).
    #[error("{}: corrupt state file: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// The file was written by a build with another format.
    #[error("{}: state file format version {found} is not {FORMAT_VERSION}", path.display())]
    UnknownVersion { path: PathBuf, found: String },
    /// The file holds another cluster's state.
    #[error("{}: holds the state of cluster {found:?}, not {cluster:?}", path.display())]
    WrongCluster {
        path: PathBuf,
        cluster: String,
        found: String,
    },
    /// The file or its directory could not be written.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The file as written.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StateFile {
    version: u64,
    cluster: String,
    /// Unix time of the write, in seconds.
    saved_at: u64,
    services: Vec<Service>,
    endpoint_slices: Vec<EndpointSlice>,
    nodes: Vec<Node>,
    tunnel_endpoints: Vec<TunnelEndpoint>,
}

/// A state file read back.
#[derive(Debug, PartialEq)]
pub struct Saved {
    pub data: ClusterData,
    pub saved_at: SystemTime,
}

/// The state file of `cluster` in `dir`.
pub fn state_path(dir: &Path, cluster: &str) -> PathBuf {
    dir.join(format!("cluster-{cluster}.json"))
}

/// Encodes one cluster's data (pure).
pub fn encode(cluster: &str, data: &ClusterData, saved_at: SystemTime) -> Vec<u8> {
    let file = StateFile {
        version: FORMAT_VERSION,
        cluster: cluster.to_string(),
        saved_at: saved_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        services: data.services.values().map(|s| (**s).clone()).collect(),
        endpoint_slices: data
            .slices_by_service()
            .flat_map(|(_, slices)| slices.values().map(|s| (**s).clone()))
            .collect(),
        nodes: data.nodes.values().map(|n| (**n).clone()).collect(),
        tunnel_endpoints: data
            .tunnel_endpoints
            .values()
            .map(|t| (**t).clone())
            .collect(),
    };
    let mut out = serde_json::to_vec(&file).expect("the model always serialises");
    out.push(b'\n');
    out
}

/// Decodes a state file's bytes (pure); `path` names the file in errors.
pub fn decode(path: &Path, cluster: &str, bytes: &[u8]) -> Result<Saved, PersistError> {
    let corrupt = |source| PersistError::Corrupt {
        path: path.to_path_buf(),
        source,
    };
    // The version is read first, so a future format is reported as such rather than as
    // a schema mismatch.
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(corrupt)?;
    match value.get("version") {
        Some(v) if v.as_u64() == Some(FORMAT_VERSION) => {}
        other => {
            return Err(PersistError::UnknownVersion {
                path: path.to_path_buf(),
                found: other.map_or_else(|| "(none)".to_string(), |v| v.to_string()),
            });
        }
    }
    let file: StateFile = serde_json::from_value(value).map_err(corrupt)?;
    if file.cluster != cluster {
        return Err(PersistError::WrongCluster {
            path: path.to_path_buf(),
            cluster: cluster.to_string(),
            found: file.cluster,
        });
    }
    let mut data = ClusterData::default();
    for s in file.services {
        data.upsert_service(s);
    }
    for s in file.endpoint_slices {
        data.upsert_slice(s);
    }
    for n in file.nodes {
        data.upsert_node(n);
    }
    for t in file.tunnel_endpoints {
        data.upsert_tunnel_endpoint(t);
    }
    Ok(Saved {
        data,
        saved_at: UNIX_EPOCH + Duration::from_secs(file.saved_at),
    })
}

/// Reads the state of `cluster` from `dir`; `Ok(None)` when there is no file.
pub fn load(dir: &Path, cluster: &str) -> Result<Option<Saved>, PersistError> {
    let path = state_path(dir, cluster);
    match std::fs::read(&path) {
        Ok(bytes) => decode(&path, cluster, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PersistError::Read { path, source }),
    }
}

/// Replaces `path` with `bytes` atomically: a reader (or a crash) sees the old file or
/// the new one, never a part of either.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    let err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| PersistError::Write { path: p, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(err(&tmp))?;
        f.write_all(bytes).map_err(err(&tmp))?;
        f.sync_all().map_err(err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(err(path))?;
        // The rename itself is durable only once the directory is synced.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err(dir))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Where and how often a source saves its cluster's state.
#[derive(Clone, Debug)]
pub struct StateDir {
    pub dir: PathBuf,
    /// At most one write per this interval per cluster; changes in between are coalesced.
    pub debounce: Duration,
}

/// Reads the saved state of `cluster`, logging (never failing on) a file that cannot be
/// used.
pub async fn load_logged(
    state: &StateDir,
    cluster: &str,
    metrics: &SourceMetrics,
) -> Option<ClusterData> {
    let dir = state.dir.clone();
    let name = cluster.to_string();
    let loaded = tokio::task::spawn_blocking(move || load(&dir, &name))
        .await
        .unwrap_or_else(|e| {
            Err(PersistError::Read {
                path: state_path(&state.dir, cluster),
                source: std::io::Error::other(e.to_string()),
            })
        });
    match loaded {
        Ok(Some(saved)) => {
            let age = SystemTime::now()
                .duration_since(saved.saved_at)
                .unwrap_or_default();
            tracing::info!(
                cluster,
                path = %state_path(&state.dir, cluster).display(),
                services = saved.data.services.len(),
                age_seconds = age.as_secs(),
                "serving the cluster's last good state from disk until its API answers"
            );
            Some(saved.data)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(cluster, error = %e, "ignoring the saved state of the cluster");
            metrics.error(cluster, "state");
            None
        }
    }
}

/// Starts the writer of one cluster's state file; send it each fully listed version of
/// the data.
pub fn spawn_writer(
    state: StateDir,
    cluster: String,
    metrics: SourceMetrics,
) -> watch::Sender<Option<Arc<ClusterData>>> {
    let (tx, mut rx) = watch::channel::<Option<Arc<ClusterData>>>(None);
    tokio::spawn(async move {
        let path = state_path(&state.dir, &cluster);
        let mut written: Option<Arc<ClusterData>> = None;
        while rx.changed().await.is_ok() {
            // Coalesce a burst of changes into one write of the latest version.
            tokio::time::sleep(state.debounce).await;
            let Some(data) = rx.borrow_and_update().clone() else {
                continue;
            };
            if written
                .as_ref()
                .is_some_and(|w| Arc::ptr_eq(w, &data) || **w == *data)
            {
                continue;
            }
            let (p, c, d) = (path.clone(), cluster.clone(), data.clone());
            let result = tokio::task::spawn_blocking(move || {
                write_atomic(&p, &encode(&c, &d, SystemTime::now()))
            })
            .await;
            match result {
                Ok(Ok(())) => {
                    tracing::debug!(cluster, path = %path.display(), "saved the cluster's state");
                    metrics.state_saved(&cluster);
                    written = Some(data);
                }
                Ok(Err(e)) => {
                    tracing::warn!(cluster, error = %e, "cannot save the cluster's state");
                    metrics.error(&cluster, "state");
                }
                Err(e) => {
                    tracing::warn!(cluster, error = %e, "the state writer failed");
                    metrics.error(&cluster, "state");
                }
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        AddressType, Endpoint, EndpointPort, Protocol, ServiceKey, ServicePort, ServiceType,
        SessionAffinity,
    };

    // Test addresses: RFC 5737 documentation ranges.
    fn data() -> ClusterData {
        let mut d = ClusterData::default();
        d.upsert_service(Service {
            key: ServiceKey::new("demo", "web"),
            service_type: ServiceType::ClusterIP,
            cluster_ips: vec!["198.51.100.10".parse().unwrap()],
            headless: false,
            external_name: None,
            ports: vec![ServicePort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 80,
                target_port: None,
                node_port: None,
                app_protocol: None,
            }],
            publish_not_ready_addresses: false,
            session_affinity: SessionAffinity::None,
            annotations: Default::default(),
            resource_version: Some("7".into()),
        });
        d.upsert_slice(EndpointSlice {
            namespace: "demo".into(),
            name: "web-1".into(),
            service_name: "web".into(),
            address_type: AddressType::IPv4,
            endpoints: vec![Endpoint {
                addresses: vec!["192.0.2.10".parse().unwrap()],
                ready: true,
                serving: true,
                terminating: false,
                hostname: None,
                node_name: Some("n1".into()),
                zone: None,
                pod_name: Some("web-0".into()),
            }],
            ports: vec![EndpointPort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 8080,
                app_protocol: None,
            }],
            generation: 1,
            resource_version: None,
        });
        d.upsert_node(Node {
            name: "n1".into(),
            pod_cidrs: vec!["192.0.2.0/26".parse().unwrap()],
            addresses: vec![],
            resource_version: None,
        });
        d
    }

    const PATH: &str = "/var/lib/causeway/state/dns/cluster-b.json";

    #[test]
    fn encode_decode_round_trip() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let bytes = encode("b", &data(), at);
        let saved = decode(Path::new(PATH), "b", &bytes).unwrap();
        assert_eq!(saved.data, data());
        assert_eq!(saved.saved_at, at);
        assert_eq!(
            decode(
                Path::new(PATH),
                "b",
                &encode("b", &ClusterData::default(), at)
            )
            .unwrap()
            .data,
            ClusterData::default()
        );
    }

    #[test]
    fn unknown_version_is_refused_naming_the_file() {
        let bytes = encode("b", &data(), SystemTime::now());
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["version"] = 2.into();
        // A future version may change anything else too.
        v["services"] = "elsewhere".into();
        let err = decode(Path::new(PATH), "b", v.to_string().as_bytes()).unwrap_err();
        assert!(
            matches!(&err, PersistError::UnknownVersion { found, .. } if found == "2"),
            "{err}"
        );
        assert!(err.to_string().contains(PATH), "{err}");
        v.as_object_mut().unwrap().remove("version");
        let err = decode(Path::new(PATH), "b", v.to_string().as_bytes()).unwrap_err();
        assert!(
            matches!(&err, PersistError::UnknownVersion { found, .. } if found == "(none)"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_or_foreign_files_are_refused_naming_the_file() {
        let bytes = encode("b", &data(), SystemTime::now());
        for bad in [&bytes[..bytes.len() / 2], b"", b"\x00\xff"] {
            let err = decode(Path::new(PATH), "b", bad).unwrap_err();
            assert!(matches!(err, PersistError::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains(PATH), "{err}");
        }
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["nodes"] = serde_json::json!([{"name": 3}]);
        let err = decode(Path::new(PATH), "b", v.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, PersistError::Corrupt { .. }), "{err}");
        let err = decode(Path::new(PATH), "c", &bytes).unwrap_err();
        assert!(
            matches!(&err, PersistError::WrongCluster { found, .. } if found == "b"),
            "{err}"
        );
    }

    #[test]
    fn atomic_write_replaces_the_file_and_load_reads_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        assert!(load(&dir, "b").unwrap().is_none(), "no file is no state");
        let path = state_path(&dir, "b");
        write_atomic(
            &path,
            &encode("b", &ClusterData::default(), SystemTime::now()),
        )
        .unwrap();
        write_atomic(&path, &encode("b", &data(), SystemTime::now())).unwrap();
        assert_eq!(load(&dir, "b").unwrap().unwrap().data, data());
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["cluster-b.json"], "no temporary file is left");
        std::fs::write(&path, b"{\"version\": 1, \"clus").unwrap();
        assert!(matches!(load(&dir, "b"), Err(PersistError::Corrupt { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn writer_coalesces_changes_and_skips_equal_data() {
        let tmp = tempfile::tempdir().unwrap();
        let metrics = SourceMetrics::default();
        let state = StateDir {
            dir: tmp.path().to_path_buf(),
            debounce: Duration::from_secs(1),
        };
        let tx = spawn_writer(state, "b".into(), metrics.clone());
        let writes = || metrics.state_writes_of("b");
        // A burst of ten versions inside one debounce interval is one write.
        for i in 0..10 {
            let mut d = data();
            d.upsert_node(Node {
                name: format!("n{i}"),
                pod_cidrs: vec![],
                addresses: vec![],
                resource_version: None,
            });
            tx.send_replace(Some(Arc::new(d)));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        wait_for(|| writes() == 1).await;
        let saved = load(tmp.path(), "b").unwrap().unwrap();
        assert!(saved.data.nodes.contains_key("n9"), "the latest version");
        // The same data again (a relist) is not written.
        let mut same = data();
        same.upsert_node(Node {
            name: "n9".into(),
            pod_cidrs: vec![],
            addresses: vec![],
            resource_version: None,
        });
        tx.send_replace(Some(Arc::new(same)));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(writes(), 1);
        tx.send_replace(Some(Arc::new(data())));
        wait_for(|| writes() == 2).await;
    }

    async fn wait_for(cond: impl Fn() -> bool) {
        for _ in 0..200 {
            if cond() {
                return;
            }
            // The write itself runs on a blocking thread, outside the paused clock.
            tokio::time::sleep(Duration::from_millis(100)).await;
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("condition never held");
    }
}
