//! LIST, GET, POST, PUT, PATCH and DELETE through `kube::Api`.

use causeway_tests::apiserver::Verb;
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::{Api, ResourceExt as _};
use serde_json::json;

use crate::common::{api_code, client, node, service, start};

fn keys<K: kube::Resource>(items: &[K]) -> Vec<String> {
    items
        .iter()
        .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
        .collect()
}

#[tokio::test]
async fn list_and_get_with_selectors() -> anyhow::Result<()> {
    let server = start().await;
    server.apply(&service("shop", "web", "web", "192.0.2.10"))?;
    server.apply(&service("shop", "db", "db", "192.0.2.11"))?;
    server.apply(&service("other", "web", "web", "192.0.2.12"))?;
    server.apply(&node("n1", "198.51.100.1"))?;
    let client = client(&server).await?;

    let all: Api<Service> = Api::all(client.clone());
    let list = all.list(&ListParams::default()).await?;
    assert_eq!(keys(&list.items), ["other/web", "shop/db", "shop/web"]);
    assert_eq!(
        list.metadata.resource_version,
        Some(server.resource_version().to_string())
    );
    assert_eq!(list.metadata.continue_, None);

    let shop: Api<Service> = Api::namespaced(client.clone(), "shop");
    assert_eq!(
        keys(&shop.list(&ListParams::default()).await?.items),
        ["shop/db", "shop/web"]
    );
    let by_label = |s: &str| ListParams::default().labels(s);
    assert_eq!(
        keys(&all.list(&by_label("app=web")).await?.items),
        ["other/web", "shop/web"]
    );
    assert_eq!(
        keys(&shop.list(&by_label("app!=web")).await?.items),
        ["shop/db"]
    );
    assert_eq!(all.list(&by_label("app")).await?.items.len(), 3);
    assert_eq!(all.list(&by_label("!app")).await?.items.len(), 0);
    let by_name = ListParams::default().fields("metadata.name=web");
    assert_eq!(
        keys(&all.list(&by_name).await?.items),
        ["other/web", "shop/web"]
    );
    // Paging is not implemented: a limit returns everything, without a continue token.
    let paged = all.list(&ListParams::default().limit(1)).await?;
    assert_eq!(paged.items.len(), 3);

    let web = shop.get("web").await?;
    assert_eq!(web.spec.unwrap().cluster_ip.as_deref(), Some("192.0.2.10"));
    assert!(web.metadata.uid.is_some() && web.metadata.creation_timestamp.is_some());
    assert_eq!(web.metadata.generation, Some(1));
    let missing = shop.get("nope").await.unwrap_err();
    assert_eq!(api_code(&missing), Some((404, "NotFound".into())));

    let nodes: Api<Node> = Api::all(client);
    assert_eq!(
        keys(&nodes.list(&ListParams::default()).await?.items),
        ["/n1"]
    );
    assert_eq!(nodes.get("n1").await?.name_any(), "n1");

    assert_eq!(server.request_count(Verb::List, "services"), 8);
    assert_eq!(server.request_count(Verb::Get, "services"), 2);
    Ok(())
}

