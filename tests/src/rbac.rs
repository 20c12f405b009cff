//! Least privilege, checked both ways: the requests a binary made to the test API server
//! against the RBAC rules the rendered manifests grant its service account. Every request
//! must be allowed by some rule, and every verb on every resource (and resource name) a rule
//! grants must have been used by some request.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::apiserver::{RequestRecord, Verb};

/// One access a binary made, as RBAC sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    /// RBAC verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: &'static str,
    /// API group, empty for the core group.
    pub group: String,
    /// Plural resource.
    pub resource: String,
    /// Namespace, empty for cluster-scoped or all-namespace requests.
    pub namespace: String,
    /// The object's name for requests on one object.
    pub name: Option<String>,
}

impl Access {
    /// The access a logged request made; `None` for discovery and other non-resource paths.
    pub fn from_record(record: &RequestRecord) -> Option<Self> {
        let verb = match record.verb {
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Get => "get",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Other => return None,
        };
        let path = record.uri.split('?').next().unwrap_or_default();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, rest) = match parts.as_slice() {
            ["api", _version, rest @ ..] => ("", rest),
            ["apis", group, _version, rest @ ..] => (*group, rest),
            _ => return None,
        };
        let rest = match rest {
            ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
            other => other,
        };
        let name = match rest {
            [_plural, name, ..] => Some((*name).to_owned()),
            _ => None,
        };
        Some(Self {
            verb,
            group: group.to_owned(),
            resource: record.resource.clone(),
            namespace: record.namespace.clone(),
            name,
        })
    }
}

/// The accesses a request log made. A server-side apply (`PATCH` with
/// `application/apply-patch+yaml`) counts as `patch` and `create` too: it creates a missing
/// object, and the API server then authorizes `create` as well.
pub fn accesses(records: &[RequestRecord]) -> Vec<Access> {
    let mut out = Vec::new();
    for r in records {
        let Some(a) = Access::from_record(r) else {
            continue;
        };
        let apply = a.verb == "patch"
            && r.content_type
                .as_deref()
                .is_some_and(|t| t.starts_with("application/apply-patch"));
        if apply {
            out.push(Access {
                verb: "create",
                ..a.clone()
            });
        }
        out.push(a);
    }
    out
}

/// A rule granted to a service account, with where it applies.
#[derive(Clone, Debug)]
pub struct Grant {
    /// `Role/<name>` or `ClusterRole/<name>`, and the rule's index.
    pub origin: String,
    /// `Some(namespace)` for a RoleBinding, `None` for a ClusterRoleBinding.
    pub namespace: Option<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    names: Vec<String>,
    verbs: Vec<String>,
}

impl Grant {
    fn allows(&self, access: &Access) -> bool {
        let scoped = self
            .namespace
            .as_ref()
            .is_none_or(|ns| *ns == access.namespace);
        let named =
            self.names.is_empty() || access.name.as_ref().is_some_and(|n| self.names.contains(n));
        scoped
            && named
            && self.groups.iter().any(|g| g == "*" || *g == access.group)
            && self
                .resources
                .iter()
                .any(|r| r == "*" || *r == access.resource)
            && self.verbs.iter().any(|v| v == "*" || v == access.verb)
    }

    /// Every single permission this rule grants: the rule with one verb, group, resource
    /// and (if it names any) resource name.
    fn singles(&self) -> Vec<Grant> {
        let names: Vec<Vec<String>> = if self.names.is_empty() {
            vec![vec![]]
        } else {
            self.names.iter().map(|n| vec![n.clone()]).collect()
        };
        let mut out = Vec::new();
        for verb in &self.verbs {
            for group in &self.groups {
                for resource in &self.resources {
                    for name in &names {
                        out.push(Grant {
                            origin: self.origin.clone(),
                            namespace: self.namespace.clone(),
                            groups: vec![group.clone()],
                            resources: vec![resource.clone()],
                            names: name.clone(),
                            verbs: vec![verb.clone()],
                        });
                    }
                }
            }
        }
        out
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.verbs.join(","),
            self.groups.join(","),
            self.resources.join(",")
        )?;
        if !self.names.is_empty() {
            write!(f, "/{}", self.names.join(","))?;
        }
        write!(f, " ({})", self.origin)
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// The rules the rendered manifests `docs` grant to service account `namespace/account`,
/// through RoleBindings and ClusterRoleBindings.
pub fn grants(docs: &[Value], namespace: &str, account: &str) -> Vec<Grant> {
    let mut out = Vec::new();
    for binding in docs {
        let kind = binding["kind"].as_str().unwrap_or_default();
        if kind != "RoleBinding" && kind != "ClusterRoleBinding" {
            continue;
        }
        let bound = binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["kind"] == "ServiceAccount" && s["name"] == account && s["namespace"] == namespace
            });
        if !bound {
            continue;
        }
        let role_kind = binding["roleRef"]["kind"].as_str().unwrap_or_default();
        let role_name = binding["roleRef"]["name"].as_str().unwrap_or_default();
        let binding_ns = binding["metadata"]["namespace"].as_str().map(str::to_owned);
        let Some(role) = docs.iter().find(|d| {
            d["kind"] == role_kind
                && d["metadata"]["name"] == role_name
                && (role_kind == "ClusterRole"
                    || d["metadata"]["namespace"] == binding["metadata"]["namespace"])
        }) else {
            continue;
        };
        for (i, rule) in role["rules"].as_array().into_iter().flatten().enumerate() {
            out.push(Grant {
                origin: format!("{role_kind}/{role_name} rules[{i}]"),
                namespace: if kind == "RoleBinding" {
                    binding_ns.clone()
                } else {
                    None
                },
                groups: strings(&rule["apiGroups"]),
                resources: strings(&rule["resources"]),
                names: strings(&rule["resourceNames"]),
                verbs: strings(&rule["verbs"]),
            });
        }
    }
    out
}

