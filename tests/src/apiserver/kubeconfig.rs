//! Kubeconfig files pointing at test API servers, readable by `kube::config::Kubeconfig`,
//! `kubectl` and the Causeway binaries.

use std::path::{Path, PathBuf};

/// A kubeconfig could not be written.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// The file could not be written.
    #[error("cannot write kubeconfig {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No context was given.
    #[error("a kubeconfig needs at least one context")]
    Empty,
}

/// The bearer token every generated user carries; the test API server accepts any request.
pub const TOKEN: &str = "causeway-test-token";

/// Renders a kubeconfig with one cluster, user and context per `(context, server URL)` pair;
/// the first context is the current one. Each context's default namespace is `default`.
pub fn render(contexts: &[(&str, &str)]) -> Result<String, KubeconfigError> {
    let (current, _) = contexts.first().ok_or(KubeconfigError::Empty)?;
    // JSON strings are YAML scalars, which quotes any odd character in a name safely.
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let mut clusters = String::new();
    let mut users = String::new();
    let mut entries = String::new();
    for (context, server) in contexts {
        let (c, s) = (q(context), q(server));
        clusters.push_str(&format!("  - name: {c}\n    cluster:\n      server: {s}\n"));
        users.push_str(&format!(
            "  - name: {c}\n    user:\n      token: {}\n",
            q(TOKEN)
        ));
        entries.push_str(&format!(
            "  - name: {c}\n    context:\n      cluster: {c}\n      user: {c}\n      namespace: default\n"
        ));
    }
    Ok(format!(
        "apiVersion: v1\nkind: Config\npreferences: {{}}\ncurrent-context: {}\nclusters:\n{clusters}users:\n{users}contexts:\n{entries}",
        q(current)
    ))
}

/// Writes [`render`]'s output to `path`.
pub fn write(path: &Path, contexts: &[(&str, &str)]) -> Result<(), KubeconfigError> {
    let text = render(contexts)?;
    std::fs::write(path, text).map_err(|source| KubeconfigError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_context() {
        let text = render(&[("a", "http://127.0.0.1:1"), ("b", "http://127.0.0.1:2")]).unwrap();
        assert!(text.contains("current-context: \"a\""));
        assert!(text.contains("server: \"http://127.0.0.1:2\""));
        let parsed: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(parsed["contexts"][1]["context"]["cluster"], "b");
        assert!(render(&[]).is_err());
    }
}