#[tokio::test]
async fn create_replace_patch_and_delete() -> anyhow::Result<()> {
    let server = start().await;
    let client = client(&server).await?;
    let shop: Api<Service> = Api::namespaced(client.clone(), "shop");

    let created = shop
        .create(
            &PostParams::default(),
            &service("shop", "web", "web", "192.0.2.10"),
        )
        .await?;
    let rv = created.resource_version().unwrap();
    assert!(server.get::<Service>("shop", "web")?.is_some());
    let again = shop
        .create(
            &PostParams::default(),
            &service("shop", "web", "web", "192.0.2.10"),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&again), Some((409, "AlreadyExists".into())));

    let mut changed = created.clone();
    changed.spec.as_mut().unwrap().cluster_ip = Some("192.0.2.20".into());
    let replaced = shop
        .replace("web", &PostParams::default(), &changed)
        .await?;
    assert_ne!(replaced.resource_version().unwrap(), rv);
    assert_eq!(replaced.metadata.generation, Some(2));
    // `changed` still carries the old version: optimistic concurrency refuses it.
    let stale = shop
        .replace("web", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    assert_eq!(api_code(&stale), Some((409, "Conflict".into())));

    let merge = json!({"metadata": {"labels": {"tier": "front"}}});
    let patched = shop
        .patch("web", &PatchParams::default(), &Patch::Merge(&merge))
        .await?;
    assert_eq!(
        patched.labels().get("tier").map(String::as_str),
        Some("front")
    );
    assert_eq!(patched.labels().get("app").map(String::as_str), Some("web"));
    let ops: json_patch::Patch =
        serde_json::from_value(json!([{"op": "remove", "path": "/metadata/labels/tier"}]))?;
    let patched = shop
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await?;
    assert!(!patched.labels().contains_key("tier"));
    let missing = shop
        .patch("nope", &PatchParams::default(), &Patch::Merge(&merge))
        .await
        .unwrap_err();
    assert_eq!(api_code(&missing), Some((404, "NotFound".into())));

    // Server-side apply creates, then updates.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "causeway-system");
    let ssa = PatchParams::apply("causeway-tunnel").force();
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "wg-key"}, "stringData": {"pub": "a"}});
    secrets
        .patch("wg-key", &ssa, &Patch::Apply(&secret))
        .await?;
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "wg-key"}, "stringData": {"pub": "b"}});
    let applied = secrets
        .patch("wg-key", &ssa, &Patch::Apply(&secret))
        .await?;
    assert_eq!(applied.string_data.unwrap()["pub"], "b");

    let deleted = shop.delete("web", &DeleteParams::default()).await?;
    assert!(deleted.is_left());
    assert!(server.get::<Service>("shop", "web")?.is_none());
    let gone = shop
        .delete("web", &DeleteParams::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&gone), Some((404, "NotFound".into())));
    Ok(())
}

#[tokio::test]
async fn custom_resources_through_dynamic_api() -> anyhow::Result<()> {
    let server = start().await;
    let client = client(&server).await?;
    let gvk = GroupVersionKind::gvk("causeway.io", "v1alpha1", "TunnelEndpoint");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "tunnelendpoints");
    let api: Api<DynamicObject> = Api::namespaced_with(client, "causeway-system", &resource);
    let endpoint = json!({
        "apiVersion": "causeway.io/v1alpha1", "kind": "TunnelEndpoint",
        "metadata": {"name": "cluster-a"},
        "spec": {"publicKey": "k", "endpoint": "198.51.100.1:51820"},
    });
    api.patch(
        "cluster-a",
        &PatchParams::apply("causeway-tunnel").force(),
        &Patch::Apply(&endpoint),
    )
    .await?;
    let list = api.list(&ListParams::default()).await?;
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].data["spec"]["endpoint"], "198.51.100.1:51820");
    let stored = server
        .get_value(
            "causeway.io/v1alpha1",
            "TunnelEndpoint",
            "causeway-system",
            "cluster-a",
        )?
        .expect("stored");
    assert_eq!(stored["spec"]["publicKey"], "k");
    Ok(())
}

#[tokio::test]
async fn yaml_loading_and_the_rust_api() -> anyhow::Result<()> {
    let server = start().await;
    let loaded = server.load_yaml(
        r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: shop, uid: 6d4c2b9e-0000-4000-8000-000000000001}
  spec: {clusterIP: 192.0.2.10, ports: [{port: 80}]}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
  addressType: IPv4
  endpoints: [{addresses: [10.128.0.5], conditions: {ready: true}}]
---
apiVersion: v1
kind: Node
metadata: {name: n1}
"#,
    )?;
    assert_eq!(loaded, 3);
    let web = server.get::<Service>("shop", "web")?.expect("loaded");
    assert_eq!(
        web.metadata.uid.as_deref(),
        Some("6d4c2b9e-0000-4000-8000-000000000001")
    );
    assert_eq!(server.list::<EndpointSlice>(None)?.len(), 1);
    assert_eq!(server.list::<EndpointSlice>(Some("other"))?.len(), 0);
    assert_eq!(server.list::<Node>(None)?.len(), 1);
    server.delete::<Service>("shop", "web")?;
    assert!(server.get::<Service>("shop", "web")?.is_none());
    assert!(
        server
            .load_yaml("apiVersion: v9\nkind: Thing\nmetadata: {name: x}\n")
            .is_err()
    );
    Ok(())
}