/// Checks one way: every access is allowed by some grant (for a role several binaries share).
pub fn check_allowed(grants: &[Grant], accesses: &[Access]) -> Result<(), String> {
    let problems = not_allowed(grants, accesses);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn not_allowed(grants: &[Grant], accesses: &[Access]) -> Vec<String> {
    let distinct: BTreeSet<&Access> = accesses.iter().collect();
    distinct
        .into_iter()
        .filter(|a| !grants.iter().any(|g| g.allows(a)))
        .map(|a| format!("used but not granted: {a:?}"))
        .collect()
}

/// Checks least privilege both ways. The error lists every access no rule allows and every
/// grant no access used.
pub fn check(grants: &[Grant], accesses: &[Access]) -> Result<(), String> {
    let mut problems = not_allowed(grants, accesses);
    let distinct: BTreeSet<&Access> = accesses.iter().collect();
    for single in grants.iter().flat_map(Grant::singles) {
        if !distinct.iter().any(|a| single.allows(a)) {
            problems.push(format!("granted but not used: {single}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(verb: Verb, uri: &str, resource: &str, namespace: &str) -> RequestRecord {
        RequestRecord {
            method: String::new(),
            uri: uri.to_owned(),
            verb,
            resource: resource.to_owned(),
            namespace: namespace.to_owned(),
            resource_version: None,
            content_type: None,
        }
    }

    fn docs() -> Vec<Value> {
        vec![
            json!({"kind": "Role", "metadata": {"name": "r", "namespace": "ns"},
                   "rules": [{"apiGroups": [""], "resources": ["secrets"],
                              "resourceNames": ["mine"], "verbs": ["get", "update"]}]}),
            json!({"kind": "RoleBinding", "metadata": {"name": "r", "namespace": "ns"},
                   "roleRef": {"kind": "Role", "name": "r"},
                   "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}]}),
        ]
    }

    #[test]
    fn a_server_side_apply_also_needs_create() {
        let mut apply = record(
            Verb::Patch,
            "/apis/causeway.io/v1alpha1/namespaces/ns/tunnelendpoints/n1?fieldManager=x",
            "tunnelendpoints",
            "ns",
        );
        apply.method = "PATCH".into();
        apply.content_type = Some("application/apply-patch+yaml".into());
        let verbs: Vec<&str> = accesses(&[apply.clone()]).iter().map(|a| a.verb).collect();
        assert_eq!(verbs, ["create", "patch"]);
        apply.content_type = Some("application/merge-patch+json".into());
        let verbs: Vec<&str> = accesses(&[apply]).iter().map(|a| a.verb).collect();
        assert_eq!(verbs, ["patch"]);
    }

    #[test]
    fn both_directions_are_reported() {
        let grants = grants(&docs(), "ns", "sa");
        let get = Access::from_record(&record(
            Verb::Get,
            "/api/v1/namespaces/ns/secrets/mine",
            "secrets",
            "ns",
        ))
        .unwrap();
        assert_eq!(get.name.as_deref(), Some("mine"));
        let err = check(&grants, std::slice::from_ref(&get)).unwrap_err();
        assert_eq!(
            err,
            "granted but not used: update /secrets/mine (Role/r rules[0])"
        );
        let other = Access {
            name: Some("theirs".into()),
            ..get.clone()
        };
        let err = check(&grants, &[get.clone(), other]).unwrap_err();
        assert!(err.contains("used but not granted"), "{err}");
        let update = Access {
            verb: "update",
            ..get.clone()
        };
        assert_eq!(check(&grants, &[get, update]), Ok(()));
        assert!(super::grants(&docs(), "ns", "other").is_empty());
    }
}
