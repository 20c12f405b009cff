//! OpenShift's SecurityContextConstraints admission, as far as Causeway's pods touch it: does
//! an SCC admit a pod template? Used to check that every shipped pod runs under OpenShift's
//! default `restricted-v2` or under an SCC shipped for it, and that no SCC is shipped for a
//! pod that does not need one.
//!
//! The rules are those of OpenShift's SCC admission for the fields the rendered manifests
//! use: host namespaces and ports, volume types (`hostPath` also needs
//! `allowHostDirVolumePlugin`), privileged containers, privilege escalation (unset is
//! defaulted to what the SCC allows), added capabilities (allowed, default or `*`, never one
//! the SCC requires dropped, `ALL` included), the user (`MustRunAsRange` admits no fixed UID,
//! since the namespace's range is assigned at creation), and seccomp profiles.

use serde_json::Value;

/// `restricted-v2` as OpenShift 4.11+ ships it (the fields admission reads).
pub const RESTRICTED_V2: &str = r#"{
  "apiVersion": "security.openshift.io/v1",
  "kind": "SecurityContextConstraints",
  "metadata": {"name": "restricted-v2"},
  "allowHostDirVolumePlugin": false,
  "allowHostIPC": false,
  "allowHostNetwork": false,
  "allowHostPID": false,
  "allowHostPorts": false,
  "allowPrivilegeEscalation": false,
  "allowPrivilegedContainer": false,
  "allowedCapabilities": ["NET_BIND_SERVICE"],
  "defaultAddCapabilities": null,
  "fsGroup": {"type": "MustRunAs"},
  "readOnlyRootFilesystem": false,
  "requiredDropCapabilities": ["ALL"],
  "runAsUser": {"type": "MustRunAsRange"},
  "seLinuxContext": {"type": "MustRunAs"},
  "seccompProfiles": ["runtime/default"],
  "supplementalGroups": {"type": "RunAsAny"},
  "users": [],
  "groups": ["system:authenticated"],
  "volumes": ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
              "persistentVolumeClaim", "projected", "secret"]
}"#;

/// The built-in `restricted-v2`.
pub fn restricted_v2() -> Value {
    serde_json::from_str(RESTRICTED_V2).expect("restricted-v2 is valid JSON")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn flag(scc: &Value, field: &str) -> bool {
    scc[field].as_bool().unwrap_or(false)
}

/// The service accounts an SCC names in `users` (`system:serviceaccount:<ns>:<name>`), as
/// `(namespace, name)`.
pub fn service_accounts(scc: &Value) -> Vec<(String, String)> {
    strings(&scc["users"])
        .iter()
        .filter_map(|u| {
            let rest = u.strip_prefix("system:serviceaccount:")?;
            let (ns, name) = rest.split_once(':')?;
            Some((ns.to_owned(), name.to_owned()))
        })
        .collect()
}

/// The volume type of a pod volume: its one key besides `name`.
fn volume_type(volume: &Value) -> String {
    volume
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "name").cloned())
        .unwrap_or_default()
}

