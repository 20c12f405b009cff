//! One battery of route-table checks run against the fake and against rtnetlink inside a
//! network namespace, which keeps the fake honest: add, change the source, delete only ours,
//! adopt what a previous run left; and, on the kernel, never touch routes of other protocols.
//!
//! Ranges: interface addresses 192.0.2.1/24 and 10.128.0.1/24 (RFC 5737 and a pod subnet);
//! routed ranges 10.129.0.0/16, 172.31.0.0/16; a foreign route 203.0.113.0/24.

use std::sync::Arc;

use anyhow::Result;
use causeway_tests::netns::Netns;
use causeway_tunnel::plan::Route;
use causeway_tunnel::routes::{FakeRoutes, NetlinkRoutes, RouteTable};

fn route(dst: &str, src: Option<&str>) -> Route {
    Route {
        destination: dst.parse().unwrap(),
        interface: "cw-r0".into(),
        source: src.map(|s| s.parse().unwrap()),
    }
}

fn text(routes: &[Route]) -> String {
    routes.iter().map(|r| format!("{r}\n")).collect()
}

/// The battery. `leave` puts a route of ours into the table the way a previous run would
/// have left it (10.140.0.0/24 on cw-r0, no source): the table must adopt it.
async fn battery(
    table: &dyn RouteTable,
    leave: impl AsyncFnOnce(&dyn RouteTable) -> Result<()>,
) -> Result<()> {
    let a = route("10.129.0.0/16", Some("10.128.0.1"));
    let b = route("172.31.0.0/16", Some("10.128.0.1"));
    table.sync(&[a.clone(), b.clone()]).await?;
    assert_eq!(
        text(&table.dump().await?),
        "10.129.0.0/16 dev cw-r0 src 10.128.0.1\n172.31.0.0/16 dev cw-r0 src 10.128.0.1\n"
    );
    // Idempotent.
    table.sync(&[a.clone(), b.clone()]).await?;
    assert_eq!(table.dump().await?.len(), 2);
    // A changed source replaces the route; a dropped range goes.
    let a2 = route("10.129.0.0/16", Some("192.0.2.1"));
    table.sync(std::slice::from_ref(&a2)).await?;
    assert_eq!(
        text(&table.dump().await?),
        "10.129.0.0/16 dev cw-r0 src 192.0.2.1\n"
    );
    table.sync(&[]).await?;
    assert_eq!(text(&table.dump().await?), "");

    // Adopt: a route of ours left by a previous run is found and managed.
    leave(table).await?;
    assert_eq!(text(&table.dump().await?), "10.140.0.0/24 dev cw-r0\n");
    table
        .sync(&[route("10.129.0.0/16", Some("10.128.0.1"))])
        .await?;
    assert_eq!(
        text(&table.dump().await?),
        "10.129.0.0/16 dev cw-r0 src 10.128.0.1\n"
    );
    Ok(())
}

#[tokio::test]
async fn fake_route_table() -> Result<()> {
    // The fake is its own kernel: what a previous run synced is what it holds.
    let leave = async |table: &dyn RouteTable| -> Result<()> {
        table.sync(&[route("10.140.0.0/24", None)]).await?;
        Ok(())
    };
    battery(&FakeRoutes::default(), leave).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netlink_route_table_in_a_namespace() -> Result<()> {
    let ns = Netns::new("rt")?;
    ns.exec(
        "ip",
        &[
            "link", "add", "cw-r0", "type", "veth", "peer", "name", "cw-r1",
        ],
    )?;
    ns.exec("ip", &["addr", "add", "192.0.2.1/24", "dev", "cw-r0"])?;
    ns.exec("ip", &["addr", "add", "10.128.0.1/24", "dev", "cw-r0"])?;
    ns.exec("ip", &["link", "set", "cw-r0", "up"])?;
    ns.exec("ip", &["link", "set", "cw-r1", "up"])?;
    ns.exec(
        "ip",
        &[
            "route",
            "add",
            "203.0.113.0/24",
            "dev",
            "cw-r0",
            "proto",
            "static",
        ],
    )?;
    let rt = tokio::runtime::Handle::current();
    let table = tokio::task::block_in_place(|| {
        ns.enter(move || rt.block_on(async { NetlinkRoutes::connect() }))
    })??;
    let table: Arc<dyn RouteTable> = Arc::new(table);
    // A previous run's route: added with ip(8), protocol 147.
    let leave = async |_: &dyn RouteTable| -> Result<()> {
        ns.exec(
            "ip",
            &[
                "route",
                "add",
                "10.140.0.0/24",
                "dev",
                "cw-r0",
                "proto",
                "147",
                "scope",
                "link",
            ],
        )?;
        Ok(())
    };
    battery(table.as_ref(), leave).await?;
    // What the kernel holds: ours as the battery left them, the foreign route untouched (the
    // fake holds no routes of other protocols to compare).
    let kernel = ns.exec("ip", &["route", "show", "dev", "cw-r0"])?;
    assert!(
        kernel.contains("203.0.113.0/24 proto static"),
        "foreign route kept: {kernel}"
    );
    let kernel = ns.exec("ip", &["route", "show", "proto", "147"])?;
    assert_eq!(
        kernel,
        "10.129.0.0/16 dev cw-r0 scope link src 10.128.0.1 \n"
    );
    Ok(())
}
