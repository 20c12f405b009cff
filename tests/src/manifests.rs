//! The shipped manifests as a cluster would receive them: `kubectl kustomize` of an overlay.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// `manifests/` of the repository.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

/// The rendered YAML of `manifests/<overlay>` (`""`: the top-level kustomization).
pub fn render_text(overlay: &str) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir().join(overlay))
        .output()
        .expect("kubectl renders the manifests (tests/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kubectl prints UTF-8")
}

/// The rendered objects of `manifests/<overlay>`.
pub fn render(overlay: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(&render_text(overlay)).expect("rendered manifests are YAML")
}