/// Why `scc` does not admit a pod with this `spec` (empty: admitted).
pub fn refusals(scc: &Value, spec: &Value) -> Vec<String> {
    let mut why = Vec::new();
    for (field, allowed) in [
        ("hostNetwork", "allowHostNetwork"),
        ("hostPID", "allowHostPID"),
        ("hostIPC", "allowHostIPC"),
    ] {
        if spec[field].as_bool() == Some(true) && !flag(scc, allowed) {
            why.push(format!("{field}: true needs {allowed}"));
        }
    }
    let volumes = strings(&scc["volumes"]);
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let kind = volume_type(v);
        let name = v["name"].as_str().unwrap_or("?");
        if !volumes.iter().any(|a| a == "*" || *a == kind) {
            why.push(format!("volume {name}: type {kind} not in volumes"));
        }
        if kind == "hostPath" && !flag(scc, "allowHostDirVolumePlugin") {
            why.push(format!(
                "volume {name}: hostPath needs allowHostDirVolumePlugin"
            ));
        }
    }
    let seccomp = strings(&scc["seccompProfiles"]);
    let seccomp_ok = |profile: &Value| -> bool {
        match profile["type"].as_str() {
            None => true,
            Some(t) => {
                let name = match t {
                    "RuntimeDefault" => "runtime/default".to_owned(),
                    "Unconfined" => "unconfined".to_owned(),
                    other => format!(
                        "localhost/{}",
                        profile["localhostProfile"].as_str().unwrap_or(other)
                    ),
                };
                seccomp.iter().any(|s| s == "*" || *s == name)
            }
        }
    };
    if !seccomp_ok(&spec["securityContext"]["seccompProfile"]) {
        why.push("pod seccompProfile not in seccompProfiles".into());
    }
    let run_as = scc["runAsUser"]["type"].as_str().unwrap_or("RunAsAny");
    let user_ok = |uid: &Value| -> bool {
        match (run_as, uid.as_i64()) {
            (_, None) | ("RunAsAny", _) => true,
            ("MustRunAsNonRoot", Some(u)) => u != 0,
            ("MustRunAs", Some(u)) => scc["runAsUser"]["uid"].as_i64() == Some(u),
            // the range is the namespace's, assigned at creation: no fixed UID is in it
            _ => false,
        }
    };
    if !user_ok(&spec["securityContext"]["runAsUser"]) {
        why.push(format!("pod runAsUser not allowed by runAsUser {run_as}"));
    }
    let allowed_caps = strings(&scc["allowedCapabilities"]);
    let default_caps = strings(&scc["defaultAddCapabilities"]);
    let required_drop = strings(&scc["requiredDropCapabilities"]);
    let containers = spec["containers"]
        .as_array()
        .into_iter()
        .chain(spec["initContainers"].as_array())
        .flatten();
    for c in containers {
        let name = c["name"].as_str().unwrap_or("?");
        let sc = &c["securityContext"];
        if sc["privileged"].as_bool() == Some(true) && !flag(scc, "allowPrivilegedContainer") {
            why.push(format!(
                "container {name}: privileged needs allowPrivilegedContainer"
            ));
        }
        // Unset is defaulted to the SCC's own setting, so only an explicit true is refused.
        if sc["allowPrivilegeEscalation"].as_bool() == Some(true)
            && !flag(scc, "allowPrivilegeEscalation")
        {
            why.push(format!(
                "container {name}: allowPrivilegeEscalation needs allowPrivilegeEscalation"
            ));
        }
        for cap in strings(&sc["capabilities"]["add"]) {
            let listed = allowed_caps
                .iter()
                .chain(&default_caps)
                .any(|a| a == "*" || *a == cap);
            let dropped = required_drop.iter().any(|d| d == "ALL" || *d == cap)
                && !default_caps.contains(&cap)
                && !allowed_caps.contains(&cap);
            if !listed || dropped {
                why.push(format!("container {name}: capability {cap} not allowed"));
            }
        }
        if !user_ok(&sc["runAsUser"]) {
            why.push(format!(
                "container {name}: runAsUser not allowed by runAsUser {run_as}"
            ));
        }
        if !seccomp_ok(&sc["seccompProfile"]) {
            why.push(format!(
                "container {name}: seccompProfile not in seccompProfiles"
            ));
        }
        for p in c["ports"].as_array().into_iter().flatten() {
            if p["hostPort"].as_i64().is_some() && !flag(scc, "allowHostPorts") {
                why.push(format!("container {name}: hostPort needs allowHostPorts"));
            }
        }
    }
    why
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(extra: Value) -> Value {
        let mut spec = json!({
            "containers": [{"name": "c", "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}],
            "volumes": [{"name": "cfg", "configMap": {"name": "x"}}]
        });
        json_patch::merge(&mut spec, &extra);
        spec
    }

    #[test]
    fn restricted_v2_admits_a_plain_pod() {
        assert_eq!(
            refusals(&restricted_v2(), &pod(json!({}))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn restricted_v2_refuses_each_host_feature() {
        let r = restricted_v2();
        let cases = [
            json!({"hostNetwork": true}),
            json!({"volumes": [{"name": "h", "hostPath": {"path": "/var/lib/x"}}]}),
            json!({"securityContext": {"runAsUser": 65532}}),
            json!({"containers": [{"name": "c", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}]}),
            json!({"containers": [{"name": "c", "securityContext": {"privileged": true}}]}),
            json!({"containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": true}}]}),
            json!({"containers": [{"name": "c", "securityContext": {"runAsUser": 0}}]}),
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 53, "hostPort": 53}]}]}),
            json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}),
        ];
        for case in cases {
            assert!(!refusals(&r, &pod(case.clone())).is_empty(), "{case}");
        }
    }

    #[test]
    fn a_custom_scc_admits_what_it_lists_and_names_its_users() {
        let scc = json!({
            "allowHostDirVolumePlugin": true,
            "allowedCapabilities": ["NET_ADMIN"],
            "requiredDropCapabilities": ["MKNOD"],
            "runAsUser": {"type": "RunAsAny"},
            "volumes": ["configMap", "hostPath"],
            "users": ["system:serviceaccount:causeway:causeway-node", "someone"]
        });
        let spec = pod(json!({
            "volumes": [{"name": "h", "hostPath": {"path": "/dev/net/tun"}}],
            "containers": [{"name": "c", "securityContext": {
                "allowPrivilegeEscalation": null,
                "capabilities": {"add": ["NET_ADMIN"], "drop": null}}}]
        }));
        assert_eq!(refusals(&scc, &spec), Vec::<String>::new());
        let mknod = pod(json!({"containers": [{"name": "c", "securityContext": {
            "capabilities": {"add": ["MKNOD"]}}}]}));
        assert!(!refusals(&scc, &mknod).is_empty());
        assert_eq!(
            service_accounts(&scc),
            vec![("causeway".to_owned(), "causeway-node".to_owned())]
        );
    }
}
